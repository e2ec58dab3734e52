// Customer state bigger than memory. A partition task processes a generated
// world of N customers (3 events each on average, every model on) with the
// state store attached and at most CRMSTREAM_BENCH_CACHED customers in
// memory, checkpointing every 65,536 events, as the engine does. Then:
//
// - BM_RestartWithIntactState: open the store, rebuild a fresh task from it
//   (pipeline::RestoreProcessor) and process the first record (a customer
//   loaded from the store): the time until processing resumes.
// - BM_CachedThroughput/<hot>/<batch>: events of a hot set of customers
//   that fits the cache (hot 1), and of customers drawn uniformly from all N,
//   which does not (hot 0); batch 0 processes them one at a time (a miss is
//   one MultiGet in the middle of its event), batch 2048 (the engine's
//   default consume_batch_size) with a batch's misses read with one
//   MultiGet before its events (EventProcessor::LoadPrefetchedCustomers). Counters: events/s of CPU
//   (events_per_cpu_s) and of wall time (events_per_s), the cache hit ratio
//   (prefetched loads count as misses) and the share of the misses
//   prefetched.
//
//   build/release/bench/bench_restart
//   CRMSTREAM_BENCH_CUSTOMERS=10000000 /usr/bin/time -v build/release/bench/bench_restart
//   CRMSTREAM_BENCH_CUSTOMERS=100000 build/release/bench/bench_restart   # quick run
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <random>

#include "crmstream/generator/world_generator.h"
#include "crmstream/pipeline/event_processor.h"
#include "crmstream/pipeline/partition_checkpoint.h"
#include "crmstream/state/state_store.h"

namespace crmstream::pipeline {
namespace {

namespace fs = std::filesystem;

size_t EnvSize(const char* name, size_t fallback, size_t least) {
  const char* env = std::getenv(name);
  return env != nullptr ? std::max<size_t>(least, std::strtoull(env, nullptr, 10)) : fallback;
}

state::StateStoreOptions StoreOptions(const fs::path& dir) {
  state::StateStoreOptions o;
  o.path = dir / "store";
  o.identity = "bench";
  return o;
}

ProcessorOptions Options() {
  ProcessorOptions options;
  options.emit_customer_scores = false;
  options.cached_customers = EnvSize("CRMSTREAM_BENCH_CACHED", 200'000, 1000);
  return options;
}

Status Checkpoint(EventProcessor* processor, state::StateStore* store, state::PartitionKey key,
                  int64_t next_offset) {
  state::CheckpointBatch batch = store->NewBatch();
  std::string scratch;
  CRM_RETURN_NOT_OK(AddToCheckpoint(*processor, 0, key, &batch, &scratch));
  batch.SetInputOffset(key, next_offset);
  CRM_RETURN_NOT_OK(store->Commit(&batch));
  MarkCheckpointed(processor);
  return Status::OK();
}

// The store every benchmark reads, built once per process.
struct World {
  fs::path dir;
  std::vector<std::string> ids;  // a sample of the customers, for the events below
  int64_t end_ms = 0;            // the world's last event time
  int64_t events = 0;
  size_t customers = 0;
  Status status;
  ~World() {
    if (!dir.empty()) fs::remove_all(dir);
  }
};

World& BuiltWorld() {
  static World w;
  if (!w.dir.empty()) return w;
  const size_t customers = EnvSize("CRMSTREAM_BENCH_CUSTOMERS", 1'000'000, 1000);
  w.dir = fs::temp_directory_path() / ("crmstream-restart-bench-" + std::to_string(getpid()));
  fs::remove_all(w.dir);
  w.status = [&]() -> Status {
    DiscardingSink sink;
    CRM_ASSIGN_OR_RETURN(auto store, state::StateStore::Open(StoreOptions(w.dir)));
    CRM_ASSIGN_OR_RETURN(const state::PartitionKey key, store->Partition("bench", 0));
    CRM_ASSIGN_OR_RETURN(auto processor, EventProcessor::Create(Options(), &sink));
    CRM_RETURN_NOT_OK(RestoreProcessor(*store, key, processor.get()).status());
    generator::WorldOptions world;
    world.customers = static_cast<int>(customers);
    CRM_ASSIGN_OR_RETURN(auto gen, generator::WorldGenerator::Create(world));
    std::string id, value;
    w.events = 3 * static_cast<int64_t>(customers);
    const size_t sample_every = std::max<size_t>(1, customers / 1'000'000);
    for (int64_t i = 0; i < w.events; ++i) {
      w.end_ms = gen->Next(&id, &value);
      processor->Process(value, {"bench", 0, i}, 0);
      if (static_cast<size_t>(i) % (3 * sample_every) == 0) w.ids.push_back(id);
      if (i % 65536 == 65535) {
        processor->FlushOutputs();
        CRM_RETURN_NOT_OK(Checkpoint(processor.get(), store.get(), key, i + 1));
      }
    }
    processor->FlushOutputs();
    CRM_RETURN_NOT_OK(Checkpoint(processor.get(), store.get(), key, w.events));
    CRM_RETURN_NOT_OK(store->Flush());
    CRM_ASSIGN_OR_RETURN(auto stats, store->Stats());
    for (const auto& p : stats.partitions) w.customers += p.customers;
    return Status::OK();
  }();
  return w;
}

// Event ids differ between benchmarks: the store's dedup window remembers
// those of earlier checkpoints.
std::string Login(std::string_view run, const std::string& customer, int64_t n, int64_t ts) {
  return R"({"event_id":")" + std::string(run) + "-" + std::to_string(n) + R"(","customer_id":")" +
         customer + R"(","timestamp":)" + std::to_string(ts) + R"(,"type":"login"})";
}

