// Customer state bigger than memory. A partition task processes a generated
// world of N customers (3 events each on average, every model on) with the
// state store attached and at most CRMSTREAM_BENCH_CACHED customers in
// memory, checkpointing every 65,536 events, and sooner when the cache fills
// with customers only a checkpoint makes evictable (FeatureStore::
// UnderPressure), as the engine does. Then:
//
// - BM_RestartWithIntactState: open the store, rebuild a fresh task from it
//   (pipeline::RestoreProcessor) and process the first record (a customer
//   loaded from the store): the time until processing resumes
//   (first_record_ms), then a backlog of 65,536 events of the sampled
//   customers, nearly all loaded (caught_up_ms: from the open to the
//   backlog's last event). Arg: batch 0 processes the backlog one event at
//   a time, batch 2048 reads each batch's misses first, as the engine does.
// - BM_CachedThroughput/<hot>/<batch>: events of a hot set of customers
//   that fits the cache (hot 1), and of customers drawn uniformly from all N,
//   which does not (hot 0); batch 0 processes them one at a time (a miss is
//   one MultiGet in the middle of its event), batch 2048 (the engine's
//   default consume_batch_size) with a batch's misses read with batched
//   MultiGets before its events (EventProcessor::LoadPrefetchedCustomers)
//   while the processor finds it pays (PrefetchPays), as the engine does:
//   off again for a hot set that fits. Counters: events/s of CPU
//   (events_per_cpu_s) and of wall time (events_per_s), the cache hit ratio
//   (the events whose customer was not in memory before their batch's read
//   or their own are the misses), the customers loaded per event
//   (loads_per_event: a customer read ahead and evicted before its event is
//   read twice) and the share of the loads prefetched.
//
// Environment:
//   CRMSTREAM_BENCH_CUSTOMERS   generated customers (about half of them have
//                               events at 3 each; past the generator's 10M,
//                               worlds of 10M one after another)
//   CRMSTREAM_BENCH_WORLD_CUSTOMERS  customers per world (10M), to try the
//                               chaining of worlds at a small size
//   CRMSTREAM_BENCH_EVENTS_PER_CUSTOMER  events per generated customer (3)
//   CRMSTREAM_BENCH_CACHED      customers in memory during the runs
//   CRMSTREAM_BENCH_MEMORY_CAP_MB  instead: RocksDB and the customer cache
//                               sized from this cap by the engine's memory
//                               plan (one partition), as state.memory_cap_mb
//   CRMSTREAM_BENCH_STORE       a folder that keeps the world's store: built
//                               there once, reused by later runs (refused if
//                               built for another customer count); else a
//                               temporary one, removed at exit
//   CRMSTREAM_BENCH_BUILD_CACHED  customers in memory while the world is
//                               built (fewer loads, a faster build; the store
//                               is the same engine format either way)
//
//   build/release/bench/bench_restart
//   CRMSTREAM_BENCH_CUSTOMERS=100000 build/release/bench/bench_restart   # quick run
//   # a world built once into a kept store, then runs under a 1 GiB plan:
//   export CRMSTREAM_BENCH_CUSTOMERS=10000000 CRMSTREAM_BENCH_EVENTS_PER_CUSTOMER=5
//   export CRMSTREAM_BENCH_STORE=/tmp/w
//   CRMSTREAM_BENCH_BUILD_CACHED=10000000 bench_restart --benchmark_filter=Restart
//   CRMSTREAM_BENCH_MEMORY_CAP_MB=1024 /usr/bin/time -v bench_restart
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <charconv>
#include <chrono>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>

#include "crmstream/generator/world_generator.h"
#include "crmstream/pipeline/event_processor.h"
#include "crmstream/pipeline/memory_plan.h"
#include "crmstream/pipeline/partition_checkpoint.h"
#include "crmstream/state/state_store.h"

