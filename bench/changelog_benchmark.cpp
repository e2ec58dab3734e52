// Handover of a partition: its state restored from its changelog topic
// alone (runtime/changelog.h), as an instance that takes over a partition
// with an empty store does, next to the bare fetch rate of the same topic
// partition with the same consumer settings (nothing decoded, nothing
// written). The ratio restore / fetch says how much of the restore is the
// broker's fetch.
//
// The changelog is written as the engine writes it: a partition task
// processes a generated world of N customers (3 events each on average,
// every model on) and checkpoints every 65,536 events into a store, each
// checkpoint's changes produced to the changelog (so a customer changed in
// several checkpoints has several records: an uncompacted changelog). Each
// iteration restores the partition into a new empty store (opened outside
// the timing).
//
// Rows: /0 on the embedded cluster (its 5 MiB partition log holds
// CRMSTREAM_BENCH_EMBEDDED_CUSTOMERS, default 12,000: 17.7k records), /1 on the
// real cluster named by CRMSTREAM_TEST_KAFKA with CRMSTREAM_BENCH_CUSTOMERS
// (default 100,000; 1,000,000 for the handover of a partition of 1M).
// The restore keeps the last change per key over a span of half its buffer
// (the engine's under the default 256 MiB memory cap, one partition:
// counter buffer_MiB) and writes each span as table files ingested into the
// store on a second thread while the next span is read (RestoreMemtable:
// through the memtable without the WAL, flushed at the end, as before table
// files; the flush is timed). The CPU column is the benchmark thread's
// only: in the Restore rows, the reading thread's.
// Counters: records/s, MB/s (keys and values) and customers/s; and what a
// commit (a checkpoint of 65,536 events) wrote: state changes and their
// bytes, changelog bytes, changelog records per state change. (Fetches
// larger than librdkafka's 1 MiB per partition were tried for the restore:
// 16 MiB read this partition no faster, so the defaults stay.)
//
//   build/release/bench/bench_changelog --benchmark_filter='Restore/0|Fetch/0'
//   eval "$(scripts/kafka.sh env)"
//   CRMSTREAM_BENCH_CUSTOMERS=1000000 build/release/bench/bench_changelog
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <memory>

#include "crmstream/generator/world_generator.h"
#include "crmstream/kafka/embedded_cluster.h"
#include "crmstream/kafka/partition_reader.h"
#include "crmstream/kafka/producer.h"
#include "crmstream/pipeline/event_processor.h"
#include "crmstream/pipeline/memory_plan.h"
#include "crmstream/pipeline/partition_checkpoint.h"
#include "crmstream/state/state_store.h"
#include "real_cluster.h"
#include "runtime/changelog.h"

