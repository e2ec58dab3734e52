#include <catch2/catch.hpp>
#include <map>
#include <set>
#include <thread>

#include "crmstream/kafka/bare_consumer.h"
#include "crmstream/kafka/consumer.h"
#include "crmstream/kafka/producer.h"
#include "crmstream/kafka/topic_admin.h"
#include "kafka/kafka_test_support.h"
#include "support/require_ok.h"

namespace crmstream::kafka {
namespace {

using testing::EmbeddedBroker;
using testing::kTestDeadline;
using testing::RealBroker;
using testing::Received;

// Checks that `received` is exactly the values 0..n-1, each once, and that
// every key's values arrive in produce order from a single partition.
void CheckExactlyOnceInOrder(const std::vector<Received>& received, int n) {
  REQUIRE(received.size() == static_cast<size_t>(n));
  std::set<int> values;
  std::map<std::string, int> last_value_of_key;
  std::map<std::string, int32_t> partition_of_key;
  std::map<int32_t, int64_t> last_offset_of_partition;
  for (const Received& m : received) {
    const int value = std::stoi(m.value);
    CHECK(values.insert(value).second);
    // The key is "customer-<value % keys>" as produced.
    CHECK(m.key.rfind("customer-", 0) == 0);
    auto [key_it, first_of_key] = last_value_of_key.try_emplace(m.key, value);
    if (!first_of_key) {
      CHECK(value > key_it->second);
      key_it->second = value;
    }
    auto [part_it, first_in_partition] = partition_of_key.try_emplace(m.key, m.partition);
    if (!first_in_partition) CHECK(part_it->second == m.partition);
    auto [off_it, first_offset] = last_offset_of_partition.try_emplace(m.partition, m.offset);
    if (!first_offset) {
      CHECK(m.offset > off_it->second);
      off_it->second = m.offset;
    }
  }
  CHECK(*values.begin() == 0);
  CHECK(*values.rbegin() == n - 1);
}

TEMPLATE_TEST_CASE("Keyed messages come back exactly once, in order per key and partition",
                   "[kafka][integration]", EmbeddedBroker, RealBroker) {
  CRMSTREAM_USE_BROKER(TestType, fx);
  const std::string topic = fx.CreateTopic("orders", 4);

  auto producer = Producer::Create(fx.config());
  REQUIRE_OK(producer);
  constexpr int kMessages = 5000;
  testing::ProduceKeyed(**producer, topic, 0, kMessages, 97);
  REQUIRE_OK((*producer)->Flush(kTestDeadline));
  CHECK((*producer)->delivered_count() == kMessages);
  CHECK((*producer)->failed_count() == 0);
  CHECK_OK((*producer)->last_delivery_error());

  auto consumer = Consumer::Create(fx.consumer_config(), fx.Name("orders-reader"));
  REQUIRE_OK(consumer);
  const std::vector<std::string> topics{topic};
  REQUIRE_OK((*consumer)->Subscribe(topics));
  const std::vector<Received> received = testing::ConsumeUntil(**consumer, kMessages);
  CheckExactlyOnceInOrder(received, kMessages);

  // Every partition got a share (keys spread by hash).
  std::set<int32_t> partitions;
  for (const Received& m : received) partitions.insert(m.partition);
  CHECK(partitions == std::set<int32_t>{0, 1, 2, 3});
  CHECK((*consumer)->rebalance_protocol() == "EAGER");
  REQUIRE_OK((*consumer)->Close());
}

TEMPLATE_TEST_CASE("Headers and explicit partitions reach the consumer", "[kafka][integration]",
                   EmbeddedBroker, RealBroker) {
  CRMSTREAM_USE_BROKER(TestType, fx);
  const std::string topic = fx.CreateTopic("with-headers", 4, 1);
  auto producer = Producer::Create(fx.config());
  REQUIRE_OK(producer);
  const std::vector<MessageHeader> headers{{"source", "generator"}, {"schema", "v1"}};
  REQUIRE_OK((*producer)->Produce(topic, 2, "k", "payload", headers));
  REQUIRE_OK((*producer)->Produce(topic, 3, "", "no key"));
  REQUIRE_OK((*producer)->Flush(kTestDeadline));

  auto consumer = Consumer::Create(fx.consumer_config(), fx.Name("headers-reader"));
  REQUIRE_OK(consumer);
  const std::vector<std::string> topics{topic};
  REQUIRE_OK((*consumer)->Subscribe(topics));

  MessageBatch batch(16);
  bool saw_headers = false;
  bool saw_null_key = false;
  testing::PollUntil([&] {
    REQUIRE_OK((*consumer)->ConsumeBatch(100, &batch));
    for (size_t i = 0; i < batch.size(); ++i) {
      const MessageView m = batch[i];
      if (m.partition() == 2) {
        CHECK(m.key() == "k");
        CHECK(m.payload() == "payload");
        CHECK(m.timestamp_ms() > 0);
        rd_kafka_headers_t* hdrs = nullptr;
        REQUIRE(rd_kafka_message_headers(m.raw(), &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR);
        const void* value = nullptr;
        size_t size = 0;
        REQUIRE(rd_kafka_header_get_last(hdrs, "schema", &value, &size) ==
                RD_KAFKA_RESP_ERR_NO_ERROR);
        CHECK(std::string_view(static_cast<const char*>(value), size) == "v1");
        saw_headers = true;
      } else if (m.partition() == 3) {
        CHECK(m.key().empty());
        CHECK(m.raw()->key == nullptr);
        CHECK(m.payload() == "no key");
        saw_null_key = true;
      }
    }
    return saw_headers && saw_null_key;
  });
  batch.Clear();
  CHECK(saw_headers);
  CHECK(saw_null_key);
}

TEMPLATE_TEST_CASE("Lag follows the cached high watermark and the consumer position",
                   "[kafka][integration]", EmbeddedBroker, RealBroker) {
  CRMSTREAM_USE_BROKER(TestType, fx);
  const std::string topic = fx.CreateTopic("lagging", 2, 1);
  auto producer = Producer::Create(fx.config());
  REQUIRE_OK(producer);
  for (int i = 0; i < 30; ++i) {
    REQUIRE_OK((*producer)->Produce(topic, i % 2, "k", std::to_string(i)));
  }
  REQUIRE_OK((*producer)->Flush(kTestDeadline));

  auto consumer = Consumer::Create(fx.consumer_config(), fx.Name("lag-reader"));
  REQUIRE_OK(consumer);
  const std::vector<std::string> topics{topic};
  REQUIRE_OK((*consumer)->Subscribe(topics));
  REQUIRE(testing::ConsumeUntil(**consumer, 30).size() == 30);
  auto lag0 = (*consumer)->Lag(topic, 0);
  REQUIRE_OK(lag0);
  CHECK(*lag0 == 0);

  // Twelve more on partition 0, not consumed: the background fetcher sees the
  // new high watermark, the position stays, so the lag becomes 12.
  for (int i = 0; i < 12; ++i) REQUIRE_OK((*producer)->Produce(topic, 0, "k", "late"));
  REQUIRE_OK((*producer)->Flush(kTestDeadline));
  std::vector<PartitionLag> snapshot;
  const bool seen = testing::PollUntil([&] {
    auto lags = (*consumer)->LagSnapshot();
    REQUIRE_OK(lags);
    snapshot = *lags;
    for (const PartitionLag& lag : snapshot) {
      if (lag.partition == 0 && lag.lag == 12) return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    return false;
  });
  CHECK(seen);
  REQUIRE(snapshot.size() == 2);
  for (const PartitionLag& lag : snapshot) {
    CHECK(lag.position == 15);
    CHECK(lag.high_watermark == (lag.partition == 0 ? 27 : 15));
  }
}

TEMPLATE_TEST_CASE("The bare consumer reads a whole topic and reports a rate",
                   "[kafka][integration]", EmbeddedBroker, RealBroker) {
  CRMSTREAM_USE_BROKER(TestType, fx);
  const std::string topic = fx.CreateTopic("bare", 4, 1);
  auto producer = Producer::Create(fx.config());
  REQUIRE_OK(producer);
  testing::ProduceKeyed(**producer, topic, 0, 2000, 50);
  REQUIRE_OK((*producer)->Flush(kTestDeadline));

  auto rate = MeasureBareConsumerRate(fx.config(), topic, 2000, kTestDeadline);
  REQUIRE_OK(rate);
  CHECK(rate->messages == 2000);
  CHECK(rate->messages_per_second > 0);

  // Asking for more than there is fails within its timeout.
  auto too_many = MeasureBareConsumerRate(fx.config(), topic, 2001, std::chrono::seconds(8));
  CHECK(too_many.status().code() == StatusCode::kUnavailable);
}

TEMPLATE_TEST_CASE("A delivery report ends the consumer's wait for records",
                   "[kafka][integration][latency]", EmbeddedBroker, RealBroker) {
  // The engine's loop serves acknowledgements between batches: waiting for
  // input that does not come must not hold an output's acknowledgement back.
  CRMSTREAM_USE_BROKER(TestType, fx);
  const std::string input = fx.CreateTopic("quiet-input", 1, 1);
  const std::string output = fx.CreateTopic("acknowledged", 1, 1);
  auto consumer = Consumer::Create(fx.consumer_config(), fx.Name("quiet-reader"));
  REQUIRE_OK(consumer);
  const std::vector<std::string> topics{input};
  REQUIRE_OK((*consumer)->Subscribe(topics));
  MessageBatch batch(16);
  REQUIRE_OK_AND_ASSIGN(const bool assigned, (*consumer)->WaitForAssignment(kTestDeadline, &batch));
  REQUIRE(assigned);
  auto producer = Producer::Create(fx.config());
  REQUIRE_OK(producer);
  (*producer)->WakeOnDelivery(**consumer);

  REQUIRE_OK((*producer)->Produce(output, 0, "key", "value"));
  const auto waited_from = std::chrono::steady_clock::now();
  constexpr int kWaitMs = 120'000;  // far beyond the acknowledgement, however slow
  REQUIRE_OK_AND_ASSIGN(const size_t consumed, (*consumer)->ConsumeBatch(kWaitMs, &batch));
  const auto waited = std::chrono::steady_clock::now() - waited_from;
  CHECK(consumed == 0);  // nothing was produced to the input
  CHECK(waited < std::chrono::milliseconds(kWaitMs / 2));
  // The wait ended because the report is there to be served.
  CHECK((*producer)->delivered_count() == 0);
  CHECK((*producer)->Poll() >= 1);
  CHECK((*producer)->delivered_count() == 1);
  REQUIRE_OK((*consumer)->Close());
}

}  // namespace
}  // namespace crmstream::kafka
