#include <atomic>
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

// A consumer group pauses a member's whole assignment while a rebalance
// callback is pending (librdkafka's own thread, at any moment) and resumes
// it from the last offset handed to the application. librdkafka 2.0's batch
// call counted records as handed out when it collected them, then dropped
// those the pause's barrier reached in the same call: a partition the member
// kept resumed past them, and they were lost without an error (an engine's
// state missed a range of a partition's events). Here another thread pauses
// and resumes the partitions while a batch call takes records in: every
// record must still come once and in order (a pause can also make
// librdkafka fetch a record again: the consumer drops the repeat).
TEMPLATE_TEST_CASE("Records come once and in order while their partitions are paused and resumed",
                   "[kafka][integration]", EmbeddedBroker, RealBroker) {
  CRMSTREAM_USE_BROKER(TestType, fx);
  constexpr int kPartitions = 4;
  constexpr int kMessages = 100000;
  const std::string topic = fx.CreateTopic("paused-and-resumed", kPartitions);
  auto producer = Producer::Create(fx.config());
  REQUIRE_OK(producer);
  testing::ProduceKeyed(**producer, topic, 0, kMessages, 499);
  REQUIRE_OK((*producer)->Flush(kTestDeadline));

  // One pass: a new consumer reads the backlog from its beginning, letting
  // the fetched records pile up between batches; another thread pauses and
  // resumes its partitions while a batch call is taking them in.
  struct Pass {
    int64_t records = 0;
    int pauses = 0;
    int gaps = 0;
    int repeats = 0;
    uint64_t dropped = 0;
    std::string first_gap;
  };
  const auto run_pass = [&] {
    Pass pass;
    auto consumer = Consumer::Create(fx.consumer_config(), fx.Name("pausers"));
    REQUIRE_OK(consumer);
    std::vector<TopicPartitionOffset> all;
    for (int32_t p = 0; p < kPartitions; ++p) all.push_back({topic, p, kOffsetBeginning});
    REQUIRE_OK((*consumer)->Assign(all));
    std::atomic<bool> stop{false};
    std::atomic<bool> in_call{false};
    std::atomic<int> pauses{0};
    std::thread pauser([&] {
      rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(kPartitions);
      for (int32_t p = 0; p < kPartitions; ++p) {
        rd_kafka_topic_partition_list_add(list, topic.c_str(), p);
      }
      const auto wait_for = [&](bool value) {
        while (in_call.load() != value && !stop.load()) {
          std::this_thread::sleep_for(std::chrono::microseconds(20));
        }
      };
      while (!stop.load()) {
        wait_for(true);
        std::this_thread::sleep_for(std::chrono::microseconds(300));
        if (in_call.load()) {
          rd_kafka_pause_partitions((*consumer)->handle(), list);
          std::this_thread::sleep_for(std::chrono::microseconds(100));
          rd_kafka_resume_partitions((*consumer)->handle(), list);
          ++pauses;
        }
        wait_for(false);
      }
      rd_kafka_topic_partition_list_destroy(list);
    });
    std::map<int32_t, int64_t> next;  // by partition: the offset that must come next
    MessageBatch batch(50000);
    testing::PollUntil(
        [&] {
          in_call = true;
          REQUIRE_OK((*consumer)->ConsumeBatch(20, &batch));
          in_call = false;
          for (size_t i = 0; i < batch.size(); ++i) {
            const MessageView m = batch[i];
            int64_t& expected = next[m.partition()];
            if (m.offset() > expected && pass.gaps++ == 0) {
              pass.first_gap = "partition " + std::to_string(m.partition()) + ": offset " +
                               std::to_string(m.offset()) + " came after " +
                               std::to_string(expected - 1);
            }
            if (m.offset() < expected) ++pass.repeats;
            expected = m.offset() + 1;
          }
          pass.records += static_cast<int64_t>(batch.size());
          batch.Clear();
          if (pass.records >= kMessages) return true;
          std::this_thread::sleep_for(std::chrono::milliseconds(30));  // a backlog piles up
          return false;
        },
        std::chrono::seconds(20));
    stop = true;
    pauser.join();
    pass.pauses = pauses.load();
    pass.dropped = (*consumer)->redelivered_count();
    REQUIRE_OK((*consumer)->Close());
    return pass;
  };

  // A few passes, until enough pauses have come.
  int passes = 0;
  int pauses = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (pauses < 100 && std::chrono::steady_clock::now() < deadline) {
    const Pass pass = run_pass();
    ++passes;
    pauses += pass.pauses;
    INFO("pass " << passes << ": " << pass.records << " of " << kMessages << " records during "
                 << pass.pauses << " pauses (" << pass.dropped
                 << " repeats dropped); first gap: " << pass.first_gap);
    REQUIRE(pass.pauses > 0);
    REQUIRE(pass.gaps == 0);
    REQUIRE(pass.repeats == 0);
    REQUIRE(pass.records == kMessages);
  }
}

