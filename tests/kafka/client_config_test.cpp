#include "crmstream/kafka/client_config.h"

#include <catch2/catch.hpp>

#include "crmstream/kafka/consumer.h"
#include "crmstream/kafka/kafka_error.h"
#include "crmstream/kafka/producer.h"
#include "support/require_ok.h"

namespace crmstream::kafka {
namespace {

TEST_CASE("An unknown property is rejected with a message naming it", "[kafka]") {
  ClientConfig config{{"bootstrap.servers", "127.0.0.1:1"}, {"no.such.property", "1"}};
  auto producer = Producer::Create(config);
  REQUIRE_FALSE(producer.ok());
  CHECK(producer.status().code() == StatusCode::kInvalidArgument);
  CHECK_THAT(producer.status().message(), Catch::Contains("no.such.property"));
  CHECK_THAT(producer.status().message(), Catch::Contains("No such configuration property"));
}

TEST_CASE("A bad value is rejected with a message naming the key", "[kafka]") {
  ClientConfig config{{"bootstrap.servers", "127.0.0.1:1"}, {"isolation.level", "sometimes"}};
  auto consumer = Consumer::Create(config, "group");
  REQUIRE_FALSE(consumer.ok());
  CHECK(consumer.status().code() == StatusCode::kInvalidArgument);
  CHECK_THAT(consumer.status().message(), Catch::Contains("isolation.level"));
  CHECK_THAT(consumer.status().message(), Catch::Contains("sometimes"));
}

TEST_CASE("Settings that contradict each other fail at creation", "[kafka]") {
  // Idempotence needs acks=all; librdkafka refuses the combination.
  ClientConfig config{{"bootstrap.servers", "127.0.0.1:1"}, {"acks", "1"}};
  auto producer = Producer::Create(config);
  REQUIRE_FALSE(producer.ok());
  CHECK(producer.status().code() == StatusCode::kInvalidArgument);
  CHECK_THAT(producer.status().message(), Catch::Contains("acks"));
}

TEST_CASE("A consumer needs a group id", "[kafka]") {
  auto consumer = Consumer::Create(ClientConfig{{"bootstrap.servers", "127.0.0.1:1"}}, "");
  REQUIRE_FALSE(consumer.ok());
  CHECK(consumer.status().code() == StatusCode::kInvalidArgument);
}

TEST_CASE("User properties win over module defaults except for commit ownership", "[kafka]") {
  ClientConfig config{{"linger.ms", "50"}};
  config.SetDefault("linger.ms", "5");
  config.SetDefault("acks", "all");
  CHECK(config.Get("linger.ms") == std::optional<std::string_view>("50"));
  CHECK(config.Get("acks") == std::optional<std::string_view>("all"));
  CHECK_FALSE(config.Get("client.id").has_value());
}

TEST_CASE("librdkafka errors map to the project's status codes", "[kafka]") {
  CHECK_OK(KafkaStatus(RD_KAFKA_RESP_ERR_NO_ERROR, "x"));
  CHECK(KafkaErrorCode(RD_KAFKA_RESP_ERR__TRANSPORT) == StatusCode::kUnavailable);
  CHECK(KafkaErrorCode(RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) == StatusCode::kUnavailable);
  CHECK(KafkaErrorCode(RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION) == StatusCode::kUnavailable);
  CHECK(KafkaErrorCode(RD_KAFKA_RESP_ERR__QUEUE_FULL) == StatusCode::kUnavailable);
  CHECK(KafkaErrorCode(RD_KAFKA_RESP_ERR__INVALID_ARG) == StatusCode::kInvalidArgument);
  CHECK(KafkaErrorCode(RD_KAFKA_RESP_ERR_INVALID_PARTITIONS) == StatusCode::kInvalidArgument);
  CHECK(KafkaErrorCode(RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) == StatusCode::kNotFound);
  CHECK(KafkaErrorCode(RD_KAFKA_RESP_ERR__DESTROY) == StatusCode::kAborted);
  CHECK(KafkaErrorCode(RD_KAFKA_RESP_ERR__FATAL) == StatusCode::kInternal);

  const Status st = KafkaStatus(RD_KAFKA_RESP_ERR__TRANSPORT, "producer: produce to 'orders'");
  CHECK(st.code() == StatusCode::kUnavailable);
  CHECK_THAT(st.message(), Catch::StartsWith("producer: produce to 'orders': "));
  CHECK_THAT(st.message(), Catch::Contains(rd_kafka_err2str(RD_KAFKA_RESP_ERR__TRANSPORT)));
  CHECK_THAT(st.message(), Catch::Contains("_TRANSPORT"));
}

}  // namespace
}  // namespace crmstream::kafka
