#include "crmstream/pipeline/memory_plan.h"

#include <algorithm>
#include <cstdio>

namespace crmstream::pipeline {
namespace {

constexpr size_t kDedupBytesPerId = 24;
constexpr size_t kMinFetchBytes = size_t{64} << 10;
constexpr size_t kMinQueueKbytes = 64;

std::string Mib(size_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1f MiB", static_cast<double>(bytes) / (1 << 20));
  return buf;
}

// The Kafka clients' share of the cap, turned into librdkafka settings:
// half for the producer, half for the consumer. librdkafka's limits count
// payload only, while it keeps a header per message and, on the consumer,
// whole fetch responses beside it: measured, a client's resident memory is
// about twice what its settings allow, so they allow half of its half. The
// consumer's settings: one fetch per partition (fetch.message.max.bytes, up
// to half of them) and the prefetch queue (queued.max.messages.kbytes, the
// rest). The queue limit is the whole consumer's, not a partition's (the
// partitions' fetch queues forward to the one consumer queue, whose size
// librdkafka checks): sized per partition, it left a few hundred KiB for a
// dozen partitions, and the fetcher, idle whenever the queue was over it,
// fed the engine a fraction of what it could take. Floors keep every client
// working; with many partitions they may exceed the share, so kafka_bytes is
// what the settings really allow.
void SizeKafkaClients(const MemoryPlanInput& in, MemoryPlan* plan) {
  const size_t share =
      std::clamp(static_cast<size_t>(static_cast<double>(in.cap_bytes) * in.kafka_share),
                 kMinKafkaBytes, kMaxKafkaBytes);
  const auto partitions = static_cast<size_t>(in.partitions);
  const size_t client_settings = share / 4;  // each client's half, halved
  plan->producer_queue_kbytes = client_settings / 1024;
  plan->consumer_fetch_bytes =
      std::clamp<size_t>(client_settings / 2 / partitions, kMinFetchBytes, size_t{1} << 20);
  const size_t fetches = partitions * plan->consumer_fetch_bytes;
  plan->consumer_queue_kbytes = std::max<size_t>(
      kMinQueueKbytes, (client_settings - std::min(client_settings, fetches)) / 1024);
  plan->kafka_bytes =
      2 * (plan->producer_queue_kbytes * 1024 + fetches + plan->consumer_queue_kbytes * 1024);
}

}  // namespace

std::string MemoryPlan::ToString() const {
  return "cap " + Mib(cap_bytes) + " = fixed " + Mib(fixed_bytes) + " + dedup windows " +
         Mib(dedup_bytes) + " + Kafka clients " + Mib(kafka_bytes) + " + RocksDB " +
         Mib(rocksdb_bytes) + " + customer cache " + Mib(customer_cache_bytes) + " (" +
         std::to_string(cached_customers_per_partition) + " customers per partition)";
}

Result<MemoryPlan> PlanMemory(const MemoryPlanInput& in) {
  if (in.partitions < 1) return Status::InvalidArgument("memory plan: partitions must be >= 1");
  if (!(in.rocksdb_share > 0 && in.rocksdb_share < 1)) {
    return Status::InvalidArgument("memory plan: rocksdb_share must be in (0, 1)");
  }
  if (!(in.kafka_share > 0 && in.kafka_share < 1)) {
    return Status::InvalidArgument("memory plan: kafka_share must be in (0, 1)");
  }
  MemoryPlan plan;
  plan.cap_bytes = in.cap_bytes;
  plan.fixed_bytes = in.fixed_bytes;
  plan.dedup_bytes = in.dedup_ids * kDedupBytesPerId;
  const auto partitions = static_cast<size_t>(in.partitions);
  SizeKafkaClients(in, &plan);
  const size_t per_customer = kBytesPerCachedCustomer + in.extra_bytes_per_customer;
  const size_t min_cache = kMinCachedCustomersPerPartition * per_customer * partitions;
  const size_t needed =
      plan.fixed_bytes + plan.dedup_bytes + plan.kafka_bytes + kMinRocksDbBytes + min_cache;
  if (in.cap_bytes < needed) {
    return Status::InvalidArgument(
        "state.memory_cap_mb: " + Mib(in.cap_bytes) + " is too small; it needs at least " +
        Mib(needed) + ": fixed " + Mib(plan.fixed_bytes) + " + dedup windows " +
        Mib(plan.dedup_bytes) + " (" + std::to_string(in.dedup_ids) + " ids) + Kafka clients " +
        Mib(plan.kafka_bytes) + " + RocksDB " + Mib(kMinRocksDbBytes) + " + customer cache " +
        Mib(min_cache) + " (" + std::to_string(kMinCachedCustomersPerPartition) + " customers x " +
        std::to_string(per_customer) + " bytes x " + std::to_string(partitions) + " partitions)");
  }
  const size_t rest = in.cap_bytes - plan.fixed_bytes - plan.dedup_bytes - plan.kafka_bytes;
  plan.rocksdb_bytes =
      std::max(kMinRocksDbBytes, static_cast<size_t>(static_cast<double>(rest) * in.rocksdb_share));
  plan.rocksdb_bytes = std::min(plan.rocksdb_bytes, rest - min_cache);
  plan.customer_cache_bytes = rest - plan.rocksdb_bytes;
  plan.cached_customers_per_partition = plan.customer_cache_bytes / per_customer / partitions;
  return plan;
}

}  // namespace crmstream::pipeline
