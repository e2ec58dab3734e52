#include "crmstream/kafka/partitioner.h"

#include <librdkafka/rdkafka.h>

#include <catch2/catch.hpp>
#include <string>

#include "crmstream/kafka/partition_reader.h"
#include "crmstream/kafka/producer.h"
#include "kafka_test_support.h"
#include "support/require_ok.h"

namespace crmstream::kafka {
namespace {

int32_t LibrdkafkaMurmur2(std::string_view key, int32_t partitions) {
  // librdkafka's own partitioner (Java-compatible); it ignores the topic
  // handle and opaques for a non-null key.
  return rd_kafka_msg_partitioner_murmur2(nullptr, key.data(), key.size(), partitions, nullptr,
                                          nullptr);
}

}  // namespace

TEST_CASE("KeyPartition matches librdkafka's murmur2 partitioner", "[kafka]") {
  // Keys of every length 1..40 (all tail cases), ids as the engine sees them,
  // and bytes above 0x7f (signedness of the word reads).
  std::vector<std::string> keys;
  for (int n = 1; n <= 40; ++n) keys.push_back(std::string(static_cast<size_t>(n), 'a' + n % 26));
  for (int i = 0; i < 2000; ++i) keys.push_back("C" + std::to_string(i * 7919));
  keys.push_back("\xff\xfe\x80\x81\x7f");
  keys.push_back("customer-\xc3\xa9t\xc3\xa9");
  for (int32_t partitions : {1, 3, 6, 7, 64}) {
    for (const auto& key : keys) {
      INFO(key << " over " << partitions);
      REQUIRE(KeyPartition(key, partitions) == LibrdkafkaMurmur2(key, partitions));
    }
  }
}

TEST_CASE("Kafka's published murmur2 values", "[kafka]") {
  // The Java client's test vectors for Utils.murmur2 (signed 32-bit).
  CHECK(static_cast<int32_t>(Murmur2("21")) == -973932308);
  CHECK(static_cast<int32_t>(Murmur2("foobar")) == -790332482);
  CHECK(static_cast<int32_t>(Murmur2("a-little-bit-long-string")) == -985981536);
  CHECK(static_cast<int32_t>(Murmur2("a-little-bit-longer-string")) == -1486304829);
  CHECK(static_cast<int32_t>(Murmur2("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8")) ==
        -58897971);
  CHECK(static_cast<int32_t>(Murmur2("abc")) == 479470107);
}

TEST_CASE("ReadPartitionsToEnd reads from offsets to the ends with headers", "[kafka]") {
  testing::ClusterFixture fx;
  REQUIRE_OK(fx.cluster->CreateTopic("reader.topic", 2));
  auto producer = Producer::Create(fx.config());
  REQUIRE_OK(producer);
  const std::array<MessageHeader, 1> headers{MessageHeader{"h", "v"}};
  for (int i = 0; i < 20; ++i) {
    REQUIRE((*producer)
                ->Produce("reader.topic", i % 2, "k", std::to_string(i),
                          i == 19 ? std::span<const MessageHeader>(headers)
                                  : std::span<const MessageHeader>())
                .ok());
  }
  REQUIRE_OK((*producer)->Flush(std::chrono::seconds(10)));

  const std::vector<TopicPartitionOffset> from = {{"reader.topic", 0, kOffsetBeginning},
                                                  {"reader.topic", 1, 4}};
  std::vector<std::string> values;
  std::vector<PartitionEnd> ends;
  std::string header;
  Status st = ReadPartitionsToEnd(
      fx.config(), from, {},
      [&](std::span<const PartitionEnd> e) {
        ends.assign(e.begin(), e.end());
        return Status::OK();
      },
      [&](const MessageView& m) {
        values.emplace_back(m.payload());
        if (auto h = FindHeader(m, "h")) header = std::string(*h);
        return Status::OK();
      });
  REQUIRE_OK(st);
  REQUIRE(ends.size() == 2);
  CHECK(ends[0].start_offset == 0);
  CHECK(ends[0].end_offset == 10);
  CHECK(ends[1].start_offset == 4);
  CHECK(ends[1].end_offset == 10);
  // Partition 0: 0,2,..,18 (10 records); partition 1 from offset 4: 9,11,..,19 (6 records).
  CHECK(values.size() == 16);
  CHECK(header == "v");
  std::sort(values.begin(), values.end());
  CHECK(std::count(values.begin(), values.end(), "7") == 0);
  CHECK(std::count(values.begin(), values.end(), "9") == 1);

  // kOffsetEnd reads nothing; ends only.
  const std::vector<TopicPartitionOffset> at_end = {{"reader.topic", 0, kOffsetEnd}};
  size_t seen = 0;
  REQUIRE(ReadPartitionsToEnd(fx.config(), at_end, {}, nullptr, [&](const MessageView&) {
            ++seen;
            return Status::OK();
          }).ok());
  CHECK(seen == 0);
}

}  // namespace crmstream::kafka

namespace crmstream::kafka {

TEST_CASE("PartitionFollower reads a partition in bounded polls and follows it as it grows",
          "[kafka]") {
  testing::ClusterFixture fx;
  REQUIRE_OK(fx.cluster->CreateTopic("follow.topic", 1));
  REQUIRE_OK_AND_ASSIGN(auto producer, Producer::Create(fx.config()));
  auto produce = [&](int from, int to) {
    for (int i = from; i < to; ++i) {
      REQUIRE_OK(producer->Produce("follow.topic", 0, "k", std::to_string(i)));
    }
    REQUIRE_OK(producer->Flush(std::chrono::seconds(10)));
  };
  const std::vector<TopicPartitionOffset> from = {{"follow.topic", 0, kOffsetBeginning}};
  REQUIRE_OK_AND_ASSIGN(auto follower, PartitionFollower::Create(fx.config(), from));
  std::vector<std::string> values;
  const PartitionFollower::OnMessage keep = [&](const MessageView& m) {
    values.emplace_back(m.payload());
    return Status::OK();
  };
  // An empty partition is at its end at once.
  REQUIRE_OK(follower->ReadToEnd(std::chrono::seconds(10), keep));
  CHECK(values.empty());

  produce(0, 10);
  // A poll hands out at most what it is asked for.
  size_t read = 0;
  for (int i = 0; i < 200 && read == 0; ++i) {
    REQUIRE_OK_AND_ASSIGN(read, follower->Poll(std::chrono::milliseconds(50), 3, keep));
  }
  CHECK(read >= 1);
  CHECK(read <= 3);
  REQUIRE_OK(follower->ReadToEnd(std::chrono::seconds(10), keep));
  CHECK(follower->next_offset(0) == 10);

  produce(10, 15);
  REQUIRE_OK(follower->ReadToEnd(std::chrono::seconds(10), keep));
  CHECK(follower->next_offset(0) == 15);
  std::vector<std::string> want;
  for (int i = 0; i < 15; ++i) want.push_back(std::to_string(i));
  CHECK(values == want);
  // A failing callback's Status is returned.
  produce(15, 16);
  const Status failed = follower->ReadToEnd(
      std::chrono::seconds(10), [](const MessageView&) { return Status::Corruption("refused"); });
  CHECK(failed.code() == StatusCode::kCorruption);
}

}  // namespace crmstream::kafka
