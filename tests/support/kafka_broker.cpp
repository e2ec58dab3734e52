#include "support/kafka_broker.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdlib>

#include "crmstream/kafka/topic_admin.h"
#include "support/require_ok.h"

namespace crmstream::testing {
namespace {

std::string Env(const char* name) {
  const char* value = std::getenv(name);
  return value != nullptr ? std::string(value) : std::string();
}

// Unique across processes (pid) and fixtures (counter), and across runs
// against the same long-lived cluster (time).
std::string UniqueSuffix() {
  static std::atomic<int> counter{0};
  const auto now = std::chrono::system_clock::now().time_since_epoch();
  return "-" + std::to_string(::getpid()) + "-" +
         std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(now).count()) + "-" +
         std::to_string(counter++);
}

// librdkafka's `debug` contexts from CRMSTREAM_TEST_KAFKA_DEBUG; its lines
// reach the log at debug level, so the log shows that level too.
void AddDebug(kafka::ClientConfig* config) {
  const std::string debug = Env("CRMSTREAM_TEST_KAFKA_DEBUG");
  if (debug.empty()) return;
  config->Set("debug", debug);
  spdlog::set_level(spdlog::level::debug);
}

}  // namespace

std::optional<RealKafkaSettings> RealKafkaSettings::FromEnvironment() {
  RealKafkaSettings settings;
  settings.bootstrap = Env("CRMSTREAM_TEST_KAFKA");
  if (settings.bootstrap.empty()) return std::nullopt;
  const std::string brokers = Env("CRMSTREAM_TEST_KAFKA_BROKERS");
  settings.brokers = brokers.empty() ? 1 : std::max(1, std::atoi(brokers.c_str()));
  settings.sasl_bootstrap = Env("CRMSTREAM_TEST_KAFKA_SASL");
  settings.sasl_username = Env("CRMSTREAM_TEST_KAFKA_SASL_USERNAME");
  settings.sasl_password = Env("CRMSTREAM_TEST_KAFKA_SASL_PASSWORD");
  settings.ca_location = Env("CRMSTREAM_TEST_KAFKA_CA");
  return settings;
}

kafka::ClientConfig RealKafkaSettings::SaslConfig(const std::string& password) const {
  kafka::ClientConfig config;
  config.Set("bootstrap.servers", sasl_bootstrap);
  config.Set("security.protocol", "SASL_SSL");
  config.Set("sasl.mechanisms", "SCRAM-SHA-512");
  config.Set("sasl.username", sasl_username);
  config.Set("sasl.password", password);
  config.Set("ssl.ca.location", ca_location);
  AddDebug(&config);
  return config;
}

kafka::ClientConfig TestBroker::config() const {
  kafka::ClientConfig config;
  config.Set("bootstrap.servers", bootstrap_);
  AddDebug(&config);
  return config;
}

kafka::ClientConfig TestBroker::consumer_config() const {
  kafka::ClientConfig config = this->config();
  config.Set("session.timeout.ms", "6000");
  config.Set("heartbeat.interval.ms", "1000");
  return config;
}

std::string TestBroker::CreateTopic(const std::string& base, int partitions, int replication_factor,
                                    std::vector<std::pair<std::string, std::string>> configs) {
  const std::string name = Name(base);
  if (cluster) {
    const int rf = replication_factor > 0 ? replication_factor : std::min(3, broker_count_);
    const Status created = cluster->CreateTopic(name, partitions, rf);
    INFO(created.ToString());
    REQUIRE_OK(created);
    return name;
  }
  auto admin = kafka::TopicAdmin::Create(config());
  REQUIRE_OK(admin);
  const std::vector<kafka::TopicSpec> specs{
      {name, partitions, replication_factor, std::move(configs)}};
  auto described = (*admin)->EnsureTopics(specs);
  INFO(described.status().ToString());
  REQUIRE_OK(described);
  REQUIRE((*described)[0].partitions == partitions);
  return name;
}

EmbeddedBroker::EmbeddedBroker(int broker_count) {
  auto created = kafka::EmbeddedCluster::Create({.broker_count = broker_count});
  INFO(created.status().ToString());
  REQUIRE_OK(created);
  cluster = std::move(created).value();
  bootstrap_ = cluster->bootstrap_servers();
  broker_count_ = cluster->broker_count();
}

RealBroker::RealBroker() : settings_(RealKafkaSettings::FromEnvironment()) {
  if (!settings_) {
    unavailable_reason_ =
        "no real Kafka broker: start one with `eval \"$(scripts/kafka.sh start)\"` (sets "
        "CRMSTREAM_TEST_KAFKA), or run scripts/test.sh";
    return;
  }
  bootstrap_ = settings_->bootstrap;
  broker_count_ = settings_->brokers;
  suffix_ = UniqueSuffix();
}

}  // namespace crmstream::testing
