// Restart with intact local state: a partition task holding N customers
// (features and every per-customer model) is checkpointed to the state
// store; the figure is the time to open the store and rebuild a fresh task
// from it (pipeline::RestoreProcessor), i.e. before processing can resume.
//
//   build/release/bench/bench_restart
//   CRMSTREAM_BENCH_CUSTOMERS=100000 build/release/bench/bench_restart   # quick run
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>

#include "crmstream/generator/world_generator.h"
#include "crmstream/pipeline/event_processor.h"
#include "crmstream/pipeline/partition_checkpoint.h"
#include "crmstream/state/state_store.h"

namespace crmstream::pipeline {
namespace {

namespace fs = std::filesystem;

int CustomerCount() {
  const char* env = std::getenv("CRMSTREAM_BENCH_CUSTOMERS");
  return env != nullptr ? std::max(1000, std::atoi(env)) : 1'000'000;
}

state::StateStoreOptions StoreOptions(const fs::path& dir) {
  state::StateStoreOptions o;
  o.path = dir / "store";
  o.identity = "bench";
  return o;
}

void BM_RestartWithIntactState(benchmark::State& state) {
  const int customers = CustomerCount();
  const fs::path dir =
      fs::temp_directory_path() / ("crmstream-restart-bench-" + std::to_string(getpid()));
  fs::remove_all(dir);
  DiscardingSink sink;
  ProcessorOptions options;
  options.emit_customer_scores = false;
  size_t restored_customers = 0;
  {
    // Three events per customer on average through the whole pipeline.
    auto created = EventProcessor::Create(options, &sink);
    if (!created.ok()) return state.SkipWithError(created.status().ToString().c_str());
    EventProcessor& processor = **created;
    generator::WorldOptions world;
    world.customers = customers;
    auto gen = generator::WorldGenerator::Create(world);
    if (!gen.ok()) return state.SkipWithError(gen.status().ToString().c_str());
    std::string key, value;
    const int64_t events = 3LL * customers;
    for (int64_t i = 0; i < events; ++i) {
      (*gen)->Next(&key, &value);
      processor.Process(value, {"bench", 0, i}, 0);
      if (i % 65536 == 65535) processor.FlushOutputs();
    }
    processor.FlushOutputs();
    auto store = state::StateStore::Open(StoreOptions(dir));
    if (!store.ok()) return state.SkipWithError(store.status().ToString().c_str());
    auto key_of = (*store)->Partition("bench", 0);
    state::CheckpointBatch batch = (*store)->NewBatch();
    std::string scratch;
    if (!AddToCheckpoint(processor, 0, *key_of, &batch, &scratch).ok()) {
      return state.SkipWithError("checkpoint failed");
    }
    batch.SetInputOffset(*key_of, events);
    state.counters["checkpoint_mb"] = static_cast<double>(batch.byte_size()) / 1e6;
    if (!(*store)->Commit(&batch).ok()) return state.SkipWithError("commit failed");
    if (!(*store)->Flush().ok()) return state.SkipWithError("flush failed");
    restored_customers = processor.feature_store().size();
  }
  for (auto _ : state) {
    auto store = state::StateStore::Open(StoreOptions(dir));
    if (!store.ok()) return state.SkipWithError(store.status().ToString().c_str());
    auto key_of = (*store)->Partition("bench", 0);
    auto created = EventProcessor::Create(options, &sink);
    if (!created.ok()) return state.SkipWithError(created.status().ToString().c_str());
    EventProcessor& fresh = **created;
    auto sequence = RestoreProcessor(**store, *key_of, &fresh);
    if (!sequence.ok()) return state.SkipWithError(sequence.status().ToString().c_str());
    if (fresh.feature_store().size() != restored_customers) {
      return state.SkipWithError("not every customer came back");
    }
  }
  fs::remove_all(dir);
  state.counters["customers"] = static_cast<double>(restored_customers);
}
BENCHMARK(BM_RestartWithIntactState)->Unit(benchmark::kMillisecond)->Iterations(2)->UseRealTime();

}  // namespace
}  // namespace crmstream::pipeline

BENCHMARK_MAIN();