namespace crmstream::pipeline {
namespace {

namespace fs = std::filesystem;

size_t EnvSize(const char* name, size_t fallback, size_t least) {
  const char* env = std::getenv(name);
  return env != nullptr ? std::max<size_t>(least, std::strtoull(env, nullptr, 10)) : fallback;
}

// The runs' sizes: CRMSTREAM_BENCH_CACHED, or the engine's memory plan for
// CRMSTREAM_BENCH_MEMORY_CAP_MB.
struct Sizing {
  size_t cached_customers = 0;
  size_t cache_bytes = 0;  // the plan's bound on the cache's bytes (0: the count alone)
  size_t rocksdb_bytes = state::StateStoreOptions{}.memory_cap_bytes;
};

const Sizing& RunSizing() {
  static const Sizing sizing = [] {
    Sizing s;
    s.cached_customers = EnvSize("CRMSTREAM_BENCH_CACHED", 200'000, 1000);
    const size_t cap_mb = EnvSize("CRMSTREAM_BENCH_MEMORY_CAP_MB", 0, 0);
    if (cap_mb == 0) return s;
    MemoryPlanInput in;
    in.cap_bytes = cap_mb << 20;
    in.dedup_ids = ProcessorOptions{}.dedup_capacity;
    const Result<MemoryPlan> plan = PlanMemory(in);
    if (!plan.ok()) {
      std::fprintf(stderr, "%s\n", plan.status().ToString().c_str());
      std::exit(2);
    }
    std::fprintf(stderr, "memory plan: %s\n", plan->ToString().c_str());
    s.cached_customers = plan->cached_customers_per_partition;
    s.cache_bytes = plan->cached_state_bytes_per_partition;
    s.rocksdb_bytes = plan->rocksdb_bytes;
    return s;
  }();
  return sizing;
}

state::StateStoreOptions StoreOptions(const fs::path& dir) {
  state::StateStoreOptions o;
  o.path = dir / "store";
  o.identity = "bench";
  o.memory_cap_bytes = RunSizing().rocksdb_bytes;
  return o;
}

ProcessorOptions Options(size_t cached_customers = RunSizing().cached_customers) {
  ProcessorOptions options;
  options.emit_customer_scores = false;
  options.cached_customers = cached_customers;
  // The plan's bound on the cache's bytes goes with the plan's count only
  // (a build's larger cache has none).
  if (cached_customers == RunSizing().cached_customers) {
    options.customer_cache_bytes = RunSizing().cache_bytes;
  }
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

// After event `i` (from 0): the commit interval's checkpoint, or one the
// cache asks for before it would grow past its capacity.
bool CheckpointDue(const EventProcessor& processor, int64_t i) {
  return i % 65536 == 65535 || processor.feature_store().UnderPressure();
}

// The store every benchmark reads, built once per process (or kept in
// CRMSTREAM_BENCH_STORE and built once).
struct World {
  fs::path dir;
  bool keep = false;
  size_t requested = 0;            // CRMSTREAM_BENCH_CUSTOMERS
  size_t events_per_customer = 0;  // CRMSTREAM_BENCH_EVENTS_PER_CUSTOMER
  std::vector<std::string> ids;    // a sample of the customers, for the events below
  int64_t end_ms = 0;              // the world's last event time
  int64_t events = 0;
  size_t customers = 0;
  double build_s = 0;  // wall time of the build, 0 when reused
  Status status;
  ~World() {
    if (!dir.empty() && !keep) fs::remove_all(dir);
  }
};

constexpr std::string_view kWorldMagic = "crmstream-restart-bench-world 1";

// What a kept store's runs need besides the store: written after the build.
Status SaveWorld(const World& w) {
  const fs::path tmp = w.dir / "world.txt.tmp";
  {
    std::ofstream out(tmp);
    out << kWorldMagic << "\n"
        << w.requested << " " << w.events_per_customer << " " << w.events << " " << w.end_ms << " "
        << w.customers << " " << w.ids.size() << "\n";
    for (const auto& id : w.ids) out << id << "\n";
    if (!out.flush()) return Status::IOError("cannot write " + tmp.string());
  }
  fs::rename(tmp, w.dir / "world.txt");
  return Status::OK();
}

Status LoadWorld(World* w) {
  const fs::path path = w->dir / "world.txt";
  std::ifstream in(path);
  std::string magic;
  size_t requested = 0, per_customer = 0, ids = 0;
  if (!std::getline(in, magic) || magic != kWorldMagic ||
      !(in >> requested >> per_customer >> w->events >> w->end_ms >> w->customers >> ids)) {
    return Status::InvalidArgument(path.string() + " is not a world of this benchmark");
  }
  if (requested != w->requested || per_customer != w->events_per_customer) {
    return Status::InvalidArgument(
        "CRMSTREAM_BENCH_STORE " + w->dir.string() + " holds a world of " +
        std::to_string(requested) + " customers with " + std::to_string(per_customer) +
        " events each, not CRMSTREAM_BENCH_CUSTOMERS=" + std::to_string(w->requested) +
        " with CRMSTREAM_BENCH_EVENTS_PER_CUSTOMER=" + std::to_string(w->events_per_customer) +
        ": remove it or give another folder");
  }
  w->ids.resize(ids);
  for (auto& id : w->ids) in >> id;
  if (!in) return Status::InvalidArgument(path.string() + " is truncated");
  return Status::OK();
}

// The generator's largest world; a larger population is several worlds one
// after another, each of its own customers (numbers kWorldNumberStride
// apart, room for every replacement) starting an hour after the one before
// ends, as a new cohort would.
// CRMSTREAM_BENCH_WORLD_CUSTOMERS sets a smaller world, to try the chaining.
const size_t kWorldCustomers = EnvSize("CRMSTREAM_BENCH_WORLD_CUSTOMERS", 10'000'000, 1000);
constexpr uint32_t kWorldNumberStride = 100'000'000;

Status BuildWorld(World* w) {
  const auto start = std::chrono::steady_clock::now();
  DiscardingSink sink;
  CRM_ASSIGN_OR_RETURN(auto store, state::StateStore::Open(StoreOptions(w->dir)));
  CRM_ASSIGN_OR_RETURN(const state::PartitionKey key, store->Partition("bench", 0));
  const size_t build_cached =
      EnvSize("CRMSTREAM_BENCH_BUILD_CACHED", RunSizing().cached_customers, 1000);
  CRM_ASSIGN_OR_RETURN(auto processor, EventProcessor::Create(Options(build_cached), &sink));
  CRM_RETURN_NOT_OK(RestoreProcessor(*store, key, processor.get()).status());
  const size_t sample_every = std::max<size_t>(1, w->requested / 1'000'000);
  // Made and processed a consumed batch at a time, its customers read
  // together first, as the engine does.
  constexpr int kBatch = 2048;
  std::vector<std::string> batch(kBatch);
  std::string id;
  int64_t i = 0;
  generator::WorldOptions world;
  for (size_t first = 0; first < w->requested; first += kWorldCustomers) {
    world.customers = static_cast<int>(std::min(kWorldCustomers, w->requested - first));
    world.seed = generator::WorldOptions{}.seed + first / kWorldCustomers;
    world.first_customer_number =
        1 + static_cast<uint32_t>(first / kWorldCustomers) * kWorldNumberStride;
    if (first > 0) world.start_ms = w->end_ms + 3'600'000;
    CRM_ASSIGN_OR_RETURN(auto gen, generator::WorldGenerator::Create(world));
    const int64_t end = i + static_cast<int64_t>(w->events_per_customer) * world.customers;
    while (i < end) {
      const int n = static_cast<int>(std::min<int64_t>(kBatch, end - i));
      for (int j = 0; j < n; ++j) {
        w->end_ms = gen->Next(&id, &batch[static_cast<size_t>(j)]);
        if (static_cast<size_t>(i + j) % (w->events_per_customer * sample_every) == 0) {
          w->ids.push_back(id);
        }
      }
      for (int j = 0; j < n; ++j) {
        if (processor->PrefetchPays()) processor->PrefetchCustomerOf(batch[static_cast<size_t>(j)]);
      }
      processor->LoadPrefetchedCustomers();
      for (int j = 0; j < n; ++j, ++i) {
        if (i % 10'000'000 == 0 && i > 0) {
          // A 100M build runs for an hour or more.
          std::fprintf(
              stderr, "world: %lld events of %zu, %.0f s\n", static_cast<long long>(i),
              w->events_per_customer * w->requested,
              std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
        }
        processor->Process(batch[static_cast<size_t>(j)], {"bench", 0, i}, 0);
        if (CheckpointDue(*processor, i)) {
          processor->FlushOutputs();
          CRM_RETURN_NOT_OK(Checkpoint(processor.get(), store.get(), key, i + 1));
        }
      }
    }
  }
  w->events = i;
  processor->FlushOutputs();
  CRM_RETURN_NOT_OK(Checkpoint(processor.get(), store.get(), key, w->events));
  CRM_RETURN_NOT_OK(processor->storage_status());
  CRM_RETURN_NOT_OK(store->Flush());
  CRM_ASSIGN_OR_RETURN(auto stats, store->Stats());
  for (const auto& p : stats.partitions) w->customers += p.customers;
  w->build_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return Status::OK();
}

World& BuiltWorld() {
  static World w;
  if (!w.dir.empty()) return w;
  w.requested = EnvSize("CRMSTREAM_BENCH_CUSTOMERS", 1'000'000, 1000);
  w.events_per_customer = EnvSize("CRMSTREAM_BENCH_EVENTS_PER_CUSTOMER", 3, 1);
  if (const char* kept = std::getenv("CRMSTREAM_BENCH_STORE"); kept != nullptr && *kept != 0) {
    w.dir = kept;
    w.keep = true;
    if (fs::exists(w.dir / "world.txt")) {
      w.status = LoadWorld(&w);
      return w;
    }
    if (fs::exists(w.dir / "store")) {
      w.status = Status::InvalidArgument("CRMSTREAM_BENCH_STORE " + w.dir.string() +
                                         " holds a store without world.txt (a build that did "
                                         "not finish): remove it");
      return w;
    }
    fs::create_directories(w.dir);
  } else {
    w.dir = fs::temp_directory_path() / ("crmstream-restart-bench-" + std::to_string(getpid()));
    fs::remove_all(w.dir);
  }
  w.status = BuildWorld(&w);
  if (w.status.ok() && w.keep) w.status = SaveWorld(w);
  return w;
}

// Event ids differ between benchmarks: the store's dedup window remembers
// those of earlier checkpoints.
std::string Login(std::string_view run, const std::string& customer, int64_t n, int64_t ts) {
  return R"({"event_id":")" + std::string(run) + "-" + std::to_string(n) + R"(","customer_id":")" +
         customer + R"(","timestamp":)" + std::to_string(ts) + R"(,"type":"login"})";
}

// Where the next run's input begins: the store's next input offset (runs
// checkpoint what they process, also into a kept store), event ids and times
// that no run before it used.
struct RunStart {
  int64_t offset = 0;
  int64_t time_ms = 0;
  std::string name;
};

Result<RunStart> NextRun(const World& w, const state::StateStore& store, state::PartitionKey key,
                         std::string_view kind) {
  CRM_ASSIGN_OR_RETURN(const state::PartitionState partition, store.GetPartition(key));
  RunStart r;
  r.offset = std::max(w.events, partition.input_offset);
  // One ms per event since the world's end, an hour after it.
  r.time_ms = w.end_ms + 3'600'000 + (r.offset - w.events);
  r.name = std::string(kind) + std::to_string(r.offset);
  return r;
}

// Events of customers drawn uniformly from `pool` ids, the first `in_order`
// of them the pool's first ids in turn; made one at a time (a warm-up of a
// million events is not held in memory).
class LoginFeed {
 public:
  LoginFeed(const RunStart& r, size_t pool, std::function<std::string(size_t)> id,
            size_t in_order = 0)
      : run_(r), pick_(0, pool - 1), id_(std::move(id)), in_order_(in_order) {}
  std::string Next() {
    const auto n = static_cast<size_t>(n_);
    const size_t which = n < in_order_ ? n % (pick_.max() + 1) : pick_(rng_);
    const std::string event = Login(run_.name, id_(which), n_, run_.time_ms + n_);
    ++n_;
    return event;
  }
  std::vector<std::string> Take(int count) {
    std::vector<std::string> events;
    events.reserve(static_cast<size_t>(count));
    for (int i = 0; i < count; ++i) events.push_back(Next());
    return events;
  }

