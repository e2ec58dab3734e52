// What only a real Kafka broker can show (scripts/kafka.sh): log compaction,
// partitions holding more than the embedded cluster's 5 MiB, and clients
// connecting through the SASL_SSL listener (TLS + SCRAM-SHA-512) with the
// settings a user passes through with `-X`. Without a real broker these
// tests report SKIPPED.
#include <catch2/catch.hpp>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "crmstream/kafka/consumer.h"
#include "crmstream/kafka/embedded_cluster.h"
#include "crmstream/kafka/partition_reader.h"
#include "crmstream/kafka/producer.h"
#include "crmstream/kafka/topic_admin.h"
#include "kafka/kafka_test_support.h"
#include "support/require_ok.h"

namespace crmstream::kafka {
namespace {

using testing::kTestDeadline;
using testing::RealBroker;
using testing::Received;

// Every record of one partition, read to its end with the module's reader.
std::vector<Received> ReadPartition(const ClientConfig& config, const std::string& topic) {
  std::vector<Received> records;
  const std::vector<TopicPartitionOffset> from{{topic, 0, kOffsetBeginning}};
  PartitionReadOptions options;
  options.timeout = kTestDeadline;
  const Status read = ReadPartitionsToEnd(
      config, from, options, [](std::span<const PartitionEnd>) { return Status::OK(); },
      [&](const MessageView& m) {
        records.push_back({std::string(m.topic()), m.partition(), m.offset(), std::string(m.key()),
                           std::string(m.payload())});
        return Status::OK();
      });
  INFO(read.ToString());
  REQUIRE_OK(read);
  return records;
}

TEST_CASE("Compaction removes the older values of each key of a compacted topic",
          "[kafka][integration][real-broker]") {
  CRMSTREAM_USE_BROKER(RealBroker, fx);
  // Segments roll after 100 ms and any dirty share makes a log cleanable, so
  // the cleaner (every second, scripts/kafka.sh) compacts within seconds.
  const std::string topic = fx.CreateTopic("compacted", 1, -1,
                                           {{"cleanup.policy", "compact"},
                                            {"segment.ms", "100"},
                                            {"min.cleanable.dirty.ratio", "0.001"},
                                            {"delete.retention.ms", "100"},
                                            {"file.delete.delay.ms", "100"}});
  auto producer = Producer::Create(fx.config());
  REQUIRE_OK(producer);
  constexpr int kKeys = 20;
  constexpr int kVersions = 5;
  // Version by version: key i's last value is written at offset
  // (kVersions - 1) * kKeys + i.
  std::map<std::string, std::pair<int64_t, std::string>> latest;  // the reference
  int64_t offset = 0;
  for (int v = 0; v < kVersions; ++v) {
    for (int k = 0; k < kKeys; ++k, ++offset) {
      const std::string key = "customer-" + std::to_string(k);
      const std::string value = key + "@v" + std::to_string(v);
      REQUIRE_OK((*producer)->Produce(topic, 0, key, value));
      latest[key] = {offset, value};
    }
  }
  REQUIRE_OK((*producer)->Flush(kTestDeadline));
  // Before compaction every version is there: the check below is not vacuous.
  const auto before = ReadPartition(fx.config(), topic);
  REQUIRE(before.size() == static_cast<size_t>(kKeys * kVersions));

  // The cleaner never touches the active segment: later records (key "roll")
  // make the one holding the customers' records inactive.
  std::vector<Received> after;
  const bool compacted = testing::PollUntil(
      [&] {
        std::this_thread::sleep_for(std::chrono::milliseconds(500));
        REQUIRE_OK((*producer)->Produce(topic, 0, "roll", "roll"));
        REQUIRE_OK((*producer)->Flush(kTestDeadline));
        after = ReadPartition(fx.config(), topic);
        size_t customers = 0;
        for (const Received& m : after) customers += m.key != "roll";
        return customers == latest.size();
      },
      std::chrono::seconds(90));
  REQUIRE(compacted);
  // What is left of each key is its last value, at the offset it was written.
  std::map<std::string, std::pair<int64_t, std::string>> kept;
  for (const Received& m : after) {
    if (m.key == "roll") continue;
    CHECK(kept.emplace(m.key, std::make_pair(m.offset, m.value)).second);
  }
  CHECK(kept == latest);
}

TEST_CASE("A partition holds more than the embedded cluster's 5 MiB, from its first offset",
          "[kafka][integration][real-broker]") {
  CRMSTREAM_USE_BROKER(RealBroker, fx);
  const std::string topic = fx.CreateTopic("large", 1);
  auto producer = Producer::Create(fx.config());
  REQUIRE_OK(producer);
  constexpr int kMessages = 800;
  constexpr size_t kPayloadBytes = 10 * 1024;
  static_assert(kMessages * kPayloadBytes > 3 * EmbeddedCluster::kMaxPartitionLogBytes / 2);
  // Each payload is its sequence number repeated, so a swapped or truncated
  // record shows.
  auto payload = [&](int seq) {
    const std::string unit = std::to_string(seq) + ";";
    std::string out;
    while (out.size() < kPayloadBytes) out += unit;
    out.resize(kPayloadBytes);
    return out;
  };
  for (int i = 0; i < kMessages; ++i) {
    REQUIRE_OK((*producer)->Produce(topic, 0, "k" + std::to_string(i), payload(i)));
  }
  REQUIRE_OK((*producer)->Flush(std::chrono::seconds(60)));
  CHECK((*producer)->delivered_count() == kMessages);

  const auto records = ReadPartition(fx.config(), topic);
  REQUIRE(records.size() == static_cast<size_t>(kMessages));
  size_t bytes = 0;
  for (int i = 0; i < kMessages; ++i) {
    const Received& m = records[static_cast<size_t>(i)];
    CHECK(m.offset == i);
    CHECK(m.key == "k" + std::to_string(i));
    CHECK(m.value == payload(i));
    bytes += m.value.size();
  }
  CHECK(bytes > EmbeddedCluster::kMaxPartitionLogBytes);
}

// The SASL_SSL listener's settings, or a skip naming what is missing.
#define REQUIRE_SASL_LISTENER(fx)                                                         \
  if (!(fx).settings()->has_sasl()) {                                                     \
    CRMSTREAM_SKIP_UNLESS_REQUIRED(::crmstream::testing::kRequireKafkaVariable,           \
                                   "no SASL_SSL listener: CRMSTREAM_TEST_KAFKA_SASL and " \
                                   "CRMSTREAM_TEST_KAFKA_CA are unset (scripts/kafka.sh " \
                                   "prints them)");                                       \
  }                                                                                       \
  static_assert(true, "")

TEST_CASE("Clients produce and consume through TLS and SCRAM-SHA-512 with passed-through settings",
          "[kafka][integration][real-broker][sasl]") {
  CRMSTREAM_USE_BROKER(RealBroker, fx);
  REQUIRE_SASL_LISTENER(fx);
  const ClientConfig sasl = fx.settings()->SaslConfig(fx.settings()->sasl_password);

  // Every client kind the engine uses, over the SASL_SSL listener only.
  auto admin = TopicAdmin::Create(sasl);
  REQUIRE_OK(admin);
  const std::string topic = fx.Name("over-sasl");
  const std::vector<TopicSpec> specs{{topic, 3, -1}};
  auto described = (*admin)->EnsureTopics(specs);
  INFO(described.status().ToString());
  REQUIRE_OK(described);

  auto producer = Producer::Create(sasl);
  REQUIRE_OK(producer);
  constexpr int kMessages = 300;
  testing::ProduceKeyed(**producer, topic, 0, kMessages, 31);
  REQUIRE_OK((*producer)->Flush(kTestDeadline));
  CHECK((*producer)->delivered_count() == kMessages);

  ClientConfig consumer_config = sasl;
  consumer_config.Set("session.timeout.ms", "6000");
  consumer_config.Set("heartbeat.interval.ms", "1000");
  auto consumer = Consumer::Create(consumer_config, fx.Name("sasl-readers"));
  REQUIRE_OK(consumer);
  const std::vector<std::string> topics{topic};
  REQUIRE_OK((*consumer)->Subscribe(topics));
  const auto received = testing::ConsumeUntil(**consumer, kMessages);
  std::set<std::string> values;
  for (const Received& m : received) values.insert(m.value);
  CHECK(received.size() == kMessages);
  CHECK(values.size() == kMessages);
  const std::vector<TopicPartitionOffset> commit{{topic, 0, 1}};
  CHECK_OK((*consumer)->CommitOffsets(commit, /*async=*/false));
  REQUIRE_OK((*consumer)->Close());
}

TEST_CASE("A wrong SCRAM password or an untrusted broker certificate fails with a clear error",
          "[kafka][integration][real-broker][sasl]") {
  CRMSTREAM_USE_BROKER(RealBroker, fx);
  REQUIRE_SASL_LISTENER(fx);
  const std::string password = fx.settings()->sasl_password;
  const std::string wrong = "not-" + password;

  auto admin = TopicAdmin::Create(fx.settings()->SaslConfig(wrong));
  REQUIRE_OK(admin);
  const auto refused = (*admin)->ListPartitions(fx.Name("anything"), std::chrono::seconds(4));
  INFO(refused.status().ToString());
  REQUIRE_FALSE(refused.ok());
  // Not a timeout to retry: the login was refused, and the error says so.
  CHECK(refused.status().code() == StatusCode::kInvalidArgument);
  CHECK_THAT(refused.status().message(), Catch::Contains("Authentication failed"));
  CHECK_THAT(refused.status().message(), Catch::Contains("SCRAM-SHA-512"));
  CHECK(refused.status().message().find(password) == std::string::npos);

  // The right password without the test CA: the broker's certificate is not
  // trusted (librdkafka falls back to the system's CAs).
  ClientConfig untrusted = fx.settings()->SaslConfig(password);
  untrusted.Set("ssl.ca.location", "/nonexistent-ca.pem");
  auto bad_ca = Producer::Create(untrusted);
  CHECK_FALSE(bad_ca.ok());  // an unreadable CA file is refused at creation
  if (!bad_ca.ok()) CHECK(bad_ca.status().code() == StatusCode::kInvalidArgument);

  ClientConfig system_cas = fx.settings()->SaslConfig(password);
  system_cas.Set("ssl.ca.location", "probe");  // librdkafka: the system's CA store
  auto tls_admin = TopicAdmin::Create(system_cas);
  REQUIRE_OK(tls_admin);
  const auto not_trusted =
      (*tls_admin)->ListPartitions(fx.Name("anything"), std::chrono::seconds(4));
  INFO(not_trusted.status().ToString());
  REQUIRE_FALSE(not_trusted.ok());
  CHECK(not_trusted.status().code() == StatusCode::kInvalidArgument);
  CHECK_THAT(not_trusted.status().message(), Catch::Contains("certificate verify failed"));
}

}  // namespace
}  // namespace crmstream::kafka
