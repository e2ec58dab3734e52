#include "crmstream/kafka/embedded_cluster.h"

#include <catch2/catch.hpp>
#include <fstream>
#include <sstream>

#include "kafka/kafka_test_support.h"
#include "support/require_ok.h"
#include "support/test_support.h"

namespace crmstream::kafka {
namespace {

using testing::ClusterFixture;

TEST_CASE("The embedded cluster lists one loopback address per broker", "[kafka]") {
  auto cluster = EmbeddedCluster::Create(EmbeddedClusterOptions{.broker_count = 2});
  REQUIRE_OK(cluster);
  const std::string& servers = (*cluster)->bootstrap_servers();
  CHECK(std::count(servers.begin(), servers.end(), ',') == 1);
  CHECK(servers.find("127.0.0.1:") == 0);
  CHECK_FALSE(EmbeddedCluster::Create(EmbeddedClusterOptions{.broker_count = 0}).ok());
}

TEST_CASE("The address file holds the bootstrap string and is usable by a client",
          "[kafka][integration]") {
  ClusterFixture fx;
  crmstream::testing::ScratchDir dir;
  const auto path = dir.path() / "kafka.address";
  REQUIRE_OK(fx.cluster->WriteAddressFile(path));
  // Rewriting replaces the file whole (rename over the old one).
  REQUIRE_OK(fx.cluster->WriteAddressFile(path));

  std::ifstream in(path);
  std::stringstream content;
  content << in.rdbuf();
  CHECK(content.str() == fx.cluster->bootstrap_servers() + "\n");
  // Only the address file remains: the temporary was renamed, not left behind.
  CHECK(std::distance(std::filesystem::directory_iterator(dir.path()),
                      std::filesystem::directory_iterator()) == 1);

  // A client configured only from the file reaches the cluster.
  std::string address = content.str();
  address.pop_back();
  auto producer = Producer::Create(ClientConfig{{"bootstrap.servers", address}});
  REQUIRE_OK(producer);
  REQUIRE_OK((*producer)->Produce("address-check", kPartitionUnassigned, "k", "v"));
  REQUIRE_OK((*producer)->Flush(testing::kTestDeadline));
  CHECK((*producer)->delivered_count() == 1);
  CHECK((*producer)->failed_count() == 0);
}

TEST_CASE("Writing the address file into a missing folder fails with IOError", "[kafka]") {
  ClusterFixture fx;
  crmstream::testing::ScratchDir dir;
  const Status st = fx.cluster->WriteAddressFile(dir.path() / "no" / "such" / "dir" / "addr");
  CHECK(st.code() == StatusCode::kIOError);
}

TEST_CASE("Creating a topic twice on the embedded cluster is refused", "[kafka]") {
  ClusterFixture fx;
  REQUIRE_OK(fx.cluster->CreateTopic("twice", 2, 1));
  const Status again = fx.cluster->CreateTopic("twice", 2, 1);
  CHECK_FALSE(again.ok());
  CHECK_THAT(again.message(), Catch::Contains("TOPIC_ALREADY_EXISTS"));
  CHECK(fx.cluster->CreateTopic("bad", 0, 1).code() == StatusCode::kInvalidArgument);
}

TEST_CASE("The embedded cluster drops the oldest data beyond 5 MiB per partition",
          "[kafka][integration]") {
  // Pins the mock's in-memory retention, which bounds benchmark topic sizes.
  ClusterFixture fx;
  REQUIRE_OK(fx.cluster->CreateTopic("bounded", 1, 1));
  auto producer = Producer::Create(fx.config(), ProducerOptions{.linger_ms = 20});
  REQUIRE_OK(producer);
  const std::string value(1000, 'x');
  constexpr int kMessages = 8000;  // about 8 MB, well over the bound
  for (int i = 0; i < kMessages; ++i) {
    REQUIRE_OK((*producer)->Produce("bounded", 0, "", value));
  }
  REQUIRE_OK((*producer)->Flush(testing::kTestDeadline));
  REQUIRE((*producer)->delivered_count() == kMessages);

  int64_t low = -1;
  int64_t high = -1;
  REQUIRE(rd_kafka_query_watermark_offsets((*producer)->handle(), "bounded", 0, &low, &high,
                                           10000) == RD_KAFKA_RESP_ERR_NO_ERROR);
  CHECK(high == kMessages);
  CHECK(low > 0);
  // What is left is just under the bound (messages are ~1 KiB each).
  const double kept_bytes = static_cast<double>(high - low) * 1000.0;
  CHECK(kept_bytes <= static_cast<double>(EmbeddedCluster::kMaxPartitionLogBytes));
  CHECK(kept_bytes > 0.5 * static_cast<double>(EmbeddedCluster::kMaxPartitionLogBytes));
}

}  // namespace
}  // namespace crmstream::kafka
