#include "crmstream/kafka/topic_admin.h"

#include <algorithm>
#include <array>
#include <thread>

#include "crmstream/kafka/embedded_cluster.h"
#include "crmstream/kafka/kafka_error.h"

namespace crmstream::kafka {
namespace {

using Clock = std::chrono::steady_clock;

struct NewTopicDeleter {
  void operator()(rd_kafka_NewTopic_t* topic) const { rd_kafka_NewTopic_destroy(topic); }
};
struct ConfigResourceDeleter {
  void operator()(rd_kafka_ConfigResource_t* resource) const {
    rd_kafka_ConfigResource_destroy(resource);
  }
};
struct AdminOptionsDeleter {
  void operator()(rd_kafka_AdminOptions_t* options) const {
    rd_kafka_AdminOptions_destroy(options);
  }
};

const rd_kafka_metadata_topic_t* FindTopic(const rd_kafka_metadata_t& md, const std::string& name) {
  for (int i = 0; i < md.topic_cnt; ++i) {
    const rd_kafka_metadata_topic_t& topic = md.topics[i];
    if (topic.err == RD_KAFKA_RESP_ERR_NO_ERROR && name == topic.topic) return &topic;
  }
  return nullptr;
}

int RemainingMs(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return static_cast<int>(std::max<int64_t>(left.count(), 1));
}

}  // namespace

Result<std::unique_ptr<TopicAdmin>> TopicAdmin::Create(const ClientConfig& config,
                                                       EmbeddedCluster* embedded) {
  ClientConfig effective = config;
  effective.SetDefault("client.id", "crmstream-admin");
  CRM_ASSIGN_OR_RETURN(ConfHandle conf, effective.BuildConf());
  RouteLogsToSpdlog(conf.get());
  std::unique_ptr<TopicAdmin> admin(new TopicAdmin());
  rd_kafka_conf_set_error_cb(conf.get(), &TopicAdmin::OnError);
  rd_kafka_conf_set_opaque(conf.get(), admin.get());
  std::array<char, 512> errstr{};
  KafkaHandle rk(rd_kafka_new(RD_KAFKA_PRODUCER, conf.get(), errstr.data(), errstr.size()));
  if (!rk) return Status::InvalidArgument(std::string("topic admin: ") + errstr.data());
  conf.release();  // owned by rk now

  admin->rk_ = std::move(rk);
  admin->embedded_ = embedded;
  return admin;
}

void TopicAdmin::OnError(rd_kafka_t* /*rk*/, int err, const char* reason, void* opaque) {
  auto* admin = static_cast<TopicAdmin*>(opaque);
  const auto code = static_cast<rd_kafka_resp_err_t>(err);
  // "All brokers down" follows the error that took them down: keep that one.
  if (code == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN &&
      admin->last_error_ != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return;
  }
  admin->last_error_ = code;
  admin->last_error_reason_ = reason != nullptr ? reason : "";
}

Status TopicAdmin::WithLastClientError(Status failed) {
  // Connection errors are queued as events; serve them now.
  rd_kafka_poll(rk_.get(), 0);
  if (last_error_ == RD_KAFKA_RESP_ERR_NO_ERROR) return failed;
  // A refused login or TLS handshake will not pass by retrying: report it
  // with its own class (InvalidArgument), not as the timeout it caused.
  const StatusCode code = KafkaErrorCode(last_error_) == StatusCode::kUnavailable
                              ? failed.code()
                              : KafkaErrorCode(last_error_);
  return Status(code, failed.message() + "; last connection error: " + last_error_reason_ + " (" +
                          rd_kafka_err2name(last_error_) + ")");
}

Result<MetadataHandle> TopicAdmin::AllTopicsMetadata(std::chrono::milliseconds timeout) {
  const Clock::time_point deadline = Clock::now() + timeout;
  while (true) {
    // Asked in slices of at most a second, so that a connection error that
    // retrying cannot cure (a refused login) ends the wait early.
    const int slice_ms = std::min(RemainingMs(deadline), 1000);
    const rd_kafka_metadata_t* md = nullptr;
    // all_topics=1 with no topic handle: asking never triggers auto-creation.
    const rd_kafka_resp_err_t err = rd_kafka_metadata(rk_.get(), 1, nullptr, &md, slice_ms);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) return MetadataHandle(md);
    Status failed = WithLastClientError(KafkaStatus(err, "topic admin: metadata"));
    if (failed.code() != StatusCode::kUnavailable || Clock::now() >= deadline) return failed;
  }
}