// What a rebalance's pause can do at any moment (previous test), done on
// purpose: librdkafka is moved back behind the consumer's back, so it hands
// out records the application already had. The consumer drops each such
// repeat and counts it (crmstream_redelivered_records_total); a Seek of the
// consumer's own is a rewind the application asked for, not a repeat.
TEMPLATE_TEST_CASE(
    "Records librdkafka hands out again are dropped and counted but a Seek's are not",
    "[kafka][integration]", EmbeddedBroker, RealBroker) {
  CRMSTREAM_USE_BROKER(TestType, fx);
  const std::string topic = fx.CreateTopic("handed-out-again", 1, 1);
  auto producer = Producer::Create(fx.config());
  REQUIRE_OK(producer);
  const auto produce = [&](int first, int count) {
    for (int i = first; i < first + count; ++i) {
      REQUIRE_OK((*producer)->Produce(topic, 0, "k", std::to_string(i)));
    }
    REQUIRE_OK((*producer)->Flush(kTestDeadline));
  };
  const auto offsets_of = [](const std::vector<Received>& received) {
    std::vector<int64_t> offsets;
    for (const Received& m : received) {
      CHECK(m.value == std::to_string(m.offset));
      offsets.push_back(m.offset);
    }
    return offsets;
  };
  const auto range = [](int64_t from, int64_t to) {
    std::vector<int64_t> offsets;
    for (int64_t o = from; o < to; ++o) offsets.push_back(o);
    return offsets;
  };
  produce(0, 40);
  auto consumer = Consumer::Create(fx.consumer_config(), fx.Name("handed-out-again"));
  REQUIRE_OK(consumer);
  const std::vector<TopicPartitionOffset> start{{topic, 0, kOffsetBeginning}};
  REQUIRE_OK((*consumer)->Assign(start));
  CHECK(offsets_of(testing::ConsumeUntil(**consumer, 40)) == range(0, 40));
  CHECK((*consumer)->redelivered_count() == 0);

  // librdkafka's position moved back to offset 10 (asynchronously): records
  // 10..39 are fetched again, and none reaches the application.
  rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(list, topic.c_str(), 0)->offset = 10;
  rd_kafka_error_t* error = rd_kafka_seek_partitions((*consumer)->handle(), list, 0);
  rd_kafka_topic_partition_list_destroy(list);
  REQUIRE(error == nullptr);
  MessageBatch batch(64);
  size_t handed_out = 0;
  const bool all_dropped = testing::PollUntil([&] {
    REQUIRE_OK((*consumer)->ConsumeBatch(20, &batch));
    handed_out += batch.size();
    return (*consumer)->redelivered_count() >= 30;
  });
  CHECK(all_dropped);
  CHECK(handed_out == 0);
  CHECK((*consumer)->redelivered_count() == 30);

  // What comes next is handed out once, in order.
  produce(40, 5);
  CHECK(offsets_of(testing::ConsumeUntil(**consumer, 5)) == range(40, 45));
  CHECK((*consumer)->redelivered_count() == 30);

  // A rewind the application asks for hands the records out again.
  REQUIRE_OK((*consumer)->Seek({topic, 0, 35}, kTestDeadline));
  CHECK(offsets_of(testing::ConsumeUntil(**consumer, 10)) == range(35, 45));
  CHECK((*consumer)->redelivered_count() == 30);
  REQUIRE_OK((*consumer)->Close());
}

}  // namespace
}  // namespace crmstream::kafka
