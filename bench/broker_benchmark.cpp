// End to end through the broker: the same topic of generated events read by
// a bare librdkafka consumer (no processing) and by the engine, one after
// the other in the same run against the same embedded cluster. The engine
// runs at-least-once with the default pipeline: decode, validate, features,
// every online model, and every output produced back to the brokers except
// crm.customer-scores, which the row scores:1 adds. The figure is the ratio
// engine / bare.
//
//   build/release/bench/bench_broker
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include "crmstream/generator/world_generator.h"
#include "crmstream/kafka/bare_consumer.h"
#include "crmstream/kafka/embedded_cluster.h"
#include "crmstream/kafka/producer.h"
#include "crmstream/runtime/kafka_wiring.h"
#include "crmstream/runtime/stream_engine.h"

namespace crmstream::runtime {
namespace {

// 400k events of ~250 bytes over 24 partitions stay under the embedded
// cluster's 5 MiB-per-partition log limit, so no record is dropped.
constexpr int kEvents = 400000;
constexpr int kPartitions = 24;

void BM_EngineVsBareConsumer(benchmark::State& state) {
  for (auto _ : state) {
    auto cluster = kafka::EmbeddedCluster::Create({});
    if (!cluster.ok()) return state.SkipWithError(cluster.status().ToString().c_str());
    config::EngineConfig cfg;
    cfg.inputs = {{"crm.interactions", kPartitions}};
    // A fresh state store per run: a previous run's checkpoint would resume.
    const auto state_dir = std::filesystem::temp_directory_path() /
                           ("crmstream-bench-broker-" + std::to_string(::getpid()));
    std::filesystem::remove_all(state_dir);
    cfg.state_dir = state_dir.string();
    cfg.kafka.properties["bootstrap.servers"] = (*cluster)->bootstrap_servers();
    for (const auto& t : AllTopics(cfg)) (void)(*cluster)->CreateTopic(t.name, t.partitions);

    {
      generator::WorldOptions world;
      world.customers = 100000;
      auto gen = std::move(generator::WorldGenerator::Create(world)).value();  // valid options
      kafka::ProducerOptions po;
      po.linger_ms = 20;
      auto producer = kafka::Producer::Create(MakeClientConfig(cfg.kafka), po);
      std::string key, value;
      for (int i = 0; i < kEvents; ++i) {
        gen->Next(&key, &value);
        (void)(*producer)->Produce("crm.interactions", kafka::kPartitionUnassigned, key, value);
      }
      (void)(*producer)->Flush(std::chrono::seconds(120));
    }

    auto bare =
        kafka::MeasureBareConsumerRate(MakeClientConfig(cfg.kafka), "crm.interactions", kEvents);
    if (!bare.ok()) return state.SkipWithError(bare.status().ToString().c_str());

    pipeline::PipelineSpec spec;
    spec.processor.emit_customer_scores = state.range(0) != 0;
    auto engine = StreamEngine::Create(cfg, spec);
    if (!engine.ok()) return state.SkipWithError(engine.status().ToString().c_str());
    std::atomic<bool> stop{false};
    std::thread runner([&] { (void)(*engine)->Run(stop); });
    // Timed from the first record processed to the last, as the bare rate is;
    // bounded, so a lost record fails the run instead of hanging it.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
    while ((*engine)->stats().received.load() == 0 && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    const auto start = std::chrono::steady_clock::now();
    while ((*engine)->stats().received.load() < static_cast<uint64_t>(kEvents) &&
           std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    const bool complete = (*engine)->stats().received.load() >= static_cast<uint64_t>(kEvents);
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    stop.store(true);
    runner.join();
    engine->reset();  // the store closes before its directory goes
    std::filesystem::remove_all(state_dir);
    if (!complete) return state.SkipWithError("the engine did not receive every event in 120 s");
    const double engine_rate = kEvents / seconds;
    state.SetIterationTime(seconds);
    state.counters["bare_consumer_ev_s"] = bare->messages_per_second;
    state.counters["engine_ev_s"] = engine_rate;
    state.counters["engine_over_bare"] = engine_rate / bare->messages_per_second;
  }
}
BENCHMARK(BM_EngineVsBareConsumer)
    ->ArgName("scores")
    ->Arg(0)
    ->Arg(1)
    ->Iterations(1)
    ->UseManualTime()
    ->Unit(benchmark::kSecond);

}  // namespace
}  // namespace crmstream::runtime

BENCHMARK_MAIN();