namespace crmstream::runtime {
namespace {

namespace fs = std::filesystem;

size_t EnvSize(const char* name, size_t fallback) {
  const char* env = std::getenv(name);
  return env != nullptr ? std::max<size_t>(100, std::strtoull(env, nullptr, 10)) : fallback;
}

std::unique_ptr<state::StateStore> OpenStore(const fs::path& path, Status* status) {
  state::StateStoreOptions o;
  o.path = path;
  o.identity = "bench";
  auto store = state::StateStore::Open(o);
  if (!store.ok()) {
    *status = store.status();
    return nullptr;
  }
  return std::move(store).value();
}

// One changelog partition written from a generated world, and a store to
// restore it into.
struct ChangelogPartition {
  std::unique_ptr<kafka::EmbeddedCluster> cluster;  // the embedded row only
  kafka::ClientConfig client;
  std::string topic;
  fs::path dir;
  std::unique_ptr<state::StateStore> target;
  state::PartitionKey target_key{};
  int64_t input_offset = 0;  // the last checkpoint's
  size_t customers = 0;
  uint64_t records = 0;
  // What the checkpoints wrote: state changes (key suffix and value bytes)
  // and changelog records and bytes (keys and values; chunk keys and
  // markers included).
  uint64_t checkpoints = 0;
  uint64_t state_changes = 0;
  uint64_t state_change_bytes = 0;
  uint64_t changelog_bytes = 0;
  Status status;
  ~ChangelogPartition() {
    target.reset();
    if (!dir.empty()) fs::remove_all(dir);
  }
};

Status WriteChangelog(ChangelogPartition* c, size_t customers) {
  CRM_ASSIGN_OR_RETURN(auto source, state::StateStore::Open([&] {
                         state::StateStoreOptions o;
                         o.path = c->dir / "source";
                         o.identity = "bench";
                         return o;
                       }()));
  CRM_ASSIGN_OR_RETURN(const state::PartitionKey key, source->Partition("bench", 0));
  pipeline::DiscardingSink sink;
  pipeline::ProcessorOptions options;
  options.emit_customer_scores = false;
  options.cached_customers = 200'000;  // the rest in the store, as the engine under a cap
  CRM_ASSIGN_OR_RETURN(auto processor, pipeline::EventProcessor::Create(options, &sink));
  CRM_RETURN_NOT_OK(pipeline::RestoreProcessor(*source, key, processor.get()).status());
  kafka::ProducerOptions po;
  po.linger_ms = 20;
  CRM_ASSIGN_OR_RETURN(auto producer, kafka::Producer::Create(c->client, po));
  ChangelogWriter writer(producer.get());
  generator::WorldOptions world;
  world.customers = static_cast<int>(customers);
  CRM_ASSIGN_OR_RETURN(auto gen, generator::WorldGenerator::Create(world));
  std::string id, value, scratch;
  const int64_t events = 3 * static_cast<int64_t>(customers);
  auto checkpoint = [&](int64_t next_offset) -> Status {
    processor->FlushOutputs();
    state::CheckpointBatch batch = source->NewBatch();
    CRM_RETURN_NOT_OK(pipeline::AddToCheckpoint(*processor, 0, key, &batch, &scratch));
    batch.SetInputOffset(key, next_offset);
    CRM_RETURN_NOT_OK(
        batch.ForEachStateChange(0, [&](const state::CheckpointBatch::StateChange& s) {
          ++c->state_changes;
          c->state_change_bytes += 1 + s.suffix.size() + s.value.size();  // family byte too
          return Status::OK();
        }));
    ++c->checkpoints;
    CRM_RETURN_NOT_OK(writer.Append(batch, 0, key, c->topic, 0, next_offset));
    CRM_RETURN_NOT_OK(source->Commit(&batch));
    pipeline::MarkCheckpointed(processor.get());
    return Status::OK();
  };
  for (int64_t i = 0; i < events; ++i) {
    gen->Next(&id, &value);
    processor->Process(value, {"bench", 0, i}, 0);
    if (i % 65536 == 65535) CRM_RETURN_NOT_OK(checkpoint(i + 1));
  }
  CRM_RETURN_NOT_OK(checkpoint(events));
  CRM_RETURN_NOT_OK(producer->Flush(std::chrono::minutes(5)));
  c->input_offset = events;
  c->records = writer.records();
  c->changelog_bytes = writer.bytes();
  CRM_ASSIGN_OR_RETURN(auto stats, source->Stats());
  for (const auto& p : stats.partitions) c->customers += p.customers;
  // Every record is still there (the embedded cluster drops the oldest
  // beyond its log bound).
  const kafka::TopicPartitionOffset from[] = {{c->topic, 0, kafka::kOffsetBeginning}};
  return kafka::ReadPartitionsToEnd(
      c->client, from, {},
      [&](std::span<const kafka::PartitionEnd> ends) {
        if (ends[0].start_offset != 0 ||
            ends[0].end_offset < static_cast<int64_t>(writer.records())) {
          return Status::InvalidArgument("the changelog lost records (" +
                                         std::to_string(ends[0].start_offset) + ".." +
                                         std::to_string(ends[0].end_offset) + " of " +
                                         std::to_string(writer.records()) + "): fewer customers");
        }
        return Status::OK();
      },
      nullptr);
}

// An empty store to restore into, in place of the last one (an instance
// taking a partition over has nothing of it).
Status NewTarget(ChangelogPartition* c) {
  c->target.reset();
  fs::remove_all(c->dir / "target");
  Status status;
  c->target = OpenStore(c->dir / "target", &status);
  if (c->target == nullptr) return status;
  CRM_ASSIGN_OR_RETURN(c->target_key, c->target->Partition("bench", 0));
  return Status::OK();
}

// Built once per process and row: 0 embedded, 1 real; released by main
// before the process exits (a store closed by a static destructor would run
// after RocksDB's own statics are gone).
std::array<std::unique_ptr<ChangelogPartition>, 2>& Partitions() {
  static std::array<std::unique_ptr<ChangelogPartition>, 2> partitions;
  return partitions;
}

ChangelogPartition& Partition(int row) {
  auto& slot = Partitions()[static_cast<size_t>(row)];
  if (slot == nullptr) slot = std::make_unique<ChangelogPartition>();
  ChangelogPartition& c = *slot;
  if (!c.dir.empty() || !c.status.ok()) return c;
  const std::string suffix =
      std::to_string(getpid()) + "-" +
      std::to_string(std::chrono::system_clock::now().time_since_epoch() / std::chrono::seconds(1));
  c.dir = fs::temp_directory_path() /
          ("crmstream-changelog-bench-" + suffix + "-" + std::to_string(row));
  fs::remove_all(c.dir);
  c.topic = "bench.changelog." + suffix;
  c.status = [&]() -> Status {
    size_t customers = 0;
    if (row == 0) {
      CRM_ASSIGN_OR_RETURN(c.cluster, kafka::EmbeddedCluster::Create());
      CRM_RETURN_NOT_OK(c.cluster->CreateTopic(c.topic, 1));
      c.client.Set("bootstrap.servers", c.cluster->bootstrap_servers());
      customers = EnvSize("CRMSTREAM_BENCH_EMBEDDED_CUSTOMERS", 12000);
    } else {
      const std::string bootstrap = bench::RealClusterBootstrap();
      if (bootstrap.empty()) return Status::Unavailable(bench::kNoRealCluster);
      CRM_RETURN_NOT_OK(
          bench::EnsureRealTopics(bootstrap, {{c.topic, 1, -1, {{"cleanup.policy", "compact"}}}}));
      c.client.Set("bootstrap.servers", bootstrap);
      customers = EnvSize("CRMSTREAM_BENCH_CUSTOMERS", 100'000);
    }
    CRM_RETURN_NOT_OK(WriteChangelog(&c, customers));
    return NewTarget(&c);
  }();
  return c;
}

void Report(benchmark::State& state, const ChangelogPartition& c, uint64_t records,
            uint64_t bytes) {
  state.counters["records_per_s"] =
      benchmark::Counter(static_cast<double>(records), benchmark::Counter::kIsRate);
  state.counters["MB_per_s"] =
      benchmark::Counter(static_cast<double>(bytes) / 1e6, benchmark::Counter::kIsRate);
  state.counters["customers_per_s"] =
      benchmark::Counter(static_cast<double>(c.customers) * static_cast<double>(state.iterations()),
                         benchmark::Counter::kIsRate);
  state.counters["customers"] = static_cast<double>(c.customers);
  state.counters["changelog_records"] = static_cast<double>(c.records);
  // Changelog bytes per commit vs the state changes they carry.
  const double checkpoints = static_cast<double>(std::max<uint64_t>(1, c.checkpoints));
  state.counters["changes_per_commit"] = static_cast<double>(c.state_changes) / checkpoints;
  state.counters["change_MB_per_commit"] =
      static_cast<double>(c.state_change_bytes) / 1e6 / checkpoints;
  state.counters["changelog_MB_per_commit"] =
      static_cast<double>(c.changelog_bytes) / 1e6 / checkpoints;
  state.counters["changelog_records_per_change"] =
      static_cast<double>(c.records) / static_cast<double>(std::max<uint64_t>(1, c.state_changes));
}

void RestoreChangelog(benchmark::State& state, bool ingest_tables) {
  ChangelogPartition& c = Partition(static_cast<int>(state.range(0)));
  if (!c.status.ok()) return state.SkipWithError(c.status.ToString().c_str());
  // The restore buffer the engine gives a partition under the default
  // memory cap with one input partition.
  const auto plan = pipeline::PlanMemory({});
  if (!plan.ok()) return state.SkipWithError(plan.status().ToString().c_str());
  const size_t buffer_bytes = RestoreBufferBytes(*plan);
  uint64_t records = 0, bytes = 0;
  for (auto _ : state) {
    state.PauseTiming();
    const Status fresh = NewTarget(&c);
    state.ResumeTiming();
    if (!fresh.ok()) return state.SkipWithError(fresh.ToString().c_str());
    ChangelogRestoreOptions o;
    o.changelog_topic = c.topic;
    o.partition = 0;
    o.up_to_offset = c.input_offset;
    o.what = "bench";
    o.buffer_bytes = buffer_bytes;
    o.ingest_tables = ingest_tables;
    auto r = RestoreFromChangelog(c.client, c.target.get(), c.target_key, o);
    if (!r.ok()) return state.SkipWithError(r.status().ToString().c_str());
    if (r->input_offset != c.input_offset) return state.SkipWithError("restore ended short");
    records += r->records_read;
    bytes += r->bytes_read;
  }
  auto stats = c.target->Stats();
  if (!stats.ok()) return state.SkipWithError(stats.status().ToString().c_str());
  size_t restored = 0;
  for (const auto& p : stats->partitions) restored += p.customers;
  if (restored != c.customers) return state.SkipWithError("not every customer was restored");
  Report(state, c, records, bytes);
  state.counters["buffer_MiB"] = static_cast<double>(buffer_bytes >> 20);
}

// The restore as the engine runs it: table files ingested.
void BM_ChangelogRestore(benchmark::State& state) { RestoreChangelog(state, true); }
BENCHMARK(BM_ChangelogRestore)
    ->Arg(0)
    ->Arg(1)
    ->Unit(benchmark::kMillisecond)
    ->Iterations(3)
    ->UseRealTime();

// The same written through the memtable without the WAL and flushed at the
// end (ingest_tables off): the restore before table files, side by side.
void BM_ChangelogRestoreMemtable(benchmark::State& state) { RestoreChangelog(state, false); }
BENCHMARK(BM_ChangelogRestoreMemtable)
    ->Arg(0)
    ->Arg(1)
    ->Unit(benchmark::kMillisecond)
    ->Iterations(3)
    ->UseRealTime();

// The same partition read to its end with the restore's consumer settings.
void BM_ChangelogFetch(benchmark::State& state) {
  ChangelogPartition& c = Partition(static_cast<int>(state.range(0)));
  if (!c.status.ok()) return state.SkipWithError(c.status.ToString().c_str());
  uint64_t records = 0, bytes = 0;
  for (auto _ : state) {
    const kafka::TopicPartitionOffset from[] = {{c.topic, 0, kafka::kOffsetBeginning}};
    const Status st =
        kafka::ReadPartitionsToEnd(c.client, from, {}, nullptr, [&](const kafka::MessageView& m) {
          ++records;
          bytes += m.key().size() + m.payload().size();
          return Status::OK();
        });
    if (!st.ok()) return state.SkipWithError(st.ToString().c_str());
  }
  Report(state, c, records, bytes);
}
BENCHMARK(BM_ChangelogFetch)
    ->Arg(0)
    ->Arg(1)
    ->Unit(benchmark::kMillisecond)
    ->Iterations(3)
    ->UseRealTime();

}  // namespace
}  // namespace crmstream::runtime

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  for (auto& partition : crmstream::runtime::Partitions()) partition.reset();
  return 0;
}
