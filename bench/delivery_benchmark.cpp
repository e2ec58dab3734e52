// Exactly-once against at-least-once: the same pre-produced topic of
// generated events processed by the engine with every model and output on,
// once per guarantee, alternating, in the same run against the same
// cluster. The figure is the ratio of the rates. On the embedded cluster
// exactly_once means stamped outputs; on a real one (the second benchmark,
// given CRMSTREAM_TEST_KAFKA=host:port, e.g. from `scripts/kafka.sh env`)
// Kafka transactions.
//
//   build/release/bench/bench_delivery
//   CRMSTREAM_BENCH_EVENTS=50000 build/release/bench/bench_delivery   # quick run
//   eval "$(scripts/kafka.sh env)"; build/release/bench/bench_delivery
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <thread>

#include "crmstream/generator/world_generator.h"
#include "crmstream/kafka/embedded_cluster.h"
#include "crmstream/kafka/producer.h"
#include "crmstream/kafka/topic_admin.h"
#include "crmstream/runtime/kafka_wiring.h"
#include "crmstream/runtime/stream_engine.h"

namespace crmstream::runtime {
namespace {

constexpr int kPartitions = 6;

int EventCount() {
  const char* n = std::getenv("CRMSTREAM_BENCH_EVENTS");
  return n != nullptr ? std::atoi(n) : 200000;
}

config::EngineConfig ConfigFor(const std::string& bootstrap, const std::string& input,
                               const std::string& name, const std::filesystem::path& state_dir,
                               config::Guarantee g) {
  config::EngineConfig cfg;
  cfg.inputs = {{input, kPartitions}};
  cfg.kafka.properties["bootstrap.servers"] = bootstrap;
  cfg.kafka.group_id = name;
  cfg.state_dir = (state_dir / name).string();
  cfg.guarantee = g;
  cfg.commit_interval_ms = 1000;
  for (auto* t : {&cfg.outputs.customer_scores, &cfg.outputs.churn_alerts, &cfg.outputs.segments,
                  &cfg.outputs.anomalies, &cfg.outputs.correlations, &cfg.outputs.dead_letter}) {
    t->name = name + "." + t->name;
  }
  return cfg;
}

// Seconds from the first record received to the end of the final checkpoint.
Result<double> TimeRun(const config::EngineConfig& cfg, uint64_t events) {
  pipeline::PipelineSpec spec;
  CRM_ASSIGN_OR_RETURN(auto engine, StreamEngine::Create(cfg, spec));
  std::atomic<bool> stop{false};
  RunOptions options;
  options.until_caught_up = true;
  std::atomic<bool> finished{false};
  Status status;
  std::thread runner([&] {
    status = engine->Run(stop, options);
    finished.store(true);
  });
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(300);
  while (engine->stats().received.load() == 0 && !finished.load() &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  const auto start = std::chrono::steady_clock::now();
  while (!finished.load() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  stop.store(true);
  runner.join();
  CRM_RETURN_NOT_OK(status);
  if (engine->stats().received.load() != events) {
    return Status::Internal("the engine received " +
                            std::to_string(engine->stats().received.load()) + " of " +
                            std::to_string(events) + " events");
  }
  return seconds;
}

// One measurement on the cluster at `bootstrap`; `create` makes topics.
// Names get `suffix` (a real cluster outlives the run).
template <typename CreateTopics>
void MeasureDelivery(benchmark::State& state, const std::string& bootstrap,
                     const std::string& suffix, CreateTopics create) {
  const int events = EventCount();
  const auto dir = std::filesystem::temp_directory_path() /
                   ("crmstream-bench-delivery-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  const std::string input = "bench.input" + suffix;
  const std::array<std::pair<std::string, config::Guarantee>, 4> runs{
      {{"alos1" + suffix, config::Guarantee::kAtLeastOnce},
       {"eos1" + suffix, config::Guarantee::kExactlyOnce},
       {"alos2" + suffix, config::Guarantee::kAtLeastOnce},
       {"eos2" + suffix, config::Guarantee::kExactlyOnce}}};
  std::vector<kafka::TopicSpec> topics{{input, kPartitions}};
  for (const auto& [name, g] : runs) {
    for (const auto& t : AllTopics(ConfigFor(bootstrap, input, name, dir, g))) {
      if (t.name != input) topics.push_back({t.name, t.partitions});
    }
  }
  if (Status st = create(topics); !st.ok()) return state.SkipWithError(st.ToString().c_str());
  {
    generator::WorldOptions world;
    world.customers = 20000;
    auto gen = std::move(generator::WorldGenerator::Create(world)).value();  // valid options
    kafka::ProducerOptions po;
    po.linger_ms = 20;
    kafka::ClientConfig client;
    client.Set("bootstrap.servers", bootstrap);
    auto producer = kafka::Producer::Create(client, po);
    if (!producer.ok()) return state.SkipWithError(producer.status().ToString().c_str());
    std::string key, value;
    for (int i = 0; i < events; ++i) {
      gen->Next(&key, &value);
      (void)(*producer)->Produce(input, kafka::kPartitionUnassigned, key, value);
    }
    (void)(*producer)->Flush(std::chrono::seconds(120));
  }
  double alos = 0, eos = 0;
  for (const auto& [name, g] : runs) {
    auto seconds =
        TimeRun(ConfigFor(bootstrap, input, name, dir, g), static_cast<uint64_t>(events));
    if (!seconds.ok()) return state.SkipWithError(seconds.status().ToString().c_str());
    (g == config::Guarantee::kExactlyOnce ? eos : alos) += *seconds;
  }
  std::filesystem::remove_all(dir);
  state.SetIterationTime(alos + eos);
  state.counters["at_least_once_ev_s"] = 2.0 * events / alos;
  state.counters["exactly_once_ev_s"] = 2.0 * events / eos;
  state.counters["exactly_once_over_at_least_once"] = alos / eos;
}

void BM_ExactlyOnceVsAtLeastOnce(benchmark::State& state) {
  for (auto _ : state) {
    auto cluster = kafka::EmbeddedCluster::Create({});
    if (!cluster.ok()) return state.SkipWithError(cluster.status().ToString().c_str());
    MeasureDelivery(state, (*cluster)->bootstrap_servers(), "",
                    [&](const std::vector<kafka::TopicSpec>& topics) {
                      for (const auto& t : topics) {
                        CRM_RETURN_NOT_OK((*cluster)->CreateTopic(t.name, t.partitions));
                      }
                      return Status::OK();
                    });
  }
}
BENCHMARK(BM_ExactlyOnceVsAtLeastOnce)->Iterations(1)->UseManualTime()->Unit(benchmark::kSecond);

// Transactions on a real cluster against at-least-once on it.
void BM_TransactionsVsAtLeastOnceRealBroker(benchmark::State& state) {
  const char* bootstrap = std::getenv("CRMSTREAM_TEST_KAFKA");
  for (auto _ : state) {
    if (bootstrap == nullptr || *bootstrap == '\0') {
      return state.SkipWithError(
          "no real cluster: set CRMSTREAM_TEST_KAFKA (scripts/kafka.sh env)");
    }
    kafka::ClientConfig client;
    client.Set("bootstrap.servers", bootstrap);
    MeasureDelivery(state, bootstrap, "-" + std::to_string(::getpid()),
                    [&](const std::vector<kafka::TopicSpec>& topics) {
                      CRM_ASSIGN_OR_RETURN(auto admin, kafka::TopicAdmin::Create(client));
                      return admin->EnsureTopics(topics).status();
                    });
  }
}
BENCHMARK(BM_TransactionsVsAtLeastOnceRealBroker)
    ->Iterations(1)
    ->UseManualTime()
    ->Unit(benchmark::kSecond);

}  // namespace
}  // namespace crmstream::runtime

BENCHMARK_MAIN();
