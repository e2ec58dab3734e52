// exactly_once with Kafka transactions, on a real Apache Kafka broker (the
// embedded cluster writes no transaction markers and fences nothing): runs
// compared with an uninterrupted run over the same input, every output read
// back with read_committed; a clean restart, and the engine binary ended at
// each point of a commit (the transaction's commit, then the store's write).
#include "runtime/transactional_delivery.h"

#include <signal.h>

#include <catch2/catch.hpp>
#include <optional>
#include <set>

#include "crmstream/common/clock.h"
#include "crmstream/common/crash_point.h"
#include "pipeline/recording_sink.h"
#include "runtime/engine_runs.h"

namespace crmstream::runtime {
namespace {

// Runs of one fixture on the real cluster: names unique to the fixture.
std::vector<EngineRun> TransactionalRuns(const testing::TestBroker& broker,
                                         const std::filesystem::path& dir,
                                         std::initializer_list<std::string> names) {
  std::vector<EngineRun> runs;
  for (const std::string& name : names) {
    EngineRun run;
    run.state_dir = (dir / name).string();
    run.group = broker.Name("txn-" + name);
    run.output_prefix = broker.Name("txn-" + name) + ".";
    run.guarantee = config::Guarantee::kExactlyOnceTransactions;
    run.input_topic = broker.Name("txn.input");
    runs.push_back(run);
  }
  return runs;
}

// The run's engine configuration, written to a file in `dir`.
std::filesystem::path ConfigFileOf(const std::string& bootstrap, const EngineRun& run,
                                   const std::filesystem::path& dir) {
  const std::filesystem::path file = dir / ("config-" + run.group + ".yaml");
  WriteEngineYaml(EngineConfigFor(bootstrap, run), file);
  return file;
}

}  // namespace

TEST_CASE("Held outputs come out in order, and a cleared buffer holds nothing", "[runtime]") {
  BufferedOutputs held;
  held.Emit(OutputKind::kChurnAlerts, "c1", "alert one");
  held.Emit(OutputKind::kDeadLetter, "", "bad record");
  held.Emit(OutputKind::kCustomerScores, "c2", std::string(5000, 'x'));
  CHECK(held.records() == 3);
  pipeline::RecordingSink sink;
  held.Release(&sink);
  REQUIRE(sink.records.size() == 3);
  CHECK(sink.records[0].kind == OutputKind::kChurnAlerts);
  CHECK(sink.records[0].key == "c1");
  CHECK(sink.records[0].value == "alert one");
  CHECK(sink.records[1].key.empty());
  CHECK(sink.records[1].value == "bad record");
  CHECK(sink.records[2].value == std::string(5000, 'x'));
  CHECK(held.records() == 0);
  held.Emit(OutputKind::kSegments, "c3", "dropped");
  held.Clear();
  pipeline::RecordingSink none;
  held.Release(&none);
  CHECK(none.records.empty());
}

TEST_CASE("Transactional engine: a clean stop and a restart equal an uninterrupted run",
          "[runtime][integration][kafka]") {
  CRMSTREAM_USE_BROKER(testing::RealBroker, broker);
  testing::ScratchDir scratch;
  std::vector<EngineRun> runs = TransactionalRuns(broker, scratch.path(), {"restarted", "auto"});
  // exactly_once without a mode: a real cluster has transactions.
  runs[1].guarantee = config::Guarantee::kExactlyOnce;
  EngineFixture fx(runs, &broker);
  fx.Produce(3000);
  uint64_t dropped = 0;
  RunUntilCaughtUp(EngineConfigFor(fx.bootstrap, runs[0]), &dropped);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  fx.Produce(3000);
  RunUntilCaughtUp(EngineConfigFor(fx.bootstrap, runs[0]), &dropped);
  // A clean stop writes the store after its last commit: nothing to catch up.
  CHECK(dropped == 0);
  RunUntilCaughtUp(EngineConfigFor(fx.bootstrap, runs[1]), nullptr);
  const OutputPartitionCounts counts{6, 3, 3, 3, 1, 3, 1, 3};
  // Transactions, not stamps: no output carries a stamp.
  CHECK(ReadAll(fx.client, Topics(runs[1].output_prefix), counts).sequences.empty());
  CheckSameResults(fx.client, runs[0], runs[1]);
}

// With transactions an output is read_committed once its block has closed
// and the transaction holding it has committed. A live block (one that
// ended within the last commit interval) is committed at its close: with a
// commit interval of a minute, a block closed by the first record of the
// next minute must be visible within seconds, not a minute later (the
// engine used to stage a block only a commit interval after the task's
// previous stage, and commit only a commit interval after the previous
// commit). The next minute's block is still open: nothing of it is.
TEST_CASE(
    "Transactional engine: a live block's outputs are committed when it closes, not a commit "
    "interval later",
    "[runtime][integration][kafka]") {
  CRMSTREAM_USE_BROKER(testing::RealBroker, broker);
  testing::ScratchDir scratch;
  std::vector<EngineRun> runs = TransactionalRuns(broker, scratch.path(), {"live"});
  runs[0].input_partitions = 1;
  runs[0].input_topic = broker.Name("txn.live.input");
  EngineFixture fx(runs, &broker);
  config::EngineConfig cfg = EngineConfigFor(fx.bootstrap, runs[0]);
  constexpr int64_t kInterval = 60000;
  cfg.commit_interval_ms = kInterval;

  // Ten customers in this minute's block, one in the next minute's (its
  // broker timestamp closes the first block).
  const int64_t block_start = WallMs() / kInterval * kInterval;
  int64_t n = 0;
  const auto produce = [&](const std::string& customer, int64_t timestamp_ms) {
    const std::string value = R"({"event_id":"live-)" + std::to_string(n++) +
                              R"(","customer_id":")" + customer + R"(","timestamp":)" +
                              std::to_string(timestamp_ms) + R"(,"type":"login"})";
    const rd_kafka_resp_err_t err =
        rd_kafka_producev(fx.producer->handle(), RD_KAFKA_V_TOPIC(fx.input_topic.c_str()),
                          RD_KAFKA_V_PARTITION(0), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                          RD_KAFKA_V_KEY(const_cast<char*>(customer.data()), customer.size()),
                          RD_KAFKA_V_VALUE(const_cast<char*>(value.data()), value.size()),
                          RD_KAFKA_V_TIMESTAMP(timestamp_ms), RD_KAFKA_V_END);
    REQUIRE(err == RD_KAFKA_RESP_ERR_NO_ERROR);
  };
  std::set<std::string> first_block;
  for (int c = 0; c < 10; ++c) {
    const std::string customer = "live-a" + std::to_string(c);
    first_block.insert(customer);
    for (int i = 0; i < 3; ++i) produce(customer, block_start + n);
  }
  produce("live-b", block_start + kInterval + 1);
  REQUIRE_OK(fx.producer->Flush(std::chrono::seconds(30)));

  const std::string scores = cfg.outputs.customer_scores.name;
  const auto committed_keys = [&] {
    std::vector<kafka::TopicPartitionOffset> from;
    for (int32_t q = 0; q < 6; ++q) from.push_back({scores, q, kafka::kOffsetBeginning});
    std::set<std::string> keys;  // read_committed: librdkafka's default isolation
    REQUIRE_OK(
        kafka::ReadPartitionsToEnd(fx.client, from, {}, nullptr, [&](const kafka::MessageView& m) {
          keys.emplace(m.key());
          return Status::OK();
        }));
    return keys;
  };

  REQUIRE_OK_AND_ASSIGN(auto engine, StreamEngine::Create(cfg, pipeline::PipelineSpec{}));
  std::atomic<bool> stop{false};
  Status status;
  std::thread runner([&] { status = engine->Run(stop, RunOptions{}); });
  // Bounded well under the minute the engine used to take.
  std::set<std::string> seen;
  const auto deadline = Clock::now() + std::chrono::seconds(30);
  while (Clock::now() < deadline) {
    seen = committed_keys();
    if (std::includes(seen.begin(), seen.end(), first_block.begin(), first_block.end())) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
  stop.store(true);
  runner.join();
  REQUIRE_OK(status);
  CHECK(std::includes(seen.begin(), seen.end(), first_block.begin(), first_block.end()));
  CHECK(seen.count("live-b") == 0);
  // The stop's drain closes the open block (caught up) and commits it.
  CHECK(committed_keys().count("live-b") == 1);
}

