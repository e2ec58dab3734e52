// Generation throughput of the simulated CRM world: records per second on
// one core, with the default world and with every fault injected.
#include <benchmark/benchmark.h>

#include <string>

#include "crmstream/generator/world_generator.h"

namespace {

using crmstream::generator::WorldGenerator;
using crmstream::generator::WorldOptions;

void RunGenerator(benchmark::State& state, const WorldOptions& options) {
  auto created = WorldGenerator::Create(options);
  if (!created.ok()) return state.SkipWithError(created.status().ToString().c_str());
  WorldGenerator& generator = **created;
  std::string key;
  std::string value;
  int64_t bytes = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(generator.Next(&key, &value));
    bytes += static_cast<int64_t>(value.size());
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(bytes);
}

void BM_GenerateDefaultWorld(benchmark::State& state) {
  WorldOptions options;
  options.customers = static_cast<int>(state.range(0));
  RunGenerator(state, options);
}
BENCHMARK(BM_GenerateDefaultWorld)->Arg(10'000)->Arg(1'000'000);

void BM_GenerateWithAnomaliesAndFaults(benchmark::State& state) {
  WorldOptions options;
  options.anomalies.enabled = true;
  options.malformed_rate = 0.01;
  options.duplicate_rate = 0.01;
  RunGenerator(state, options);
}
BENCHMARK(BM_GenerateWithAnomaliesAndFaults);

void BM_GenerateIsoTimestamps(benchmark::State& state) {
  WorldOptions options;
  options.iso_timestamps = true;
  RunGenerator(state, options);
}
BENCHMARK(BM_GenerateIsoTimestamps);

}  // namespace

BENCHMARK_MAIN();
