#include "crmstream/pipeline/partition_checkpoint.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "alerting_options.h"
#include "crmstream/generator/world_generator.h"
#include "recording_sink.h"
#include "support/allocation_counter.h"
#include "support/dedup_rings.h"
#include "support/require_ok.h"
#include "support/test_support.h"

namespace crmstream::pipeline {
namespace {

constexpr int64_t kMsPerDay = 86'400'000;
constexpr int kEventsPerInterval = 400;

ProcessorOptions Options() {
  // Alerts, the alert gate and its calibrator are part of what a restore
  // must carry over.
  ProcessorOptions o = AlertingOptions();
  // Alerts start once the churn model has trained on this many labels.
  o.models.churn.warm_after_examples = 50;
  return o;
}

// A generated partition long enough for many churn labels to mature
// (horizon 30 days), as records in input order.
std::vector<std::string> GeneratedRecords(int customers, int days) {
  generator::WorldOptions world;
  world.customers = customers;
  world.seed = 7;
  auto gen = generator::WorldGenerator::Create(world);
  REQUIRE_OK(gen);
  std::vector<std::string> records;
  std::string key, value;
  const int64_t end_ms = world.start_ms + int64_t{days} * kMsPerDay;
  for (int i = 0; i < 2'000'000; ++i) {  // bounded; the time limit ends it first
    if ((*gen)->Next(&key, &value) >= end_ms) break;
    records.push_back(value);
  }
  return records;
}

// The uninterrupted run: a flush every interval, no store.
std::vector<RecordedOutput> RunWithoutRestarts(const std::vector<std::string>& records,
                                               size_t interval,
                                               scoring::CustomerModels::Quality* quality) {
  RecordingSink sink;
  REQUIRE_OK_AND_ASSIGN(auto processor, EventProcessor::Create(Options(), &sink));
  for (size_t i = 0; i < records.size(); ++i) {
    processor->Process(records[i], {"crm.events", 0, static_cast<int64_t>(i)}, 0);
    if ((i + 1) % interval == 0) processor->FlushOutputs();
  }
  processor->FlushOutputs();
  *quality = processor->customer_models().quality();
  return sink.records;
}

// The generated partition of 300 customers over 100 days and its
// uninterrupted run (a flush every `interval`): what the runs through a
// store must give.
struct Reference {
  explicit Reference(size_t interval)
      : records(GeneratedRecords(/*customers=*/300, /*days=*/100)),
        outputs(RunWithoutRestarts(records, interval, &quality)) {}
  std::vector<std::string> records;
  scoring::CustomerModels::Quality quality;
  std::vector<RecordedOutput> outputs;
};

void Checkpoint(EventProcessor* processor, state::StateStore* store, state::PartitionKey key,
                int64_t next_offset) {
  state::CheckpointBatch batch = store->NewBatch();
  std::string scratch;
  REQUIRE_OK(AddToCheckpoint(*processor, 0, key, &batch, &scratch));
  batch.SetInputOffset(key, next_offset);
  REQUIRE_OK(store->Commit(&batch));
  MarkCheckpointed(processor);
}

// A fresh store in a scratch directory, and the partition the tests use.
struct ScratchStore {
  ScratchStore() {
    state::StateStoreOptions options;
    options.path = dir.path() / "store";
    REQUIRE_OK_AND_ASSIGN(store, state::StateStore::Open(options));
    REQUIRE_OK_AND_ASSIGN(key, store->Partition("crm.events", 0));
  }
  // A processor with `options` writing to `sink`, restored from the store
  // (as a task starts on the partition).
  std::unique_ptr<EventProcessor> Restored(const ProcessorOptions& options,
                                           OutputSink* sink) const {
    REQUIRE_OK_AND_ASSIGN(auto processor, EventProcessor::Create(options, sink));
    REQUIRE_OK(RestoreProcessor(*store, key, processor.get()));
    return processor;
  }
  testing::ScratchDir dir;
  std::unique_ptr<state::StateStore> store;
  state::PartitionKey key;
};

bool SameOutputs(const std::vector<RecordedOutput>& a, const std::vector<RecordedOutput>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].kind != b[i].kind || a[i].key != b[i].key || a[i].value != b[i].value) return false;
  }
  return true;
}

// The store's customer state and model entries. A customer's features as
// decoded: the bytes of its per-day history depend on when it was last
// loaded (a load re-encodes it), not its state.
std::vector<std::pair<std::string, std::string>> StoredCustomers(const state::StateStore& store,
                                                                 const ProcessorOptions& options) {
  std::vector<std::pair<std::string, std::string>> stored;
  REQUIRE_OK_AND_ASSIGN(auto decoded, features::FeatureStore::Create(options.features));
  std::string canonical;
  REQUIRE_OK(store.ForEachEntry(
      state::StateFamily::kFeatures, [&](std::string_view k, std::string_view v) -> Status {
        const std::string_view id = k.substr(state::kPartitionPrefixBytes);
        CRM_RETURN_NOT_OK(decoded->LoadCustomer(id, v));
        CRM_RETURN_NOT_OK(decoded->EncodeCustomer(id, &canonical));
        stored.emplace_back(std::string(k), canonical);
        return Status::OK();
      }));
  REQUIRE_OK(
      store.ForEachEntry(state::StateFamily::kModels, [&](std::string_view k, std::string_view v) {
        stored.emplace_back(std::string(k), std::string(v));
        return Status::OK();
      }));
  return stored;
}

