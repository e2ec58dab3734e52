// Worker threads (runtime/worker_pool.h): the partitions processed by
// several threads give what one thread gives, and a rebalance while the
// workers run loses nothing.
#include <sched.h>

#include <cerrno>
#include <cstring>
#include <set>
#include <thread>

#include "crmstream/common/process_cpus.h"
#include "engine_runs.h"

namespace crmstream::runtime {
namespace {

// The state families that do not follow the batching (the models' state
// does, between two one-thread runs as well: engine_runs.h), by entry.
std::map<std::string, std::string> BatchingFreeState(
    const std::map<std::string, std::string>& entries) {
  std::map<std::string, std::string> out;
  for (const auto family :
       {state::StateFamily::kFeatures, state::StateFamily::kOffsets, state::StateFamily::kDedup}) {
    const std::string prefix = std::string(state::StateFamilyName(family)) + "/";
    for (auto it = entries.lower_bound(prefix);
         it != entries.end() && it->first.starts_with(prefix); ++it) {
      out.insert(*it);
    }
  }
  return out;
}

// A run to the end of the input; the worker threads it resolved to.
int RunToEnd(const config::EngineConfig& cfg) {
  BackgroundEngine engine(cfg, /*until_caught_up=*/true);
  CHECK(engine.WaitFinished(std::chrono::seconds(120)));
  const int workers = engine.engine().worker_threads();
  REQUIRE_OK(engine.Stop());
  CHECK(engine.stats().received.load() > 0);
  return workers;
}

}  // namespace

TEST_CASE("One to three worker threads: the same outputs and the same state",
          "[runtime][integration]") {
  testing::ScratchDir scratch;
  std::vector<EngineRun> runs;
  for (int workers = 1; workers <= 3; ++workers) {
    const std::string name = "workers" + std::to_string(workers);
    EngineRun run{(scratch.path() / name).string(), name, name + "."};
    run.guarantee = config::Guarantee::kAtLeastOnce;
    run.input_partitions = 6;  // two tasks a worker at three
    runs.push_back(run);
  }
  EngineFixture fx(runs);
  fx.Produce(6000);
  for (int workers = 1; workers <= 3; ++workers) {
    config::EngineConfig cfg = EngineConfigFor(fx.bootstrap, runs[workers - 1]);
    cfg.worker_threads = workers;
    cfg.consume_batch_size = 256;  // many batches, each spread over the workers
    CHECK(RunToEnd(cfg) == workers);
  }
  // Both ways: the multisets of dead letters are equal, each customer's
  // latest scores and the features, offsets and dedup windows identical.
  for (int workers = 2; workers <= 3; ++workers) {
    INFO(workers << " worker threads");
    CHECK(CheckNothingLost(fx.client, runs[workers - 1], runs[0]) == 0);
    CHECK(CheckNothingLost(fx.client, runs[0], runs[workers - 1]) == 0);
  }
}

TEST_CASE("worker_threads 0 resolves to the cores, at most the partitions, and exactly-once to one",
          "[runtime][integration]") {
  testing::ScratchDir scratch;
  EngineRun at_least_once{(scratch.path() / "alo").string(), "auto-alo", "alo."};
  at_least_once.guarantee = config::Guarantee::kAtLeastOnce;
  at_least_once.input_partitions = 1;
  EngineRun exactly_once{(scratch.path() / "eo").string(), "auto-eo", "eo."};
  exactly_once.input_partitions = 1;
  const std::array<EngineRun, 2> runs{at_least_once, exactly_once};
  EngineFixture fx(runs);
  config::EngineConfig cfg = EngineConfigFor(fx.bootstrap, at_least_once);
  cfg.worker_threads = 0;
  cfg.inputs = {{fx.input_topic, 1}};
  auto one_partition = StreamEngine::Create(cfg, pipeline::PipelineSpec{});
  REQUIRE_OK(one_partition);
  CHECK((*one_partition)->worker_threads() == 1);
  // The count the configuration gives (no changelog: its topic has one).
  cfg.inputs = {{fx.input_topic, 64}};
  cfg.state.changelog = false;
  cfg.state_dir += "-wide";
  auto wide = StreamEngine::Create(cfg, pipeline::PipelineSpec{});
  REQUIRE_OK(wide);
  CHECK((*wide)->worker_threads() == std::min(64, UsableCores()));
  // "One per core" counts the cores the process may use: created on a
  // thread pinned to one CPU (as under `taskset -c 0`), one worker, not one
  // per CPU of the machine sharing that core.
  cfg.state_dir += "-pinned";
  int pinned_workers = 0;
  std::string pinned_error;
  std::thread([&] {
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(sched_getcpu(), &one);
    if (sched_setaffinity(0, sizeof one, &one) != 0) {
      pinned_error = std::string("sched_setaffinity: ") + std::strerror(errno);
      return;
    }
    auto pinned = StreamEngine::Create(cfg, pipeline::PipelineSpec{});
    if (pinned.ok()) {
      pinned_workers = (*pinned)->worker_threads();
    } else {
      pinned_error = pinned.status().ToString();
    }
  }).join();
  INFO(pinned_error);
  CHECK(pinned_error.empty());
  CHECK(pinned_workers == 1);
  config::EngineConfig eo = EngineConfigFor(fx.bootstrap, exactly_once);
  eo.worker_threads = 4;
  eo.inputs = {{fx.input_topic, 8}};
  eo.state.changelog = false;
  auto stamped = StreamEngine::Create(eo, pipeline::PipelineSpec{});
  REQUIRE_OK(stamped);
  CHECK((*stamped)->worker_threads() == 1);
}

TEST_CASE(
    "A second instance joins one running on two worker threads: nothing lost, the state of one "
    "uninterrupted instance",
    "[runtime][integration]") {
  testing::ScratchDir scratch;
  EngineRun first{(scratch.path() / "first").string(), "workers-join", "wj."};
  first.guarantee = config::Guarantee::kAtLeastOnce;
  first.input_partitions = 4;
  EngineRun reference{(scratch.path() / "ref").string(), "workers-join-ref", "wjr."};
  reference.guarantee = config::Guarantee::kAtLeastOnce;
  reference.input_partitions = 4;
  const std::array<EngineRun, 2> runs{first, reference};
  EngineFixture fx(runs);
  config::EngineConfig cfg = EngineConfigFor(fx.bootstrap, first);
  cfg.worker_threads = 2;
  cfg.consume_batch_size = 128;
  config::EngineConfig second_cfg = cfg;
  second_cfg.state_dir = (scratch.path() / "second").string();

  fx.Produce(4000);
  BackgroundEngine a(cfg);
  REQUIRE(a.engine().worker_threads() == 2);
  const auto deadline = Clock::now() + std::chrono::seconds(90);
  while (a.stats().received.load() < 1500 && Clock::now() < deadline && !a.finished()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  REQUIRE(a.stats().received.load() >= 1500);
  // Joins while records keep arriving and the first's workers process
  // them: the revocation stops them at a batch boundary.
  std::atomic<bool> joined{false};
  Status fed;
  std::thread feeder([&] {
    std::string key, value;
    for (int chunk = 0; chunk < 80 && !joined.load() && fed.ok(); ++chunk) {
      for (int i = 0; i < 50 && fed.ok(); ++i) {
        fx.gen->Next(&key, &value);
        fed = fx.producer->Produce(fx.input_topic, kafka::kPartitionUnassigned, key, value);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
    if (fed.ok()) fed = fx.producer->Flush(std::chrono::seconds(30));
  });
  BackgroundEngine b(second_cfg);
  const bool assigned =
      WaitAllAssigned({&a, &b}, first.input_partitions, deadline + std::chrono::seconds(60));
  joined.store(true);
  feeder.join();
  REQUIRE_OK(fed);
  REQUIRE(assigned);
  fx.Produce(2000);
  const bool done = WaitCheckpointedToEnd(fx.client, fx.input_topic, first.input_partitions,
                                          {first.state_dir, second_cfg.state_dir},
                                          deadline + std::chrono::seconds(120));
  if (!done) {
    FAIL("the two instances did not checkpoint the input to its end; received "
         << a.stats().received.load() << " and " << b.stats().received.load());
  }
  CHECK(a.stats().rebalances.load() >= 2);  // assigned, then a share revoked
  CHECK(b.stats().received.load() > 0);
  REQUIRE_OK(b.Stop());
  REQUIRE_OK(a.Stop());

  config::EngineConfig ref_cfg = EngineConfigFor(fx.bootstrap, reference);
  ref_cfg.worker_threads = 1;
  CHECK(RunToEnd(ref_cfg) == 1);
  const auto merged = BatchingFreeState(MergedState({first.state_dir, second_cfg.state_dir}));
  const auto expected = BatchingFreeState(StateEntries(reference.state_dir));
  REQUIRE(expected.size() > 300);
  CHECK(merged.size() == expected.size());
  CHECK(merged == expected);
  // Every output of the uninterrupted instance is on the two instances'
  // topics (repeats allowed: at least once).
  const int repeated = CheckNothingLost(fx.client, first, reference, /*compare_state=*/false);
  WARN(repeated << " outputs repeated across the rebalance");
}

}  // namespace crmstream::runtime