 private:
  const RunStart& run_;
  std::mt19937_64 rng_{5};
  std::uniform_int_distribution<size_t> pick_;
  std::function<std::string(size_t)> id_;
  size_t in_order_;
  int64_t n_ = 0;
};

std::function<std::string(size_t)> SampleIds(const World& w) {
  return [&w](size_t i) { return w.ids[i]; };
}

// The numbers of the customers the store holds (the generator's ids are
// "C" and a zero-padded number), 4 bytes each rather than a string: every
// one up to kMaxPool, else a uniform sample of kMaxPool of them (reservoir
// sampling), which holds the benchmark's own memory to 64 MB at 100M.
constexpr size_t kMaxPool = 16'000'000;

Result<std::vector<uint32_t>> StoredCustomerNumbers(const state::StateStore& store,
                                                    state::PartitionKey key, size_t* stored) {
  std::vector<uint32_t> numbers;
  std::mt19937_64 rng(11);
  *stored = 0;
  CRM_RETURN_NOT_OK(store.ForEachCustomer(key, [&](std::string_view id, std::string_view) {
    uint32_t n = 0;
    const auto r = std::from_chars(id.data() + 1, id.data() + id.size(), n);
    if (id.empty() || id[0] != 'C' || r.ec != std::errc() || r.ptr != id.data() + id.size()) {
      return Status::InvalidArgument("not a generated customer id: " + std::string(id));
    }
    if (numbers.size() < kMaxPool) {
      numbers.push_back(n);
    } else if (const size_t at = std::uniform_int_distribution<size_t>(0, *stored)(rng);
               at < kMaxPool) {
      numbers[at] = n;
    }
    ++*stored;
    return Status::OK();
  }));
  if (numbers.empty()) return Status::InvalidArgument("the store holds no customer");
  return numbers;
}

std::string GeneratedId(uint32_t number) {
  std::string digits = std::to_string(number);
  return "C" + std::string(digits.size() < 8 ? 8 - digits.size() : 0, '0') + digits;
}

// As the engine does with a consumed batch: its customers read together
// while that pays, then its events.
void PrefetchBatch(EventProcessor* p, const std::vector<std::string>& events, int from, int batch) {
  const int to = std::min(static_cast<int>(events.size()), from + batch);
  for (int j = from; j < to; ++j) {
    if (p->PrefetchPays()) p->PrefetchCustomerOf(events[static_cast<size_t>(j)]);
  }
  p->LoadPrefetchedCustomers();
}

void ProcessBatches(EventProcessor* p, const std::vector<std::string>& events, int batch,
                    int64_t* offset) {
  for (int i = 0; i < static_cast<int>(events.size()); ++i) {
    if (batch > 0 && i % batch == 0) PrefetchBatch(p, events, i, batch);
    p->Process(events[static_cast<size_t>(i)], {"bench", 0, (*offset)++}, 0);
  }
}

// After the first record, a backlog of one checkpoint interval (65,536
// events of the sampled customers, so nearly every one a load):
// caught_up_ms is the time from the store's open to its last event.
constexpr int kBacklog = 65'536;

void BM_RestartWithIntactState(benchmark::State& state) {
  World& w = BuiltWorld();
  if (!w.status.ok()) return state.SkipWithError(w.status.ToString().c_str());
  DiscardingSink sink;
  // Means, and the slowest (the first open after the page cache was dropped).
  double first_ms = 0, caught_up_ms = 0, first_max_ms = 0, caught_up_max_ms = 0;
  int64_t runs = 0;
  uint64_t backlog_loads = 0;
  for (auto _ : state) {
    const auto start = std::chrono::steady_clock::now();
    auto store = state::StateStore::Open(StoreOptions(w.dir));
    if (!store.ok()) return state.SkipWithError(store.status().ToString().c_str());
    auto key = (*store)->Partition("bench", 0);
    auto created = EventProcessor::Create(Options(), &sink);
    if (!created.ok()) return state.SkipWithError(created.status().ToString().c_str());
    EventProcessor& fresh = **created;
    auto sequence = RestoreProcessor(**store, *key, &fresh);
    if (!sequence.ok()) return state.SkipWithError(sequence.status().ToString().c_str());
    auto run = NextRun(w, **store, *key, "restart");
    if (!run.ok()) return state.SkipWithError(run.status().ToString().c_str());
    // The first record: its customer (from the middle of the sample) is
    // loaded from the store.
    const std::string first = Login(run->name, w.ids[w.ids.size() / 2], kBacklog, run->time_ms);
    int64_t offset = run->offset;
    if (fresh.Process(first, {"bench", 0, offset++}, 0) != ProcessOutcome::kAccepted ||
        fresh.feature_store().size() != 1 || fresh.customer_loads() != 1) {
      return state.SkipWithError("the first record did not load its customer");
    }
    const auto first_done = std::chrono::steady_clock::now();
    state.PauseTiming();
    const std::vector<std::string> backlog =
        LoginFeed(*run, w.ids.size(), SampleIds(w)).Take(kBacklog);
    const auto backlog_made = std::chrono::steady_clock::now();
    ProcessBatches(&fresh, backlog, static_cast<int>(state.range(0)), &offset);
    fresh.FlushOutputs();
    const auto caught_up = std::chrono::steady_clock::now();
    if (!fresh.storage_status().ok()) {
      return state.SkipWithError(fresh.storage_status().ToString().c_str());
    }
    if (fresh.counters().accepted.Get() != 1 + kBacklog) {
      return state.SkipWithError("backlog events not accepted");
    }
    const double first_one = std::chrono::duration<double, std::milli>(first_done - start).count();
    const double all =
        first_one + std::chrono::duration<double, std::milli>(caught_up - backlog_made).count();
    first_ms += first_one;
    caught_up_ms += all;
    first_max_ms = std::max(first_max_ms, first_one);
    caught_up_max_ms = std::max(caught_up_max_ms, all);
    backlog_loads += fresh.customer_loads() - 1;
    ++runs;
    state.ResumeTiming();
  }
  state.counters["first_record_ms"] = first_ms / static_cast<double>(runs);
  state.counters["caught_up_ms"] = caught_up_ms / static_cast<double>(runs);
  state.counters["first_record_max_ms"] = first_max_ms;
  state.counters["caught_up_max_ms"] = caught_up_max_ms;
  state.counters["loads_per_event"] =
      static_cast<double>(backlog_loads) / static_cast<double>(runs * kBacklog);
  state.counters["customers"] = static_cast<double>(w.customers);
  state.counters["build_s"] = w.build_s;
}
BENCHMARK(BM_RestartWithIntactState)
    ->Arg(0)
    ->Arg(2048)
    ->Unit(benchmark::kMillisecond)
    ->Iterations(3)
    ->UseRealTime();

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
  const size_t cached = RunSizing().cached_customers;
  // Uniform: over every stored customer (the sample's ids repeat the active
  // ones, and at 10M customers a 1 GiB plan's cache holds about as many), or
  // a uniform sample of 16M of them past that.
  static std::vector<uint32_t> all;
  static size_t stored = 0;
  if (!hot && all.empty()) {
    auto numbers = StoredCustomerNumbers(**store, *key, &stored);
    if (!numbers.ok()) return state.SkipWithError(numbers.status().ToString().c_str());
    all = std::move(*numbers);
  }
  constexpr int kEvents = 200'000;
  // Warm-up: each of the hot set once (it enters the cache before the
  // measured events), or as many uniform events as the cache holds (it fills,
  // as in a long run), checkpointed as the measured events are.
  const size_t hot_pool = std::min(w.ids.size(), cached / 4);
  const size_t warm_up = hot ? hot_pool : cached;
  auto run = NextRun(w, **store, *key, "run");
  if (!run.ok()) return state.SkipWithError(run.status().ToString().c_str());
  LoginFeed feed = hot ? LoginFeed(*run, hot_pool, SampleIds(w), hot_pool)
                       : LoginFeed(*run, all.size(), [&](size_t i) { return GeneratedId(all[i]); });
  int64_t offset = run->offset;
  for (size_t i = 0; i < warm_up; ++i) {
    p.Process(feed.Next(), {"bench", 0, offset++}, 0);
    if (CheckpointDue(p, static_cast<int64_t>(i))) {
      p.FlushOutputs();
      if (!Checkpoint(&p, store->get(), *key, offset).ok()) {
        return state.SkipWithError("checkpoint failed");
      }
    }
  }
  const std::vector<std::string> events = feed.Take(kEvents);
  const uint64_t loads_before = p.customer_loads();
  const uint64_t prefetched_before = p.customer_prefetches();
  const uint64_t used_ahead_before = p.feature_store().loads_ahead_used();
  const uint64_t over_capacity_before = p.feature_store().over_capacity();
  int64_t processed = 0;
  int checkpoints = 0;
  double cpu_s = 0;
  for (auto _ : state) {
    const double cpu_start = ProcessCpuSeconds();
    for (int i = 0; i < kEvents; ++i) {
      if (batch > 0 && i % batch == 0) PrefetchBatch(&p, events, i, batch);
      p.Process(events[static_cast<size_t>(i)], {"bench", 0, offset++}, 0);
      if (CheckpointDue(p, i)) {
        ++checkpoints;
        p.FlushOutputs();
        if (!Checkpoint(&p, store->get(), *key, offset).ok()) {
          return state.SkipWithError("checkpoint failed");
        }
      }
    }
    processed += kEvents;
    cpu_s += ProcessCpuSeconds() - cpu_start;
  }
  // Everything processed is checkpointed: a later run (of this process or
  // another over a kept store) starts after it.
  p.FlushOutputs();
  if (!Checkpoint(&p, store->get(), *key, offset).ok()) {
    return state.SkipWithError("checkpoint failed");
  }
  if (!p.storage_status().ok()) return state.SkipWithError(p.storage_status().ToString().c_str());
  if (p.counters().accepted.Get() != warm_up + static_cast<uint64_t>(processed)) {
    return state.SkipWithError("events not accepted (event ids seen by an earlier run?)");
  }
  const double loads = static_cast<double>(p.customer_loads() - loads_before);
  const double prefetched = static_cast<double>(p.customer_prefetches() - prefetched_before);
  // Misses: events that loaded their customer, and those whose customer
  // their batch's read loaded for them.
  const double misses =
      loads - prefetched +
      static_cast<double>(p.feature_store().loads_ahead_used() - used_ahead_before);
  state.counters["events_per_s"] =
      benchmark::Counter(static_cast<double>(processed), benchmark::Counter::kIsRate);
  state.counters["events_per_cpu_s"] = static_cast<double>(processed) / cpu_s;
  state.counters["hit_ratio"] = 1.0 - misses / static_cast<double>(processed);
  state.counters["loads_per_event"] = loads / static_cast<double>(processed);
  state.counters["prefetched"] = loads == 0 ? 0.0 : prefetched / loads;
  state.counters["cached"] = static_cast<double>(p.feature_store().size());
  state.counters["capacity"] = static_cast<double>(p.feature_store().capacity());
  state.counters["over_capacity"] =
      static_cast<double>(p.feature_store().over_capacity() - over_capacity_before);
  state.counters["checkpoints"] = checkpoints;
  if (!hot) state.counters["uniform_pool"] = static_cast<double>(all.size());
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