// The engine binary ended at each point of a commit, then restarted; each
// must end as the uninterrupted run does, every output once. What each
// point leaves:
//   before the commit  an open transaction (aborted by the restart's
//                      InitTransactions); store and group offsets agree;
//   after the commit   outputs and group offsets committed, the store
//                      behind: the restart catches up, dropping outputs;
//   before the write   the same;
//   after the write    store and group offsets agree again.
TEST_CASE(
    "Transactional engine: a crash at each point of a commit changes neither outputs "
    "nor state",
    "[runtime][integration][kafka]") {
  CRMSTREAM_USE_BROKER(testing::RealBroker, broker);
  testing::ScratchDir scratch;
  std::vector<EngineRun> runs = TransactionalRuns(
      broker, scratch.path(), {"straight", "crash0", "crash1", "crash2", "crash3"});
  for (EngineRun& run : runs) run.input_partitions = 1;
  EngineFixture fx(runs, &broker);
  const auto config_of = [&](const EngineRun& run) {
    return ConfigFileOf(fx.bootstrap, run, scratch.path());
  };
  const auto log_of = [&](const EngineRun& run, const char* what) {
    return scratch.path() / (run.group + "-" + what + ".log");
  };

  fx.Produce(3000);
  for (size_t i = 1; i < runs.size(); ++i) {
    RunEngineBinaryChecked(config_of(runs[i]), "", log_of(runs[i], "first"));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  fx.Produce(3000);
  RunEngineBinaryChecked(config_of(runs[0]), "", log_of(runs[0], "straight"));

  for (size_t i = 0; i < crash_point::kTransactionPoints.size(); ++i) {
    const std::string point(crash_point::kTransactionPoints[i]);
    const EngineRun& run = runs[i + 1];
    const std::filesystem::path config = config_of(run);
    RunEngineBinaryChecked(config, point, log_of(run, "crash"));
    INFO(point);

    const BinaryRun restarted = RunEngineBinary(config, "", log_of(run, "restart"));
    INFO("restarted run:\n" << restarted.log);
    REQUIRE(restarted.exit.exited(0));
    const bool store_behind =
        point == crash_point::kAfterTransactionCommit || point == crash_point::kBeforeWrite;
    // A committed transaction the store missed carried its changelog
    // records: the restart restores that checkpoint from the changelog
    // instead of processing its records again, so nothing is dropped.
    CHECK((restarted.log.find("restored from the changelog") != std::string::npos) == store_behind);
    CHECK(restarted.log.find("catching up from the checkpoint") == std::string::npos);
    const auto dropped = SuppressedInLog(restarted.log);
    REQUIRE(dropped.has_value());
    CHECK(*dropped == 0);
    CheckSameResults(fx.client, run, runs[0]);
  }
}

// An abortable commit (a rebalance moved the group's generation on, the
// broker refuses the transaction's offsets) aborts and rewinds every task to
// the store. Between the abort and the rewind nothing may be staged again:
// a task whose changes went into the aborted transaction would be committed
// at its offset without them (the idle close's commit aborting, then the
// same tick's checkpoint of the settled task). A produce refused because the
// transaction failed under the producer (librdkafka's abortable state, e.g.
// skipped sequence numbers after a partition moved, refuses every produce
// with _STATE) does the same instead of stopping the engine. The first
// commit, or the first stage, of each run refused, from an empty store and
// from a checkpoint; the results must be the uninterrupted run's.
TEST_CASE(
    "Transactional engine: an aborted commit or a produce refused by a failed transaction loses "
    "neither outputs nor state",
    "[runtime][integration][kafka]") {
  CRMSTREAM_USE_BROKER(testing::RealBroker, broker);
  testing::ScratchDir scratch;
  std::vector<EngineRun> runs =
      TransactionalRuns(broker, scratch.path(), {"straight", "aborted", "refused"});
  for (EngineRun& run : runs) run.input_partitions = 1;
  EngineFixture fx(runs, &broker);
  const auto config_of = [&](const EngineRun& run) {
    return ConfigFileOf(fx.bootstrap, run, scratch.path());
  };
  const auto run_faulted = [&](const EngineRun& run, std::string_view point, const char* name) {
    const std::string fault = std::string(point) + ":1";
    const BinaryRun result = RunEngineBinary(config_of(run), fault, scratch.path() / name);
    INFO(name << ":\n" << result.log);
    REQUIRE(result.exit.exited(0));
    CHECK_THAT(result.log, Catch::Contains("aborting the transaction"));
  };

  fx.Produce(3000);
  run_faulted(runs[1], crash_point::kTransactionAbortable, "aborted-first.log");
  run_faulted(runs[2], crash_point::kTransactionProduceRefused, "refused-first.log");
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  fx.Produce(3000);
  run_faulted(runs[1], crash_point::kTransactionAbortable, "aborted-second.log");
  run_faulted(runs[2], crash_point::kTransactionProduceRefused, "refused-second.log");
  RunEngineBinaryChecked(config_of(runs[0]), "", scratch.path() / "straight.log");
  CheckSameResults(fx.client, runs[1], runs[0]);
  CheckSameResults(fx.client, runs[2], runs[0]);
}

// Zombie fencing: an instance paused (SIGSTOP) past its session timeout
// while it works loses its partitions to a successor; when it resumes, not
// one output of its own may reach read_committed readers (its transaction
// cannot commit: the group's generation moved on), and it must rejoin and
// stop cleanly. The successor (another state directory: it restores the
// state from the changelog, whose records are in the zombie's committed
// transactions only) and the zombie together must leave exactly the outputs of an
// uninterrupted run.
TEST_CASE(
    "Transactional engine: a paused instance that lost its partitions gets no output "
    "through",
    "[runtime][integration][kafka]") {
  CRMSTREAM_USE_BROKER(testing::RealBroker, broker);
  testing::ScratchDir scratch;
  std::vector<EngineRun> runs = TransactionalRuns(broker, scratch.path(), {"straight", "group"});
  EngineRun successor = runs[1];
  successor.state_dir = (scratch.path() / "successor").string();
  EngineFixture fx(runs, &broker);
  const auto config_of = [&](const EngineRun& run, const std::string& name) {
    const std::filesystem::path file = scratch.path() / (name + ".yaml");
    WriteEngineYaml(EngineConfigFor(fx.bootstrap, run), file);
    return file;
  };
  const std::filesystem::path zombie_log = scratch.path() / "zombie.log";
  const auto zombie_says = [&](const std::string& text, std::chrono::seconds within) {
    const auto deadline = Clock::now() + within;
    while (Clock::now() < deadline) {
      if (testing::ReadWholeFile(zombie_log).find(text) != std::string::npos) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
  };

  fx.Produce(4000);
  testing::Child zombie(
      {CRMSTREAM_BINARY, "run", "--config", config_of(runs[1], "zombie").string()}, {}, zombie_log);
  REQUIRE(zombie.started());
  REQUIRE(zombie_says("assigned", std::chrono::seconds(60)));
  std::this_thread::sleep_for(std::chrono::seconds(2));
  // More input, and the pause while the zombie works on it.
  fx.Produce(4000);
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  zombie.Signal(SIGSTOP);

  // The successor waits out the zombie's session, takes every partition,
  // restores their state from the changelog and processes to the end.
  const BinaryRun taken_over =
      RunEngineBinaryChecked(config_of(successor, "successor"), "", scratch.path() / "succ.log");
  CHECK_THAT(taken_over.log, Catch::Contains("restored from the changelog"));

  // The zombie resumes and learns it lost its partitions. If a transaction
  // of its was open, the broker has aborted it meanwhile and bumped the
  // producer's epoch: the zombie is fenced and stops with an error saying so
  // (a restart resumes). If none was, it drops its uncommitted work, rejoins
  // and gets the partitions back once the successor left.
  zombie.Signal(SIGCONT);
  CHECK(zombie_says("lost", std::chrono::seconds(60)));
  std::optional<testing::ChildExit> fenced;
  const auto deadline = Clock::now() + std::chrono::seconds(60);
  while (Clock::now() < deadline && !fenced) {
    if (testing::ReadWholeFile(zombie_log).find("restored from the changelog") !=
        std::string::npos) {
      break;
    }
    if (testing::ReadWholeFile(zombie_log).find("stopped:") != std::string::npos) {
      fenced = zombie.Wait(std::chrono::seconds(30));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  const std::string said = testing::ReadWholeFile(zombie_log);
  INFO("zombie:\n" << said);
  if (fenced) {
    CHECK(fenced->started);
    CHECK(!fenced->timed_out);
    CHECK(fenced->signal == 0);
    CHECK(fenced->exit_status != 0);
    CHECK_THAT(said, Catch::Contains("fenced"));
    // Started again, it brings its store up to the successor's checkpoints
    // from the changelog.
    const BinaryRun restarted = RunEngineBinaryChecked(config_of(runs[1], "zombie"), "",
                                                       scratch.path() / "zombie-restart.log");
    CHECK_THAT(restarted.log, Catch::Contains("restored from the changelog"));
  } else {
    CHECK_THAT(said, Catch::Contains("restored from the changelog"));
    std::this_thread::sleep_for(std::chrono::seconds(3));
    zombie.Signal(SIGTERM);
    CHECK(zombie.Wait(std::chrono::seconds(90)).exited(0));
  }
  WARN("the paused instance " << (fenced ? "was fenced and stopped" : "rejoined"));

  RunUntilCaughtUp(EngineConfigFor(fx.bootstrap, runs[0]), nullptr);
  // The successor's state and everyone's outputs against the uninterrupted run.
  CheckSameResults(fx.client, successor, runs[0]);
}

}  // namespace crmstream::runtime