struct StoreRun {
  std::vector<RecordedOutput> outputs;
  scoring::CustomerModels::Quality quality;
  size_t restarts = 0;
  size_t max_restored_customers = 0;  // in memory right after a restore
  size_t max_customers = 0;           // in memory after a checkpoint
  uint64_t evictions = 0;
  size_t max_buffered_snapshots = 0;  // churn snapshots in memory after a checkpoint
  uint64_t labels_from_index = 0;     // matured with the snapshot read from the store
  uint64_t loads = 0;                 // customers loaded from the store
  uint64_t prefetched = 0;            // of them, by a batch's read
  // The store's customer state and model entries after a last checkpoint.
  std::vector<std::pair<std::string, std::string>> stored;
};

// The same input through a store: a flush and a checkpoint every interval,
// a restart (fresh processor, RestoreProcessor) every `restart_every`
// intervals, at most `cached` customers in memory (0: no bound); with
// `prefetch` > 0, the customers of each `prefetch` records are loaded before
// them (as the engine does for a consumed batch).
StoreRun RunThroughStore(const std::vector<std::string>& records, size_t interval,
                         size_t restart_every, size_t cached, size_t prefetch = 0) {
  ScratchStore scratch_store;
  state::StateStore* store = scratch_store.store.get();
  const state::PartitionKey key = scratch_store.key;
  ProcessorOptions options = Options();
  options.cached_customers = cached;
  RecordingSink sink;
  StoreRun run;
  std::unique_ptr<EventProcessor> processor;
  for (size_t i = 0; i < records.size(); ++i) {
    if (i % (restart_every * interval) == 0) {
      if (processor) {
        run.evictions += processor->feature_store().evictions();
        run.labels_from_index += processor->customer_models().churn().saved_labels_resolved();
        run.loads += processor->customer_loads();
        run.prefetched += processor->customer_prefetches();
      }
      processor.reset();
      REQUIRE_OK_AND_ASSIGN(processor, EventProcessor::Create(options, &sink));
      REQUIRE_OK(RestoreProcessor(*store, key, processor.get()));
      run.max_restored_customers =
          std::max(run.max_restored_customers, processor->feature_store().size());
      ++run.restarts;
    }
    if (prefetch > 0 && i % prefetch == 0) {
      for (size_t j = i; j < std::min(records.size(), i + prefetch); ++j) {
        processor->PrefetchCustomerOf(records[j]);
      }
      processor->LoadPrefetchedCustomers();
    }
    processor->Process(records[i], {"crm.events", 0, static_cast<int64_t>(i)}, 0);
    if ((i + 1) % interval == 0) {
      processor->FlushOutputs();
      Checkpoint(processor.get(), store, key, static_cast<int64_t>(i + 1));
      run.max_customers = std::max(run.max_customers, processor->feature_store().size());
      run.max_buffered_snapshots = std::max(
          run.max_buffered_snapshots, processor->customer_models().churn().buffered_snapshots());
    }
  }
  processor->FlushOutputs();
  REQUIRE_OK(processor->storage_status());
  Checkpoint(processor.get(), store, key, static_cast<int64_t>(records.size()));
  run.stored = StoredCustomers(*store, options);
  run.evictions += processor->feature_store().evictions();
  run.labels_from_index += processor->customer_models().churn().saved_labels_resolved();
  run.loads += processor->customer_loads();
  run.prefetched += processor->customer_prefetches();
  run.outputs = std::move(sink.records);
  run.quality = processor->customer_models().quality();
  return run;
}

// Processes `records` with the checkpoints staged as the engine stages them:
// at the end of each interval the state goes into a batch (AddToCheckpoint,
// MarkCheckpointed) committed only at the end of the next one, while labels
// keep maturing. `around_stage(stage)` calls stage() once.
template <typename AroundStage>
void RunWithStagedCheckpoints(const std::vector<std::string>& records, size_t interval,
                              EventProcessor* processor, const ScratchStore& s,
                              AroundStage around_stage) {
  REQUIRE_OK(RestoreProcessor(*s.store, s.key, processor));
  std::optional<state::CheckpointBatch> staged;
  std::string scratch;
  for (size_t i = 0; i < records.size(); ++i) {
    processor->Process(records[i], {"crm.events", 0, static_cast<int64_t>(i)}, 0);
    if ((i + 1) % interval != 0) continue;
    processor->FlushOutputs();
    if (staged) REQUIRE_OK(s.store->Commit(&*staged));
    staged.emplace(s.store->NewBatch());
    around_stage([&] {
      REQUIRE_OK(AddToCheckpoint(*processor, 0, s.key, &*staged, &scratch));
      MarkCheckpointed(processor);
    });
  }
  processor->FlushOutputs();
  REQUIRE_OK(processor->storage_status());
}

void CheckSameQuality(const scoring::CustomerModels::Quality& q,
                      const scoring::CustomerModels::Quality& expected) {
  CHECK(q.churn_positives == expected.churn_positives);
  CHECK(q.churn_negatives == expected.churn_negatives);
  CHECK(q.churn_auc == expected.churn_auc);
  CHECK(q.value_rmse == expected.value_rmse);
  CHECK(q.pending_examples == expected.pending_examples);
  CHECK(q.kmeans_points == expected.kmeans_points);
}

TEST_CASE("A processor restored from the store continues exactly as one never stopped",
          "[pipeline][state]") {
  const std::vector<std::string> records = GeneratedRecords(/*customers=*/300, /*days=*/100);
  REQUIRE(records.size() > 20 * kEventsPerInterval);
  scoring::CustomerModels::Quality expected_quality;
  const std::vector<RecordedOutput> expected =
      RunWithoutRestarts(records, kEventsPerInterval, &expected_quality);
  // Labels matured (the index path is exercised) and alerts were raised.
  REQUIRE(expected_quality.churn_positives + expected_quality.churn_negatives > 200);
  size_t alerts = 0;
  for (const auto& r : expected) alerts += r.kind == OutputKind::kChurnAlerts ? 1 : 0;
  REQUIRE(alerts > 0);

  const StoreRun run = RunThroughStore(records, kEventsPerInterval, /*restart_every=*/7,
                                       /*cached=*/0);
  CHECK(run.restarts > 3);
  // Nothing is decoded up front: a restored processor starts empty.
  CHECK(run.max_restored_customers == 0);
  CHECK(SameOutputs(run.outputs, expected));
  CheckSameQuality(run.quality, expected_quality);
}

