#include "crmstream/kafka/topic_admin.h"

#include <algorithm>
#include <catch2/catch.hpp>

#include "kafka/kafka_test_support.h"
#include "support/require_ok.h"

namespace crmstream::kafka {
namespace {

using testing::ClusterFixture;
using testing::EmbeddedBroker;
using testing::RealBroker;

TEMPLATE_TEST_CASE("TopicAdmin creates missing topics with the requested partition counts",
                   "[kafka][integration]", EmbeddedBroker, RealBroker) {
  CRMSTREAM_USE_BROKER(TestType, fx);
  auto admin = TopicAdmin::Create(fx.config(), fx.embedded());
  REQUIRE_OK(admin);

  const std::string interactions = fx.Name("crm.interactions");
  const std::string alerts = fx.Name("crm.churn-alerts");
  const std::vector<TopicSpec> specs{{interactions, 6, -1}, {alerts, 3, 1}};
  auto described = (*admin)->EnsureTopics(specs);
  INFO(described.status().ToString());
  REQUIRE_OK(described);
  REQUIRE(described->size() == 2);
  CHECK((*described)[0].name == interactions);
  CHECK((*described)[0].partitions == 6);
  CHECK((*described)[1].name == alerts);
  CHECK((*described)[1].partitions == 3);

  auto partitions = (*admin)->ListPartitions(interactions);
  REQUIRE_OK(partitions);
  CHECK(*partitions == std::vector<int32_t>{0, 1, 2, 3, 4, 5});

  // Ensuring again is a no-op that reports what exists.
  auto again = (*admin)->EnsureTopics(specs);
  REQUIRE_OK(again);
  CHECK((*again)[0].partitions == 6);
}

TEMPLATE_TEST_CASE("Existing topics keep their partition count", "[kafka][integration]",
                   EmbeddedBroker, RealBroker) {
  CRMSTREAM_USE_BROKER(TestType, fx);
  const std::string topic = fx.CreateTopic("already-there", 2, 1);
  auto admin = TopicAdmin::Create(fx.config(), fx.embedded());
  REQUIRE_OK(admin);
  const std::vector<TopicSpec> specs{{topic, 8, 1}};
  auto described = (*admin)->EnsureTopics(specs);
  REQUIRE_OK(described);
  CHECK((*described)[0].partitions == 2);
}

TEMPLATE_TEST_CASE("Listing partitions of a missing topic is NotFound and does not create it",
                   "[kafka][integration]", EmbeddedBroker, RealBroker) {
  CRMSTREAM_USE_BROKER(TestType, fx);
  auto admin = TopicAdmin::Create(fx.config(), fx.embedded());
  REQUIRE_OK(admin);
  const std::string missing = fx.Name("nobody-made-this");
  auto first = (*admin)->ListPartitions(missing);
  CHECK(first.status().code() == StatusCode::kNotFound);
  auto second = (*admin)->ListPartitions(missing);
  CHECK(second.status().code() == StatusCode::kNotFound);
}

TEST_CASE("Bad topic specs are rejected before contacting the cluster", "[kafka]") {
  ClusterFixture fx;
  auto admin = TopicAdmin::Create(fx.config(), fx.cluster.get());
  REQUIRE_OK(admin);
  const std::vector<TopicSpec> specs{{"zero", 0, 1}};
  CHECK((*admin)->EnsureTopics(specs).status().code() == StatusCode::kInvalidArgument);
}

TEST_CASE("Without the embedded cluster, CreateTopics against the mock fails within its timeout",
          "[kafka][integration]") {
  // The mock broker does not implement CreateTopics: the admin request path
  // must give up with an error, not hang.
  ClusterFixture fx;
  auto admin = TopicAdmin::Create(fx.config());
  REQUIRE_OK(admin);
  const std::vector<TopicSpec> specs{{"via-admin-api", 2, 1}};
  auto described = (*admin)->EnsureTopics(specs, std::chrono::seconds(2));
  CHECK_FALSE(described.ok());
}

TEST_CASE("TopicConfig reads a topic's own max.message.bytes and names a missing topic",
          "[kafka][integration]") {
  CRMSTREAM_USE_BROKER(RealBroker, fx);
  const std::string small = fx.CreateTopic("small-records", 1, -1, {{"max.message.bytes", "2000"}});
  const std::string plain = fx.CreateTopic("plain-records", 1);
  auto admin = TopicAdmin::Create(fx.config());
  REQUIRE_OK(admin);

  auto own = (*admin)->TopicConfig(small, "max.message.bytes");
  REQUIRE_OK(own);
  CHECK(*own == "2000");
  // A topic without its own setting: the broker's default, a number of bytes.
  auto inherited = (*admin)->TopicConfig(plain, "max.message.bytes");
  REQUIRE_OK(inherited);
  CHECK(*inherited != "2000");
  CHECK(!inherited->empty());
  CHECK(std::all_of(inherited->begin(), inherited->end(),
                    [](char c) { return c >= '0' && c <= '9'; }));

  const std::string missing = fx.Name("nobody-made-this-either");
  auto none = (*admin)->TopicConfig(missing, "max.message.bytes");
  CHECK(none.status().code() == StatusCode::kNotFound);
  CHECK_THAT(none.status().message(), Catch::Contains(missing));
  // Asking did not create it.
  CHECK((*admin)->ListPartitions(missing).status().code() == StatusCode::kNotFound);

  auto unknown_config = (*admin)->TopicConfig(small, "no.such.config");
  CHECK(unknown_config.status().code() == StatusCode::kNotFound);
}

TEST_CASE("TopicConfig against the embedded cluster says it has no DescribeConfigs",
          "[kafka][integration]") {
  // librdkafka's mock broker does not implement DescribeConfigs: a clear
  // error, promptly, not a hang.
  ClusterFixture fx;
  REQUIRE_OK(fx.cluster->CreateTopic("configured", 1, 1));
  auto admin = TopicAdmin::Create(fx.config());
  REQUIRE_OK(admin);
  auto value = (*admin)->TopicConfig("configured", "max.message.bytes", std::chrono::seconds(5));
  REQUIRE_FALSE(value.ok());
  CHECK(value.status().code() == StatusCode::kInvalidArgument);
  // Told apart, not a timeout.
  CHECK_THAT(value.status().message(), Catch::Contains("embedded cluster does not answer"));
}

}  // namespace
}  // namespace crmstream::kafka
