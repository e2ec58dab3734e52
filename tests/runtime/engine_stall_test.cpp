// The engine under sustained load with a small state cap, and with a state
// store whose disk stops answering: checkpoints never stall for good, a
// stop always stops the engine within its shutdown bound, a write that
// fails for its own reason during the stop is reported, and one the stop
// merely cancels is not.
#include <spdlog/sinks/base_sink.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <future>
#include <map>
#include <string>
#include <thread>
#include <vector>

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

// Counts the log lines that contain `text`, by level, while it lives; the
// lines still go to the usual sinks. Made before the test's engines and
// clusters and gone after them: no thread logs while the logger changes.
class LogCounter {
 public:
  explicit LogCounter(std::string text)
      : sink_(std::make_shared<Sink>(std::move(text))), previous_(spdlog::default_logger()) {
    std::vector<spdlog::sink_ptr> sinks = previous_->sinks();
    sinks.push_back(sink_);
    auto logger = std::make_shared<spdlog::logger>("counted", sinks.begin(), sinks.end());
    logger->set_level(std::min(previous_->level(), spdlog::level::info));
    spdlog::set_default_logger(logger);
  }
  ~LogCounter() { spdlog::set_default_logger(previous_); }
  LogCounter(const LogCounter&) = delete;
  LogCounter& operator=(const LogCounter&) = delete;

  int info() const { return sink_->count(false); }
  // Warnings and errors.
  int warnings() const { return sink_->count(true); }

 private:
  class Sink final : public spdlog::sinks::base_sink<std::mutex> {
   public:
    explicit Sink(std::string text) : text_(std::move(text)) {}
    int count(bool warnings) {
      std::lock_guard<std::mutex> lock(mutex_);
      return warnings ? warnings_ : info_;
    }

   protected:
    void sink_it_(const spdlog::details::log_msg& msg) override {
      const std::string_view line(msg.payload.data(), msg.payload.size());
      if (line.find(text_) == std::string_view::npos) return;
      if (msg.level >= spdlog::level::warn) {
        ++warnings_;
      } else if (msg.level == spdlog::level::info) {
        ++info_;
      }
    }
    void flush_() override {}

   private:
    const std::string text_;
    int info_ = 0;
    int warnings_ = 0;
  };

  std::shared_ptr<Sink> sink_;
  std::shared_ptr<spdlog::logger> previous_;
};

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

// The engine running on a thread over a disk that can stop answering.
// Whatever fails in a test, the engine is stopped and the disk answers
// again before the engine goes away (its thread could not be joined
// otherwise).
struct DiskRun {
  std::shared_ptr<testing::HangingFileSystem> fs = std::make_shared<testing::HangingFileSystem>();
  std::unique_ptr<StreamEngine> engine;
  std::atomic<bool> stop{false};
  std::future<Status> run;
  ~DiskRun() {
    stop.store(true);
    fs->Release();
  }
};

// Starts `r`'s engine; with `hang`, its disk stops answering first.
void StartRun(const config::EngineConfig& cfg, bool hang, DiskRun* r,
              bool until_caught_up = false) {
  REQUIRE_OK_AND_ASSIGN(
      r->engine, StreamEngine::Create(cfg, pipeline::PipelineSpec{}, testing::EnvOver(r->fs)));
  if (hang) r->fs->Hang();
  REQUIRE_OK(
      RunBounded(r->engine.get(), &r->stop, until_caught_up, std::chrono::seconds(0), &r->run));
}

