#include "crmstream/pipeline/memory_plan.h"

#include <malloc.h>

#include <catch2/catch.hpp>
#include <string>

#include "crmstream/generator/world_generator.h"
#include "crmstream/pipeline/event_processor.h"
#include "crmstream/pipeline/partition_checkpoint.h"
#include "recording_sink.h"
#include "support/require_ok.h"
#include "support/test_support.h"

namespace crmstream::pipeline {
namespace {

TEST_CASE("A memory cap too small to run is refused with every size named", "[pipeline]") {
  MemoryPlanInput in;
  in.cap_bytes = size_t{64} << 20;
  in.partitions = 12;
  in.dedup_ids = 1'000'000;
  auto plan = PlanMemory(in);
  REQUIRE_FALSE(plan.ok());
  CHECK(plan.status().code() == StatusCode::kInvalidArgument);
  CHECK_THAT(plan.status().message(),
             Catch::Contains("state.memory_cap_mb") && Catch::Contains("64.0 MiB") &&
                 Catch::Contains("fixed 52.0 MiB") && Catch::Contains("dedup windows 19.6 MiB") &&
                 Catch::Contains("Kafka clients 8.0 MiB") && Catch::Contains("1000000 ids") &&
                 Catch::Contains("checkpoints 4.0 MiB") && Catch::Contains("RocksDB 8.0 MiB") &&
                 Catch::Contains("12 partitions"));
}

TEST_CASE("The memory plan gives every part of the cap a size and spends no more", "[pipeline]") {
  MemoryPlanInput in;
  in.cap_bytes = size_t{1} << 30;
  in.partitions = 4;
  in.dedup_ids = 1'000'000;
  REQUIRE_OK_AND_ASSIGN(const MemoryPlan plan, PlanMemory(in));
  CHECK(plan.fixed_bytes + plan.dedup_bytes + plan.kafka_bytes + plan.checkpoint_bytes +
            plan.rocksdb_bytes + plan.customer_cache_bytes ==
        in.cap_bytes);
  // Each partition's window: a ring of its 250,000 ids and a table of
  // 2^19 slots (at most 2/3 full), 8 bytes each.
  CHECK(plan.dedup_bytes == 4 * (250'000 + 524'288) * 8);
  CHECK(plan.checkpoint_bytes == size_t{64} << 20);
  // The Kafka clients: half of what the allowance, the dedup windows and
  // the checkpoints leave (at most 128 MiB), and the librdkafka settings derived from it
  // spend no more than that, librdkafka's own bytes per message counted.
  CHECK(plan.kafka_bytes <= size_t{128} << 20);
  CHECK(plan.kafka_bytes > size_t{120} << 20);
  CHECK(plan.producer_bytes + plan.consumer_bytes <= plan.kafka_bytes);
  CHECK(plan.producer_bytes + plan.consumer_bytes > plan.kafka_bytes - (size_t{8} << 10));
  // A quarter of them the producer's: its queue, librdkafka's bytes for a
  // full count of the least records, and the copies of requests in flight.
  CHECK(plan.producer_queue_messages == plan.producer_queue_kbytes * 1024 / kMinQueuedRecordBytes);
  CHECK(plan.producer_bytes == 2 * plan.producer_queue_kbytes * 1024 +
                                   plan.producer_queue_messages * kProducerBytesPerQueuedMessage);
  CHECK(plan.producer_bytes <= plan.kafka_bytes / 4);
  CHECK(plan.producer_bytes > plan.kafka_bytes / 4 - (size_t{4} << 10));
  // Three quarters the consumer's: a fetch per partition, and the prefetch
  // queue (the consumer's, not a partition's) with librdkafka's bytes for
  // a full count of the least events: 4.2 times its payload limit.
  CHECK(plan.consumer_fetch_bytes == size_t{1} << 20);
  CHECK(plan.consumer_queue_messages == plan.consumer_queue_kbytes * 1024 / kMinQueuedRecordBytes);
  CHECK(plan.consumer_bytes == 4 * plan.consumer_fetch_bytes + plan.consumer_queue_kbytes * 1024 +
                                   plan.consumer_queue_messages * kConsumerBytesPerQueuedMessage);
  CHECK(static_cast<double>(plan.consumer_bytes - 4 * plan.consumer_fetch_bytes) ==
        Approx(4.2 * static_cast<double>(plan.consumer_queue_kbytes * 1024)).epsilon(1e-4));
  const double rest = static_cast<double>(in.cap_bytes - plan.fixed_bytes - plan.dedup_bytes -
                                          plan.kafka_bytes - plan.checkpoint_bytes);
  CHECK(static_cast<double>(plan.rocksdb_bytes) == Approx(rest * in.rocksdb_share).epsilon(1e-6));
  CHECK(plan.cached_customers_per_partition * 4 * kBytesPerCachedCustomer <=
        plan.customer_cache_bytes);
  CHECK(plan.cached_customers_per_partition > 100'000);
  // Just enough: the minimum cache and RocksDB's minimum.
  in.cap_bytes = in.fixed_bytes + plan.dedup_bytes + kMinRocksDbBytes +
                 kMinCachedCustomersPerPartition * kBytesPerCachedCustomer * 4;
  in.kafka_share = 0.01;  // the Kafka clients and the checkpoints at their minimum
  in.kafka_share_of_rest = 0.01;
  in.checkpoint_share = 0.001;
  in.cap_bytes += kMinCheckpointBytes;
  in.cap_bytes += kMinKafkaBytes;
  REQUIRE_OK_AND_ASSIGN(const MemoryPlan least, PlanMemory(in));
  CHECK(least.rocksdb_bytes == kMinRocksDbBytes);
  CHECK(least.cached_customers_per_partition == kMinCachedCustomersPerPartition);
  in.cap_bytes -= 1;
  CHECK(PlanMemory(in).status().code() == StatusCode::kInvalidArgument);
}

TEST_CASE("Each worker thread beyond the first takes its allowance from the customer caches",
          "[pipeline]") {
  MemoryPlanInput in;
  in.cap_bytes = size_t{256} << 20;
  in.partitions = 4;
  REQUIRE_OK_AND_ASSIGN(const MemoryPlan one, PlanMemory(in));
  in.worker_threads = 3;
  REQUIRE_OK_AND_ASSIGN(const MemoryPlan three, PlanMemory(in));
  CHECK(three.fixed_bytes == one.fixed_bytes + 2 * kBytesPerExtraWorker);
  // Still the whole cap, no more; the Kafka clients keep their floor share.
  CHECK(three.fixed_bytes + three.dedup_bytes + three.kafka_bytes + three.checkpoint_bytes +
            three.rocksdb_bytes + three.customer_cache_bytes ==
        in.cap_bytes);
  CHECK(three.customer_cache_bytes < one.customer_cache_bytes);
  CHECK(three.cached_customers_per_partition < one.cached_customers_per_partition);
}

TEST_CASE("The consumer's prefetch queue holds about a second of input at the default cap",
          "[pipeline]") {
  // librdkafka 2.0 pauses every partition's fetch for a second once the
  // consumer's queue is over queued.max.messages.kbytes: through the embedded
  // cluster the engine consumed 56k events/s with a 4 MiB queue and 118k
  // with 16 MiB (README "Benchmarks").
  MemoryPlanInput in;
  in.partitions = 12;
  in.dedup_ids = 1'000'000;  // the engine's default dedup windows together
  REQUIRE_OK_AND_ASSIGN(const MemoryPlan plan, PlanMemory(in));
  // A second of 110-byte events at 118k events/s is 13 MB.
  CHECK(plan.cap_bytes == size_t{256} << 20);
  CHECK(plan.consumer_queue_kbytes * 1024 >= size_t{13'000'000});
  CHECK(plan.cached_customers_per_partition >= 5000);  // the caches are not starved for it

  // A small cap still runs, its clients spending no more than an eighth of
  // it: most of what is left over the allowance, the dedup windows and the
  // checkpoints goes to the caches.
  in.cap_bytes = size_t{104} << 20;
  in.partitions = 3;
  REQUIRE_OK_AND_ASSIGN(const MemoryPlan small, PlanMemory(in));
  CHECK(small.kafka_bytes == size_t{13} << 20);
  CHECK(small.producer_bytes + small.consumer_bytes <= small.kafka_bytes);
  CHECK(small.consumer_queue_kbytes * 1024 > small.producer_queue_kbytes * 1024);
  CHECK(small.consumer_fetch_bytes >= size_t{64} << 10);
  CHECK(small.fixed_bytes + small.dedup_bytes + small.kafka_bytes + small.checkpoint_bytes +
            small.rocksdb_bytes + small.customer_cache_bytes ==
        in.cap_bytes);
}

TEST_CASE("The Kafka clients' buffers grow past their share only as far as their floors need",
          "[pipeline]") {
  MemoryPlanInput in;
  in.cap_bytes = size_t{512} << 20;
  in.partitions = 200;
  in.kafka_share = 0.02;  // 26 KiB per partition: below the floors
  in.kafka_share_of_rest = 0.02;
  REQUIRE_OK_AND_ASSIGN(const MemoryPlan plan, PlanMemory(in));
  CHECK(plan.consumer_fetch_bytes == size_t{64} << 10);
  CHECK(plan.consumer_queue_kbytes == 64);
  CHECK(plan.consumer_queue_messages == 1000);  // librdkafka's least that the plan sets
  CHECK(plan.consumer_bytes ==
        200 * (size_t{64} << 10) + (size_t{64} << 10) + 1000 * kConsumerBytesPerQueuedMessage);
  CHECK(plan.kafka_bytes == plan.producer_bytes + plan.consumer_bytes);
  CHECK(plan.kafka_bytes > static_cast<size_t>(0.02 * static_cast<double>(in.cap_bytes)));
  CHECK(plan.fixed_bytes + plan.dedup_bytes + plan.kafka_bytes + plan.checkpoint_bytes +
            plan.rocksdb_bytes + plan.customer_cache_bytes ==
        in.cap_bytes);
}

TEST_CASE("The recommender's customer histories take their share of the customer cache",
          "[pipeline]") {
  ProcessorOptions options;
  options.recommender.history_size = 16;  // a test-sized history
  options.recommender.max_customers = 2000;
  const size_t per_customer = models::ItemRecommender::BytesPerCustomer(options.recommender);
  MemoryPlanInput in;
  in.cap_bytes = size_t{512} << 20;
  in.partitions = 2;
  REQUIRE_OK_AND_ASSIGN(const MemoryPlan without, PlanMemory(in));
  in.extra_bytes_per_customer = per_customer;
  REQUIRE_OK_AND_ASSIGN(const MemoryPlan with, PlanMemory(in));
  CHECK(with.customer_cache_bytes == without.customer_cache_bytes);
  CHECK(with.cached_customers_per_partition * 2 * (kBytesPerCachedCustomer + per_customer) <=
        with.customer_cache_bytes);
  CHECK(with.cached_customers_per_partition < without.cached_customers_per_partition);

  // Measured: a recommender full of customers with full histories holds no
  // more than the estimate per customer beyond its item tables.
  REQUIRE_OK_AND_ASSIGN(models::ItemRecommender model,
                        models::ItemRecommender::Create(options.recommender));
  for (int i = 0; i < 16; ++i) model.Observe("seed", "item-" + std::to_string(i), 0);
  const size_t before = model.memory_bytes();
  for (uint32_t c = 0; c < options.recommender.max_customers; ++c) {
    for (int i = 0; i < 16; ++i) {
      model.Observe("customer-" + std::to_string(c), "item-" + std::to_string(i), 1000 + c);
    }
  }
  CHECK(model.customers() == options.recommender.max_customers);
  const size_t grown = model.memory_bytes() - before;
  CHECK(grown <= per_customer * options.recommender.max_customers);
  CHECK(grown >= per_customer * options.recommender.max_customers / 4);  // not a loose bound
}

size_t HeapBytes() {
  const struct mallinfo2 m = mallinfo2();
  return m.uordblks + m.hblkhd;
}

// RocksDB's own estimate of its heap: the block cache (memtables charged to
// it) and the table readers' index and filter blocks, which are not.
double StoreBytes(const state::StateStore& store) {
  const state::StateStore::Memory m = store.MemoryBreakdown();
  return static_cast<double>(m.block_cache_bytes + m.table_reader_bytes);
}

// A store with an 8 MiB cap in `dir`.
std::unique_ptr<state::StateStore> OpenStore(const testing::ScratchDir& dir) {
  state::StateStoreOptions options;
  options.path = dir.path() / "store";
  options.memory_cap_bytes = size_t{8} << 20;
  auto store = state::StateStore::Open(options);
  REQUIRE_OK(store);
  return std::move(*store);
}

// Flushes the outputs (dropped), writes and commits a checkpoint, as the
// engine does between batches.
void CheckpointNow(EventProcessor* processor, state::StateStore* store, state::PartitionKey key,
                   RecordingSink* sink) {
  processor->FlushOutputs();
  state::CheckpointBatch batch = store->NewBatch();
  std::string scratch;
  REQUIRE_OK(AddToCheckpoint(*processor, 0, key, &batch, &scratch));
  REQUIRE_OK(store->Commit(&batch));
  MarkCheckpointed(processor);
  sink->records.clear();
  sink->records.shrink_to_fit();
}

TEST_CASE("A cached customer costs at most kBytesPerCachedCustomer of heap", "[pipeline][state]") {
#if defined(__SANITIZE_ADDRESS__)
  // ASan's allocator keeps its own books: mallinfo2() does not see its heap.
  CRMSTREAM_SKIP("heap measurement needs the system allocator (not a sanitizer build)");
#endif
  testing::ScratchDir dir;
  const std::unique_ptr<state::StateStore> store = OpenStore(dir);
  REQUIRE_OK_AND_ASSIGN(const state::PartitionKey key, store->Partition("crm.events", 0));
  ProcessorOptions options;
  options.dedup_capacity = 1000;
  options.cached_customers = 24'000;
  RecordingSink sink;
  REQUIRE_OK_AND_ASSIGN(auto processor, EventProcessor::Create(options, &sink));
  REQUIRE_OK(RestoreProcessor(*store, key, processor.get()));
  generator::WorldOptions world;
  world.customers = 60'000;
  REQUIRE_OK_AND_ASSIGN(auto gen, generator::WorldGenerator::Create(world));
  std::string id, value;
  size_t heap_at_small = 0, customers_at_small = 0, accounted_at_small = 0;
  double store_at_small = 0;
  for (int64_t i = 0; i < 400'000; ++i) {
    gen->Next(&id, &value);
    processor->Process(value, {"crm.events", 0, i}, 0);
    if (i % 4000 == 3999) {
      CheckpointNow(processor.get(), store.get(), key, &sink);
      if (customers_at_small == 0 && processor->feature_store().size() >= 3000) {
        // Both measurements with empty memtables: RocksDB's estimate of a
        // memtable part-filled at either point moved the result by up to
        // 70 bytes per customer.
        REQUIRE_OK(store->Flush());
        heap_at_small = HeapBytes();
        store_at_small = StoreBytes(*store);
        customers_at_small = processor->feature_store().size();
        accounted_at_small = processor->customer_cache_memory().total();
      }
      if (processor->feature_store().evictions() > 0) break;  // the cache is full
    }
  }
  const size_t customers = processor->feature_store().size();
  REQUIRE(customers >= 20'000);
  REQUIRE(customers_at_small > 0);
  REQUIRE_OK(store->Flush());
  // The heap grown by the cache alone: RocksDB's own growth is taken out.
  const double store_grown = StoreBytes(*store) - store_at_small;
  const double grown = static_cast<double>(HeapBytes() - heap_at_small) - store_grown;
  const double customers_grown = static_cast<double>(customers - customers_at_small);
  const double per_customer = grown / customers_grown;
  WARN("heap per cached customer: " << per_customer << " bytes (RocksDB's estimate grew by "
                                    << store_grown / 1024 << " KiB meanwhile); the feature "
                                    << "store's own accounting: "
                                    << processor->feature_store().MemoryUsageBytes() / customers);
  CHECK(per_customer <= static_cast<double>(kBytesPerCachedCustomer));
  CHECK(per_customer > 100);  // measures something

  // The cache's own accounting (the crmstream_customer_cache_* gauges), by
  // part, against the layout and against the heap measured above.
  const EventProcessor::CustomerCacheMemory m = processor->customer_cache_memory();
  const auto& models = processor->customer_models();
  const double n = static_cast<double>(customers);
  auto per = [n](size_t bytes) { return static_cast<double>(bytes) / n; };
  WARN("accounted per cached customer: "
       << m.per_customer() << " = feature slots " << per(m.features.slots) << " + day history "
       << per(m.features.day_history) << " + long ids " << per(m.features.long_ids)
       << " + id index " << per(m.features.index) << " + feature tracking "
       << per(m.features.tracking) << " + churn slots " << per(m.models.churn_slots)
       << " + pending snapshots " << per(m.models.pending_snapshots) << " + label deadlines "
       << per(m.models.deadlines) << " + segments " << per(m.models.segments) << " + behaviour "
       << per(m.models.behaviour) << " + model tracking " << per(m.models.tracking) << " + store "
       << per(m.features.other) << "; layout: feature slot "
       << processor->feature_store().SlotBytes() << ", model slots " << models.BytesPerSlot());
  // Fixed-size parts of a full cache: one slot of each per customer, the
  // churn snapshots and deadlines of the examples taken since the last
  // committed checkpoint, the tracking lists of the customers changed since
  // the last clear, little spare room (the feature store's last block of
  // 1024 slots, the models' arrays one step of 1/32 past the capacity, the
  // snapshot buffer's geometric growth).
  const double layout =
      static_cast<double>(processor->feature_store().SlotBytes() + models.BytesPerSlot());
  const double fixed = per(m.total() - m.features.day_history - m.features.long_ids -
                           m.features.index - m.features.other);
  CHECK(fixed >= layout - static_cast<double>(scoring::ChurnValueModel::kDeadlineBytes));
  CHECK(fixed <= layout * 1.15);
  CHECK(per(m.features.index) <= 4.0 / 0.375 + 1);
  // The accounting sees what the heap grew by: the growth between the two
  // measurements, per customer, within 15% below (malloc's headers and
  // rounding are not all in it) and 25% above, give or take 1.5 MiB over
  // the run that is not the cache's: RocksDB's heap beside its own estimate
  // (taken out above), and in a run of the whole suite what earlier tests
  // left behind (measured 506 and 532 B of heap per customer on two
  // machines, 597 accounted; since the churn snapshots left memory, 337 B of
  // heap, 434 accounted; with the compact feature and model slots, 248-258 B
  // of heap in runs of this test alone and 255-326 B in runs of the whole
  // suite, 261 accounted; with the narrower slots, 191-228 B of heap in 12 of
  // 13 runs of this test alone and 265 B in one, 232 accounted).
  const double accounted_growth =
      static_cast<double>(m.total() - accounted_at_small) / customers_grown;
  const double noise = static_cast<double>(size_t{3} << 19) / customers_grown;
  CHECK(accounted_growth <= per_customer * 1.25 + noise);
  CHECK(accounted_growth >= per_customer * 0.85 - noise);
}

// A cache sized for quiet customers, filled with active ones: each of 1,000
// customers is active on most days of the 90-day window, so its day history
// (a few hundred bytes beyond its slot) and its churn snapshots make it
// cost several quiet ones. The cache's byte bound (the plan's share) holds:
// saved customers with histories leave at checkpoints and for new ones.
TEST_CASE("A cache of customers active on many days stays within its bytes", "[pipeline][state]") {
  struct Run {
    size_t most_heap = 0;    // day histories and long ids, at checkpoints
    size_t over_budget = 0;  // checkpoints after which it was over its budget
    size_t accounted = 0;    // the cache's own accounting, at the end
    size_t customers = 0;
    size_t vacant = 0;
    size_t budget = 0;
    uint64_t shed = 0;  // FeatureStore::shed(), crmstream_customers_shed_total
  };
  constexpr size_t kCached = 800;
  const auto run = [](size_t cache_bytes) {
    testing::ScratchDir dir;
    const std::unique_ptr<state::StateStore> store = OpenStore(dir);
    REQUIRE_OK_AND_ASSIGN(const state::PartitionKey key, store->Partition("crm.events", 0));
    ProcessorOptions options;
    options.dedup_capacity = 1000;
    options.cached_customers = kCached;
    options.customer_cache_bytes = cache_bytes;
    RecordingSink sink;
    REQUIRE_OK_AND_ASSIGN(auto processor, EventProcessor::Create(options, &sink));
    REQUIRE_OK(RestoreProcessor(*store, key, processor.get()));
    generator::WorldOptions world;
    world.customers = 1000;  // 500 events each, over 230 days
    REQUIRE_OK_AND_ASSIGN(auto gen, generator::WorldGenerator::Create(world));
    Run r;
    r.budget = processor->feature_store().budget_bytes();
    std::string id, value;
    for (int64_t i = 0; i < 500'000; ++i) {
      gen->Next(&id, &value);
      processor->Process(value, {"crm.events", 0, i}, 0);
      if (i % 4000 == 3999) {
        CheckpointNow(processor.get(), store.get(), key, &sink);
        const features::FeatureStore& features = processor->feature_store();
        r.most_heap = std::max(r.most_heap, features.heap_bytes());
        if (features.OverBudget()) ++r.over_budget;
      }
    }
    r.accounted = processor->customer_cache_memory().total();
    r.customers = processor->feature_store().size();
    r.vacant = processor->feature_store().vacant_slots();
    r.shed = processor->feature_store().shed();
    return r;
  };
  const Run bounded = run(kCached * kBytesPerCachedCustomer);
  const Run counted = run(0);
  WARN("active customers, a cache of "
       << kCached << ": with the byte bound " << bounded.customers << " customers ("
       << bounded.vacant << " slots vacant), " << bounded.accounted
       << " B accounted, day histories at most " << bounded.most_heap << " B (budget "
       << bounded.budget << "); by count alone " << counted.customers << " customers, "
       << counted.accounted << " B, histories up to " << counted.most_heap << " B");
  REQUIRE(bounded.budget > 0);
  CHECK(counted.budget == 0);
  CHECK(bounded.budget == kCached * kBytesPerCachedCustomer);
  CHECK(counted.shed == 0);
  CHECK(bounded.shed > 0);
  // By count alone the cache outgrows the plan's share for it.
  CHECK(counted.accounted > bounded.budget);
  // With the bound: within it after every checkpoint (everyone is saved
  // then), by shedding histories, and still caching customers. Its fixed
  // parts (a block of 1024 feature slots, the churn snapshots' buffer at
  // its peak) are most of the bytes at this size.
  CHECK(bounded.over_budget == 0);
  CHECK(bounded.accounted <= bounded.budget);
  CHECK(counted.most_heap > 2 * bounded.most_heap);
  CHECK(bounded.customers >= kCached / 8);
  CHECK(bounded.customers + bounded.vacant <= kCached);
}

}  // namespace
}  // namespace crmstream::pipeline
