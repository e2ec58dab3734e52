// Kafka's partitioner for keyed records: murmur2 of the key, as the Java
// clients and librdkafka's "murmur2" / "murmur2_random" partitioners compute
// it, so a key lands in the same partition whichever client produces it.
// The engine partitions its outputs itself (rather than leaving it to
// librdkafka) because exactly-once mode must know, when it produces a
// record, which partition's log it will be checked against.
//
// Pure functions; thread-safe.
#pragma once

#include <cstdint>
#include <string_view>

namespace crmstream::kafka {

// Kafka's murmur2 (seed 0x9747b28c) over the key bytes.
uint32_t Murmur2(std::string_view key);

// The partition of a keyed record among `partition_count` (> 0) partitions:
// (murmur2(key) & 0x7fffffff) % partition_count.
inline int32_t KeyPartition(std::string_view key, int32_t partition_count) {
  return static_cast<int32_t>((Murmur2(key) & 0x7fffffffu) %
                              static_cast<uint32_t>(partition_count));
}

}  // namespace crmstream::kafka