// Waits up to `bound` for the engine to have received `records` records.
bool WaitForReceived(const StreamEngine& engine, int64_t records, std::chrono::seconds bound) {
  const auto deadline = Clock::now() + bound;
  while (static_cast<int64_t>(engine.stats().received.load()) < records &&
         Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return static_cast<int64_t>(engine.stats().received.load()) == records;
}

// Waits up to 120 s for a checkpoint under way for more than 2 s.
bool WaitForStalledCheckpoint(const StreamEngine& engine) {
  const auto deadline = Clock::now() + std::chrono::seconds(120);
  while (Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    const int64_t started = engine.stats().checkpoint_started_ms.load();
    if (started >= 0 && SteadyMs() - started > 2000) return true;
  }
  // What the engine did meanwhile, for the failure's report.
  const EngineStats& s = engine.stats();
  UNSCOPED_INFO("no checkpoint stalled: received "
                << s.received.load() << ", batches " << s.batches.load() << ", checkpoints "
                << s.checkpoints.load() << ", commits " << s.commits.load() << ", partitions "
                << s.partitions.load() << ", lag " << s.lag.load());
  return false;
}

// Starts `r`'s engine on a disk that stops answering: the first flush
// never finishes, and the checkpoints after it wait for memory that is
// never freed. Returns once one has waited 2 s and 5,000 records arriving
// after it are processed, that same checkpoint still pending (consumption
// goes on while a checkpoint waits on the store).
void StartStalled(Input* in, DiskRun* r) {
  StartRun(in->cfg, /*hang=*/true, r);
  REQUIRE(WaitForStalledCheckpoint(*r->engine));
  const int64_t stalled_since = r->engine->stats().checkpoint_started_ms.load();
  const int64_t more = 5000;
  ProduceEvents(in->cfg, static_cast<int>(more), 2000, 7);
  in->records += more;
  REQUIRE(WaitForReceived(*r->engine, in->records, std::chrono::seconds(90)));
  CHECK(r->engine->stats().checkpoint_started_ms.load() == stalled_since);
}

// The stop, and a wait until the run loop has ended (the drain begins) or
// the run returned.
void StopLoop(DiskRun* r) {
  r->stop.store(true);
  while (r->engine->probe().loop_state() != EngineProbe::LoopState::kStopped &&
         r->run.wait_for(std::chrono::milliseconds(20)) != std::future_status::ready) {
  }
}

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

// 40,000 customers' state (about 1 KB each) is ten times the memtable
// budget: once the disk hangs, a checkpoint must stall, and only the stop
// ends its wait.
Input MakeStallingInput(const std::filesystem::path& state_dir) {
  Input in = MakeInput(state_dir, 150000, 40000);
  in.cfg.state.write_timeout_ms = 600000;
  return in;
}

// A stop that left the last records unwritten: a restart on a healthy disk
// resumes from the last good checkpoints.
void CheckResumesAfterStall(const Input& in, const std::filesystem::path& state_dir) {
  const int64_t checkpointed = CheckpointedRecords(in, state_dir);
  CHECK(checkpointed < in.records);
  CheckResumesAfter(in, checkpointed);
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
  Input in = MakeStallingInput(dir.path());
  in.cfg.shutdown_timeout_ms = 1000;
  {
    DiskRun r;
    StartStalled(&in, &r);
    const std::unique_ptr<StreamEngine>& engine = r.engine;
    CHECK(r.fs->blocked() > 0);
    // Reported, not a silent hang.
    const EngineHealth health = engine->probe().Health(std::chrono::milliseconds(1000));
    CHECK_FALSE(health.live);
    CHECK(health.reason.find("checkpoint stalled") != std::string::npos);

    // SIGTERM's path: the stop flag. The engine gives up the stalled
    // checkpoint, tries a final one for shutdown_timeout_ms, says it could
    // not, and returns.
    r.stop.store(true);
    REQUIRE(r.run.wait_for(std::chrono::seconds(60)) == std::future_status::ready);
    const Status st = r.run.get();
    INFO(st.ToString());
    CHECK(st.code() == StatusCode::kUnavailable);
    CHECK(st.message().find("timed out") != std::string::npos);
    CHECK(engine->stats().checkpoint_failures.load() >= 2);
    r.fs->Release();  // lets the store close
  }
  CheckResumesAfterStall(in, dir.path());
}

TEST_CASE(
    "a checkpoint write failing for its own reason during the stop is reported, not taken "
    "for cancelled",
    "[pipeline][integration][fault]") {
  // The checkpoint failures' lines (not RocksDB's own).
  const LogCounter failures("writing a checkpoint: IO error: injected write-ahead log failure");
  testing::ScratchDir dir;
  Input in = MakeInput(dir.path(), 20000, 2000);
  {
    DiskRun r;
    StartRun(in.cfg, /*hang=*/false, &r);
    const std::unique_ptr<StreamEngine>& engine = r.engine;
    testing::HangingFileSystem* fs = r.fs.get();
    REQUIRE(WaitForReceived(*engine, in.records, std::chrono::seconds(120)));
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
    REQUIRE(WaitForReceived(*engine, in.records, std::chrono::seconds(120)));
    const auto deadline = Clock::now() + std::chrono::seconds(60);
    while (fs->blocked_log_writes() == 0 && Clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    REQUIRE(fs->blocked_log_writes() > 0);
    // The stop, then the disk fails the waiting write: a failure of its
    // own while the stop flag is set. The drain writes the checkpoint
    // again (the write was begun before it), which fails too: the run ends
    // with the disk's error.
    StopLoop(&r);
    fs->FailLogWrites();
    REQUIRE(r.run.wait_for(std::chrono::seconds(60)) == std::future_status::ready);
    const Status st = r.run.get();
    INFO(st.ToString());
    CHECK(st.code() == StatusCode::kIOError);
    CHECK(st.message().find("injected write-ahead log failure") != std::string::npos);
    // Every failed write counted once, and logged once: the one the stop
    // found waiting on the disk, the drain's, and the one the revocation
    // of the partitions at the consumer's close tries.
    CHECK(engine->stats().checkpoint_failures.load() == 3);
    CHECK(failures.warnings() == 3);
  }
  // The state the failed writes left is whole: a restart on a healthy disk
  // resumes from the last good checkpoint.
  const int64_t checkpointed = CheckpointedRecords(in, dir.path());
  CHECK(checkpointed > 0);
  CheckResumesAfter(in, checkpointed);
}

TEST_CASE("a checkpoint write the stop cancels is no failure: the drain writes it",
          "[pipeline][integration][fault]") {
  const LogCounter cancelled("stop requested");
  testing::ScratchDir dir;
  Input in = MakeStallingInput(dir.path());
  in.cfg.shutdown_timeout_ms = 120000;  // the drain's write waits for the disk
  // The engine waits for input a second at a time: the stop comes, and
  // cancels the write, while the run loop still runs.
  in.cfg.poll_timeout_ms = 1000;
  {
    DiskRun r;
    StartStalled(&in, &r);
    // The stop cancels the write; once the run loop has ended, the disk
    // answers again and the drain writes the checkpoint, then the last.
    StopLoop(&r);
    r.fs->Release();
    REQUIRE(r.run.wait_for(std::chrono::seconds(120)) == std::future_status::ready);
    REQUIRE_OK(r.run.get());
    CHECK(cancelled.info() >= 1);
    // Not a failure: nothing counted, nothing warned.
    CHECK(cancelled.warnings() == 0);
    CHECK(r.engine->stats().checkpoint_failures.load() == 0);
    CHECK(r.engine->stats().commit_failures.load() == 0);
  }
  // Everything received is checkpointed: a restart has nothing to process.
  CHECK(CheckpointedRecords(in, dir.path()) == in.records);
  CheckResumesAfter(in, in.records);
}

TEST_CASE(
    "exactly_once_stamped: a checkpoint write the stop cancels is not counted as failed, nor "
    "the run said to have written a final checkpoint",
    "[pipeline][integration][fault]") {
  const LogCounter final_written("final checkpoint written");
  testing::ScratchDir dir;
  Input in = MakeStallingInput(dir.path());
  in.cfg.guarantee = config::Guarantee::kExactlyOnceStamped;
  {
    DiskRun r;
    // The engine thread itself waits in the stalled write (this mode
    // checkpoints all at once).
    StartRun(in.cfg, /*hang=*/true, &r);
    REQUIRE(WaitForStalledCheckpoint(*r.engine));
    StopLoop(&r);
    REQUIRE(r.run.wait_for(std::chrono::seconds(60)) == std::future_status::ready);
    // The run ends with the cancellation: in this mode nothing drains after
    // a failed block checkpoint.
    const Status st = r.run.get();
    INFO(st.ToString());
    CHECK(st.code() == StatusCode::kAborted);
    CHECK(final_written.info() == 0);
    CHECK(r.engine->stats().checkpoint_failures.load() == 0);
    CHECK(r.engine->stats().checkpoint_started_ms.load() == -1);
    r.fs->Release();  // lets the store close
  }
  CheckResumesAfterStall(in, dir.path());
}

TEST_CASE(
    "exactly_once_stamped: a block close logged on a stalled store is a stalled checkpoint, "
    "which the stop ends",
    "[pipeline][integration][fault]") {
  testing::ScratchDir dir;
  // 10,000 customers (about 1 KB of state each) over 12 partitions: a
  // partition's checkpoint is about a fifth of the 4 MiB memtable budget.
  Input in = MakeInput(dir.path(), 60000, 10000);
  in.cfg.guarantee = config::Guarantee::kExactlyOnceStamped;
  in.cfg.state.write_timeout_ms = 600000;
  // One block a minute of input: a partition's block closes once it is
  // caught up, logged (a synced store write) before its checkpoint. Once
  // the checkpoints of a few partitions have filled the memtables of a disk
  // that no longer answers, the next write waiting on the store is a
  // partition's logged close.
  in.cfg.commit_interval_ms = 60000;
  {
    DiskRun r;
    // Run until caught up: a partition is closed as soon as it is.
    StartRun(in.cfg, /*hang=*/true, &r, /*until_caught_up=*/true);
    REQUIRE(WaitForStalledCheckpoint(*r.engine));
    CHECK(r.engine->stats().checkpoints.load() > 0);
    // Reported as the stall it is ...
    const EngineHealth health = r.engine->probe().Health(std::chrono::milliseconds(1000));
    CHECK_FALSE(health.live);
    CHECK(health.reason.find("checkpoint stalled") != std::string::npos);
    // ... and the stop ends its wait at once, not at the write timeout.
    StopLoop(&r);
    REQUIRE(r.run.wait_for(std::chrono::seconds(60)) == std::future_status::ready);
    const Status st = r.run.get();
    INFO(st.ToString());
    CHECK(st.code() == StatusCode::kAborted);
    CHECK(r.engine->stats().checkpoint_failures.load() == 0);
    CHECK(r.engine->stats().checkpoint_started_ms.load() == -1);
    r.fs->Release();  // lets the store close
  }
  CheckResumesAfterStall(in, dir.path());
}

}  // namespace
}  // namespace crmstream::runtime
