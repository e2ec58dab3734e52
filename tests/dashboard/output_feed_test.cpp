// OutputFeed against the embedded Kafka cluster: records on the output topics
// reach the view, and the feed follows a broker that restarts on a new
// address (as a restarted `crmstream broker` does).
#include "crmstream/dashboard/output_feed.h"

#include <simdjson.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <mutex>
#include <thread>

#include "crmstream/kafka/embedded_cluster.h"
#include "crmstream/kafka/producer.h"
#include "support/require_ok.h"

namespace crmstream::dashboard {
namespace {

constexpr auto kDeadline = std::chrono::seconds(45);

std::unique_ptr<kafka::EmbeddedCluster> StartCluster(const OutputFeedOptions& options) {
  auto cluster = kafka::EmbeddedCluster::Create();
  REQUIRE_OK(cluster);
  for (const auto& topic : options.topics) REQUIRE_OK((*cluster)->CreateTopic(topic, 2));
  return std::move(cluster).value();
}

void ProduceScores(const std::string& bootstrap, const std::string& topic, int first, int count,
                   double p) {
  kafka::ClientConfig config;
  config.Set("bootstrap.servers", bootstrap);
  auto producer = kafka::Producer::Create(config);
  REQUIRE_OK(producer);
  for (int i = first; i < first + count; ++i) {
    const std::string id = "C" + std::to_string(i);
    const std::string value = R"({"customer_id":")" + id +
                              R"(","as_of_ms":1,"churn_probability":)" + std::to_string(p) +
                              R"(,"segment":1})";
    REQUIRE_OK((*producer)->Produce(topic, kafka::kPartitionUnassigned, id, value));
  }
  REQUIRE_OK((*producer)->Flush(std::chrono::seconds(20)));
}

int64_t CustomersIn(const DashboardView& view) {
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  REQUIRE(parser.parse(view.Snapshot(0)).get(doc) == simdjson::SUCCESS);
  return doc["risk"]["customers"].get_int64();
}

bool WaitForCustomers(const DashboardView& view, int64_t want) {
  const auto until = std::chrono::steady_clock::now() + kDeadline;
  while (std::chrono::steady_clock::now() < until) {
    if (CustomersIn(view) >= want) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return CustomersIn(view) >= want;
}

// A ClientConfigSource that tests can re-point, like a broker address file.
class MovableAddress {
 public:
  void Set(std::string bootstrap) {
    std::lock_guard<std::mutex> lock(mu_);
    bootstrap_ = std::move(bootstrap);
  }
  ClientConfigSource Source() {
    return [this]() -> Result<kafka::ClientConfig> {
      std::lock_guard<std::mutex> lock(mu_);
      kafka::ClientConfig c;
      c.Set("bootstrap.servers", bootstrap_);
      c.Set("session.timeout.ms", "6000");
      c.Set("heartbeat.interval.ms", "1000");
      return c;
    };
  }

 private:
  std::mutex mu_;
  std::string bootstrap_;
};

TEST_CASE("output records reach the view through Kafka and the feed keeps each topic's newest",
          "[dashboard][integration]") {
  OutputFeedOptions options;
  options.group_id = "dashboard-feed-test";
  auto cluster = StartCluster(options);
  MovableAddress address;
  address.Set(cluster->bootstrap_servers());
  DashboardView view;
  OutputFeed feed(address.Source(), options, &view);
  feed.Start();
  ProduceScores(cluster->bootstrap_servers(), options.topics[0], 0, 300, 0.9);
  CHECK(WaitForCustomers(view, 300));
  // A second score for the same customers replaces, not adds.
  ProduceScores(cluster->bootstrap_servers(), options.topics[0], 0, 300, 0.1);
  const auto until = std::chrono::steady_clock::now() + kDeadline;
  while (feed.records() < 600 && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  CHECK(feed.records() == 600);
  CHECK(CustomersIn(view) == 300);
  // The newest record read per topic, as the main job's status line shows
  // it: one of the second round's scores; nothing on a topic never written.
  const std::string latest_score = feed.latest(OutputKind::kCustomerScores);
  CHECK(latest_score.find(R"("churn_probability":0.100000)") != std::string::npos);
  CHECK(feed.latest(OutputKind::kSegments).empty());
  CHECK(feed.latest(OutputKind::kDeadLetter).empty());
  // One record on another topic becomes that topic's latest, exactly.
  const std::string dead_letter = R"({"reason":"missing_field","field":"customer_id"})";
  {
    kafka::ClientConfig config;
    config.Set("bootstrap.servers", cluster->bootstrap_servers());
    auto producer = kafka::Producer::Create(config);
    REQUIRE_OK(producer);
    const auto topic = options.topics[static_cast<size_t>(OutputKind::kDeadLetter)];
    REQUIRE_OK((*producer)->Produce(topic, kafka::kPartitionUnassigned, "k", dead_letter));
    REQUIRE_OK((*producer)->Flush(std::chrono::seconds(20)));
  }
  const auto read_until = std::chrono::steady_clock::now() + kDeadline;
  while (feed.records() < 601 && std::chrono::steady_clock::now() < read_until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  CHECK(feed.latest(OutputKind::kDeadLetter) == dead_letter);
  CHECK(feed.latest(OutputKind::kCustomerScores) == latest_score);
  CHECK(view.RecordCounts()[static_cast<size_t>(OutputKind::kDeadLetter)] == 1);
  feed.Stop();
}

TEST_CASE("the feed follows a broker restarted on a new address", "[dashboard][integration]") {
  OutputFeedOptions options;
  options.group_id = "dashboard-feed-restart-test";
  options.reconnect_after_ms = 1000;
  auto first = StartCluster(options);
  MovableAddress address;
  address.Set(first->bootstrap_servers());
  DashboardView view;
  OutputFeed feed(address.Source(), options, &view);
  feed.Start();
  ProduceScores(first->bootstrap_servers(), options.topics[0], 0, 50, 0.5);
  REQUIRE(WaitForCustomers(view, 50));

  first.reset();                        // the broker goes away...
  auto second = StartCluster(options);  // ...and comes back elsewhere
  address.Set(second->bootstrap_servers());
  ProduceScores(second->bootstrap_servers(), options.topics[0], 1000, 70, 0.5);
  CHECK(WaitForCustomers(view, 120));
  CHECK(feed.reconnects() >= 1);
  feed.Stop();
}

}  // namespace
}  // namespace crmstream::dashboard
