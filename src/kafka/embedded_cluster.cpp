#include "crmstream/kafka/embedded_cluster.h"

#include <unistd.h>

#include <array>
#include <fstream>
#include <system_error>

#include "crmstream/kafka/client_config.h"
#include "crmstream/kafka/kafka_error.h"

namespace crmstream::kafka {

Result<std::unique_ptr<EmbeddedCluster>> EmbeddedCluster::Create(
    const EmbeddedClusterOptions& options) {
  if (options.broker_count < 1) {
    return Status::InvalidArgument("embedded cluster: broker_count must be >= 1, got " +
                                   std::to_string(options.broker_count));
  }
  ClientConfig config;
  config.Set("client.id", "crmstream-embedded-cluster");
  // The owning client never connects anywhere; its only job is to host the
  // mock cluster's bookkeeping.
  config.Set("log_level", "3");
  CRM_ASSIGN_OR_RETURN(ConfHandle conf, config.BuildConf());
  RouteLogsToSpdlog(conf.get());

  std::array<char, 512> errstr{};
  KafkaHandle owner(rd_kafka_new(RD_KAFKA_PRODUCER, conf.get(), errstr.data(), errstr.size()));
  if (!owner) {
    return Status::Internal(std::string("embedded cluster: rd_kafka_new: ") + errstr.data());
  }
  conf.release();  // rd_kafka_new took ownership on success

  MockClusterHandle mock(rd_kafka_mock_cluster_new(owner.get(), options.broker_count));
  if (!mock) {
    return Status::Unavailable(
        "embedded cluster: rd_kafka_mock_cluster_new failed (could not "
        "listen on loopback?)");
  }

  std::unique_ptr<EmbeddedCluster> cluster(new EmbeddedCluster());
  cluster->bootstrap_servers_ = rd_kafka_mock_cluster_bootstraps(mock.get());
  cluster->broker_count_ = options.broker_count;
  cluster->owner_ = std::move(owner);
  cluster->mock_ = std::move(mock);
  return cluster;
}

Status EmbeddedCluster::CreateTopic(const std::string& name, int partitions,
                                    int replication_factor) {
  if (partitions < 1 || replication_factor < 1) {
    return Status::InvalidArgument("embedded cluster: topic '" + name +
                                   "' needs partitions >= 1 and replication_factor >= 1");
  }
  return KafkaStatus(
      rd_kafka_mock_topic_create(mock_.get(), name.c_str(), partitions, replication_factor),
      "embedded cluster: create topic '" + name + "'");
}

Status EmbeddedCluster::WriteAddressFile(const std::filesystem::path& path) const {
  std::filesystem::path tmp = path;
  tmp += ".tmp." + std::to_string(::getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << bootstrap_servers_ << '\n';
    out.flush();
    if (!out) return Status::IOError("writing " + tmp.string());
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::filesystem::remove(tmp, ec);
    return Status::IOError("renaming " + tmp.string() + " to " + path.string() + ": " +
                           ec.message());
  }
  return Status::OK();
}

Status EmbeddedCluster::SetBrokerDown(int32_t broker_id) {
  return KafkaStatus(rd_kafka_mock_broker_set_down(mock_.get(), broker_id),
                     "embedded cluster: broker " + std::to_string(broker_id) + " down");
}

Status EmbeddedCluster::SetBrokerUp(int32_t broker_id) {
  return KafkaStatus(rd_kafka_mock_broker_set_up(mock_.get(), broker_id),
                     "embedded cluster: broker " + std::to_string(broker_id) + " up");
}

Status EmbeddedCluster::SetBrokerRtt(int32_t broker_id, int rtt_ms) {
  return KafkaStatus(rd_kafka_mock_broker_set_rtt(mock_.get(), broker_id, rtt_ms),
                     "embedded cluster: broker " + std::to_string(broker_id) + " rtt");
}

void EmbeddedCluster::PushRequestErrors(int16_t api_key,
                                        std::span<const rd_kafka_resp_err_t> errors) {
  rd_kafka_mock_push_request_errors_array(mock_.get(), api_key, errors.size(), errors.data());
}

void EmbeddedCluster::ClearRequestErrors(int16_t api_key) {
  rd_kafka_mock_clear_request_errors(mock_.get(), api_key);
}

Status EmbeddedCluster::SetPartitionLeader(const std::string& topic, int32_t partition,
                                           int32_t broker_id) {
  return KafkaStatus(
      rd_kafka_mock_partition_set_leader(mock_.get(), topic.c_str(), partition, broker_id),
      "embedded cluster: set leader of " + topic + "[" + std::to_string(partition) + "]");
}

}  // namespace crmstream::kafka
