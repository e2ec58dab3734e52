#include "crmstream/pipeline/memory_plan.h"

#include <algorithm>
#include <cstdio>

#include "crmstream/ingest/dedup_window.h"

namespace crmstream::pipeline {
namespace {

constexpr size_t kMinFetchBytes = size_t{64} << 10;
constexpr size_t kMinQueueKbytes = 64;

std::string Mib(size_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1f MiB", static_cast<double>(bytes) / (1 << 20));
  return buf;
}

// The plan's least message count (librdkafka accepts 1) and librdkafka's most.
constexpr size_t kMinQueueMessages = 1000;
constexpr size_t kMaxQueueMessages = 10'000'000;

// A queue's message count for `bytes` of records of kMinQueuedRecordBytes.
size_t QueueMessages(size_t bytes) {
  return std::clamp(bytes / kMinQueuedRecordBytes, kMinQueueMessages, kMaxQueueMessages);
}

// The Kafka clients' share of the cap, turned into librdkafka settings whose
// memory, librdkafka's own per message included, is the share. The producer
// (a quarter of the share; outputs wait there only until acknowledged)
// holds its queued records, librdkafka's ~190 bytes per record, and, while
// a batch is in flight, its records' copies in the request. The consumer
// holds one fetch per partition (fetch.message.max.bytes, an eighth of its
// part at most; a fetch returns at least one whole record batch, so input
// batched larger than that overshoots it by the batch) and the prefetch
// queue: its records and ~320 bytes per record. The prefetch queue is what
// keeps the engine fed: librdkafka 2.0 stops fetching every partition for a
// fixed second once the consumer's queue is over its limit (the partitions'
// fetch queues forward to that one queue, whose size it checks), so the
// queue must hold about a second of input at the engine's rate; measured
// through the embedded cluster, 4 MiB gave 56k events/s, 8 MiB 94k, 16 MiB
// 118k, 64 MiB 126k. Floors keep every client working; with many
// partitions they may exceed the share, and kafka_bytes is then what the
// settings really allow.
void SizeKafkaClients(const MemoryPlanInput& in, MemoryPlan* plan) {
  // Of the cap, or of what the allowance, the dedup windows and the
  // checkpoints leave if that is more: a large cap's clients get the queue
  // that keeps the engine fed, a small cap's no more than an eighth, its
  // caches being what it is for.
  const size_t growable =
      in.cap_bytes -
      std::min(in.cap_bytes, plan->fixed_bytes + plan->dedup_bytes + plan->checkpoint_bytes);
  const size_t share = std::clamp(
      std::max(static_cast<size_t>(static_cast<double>(in.cap_bytes) * in.kafka_share),
               static_cast<size_t>(static_cast<double>(growable) * in.kafka_share_of_rest)),
      kMinKafkaBytes, kMaxKafkaBytes);
  const auto partitions = static_cast<size_t>(in.partitions);
  const size_t producer_part = share / 4;
  const size_t consumer_part = share - producer_part;
  // Bytes of memory per byte of queue limit, for records of the least size.
  constexpr size_t kProducerPerByte100 =
      200 + 100 * kProducerBytesPerQueuedMessage / kMinQueuedRecordBytes;
  constexpr size_t kConsumerPerByte100 =
      100 + 100 * kConsumerBytesPerQueuedMessage / kMinQueuedRecordBytes;
  plan->producer_queue_kbytes =
      std::max(kMinQueueKbytes, producer_part * 100 / kProducerPerByte100 / 1024);
  plan->producer_queue_messages = QueueMessages(plan->producer_queue_kbytes * 1024);
  plan->consumer_fetch_bytes =
      std::clamp<size_t>(consumer_part / 8 / partitions, kMinFetchBytes, size_t{1} << 20);
  const size_t fetches = partitions * plan->consumer_fetch_bytes;
  plan->consumer_queue_kbytes =
      std::max(kMinQueueKbytes, (consumer_part - std::min(consumer_part, fetches)) * 100 /
                                    kConsumerPerByte100 / 1024);
  plan->consumer_queue_messages = QueueMessages(plan->consumer_queue_kbytes * 1024);
  plan->producer_bytes = 2 * plan->producer_queue_kbytes * 1024 +
                         plan->producer_queue_messages * kProducerBytesPerQueuedMessage;
  plan->consumer_bytes = fetches + plan->consumer_queue_kbytes * 1024 +
                         plan->consumer_queue_messages * kConsumerBytesPerQueuedMessage;
  // The share (the settings round down within it), or what the floors need.
  plan->kafka_bytes = std::max(share, plan->producer_bytes + plan->consumer_bytes);
}

}  // namespace

size_t DedupBytes(size_t ids, int partitions) {
  const auto n = static_cast<size_t>(std::max(1, partitions));
  return n * ingest::DedupWindow::MemoryBytes(ids / n);
}

std::string MemoryPlan::ToString() const {
  return "cap " + Mib(cap_bytes) + " = fixed " + Mib(fixed_bytes) + " + dedup windows " +
         Mib(dedup_bytes) + " + Kafka clients " + Mib(kafka_bytes) + " + checkpoints " +
         Mib(checkpoint_bytes) + " + RocksDB " + Mib(rocksdb_bytes) + " + customer cache " +
         Mib(customer_cache_bytes) + " (" + std::to_string(cached_customers_per_partition) +
         " customers per partition)";
}

Result<MemoryPlan> PlanMemory(const MemoryPlanInput& in) {
  if (in.partitions < 1) return Status::InvalidArgument("memory plan: partitions must be >= 1");
  if (!(in.rocksdb_share > 0 && in.rocksdb_share < 1)) {
    return Status::InvalidArgument("memory plan: rocksdb_share must be in (0, 1)");
  }
  if (!(in.kafka_share > 0 && in.kafka_share < 1)) {
    return Status::InvalidArgument("memory plan: kafka_share must be in (0, 1)");
  }
  if (!(in.kafka_share_of_rest > 0 && in.kafka_share_of_rest < 1)) {
    return Status::InvalidArgument("memory plan: kafka_share_of_rest must be in (0, 1)");
  }
  if (!(in.checkpoint_share > 0 && in.checkpoint_share < 1)) {
    return Status::InvalidArgument("memory plan: checkpoint_share must be in (0, 1)");
  }
  MemoryPlan plan;
  plan.cap_bytes = in.cap_bytes;
  plan.fixed_bytes = in.fixed_bytes +
                     static_cast<size_t>(std::max(1, in.worker_threads) - 1) * kBytesPerExtraWorker;
  plan.dedup_bytes = DedupBytes(in.dedup_ids, in.partitions);
  const auto partitions = static_cast<size_t>(in.partitions);
  plan.checkpoint_bytes =
      std::max(kMinCheckpointBytes,
               static_cast<size_t>(static_cast<double>(in.cap_bytes) * in.checkpoint_share));
  SizeKafkaClients(in, &plan);
  const size_t per_customer = kBytesPerCachedCustomer + in.extra_bytes_per_customer;
  const size_t min_cache = kMinCachedCustomersPerPartition * per_customer * partitions;
  const size_t needed = plan.fixed_bytes + plan.dedup_bytes + plan.kafka_bytes +
                        plan.checkpoint_bytes + kMinRocksDbBytes + min_cache;
  if (in.cap_bytes < needed) {
    return Status::InvalidArgument(
        "state.memory_cap_mb: " + Mib(in.cap_bytes) + " is too small; it needs at least " +
        Mib(needed) + ": fixed " + Mib(plan.fixed_bytes) + " + dedup windows " +
        Mib(plan.dedup_bytes) + " (" + std::to_string(in.dedup_ids) + " ids) + Kafka clients " +
        Mib(plan.kafka_bytes) + " + checkpoints " + Mib(plan.checkpoint_bytes) + " + RocksDB " +
        Mib(kMinRocksDbBytes) + " + customer cache " + Mib(min_cache) + " (" +
        std::to_string(kMinCachedCustomersPerPartition) + " customers x " +
        std::to_string(per_customer) + " bytes x " + std::to_string(partitions) + " partitions)");
  }
  const size_t rest =
      in.cap_bytes - plan.fixed_bytes - plan.dedup_bytes - plan.kafka_bytes - plan.checkpoint_bytes;
  plan.rocksdb_bytes =
      std::max(kMinRocksDbBytes, static_cast<size_t>(static_cast<double>(rest) * in.rocksdb_share));
  plan.rocksdb_bytes = std::min(plan.rocksdb_bytes, rest - min_cache);
  plan.customer_cache_bytes = rest - plan.rocksdb_bytes;
  plan.cached_customers_per_partition = plan.customer_cache_bytes / per_customer / partitions;
  plan.cached_state_bytes_per_partition =
      plan.cached_customers_per_partition * kBytesPerCachedCustomer;
  return plan;
}

}  // namespace crmstream::pipeline
