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