void BM_RestartWithIntactState(benchmark::State& state) {
  World& w = BuiltWorld();
  if (!w.status.ok()) return state.SkipWithError(w.status.ToString().c_str());
  DiscardingSink sink;
  const std::string first = Login("restart", w.ids[w.ids.size() / 2], 0, w.end_ms);
  for (auto _ : state) {
    auto store = state::StateStore::Open(StoreOptions(w.dir));
    if (!store.ok()) return state.SkipWithError(store.status().ToString().c_str());
    auto key = (*store)->Partition("bench", 0);
    auto created = EventProcessor::Create(Options(), &sink);
    if (!created.ok()) return state.SkipWithError(created.status().ToString().c_str());
    EventProcessor& fresh = **created;
    auto sequence = RestoreProcessor(**store, *key, &fresh);
    if (!sequence.ok()) return state.SkipWithError(sequence.status().ToString().c_str());
    // The first record: its customer is loaded from the store.
    if (fresh.Process(first, {"bench", 0, w.events}, 0) != ProcessOutcome::kAccepted ||
        fresh.feature_store().size() != 1 || fresh.customer_loads() != 1) {
      return state.SkipWithError("the first record did not load its customer");
    }
  }
  state.counters["customers"] = static_cast<double>(w.customers);
}
BENCHMARK(BM_RestartWithIntactState)->Unit(benchmark::kMillisecond)->Iterations(3)->UseRealTime();

// CPU time of the process, s.
double ProcessCpuSeconds() {
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) * 1e-9;
}

