// Sustained checkpoints under a small memory cap: RocksDB's write buffer
// manager must never stall a commit without end, and a commit that cannot
// finish is bounded (deadline, cancel) and says why.
#include <catch2/catch.hpp>
#include <chrono>
#include <future>
#include <string>
#include <thread>

#include "crmstream/state/state_store.h"
#include "support/hanging_file_system.h"
#include "support/require_ok.h"
#include "support/test_support.h"

namespace crmstream::state {
namespace {

using Clock = std::chrono::steady_clock;

// The engine's write pattern: every checkpoint rewrites many customers in the
// large families (features, models, the dedup window) and a few bytes in the
// small ones (offsets, metadata), whose memtables therefore stay tiny but old.
void FillCheckpoint(StateStore* store, PartitionKey p, int round, CheckpointBatch* batch) {
  const std::string feature(600, static_cast<char>('a' + round % 26));
  const std::string model(300, static_cast<char>('A' + round % 26));
  for (int c = 0; c < 2000; ++c) {
    const std::string id = "C" + std::to_string((round * 2000 + c) % 50000);
    batch->PutFeatures(p, id, feature);
    batch->PutCustomerModel(p, id, model);
  }
  batch->PutDedupWindow(p, std::string(size_t{300} << 10, 'd'));
  batch->SetInputOffset(p, round);
  batch->PutMetadata("round", std::to_string(round));
  (void)store;
}

TEST_CASE("sustained checkpoints under a small cap never stall for good", "[state][soak]") {
  testing::ScratchDir dir;
  StateStoreOptions o;
  o.path = dir.path() / "store";
  o.memory_cap_bytes = size_t{8} << 20;  // 2 MiB of memtables
  REQUIRE_OK_AND_ASSIGN(std::unique_ptr<StateStore> store, StateStore::Open(o));
  REQUIRE_OK_AND_ASSIGN(const PartitionKey key, store->Partition("crm.interactions", 0));

  // Bounded: 400 checkpoints of ~2 MB each (about 400 times the memtable
  // budget); the commits run on a thread so that a hang fails the test
  // instead of hanging it.
  constexpr int kRounds = 400;
  std::atomic<int> done{0};
  auto writer = std::async(std::launch::async, [&]() -> Status {
    CheckpointBatch batch = store->NewBatch();
    for (int round = 0; round < kRounds; ++round) {
      FillCheckpoint(store.get(), key, round, &batch);
      CRM_RETURN_NOT_OK(store->Commit(&batch));
      done.store(round + 1);
    }
    return Status::OK();
  });
  const bool finished = writer.wait_for(std::chrono::seconds(240)) == std::future_status::ready;
  INFO("checkpoints done: " << done.load() << " of " << kRounds);
  if (!finished) {
    // A stuck RocksDB write cannot be cancelled: report and leave the process.
    FAIL_CHECK("a checkpoint stalled for good after " << done.load() << " checkpoints");
    std::_Exit(1);
  }
  REQUIRE_OK(writer.get());
  const StateStore::WriteFigures figures = store->WriteFiguresNow();
  CHECK(figures.memtable_budget_bytes == size_t{2} << 20);
  CHECK(figures.timed_out_writes == 0);
  CHECK(figures.written_bytes > 100 * figures.memtable_budget_bytes);
  // Flushes keep memory near the budget: at most the budget plus one
  // checkpoint in flight and the memtables being flushed.
  CHECK(figures.memtable_bytes < size_t{8} << 20);
  // RocksDB's own LOG file is kept in the store, for after the fact.
  CHECK(std::filesystem::exists(o.path / "LOG"));
  CHECK_OK(store->Flush());
}

TEST_CASE("a write the store cannot take ends at its timeout, or at once when cancelled",
          "[state][fault]") {
  testing::ScratchDir dir;
  auto fs = std::make_shared<testing::HangingFileSystem>();
  StateStoreOptions o;
  o.path = dir.path() / "store";
  o.memory_cap_bytes = size_t{8} << 20;
  o.write_timeout = std::chrono::milliseconds(1500);
  o.env = testing::EnvOver(fs);
  REQUIRE_OK_AND_ASSIGN(std::unique_ptr<StateStore> store, StateStore::Open(o));
  REQUIRE_OK_AND_ASSIGN(const PartitionKey key, store->Partition("crm.interactions", 0));

  // The disk stops answering: no flush can finish, memtables fill up.
  fs->Hang();
  CheckpointBatch batch = store->NewBatch();
  Status failed;
  int round = 0;
  for (; round < 50 && failed.ok(); ++round) {
    FillCheckpoint(store.get(), key, round, &batch);
    failed = store->Commit(&batch);
  }
  INFO(failed.ToString());
  REQUIRE(!failed.ok());
  CHECK(failed.code() == StatusCode::kUnavailable);
  CHECK(failed.message().find("timed out") != std::string::npos);
  CHECK(failed.message().find("memtables") != std::string::npos);  // the figures
  CHECK(fs->blocked() > 0);
  CHECK_FALSE(batch.empty());  // kept, unwritten

  // A stop request cancels the wait at once.
  std::atomic<bool> cancel{true};
  const Status cancelled = store->Commit(&batch, &cancel);
  CHECK(cancelled.code() == StatusCode::kAborted);
  // So does a metadata write (a logged block close, synced, waits on the
  // store as a checkpoint does), and its deadline bounds it.
  const Status metadata_cancelled = store->PutMetadata("close", "1", &cancel);
  CHECK(metadata_cancelled.code() == StatusCode::kAborted);
  std::atomic<bool> no_stop{false};
  const Status metadata_late = store->PutMetadata("close", "1", &no_stop, Clock::now());
  CHECK(metadata_late.code() == StatusCode::kUnavailable);
  REQUIRE_OK_AND_ASSIGN(const auto unwritten, store->GetMetadata("close"));
  CHECK_FALSE(unwritten.has_value());

  StateStore::WriteFigures figures = store->WriteFiguresNow();
  CHECK(figures.timed_out_writes == 2);
  CHECK(figures.stalled_writes >= 4);
  CHECK(figures.stall_seconds > 0);

  // The disk answers again: the same checkpoint goes through.
  fs->Release();
  REQUIRE_OK(store->Commit(&batch));
  REQUIRE_OK_AND_ASSIGN(const PartitionState state, store->GetPartition(key));
  CHECK(state.input_offset == round - 1);
  REQUIRE_OK(store->PutMetadata("close", "1", &no_stop));
  REQUIRE_OK_AND_ASSIGN(const auto written, store->GetMetadata("close"));
  CHECK(written == std::optional<std::string>("1"));
}

}  // namespace
}  // namespace crmstream::state
