#include "crmstream/pipeline/memory_plan.h"

#include <algorithm>
#include <cstdio>

namespace crmstream::pipeline {
namespace {

constexpr size_t kDedupBytesPerId = 24;

std::string Mib(size_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1f MiB", static_cast<double>(bytes) / (1 << 20));
  return buf;
}

}  // namespace

std::string MemoryPlan::ToString() const {
  return "cap " + Mib(cap_bytes) + " = fixed " + Mib(fixed_bytes) + " + dedup windows " +
         Mib(dedup_bytes) + " + RocksDB " + Mib(rocksdb_bytes) + " + customer cache " +
         Mib(customer_cache_bytes) + " (" + std::to_string(cached_customers_per_partition) +
         " customers per partition)";
}

Result<MemoryPlan> PlanMemory(const MemoryPlanInput& in) {
  if (in.partitions < 1) return Status::InvalidArgument("memory plan: partitions must be >= 1");
  if (!(in.rocksdb_share > 0 && in.rocksdb_share < 1)) {
    return Status::InvalidArgument("memory plan: rocksdb_share must be in (0, 1)");
  }
  MemoryPlan plan;
  plan.cap_bytes = in.cap_bytes;
  plan.fixed_bytes = in.fixed_bytes;
  plan.dedup_bytes = in.dedup_ids * kDedupBytesPerId;
  const auto partitions = static_cast<size_t>(in.partitions);
  const size_t per_customer = kBytesPerCachedCustomer + in.extra_bytes_per_customer;
  const size_t min_cache = kMinCachedCustomersPerPartition * per_customer * partitions;
  const size_t needed = plan.fixed_bytes + plan.dedup_bytes + kMinRocksDbBytes + min_cache;
  if (in.cap_bytes < needed) {
    return Status::InvalidArgument(
        "state.memory_cap_mb: " + Mib(in.cap_bytes) + " is too small; it needs at least " +
        Mib(needed) + ": fixed " + Mib(plan.fixed_bytes) + " + dedup windows " +
        Mib(plan.dedup_bytes) + " (" + std::to_string(in.dedup_ids) + " ids) + RocksDB " +
        Mib(kMinRocksDbBytes) + " + customer cache " + Mib(min_cache) + " (" +
        std::to_string(kMinCachedCustomersPerPartition) + " customers x " +
        std::to_string(per_customer) + " bytes x " + std::to_string(partitions) + " partitions)");
  }
  const size_t rest = in.cap_bytes - plan.fixed_bytes - plan.dedup_bytes;
  plan.rocksdb_bytes =
      std::max(kMinRocksDbBytes, static_cast<size_t>(static_cast<double>(rest) * in.rocksdb_share));
  plan.rocksdb_bytes = std::min(plan.rocksdb_bytes, rest - min_cache);
  plan.customer_cache_bytes = rest - plan.rocksdb_bytes;
  plan.cached_customers_per_partition = plan.customer_cache_bytes / per_customer / partitions;
  return plan;
}

}  // namespace crmstream::pipeline