// The bytes (keys and values) a batch writes to the dedup family.
size_t DedupBytes(const state::CheckpointBatch& batch) {
  size_t bytes = 0;
  REQUIRE_OK(batch.ForEachStateChange(0, [&](const state::CheckpointBatch::StateChange& c) {
    if (c.family == state::StateFamily::kDedup) bytes += c.suffix.size() + c.value.size();
    return Status::OK();
  }));
  return bytes;
}

// The same ids in the same order, oldest first (the ring may be rotated).
void CheckSameDedupIds(const ingest::DedupWindow& a, const ingest::DedupWindow& b) {
  std::string x, y;
  a.EncodeTo(&x);
  b.EncodeTo(&y);
  REQUIRE(x == y);
}

TEST_CASE(
    "A checkpoint writes the dedup chunks its new event ids went to, and a restore "
    "rebuilds the same window",
    "[pipeline][state]") {
  using ingest::DedupWindow;
  constexpr size_t kCapacity = 3 * DedupWindow::kChunkIds;
  const std::vector<std::string> records = GeneratedRecords(/*customers=*/300, /*days=*/100);
  REQUIRE(records.size() > 3 * kCapacity);  // the ring wraps
  ScratchStore s;
  ProcessorOptions options = Options();
  options.dedup_capacity = kCapacity;
  RecordingSink sink;
  auto processor = s.Restored(options, &sink);
  // Two chunks and the head, sealed, with their keys.
  constexpr size_t kTwoChunks = 2 * (DedupWindow::kChunkIds * 8 + 64) + 128;
  std::string scratch;
  size_t checkpoints = 0, restores = 0, max_bytes = 0;
  // All the checkpoints' dedup bytes, and what writing the window whole
  // (format 6: EncodeTo, sealed, under the partition's key) would have.
  size_t total_bytes = 0, total_whole_bytes = 0;
  std::string whole;
  for (size_t i = 0; i < records.size(); ++i) {
    processor->Process(records[i], {"crm.events", 0, static_cast<int64_t>(i)}, 0);
    if ((i + 1) % kEventsPerInterval != 0) continue;
    processor->FlushOutputs();
    state::CheckpointBatch batch = s.store->NewBatch();
    REQUIRE_OK(AddToCheckpoint(*processor, 0, s.key, &batch, &scratch));
    const size_t bytes = DedupBytes(batch);
    REQUIRE(bytes > 0);  // the head at least
    if (checkpoints > 0) max_bytes = std::max(max_bytes, bytes);
    total_bytes += bytes;
    whole.clear();
    processor->dedup_window().EncodeTo(&whole);
    total_whole_bytes += SealBlob(BlobKind::kDedupWindow, 1, whole).size();
    REQUIRE_OK(s.store->Commit(&batch));
    MarkCheckpointed(processor.get());
    if (++checkpoints % 10 == 0) {
      RecordingSink other_sink;
      auto restored = s.Restored(options, &other_sink);
      testing::CheckSameDedupRing(processor->dedup_window(), restored->dedup_window());
      ++restores;
    }
  }
  CHECK(restores > 5);
  CHECK(processor->dedup_window().size() == kCapacity);
  // 400 events a checkpoint: one or two chunks, not the whole window (8
  // bytes an id). (Three when a capacity that is not a multiple of the chunk
  // wraps through its short last chunk: dedup_window_test.)
  CAPTURE(max_bytes, kTwoChunks, checkpoints, total_bytes, total_whole_bytes);
  CHECK(max_bytes <= kTwoChunks);
  CHECK(max_bytes < kCapacity * 8);
  CHECK(total_bytes < total_whole_bytes / 2);
}

TEST_CASE("A whole dedup window of a format-6 store is restored, then written as chunks once",
          "[pipeline][state]") {
  using ingest::DedupWindow;
  constexpr size_t kCapacity = 3 * DedupWindow::kChunkIds;
  const std::vector<std::string> records = GeneratedRecords(/*customers=*/50, /*days=*/60);
  REQUIRE(records.size() > kCapacity + 2 * kEventsPerInterval);
  ProcessorOptions options = Options();
  options.dedup_capacity = kCapacity;
  ScratchStore s;
  RecordingSink sink;
  REQUIRE_OK_AND_ASSIGN(auto processor, EventProcessor::Create(options, &sink));
  size_t next = 0;
  for (; next < kCapacity + kEventsPerInterval; ++next) {
    processor->Process(records[next], {"crm.events", 0, static_cast<int64_t>(next)}, 0);
  }
  processor->FlushOutputs();
  // The window as format 6 wrote it: whole, under the partition's key, no
  // head or chunks.
  {
    state::CheckpointBatch old_format = s.store->NewBatch();
    std::string payload;
    processor->dedup_window().EncodeTo(&payload);
    old_format.PutDedupWindow(
        s.key, SealBlob(BlobKind::kDedupWindow, DedupWindow::kEncodingVersion, payload));
    REQUIRE_OK(s.store->Commit(&old_format));
  }
  RecordingSink restored_sink;
  auto restored = s.Restored(options, &restored_sink);
  CheckSameDedupIds(processor->dedup_window(), restored->dedup_window());
  // Its next checkpoint writes every chunk and deletes the whole window.
  state::CheckpointBatch batch = s.store->NewBatch();
  std::string scratch;
  REQUIRE_OK(AddToCheckpoint(*restored, 0, s.key, &batch, &scratch));
  CHECK(DedupBytes(batch) > kCapacity * 8);
  REQUIRE_OK(s.store->Commit(&batch));
  MarkCheckpointed(restored.get());
  REQUIRE_OK_AND_ASSIGN(auto whole, s.store->GetDedupWindow(s.key));
  CHECK_FALSE(whole.has_value());
  // Then only what is new.
  for (size_t end = next + kEventsPerInterval; next < end; ++next) {
    restored->Process(records[next], {"crm.events", 0, static_cast<int64_t>(next)}, 0);
  }
  restored->FlushOutputs();
  batch = s.store->NewBatch();
  REQUIRE_OK(AddToCheckpoint(*restored, 0, s.key, &batch, &scratch));
  CHECK(DedupBytes(batch) < kCapacity * 8 / 2);
  REQUIRE_OK(s.store->Commit(&batch));
  MarkCheckpointed(restored.get());
  RecordingSink again_sink;
  auto again = s.Restored(options, &again_sink);
  testing::CheckSameDedupRing(restored->dedup_window(), again->dedup_window());
}

