// One memory cap for the engine (state.memory_cap_mb): how it is split
// between the parts that grow with the data, each sized from it.
//
//   fixed allowance   code, librdkafka, the partition-wide models, buffers
//   dedup windows     as configured (20-32 bytes per remembered id: a ring
//                     and a hash table at most 2/3 full)
//   Kafka clients     the producer's queue and the consumer's prefetch
//                     (librdkafka's queue.buffering.max.kbytes and
//                     .messages, queued.max.messages.kbytes,
//                     queued.min.messages, fetch.message.max.bytes), with
//                     librdkafka's own bytes per queued message
//   checkpoints       the working set of a checkpoint: its encoded changes,
//                     held at once by the encoder's per-task batches, the
//                     write batch and the changelog records until the
//                     brokers acknowledge them; the engine begins one
//                     early (or holds the input) before a checkpoint's
//                     changes outgrow it
//   RocksDB           block cache + memtables (StateStoreOptions::memory_cap_bytes)
//   customer cache    the partition tasks' customers in memory
//                     (ProcessorOptions::cached_customers, per partition),
//                     each with what the pipeline keeps per customer beside
//                     its cached state (the item recommender's history of
//                     the customer, whose table holds as many customers)
//
// The checkpoints get checkpoint_share of the cap (at least
// kMinCheckpointBytes), the Kafka clients kafka_share of the cap, or
// kafka_share_of_rest of what the allowance, the dedup windows and the
// checkpoints leave if that is more (within [kMinKafkaBytes,
// kMaxKafkaBytes]); what the allowance, the dedup
// windows, the clients and the checkpoints leave is shared by RocksDB
// (rocksdb_share) and the customer cache (the rest). A cap that cannot give
// each part its minimum is refused, with a message naming every size.
//
// Pure functions; thread-safe.
#pragma once

#include <cstddef>
#include <string>

#include "crmstream/common/status.h"

