#include "crmstream/runtime/kafka_wiring.h"

namespace crmstream::runtime {

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
  Status st =
      producer_->Produce(topics_[static_cast<int>(kind)], kafka::kPartitionUnassigned, key, value);
  if (!st.ok() && first_error_.ok()) first_error_ = std::move(st);
}

void KafkaSink::EmitTo(OutputKind kind, int32_t partition, std::string_view key,
                       std::string_view value, std::span<const kafka::MessageHeader> headers) {
  Status st = producer_->Produce(topics_[static_cast<int>(kind)], partition, key, value, headers);
  if (!st.ok() && first_error_.ok()) first_error_ = std::move(st);
}

}  // namespace crmstream::runtime
