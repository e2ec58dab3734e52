#include "crmstream/runtime/kafka_wiring.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>
#include <optional>

#include "crmstream/pipeline/event_processor.h"
#include "crmstream/pipeline/model_sync.h"
#include "crmstream/runtime/engine_probe.h"

namespace crmstream::runtime {
namespace {

// librdkafka's default message.max.bytes and batch.size.
constexpr size_t kDefaultMessageMaxBytes = 1'000'000;
constexpr size_t kDefaultBatchBytes = 1'000'000;
// Room for what the broker counts besides key and value: the record batch
// header (61 bytes), the record's own framing and the exactly-once stamp
// header (under 530 bytes with the longest group and topic names).
constexpr size_t kRecordOverheadBytes = 1024;

constexpr std::string_view kTopicLimitConfig = "max.message.bytes";

// `what`: the setting's name, for the error.
Result<size_t> ParseBytes(std::string_view text, std::string_view what) {
  size_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size()) {
    return Status::InvalidArgument(std::string(what) + ": '" + std::string(text) +
                                   "' is not a number of bytes");
  }
  return value;
}

}  // namespace

void SetConsumerMemory(const pipeline::MemoryPlan& plan, kafka::ClientConfig* client) {
  client->SetDefault("queued.max.messages.kbytes", std::to_string(plan.consumer_queue_kbytes));
  client->SetDefault("queued.min.messages", std::to_string(plan.consumer_queue_messages));
  client->SetDefault("fetch.message.max.bytes", std::to_string(plan.consumer_fetch_bytes));
}

int OutputLingerMs(const config::EngineConfig& config, bool embedded_cluster,
                   config::Guarantee guarantee) {
  if (config.producer_linger_ms) return *config.producer_linger_ms;
  return !embedded_cluster && guarantee == config::Guarantee::kAtLeastOnce ? 0 : 5;
}

Result<size_t> MaxOutputBytes(const kafka::ClientConfig& client) {
  size_t limit = kDefaultMessageMaxBytes;
  if (auto value = client.Get("message.max.bytes")) {
    CRM_ASSIGN_OR_RETURN(limit, ParseBytes(*value, "kafka property message.max.bytes"));
  }
  const size_t least = pipeline::ProcessorOptions::kMinOutputBytes + kRecordOverheadBytes;
  if (limit < least) {
    return Status::InvalidArgument("kafka property message.max.bytes: " + std::to_string(limit) +
                                   " leaves no room for the engine's outputs (at least " +
                                   std::to_string(least) + ")");
  }
  return limit - kRecordOverheadBytes;
}

Result<size_t> TopicRecordBound(size_t producer_bound, const std::string& topic,
                                std::string_view topic_limit, size_t least) {
  const std::string what = "topic " + topic + ": max.message.bytes";
  CRM_ASSIGN_OR_RETURN(const size_t limit, ParseBytes(topic_limit, what));
  if (limit < least + kRecordOverheadBytes) {
    return Status::InvalidArgument(
        what + " " + std::to_string(limit) + " leaves no room for the engine's records (at least " +
        std::to_string(least + kRecordOverheadBytes) +
        "); raise it (kafka-configs --alter --entity-type topics --entity-name " + topic +
        " --add-config max.message.bytes=N)");
  }
  return std::min(producer_bound, limit - kRecordOverheadBytes);
}

Result<TopicBounds> LearnTopicBounds(const config::EngineConfig& config, size_t producer_bound,
                                     kafka::TopicAdmin* admin) {
  TopicBounds bounds;
  if (admin == nullptr) return bounds;
  // Asks for one topic's limit; nullopt when it cannot be known, and after
  // the first failure to ask, stops asking.
  bool can_ask = true;
  const auto topic_limit = [&](const std::string& topic) -> Result<std::optional<std::string>> {
    if (!can_ask) return std::optional<std::string>();
    auto value = admin->TopicConfig(topic, std::string(kTopicLimitConfig));
    if (value.ok()) return std::optional<std::string>(std::move(value).value());
    if (value.status().code() == StatusCode::kNotFound) {
      spdlog::info(
          "topic {} does not exist yet: its records are bounded by the producer's "
          "message.max.bytes only",
          topic);
      return std::optional<std::string>();
    }
    can_ask = false;
    spdlog::warn(
        "could not read the topics' max.message.bytes ({}): the outputs are bounded by "
        "the producer's message.max.bytes only, and the broker may refuse a record that "
        "fits it",
        value.status().ToString());
    return std::optional<std::string>();
  };
  const auto note_limit = [&](std::string_view text) {
    auto limit = ParseBytes(text, kTopicLimitConfig);
    if (limit.ok() && (bounds.smallest_topic_limit == 0 || *limit < bounds.smallest_topic_limit)) {
      bounds.smallest_topic_limit = *limit;
    }
  };

  for (int k = 0; k < kOutputKindCount; ++k) {
    const auto kind = static_cast<OutputKind>(k);
    const std::string& topic = config.outputs.of(kind).name;
    CRM_ASSIGN_OR_RETURN(const std::optional<std::string> limit, topic_limit(topic));
    if (!limit) continue;
    // The dead letters need room for a bounded dead letter; the other kinds
    // only for a record: theirs over the bound become dead letters.
    const size_t least =
        kind == OutputKind::kDeadLetter ? pipeline::ProcessorOptions::kMinOutputBytes : 1;
    CRM_ASSIGN_OR_RETURN(const size_t bound,
                         TopicRecordBound(producer_bound, topic, *limit, least));
    if (bound < producer_bound) bounds.outputs[static_cast<size_t>(k)] = bound;
    note_limit(*limit);
  }
  if (config.state.changelog) {
    for (const auto& input : config.inputs) {
      const std::string topic = ChangelogTopicName(config, input.name);
      CRM_ASSIGN_OR_RETURN(const std::optional<std::string> limit, topic_limit(topic));
      if (!limit) continue;
      // A chunk is half the bound (changelog.h): room for the key besides.
      CRM_ASSIGN_OR_RETURN(const size_t bound,
                           TopicRecordBound(producer_bound, topic, *limit,
                                            pipeline::ProcessorOptions::kMinOutputBytes));
      if (bound < producer_bound && (bounds.changelog == 0 || bound < bounds.changelog)) {
        bounds.changelog = bound;
      }
      note_limit(*limit);
    }
  }
  return bounds;
}

