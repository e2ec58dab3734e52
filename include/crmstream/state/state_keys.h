// The key layout of the state store. Every key of partition-scoped state
// begins with the 8-byte big-endian prefix [topic-id u32][partition u32], so
// RocksDB's bytewise order keeps one input partition's state in one
// contiguous key range per column family: it can be iterated, dropped
// (DeleteRange) or moved as a unit, and partitions sort by (topic, partition).
// Topic ids are small numbers the store assigns to topic names once and
// keeps in the metadata column family (a topic name may be 249 bytes; the id
// keeps the per-customer key short).
//
//   features  [tp8][customer-id]                     -> FeatureStore::EncodeCustomer blob
//   models    [tp8]'C'[customer-id]                  -> a per-customer model blob
//             [tp8]'P'[model name]                   -> a partition-wide model blob
//             [tp8]'D'[deadline u64][id hash u64][customer-id]
//                                                    -> the deadline (sealed i64) of the
//                                                       customer's pending churn label
//   offsets   [tp8]                                  -> input next offset
//   dedup     [tp8]'H'                               -> the dedup window's head
//             [tp8]'K'[chunk u32]                    -> a chunk of its ring
//             [tp8]                                  -> the whole window (format 6 and
//                                                       before; migrated, see format 7)
//   metadata  "format_version" | "identity" | "topic/<name>" | "changelog/"[tp8]
//             | "restoring/"[tp8] | "user/<name>"
//
// Pure functions; thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "crmstream/common/status.h"

namespace crmstream::state {

// One input partition inside the store.
struct PartitionKey {
  uint32_t topic_id = 0;
  int32_t partition = 0;
  friend bool operator==(const PartitionKey&, const PartitionKey&) = default;
  friend auto operator<=>(const PartitionKey&, const PartitionKey&) = default;
};

inline constexpr size_t kPartitionPrefixBytes = 8;

// The column families, in the order `crmstream state dump` prints them.
enum class StateFamily : uint8_t { kFeatures = 0, kModels, kOffsets, kDedup, kMetadata };
inline constexpr int kStateFamilyCount = 5;
std::string_view StateFamilyName(StateFamily family);

// Which kind of model blob a models-family key holds.
enum class ModelScope : char { kCustomer = 'C', kPartition = 'P', kLabelDeadline = 'D' };

// Appends the 8-byte prefix of `p` to `out`.
void AppendPartitionPrefix(PartitionKey p, std::string* out);
// The first key after every key with p's prefix (the end of its range).
std::string PartitionRangeEnd(PartitionKey p);
// Reads the prefix of a partition-scoped key; Corruption if it is shorter.
Result<PartitionKey> DecodePartitionPrefix(std::string_view key);

// Full keys (assigned to *out, which is reused to avoid allocation).
void FeaturesKey(PartitionKey p, std::string_view customer_id, std::string* out);
void CustomerModelKey(PartitionKey p, std::string_view customer_id, std::string* out);
void PartitionModelKey(PartitionKey p, std::string_view name, std::string* out);
void PartitionOnlyKey(PartitionKey p, std::string* out);  // offsets, the format-6 dedup window
void DedupHeadKey(PartitionKey p, std::string* out);
void DedupChunkKey(PartitionKey p, uint32_t chunk, std::string* out);
// A label deadline's key: big-endian deadline (sign bit flipped, so negative
// times sort first), then the id's hash, then the id. RocksDB's order is then
// (deadline, hash, id), the order in which the churn model matures labels.
void LabelDeadlineKey(PartitionKey p, int64_t deadline_ms, uint64_t id_hash,
                      std::string_view customer_id, std::string* out);
struct LabelDeadline {
  int64_t deadline_ms = 0;
  uint64_t id_hash = 0;
  std::string customer_id;
  std::string example;  // the value's data (StateStore::NextLabelDeadline only)
};
// Reads a LabelDeadlineKey with its partition prefix; Corruption if malformed.
Result<LabelDeadline> DecodeLabelDeadlineKey(std::string_view key);

}  // namespace crmstream::state