Status TopicAdmin::CreateWithAdminApi(std::span<const TopicSpec> topics,
                                      std::chrono::milliseconds timeout) {
  std::vector<std::unique_ptr<rd_kafka_NewTopic_t, NewTopicDeleter>> owned;
  std::vector<rd_kafka_NewTopic_t*> raw;
  owned.reserve(topics.size());
  raw.reserve(topics.size());
  std::array<char, 512> errstr{};
  for (const TopicSpec& spec : topics) {
    rd_kafka_NewTopic_t* topic = rd_kafka_NewTopic_new(
        spec.name.c_str(), spec.partitions, spec.replication_factor, errstr.data(), errstr.size());
    if (topic == nullptr) {
      return Status::InvalidArgument("topic admin: topic '" + spec.name + "': " + errstr.data());
    }
    owned.emplace_back(topic);
    raw.push_back(topic);
    for (const auto& [key, value] : spec.configs) {
      const rd_kafka_resp_err_t err =
          rd_kafka_NewTopic_set_config(topic, key.c_str(), value.c_str());
      if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        return Status::InvalidArgument("topic admin: topic '" + spec.name + "': config '" + key +
                                       "': " + rd_kafka_err2str(err));
      }
    }
  }

  std::unique_ptr<rd_kafka_AdminOptions_t, AdminOptionsDeleter> options(
      rd_kafka_AdminOptions_new(rk_.get(), RD_KAFKA_ADMIN_OP_CREATETOPICS));
  const int timeout_ms = static_cast<int>(timeout.count());
  if (rd_kafka_AdminOptions_set_request_timeout(options.get(), timeout_ms, errstr.data(),
                                                errstr.size()) != RD_KAFKA_RESP_ERR_NO_ERROR ||
      rd_kafka_AdminOptions_set_operation_timeout(options.get(), timeout_ms, errstr.data(),
                                                  errstr.size()) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return Status::InvalidArgument(std::string("topic admin: options: ") + errstr.data());
  }

  QueueHandle queue(rd_kafka_queue_new(rk_.get()));
  rd_kafka_CreateTopics(rk_.get(), raw.data(), raw.size(), options.get(), queue.get());
  // The request times out on its own; the extra second lets that result in.
  EventHandle event(rd_kafka_queue_poll(queue.get(), timeout_ms + 1000));
  if (!event) {
    return WithLastClientError(Status::Unavailable(
        "topic admin: CreateTopics got no answer within " + std::to_string(timeout_ms) + " ms"));
  }
  if (rd_kafka_event_error(event.get()) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return WithLastClientError(
        KafkaStatus(rd_kafka_event_error(event.get()), "topic admin: CreateTopics"));
  }
  const rd_kafka_CreateTopics_result_t* result = rd_kafka_event_CreateTopics_result(event.get());
  if (result == nullptr) return Status::Internal("topic admin: unexpected event type");
  size_t count = 0;
  const rd_kafka_topic_result_t** results = rd_kafka_CreateTopics_result_topics(result, &count);
  for (size_t i = 0; i < count; ++i) {
    const rd_kafka_resp_err_t err = rd_kafka_topic_result_error(results[i]);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR || err == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
      continue;
    }
    const char* detail = rd_kafka_topic_result_error_string(results[i]);
    return Status(KafkaErrorCode(err), std::string("topic admin: create topic '") +
                                           rd_kafka_topic_result_name(results[i]) +
                                           "': " + (detail ? detail : rd_kafka_err2str(err)) +
                                           " (" + rd_kafka_err2name(err) + ")");
  }
  return Status::OK();
}

