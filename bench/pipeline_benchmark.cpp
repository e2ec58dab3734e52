// Replay throughput on one core: decode + validate + dedup + features, then
// with the customer-scores JSON records, then with every online model and
// every output (churn alerts, segments, anomalies, correlations), over 2^20
// generated events for 100,000 customers held in memory, so the figure is the
// pipeline's and not the disk's. Each run is one pass over distinct events,
// starting from an empty state, as a replay is.
//
// The processor coalesces outputs until FlushOutputs() (the engine flushes at
// every commit) and scores customers there, so a pass flushes every
// `flush_every` events: 65536 is about 15 flushes per second at 1M events/s
// (the engine commits once per second by default); 2048, once per consumer
// batch, is the worst case.
//
//   build/release/bench/bench_pipeline
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "crmstream/generator/world_generator.h"
#include "crmstream/pipeline/event_processor.h"

namespace crmstream::pipeline {
namespace {

constexpr int kEvents = 1 << 20;

const std::vector<std::string>& Events() {
  static const std::vector<std::string> events = [] {
    generator::WorldOptions world;
    world.customers = 100000;
    auto gen = std::move(generator::WorldGenerator::Create(world)).value();  // valid options
    std::vector<std::string> out;
    out.reserve(kEvents);
    std::string key, value;
    for (int i = 0; i < kEvents; ++i) {
      gen->Next(&key, &value);
      out.push_back(value);
    }
    return out;
  }();
  return events;
}

void BM_ReplayPass(benchmark::State& state) {
  const auto& events = Events();
  ProcessorOptions options;
  options.models_enabled = state.range(0) != 0;
  options.emit_customer_scores = state.range(1) != 0;
  const int64_t flush_every = state.range(2);
  uint64_t bytes = 0;
  for (auto _ : state) {
    state.PauseTiming();
    DiscardingSink sink;
    auto created = EventProcessor::Create(options, &sink);
    if (!created.ok()) return state.SkipWithError(created.status().ToString().c_str());
    std::unique_ptr<EventProcessor> processor = std::move(created).value();
    ingest::SourcePosition pos{"crm.interactions", 0, 0};
    state.ResumeTiming();
    int64_t since_flush = 0;
    for (const auto& e : events) {
      benchmark::DoNotOptimize(processor->Process(e, pos, 0));
      bytes += e.size();
      if (++since_flush == flush_every) {
        processor->FlushOutputs();
        since_flush = 0;
      }
    }
    processor->FlushOutputs();
    state.counters["outputs"] = static_cast<double>(
        sink.records(OutputKind::kCustomerScores) + sink.records(OutputKind::kChurnAlerts) +
        sink.records(OutputKind::kSegments) + sink.records(OutputKind::kAnomalies) +
        sink.records(OutputKind::kCorrelations));
    state.PauseTiming();
    processor.reset();  // freeing state is not part of the pass
    state.ResumeTiming();
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * kEvents);
  state.SetBytesProcessed(static_cast<int64_t>(bytes));
}
BENCHMARK(BM_ReplayPass)
    ->ArgNames({"models", "scores_json", "flush_every"})
    ->Args({0, 0, 65536})
    ->Args({0, 1, 65536})
    ->Args({1, 0, 65536})
    ->Args({1, 1, 65536})
    ->Args({1, 1, 2048})
    ->Unit(benchmark::kMillisecond)
    ->MinTime(2.0);

}  // namespace
}  // namespace crmstream::pipeline

BENCHMARK_MAIN();
