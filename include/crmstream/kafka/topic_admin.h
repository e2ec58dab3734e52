// TopicAdmin: makes sure the topics a pipeline uses exist with the wanted
// partition counts, and reads partition lists from cluster metadata.
//
// Against a real cluster it uses the CreateTopics admin request
// (TOPIC_ALREADY_EXISTS counts as success). Against an EmbeddedCluster, whose
// mock broker does not implement CreateTopics, pass the cluster to Create()
// and missing topics are created through the mock API instead.
//
// Topic configs are read with the DescribeConfigs admin request. The embedded
// (mock) cluster of librdkafka 2.0.2 does not implement it (nor keep topic
// configs; librdkafka would wait out the request's timeout): TopicConfig
// tells it by its cluster id and fails at once with InvalidArgument saying so.
//
// When the brokers cannot be reached, the error names the last connection
// error librdkafka reported (e.g. a failed SASL login or TLS handshake), not
// only the metadata timeout it caused.
//
// Thread-safety: not thread-safe; use from one thread at a time.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "crmstream/common/status.h"
#include "crmstream/kafka/client_config.h"
#include "crmstream/kafka/handles.h"

namespace crmstream::kafka {

class EmbeddedCluster;

struct TopicSpec {
  std::string name;
  int partitions = 1;
  // -1: the broker's default.
  int replication_factor = -1;
  // Topic configs for CreateTopics (e.g. {"cleanup.policy", "compact"});
  // the embedded cluster cannot apply them and ignores them.
  std::vector<std::pair<std::string, std::string>> configs = {};
};

struct TopicDescription {
  std::string name;
  int partitions = 0;
};

class TopicAdmin {
 public:
  // `embedded` (optional, not owned, must outlive the admin) is the cluster
  // `config` points at when it is an EmbeddedCluster.
  static Result<std::unique_ptr<TopicAdmin>> Create(const ClientConfig& config,
                                                    EmbeddedCluster* embedded = nullptr);

  // Creates every missing topic, then waits (up to `timeout`) until all of
  // them appear in metadata. Existing topics are left as they are, whatever
  // their partition count; the returned descriptions say what there is.
  Result<std::vector<TopicDescription>> EnsureTopics(
      std::span<const TopicSpec> topics,
      std::chrono::milliseconds timeout = std::chrono::seconds(30));

  // Partition ids of a topic, ascending; NotFound if it does not exist.
  // Reads cluster-wide metadata so that asking never auto-creates the topic.
  Result<std::vector<int32_t>> ListPartitions(
      const std::string& topic, std::chrono::milliseconds timeout = std::chrono::seconds(10));

  // The value of topic config `name` (e.g. "max.message.bytes") that applies
  // to `topic`: the topic's own setting, else the broker's default
  // (DescribeConfigs). NotFound naming the topic when it does not exist, or
  // when the broker does not report the config.
  Result<std::string> TopicConfig(const std::string& topic, const std::string& name,
                                  std::chrono::milliseconds timeout = std::chrono::seconds(10));

  // The cluster's id (metadata). librdkafka's embedded (mock) cluster names
  // itself "mockCluster<hex>": IsEmbeddedClusterId tells it apart.
  Result<std::string> ClusterId(std::chrono::milliseconds timeout = std::chrono::seconds(10));

 private:
  TopicAdmin() = default;
  static void OnError(rd_kafka_t* rk, int err, const char* reason, void* opaque);
  // `failed` with the last connection error librdkafka reported, if any.
  Status WithLastClientError(Status failed);
  Result<MetadataHandle> AllTopicsMetadata(std::chrono::milliseconds timeout);
  Status CreateWithAdminApi(std::span<const TopicSpec> topics, std::chrono::milliseconds timeout);

  KafkaHandle rk_;
  EmbeddedCluster* embedded_ = nullptr;
  // Set by OnError, which runs inside rd_kafka_poll on the admin's thread.
  rd_kafka_resp_err_t last_error_ = RD_KAFKA_RESP_ERR_NO_ERROR;
  std::string last_error_reason_;
};

// The id librdkafka's mock cluster reports: it has no transactions (no
// commit markers, no fencing) and no idempotence checks for non-transactional
// producers.
bool IsEmbeddedClusterId(std::string_view cluster_id);

}  // namespace crmstream::kafka