TEST_CASE("A dedup window restored under another configured size keeps the newest ids that fit",
          "[pipeline][state]") {
  using ingest::DedupWindow;
  constexpr size_t kSaved = 2 * DedupWindow::kChunkIds + 100;
  const std::vector<std::string> records = GeneratedRecords(/*customers=*/50, /*days=*/60);
  REQUIRE(records.size() > kSaved + kSaved / 2);
  const auto run = [&](size_t capacity, size_t events, OutputSink* sink) {
    ProcessorOptions options = Options();
    options.dedup_capacity = capacity;
    auto processor = EventProcessor::Create(options, sink);
    REQUIRE_OK(processor);
    for (size_t i = 0; i < events; ++i) {
      (*processor)->Process(records[i], {"crm.events", 0, static_cast<int64_t>(i)}, 0);
    }
    (*processor)->FlushOutputs();
    return std::move(*processor);
  };
  const size_t events = kSaved + kSaved / 2;  // the saved ring has wrapped
  ScratchStore s;
  RecordingSink sink;
  auto saved = run(kSaved, events, &sink);
  state::CheckpointBatch batch = s.store->NewBatch();
  std::string scratch;
  REQUIRE_OK(AddToCheckpoint(*saved, 0, s.key, &batch, &scratch));
  REQUIRE_OK(s.store->Commit(&batch));
  MarkCheckpointed(saved.get());
  // The reference for a smaller size: a processor configured with it all
  // along (its window holds the newest ids that fit); for a larger one, the
  // saved window (what it forgot is gone).
  for (const size_t capacity : {kSaved / 3, kSaved * 2}) {
    CAPTURE(capacity);
    RecordingSink reference_sink, restored_sink;
    const auto smaller = run(capacity, capacity < kSaved ? events : 0, &reference_sink);
    const DedupWindow& reference =
        capacity < kSaved ? smaller->dedup_window() : saved->dedup_window();
    auto restored = run(capacity, 0, &restored_sink);
    REQUIRE_OK(RestoreProcessor(*s.store, s.key, restored.get()));
    CHECK(restored->dedup_window().capacity() == capacity);
    REQUIRE(restored->dedup_window().size() == std::min(capacity, kSaved));
    // The same ids oldest first (the encoding after its capacity).
    std::string x, y;
    reference.EncodeTo(&x);
    restored->dedup_window().EncodeTo(&y);
    CHECK(x.substr(8) == y.substr(8));
    // Saved again at its own size, it restores as it is.
    ScratchStore t;
    batch = t.store->NewBatch();
    REQUIRE_OK(AddToCheckpoint(*restored, 0, t.key, &batch, &scratch));
    REQUIRE_OK(t.store->Commit(&batch));
    auto again = run(capacity, 0, &restored_sink);
    REQUIRE_OK(RestoreProcessor(*t.store, t.key, again.get()));
    testing::CheckSameDedupRing(restored->dedup_window(), again->dedup_window());
  }
  // Saved smaller into the same store: the chunks past its end are deleted
  // with it, the ones it uses rewritten.
  RecordingSink smaller_sink;
  auto smaller = run(kSaved / 3, 0, &smaller_sink);
  REQUIRE_OK(RestoreProcessor(*s.store, s.key, smaller.get()));
  const size_t saved_chunks = (kSaved + DedupWindow::kChunkIds - 1) / DedupWindow::kChunkIds;
  const size_t kept_chunks = smaller->dedup_window().chunk_count();
  REQUIRE(kept_chunks < saved_chunks);
  for (size_t c = 0; c < saved_chunks; ++c) {
    REQUIRE_OK_AND_ASSIGN(auto chunk, s.store->GetDedupChunk(s.key, static_cast<uint32_t>(c)));
    CHECK(chunk.has_value());
  }
  batch = s.store->NewBatch();
  REQUIRE_OK(AddToCheckpoint(*smaller, 0, s.key, &batch, &scratch));
  REQUIRE_OK(s.store->Commit(&batch));
  MarkCheckpointed(smaller.get());
  for (size_t c = 0; c < saved_chunks; ++c) {
    CAPTURE(c);
    REQUIRE_OK_AND_ASSIGN(auto chunk, s.store->GetDedupChunk(s.key, static_cast<uint32_t>(c)));
    CHECK(chunk.has_value() == (c < kept_chunks));
  }
  auto again = run(kSaved / 3, 0, &smaller_sink);
  REQUIRE_OK(RestoreProcessor(*s.store, s.key, again.get()));
  testing::CheckSameDedupRing(smaller->dedup_window(), again->dedup_window());
  // The next checkpoint deletes nothing more: the window is saved.
  size_t stale = 0;
  smaller->dedup_window().ForEachStaleChunk([&](size_t) { ++stale; });
  CHECK(stale == 0);
}

