// End to end through the broker: the same topic of generated events read by
// a bare librdkafka consumer (no processing) and by the engine, one after
// the other in the same run against the same embedded cluster. The engine
// runs at-least-once with the default pipeline: decode, validate, features,
// every online model, and every output produced back to the brokers except
// crm.customer-scores, which the row scores:1 adds. The figure is the ratio
// engine / bare. The embedded cluster runs in this process: each engine run
// also reports its threads' CPU by kind on stderr, and engine_ev_per_cpu_s,
// the events per CPU-second of the engine's own threads (the cluster's
// "rdk:mock" left out), the figure comparable to bench_pipeline's replay. Given
// CRMSTREAM_TEST_KAFKA=host:port (a real cluster, e.g. from `scripts/kafka.sh env`), the same on
// it, at least once and with Kafka transactions.
//
//   build/release/bench/bench_broker
//   build/release/bench/bench_broker --benchmark_filter=WorkerThreads
//   build/release/bench/bench_broker --benchmark_filter=CheckpointShare
//   eval "$(scripts/kafka.sh --instance bench start)"
//   build/release/bench/bench_broker --benchmark_filter=RealBroker
//   scripts/kafka.sh --instance bench remove
#include <benchmark/benchmark.h>
#include <pthread.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
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

// Every thread's CPU time so far, seconds, by thread id, with its name
// (the first field of /proc/self/task/*/schedstat: nanoseconds on a CPU).
struct ThreadCpu {
  std::string name;
  double seconds = 0;
};
std::map<int, ThreadCpu> ThreadCpuSeconds() {
  std::map<int, ThreadCpu> threads;
  std::error_code ec;
  for (const auto& task : std::filesystem::directory_iterator("/proc/self/task", ec)) {
    std::ifstream stat(task.path() / "schedstat");
    std::ifstream comm(task.path() / "comm");
    ThreadCpu t;
    double on_cpu = 0;
    if (!(stat >> on_cpu) || !std::getline(comm, t.name)) continue;
    t.seconds = on_cpu * 1e-9;
    threads[std::stoi(task.path().filename().string())] = t;
  }
  return threads;
}

// The threads' CPU between two snapshots, by kind of thread: the embedded
// cluster (librdkafka's mock brokers, one thread, "rdk:mock"), which a
// deployment runs elsewhere, apart from the engine's own. Threads that ended
// in between are missed; a thread started in between counts from zero.
struct CpuSplit {
  std::map<std::string, double> by_kind;  // seconds
  double engine = 0;                      // every thread but the cluster and this benchmark's
  double cluster = 0;
};
CpuSplit SplitCpu(const std::map<int, ThreadCpu>& before, const std::map<int, ThreadCpu>& after) {
  CpuSplit split;
  for (const auto& [tid, t] : after) {
    const auto was = before.find(tid);
    const double s = t.seconds - (was == before.end() ? 0 : was->second.seconds);
    // Numbered threads (rdk:broker1, crm:worker1, rocksdb:low0) by kind.
    std::string kind = t.name;
    while (!kind.empty() &&
           (std::isdigit(static_cast<unsigned char>(kind.back())) != 0 || kind.back() == '-')) {
      kind.pop_back();
    }
    if (tid == ::getpid()) kind = "benchmark";
    split.by_kind[kind] += s;
    if (kind == "rdk:mock") {
      split.cluster += s;
    } else if (kind != "benchmark") {
      split.engine += s;
    }
  }
  return split;
}

