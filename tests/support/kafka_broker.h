// The Kafka a test runs against. Two kinds, one interface, so that one test
// body checks both (TEMPLATE_TEST_CASE over EmbeddedBroker and RealBroker):
//
//   EmbeddedBroker  librdkafka's mock cluster, new for each test, in process.
//   RealBroker      the Apache Kafka cluster that scripts/kafka.sh started,
//                   named by CRMSTREAM_TEST_KAFKA=host:port[,...]. It outlives
//                   the tests, so topic, group and transactional ids get a
//                   suffix unique to the fixture (Name()).
//
// Without CRMSTREAM_TEST_KAFKA a RealBroker is unavailable and the test
// reports SKIPPED with the reason (CRMSTREAM_USE_BROKER); with
// CRMSTREAM_REQUIRE_KAFKA=1 (scripts/test.sh, CI) that is a failure instead.
// The SASL_SSL listener's settings come from CRMSTREAM_TEST_KAFKA_SASL,
// _SASL_USERNAME, _SASL_PASSWORD and _CA (scripts/kafka.sh prints them all).
// CRMSTREAM_TEST_KAFKA_DEBUG=<contexts> adds librdkafka's `debug` property to
// every client config the fixtures hand out (e.g. feature,protocol).
//
// Thread-safety: test code, single-threaded.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "crmstream/kafka/client_config.h"
#include "crmstream/kafka/embedded_cluster.h"
#include "support/test_support.h"

namespace crmstream::testing {

// The real cluster's settings, from the environment.
struct RealKafkaSettings {
  std::string bootstrap;  // PLAINTEXT listener(s)
  int brokers = 1;
  // The SASL_SSL (SCRAM-SHA-512) listener; empty when not given.
  std::string sasl_bootstrap;
  std::string sasl_username;
  std::string sasl_password;
  std::string ca_location;

  // nullopt when CRMSTREAM_TEST_KAFKA is unset or empty.
  static std::optional<RealKafkaSettings> FromEnvironment();
  bool has_sasl() const { return !sasl_bootstrap.empty() && !ca_location.empty(); }
  // Client properties for the SASL_SSL listener with `password`, passed
  // through unchanged as a user would with `-X`.
  kafka::ClientConfig SaslConfig(const std::string& password) const;
};

class TestBroker {
 public:
  virtual ~TestBroker() = default;
  TestBroker(const TestBroker&) = delete;
  TestBroker& operator=(const TestBroker&) = delete;

  virtual bool real() const = 0;
  // False (with the reason) when this kind of broker is not there.
  bool available() const { return unavailable_reason_.empty(); }
  const std::string& unavailable_reason() const { return unavailable_reason_; }
  const std::string& bootstrap_servers() const { return bootstrap_; }
  int broker_count() const { return broker_count_; }

  // bootstrap.servers (and `debug` when asked for).
  kafka::ClientConfig config() const;
  // config() plus a short group session (6 s, heartbeat 1 s): librdkafka's
  // default of 45 s is longer than any test's deadline, and the mock
  // coordinator needs a session timeout to recover from some join orders.
  kafka::ClientConfig consumer_config() const;

  // A name unique to this fixture on a real cluster (`base` plus a suffix),
  // `base` itself on the embedded one: for topics, groups, transactional ids.
  std::string Name(const std::string& base) const { return base + suffix_; }
  // Creates the topic Name(base) and returns that name (REQUIREs success).
  // replication_factor -1: min(3, brokers) on the embedded cluster, the
  // broker default on a real one. Configs apply on a real cluster only.
  std::string CreateTopic(const std::string& base, int partitions, int replication_factor = -1,
                          std::vector<std::pair<std::string, std::string>> configs = {});

  // The mock cluster (fault injection), nullptr on a real cluster.
  kafka::EmbeddedCluster* embedded() const { return cluster.get(); }
  // Owned embedded cluster; empty for a real broker. Public so that tests of
  // the mock itself keep using it directly.
  std::unique_ptr<kafka::EmbeddedCluster> cluster;

 protected:
  TestBroker() = default;
  std::string bootstrap_;
  int broker_count_ = 0;
  std::string suffix_;
  std::string unavailable_reason_;
};

class EmbeddedBroker : public TestBroker {
 public:
  // broker_count: the mock's brokers (default 3).
  explicit EmbeddedBroker(int broker_count = 3);
  bool real() const override { return false; }
};

class RealBroker : public TestBroker {
 public:
  RealBroker();
  bool real() const override { return true; }
  // Present when available().
  const std::optional<RealKafkaSettings>& settings() const { return settings_; }

 private:
  std::optional<RealKafkaSettings> settings_;
};

inline constexpr const char* kRequireKafkaVariable = "CRMSTREAM_REQUIRE_KAFKA";

}  // namespace crmstream::testing

// Declares `fx` of the broker type and ends the test as SKIPPED (failed
// under CRMSTREAM_REQUIRE_KAFKA=1) when that broker is not there. In a
// TEMPLATE_TEST_CASE over the two kinds: CRMSTREAM_USE_BROKER(TestType, fx).
#define CRMSTREAM_USE_BROKER(type, fx)                                          \
  type fx;                                                                      \
  if (!fx.available()) {                                                        \
    CRMSTREAM_SKIP_UNLESS_REQUIRED(::crmstream::testing::kRequireKafkaVariable, \
                                   fx.unavailable_reason());                    \
  }                                                                             \
  static_assert(true, "")