TEST_CASE("A processor holding a third of its customers gives the same outputs",
          "[pipeline][state]") {
  constexpr size_t kInterval = 100;
  constexpr size_t kCached = 100;
  const Reference reference(kInterval);
  REQUIRE(reference.quality.churn_positives + reference.quality.churn_negatives > 200);

  const StoreRun run = RunThroughStore(reference.records, kInterval, /*restart_every=*/40, kCached);
  // Customers came and went many times over, and memory held about the cap
  // (an interval's new customers stay until its checkpoint saves them).
  CHECK(run.evictions > 10 * kCached);
  CHECK(run.max_customers <= kCached + kInterval);
  // Each committed checkpoint takes every churn snapshot out of memory, and
  // most labels read theirs back from the store's index: their customers
  // were evicted or restored since the snapshot, or simply checkpointed.
  CHECK(run.max_buffered_snapshots == 0);
  const uint64_t labels = reference.quality.churn_positives + reference.quality.churn_negatives;
  CHECK(run.labels_from_index > labels / 2);
  CHECK(run.labels_from_index <= labels);
  CHECK(SameOutputs(run.outputs, reference.outputs));
  CheckSameQuality(run.quality, reference.quality);
}

TEST_CASE("A batch's cache misses read at once give the same outputs and the same store",
          "[pipeline][state]") {
  constexpr size_t kInterval = 100;
  constexpr size_t kCached = 100;
  const Reference reference(kInterval);

  const StoreRun one_at_a_time =
      RunThroughStore(reference.records, kInterval, /*restart_every=*/40, kCached);
  // Batches across the checkpoints (a batch's loads are saved customers),
  // and larger than the cache (the rest are loaded one at a time).
  for (const size_t batch : {size_t{64}, size_t{130}, size_t{400}}) {
    DYNAMIC_SECTION("batches of " << batch) {
      const StoreRun prefetched =
          RunThroughStore(reference.records, kInterval, /*restart_every=*/40, kCached, batch);
      CHECK(SameOutputs(prefetched.outputs, reference.outputs));
      CheckSameQuality(prefetched.quality, reference.quality);
      CHECK(prefetched.stored == one_at_a_time.stored);
      // The batches did load customers, most of them, and no more than one
      // at a time does: a customer read ahead stays until its event (18.8k,
      // 18.3k and 16.1k loads against 19.4k; 20.0k, 20.7k and 22.2k when
      // the batch's other loads and the events could evict it).
      CHECK(prefetched.loads > 10 * kCached);
      CHECK(prefetched.prefetched > prefetched.loads * 9 / 10);
      CHECK(prefetched.loads <= one_at_a_time.loads);
      // At most the cache per batch, and memory bounded as one at a time
      // (a batch that spans checkpoints holds its customers across them).
      const size_t batches = (reference.records.size() + batch - 1) / batch;
      CHECK(prefetched.prefetched <= batches * kCached);
      CHECK(prefetched.max_customers <= kCached + kInterval);
    }
  }
  CHECK(SameOutputs(one_at_a_time.outputs, reference.outputs));
  CHECK(one_at_a_time.prefetched == 0);
  CHECK(one_at_a_time.stored.size() > 300);
}

TEST_CASE("A cache under pressure checkpoints early and holds its capacity", "[pipeline][state]") {
  constexpr size_t kCached = 60;
  constexpr size_t kBatch = 20;
  const std::vector<std::string> records = GeneratedRecords(/*customers=*/300, /*days=*/100);
  struct Run {
    std::vector<size_t> checkpoints;  // the records processed at each
    size_t max_customers = 0;         // in memory after a batch
    uint64_t over_capacity = 0;
    std::vector<RecordedOutput> outputs;
    scoring::CustomerModels::Quality quality;
    std::vector<std::pair<std::string, std::string>> stored;
  };
  // The engine's at-least-once loop with a commit interval longer than the
  // input: per consumed batch, its misses read ahead, its events, the
  // scores refreshed; a flush and a checkpoint only when the cache asks
  // (`on_pressure`), or at the records in `at`; one at the end.
  const auto run = [&](size_t cached, bool on_pressure, const std::vector<size_t>& at) {
    ScratchStore s;
    ProcessorOptions options = Options();
    options.cached_customers = cached;
    RecordingSink sink;
    auto processor = s.Restored(options, &sink);
    Run r;
    auto next = at.begin();
    for (size_t i = 0; i < records.size(); i += kBatch) {
      const size_t end = std::min(records.size(), i + kBatch);
      for (size_t j = i; j < end; ++j) processor->PrefetchCustomerOf(records[j]);
      processor->LoadPrefetchedCustomers();
      for (size_t j = i; j < end; ++j) {
        processor->Process(records[j], {"crm.events", 0, static_cast<int64_t>(j)}, 0);
      }
      processor->RefreshScores();
      r.max_customers = std::max(r.max_customers, processor->feature_store().size());
      const bool due = next != at.end() && *next == end;
      if (due) ++next;
      if (due || (on_pressure && processor->feature_store().UnderPressure())) {
        processor->FlushOutputs();
        Checkpoint(processor.get(), s.store.get(), s.key, static_cast<int64_t>(end));
        r.checkpoints.push_back(end);
      }
    }
    processor->FlushOutputs();
    REQUIRE_OK(processor->storage_status());
    Checkpoint(processor.get(), s.store.get(), s.key, static_cast<int64_t>(records.size()));
    r.over_capacity = processor->feature_store().over_capacity();
    r.outputs = std::move(sink.records);
    r.quality = processor->customer_models().quality();
    r.stored = StoredCustomers(*s.store, options);
    return r;
  };

  const Run small = run(kCached, /*on_pressure=*/true, {});
  // The independent reference: a cache that holds everyone, flushed and
  // checkpointed at the same records.
  const Run everyone = run(0, /*on_pressure=*/false, small.checkpoints);
  // Without the early checkpoints the input does not fit: the store grows.
  const Run grown = run(kCached, /*on_pressure=*/false, {});
  REQUIRE(grown.max_customers > 4 * kCached);

  // Pressure checkpointed many times, and memory held the capacity but for
  // at most one batch's customers (the pressure is checked between batches).
  CHECK(small.checkpoints.size() > 10);
  CHECK(small.max_customers <= kCached + kBatch);
  CHECK(everyone.checkpoints == small.checkpoints);
  CHECK(everyone.max_customers > 4 * kCached);
  CHECK(SameOutputs(small.outputs, everyone.outputs));
  CheckSameQuality(small.quality, everyone.quality);
  CHECK(small.stored.size() > 300);
  CHECK(small.stored == everyone.stored);
}

