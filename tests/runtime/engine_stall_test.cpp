// The engine under sustained load with a small state cap, and with a state
// store whose disk stops answering: checkpoints never stall for good, a
// stop always stops the engine within its shutdown bound, and a write that
// fails for its own reason during the stop is reported.
#include <catch2/catch.hpp>
#include <chrono>
#include <future>
#include <map>
#include <thread>

#include "crmstream/common/clock.h"
#include "crmstream/generator/world_generator.h"
#include "crmstream/kafka/embedded_cluster.h"
#include "crmstream/runtime/kafka_wiring.h"
#include "crmstream/runtime/stream_engine.h"
#include "crmstream/state/state_store.h"
#include "runtime/changelog.h"
#include "support/hanging_file_system.h"
#include "support/require_ok.h"
#include "support/test_support.h"

namespace crmstream::runtime {
namespace {

using Clock = std::chrono::steady_clock;

struct Input {
  std::unique_ptr<kafka::EmbeddedCluster> cluster;
  config::EngineConfig cfg;
  int64_t records = 0;
};

// `records` generated events for `customers` customers into the input.
void ProduceEvents(const config::EngineConfig& cfg, int records, int customers, uint64_t seed) {
  generator::WorldOptions world;
  world.customers = customers;
  world.seed = seed;
  REQUIRE_OK_AND_ASSIGN(auto gen, generator::WorldGenerator::Create(world));
  REQUIRE_OK_AND_ASSIGN(auto producer, kafka::Producer::Create(MakeClientConfig(cfg.kafka)));
  std::string key, value;
  for (int i = 0; i < records; ++i) {
    gen->Next(&key, &value);
    REQUIRE_OK(producer->Produce("crm.interactions", kafka::kPartitionUnassigned, key, value));
    if (i % 1024 == 0) producer->Poll();
  }
  REQUIRE_OK(producer->Flush(std::chrono::seconds(60)));
  REQUIRE(producer->failed_count() == 0);
}

// An embedded cluster with the engine's topics and `records` generated
// events for `customers` customers already in the input.
Input MakeInput(const std::filesystem::path& state_dir, int records, int customers) {
  Input in;
  REQUIRE_OK_AND_ASSIGN(in.cluster, kafka::EmbeddedCluster::Create({}));
  in.cfg.state_dir = state_dir.string();
  in.cfg.inputs = {{"crm.interactions", 12}};
  in.cfg.kafka.properties["bootstrap.servers"] = in.cluster->bootstrap_servers();
  in.cfg.commit_interval_ms = 200;
  // RocksDB's share of this cap is 16 MiB (pipeline/memory_plan.h): 4 MiB of
  // memtables, pressure within seconds.
  in.cfg.state.memory_cap_mb = 120;
  for (const auto& t : AllTopics(in.cfg)) REQUIRE_OK(in.cluster->CreateTopic(t.name, t.partitions));
  ProduceEvents(in.cfg, records, customers, 42);
  in.records = records;
  return in;
}

// Runs the engine on a thread until caught up (or `stop`); a run that does
// not return within `bound` fails the test and ends the process (a thread
// stuck inside RocksDB cannot be joined).
Status RunBounded(StreamEngine* engine, std::atomic<bool>* stop, bool until_caught_up,
                  std::chrono::seconds bound, std::future<Status>* running = nullptr) {
  RunOptions options;
  options.until_caught_up = until_caught_up;
  auto run = std::async(std::launch::async, [=] { return engine->Run(*stop, options); });
  if (running != nullptr) {
    *running = std::move(run);
    return Status::OK();
  }
  if (run.wait_for(bound) != std::future_status::ready) {
    FAIL_CHECK("the engine did not return within " << bound.count() << " s");
    std::_Exit(1);
  }
  return run.get();
}

// Whatever fails in a test, the engine is stopped and the disk answers
// again before the engine goes away (its thread could not be joined
// otherwise).
struct StopAndRelease {
  std::atomic<bool>* stop;
  testing::HangingFileSystem* fs;
  ~StopAndRelease() {
    stop->store(true);
    fs->Release();
  }
};

// The records the last good checkpoints cover, over every partition: the
// store's, or the changelog's where later (a checkpoint whose store write
// did not complete is in the changelog already: flushed before the write,
// a restart restores it from there).
int64_t CheckpointedRecords(const Input& in, const std::filesystem::path& state_dir) {
  state::StateStoreOptions o;
  o.path = state_dir / state::kStoreSubdirectory;
  o.read_only = true;
  REQUIRE_OK_AND_ASSIGN(auto store, state::StateStore::Open(o));
  REQUIRE_OK_AND_ASSIGN(auto partitions, store->ListPartitions());
  const config::TopicSpec& input = in.cfg.inputs.front();
  std::vector<int32_t> ids;
  for (int32_t q = 0; q < input.partitions; ++q) ids.push_back(q);
  REQUIRE_OK_AND_ASSIGN(auto in_changelog,
                        LastChangelogCheckpoints(MakeClientConfig(in.cfg.kafka),
                                                 ChangelogTopicName(in.cfg, input.name), ids));
  // Every partition: one whose first store write did not complete has no
  // entry in the store, but may have a checkpoint in the changelog.
  std::map<int32_t, int64_t> in_store;
  for (const auto& p : partitions) in_store[p.key.partition] = p.input_offset;
  int64_t checkpointed = 0;
  for (const int32_t q : ids) {
    checkpointed += std::max<int64_t>({0, in_store.count(q) ? in_store[q] : 0, in_changelog[q]});
  }
  return checkpointed;
}

// Restarted on a healthy disk, the engine resumes from the last good
// checkpoints (`checkpointed` records): every record after them, none
// before them.
void CheckResumesAfter(const Input& in, int64_t checkpointed) {
  REQUIRE_OK_AND_ASSIGN(auto engine, StreamEngine::Create(in.cfg, pipeline::PipelineSpec{}));
  std::atomic<bool> stop{false};
  REQUIRE_OK(RunBounded(engine.get(), &stop, /*until_caught_up=*/true, std::chrono::seconds(300)));
  CHECK(static_cast<int64_t>(engine->stats().received.load()) == in.records - checkpointed);
  CHECK(engine->stats().checkpoint_failures.load() == 0);
}

TEST_CASE("sustained load under a small state cap: checkpoints never stall for good",
          "[pipeline][integration][soak]") {
  testing::ScratchDir dir;
  // 40,000 customers, most of them changed between two checkpoints: each
  // checkpoint is several times the 4 MiB memtable budget.
  Input in = MakeInput(dir.path(), 150000, 20000);
  REQUIRE_OK_AND_ASSIGN(auto engine, StreamEngine::Create(in.cfg, pipeline::PipelineSpec{}));
  std::atomic<bool> stop{false};
  REQUIRE_OK(RunBounded(engine.get(), &stop, /*until_caught_up=*/true, std::chrono::seconds(300)));

  const EngineStats& s = engine->stats();
  CHECK(static_cast<int64_t>(s.received.load()) == in.records);
  CHECK(s.checkpoints.load() >= 3);
  CHECK(s.checkpoint_failures.load() == 0);
  const state::StateStore::WriteFigures w = engine->state_store().WriteFiguresNow();
  INFO("written " << w.written_bytes << " bytes, budget " << w.memtable_budget_bytes << ", stalls "
                  << w.stalled_writes << " (" << w.stall_seconds << " s)");
  // The pressure this test is about: every customer's state is written at
  // least once (about 1 KB each), several times the memtable budget.
  CHECK(w.written_bytes > 4 * w.memtable_budget_bytes);
  CHECK(w.timed_out_writes == 0);
}

TEST_CASE("a stop ends an engine whose checkpoint cannot be written, within the bound",
          "[pipeline][integration][fault]") {
  testing::ScratchDir dir;
  // 40,000 customers' state (about 1 KB each) is ten times the memtable
  // budget: once the disk hangs, a checkpoint must stall.
  Input in = MakeInput(dir.path(), 150000, 40000);
  in.cfg.state.write_timeout_ms = 600000;  // only the stop can end the wait
  in.cfg.shutdown_timeout_ms = 1000;
  auto fs = std::make_shared<testing::HangingFileSystem>();
  {
    REQUIRE_OK_AND_ASSIGN(
        auto engine, StreamEngine::Create(in.cfg, pipeline::PipelineSpec{}, testing::EnvOver(fs)));
    // The disk stops answering: the first flush never finishes, and the
    // checkpoints after it wait for memory that is never freed.
    fs->Hang();
    std::atomic<bool> stop{false};
    std::future<Status> run;
    const StopAndRelease cleanup{&stop, fs.get()};
    REQUIRE_OK(RunBounded(engine.get(), &stop, false, std::chrono::seconds(0), &run));
    const auto deadline = Clock::now() + std::chrono::seconds(120);
    bool stalled = false;
    while (!stalled && Clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      const int64_t started = engine->stats().checkpoint_started_ms.load();
      stalled = started >= 0 && SteadyMs() - started > 2000;
    }
    REQUIRE(stalled);
    CHECK(fs->blocked() > 0);
    // Reported, not a silent hang.
    const EngineHealth health = engine->probe().Health(std::chrono::milliseconds(1000));
    CHECK_FALSE(health.live);
    CHECK(health.reason.find("checkpoint stalled") != std::string::npos);

    // Consumption goes on while the checkpoint waits on the store: records
    // arriving now are processed, with that same checkpoint still pending.
    const int64_t stalled_since = engine->stats().checkpoint_started_ms.load();
    const int64_t more = 5000;
    ProduceEvents(in.cfg, static_cast<int>(more), 2000, 7);
    in.records += more;
    const auto caught_up_by = Clock::now() + std::chrono::seconds(60);
    while (static_cast<int64_t>(engine->stats().received.load()) < in.records &&
           Clock::now() < caught_up_by) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    CHECK(static_cast<int64_t>(engine->stats().received.load()) == in.records);
    CHECK(engine->stats().checkpoint_started_ms.load() == stalled_since);

    // SIGTERM's path: the stop flag. The engine gives up the stalled
    // checkpoint, tries a final one for shutdown_timeout_ms, says it could
    // not, and returns.
    stop.store(true);
    REQUIRE(run.wait_for(std::chrono::seconds(60)) == std::future_status::ready);
    const Status st = run.get();
    INFO(st.ToString());
    CHECK(st.code() == StatusCode::kUnavailable);
    CHECK(st.message().find("timed out") != std::string::npos);
    CHECK(engine->stats().checkpoint_failures.load() >= 2);
    fs->Release();  // lets the store close
  }
  const int64_t checkpointed = CheckpointedRecords(in, dir.path());
  CHECK(checkpointed < in.records);
  CheckResumesAfter(in, checkpointed);
}

TEST_CASE(
    "a checkpoint write failing for its own reason during the stop is reported, not taken "
    "for cancelled",
    "[pipeline][integration][fault]") {
  testing::ScratchDir dir;
  Input in = MakeInput(dir.path(), 20000, 2000);
  auto fs = std::make_shared<testing::HangingFileSystem>();
  {
    REQUIRE_OK_AND_ASSIGN(
        auto engine, StreamEngine::Create(in.cfg, pipeline::PipelineSpec{}, testing::EnvOver(fs)));
    std::atomic<bool> stop{false};
    std::future<Status> run;
    const StopAndRelease cleanup{&stop, fs.get()};
    REQUIRE_OK(RunBounded(engine.get(), &stop, false, std::chrono::seconds(0), &run));
    const auto processed = [&] {
      const auto deadline = Clock::now() + std::chrono::seconds(120);
      while (static_cast<int64_t>(engine->stats().received.load()) < in.records &&
             Clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
      return static_cast<int64_t>(engine->stats().received.load()) == in.records;
    };
    REQUIRE(processed());
    // A checkpoint written: the state a failure must leave intact.
    const auto written_by = Clock::now() + std::chrono::seconds(60);
    while (engine->stats().checkpoints.load() == 0 && Clock::now() < written_by) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    REQUIRE(engine->stats().checkpoints.load() > 0);
    // The disk stops answering: the checkpoint of the records arriving now
    // waits in its log append, a write the stop cannot cancel.
    fs->HangLogWrites();
    ProduceEvents(in.cfg, 2000, 500, 7);
    in.records += 2000;
    REQUIRE(processed());
    const auto deadline = Clock::now() + std::chrono::seconds(60);
    while (fs->blocked_log_writes() == 0 && Clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    REQUIRE(fs->blocked_log_writes() > 0);
    // The stop, then the disk fails the waiting write: a failure of its
    // own while the stop flag is set. The drain writes the checkpoint
    // again, which fails too: the run ends with the disk's error.
    stop.store(true);
    while (engine->probe().loop_state() != EngineProbe::LoopState::kStopped &&
           run.wait_for(std::chrono::milliseconds(20)) != std::future_status::ready) {
    }
    fs->FailLogWrites();
    REQUIRE(run.wait_for(std::chrono::seconds(60)) == std::future_status::ready);
    const Status st = run.get();
    INFO(st.ToString());
    CHECK(st.code() == StatusCode::kIOError);
    CHECK(st.message().find("injected write-ahead log failure") != std::string::npos);
    CHECK(engine->stats().checkpoint_failures.load() >= 1);
  }
  // The state the failed writes left is whole: a restart on a healthy disk
  // resumes from the last good checkpoint.
  const int64_t checkpointed = CheckpointedRecords(in, dir.path());
  CHECK(checkpointed > 0);
  CheckResumesAfter(in, checkpointed);
}

}  // namespace
}  // namespace crmstream::runtime