// range(0): 1 = a hot set of 1/4 of the cache, 0 = uniform over every customer.
// range(1): records per prefetched batch, 0 = none (one at a time).
void BM_CachedThroughput(benchmark::State& state) {
  World& w = BuiltWorld();
  if (!w.status.ok()) return state.SkipWithError(w.status.ToString().c_str());
  const bool hot = state.range(0) == 1;
  const auto batch = static_cast<int>(state.range(1));
  DiscardingSink sink;
  auto store = state::StateStore::Open(StoreOptions(w.dir));
  if (!store.ok()) return state.SkipWithError(store.status().ToString().c_str());
  auto key = (*store)->Partition("bench", 0);
  auto created = EventProcessor::Create(Options(), &sink);
  if (!created.ok()) return state.SkipWithError(created.status().ToString().c_str());
  EventProcessor& p = **created;
  if (!RestoreProcessor(**store, *key, &p).ok()) return state.SkipWithError("restore failed");
  const size_t cached = Options().cached_customers;
  const size_t pool = hot ? std::min(w.ids.size(), cached / 4) : w.ids.size();
  std::mt19937_64 rng(5);
  std::uniform_int_distribution<size_t> pick(0, pool - 1);
  constexpr int kEvents = 200'000;
  constexpr int kWarmUp = kEvents / 4;
  std::vector<std::string> events;
  events.reserve(kWarmUp + kEvents);
  // Each run its own event ids and its own stretch of time after the world's
  // end (and after the runs before it, whose checkpoints the store holds).
  static int runs = 0;
  const std::string run = "run" + std::to_string(++runs);
  for (int i = 0; i < kWarmUp + kEvents; ++i) {
    events.push_back(Login(run, w.ids[pick(rng)], i, w.end_ms + runs * int64_t{3'600'000} + i));
  }
  // Warm-up: the hot set enters the cache.
  int64_t offset = w.events;
  for (int i = 0; i < kWarmUp; ++i)
    p.Process(events[static_cast<size_t>(i)], {"bench", 0, offset++}, 0);
  const uint64_t loads_before = p.customer_loads();
  const uint64_t prefetched_before = p.customer_prefetches();
  int64_t processed = 0;
  double cpu_s = 0;
  for (auto _ : state) {
    const double cpu_start = ProcessCpuSeconds();
    for (int i = 0; i < kEvents; ++i) {
      if (batch > 0 && i % batch == 0) {
        // The batch's customers read, then its events.
        for (int j = i; j < std::min(kEvents, i + batch); ++j) {
          p.PrefetchCustomerOf(events[static_cast<size_t>(kWarmUp + j)]);
        }
        p.LoadPrefetchedCustomers();
      }
      p.Process(events[static_cast<size_t>(kWarmUp + i)], {"bench", 0, offset++}, 0);
      if (i % 65536 == 65535) {
        p.FlushOutputs();
        if (!Checkpoint(&p, store->get(), *key, offset).ok()) {
          return state.SkipWithError("checkpoint failed");
        }
      }
    }
    processed += kEvents;
    cpu_s += ProcessCpuSeconds() - cpu_start;
  }
  if (!p.storage_status().ok()) return state.SkipWithError(p.storage_status().ToString().c_str());
  if (p.counters().accepted.Get() != static_cast<uint64_t>(kWarmUp + processed)) {
    return state.SkipWithError("events not accepted (event ids seen by an earlier run?)");
  }
  const double loads = static_cast<double>(p.customer_loads() - loads_before);
  const double prefetched = static_cast<double>(p.customer_prefetches() - prefetched_before);
  state.counters["events_per_s"] =
      benchmark::Counter(static_cast<double>(processed), benchmark::Counter::kIsRate);
  state.counters["events_per_cpu_s"] = static_cast<double>(processed) / cpu_s;
  state.counters["hit_ratio"] = 1.0 - loads / static_cast<double>(processed);
  state.counters["prefetched"] = loads == 0 ? 0.0 : prefetched / loads;
  state.counters["cached"] = static_cast<double>(p.feature_store().size());
  state.counters["accepted"] = static_cast<double>(p.counters().accepted.Get());
}
BENCHMARK(BM_CachedThroughput)
    ->Args({1, 0})
    ->Args({1, 2048})
    // Alternated twice: a later run finds more of the store in the page cache.
    ->Args({0, 0})
    ->Args({0, 2048})
    ->Args({0, 0})
    ->Args({0, 2048})
    ->Unit(benchmark::kMillisecond)
    ->Iterations(1)
    ->UseRealTime();

}  // namespace
}  // namespace crmstream::pipeline

BENCHMARK_MAIN();