// A login of customer `c` (event `n`, `n` ms after 2026-03-01).
std::string LoginOf(int c, int n) {
  return R"({"event_id":"p)" + std::to_string(n) + R"(","customer_id":"c)" + std::to_string(c) +
         R"(","timestamp":)" + std::to_string(int64_t{1'772'366'400'000} + n) +
         R"(,"type":"login"})";
}

TEST_CASE("Customers whose labels resolve without an event of theirs count toward the pressure",
          "[pipeline][state]") {
  // A label that matures changes the models only: its customer must stay
  // until a checkpoint saves that, so the cache's pressure counts it.
  constexpr size_t kCached = 40;  // asks for a checkpoint at 30
  constexpr int kCustomers = 32;
  ScratchStore s;
  ProcessorOptions options = Options();
  options.cached_customers = kCached;
  RecordingSink sink;
  auto processor = s.Restored(options, &sink);
  // A login each: a pending churn example each, labelled 30 days on.
  for (int c = 0; c < kCustomers; ++c) processor->Process(LoginOf(c, c), {"crm.events", 0, c}, 0);
  processor->FlushOutputs();
  Checkpoint(processor.get(), s.store.get(), s.key, kCustomers);
  const features::FeatureStore& store = processor->feature_store();
  REQUIRE(store.unsaved_count() == 0);
  REQUIRE_FALSE(store.UnderPressure());
  // Another customer's login 31 days later: every example matures.
  const std::string later = R"({"event_id":"later","customer_id":"c999","timestamp":)" +
                            std::to_string(int64_t{1'772'366'400'000} + 31 * kMsPerDay) +
                            R"(,"type":"login"})";
  processor->Process(later, {"crm.events", 0, kCustomers}, 0);
  processor->RefreshScores();
  CHECK(processor->customer_models().churn().quality().churn_positives +
            processor->customer_models().churn().quality().churn_negatives ==
        kCustomers);
  CHECK(store.unsaved_count() == 1);
  CHECK(store.pinned_count() == kCustomers);
  CHECK(store.UnderPressure());
  // The checkpoint that saves their models ends it.
  processor->FlushOutputs();
  Checkpoint(processor.get(), s.store.get(), s.key, kCustomers + 1);
  CHECK(store.pinned_count() == 0);
  CHECK_FALSE(store.UnderPressure());
  REQUIRE_OK(processor->storage_status());
}