namespace crmstream::pipeline {

// Heap bytes one cached customer costs with the default features and every
// model (feature slot, day history, hash entry, model slots; a pending churn
// snapshot and its deadline only until the next committed checkpoint),
// rounded up: the cache's own accounting gives about 232 and the heap grows
// by about 190-230 per customer of a full cache
// (tests/pipeline/memory_plan_test.cpp measures both; 290 and 250-280
// before the narrower slots, 435 and 340 before the compact ones). The
// margin, at least the heap's own again, is the allocator's: with worker
// threads the caches grow in several malloc arenas (at 768 B, 1.4 times the
// heap of the time, the engine's resident set reached its cap;
// tests/runtime/memory_cap_test.cpp). Left at 640, 2.8-3.4 times the heap:
// at 512 the test's resident set reached 103.4 MiB of its 104 MiB cap in one
// of six runs over 40k customers (97.5 and 99.5 at 640, alternated).
inline constexpr size_t kBytesPerCachedCustomer = 640;

// What a processing thread beyond the first costs the resident set: its own
// malloc arena's slack (the caches grow in several arenas) and its tasks'
// output buffers. Measured: the engine's peak under a 96 MiB cap rose by up
// to 5 MiB with a second worker (tests/runtime/memory_cap_test.cpp).
inline constexpr size_t kBytesPerExtraWorker = size_t{4} << 20;

// librdkafka's limits on its queues count payload bytes, but it keeps its
// own bookkeeping beside each message: measured with librdkafka 2.0.2 (the
// resident set's growth per message, 100 to 1,000-byte messages, compressed
// or not), about 320 bytes per fetched message in the consumer's queue and
// 190 per message in the producer's. For small events that is most of the
// memory (a 110-byte event costs about 430 in the queue), so the plan
// counts messages too: each queue's message count is set so that its
// records of kMinQueuedRecordBytes or more reach its byte limit first, and
// the plan counts a full queue of them.
inline constexpr size_t kConsumerBytesPerQueuedMessage = 320;
inline constexpr size_t kProducerBytesPerQueuedMessage = 192;
inline constexpr size_t kMinQueuedRecordBytes = 100;

struct MemoryPlanInput {
  size_t cap_bytes = size_t{256} << 20;   // state.memory_cap_mb
  int partitions = 1;                     // input partitions the engine may own, >= 1
  size_t dedup_ids = 0;                   // remembered event ids, all partitions together
  size_t fixed_bytes = size_t{52} << 20;  // allowance for what does not grow with the data
  int worker_threads = 1;                 // processing threads; each beyond the first adds
                                          // kBytesPerExtraWorker to the fixed allowance
  double rocksdb_share = 0.4;             // of what is left, in (0, 1)
  double kafka_share = 0.125;             // of the cap, in (0, 1), at least
  double kafka_share_of_rest = 0.5;       // of cap - fixed - dedup - checkpoints, in (0, 1),
                                          // if more
  double checkpoint_share = 0.0625;       // of the cap, in (0, 1)
  // Heap bytes per cached customer beyond kBytesPerCachedCustomer (the
  // recommender's history when recommendations are on).
  size_t extra_bytes_per_customer = 0;
};

struct MemoryPlan {
  size_t cap_bytes = 0;
  size_t fixed_bytes = 0;
  size_t dedup_bytes = 0;
  // The clients' part: their share of the cap, or what the floors of the
  // settings below need if more. Their memory under those settings:
  size_t kafka_bytes = 0;
  size_t producer_bytes = 0;  // the producer's queue and its requests in flight
  size_t consumer_bytes = 0;  // the consumer's fetches and prefetch queue
  size_t checkpoint_bytes = 0;
  size_t rocksdb_bytes = 0;
  size_t customer_cache_bytes = 0;  // all partitions
  size_t cached_customers_per_partition = 0;
  // What one partition's cache may account for (its customers at
  // kBytesPerCachedCustomer each; ProcessorOptions::customer_cache_bytes):
  // a quiet customer accounts for about 232, one active on most days of the
  // longest window for about 480 in a cache of 8,000 and more in a small
  // one (its day history, churn snapshots, the arrays' fixed parts), and a
  // cache over it holds fewer customers
  // (tests/pipeline/memory_plan_test.cpp).
  size_t cached_state_bytes_per_partition = 0;
  // The Kafka clients' settings. A quarter of the clients' share is the
  // producer's: its queue's records, librdkafka's bytes beside each and a
  // request's copy of them in flight. The rest is the consumer's: its fetch
  // per partition (librdkafka grows it for a larger message) and one
  // prefetch queue for all of them, with librdkafka's bytes beside each.
  size_t producer_queue_kbytes = 0;    // queue.buffering.max.kbytes
  size_t producer_queue_messages = 0;  // queue.buffering.max.messages
  size_t consumer_queue_kbytes = 0;    // queued.max.messages.kbytes
  size_t consumer_queue_messages = 0;  // queued.min.messages
  size_t consumer_fetch_bytes = 0;     // fetch.message.max.bytes
  std::string ToString() const;        // every size, in MiB
};

inline constexpr size_t kMinRocksDbBytes = size_t{8} << 20;
inline constexpr size_t kMinKafkaBytes = size_t{8} << 20;
inline constexpr size_t kMaxKafkaBytes = size_t{128} << 20;
inline constexpr size_t kMinCachedCustomersPerPartition = 1000;
inline constexpr size_t kMinCheckpointBytes = size_t{2} << 20;

// Heap bytes of the dedup windows of `partitions` partitions remembering
// `ids` event ids together (ingest::DedupWindow's ring and table).
size_t DedupBytes(size_t ids, int partitions);

// InvalidArgument naming the sizes when the cap is too small.
Result<MemoryPlan> PlanMemory(const MemoryPlanInput& in);

}  // namespace crmstream::pipeline
