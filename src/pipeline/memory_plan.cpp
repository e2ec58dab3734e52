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

// The Kafka clients' share of the cap, turned into librdkafka settings.
// librdkafka's limits count payload only, while it keeps a header per
// message and, on the consumer, whole fetch responses beside it: measured, a
// client's resident memory is about twice what its settings allow, so the
// settings allow half of the share. Of that, a quarter is the producer's
// queue (outputs wait there only until acknowledged) and three quarters the
// consumer's: one fetch per partition (fetch.message.max.bytes, a quarter of
// the consumer's part at most) and the prefetch queue
// (queued.max.messages.kbytes, the rest). The prefetch queue is what keeps
// the engine fed: librdkafka 2.0 stops fetching every partition for a fixed
// second once the consumer's queue is over its limit (the partitions' fetch
// queues forward to that one queue, whose size it checks), so the queue must
// hold about a second of input at the engine's rate; measured through the
// embedded cluster, 4 MiB gave 56k events/s, 8 MiB 94k, 16 MiB 118k, 64 MiB
// 126k. Floors keep every client working; with many partitions they may
// exceed the share, so kafka_bytes is what the settings really allow.
void SizeKafkaClients(const MemoryPlanInput& in, MemoryPlan* plan) {
  // Of the cap, or of what the allowance and the dedup windows leave if
  // that is more: a large cap's clients get the queue that keeps the engine
  // fed, a small cap's no more than before, its caches being what it is for.
  const size_t growable =
      in.cap_bytes - std::min(in.cap_bytes, plan->fixed_bytes + plan->dedup_bytes);
  const size_t share = std::clamp(
      std::max(static_cast<size_t>(static_cast<double>(in.cap_bytes) * in.kafka_share),
               static_cast<size_t>(static_cast<double>(growable) * in.kafka_share_of_rest)),
      kMinKafkaBytes, kMaxKafkaBytes);
  const auto partitions = static_cast<size_t>(in.partitions);
  const size_t settings = share / 2;
  const size_t producer_settings = settings / 4;
  const size_t consumer_settings = settings - producer_settings;
  plan->producer_queue_kbytes = producer_settings / 1024;
  plan->consumer_fetch_bytes =
      std::clamp<size_t>(consumer_settings / 4 / partitions, kMinFetchBytes, size_t{1} << 20);
  const size_t fetches = partitions * plan->consumer_fetch_bytes;
  plan->consumer_queue_kbytes = std::max<size_t>(
      kMinQueueKbytes, (consumer_settings - std::min(consumer_settings, fetches)) / 1024);
  plan->kafka_bytes =
      2 * (plan->producer_queue_kbytes * 1024 + fetches + plan->consumer_queue_kbytes * 1024);
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
  SizeKafkaClients(in, &plan);
  plan.checkpoint_bytes =
      std::max(kMinCheckpointBytes,
               static_cast<size_t>(static_cast<double>(in.cap_bytes) * in.checkpoint_share));
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
  return plan;
}

}  // namespace crmstream::pipeline