TEST_CASE("A batch's prefetched customers stay in the cache until their events",
          "[pipeline][state]") {
  constexpr size_t kCached = 100;
  constexpr int kSaved = 300;
  constexpr int kUnsaved = 70;  // in memory with changes no checkpoint holds
  // Each run's store: every customer saved by one checkpoint.
  const auto saved_customers = [](const ScratchStore& s) {
    RecordingSink sink;
    auto processor = s.Restored(Options(), &sink);
    for (int c = 0; c < kSaved; ++c) processor->Process(LoginOf(c, c), {"crm.events", 0, c}, 0);
    processor->FlushOutputs();
    Checkpoint(processor.get(), s.store.get(), s.key, kSaved);
  };
  int n = kSaved;
  std::vector<std::string> unsaved;
  for (int c = 0; c < kUnsaved; ++c) unsaved.push_back(LoginOf(c, n++));
  // The batches: the first's misses (customers 100-139, one of them twice,
  // an event sent twice) outnumber the cache's room (30 customers: the other
  // 70 must stay); the second follows a checkpoint, which frees the cache.
  std::vector<std::string> first_batch, second_batch;
  for (int c = 100; c < 140; ++c) first_batch.push_back(LoginOf(c, n++));
  first_batch.push_back(LoginOf(120, n++));
  first_batch.push_back(first_batch[5]);
  first_batch.push_back(LoginOf(3, n++));  // in memory
  for (int c = 200; c < 260; ++c) second_batch.push_back(LoginOf(c, n++));

  struct Loads {
    uint64_t single = 0;
    uint64_t batched = 0;
    size_t distinct_misses = 0;  // of the batch's customers, those not in memory before it
  };
  struct Run {
    Loads first, second;
    std::vector<RecordedOutput> outputs;
  };
  const auto run = [&](bool prefetch) {
    ScratchStore scratch_store;
    saved_customers(scratch_store);
    Run r;
    RecordingSink sink;
    ProcessorOptions options = Options();
    options.cached_customers = kCached;
    auto processor = scratch_store.Restored(options, &sink);
    int64_t offset = kSaved;
    for (const std::string& record : unsaved) {
      processor->Process(record, {"crm.events", 0, offset++}, 0);
    }
    const auto batch = [&](const std::vector<std::string>& records, Loads* loads) {
      const features::FeatureStore& store = processor->feature_store();
      std::vector<std::string> missing;
      ingest::Event e;
      REQUIRE_OK_AND_ASSIGN(auto decoder, ingest::EventDecoder::Create(options.decoder));
      for (const std::string& record : records) {
        REQUIRE_FALSE(decoder.Decode(record, 0, &e).rejected());
        if (store.Find(e.customer_id) == nullptr) missing.emplace_back(e.customer_id);
      }
      std::sort(missing.begin(), missing.end());
      loads->distinct_misses =
          static_cast<size_t>(std::unique(missing.begin(), missing.end()) - missing.begin());
      const uint64_t all = processor->customer_loads();
      const uint64_t batched = processor->customer_prefetches();
      if (prefetch) {
        for (const std::string& record : records) processor->PrefetchCustomerOf(record);
        processor->LoadPrefetchedCustomers();
      }
      for (const std::string& record : records) {
        processor->Process(record, {"crm.events", 0, offset++}, 0);
      }
      loads->batched = processor->customer_prefetches() - batched;
      loads->single = processor->customer_loads() - all - loads->batched;
    };
    batch(first_batch, &r.first);
    processor->FlushOutputs();
    REQUIRE_OK(processor->storage_status());
    Checkpoint(processor.get(), scratch_store.store.get(), scratch_store.key, offset);
    batch(second_batch, &r.second);
    processor->FlushOutputs();
    REQUIRE_OK(processor->storage_status());
    r.outputs = std::move(sink.records);
    return r;
  };

  const Run one_at_a_time = run(false);
  const Run prefetched = run(true);
  // An independent count: a customer not in memory before the batch is
  // loaded once, by its first event.
  CHECK(one_at_a_time.first.distinct_misses == 40);
  CHECK(one_at_a_time.first.single == one_at_a_time.first.distinct_misses);
  CHECK(one_at_a_time.second.distinct_misses == 60);
  CHECK(one_at_a_time.second.single == one_at_a_time.second.distinct_misses);
  // Prefetched: as many as the cache has room for, none of them evicted
  // before its event (loaded again); the rest loaded by their events.
  CHECK(prefetched.first.distinct_misses == one_at_a_time.first.distinct_misses);
  CHECK(prefetched.first.batched == kCached - kUnsaved);
  CHECK(prefetched.first.batched + prefetched.first.single == one_at_a_time.first.distinct_misses);
  // After the checkpoint every customer may go but the batch's own.
  CHECK(prefetched.second.batched == one_at_a_time.second.distinct_misses);
  CHECK(prefetched.second.single == 0);
  CHECK(SameOutputs(prefetched.outputs, one_at_a_time.outputs));
  CHECK(one_at_a_time.outputs.size() > 100);
}

TEST_CASE("Noting a batch's customers allocates nothing per record once its buffers have grown",
          "[pipeline][state][allocation]") {
  constexpr size_t kCached = 100;
  const std::vector<std::string> records = GeneratedRecords(/*customers=*/300, /*days=*/100);
  REQUIRE(records.size() > 2000);
  ScratchStore scratch_store;
  ProcessorOptions options = Options();
  options.cached_customers = kCached;
  RecordingSink sink;
  auto processor = scratch_store.Restored(options, &sink);
  for (size_t i = 0; i < 1000; ++i) {
    processor->Process(records[i], {"crm.events", 0, static_cast<int64_t>(i)}, 0);
    if (i % 100 == 99) {
      processor->FlushOutputs();
      Checkpoint(processor.get(), scratch_store.store.get(), scratch_store.key,
                 static_cast<int64_t>(i + 1));
    }
  }
  // A batch of 600 records grows the buffers to the most a batch notes (half
  // the cache) and loads its misses; a later batch of other misses and of
  // customers in memory must not allocate to note them, nor a read of none.
  const auto note = [&](size_t from, size_t to) {
    for (size_t i = from; i < to; ++i) processor->PrefetchCustomerOf(records[i]);
  };
  note(1000, 1600);
  const uint64_t loads = processor->customer_loads();
  processor->LoadPrefetchedCustomers();
  CHECK(processor->customer_loads() > loads);
  testing::StartCountingAllocations();
  note(1600, 1800);
  const long allocations = testing::StopCountingAllocations();
  CHECK(allocations == 0);
  processor->LoadPrefetchedCustomers();
  testing::StartCountingAllocations();
  processor->LoadPrefetchedCustomers();
  CHECK(testing::StopCountingAllocations() == 0);
  REQUIRE_OK(processor->storage_status());
}

TEST_CASE("A processor prefetches while its events often load saved customers, and not otherwise",
          "[pipeline][state]") {
  const std::vector<std::string> records = GeneratedRecords(/*customers=*/300, /*days=*/100);
  REQUIRE(records.size() > 3 * 4096);
  ScratchStore scratch_store;
  RecordingSink sink;
  ProcessorOptions options = Options();
  // Every customer fits: after the first touch none is read from the store.
  options.cached_customers = 1000;
  auto processor = scratch_store.Restored(options, &sink);
  CHECK(processor->PrefetchPays());  // on until measured
  size_t i = 0;
  for (; i < 4096; ++i) {
    processor->Process(records[i], {"crm.events", 0, static_cast<int64_t>(i)}, 0);
  }
  processor->FlushOutputs();
  Checkpoint(processor.get(), scratch_store.store.get(), scratch_store.key,
             static_cast<int64_t>(i));
  CHECK(processor->customer_loads() == 0);  // new customers are not loads
  CHECK_FALSE(processor->PrefetchPays());

  // A restart whose cache holds a sixth of the customers: most events find
  // their customer in the store.
  options.cached_customers = 50;
  processor = scratch_store.Restored(options, &sink);
  const size_t restart = i;
  for (; i < restart + 4096; ++i) {
    processor->Process(records[i], {"crm.events", 0, static_cast<int64_t>(i)}, 0);
    if (i % 100 == 99) {
      processor->FlushOutputs();
      Checkpoint(processor.get(), scratch_store.store.get(), scratch_store.key,
                 static_cast<int64_t>(i + 1));
    }
  }
  CHECK(processor->customer_loads() * 64 >= 4096);
  CHECK(processor->PrefetchPays());
  REQUIRE_OK(processor->storage_status());
}

