// End to end through the broker: the same topic of generated events read by
// a bare librdkafka consumer (no processing) and by the engine, one after
// the other in the same run against the same embedded cluster. The engine
// runs at-least-once with the default pipeline: decode, validate, features,
// every online model, and every output produced back to the brokers except
// crm.customer-scores, which the row scores:1 adds. The figure is the ratio
// engine / bare. Given CRMSTREAM_TEST_KAFKA=host:port (a real cluster, e.g.
// from `scripts/kafka.sh env`), the same on it, at least once and with
// Kafka transactions.
//
//   build/release/bench/bench_broker
//   build/release/bench/bench_broker --benchmark_filter=WorkerThreads
//   eval "$(scripts/kafka.sh --instance bench start)"
//   build/release/bench/bench_broker --benchmark_filter=RealBroker
//   scripts/kafka.sh --instance bench remove
#include <benchmark/benchmark.h>
#include <time.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "crmstream/generator/world_generator.h"
#include "crmstream/kafka/bare_consumer.h"
#include "crmstream/kafka/embedded_cluster.h"
#include "crmstream/kafka/producer.h"
#include "crmstream/runtime/kafka_wiring.h"
#include "crmstream/runtime/stream_engine.h"
#include "real_cluster.h"

namespace crmstream::runtime {
namespace {

// 400k events of ~250 bytes over 24 partitions stay under the embedded
// cluster's 5 MiB-per-partition log limit, so no record is dropped.
constexpr int kEvents = 400000;
constexpr int kPartitions = 24;

// The engine's configuration on the cluster at `bootstrap`; names get
// `suffix` (a real cluster outlives the run).
config::EngineConfig BenchConfig(const std::string& bootstrap, const std::string& suffix,
                                 config::Guarantee guarantee) {
  config::EngineConfig cfg;
  cfg.inputs = {{"crm.interactions" + suffix, kPartitions}};
  cfg.guarantee = guarantee;
  cfg.kafka.group_id = "crmstream" + suffix;
  for (auto* t : {&cfg.outputs.customer_scores, &cfg.outputs.churn_alerts, &cfg.outputs.segments,
                  &cfg.outputs.anomalies, &cfg.outputs.correlations, &cfg.outputs.dead_letter}) {
    t->name += suffix;
  }
  cfg.kafka.properties["bootstrap.servers"] = bootstrap;
  return cfg;
}

// kEvents generated events into the input topic of `cfg`.
Status ProduceInput(const config::EngineConfig& cfg) {
  generator::WorldOptions world;
  world.customers = 100000;
  auto gen = std::move(generator::WorldGenerator::Create(world)).value();  // valid options
  kafka::ProducerOptions po;
  po.linger_ms = 20;
  CRM_ASSIGN_OR_RETURN(auto producer, kafka::Producer::Create(MakeClientConfig(cfg.kafka), po));
  std::string key, value;
  for (int i = 0; i < kEvents; ++i) {
    gen->Next(&key, &value);
    (void)producer->Produce(cfg.inputs.front().name, kafka::kPartitionUnassigned, key, value);
  }
  return producer->Flush(std::chrono::seconds(120));
}

// The process's CPU time so far (every thread), seconds.
double ProcessCpuSeconds() {
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) * 1e-9;
}

// Seconds the process's threads have waited for a CPU so far, summed over
// its threads (the second field of /proc/self/task/*/schedstat): on a
// shared machine, what another worker thread could not get.
double RunQueueWaitSeconds() {
  double ns = 0;
  std::error_code ec;
  for (const auto& task : std::filesystem::directory_iterator("/proc/self/task", ec)) {
    std::ifstream in(task.path() / "schedstat");
    double on_cpu = 0, waiting = 0;
    if (in >> on_cpu >> waiting) ns += waiting;
  }
  return ns * 1e-9;
}

struct EngineRate {
  double events_per_second = 0;
  double cores = 0;  // the process's CPU time over the same wall time
  // Threads of the process that were runnable but had no CPU, on average
  // over the same wall time (other processes' load shows here).
  double cpu_wait = 0;
};

// The engine's rate over the whole input of `cfg`, from the first record
// processed to the last, in a fresh state store.
Result<EngineRate> MeasureEngine(config::EngineConfig cfg, bool scores) {
  // A fresh state store per run: a previous run's checkpoint would resume.
  const auto state_dir = std::filesystem::temp_directory_path() /
                         ("crmstream-bench-broker-" + std::to_string(::getpid()));
  std::filesystem::remove_all(state_dir);
  cfg.state_dir = state_dir.string();
  pipeline::PipelineSpec spec;
  spec.processor.emit_customer_scores = scores;
  CRM_ASSIGN_OR_RETURN(auto engine, StreamEngine::Create(cfg, spec));
  std::atomic<bool> stop{false};
  std::thread runner([&] { (void)engine->Run(stop); });
  // Timed from the first record processed to the last, as the bare rate is;
  // bounded, so a lost record fails the run instead of hanging it.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (engine->stats().received.load() == 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  const auto start = std::chrono::steady_clock::now();
  const double cpu_start = ProcessCpuSeconds();
  const double wait_start = RunQueueWaitSeconds();
  // A millisecond's precision over runs of seconds: this thread's wake-ups
  // take no CPU the engine's threads could use.
  while (engine->stats().received.load() < static_cast<uint64_t>(kEvents) &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  const bool complete = engine->stats().received.load() >= static_cast<uint64_t>(kEvents);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const double cpu_seconds = ProcessCpuSeconds() - cpu_start;
  const double wait_seconds = RunQueueWaitSeconds() - wait_start;
  stop.store(true);
  runner.join();
  engine.reset();  // the store closes before its directory goes
  std::filesystem::remove_all(state_dir);
  if (!complete) return Status::Unavailable("the engine did not receive every event in 120 s");
  return EngineRate{kEvents / seconds, cpu_seconds / seconds, wait_seconds / seconds};
}

// One measurement on the cluster at `bootstrap`: the input produced, the
// bare consumer's rate, then the engine's; `create` makes the topics.
template <typename CreateTopics>
void MeasureEngineVsBare(benchmark::State& state, const std::string& bootstrap,
                         const std::string& suffix, CreateTopics create, bool scores,
                         config::Guarantee guarantee) {
  const config::EngineConfig cfg = BenchConfig(bootstrap, suffix, guarantee);
  if (Status st = create(AllTopics(cfg)); !st.ok()) {
    return state.SkipWithError(st.ToString().c_str());
  }
  if (Status st = ProduceInput(cfg); !st.ok()) return state.SkipWithError(st.ToString().c_str());
  auto bare =
      kafka::MeasureBareConsumerRate(MakeClientConfig(cfg.kafka), cfg.inputs.front().name, kEvents);
  if (!bare.ok()) return state.SkipWithError(bare.status().ToString().c_str());
  auto measured = MeasureEngine(cfg, scores);
  if (!measured.ok()) return state.SkipWithError(measured.status().ToString().c_str());
  const double engine_rate = measured->events_per_second;
  state.SetIterationTime(kEvents / engine_rate);
  state.counters["bare_consumer_ev_s"] = bare->messages_per_second;
  state.counters["engine_ev_s"] = engine_rate;
  state.counters["engine_over_bare"] = engine_rate / bare->messages_per_second;
}

void BM_EngineVsBareConsumer(benchmark::State& state) {
  for (auto _ : state) {
    auto cluster = kafka::EmbeddedCluster::Create({});
    if (!cluster.ok()) return state.SkipWithError(cluster.status().ToString().c_str());
    MeasureEngineVsBare(
        state, (*cluster)->bootstrap_servers(), "",
        [&](const std::vector<kafka::TopicSpec>& topics) {
          for (const auto& t : topics) (void)(*cluster)->CreateTopic(t.name, t.partitions);
          return Status::OK();
        },
        state.range(0) != 0, config::Guarantee::kAtLeastOnce);
  }
}
BENCHMARK(BM_EngineVsBareConsumer)
    ->ArgName("scores")
    ->Arg(0)
    ->Arg(1)
    ->Iterations(1)
    ->UseManualTime()
    ->Unit(benchmark::kSecond);

// Worker threads: the same input processed by the engine on one worker
// thread, then on two (each run its own group and fresh store), every
// model and output but customer-scores, at least once. The figure is the
// ratio two / one, measured side by side in the run.
void BM_EngineWorkerThreads(benchmark::State& state) {
  for (auto _ : state) {
    auto cluster = kafka::EmbeddedCluster::Create({});
    if (!cluster.ok()) return state.SkipWithError(cluster.status().ToString().c_str());
    config::EngineConfig cfg =
        BenchConfig((*cluster)->bootstrap_servers(), "", config::Guarantee::kAtLeastOnce);
    for (const auto& t : AllTopics(cfg)) (void)(*cluster)->CreateTopic(t.name, t.partitions);
    if (Status st = ProduceInput(cfg); !st.ok()) return state.SkipWithError(st.ToString().c_str());
    std::array<EngineRate, 2> rates{};
    for (int threads = 1; threads <= 2; ++threads) {
      cfg.worker_threads = threads;
      cfg.kafka.group_id = "crmstream-threads-" + std::to_string(threads);
      // The changelog topics are the group's.
      for (const auto& t : AllTopics(cfg)) (void)(*cluster)->CreateTopic(t.name, t.partitions);
      auto rate = MeasureEngine(cfg, /*scores=*/false);
      if (!rate.ok()) return state.SkipWithError(rate.status().ToString().c_str());
      rates[static_cast<size_t>(threads - 1)] = *rate;
    }
    state.SetIterationTime(kEvents / rates[1].events_per_second);
    state.counters["engine_1t_ev_s"] = rates[0].events_per_second;
    state.counters["engine_2t_ev_s"] = rates[1].events_per_second;
    state.counters["two_over_one"] = rates[1].events_per_second / rates[0].events_per_second;
    // Cores the process used: librdkafka's and the store's threads count too.
    state.counters["engine_1t_cores"] = rates[0].cores;
    state.counters["engine_2t_cores"] = rates[1].cores;
    // Threads waiting for a CPU: above ~0.2 the machine, not the engine,
    // bounds the second worker.
    state.counters["engine_1t_cpu_wait"] = rates[0].cpu_wait;
    state.counters["engine_2t_cpu_wait"] = rates[1].cpu_wait;
  }
}
BENCHMARK(BM_EngineWorkerThreads)->Iterations(1)->UseManualTime()->Unit(benchmark::kSecond);

// On a real cluster (CRMSTREAM_TEST_KAFKA): every model and output, the
// customer scores included, at least once (txn:0) and with Kafka
// transactions (txn:1), each against a bare consumer of its own input.
void BM_EngineVsBareConsumerRealBroker(benchmark::State& state) {
  const std::string bootstrap = bench::RealClusterBootstrap();
  for (auto _ : state) {
    if (bootstrap.empty()) return state.SkipWithError(bench::kNoRealCluster);
    const bool txn = state.range(0) != 0;
    MeasureEngineVsBare(
        state, bootstrap, "-" + std::to_string(::getpid()) + (txn ? "-txn" : "-alo"),
        [&](const std::vector<kafka::TopicSpec>& topics) {
          return bench::EnsureRealTopics(bootstrap, topics);
        },
        true, txn ? config::Guarantee::kExactlyOnceTransactions : config::Guarantee::kAtLeastOnce);
  }
}
BENCHMARK(BM_EngineVsBareConsumerRealBroker)
    ->ArgName("txn")
    ->Arg(0)
    ->Arg(1)
    ->Iterations(1)
    ->UseManualTime()
    ->Unit(benchmark::kSecond);

}  // namespace
}  // namespace crmstream::runtime

BENCHMARK_MAIN();
