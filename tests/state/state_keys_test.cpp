#include "crmstream/state/state_keys.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <random>
#include <tuple>

#include "support/require_ok.h"

namespace crmstream::state {
namespace {

TEST_CASE("A partition's keys form one contiguous range, partitions in (topic, partition) order",
          "[state]") {
  const std::vector<PartitionKey> partitions{{1, 0},     {1, 1}, {1, 255}, {1, 256},
                                             {1, 65536}, {2, 0}, {2, 7},   {300, 3}};
  std::mt19937 rng(7);
  struct Entry {
    std::string key;
    PartitionKey p;
    std::string customer;
  };
  std::vector<Entry> entries;
  std::string key;
  for (const PartitionKey& p : partitions) {
    for (int i = 0; i < 50; ++i) {
      // Ids with bytes 0x00 and 0xff too: the layout must not depend on them.
      std::string id = "c" + std::to_string(rng() % 100000);
      if (i % 10 == 0) id.push_back('\xff');
      if (i % 10 == 1) id.push_back('\0');
      FeaturesKey(p, id, &key);
      entries.push_back({key, p, id});
    }
  }
  std::shuffle(entries.begin(), entries.end(), rng);
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return a.key < b.key;
  });  // RocksDB's bytewise order

  // Reference order: by (topic id, partition) numerically; each partition's
  // keys adjacent.
  for (size_t i = 1; i < entries.size(); ++i) {
    const auto& a = entries[i - 1].p;
    const auto& b = entries[i].p;
    CHECK(std::tie(a.topic_id, a.partition) <= std::tie(b.topic_id, b.partition));
  }
  for (const PartitionKey& p : partitions) {
    std::string begin;
    PartitionOnlyKey(p, &begin);
    const std::string end = PartitionRangeEnd(p);
    for (const Entry& e : entries) {
      const bool in_range = e.key >= begin && e.key < end;
      CHECK(in_range == (e.p == p));
    }
  }
  // The prefix decodes back, and the customer id follows it unchanged.
  for (const Entry& e : entries) {
    auto decoded = DecodePartitionPrefix(e.key);
    REQUIRE_OK(decoded);
    CHECK(*decoded == e.p);
    CHECK(e.key.substr(kPartitionPrefixBytes) == e.customer);
  }
  CHECK(DecodePartitionPrefix("short").status().code() == StatusCode::kCorruption);
}

TEST_CASE("Per-customer and partition-wide model keys do not overlap", "[state]") {
  const PartitionKey p{3, 9};
  std::string customer, partition_wide;
  CustomerModelKey(p, "m", &customer);
  PartitionModelKey(p, "m", &partition_wide);
  CHECK(customer != partition_wide);
  CHECK(customer.size() == kPartitionPrefixBytes + 2);
  // Both inside the partition's range.
  std::string begin;
  PartitionOnlyKey(p, &begin);
  const std::string end = PartitionRangeEnd(p);
  CHECK((customer > begin && customer < end));
  CHECK((partition_wide > begin && partition_wide < end));
}

}  // namespace
}  // namespace crmstream::state
