// Exactly-once outputs over an idempotent producer, without broker-side
// transactions (which librdkafka's mock cluster does not implement: README
// "Delivery semantics", state/README.md).
//
// The design: a partition task's processing is a deterministic function of
// its checkpointed state and its input records (event time and broker
// timestamps only, flush points fixed by the input: StreamEngine), so after
// a crash, re-processing from the checkpoint regenerates exactly the
// outputs the crashed instance produced after that checkpoint, in the same
// order. Every output carries a stamp (header "crm.src": input topic,
// partition and the task's output sequence number), goes to a partition the
// engine chooses itself (Kafka's murmur2 of the key), and the idempotent
// producer keeps each output partition's records in order. On restart the
// engine reads each output partition from where the task's checkpoint says
// its later outputs can start, collects the sequence numbers already there,
// and the task's StampingSink drops exactly those when it regenerates them
// (exactly those, not everything below the highest: a producer that gave up
// on a batch may have delivered later ones).
//
// Thread-safety: StampingSink and OutputPositions belong to one partition
// task (the engine thread); the free functions are reentrant.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "crmstream/common/status.h"
#include "crmstream/kafka/client_config.h"
#include "crmstream/kafka/producer.h"
#include "crmstream/pipeline/output_sink.h"
#include "crmstream/runtime/kafka_wiring.h"

namespace crmstream::runtime {

inline constexpr std::string_view kOutputStampHeader = "crm.src";
inline constexpr uint8_t kOutputStampVersion = 1;

// [u8 version 1][i32 BE input partition][u64 BE sequence]
// [u8 application length][application][input topic]
// The application (the engine's consumer group) keeps two pipelines that
// read the same input into the same output topics apart.
struct OutputStamp {
  std::string_view application;
  std::string_view input_topic;
  int32_t input_partition = 0;
  uint64_t sequence = 0;
};
void EncodeOutputStamp(const OutputStamp& stamp, std::string* out);
// nullopt for bytes that are not a stamp of a known version.
std::optional<OutputStamp> DecodeOutputStamp(std::string_view bytes);

// Partition counts of the output topics, by OutputKind.
using OutputPartitionCounts = std::array<int32_t, kOutputKindCount>;

// The partition of an output record: its key's (Kafka's murmur2, as every
// other client); keyless records (dead letters) follow their input partition.
int32_t OutputPartition(std::string_view key, int32_t input_partition, int32_t partition_count);

// Per output partition, an offset at or below which no output of a task's
// later processing can land: where a restart starts looking. -1: unknown
// (look from the beginning).
class OutputPositions {
 public:
  OutputPositions() = default;
  explicit OutputPositions(const OutputPartitionCounts& counts);
  int64_t get(OutputKind kind, int32_t partition) const;
  // Keeps the larger of the current and the new position.
  void Advance(OutputKind kind, int32_t partition, int64_t offset);
  bool empty() const { return positions_.empty(); }
  // Every position advanced to the producer's last acknowledged offset + 1
  // (after a flush: nothing produced later can land below it).
  void AdvanceToDelivered(const kafka::Producer& producer,
                          const std::array<std::string, kOutputKindCount>& topics);

  std::string Encode() const;
  // Corruption for bytes that do not decode or do not match `counts`.
  static Result<OutputPositions> Decode(std::string_view bytes,
                                        const OutputPartitionCounts& counts);
  // InvalidArgument naming the first output topic whose partition count
  // is not the one the positions were written for, with the repair; OK when
  // they match (Corruption for bytes that do not decode).
  static Status CheckPartitionCounts(std::string_view bytes, const OutputPartitionCounts& counts,
                                     const std::array<std::string, kOutputKindCount>& topics);

 private:
  size_t Index(OutputKind kind, int32_t partition) const;
  OutputPartitionCounts counts_{};
  std::array<size_t, kOutputKindCount> first_{};  // index of (kind, 0)
  std::vector<int64_t> positions_;
};

// The sink of one partition task in exactly-once mode: stamps, partitions
// and forwards each output, dropping those a predecessor already delivered.
// No allocation per record beyond librdkafka's header list.
class StampingSink final : public OutputSink {
 public:
  StampingSink(KafkaSink* out, std::string application, std::string input_topic,
               int32_t input_partition, const OutputPartitionCounts& counts);
  void Emit(OutputKind kind, std::string_view key, std::string_view value) override;

  // The sequence number of the next output (checkpointed with the task).
  uint64_t next_sequence() const { return next_sequence_; }
  void set_next_sequence(uint64_t sequence) { next_sequence_ = sequence; }
  // The task's output with this sequence number is already on its topic:
  // it is not produced again.
  void MarkDelivered(uint64_t sequence);
  // Outputs dropped as already delivered, since construction.
  uint64_t suppressed() const { return suppressed_; }
  // Some output a predecessor delivered has not been regenerated yet: the
  // task is still replaying what is already on the topics.
  bool dropping() const { return suppressing_; }
  const std::string& application() const { return application_; }
  const std::string& input_topic() const { return input_topic_; }
  int32_t input_partition() const { return input_partition_; }

 private:
  KafkaSink* out_;
  std::string application_;
  std::string input_topic_;
  int32_t input_partition_;
  OutputPartitionCounts counts_;
  // Sequences a predecessor delivered, not regenerated yet (a restart's
  // replay only; empty afterwards).
  std::unordered_set<uint64_t> delivered_;
  uint64_t delivered_max_ = 0;
  bool suppressing_ = false;
  uint64_t next_sequence_ = 0;
  uint64_t suppressed_ = 0;
  std::string stamp_;
};

// The positions a task's checkpoint records: advanced to the producer's
// acknowledged ends (after a flush), unless `sink` is still replaying what a
// predecessor delivered. Those outputs lie below everything produced since,
// so the positions then stay where the restore's scan started: a second
// crash during the replay finds them again instead of producing them twice.
void AdvanceForCheckpoint(const StampingSink& sink, const kafka::Producer& producer,
                          const std::array<std::string, kOutputKindCount>& topics,
                          OutputPositions* positions);

// One restored task for FindDeliveredOutputs: its sink and where to look from.
struct StampedRestore {
  StampingSink* sink = nullptr;
  const OutputPositions* from = nullptr;  // the task's checkpointed positions
};

// Reads every output partition from the smallest position of `tasks` to its
// end and calls MarkDelivered on each task's sink for the outputs of its
// input partition with sequence >= its next_sequence(). `ends` (if given)
// receives each partition's end: every later output lands at or after it.
Status FindDeliveredOutputs(const kafka::ClientConfig& config,
                            const std::array<std::string, kOutputKindCount>& topics,
                            const OutputPartitionCounts& counts,
                            std::span<const StampedRestore> tasks, OutputPositions* ends);

}  // namespace crmstream::runtime
