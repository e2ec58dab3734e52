#include "crmstream/runtime/kafka_wiring.h"

#include <charconv>

#include "crmstream/pipeline/event_processor.h"
#include "crmstream/runtime/engine_probe.h"

namespace crmstream::runtime {
namespace {

// librdkafka's default message.max.bytes.
constexpr size_t kDefaultMessageMaxBytes = 1'000'000;
// Room for what the broker counts besides key and value: the record batch
// header (61 bytes), the record's own framing and the exactly-once stamp
// header (under 530 bytes with the longest group and topic names).
constexpr size_t kRecordOverheadBytes = 1024;

}  // namespace

Result<size_t> MaxOutputBytes(const kafka::ClientConfig& client) {
  size_t limit = kDefaultMessageMaxBytes;
  if (auto value = client.Get("message.max.bytes")) {
    const auto [end, ec] = std::from_chars(value->data(), value->data() + value->size(), limit);
    if (ec != std::errc() || end != value->data() + value->size()) {
      return Status::InvalidArgument("kafka property message.max.bytes: '" + std::string(*value) +
                                     "' is not a number of bytes");
    }
  }
  const size_t least = pipeline::ProcessorOptions::kMinOutputBytes + kRecordOverheadBytes;
  if (limit < least) {
    return Status::InvalidArgument("kafka property message.max.bytes: " + std::to_string(limit) +
                                   " leaves no room for the engine's outputs (at least " +
                                   std::to_string(least) + ")");
  }
  return limit - kRecordOverheadBytes;
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
  return topics;
}

std::string ChangelogTopicName(const config::EngineConfig& config, std::string_view input_topic) {
  std::string name = config.kafka.group_id + "-" + std::string(input_topic) + "-changelog";
  for (char& c : name) {
    const bool legal = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                       c == '.' || c == '_' || c == '-';
    if (!legal) c = '_';
  }
  return name;
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
