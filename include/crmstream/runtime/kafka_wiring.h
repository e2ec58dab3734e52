// Turns the engine configuration into what the kafka module needs: client
// properties, the list of topics to create, and an OutputSink that writes
// to the output topics. Thread-safety: functions are pure; KafkaSink is used
// by one processing thread.
#pragma once

#include <array>
#include <span>
#include <string>
#include <vector>

#include "crmstream/config/engine_config.h"
#include "crmstream/kafka/client_config.h"
#include "crmstream/kafka/producer.h"
#include "crmstream/kafka/topic_admin.h"
#include "crmstream/pipeline/output_sink.h"

namespace crmstream::runtime {

using pipeline::OutputSink;
using schema::kOutputKindCount;
using schema::OutputKind;

// The user's librdkafka properties plus the project's defaults where the
// user set nothing (murmur2 partitioning, as Java clients, so a customer's
// records land in the same partition whoever produces them).
kafka::ClientConfig MakeClientConfig(const config::KafkaSettings& settings);

// The largest output record (key + value) the engine may produce: the
// producer's message.max.bytes (librdkafka's default 1000000) less room for
// the record's framing and headers (the exactly-once stamp). InvalidArgument
// naming the property when it leaves too little room.
Result<size_t> MaxOutputBytes(const kafka::ClientConfig& client);

// Every input and output topic of the configuration, and with
// state.changelog the changelog topic of each input (compacted).
std::vector<kafka::TopicSpec> AllTopics(const config::EngineConfig& config);

// The changelog topic of an input topic: "<group id>-<input>-changelog",
// tied to the application (the consumer group), so two applications never
// read each other's state. Characters Kafka refuses in a topic name become '_'.
std::string ChangelogTopicName(const config::EngineConfig& config, std::string_view input_topic);

// Produces each output record to its topic, keyed by customer where the
// record has a key. A produce failure is kept (first error) for the engine
// to act on after the batch: Emit cannot fail the event it is called for.
class KafkaSink final : public OutputSink {
 public:
  KafkaSink(kafka::Producer* producer, std::array<std::string, kOutputKindCount> topics)
      : producer_(producer), topics_(std::move(topics)) {}
  void Emit(OutputKind kind, std::string_view key, std::string_view value) override;
  // To a chosen partition, with headers (exactly-once mode's stamped outputs).
  void EmitTo(OutputKind kind, int32_t partition, std::string_view key, std::string_view value,
              std::span<const kafka::MessageHeader> headers);
  const Status& first_error() const { return first_error_; }
  const std::array<std::string, kOutputKindCount>& topics() const { return topics_; }

 private:
  kafka::Producer* producer_;
  std::array<std::string, kOutputKindCount> topics_;
  Status first_error_;
};

}  // namespace crmstream::runtime
