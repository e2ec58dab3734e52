#include <catch2/catch.hpp>
#include <map>
#include <set>
#include <thread>

#include "crmstream/kafka/consumer.h"
#include "crmstream/kafka/producer.h"
#include "kafka/kafka_test_support.h"
#include "support/require_ok.h"

namespace crmstream::kafka {
namespace {

using testing::ClusterFixture;
using testing::kTestDeadline;
using testing::Received;

constexpr int16_t kProduceApiKey = 0;

TEST_CASE("Messages produced while a broker is down all arrive once it is back, without duplicates",
          "[kafka][integration]") {
  ClusterFixture fx;
  const std::string topic = "resilient";
  REQUIRE_OK(fx.cluster->CreateTopic(topic, 4, 3));
  // Broker 1 leads partitions 0 and 1, so taking it down stalls half the topic.
  REQUIRE_OK(fx.cluster->SetPartitionLeader(topic, 0, 1));
  REQUIRE_OK(fx.cluster->SetPartitionLeader(topic, 1, 1));
  REQUIRE_OK(fx.cluster->SetPartitionLeader(topic, 2, 2));
  REQUIRE_OK(fx.cluster->SetPartitionLeader(topic, 3, 3));

  auto producer = Producer::Create(fx.config());
  REQUIRE_OK(producer);
  Producer& p = **producer;
  constexpr int kPhase = 1000;
  constexpr int kKeys = 61;

  // Phase 1: healthy cluster.
  testing::ProduceKeyed(p, topic, 0, kPhase, kKeys);
  REQUIRE_OK(p.Flush(kTestDeadline));
  CHECK(p.delivered_count() == kPhase);

  // Phase 2: broker 1 down while producing. Messages for its partitions wait
  // in the producer (the mock moves no leadership), the rest are delivered.
  REQUIRE_OK(fx.cluster->SetBrokerDown(1));
  testing::ProduceKeyed(p, topic, kPhase, kPhase, kKeys);
  // Which phase-2 messages land on broker 1's partitions, by the default
  // (consistent_random: CRC32 of the key) partitioner.
  int stalled = 0;
  for (int seq = kPhase; seq < 2 * kPhase; ++seq) {
    const std::string key = "customer-" + std::to_string(seq % kKeys);
    const int32_t partition = rd_kafka_msg_partitioner_consistent_random(
        nullptr, key.data(), key.size(), 4, nullptr, nullptr);
    if (partition == 0 || partition == 1) ++stalled;
  }
  REQUIRE(stalled > 0);
  const bool others_delivered = testing::PollUntil([&] {
    p.Poll(std::chrono::milliseconds(20));
    return p.delivered_count() == static_cast<uint64_t>(2 * kPhase - stalled);
  });
  CHECK(others_delivered);
  CHECK(p.OutstandingCount() == stalled);
  // Stalled for a while, not failed: nothing is dropped.
  for (int i = 0; i < 10; ++i) p.Poll(std::chrono::milliseconds(20));
  CHECK(p.OutstandingCount() > 0);
  CHECK(p.failed_count() == 0);

  // Phase 3: broker back; everything queued goes out, then more traffic.
  REQUIRE_OK(fx.cluster->SetBrokerUp(1));
  testing::ProduceKeyed(p, topic, 2 * kPhase, kPhase, kKeys);
  REQUIRE_OK(p.Flush(kTestDeadline));

  // Phase 4: the brokers refuse the next produce requests with a retriable
  // error; the idempotent producer retries them.
  const std::vector<rd_kafka_resp_err_t> errors(3, RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS);
  fx.cluster->PushRequestErrors(kProduceApiKey, errors);
  testing::ProduceKeyed(p, topic, 3 * kPhase, kPhase, kKeys);
  REQUIRE_OK(p.Flush(kTestDeadline));

  constexpr int kTotal = 4 * kPhase;
  CHECK(p.delivered_count() == kTotal);
  CHECK(p.failed_count() == 0);
  CHECK_OK(p.FatalError());

  auto consumer = Consumer::Create(fx.consumer_config(), "resilient-reader");
  REQUIRE_OK(consumer);
  const std::vector<std::string> topics{topic};
  REQUIRE_OK((*consumer)->Subscribe(topics));
  const std::vector<Received> received = testing::ConsumeUntil(**consumer, kTotal);
  const auto extra = testing::ConsumeUntil(**consumer, 1, std::chrono::milliseconds(500));
  CHECK(extra.empty());
  REQUIRE(received.size() == kTotal);

  std::set<int> values;
  std::map<std::string, int> last_of_key;
  for (const Received& m : received) {
    const int value = std::stoi(m.value);
    CHECK(values.insert(value).second);  // no duplicates
    auto [it, first] = last_of_key.try_emplace(m.key, value);
    if (!first) {
      CHECK(value > it->second);  // per-key order survived the outage
      it->second = value;
    }
  }
  CHECK(values.size() == kTotal);
  CHECK(*values.rbegin() == kTotal - 1);
}

TEST_CASE("A consumer keeps reading across a broker outage", "[kafka][integration]") {
  ClusterFixture fx;
  const std::string topic = "outage-read";
  REQUIRE_OK(fx.cluster->CreateTopic(topic, 2, 3));
  REQUIRE_OK(fx.cluster->SetPartitionLeader(topic, 0, 2));
  REQUIRE_OK(fx.cluster->SetPartitionLeader(topic, 1, 3));
  auto producer = Producer::Create(fx.config());
  REQUIRE_OK(producer);
  for (int i = 0; i < 100; ++i) {
    REQUIRE_OK((*producer)->Produce(topic, i % 2, "k", std::to_string(i)));
  }
  REQUIRE_OK((*producer)->Flush(kTestDeadline));

  auto consumer = Consumer::Create(fx.consumer_config(), "outage-readers");
  REQUIRE_OK(consumer);
  const std::vector<std::string> topics{topic};
  REQUIRE_OK((*consumer)->Subscribe(topics));
  REQUIRE(testing::ConsumeUntil(**consumer, 100).size() == 100);

  // Leader of partition 1 goes away; new data for partition 1 can only be
  // read once it returns.
  REQUIRE_OK(fx.cluster->SetBrokerDown(3));
  for (int i = 0; i < 50; ++i) REQUIRE_OK((*producer)->Produce(topic, 0, "k", "p0"));
  REQUIRE_OK((*producer)->Flush(kTestDeadline));
  REQUIRE(testing::ConsumeUntil(**consumer, 50).size() == 50);
  REQUIRE_OK(fx.cluster->SetBrokerUp(3));
  for (int i = 0; i < 50; ++i) REQUIRE_OK((*producer)->Produce(topic, 1, "k", "p1"));
  REQUIRE_OK((*producer)->Flush(kTestDeadline));
  const auto after = testing::ConsumeUntil(**consumer, 50);
  REQUIRE(after.size() == 50);
  for (const Received& m : after) CHECK(m.partition == 1);
}

TEST_CASE("A delivery generation settles with its own messages, whatever later ones wait for",
          "[kafka][integration]") {
  ClusterFixture fx;
  const std::string topic = "generations";
  REQUIRE_OK(fx.cluster->CreateTopic(topic, 2, 3));
  REQUIRE_OK(fx.cluster->SetPartitionLeader(topic, 0, 1));
  REQUIRE_OK(fx.cluster->SetPartitionLeader(topic, 1, 2));
  REQUIRE_OK_AND_ASSIGN(auto producer, Producer::Create(fx.config()));
  Producer& p = *producer;
  auto produce = [&](int32_t partition, int count) {
    for (int i = 0; i < count; ++i) {
      REQUIRE_OK(p.Produce(topic, partition, "k", "v" + std::to_string(i)));
    }
  };

  produce(0, 100);
  const uint64_t first = p.CloseGeneration();
  // Reports are counted when served: none yet.
  CHECK_FALSE(p.GenerationSettled(first));
  // The second generation's messages wait for a broker that is down; the
  // third's go to the healthy one and are delivered before them.
  REQUIRE_OK(fx.cluster->SetBrokerDown(2));
  produce(1, 50);
  const uint64_t second = p.CloseGeneration();
  produce(0, 50);
  const uint64_t third = p.CloseGeneration();
  CHECK(testing::PollUntil([&] {
    p.Poll(std::chrono::milliseconds(20));
    return p.delivered_count() == 150;
  }));
  CHECK(p.GenerationSettled(first));
  CHECK_FALSE(p.GenerationSettled(second));
  // A generation settles only with every one before it.
  CHECK_FALSE(p.GenerationSettled(third));

  REQUIRE_OK(fx.cluster->SetBrokerUp(2));
  CHECK(testing::PollUntil([&] {
    p.Poll(std::chrono::milliseconds(20));
    return p.GenerationSettled(third);
  }));
  CHECK(p.delivered_count() == 200);
  CHECK(p.failed_count() == 0);
}

}  // namespace
}  // namespace crmstream::kafka