TEST_CASE("Churn snapshots stay in memory until the checkpoint holding them is committed",
          "[pipeline][state]") {
  constexpr size_t kInterval = 100;
  const Reference reference(kInterval);

  ScratchStore scratch_store;
  RecordingSink sink;
  REQUIRE_OK_AND_ASSIGN(auto processor, EventProcessor::Create(Options(), &sink));
  const scoring::ChurnValueModel& churn = processor->customer_models().churn();
  size_t kept_until_commit = 0;
  RunWithStagedCheckpoints(reference.records, kInterval, processor.get(), scratch_store,
                           [&](auto stage) {
                             const size_t before = churn.buffered_snapshots();
                             stage();
                             // Released: the previous checkpoint's snapshots, committed now; kept:
                             // this one's, which the store does not have yet.
                             const size_t after = churn.buffered_snapshots();
                             CHECK(after <= before);
                             if (after > 0) ++kept_until_commit;
                           });
  CHECK(kept_until_commit > 10);
  CHECK(churn.saved_labels_resolved() > 0);
  CHECK(SameOutputs(sink.records, reference.outputs));
  CheckSameQuality(processor->customer_models().quality(), reference.quality);
}

TEST_CASE("A customer evicted while its checkpoint is staged comes back with the staged state",
          "[pipeline][state]") {
  // A checkpoint staged (its customers' state copied into the batch, their
  // unsaved marks cleared) and committed only after the next interval's
  // events, with a cache of a fifth of the customers: the cache must not let
  // a staged customer go and then load it from the store, which does not
  // have its staged changes yet.
  constexpr size_t kInterval = 100;
  constexpr size_t kCached = 60;
  const Reference reference(kInterval);

  ScratchStore scratch_store;
  ProcessorOptions options = Options();
  options.cached_customers = kCached;
  RecordingSink sink;
  REQUIRE_OK_AND_ASSIGN(auto processor, EventProcessor::Create(options, &sink));
  RunWithStagedCheckpoints(reference.records, kInterval, processor.get(), scratch_store,
                           [](auto stage) { stage(); });
  // Customers came and went (the cache was under pressure) and came back.
  CHECK(processor->feature_store().evictions() > 10 * kCached);
  CHECK(processor->customer_loads() > 10 * kCached);
  CHECK(SameOutputs(sink.records, reference.outputs));
  CheckSameQuality(processor->customer_models().quality(), reference.quality);
}

TEST_CASE("The label deadline index holds exactly the pending examples after a checkpoint",
          "[pipeline][state]") {
  const std::vector<std::string> records = GeneratedRecords(/*customers=*/200, /*days=*/60);
  ScratchStore scratch_store;
  state::StateStore* store = scratch_store.store.get();
  const state::PartitionKey key = scratch_store.key;
  RecordingSink sink;
  REQUIRE_OK_AND_ASSIGN(auto processor, EventProcessor::Create(Options(), &sink));
  for (size_t i = 0; i < records.size(); ++i) {
    processor->Process(records[i], {"crm.events", 0, static_cast<int64_t>(i)}, 0);
    if ((i + 1) % kEventsPerInterval == 0) {
      processor->FlushOutputs();
      Checkpoint(processor.get(), store, key, static_cast<int64_t>(i + 1));
    }
  }
  processor->FlushOutputs();
  Checkpoint(processor.get(), store, key, static_cast<int64_t>(records.size()));

  // The reference: every customer in memory with a pending example, and
  // its deadline (snapshot time + horizon).
  const auto& features = processor->feature_store();
  const auto& churn = processor->customer_models().churn();
  const int64_t horizon_ms = int64_t{churn.options().horizon_days} * kMsPerDay;
  std::vector<std::pair<int64_t, std::string>> pending;
  for (uint32_t s = 0; s < features.size(); ++s) {
    if (auto ms = churn.PendingSnapshotMs(s)) {
      pending.emplace_back(*ms + horizon_ms, std::string(features.At(s).customer_id()));
    }
  }
  REQUIRE(pending.size() > 50);
  std::vector<std::pair<int64_t, std::string>> indexed;
  std::optional<state::LabelDeadline> next;
  for (int guard = 0; guard < 100'000; ++guard) {
    REQUIRE_OK_AND_ASSIGN(next, store->NextLabelDeadline(key, next ? &*next : nullptr));
    if (!next) break;
    indexed.emplace_back(next->deadline_ms, next->customer_id);
  }
  // In deadline order, one entry per pending example, nothing stale.
  CHECK(std::is_sorted(indexed.begin(), indexed.end(),
                       [](const auto& a, const auto& b) { return a.first < b.first; }));
  std::sort(pending.begin(), pending.end());
  std::sort(indexed.begin(), indexed.end());
  CHECK(indexed == pending);
  CHECK(pending.size() == churn.quality().pending_examples);
}

}  // namespace
}  // namespace crmstream::pipeline