Result<std::vector<TopicDescription>> TopicAdmin::EnsureTopics(std::span<const TopicSpec> topics,
                                                               std::chrono::milliseconds timeout) {
  const Clock::time_point deadline = Clock::now() + timeout;
  for (const TopicSpec& spec : topics) {
    if (spec.name.empty() || spec.partitions < 1) {
      return Status::InvalidArgument("topic admin: topic '" + spec.name +
                                     "' needs a name and partitions >= 1");
    }
  }

  CRM_ASSIGN_OR_RETURN(MetadataHandle md, AllTopicsMetadata(timeout));
  std::vector<TopicSpec> missing;
  for (const TopicSpec& spec : topics) {
    if (FindTopic(*md, spec.name) == nullptr) missing.push_back(spec);
  }

  if (!missing.empty()) {
    if (embedded_ != nullptr) {
      for (const TopicSpec& spec : missing) {
        const int replication = spec.replication_factor > 0
                                    ? spec.replication_factor
                                    : std::min(3, embedded_->broker_count());
        Status st = embedded_->CreateTopic(spec.name, spec.partitions, replication);
        // Created meanwhile (e.g. auto-created by a client): fine, as on a real cluster.
        if (!st.ok() && st.message().find("TOPIC_ALREADY_EXISTS") == std::string::npos) return st;
      }
    } else {
      CRM_RETURN_NOT_OK(CreateWithAdminApi(missing, timeout));
    }
  }

  // Creation propagates to every broker's metadata asynchronously.
  while (true) {
    CRM_ASSIGN_OR_RETURN(md, AllTopicsMetadata(std::chrono::milliseconds(RemainingMs(deadline))));
    std::vector<TopicDescription> found;
    found.reserve(topics.size());
    for (const TopicSpec& spec : topics) {
      const rd_kafka_metadata_topic_t* topic = FindTopic(*md, spec.name);
      if (topic == nullptr || topic->partition_cnt == 0) break;
      found.push_back({spec.name, topic->partition_cnt});
    }
    if (found.size() == topics.size()) return found;
    if (Clock::now() >= deadline) {
      return Status::Unavailable("topic admin: topics not visible in metadata within " +
                                 std::to_string(timeout.count()) + " ms");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

Result<std::vector<int32_t>> TopicAdmin::ListPartitions(const std::string& topic,
                                                        std::chrono::milliseconds timeout) {
  CRM_ASSIGN_OR_RETURN(MetadataHandle md, AllTopicsMetadata(timeout));
  const rd_kafka_metadata_topic_t* found = FindTopic(*md, topic);
  if (found == nullptr) return Status::NotFound("topic admin: no topic '" + topic + "'");
  std::vector<int32_t> ids;
  ids.reserve(static_cast<size_t>(found->partition_cnt));
  for (int i = 0; i < found->partition_cnt; ++i) ids.push_back(found->partitions[i].id);
  std::sort(ids.begin(), ids.end());
  return ids;
}

Result<std::string> TopicAdmin::TopicConfig(const std::string& topic, const std::string& name,
                                            std::chrono::milliseconds timeout) {
  const std::string what = "topic admin: config " + name + " of topic '" + topic + "'";
  // The mock broker does not list DescribeConfigs among its APIs, and
  // librdkafka then waits out the whole timeout: tell it apart first (the
  // cluster id is cached after the first metadata).
  CRM_ASSIGN_OR_RETURN(const std::string cluster_id, ClusterId(timeout));
  if (IsEmbeddedClusterId(cluster_id)) {
    return Status::InvalidArgument(what +
                                   ": the embedded cluster does not answer DescribeConfigs and "
                                   "keeps no topic configs");
  }
  std::unique_ptr<rd_kafka_ConfigResource_t, ConfigResourceDeleter> resource(
      rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, topic.c_str()));
  std::unique_ptr<rd_kafka_AdminOptions_t, AdminOptionsDeleter> options(
      rd_kafka_AdminOptions_new(rk_.get(), RD_KAFKA_ADMIN_OP_DESCRIBECONFIGS));
  std::array<char, 512> errstr{};
  const int timeout_ms = static_cast<int>(timeout.count());
  if (rd_kafka_AdminOptions_set_request_timeout(options.get(), timeout_ms, errstr.data(),
                                                errstr.size()) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return Status::InvalidArgument(std::string("topic admin: options: ") + errstr.data());
  }
  QueueHandle queue(rd_kafka_queue_new(rk_.get()));
  rd_kafka_ConfigResource_t* raw = resource.get();
  rd_kafka_DescribeConfigs(rk_.get(), &raw, 1, options.get(), queue.get());
  EventHandle event(rd_kafka_queue_poll(queue.get(), timeout_ms + 1000));
  if (!event) {
    return WithLastClientError(
        Status::Unavailable(what + ": no answer within " + std::to_string(timeout_ms) + " ms"));
  }
  const rd_kafka_resp_err_t err = rd_kafka_event_error(event.get());
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return WithLastClientError(KafkaStatus(err, what));
  }
  const rd_kafka_DescribeConfigs_result_t* result =
      rd_kafka_event_DescribeConfigs_result(event.get());
  if (result == nullptr) return Status::Internal("topic admin: unexpected event type");
  size_t count = 0;
  const rd_kafka_ConfigResource_t** resources =
      rd_kafka_DescribeConfigs_result_resources(result, &count);
  if (count != 1) return Status::Internal(what + ": " + std::to_string(count) + " resources back");
  const rd_kafka_resp_err_t resource_err = rd_kafka_ConfigResource_error(resources[0]);
  if (resource_err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) {
    return Status::NotFound("topic admin: no topic '" + topic + "'");
  }
  if (resource_err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    const char* detail = rd_kafka_ConfigResource_error_string(resources[0]);
    return Status(KafkaErrorCode(resource_err),
                  what + ": " + (detail ? detail : rd_kafka_err2str(resource_err)) + " (" +
                      rd_kafka_err2name(resource_err) + ")");
  }
  size_t entries = 0;
  const rd_kafka_ConfigEntry_t** configs = rd_kafka_ConfigResource_configs(resources[0], &entries);
  for (size_t i = 0; i < entries; ++i) {
    if (name != rd_kafka_ConfigEntry_name(configs[i])) continue;
    const char* value = rd_kafka_ConfigEntry_value(configs[i]);
    // Sensitive values come back as null; none of the topic configs read here is.
    if (value == nullptr) return Status::NotFound(what + ": the broker withholds its value");
    return std::string(value);
  }
  return Status::NotFound(what + ": the broker does not report it");
}

Result<std::string> TopicAdmin::ClusterId(std::chrono::milliseconds timeout) {
  char* id = rd_kafka_clusterid(rk_.get(), static_cast<int>(timeout.count()));
  if (id == nullptr) {
    return WithLastClientError(Status::Unavailable("cluster id: no metadata from the brokers"));
  }
  std::string out(id);
  rd_kafka_mem_free(rk_.get(), id);
  return out;
}

bool IsEmbeddedClusterId(std::string_view cluster_id) {
  return cluster_id.starts_with("mockCluster");
}

}  // namespace crmstream::kafka
