#include "crmstream/state/state_keys.h"

#include <array>

namespace crmstream::state {
namespace {

void AppendU32BigEndian(uint32_t v, std::string* out) {
  const std::array<char, 4> bytes{static_cast<char>(v >> 24), static_cast<char>(v >> 16),
                                  static_cast<char>(v >> 8), static_cast<char>(v)};
  out->append(bytes.data(), bytes.size());
}

uint32_t ReadU32BigEndian(std::string_view s) {
  return (uint32_t{static_cast<uint8_t>(s[0])} << 24) |
         (uint32_t{static_cast<uint8_t>(s[1])} << 16) |
         (uint32_t{static_cast<uint8_t>(s[2])} << 8) | uint32_t{static_cast<uint8_t>(s[3])};
}

void AppendU64BigEndian(uint64_t v, std::string* out) {
  AppendU32BigEndian(static_cast<uint32_t>(v >> 32), out);
  AppendU32BigEndian(static_cast<uint32_t>(v), out);
}

uint64_t ReadU64BigEndian(std::string_view s) {
  return (uint64_t{ReadU32BigEndian(s.substr(0, 4))} << 32) | ReadU32BigEndian(s.substr(4, 4));
}

constexpr uint64_t kSignBit = uint64_t{1} << 63;

}  // namespace

std::string_view StateFamilyName(StateFamily family) {
  switch (family) {
    case StateFamily::kFeatures:
      return "features";
    case StateFamily::kModels:
      return "models";
    case StateFamily::kOffsets:
      return "offsets";
    case StateFamily::kDedup:
      return "dedup";
    case StateFamily::kMetadata:
      return "metadata";
  }
  return "?";
}

void AppendPartitionPrefix(PartitionKey p, std::string* out) {
  AppendU32BigEndian(p.topic_id, out);
  // Partitions are non-negative; the cast keeps their order.
  AppendU32BigEndian(static_cast<uint32_t>(p.partition), out);
}

std::string PartitionRangeEnd(PartitionKey p) {
  std::string end;
  // The prefix as a 64-bit big-endian number plus one: never overflows in
  // practice (topic ids are small), and when it would, the empty string
  // means "no upper bound" to the callers.
  const uint64_t prefix = (uint64_t{p.topic_id} << 32) | static_cast<uint32_t>(p.partition);
  if (prefix == UINT64_MAX) return end;
  const uint64_t next = prefix + 1;
  AppendU32BigEndian(static_cast<uint32_t>(next >> 32), &end);
  AppendU32BigEndian(static_cast<uint32_t>(next), &end);
  return end;
}

Result<PartitionKey> DecodePartitionPrefix(std::string_view key) {
  if (key.size() < kPartitionPrefixBytes) {
    return Status::Corruption("state key of " + std::to_string(key.size()) +
                              " bytes is shorter than a partition prefix");
  }
  PartitionKey p;
  p.topic_id = ReadU32BigEndian(key.substr(0, 4));
  p.partition = static_cast<int32_t>(ReadU32BigEndian(key.substr(4, 4)));
  return p;
}

void FeaturesKey(PartitionKey p, std::string_view customer_id, std::string* out) {
  out->clear();
  AppendPartitionPrefix(p, out);
  out->append(customer_id);
}

void CustomerModelKey(PartitionKey p, std::string_view customer_id, std::string* out) {
  out->clear();
  AppendPartitionPrefix(p, out);
  out->push_back(static_cast<char>(ModelScope::kCustomer));
  out->append(customer_id);
}

void PartitionModelKey(PartitionKey p, std::string_view name, std::string* out) {
  out->clear();
  AppendPartitionPrefix(p, out);
  out->push_back(static_cast<char>(ModelScope::kPartition));
  out->append(name);
}

void LabelDeadlineKey(PartitionKey p, int64_t deadline_ms, uint64_t id_hash,
                      std::string_view customer_id, std::string* out) {
  out->clear();
  AppendPartitionPrefix(p, out);
  out->push_back(static_cast<char>(ModelScope::kLabelDeadline));
  AppendU64BigEndian(static_cast<uint64_t>(deadline_ms) ^ kSignBit, out);
  AppendU64BigEndian(id_hash, out);
  out->append(customer_id);
}

Result<LabelDeadline> DecodeLabelDeadlineKey(std::string_view key) {
  constexpr size_t kFixed = kPartitionPrefixBytes + 1 + 16;
  if (key.size() < kFixed ||
      key[kPartitionPrefixBytes] != static_cast<char>(ModelScope::kLabelDeadline)) {
    return Status::Corruption("not a label deadline key");
  }
  LabelDeadline d;
  d.deadline_ms =
      static_cast<int64_t>(ReadU64BigEndian(key.substr(kPartitionPrefixBytes + 1, 8)) ^ kSignBit);
  d.id_hash = ReadU64BigEndian(key.substr(kPartitionPrefixBytes + 9, 8));
  d.customer_id = std::string(key.substr(kFixed));
  return d;
}

void PartitionOnlyKey(PartitionKey p, std::string* out) {
  out->clear();
  AppendPartitionPrefix(p, out);
}

void DedupHeadKey(PartitionKey p, std::string* out) {
  PartitionOnlyKey(p, out);
  out->push_back('H');
}

void DedupChunkKey(PartitionKey p, uint32_t chunk, std::string* out) {
  PartitionOnlyKey(p, out);
  out->push_back('K');
  AppendU32BigEndian(chunk, out);
}

}  // namespace crmstream::state
