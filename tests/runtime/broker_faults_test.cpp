// Broker faults on a real Apache Kafka cluster of the test's own (the shared
// one other tests use is never touched): a broker restarted, a broker whose
// connections go silent (SIGSTOP, then SIGCONT), the leader of the input
// moved by stopping its broker (three nodes). With Kafka transactions the
// faulted run's read_committed outputs and final state must equal a
// fault-free run's over the same input; at least once, nothing may be lost
// (duplicates are counted). An engine that stops on a fault is started
// again, as a supervisor would, and the restarts are reported.
//
// Short by default (CI): 4,000 events, one fault per run. The long form:
// CRMSTREAM_BROKER_FAULT_EVENTS (input size) and CRMSTREAM_BROKER_FAULT_ROUNDS
// (faults per run at most, each once the engine has moved on since the
// previous one), e.g. 20000 and 5.
#include <signal.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <functional>
#include <optional>

#include "runtime/engine_runs.h"
#include "support/private_kafka.h"

namespace crmstream::runtime {
namespace {

int EnvInt(const char* name, int fallback) {
  const char* value = std::getenv(name);
  const int parsed = value != nullptr ? std::atoi(value) : 0;
  return parsed > 0 ? parsed : fallback;
}

int Events() { return EnvInt("CRMSTREAM_BROKER_FAULT_EVENTS", 4000); }
int Rounds() { return EnvInt("CRMSTREAM_BROKER_FAULT_ROUNDS", 1); }

// A private cluster, the engine runs named (their states in a scratch
// directory, each its group and outputs, one input), their topics and the
// input. The test checks `kafka.available()` before Prepare.
struct FaultScenario {
  struct Named {
    std::string name;
    config::Guarantee guarantee;
    bool fault_free;  // a reference: run to the end by Prepare
  };

  explicit FaultScenario(int nodes) : kafka(nodes) {}

  // Creates the runs' topics, produces the input and runs the fault-free ones.
  void Prepare(std::initializer_list<Named> named) {
    for (const Named& n : named) {
      EngineRun run;
      run.state_dir = (scratch.path() / n.name).string();
      run.group = kafka.Name("faults-" + n.name);
      run.output_prefix = kafka.Name("faults-" + n.name) + ".";
      run.guarantee = n.guarantee;
      run.input_topic = kafka.Name("faults.input");
      runs.push_back(run);
    }
    fx.emplace(runs, &kafka);
    fx->Produce(events);
    for (size_t i = 0; const Named& n : named) {
      if (n.fault_free) RunUntilCaughtUp(EngineConfigFor(fx->bootstrap, runs[i]), nullptr);
      ++i;
    }
  }