kafka::ClientConfig ProducerClientConfig(const kafka::ClientConfig& client,
                                         const TopicBounds& bounds) {
  kafka::ClientConfig out = client;
  if (bounds.smallest_topic_limit == 0) return out;
  size_t batch = kDefaultBatchBytes;
  if (auto value = client.Get("batch.size")) {
    auto parsed = ParseBytes(*value, "batch.size");
    // A malformed value is librdkafka's to refuse, with its own message.
    if (!parsed.ok()) return out;
    batch = *parsed;
  }
  if (bounds.smallest_topic_limit < batch) {
    spdlog::info("producer batch.size {} (the smallest max.message.bytes of the engine's topics)",
                 bounds.smallest_topic_limit);
    out.Set("batch.size", std::to_string(bounds.smallest_topic_limit));
  }
  return out;
}

kafka::ClientConfig MakeClientConfig(const config::KafkaSettings& settings) {
  kafka::ClientConfig c;
  for (const auto& [k, v] : settings.properties) c.Set(k, v);
  c.SetDefault("partitioner", "murmur2_random");
  return c;
}

std::vector<kafka::TopicSpec> AllTopics(const config::EngineConfig& config) {
  std::vector<kafka::TopicSpec> topics;
  for (const auto& t : config.inputs) topics.push_back({t.name, t.partitions, -1});
  for (int k = 0; k < kOutputKindCount; ++k) {
    const config::TopicSpec& t = config.outputs.of(static_cast<OutputKind>(k));
    topics.push_back({t.name, t.partitions, -1});
  }
  if (config.state.changelog) {
    for (const auto& t : config.inputs) {
      // Compaction keeps each state key's latest value; no time retention.
      topics.push_back({ChangelogTopicName(config, t.name),
                        t.partitions,
                        -1,
                        {{"cleanup.policy", "compact"}, {"retention.ms", "-1"}}});
    }
  }
  if (config.models.sync_interval_ms > 0) {
    // One partition: every instance reads all of it; records are keyed by
    // input topic and partition, so compaction keeps each task's latest.
    topics.push_back({ModelSyncTopicName(config),
                      1,
                      -1,
                      {{"cleanup.policy", "compact"}, {"retention.ms", "-1"}}});
  }
  return topics;
}

namespace {

// A topic name from the group id: characters Kafka refuses become '_'.
std::string LegalTopicName(std::string name) {
  for (char& c : name) {
    const bool legal = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                       c == '.' || c == '_' || c == '-';
    if (!legal) c = '_';
  }
  return name;
}

}  // namespace

std::string ModelSyncTopicName(const config::EngineConfig& config) {
  return LegalTopicName(pipeline::ModelSyncTopic(config.kafka.group_id));
}

std::string ChangelogTopicName(const config::EngineConfig& config, std::string_view input_topic) {
  return LegalTopicName(config.kafka.group_id + "-" + std::string(input_topic) + "-changelog");
}

void KafkaSink::Emit(OutputKind kind, std::string_view key, std::string_view value) {
  Status st = producer_->Produce(topics_[static_cast<int>(kind)], kafka::kPartitionUnassigned, key,
                                 value, OutputLatencyTag(kind, origin_ms_));
  if (!st.ok() && first_error_.ok()) first_error_ = std::move(st);
}

void KafkaSink::EmitTo(OutputKind kind, int32_t partition, std::string_view key,
                       std::string_view value, std::span<const kafka::MessageHeader> headers) {
  Status st = producer_->Produce(topics_[static_cast<int>(kind)], partition, key, value, headers,
                                 OutputLatencyTag(kind, origin_ms_));
  if (!st.ok() && first_error_.ok()) first_error_ = std::move(st);
}

}  // namespace crmstream::runtime
