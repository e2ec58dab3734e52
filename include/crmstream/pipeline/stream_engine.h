// The engine: a consumer-group member over the input topics, one
// EventProcessor (a partition task) per assigned partition, outputs through
// an idempotent producer.
//
// Delivery: at-least-once. Every commit interval (and before partitions are
// revoked, and at shutdown) each processor flushes its coalesced outputs,
// the producer is flushed, so every output of the processed records is
// acknowledged by the brokers, and only then are the next offsets
// committed. A crash between the two re-processes at most
// one interval of records.
//
// Threading: Run() executes on the calling thread, which owns the consumer,
// the producer and every partition task; nothing on the hot path is locked.
// stats() may be read from any thread.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "crmstream/config/engine_config.h"
#include "crmstream/kafka/consumer.h"
#include "crmstream/kafka/producer.h"
#include "crmstream/pipeline/event_processor.h"
#include "crmstream/pipeline/kafka_wiring.h"

namespace crmstream::pipeline {

// Totals published by the engine thread after every batch.
struct EngineStats {
  std::atomic<uint64_t> received{0};
  std::atomic<uint64_t> accepted{0};
  std::atomic<uint64_t> duplicates{0};
  std::atomic<uint64_t> rejected{0};
  std::array<std::atomic<uint64_t>, kOutputKindCount> outputs{};
  std::atomic<uint64_t> delivered{0};  // output records acknowledged by the brokers
  std::atomic<uint64_t> delivery_failures{0};
  std::atomic<uint64_t> commits{0};
  std::atomic<int64_t> lag{-1};    // sum over assigned partitions; -1 unknown
  std::atomic<int> partitions{0};  // assigned partitions
  std::atomic<uint64_t> rebalances{0};
};

class StreamEngine final : public kafka::RebalanceListener {
 public:
  // Connects to the cluster in `config.kafka` (bootstrap.servers must be
  // set: the caller starts the embedded cluster if there is none).
  static Result<std::unique_ptr<StreamEngine>> Create(const config::EngineConfig& config,
                                                      const config::PipelineSpec& pipeline);
  ~StreamEngine() override;

  // Consumes and processes until `stop` becomes true, then drains: flushes
  // the producer, commits offsets and leaves the group. Returns the error
  // that stopped it, if any (e.g. a fatal producer error).
  Status Run(const std::atomic<bool>& stop);

  const EngineStats& stats() const { return stats_; }

  // Engine thread only (or after Run returned): the processor of a partition.
  const EventProcessor* processor(const std::string& topic, int32_t partition) const;

 private:
  struct PartitionTask {
    std::unique_ptr<EventProcessor> processor;
    int64_t next_offset = -1;       // offset after the last processed record
    int64_t committed_offset = -1;  // last committed next-offset
    // Counters of this task already published into stats_.
    uint64_t published_received = 0, published_accepted = 0, published_duplicates = 0,
             published_rejected = 0;
    std::array<uint64_t, kOutputKindCount> published_outputs{};
  };

  StreamEngine(config::EngineConfig config, ProcessorOptions processor_options);
  void OnAssigned(std::span<kafka::TopicPartitionOffset> partitions) override;
  void OnRevoked(std::span<const kafka::TopicPartition> partitions) override;
  PartitionTask& TaskFor(std::string_view topic, int32_t partition);
  // Flushes outputs, then commits the next offsets of every task (or of
  // `only`, when given).
  Status CommitProcessed(const std::vector<kafka::TopicPartition>* only = nullptr);
  void PublishStats();
  void RefreshLag();

  config::EngineConfig config_;
  ProcessorOptions processor_options_;
  std::unique_ptr<kafka::Producer> producer_;
  std::unique_ptr<KafkaSink> sink_;
  std::unique_ptr<kafka::Consumer> consumer_;
  std::map<kafka::TopicPartition, PartitionTask> tasks_;
  PartitionTask* last_task_ = nullptr;  // most batches come from one partition
  kafka::TopicPartition last_key_;
  EngineStats stats_;
  Status rebalance_error_;
};

}  // namespace crmstream::pipeline
