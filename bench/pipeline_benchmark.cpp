// Replay throughput on one core: decode + validate + dedup + features, then
// with the customer-scores JSON records, then with every online model, over 2^20 generated
// events for 100,000 customers held in memory, so the figure is the
// pipeline's and not the disk's. Each run is one pass over distinct events,
// starting from an empty state, as a replay is.
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
    generator::WorldGenerator gen(world);
    std::vector<std::string> out;
    out.reserve(kEvents);
    std::string key, value;
    for (int i = 0; i < kEvents; ++i) {
      gen.Next(&key, &value);
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
  uint64_t bytes = 0;
  for (auto _ : state) {
    state.PauseTiming();
    DiscardingSink sink;
    auto processor = std::make_unique<EventProcessor>(options, &sink);
    ingest::SourcePosition pos{"crm.interactions", 0, 0};
    state.ResumeTiming();
    for (const auto& e : events) {
      benchmark::DoNotOptimize(processor->Process(e, pos, 0));
      bytes += e.size();
    }
    state.PauseTiming();
    processor.reset();  // freeing state is not part of the pass
    state.ResumeTiming();
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * kEvents);
  state.SetBytesProcessed(static_cast<int64_t>(bytes));
}
BENCHMARK(BM_ReplayPass)
    ->ArgNames({"models", "scores_json"})
    ->Args({0, 0})
    ->Args({0, 1})
    ->Args({1, 1})
    ->Unit(benchmark::kMillisecond)
    ->MinTime(2.0);

}  // namespace
}  // namespace crmstream::pipeline

BENCHMARK_MAIN();