  testing::PrivateKafka kafka;
  testing::ScratchDir scratch;
  const int events = Events(), rounds = Rounds();
  std::vector<EngineRun> runs;
  std::optional<EngineFixture> fx;
};

struct FaultedRun {
  int restarts = 0;         // engine restarts after a failure stop
  uint64_t suppressed = 0;  // outputs a restarted engine dropped as delivered
  // The engine's received-record count at each fault.
  std::vector<int64_t> received_at_fault;
};

// Runs `run` to the end of the input while a second thread injects `fault`:
// first once the engine has received a third of the input, then again each
// time it has moved on, at most `rounds` times in all (a fault takes up to
// a node's restart, so how many fit depends on how long the engine takes
// over the input; each is reported).
FaultedRun RunWithFaults(const std::string& bootstrap, const EngineRun& run, int events, int rounds,
                         const std::function<void(int)>& fault) {
  FaultedRun out;
  LiveEngine live;
  std::atomic<bool> finished{false};
  std::thread faults([&] {
    int64_t last = -1;
    for (int r = 0; r < rounds && !finished.load(); ++r) {
      // After the first, the next fault waits for the engine to move on
      // (the received count starts again with an engine restarted after a
      // failure, so "moved" is "changed").
      const int64_t threshold = r == 0 ? events / 3 : 1;
      const auto ready = [&] {
        const int64_t now = live.received();
        return now >= threshold && now != last;
      };
      const auto deadline = Clock::now() + std::chrono::seconds(120);
      while (!ready() && !finished.load() && Clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
      last = live.received();
      if (last < threshold || finished.load()) return;
      out.received_at_fault.push_back(last);
      fault(r);
    }
  });
  // Small fetches and a short prefetch queue: the engine takes its input a
  // little at a time, as it does from a large topic, instead of holding all
  // of it before the fault.
  config::EngineConfig cfg = EngineConfigFor(bootstrap, run);
  cfg.kafka.properties["max.partition.fetch.bytes"] = "8192";
  cfg.kafka.properties["queued.min.messages"] = "100";
  cfg.kafka.properties["queued.max.messages.kbytes"] = "64";  // not the memory plan's MiBs
  // Each fault may hold the engine up to a node's restart (15-20 s on a
  // loaded machine) on top of the processing.
  const auto within = std::chrono::seconds(120 + 60 * rounds);
  out.restarts = RunRestartingOnFailure(cfg, 5, &out.suppressed, &live, within);
  finished.store(true);
  faults.join();
  WARN(run.group << ": " << out.received_at_fault.size() << " fault(s) of at most " << rounds
                 << "; " << out.restarts << " restart(s) after a failure stop, " << out.suppressed
                 << " outputs dropped as delivered; records received at "
                 << "the faults: " << ::Catch::Detail::stringify(out.received_at_fault));
  return out;
}

// Every fault came while records were still to come; the first always does
// (one round: CI's short form).
void CheckFaultsInside(const FaultedRun& run, int events) {
  CHECK_FALSE(run.received_at_fault.empty());
  for (int64_t at : run.received_at_fault) {
    CHECK(at > 0);
    CHECK(at < events);
  }
}

#define REQUIRE_PRIVATE_KAFKA(kafka)                                                              \
  if (!(kafka).available()) {                                                                     \
    CRMSTREAM_SKIP_UNLESS_REQUIRED(testing::kRequireKafkaVariable, (kafka).unavailable_reason()); \
  }                                                                                               \
  static_assert(true, "")

}  // namespace

TEST_CASE(
    "Real broker restarted or silent during the run: transactional outputs and state equal a "
    "fault-free run's, and at least once loses nothing",
    "[runtime][integration][kafka][broker-faults]") {
  FaultScenario s(1);
  REQUIRE_PRIVATE_KAFKA(s.kafka);
  using G = config::Guarantee;
  s.Prepare({{"straight", G::kExactlyOnceTransactions, true},
             {"restarted", G::kExactlyOnceTransactions, false},
             {"paused", G::kExactlyOnceTransactions, false},
             {"alo-straight", G::kAtLeastOnce, true},
             {"alo-restarted", G::kAtLeastOnce, false}});
  const auto restart = [&](int) {
    CHECK_OK(s.kafka.KillNode(1));
    CHECK_OK(s.kafka.StartNode(1));
  };
  const FaultedRun restarted =
      RunWithFaults(s.fx->bootstrap, s.runs[1], s.events, s.rounds, restart);
  CheckFaultsInside(restarted, s.events);
  CheckSameResults(s.fx->client, s.runs[1], s.runs[0]);

  // The broker's process stopped for 5 s: connections stay open and nothing
  // answers, as when the network to the broker is cut.
  const FaultedRun paused = RunWithFaults(s.fx->bootstrap, s.runs[2], s.events, s.rounds, [&](int) {
    CHECK_OK(s.kafka.PauseNode(1));
    std::this_thread::sleep_for(std::chrono::seconds(5));
    CHECK_OK(s.kafka.ResumeNode(1));
  });
  CheckFaultsInside(paused, s.events);
  CheckSameResults(s.fx->client, s.runs[2], s.runs[0]);

  const FaultedRun alo = RunWithFaults(s.fx->bootstrap, s.runs[4], s.events, s.rounds, restart);
  CheckFaultsInside(alo, s.events);
  CheckNothingLost(s.fx->client, s.runs[4], s.runs[3]);
}

// Three nodes, every topic replicated three times: the node leading the
// input's first partition is stopped cleanly (its leaderships and any
// transaction or group coordination it held move to the others), then
// started again while the engine goes on.
TEST_CASE(
    "Real broker: the input's leader moved during the run, transactional outputs and state "
    "equal a fault-free run's",
    "[runtime][integration][kafka][broker-faults]") {
  FaultScenario s(3);
  REQUIRE_PRIVATE_KAFKA(s.kafka);
  using G = config::Guarantee;
  s.Prepare({{"straight", G::kExactlyOnceTransactions, true},
             {"moved", G::kExactlyOnceTransactions, false}});
  std::vector<std::pair<int, int>> moves;  // leader before, after
  const FaultedRun moved = RunWithFaults(s.fx->bootstrap, s.runs[1], s.events, s.rounds, [&](int) {
    auto before = s.kafka.Leader(s.fx->input_topic, 0);
    CHECK_OK(before);
    if (!before.ok()) return;
    CHECK_OK(s.kafka.StopNode(*before));
    auto after = s.kafka.Leader(s.fx->input_topic, 0);
    CHECK_OK(after);
    moves.emplace_back(*before, after.ok() ? *after : -1);
    CHECK_OK(s.kafka.StartNode(*before));
  });
  CheckFaultsInside(moved, s.events);
  for (const auto& [before, after] : moves) {
    WARN("leader of the input's partition 0 moved from node " << before << " to " << after);
    CHECK(after > 0);
    CHECK(after != before);
  }
  CheckSameResults(s.fx->client, s.runs[1], s.runs[0]);
}

}  // namespace crmstream::runtime
