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
#include "crmstream/pipeline/memory_plan.h"
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

// What the output and changelog topics' own max.message.bytes allow, where
// it is below the producer's bound (MaxOutputBytes); each 0 where the
// producer's bound is the tighter or the topic's is not known.
struct TopicBounds {
  // Per output kind, key + value bytes: ProcessorOptions::max_output_bytes_by_kind.
  std::array<size_t, kOutputKindCount> outputs = {};
  // Key + value bytes of one changelog record (the smallest over the
  // changelog topics).
  size_t changelog = 0;
  // The smallest topic max.message.bytes learnt: the broker checks a whole
  // record batch against it, so the producer's batch.size must not exceed it.
  size_t smallest_topic_limit = 0;
};

// The largest record (key + value) the engine may send to `topic`, whose
// max.message.bytes is `topic_limit` (text, as the broker reports it), with
// the producer's own bound `producer_bound` (MaxOutputBytes): the smaller,
// less the same room for framing and headers. InvalidArgument naming the
// topic when that leaves less than `least` bytes.
Result<size_t> TopicRecordBound(size_t producer_bound, const std::string& topic,
                                std::string_view topic_limit, size_t least);

// Reads each output topic's and (with state.changelog) each changelog
// topic's max.message.bytes from the cluster (DescribeConfigs). A topic that
// does not exist yet is left to the producer's bound. When the cluster cannot
// be asked (unreachable, not authorised) that is logged and the producer's
// bound holds alone. `admin` is null for librdkafka's embedded cluster: it
// has no DescribeConfigs and no topic configs.
Result<TopicBounds> LearnTopicBounds(const config::EngineConfig& config, size_t producer_bound,
                                     kafka::TopicAdmin* admin);

// The producer's client configuration: `client` with batch.size lowered to
// the smallest topic max.message.bytes when that is below it, so that no
// batch of small records exceeds what one of the topics accepts (the broker
// refuses the whole batch, and librdkafka does not split it).
kafka::ClientConfig ProducerClientConfig(const kafka::ClientConfig& client,
                                         const TopicBounds& bounds);

// The memory plan's consumer settings, as defaults of `client` (a user's
// kafka.properties win): the prefetch queue's bytes
// (queued.max.messages.kbytes), its message count (queued.min.messages: the
// bytes bound events of 100 bytes or more, where librdkafka's default count
// of 100,000 stopped the fetches of a larger queue first and the engine
// idled up to a second, every second; README, "Worker threads") and each
// partition's fetch (fetch.message.max.bytes).
void SetConsumerMemory(const pipeline::MemoryPlan& plan, kafka::ClientConfig* client);

// The output producer's linger.ms: the configured producer_linger_ms, else
// 0 at least once on a Kafka cluster (an output leaves at once: at 5,000
// events/s on one node, p50 2.6 ms against 7 ms at 5, for 0-7% more CPU at
// full rate) and 5 otherwise: the embedded cluster's fetch walks each
// partition's log from its oldest message set, so smaller sets make every
// fetch of every client slower, and under transactions an output is seen at
// its commit whatever the linger (README, "Latency").
int OutputLingerMs(const config::EngineConfig& config, bool embedded_cluster,
                   config::Guarantee guarantee);

// Every input and output topic of the configuration, and with
// state.changelog the changelog topic of each input (compacted), with
// models.sync_interval_ms > 0 the model-sync topic.
std::vector<kafka::TopicSpec> AllTopics(const config::EngineConfig& config);

// The changelog topic of an input topic: "<group id>-<input>-changelog",
// tied to the application (the consumer group), so two applications never
// read each other's state. Characters Kafka refuses in a topic name become '_'.
std::string ChangelogTopicName(const config::EngineConfig& config, std::string_view input_topic);
// `<group_id>.model-sync` (pipeline/model_sync.h): compacted, one partition;
// in AllTopics only when models.sync_interval_ms > 0.
std::string ModelSyncTopicName(const config::EngineConfig& config);

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
  // After the transaction that refused the produce was aborted.
  void ClearError() { first_error_ = Status::OK(); }
  const std::array<std::string, kOutputKindCount>& topics() const { return topics_; }

 private:
  kafka::Producer* producer_;
  std::array<std::string, kOutputKindCount> topics_;
  Status first_error_;
};

}  // namespace crmstream::runtime