struct EngineRate {
  double events_per_second = 0;
  double cores = 0;  // the process's CPU time over the same wall time
  // Threads of the process that were runnable but had no CPU, on average
  // over the same wall time (other processes' load shows here).
  double cpu_wait = 0;
  // The engine's own threads' CPU (all but the embedded cluster's) and the
  // cluster's, seconds.
  CpuSplit cpu;
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
  std::thread runner([&] {
    pthread_setname_np(pthread_self(), "crm:engine");
    (void)engine->Run(stop);
  });
  // Timed from the first record processed to the last, as the bare rate is;
  // bounded, so a lost record fails the run instead of hanging it.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (engine->stats().received.load() == 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  const auto start = std::chrono::steady_clock::now();
  const double cpu_start = ProcessCpuSeconds();
  const double wait_start = RunQueueWaitSeconds();
  const auto threads_start = ThreadCpuSeconds();
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
  const CpuSplit cpu = SplitCpu(threads_start, ThreadCpuSeconds());
  const EngineStats& es = engine->stats();
  uint64_t outputs = 0;
  for (const auto& k : es.outputs) outputs += k.load();
  std::fprintf(stderr,
               "engine: %llu outputs, %llu changelog records, %llu checkpoints (%lld bytes the "
               "last), %llu batches\n",
               static_cast<unsigned long long>(outputs),
               static_cast<unsigned long long>(es.changelog_records.load()),
               static_cast<unsigned long long>(es.checkpoints.load()),
               static_cast<long long>(es.checkpoint_bytes.load()),
               static_cast<unsigned long long>(es.batches.load()));
  stop.store(true);
  runner.join();
  engine.reset();  // the store closes before its directory goes
  std::filesystem::remove_all(state_dir);
  if (!complete) return Status::Unavailable("the engine did not receive every event in 120 s");
  // The split, thread kind by kind, for the profile beside the figure.
  std::string line = "engine threads' CPU over " + std::to_string(seconds) +
                     " s (runnable without a CPU: " + std::to_string(wait_seconds) + " s):";
  for (const auto& [kind, s] : cpu.by_kind) {
    if (s >= 0.005) line += " " + kind + " " + std::to_string(s);
  }
  std::fprintf(stderr, "%s\n", line.c_str());
  return EngineRate{kEvents / seconds, cpu_seconds / seconds, wait_seconds / seconds, cpu};
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
  // The embedded cluster runs in this process and takes CPU a deployment
  // gives to its brokers: events per CPU-second of the engine's own threads
  // is the figure comparable to the replay's events/s on one core.
  state.counters["engine_cpu_s"] = measured->cpu.engine;
  state.counters["cluster_cpu_s"] = measured->cpu.cluster;
  state.counters["engine_ev_per_cpu_s"] = kEvents / std::max(1e-9, measured->cpu.engine);
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

// The same pre-produced input on one embedded cluster, processed by the
// engine once per run, at least once, every model and output but
// customer-scores; `configure(run, &config)` sets each run's own group (the
// changelog topics are the group's) and what else differs. A fresh store each.
template <size_t N, typename Configure>
Result<std::array<EngineRate, N>> MeasureEngineRuns(Configure configure) {
  CRM_ASSIGN_OR_RETURN(auto cluster, kafka::EmbeddedCluster::Create({}));
  const config::EngineConfig cfg =
      BenchConfig(cluster->bootstrap_servers(), "", config::Guarantee::kAtLeastOnce);
  for (const auto& t : AllTopics(cfg)) (void)cluster->CreateTopic(t.name, t.partitions);
  CRM_RETURN_NOT_OK(ProduceInput(cfg));
  std::array<EngineRate, N> rates{};
  for (size_t run = 0; run < N; ++run) {
    config::EngineConfig c = cfg;
    configure(run, &c);
    for (const auto& t : AllTopics(c)) (void)cluster->CreateTopic(t.name, t.partitions);
    auto rate = MeasureEngine(c, /*scores=*/false);
    if (!rate.ok()) return rate.status();
    rates[run] = *rate;
  }
  return rates;
}

// Worker threads: the same input processed by the engine on one worker
// thread, then on two (each run its own group and fresh store), every
// model and output but customer-scores, at least once. The figure is the
// ratio two / one, measured side by side in the run.
void BM_EngineWorkerThreads(benchmark::State& state) {
  for (auto _ : state) {
    auto measured = MeasureEngineRuns<2>([](size_t run, config::EngineConfig* c) {
      c->worker_threads = static_cast<int>(run) + 1;
      c->kafka.group_id = "crmstream-threads-" + std::to_string(c->worker_threads);
    });
    if (!measured.ok()) return state.SkipWithError(measured.status().ToString().c_str());
    const std::array<EngineRate, 2>& rates = *measured;
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

// What the checkpoints cost: the same input processed by the engine three
// times (each its own group and fresh store, at least once, every model and
// output but customer-scores): as configured (a checkpoint every second,
// mirrored to the changelog topics), with no changelog, and with no
// checkpoint during the run (commit interval 10 min). The figures are the
// events per CPU-second of the engine's own threads (the embedded cluster's
// left out), and the CPU of the run without checkpoints over each of the
// other two's, from one run.
void BM_EngineCheckpointShare(benchmark::State& state) {
  static constexpr const char* kNames[] = {"checkpoints", "no_changelog", "no_checkpoints"};
  for (auto _ : state) {
    auto measured = MeasureEngineRuns<3>([](size_t run, config::EngineConfig* c) {
      c->kafka.group_id = std::string("crmstream-") + kNames[run];
      c->state.changelog = run == 0;
      if (run == 2) c->commit_interval_ms = 600000;
    });
    if (!measured.ok()) return state.SkipWithError(measured.status().ToString().c_str());
    const std::array<EngineRate, 3>& rates = *measured;
    state.SetIterationTime(kEvents / rates[0].events_per_second);
    for (size_t run = 0; run < rates.size(); ++run) {
      state.counters[std::string(kNames[run]) + "_ev_per_cpu_s"] =
          kEvents / std::max(1e-9, rates[run].cpu.engine);
      state.counters[std::string(kNames[run]) + "_ev_s"] = rates[run].events_per_second;
    }
    state.counters["checkpoints_over_none"] = rates[2].cpu.engine / rates[0].cpu.engine;
    state.counters["no_changelog_over_none"] = rates[2].cpu.engine / rates[1].cpu.engine;
  }
}
BENCHMARK(BM_EngineCheckpointShare)->Iterations(1)->UseManualTime()->Unit(benchmark::kSecond);

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
