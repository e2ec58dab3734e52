// State store benchmarks, on real FeatureStore-encoded customers:
//   BM_Checkpoint10PercentDirty  one checkpoint of 100,000 dirty customers out
//                                of 1,000,000 (encode + WriteBatch + Commit),
//                                in changed order (sorted:0) or key order (1)
//   BM_ReopenIntact              Open of a store holding 1,000,000 customers
//   BM_ReopenAndRebuildFeatures  Open + iterate + DecodeCustomer of every
//                                customer into a fresh FeatureStore (the
//                                restart cost before processing resumes)
// Sizes can be lowered with CRMSTREAM_BENCH_CUSTOMERS for a quick run.
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "crmstream/features/feature_store.h"
#include "crmstream/ingest/event.h"
#include "crmstream/state/state_store.h"

namespace crmstream::state {
namespace {

namespace fs = std::filesystem;

constexpr int64_t kDayMs = 86'400'000;
constexpr int64_t kStartMs = 1'700'000'000'000;

int CustomerCount() {
  const char* env = std::getenv("CRMSTREAM_BENCH_CUSTOMERS");
  return env != nullptr ? std::max(1000, std::atoi(env)) : 1'000'000;
}

std::string Id(int i) { return "customer-" + std::to_string(i); }

void Apply(features::FeatureStore* store, int customer, int seq, int64_t t, std::mt19937_64& rng) {
  static constexpr std::array<ingest::EventType, 5> kTypes{
      ingest::EventType::kPurchase, ingest::EventType::kLogin, ingest::EventType::kPageView,
      ingest::EventType::kSupportTicket, ingest::EventType::kRefund};
  const std::string id = Id(customer);
  const std::string event_id = id + "/" + std::to_string(seq);
  ingest::Event e;
  e.event_id = event_id;
  e.customer_id = id;
  e.type = kTypes[rng() % kTypes.size()];
  e.timestamp_ms = t;
  if (ingest::EventTypeHasAmount(e.type)) {
    e.amount = static_cast<double>(rng() % 20000) / 100.0;
    e.has_amount = true;
  }
  store->Update(e);
}

// 1M customers, 8 events each over 90 days: realistic per-day rings.
struct World {
  std::unique_ptr<features::FeatureStore> features;
  fs::path dir;
  std::unique_ptr<StateStore> store;
  PartitionKey partition;
  int customers = 0;
  size_t encoded_bytes = 0;
  int64_t clock_ms = kStartMs + 90 * kDayMs;
  std::mt19937_64 rng{42};
};

StateStoreOptions StoreOptions(const fs::path& dir) {
  StateStoreOptions o;
  o.path = dir / "store";
  o.memory_cap_bytes = size_t{256} << 20;
  o.identity = "bench";
  return o;
}

fs::path& WorldDir() {
  static fs::path dir;
  return dir;
}

void RemoveWorldDir() {
  std::error_code ec;
  fs::remove_all(WorldDir(), ec);
}

World& SharedWorld() {
  static World* world = [] {
    auto* w = new World();
    w->customers = CustomerCount();
    w->features = std::move(features::FeatureStore::Create(features::FeatureSpec{})).value();
    for (int i = 0; i < w->customers; ++i) {
      for (int k = 0; k < 8; ++k) {
        Apply(w->features.get(), i, k, kStartMs + static_cast<int64_t>(w->rng() % (90 * kDayMs)),
              w->rng);
      }
    }
    w->dir = fs::temp_directory_path() / ("crmstream-state-bench-" + std::to_string(getpid()));
    fs::remove_all(w->dir);
    WorldDir() = w->dir;
    std::atexit(&RemoveWorldDir);
    auto opened = StateStore::Open(StoreOptions(w->dir));
    if (!opened.ok()) std::abort();
    w->store = std::move(opened).value();
    w->partition = *w->store->Partition("crm.events", 0);
    // The initial full checkpoint, in slices of 100,000.
    CheckpointBatch batch = w->store->NewBatch();
    std::string blob;
    size_t n = 0;
    w->features->ForEachDirty([&](std::string_view id, const features::CustomerFeatures&) {
      if (!w->features->EncodeCustomer(id, &blob).ok()) std::abort();
      w->encoded_bytes += blob.size();
      batch.PutFeatures(w->partition, id, blob);
      if (++n % 100'000 == 0 && !w->store->Commit(&batch).ok()) std::abort();
    });
    batch.SetInputOffset(w->partition, 8LL * w->customers);
    if (!w->store->Commit(&batch).ok()) std::abort();
    if (!w->store->Flush().ok()) std::abort();
    w->features->ClearDirty();
    return w;
  }();
  return *world;
}

void BM_Checkpoint10PercentDirty(benchmark::State& state) {
  World& w = SharedWorld();
  CheckpointBatch batch = w.store->NewBatch();
  std::string blob;
  const bool sorted = state.range(0) != 0;
  std::vector<std::string_view> ids;
  int64_t offset = 8LL * w.customers;
  size_t bytes = 0;
  for (auto _ : state) {
    state.PauseTiming();
    // 10% of the customers get one new event each (random, distinct-ish).
    w.clock_ms += 60'000;
    for (int i = 0; i < w.customers / 10; ++i) {
      Apply(w.features.get(), static_cast<int>(w.rng() % static_cast<uint64_t>(w.customers)),
            1000 + i, w.clock_ms, w.rng);
    }
    offset += w.customers / 10;
    state.ResumeTiming();
    // sorted:1 writes the customers in key order, as the engine's
    // checkpoints do (pipeline::AddToCheckpoint): the memtable's skip list
    // takes increasing keys without a search from the top.
    ids.clear();
    w.features->ForEachDirty(
        [&](std::string_view id, const features::CustomerFeatures&) { ids.push_back(id); });
    if (sorted) std::sort(ids.begin(), ids.end());
    for (std::string_view id : ids) {
      (void)w.features->EncodeCustomer(id, &blob);
      batch.PutFeatures(w.partition, id, blob);
    }
    batch.SetInputOffset(w.partition, offset);
    bytes = batch.byte_size();
    if (!w.store->Commit(&batch).ok()) state.SkipWithError("commit failed");
    w.features->ClearDirty();
  }
  state.counters["dirty_customers"] = static_cast<double>(w.customers / 10);
  state.counters["batch_bytes"] = static_cast<double>(bytes);
  state.counters["bytes_per_customer"] =
      static_cast<double>(w.encoded_bytes) / static_cast<double>(w.customers);
}
BENCHMARK(BM_Checkpoint10PercentDirty)
    ->ArgName("sorted")
    ->Arg(0)
    ->Arg(1)
    ->Arg(0)
    ->Arg(1)
    ->Unit(benchmark::kMillisecond)
    ->Iterations(5)
    ->UseRealTime();

void BM_ReopenIntact(benchmark::State& state) {
  World& w = SharedWorld();
  w.store.reset();  // closes the shared store; reopened at the end
  for (auto _ : state) {
    auto opened = StateStore::Open(StoreOptions(w.dir));
    if (!opened.ok()) state.SkipWithError(opened.status().ToString().c_str());
    benchmark::DoNotOptimize(opened);
  }
  w.store = std::move(StateStore::Open(StoreOptions(w.dir))).value();
  state.counters["customers"] = w.customers;
}
BENCHMARK(BM_ReopenIntact)->Unit(benchmark::kMillisecond)->Iterations(5)->UseRealTime();

// As after kill -9: the last checkpoints are only in the WAL. A copy of the
// open store's files is what a crashed process leaves (sync=false writes are
// in the page cache); opening it replays the WAL.
void BM_ReopenAfterCrash(benchmark::State& state) {
  World& w = SharedWorld();
  CheckpointBatch batch = w.store->NewBatch();
  std::string blob;
  for (int i = 0; i < w.customers / 10; ++i) {
    Apply(w.features.get(), static_cast<int>(w.rng() % static_cast<uint64_t>(w.customers)),
          5000 + i, w.clock_ms, w.rng);
  }
  w.features->ForEachDirty([&](std::string_view id, const features::CustomerFeatures&) {
    (void)w.features->EncodeCustomer(id, &blob);
    batch.PutFeatures(w.partition, id, blob);
  });
  if (!w.store->Commit(&batch).ok()) std::abort();
  w.features->ClearDirty();
  const fs::path crashed = w.dir / "crashed";
  for (auto _ : state) {
    state.PauseTiming();
    fs::remove_all(crashed);
    fs::copy(w.dir / "store", crashed, fs::copy_options::recursive);
    state.ResumeTiming();
    StateStoreOptions options = StoreOptions(w.dir);
    options.path = crashed;
    auto opened = StateStore::Open(options);
    if (!opened.ok()) state.SkipWithError(opened.status().ToString().c_str());
    state.PauseTiming();
    opened = Status::Aborted("closed");  // closing flushes: not part of a restart
    state.ResumeTiming();
  }
  fs::remove_all(crashed);
  state.counters["customers"] = w.customers;
}
BENCHMARK(BM_ReopenAfterCrash)->Unit(benchmark::kMillisecond)->Iterations(3)->UseRealTime();

void BM_ReopenAndRebuildFeatures(benchmark::State& state) {
  World& w = SharedWorld();
  w.store.reset();
  size_t restored = 0;
  for (auto _ : state) {
    auto opened = StateStore::Open(StoreOptions(w.dir));
    if (!opened.ok()) {
      state.SkipWithError(opened.status().ToString().c_str());
      break;
    }
    auto created = features::FeatureStore::Create(features::FeatureSpec{});
    if (!created.ok()) {
      state.SkipWithError(created.status().ToString().c_str());
      break;
    }
    features::FeatureStore& rebuilt = **created;
    const Status st =
        (*opened)->ForEachCustomer(w.partition, [&](std::string_view id, std::string_view blob) {
          return rebuilt.DecodeCustomer(id, blob);
        });
    if (!st.ok()) state.SkipWithError(st.ToString().c_str());
    restored = rebuilt.size();
  }
  w.store = std::move(StateStore::Open(StoreOptions(w.dir))).value();
  state.counters["customers"] = static_cast<double>(restored);
}
BENCHMARK(BM_ReopenAndRebuildFeatures)->Unit(benchmark::kMillisecond)->Iterations(3)->UseRealTime();

}  // namespace
}  // namespace crmstream::state

BENCHMARK_MAIN();
