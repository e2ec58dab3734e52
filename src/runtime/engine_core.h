// The engine's shared core: its Kafka clients, its state store and its
// partition tasks, used by the run loop (stream_engine.cpp), the delivery
// modes, the checkpointer and the task restorer. Private to the runtime.
//
// Thread-safety: the engine thread only (the probe is the thread-safe part);
// during a batch each worker thread uses its own tasks, and nothing else.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "crmstream/config/engine_config.h"
#include "crmstream/kafka/client_config.h"
#include "crmstream/kafka/consumer.h"
#include "crmstream/kafka/producer.h"
#include "crmstream/pipeline/event_processor.h"
#include "crmstream/pipeline/memory_plan.h"
#include "crmstream/runtime/engine_probe.h"
#include "crmstream/runtime/kafka_wiring.h"
#include "crmstream/runtime/stamped_outputs.h"
#include "crmstream/state/state_store.h"
#include "runtime/changelog.h"
#include "runtime/checkpoint_budget.h"

namespace crmstream::runtime {

using Clock = std::chrono::steady_clock;

class DeliveryMode;

// How long a flush may wait for the brokers before the commit is skipped
// (and tried again next interval).
inline constexpr auto kFlushTimeout = std::chrono::seconds(30);

// What a delivery mode keeps per task (e.g. exactly-once's open block).
class TaskDeliveryState {
 public:
  virtual ~TaskDeliveryState() = default;
};

// One assigned input partition: its processor, its place in the store and
// how far it got.
struct PartitionTask {
  kafka::TopicPartition tp;
  // The worker thread processing the task in the batch in hand
  // (worker_pool.h), chosen per batch; 0 with one.
  int worker = 0;
  // Records of the batch in hand (worker threads: the engine thread's count
  // while it spreads the batch).
  size_t batch_records = 0;
  // Declared before the processor, whose sink it may own: it outlives it.
  std::unique_ptr<TaskDeliveryState> delivery;
  std::unique_ptr<pipeline::EventProcessor> processor;
  state::PartitionKey key;
  int64_t next_offset = -1;          // offset after the last processed record
  int64_t committed_offset = -1;     // last next-offset committed to the group
  int64_t checkpointed_offset = -1;  // next-offset of the last checkpoint
  Clock::time_point last_checkpoint{};
  // Rebuilding lost state from the input's beginning up to this offset
  // (the group's committed one); -1: not rebuilding.
  int64_t rebuild_until = -1;
  // This assignment's state came (partly) from the changelog: another
  // instance may have run the partition since this store last saw it.
  bool restored_from_changelog = false;
  // Nobody ever checkpointed the partition: no local state, no committed
  // group offset and nothing in the changelog (which every checkpoint
  // writes). Outputs of it on the topics come from an owner that died or
  // left before its first checkpoint, not from a lost store.
  bool never_checkpointed = false;
  // Where the input partition begins (its low watermark), read for a task
  // never checkpointed; -1 when not read.
  int64_t input_start_offset = -1;
  // Model sync: the number of the merge whose global models the task was
  // handed (ModelSyncReader); 0: none, it scores with its own.
  uint64_t global_model_merge = 0;
};

using TaskMap = std::map<kafka::TopicPartition, PartitionTask>;

// The tasks' counters summed: the probe's totals are those of the tasks
// dropped so far plus the live ones', so a revoked partition's counts stay.
struct TaskTotals {
  uint64_t received = 0, accepted = 0, duplicates = 0, rejected = 0, suppressed = 0;
  std::array<uint64_t, schema::kOutputKindCount> outputs{};
  std::array<uint64_t, ingest::kEventTypeCount> by_type{};
  std::array<uint64_t, 16> by_reason{};
  std::array<uint64_t, alerts::kSeverityCount> alerts{};
  uint64_t customer_loads = 0, customer_prefetches = 0;
  uint64_t customers_over_capacity = 0;  // FeatureStore::over_capacity()
  uint64_t customers_shed = 0;           // FeatureStore::shed()

  // `suppressed`: the task's outputs its delivery mode did not produce again.
  void Add(const pipeline::EventProcessor& p, uint64_t suppressed);
};

struct EngineCore {
  config::EngineConfig config;
  pipeline::ProcessorOptions processor_options;
  pipeline::MemoryPlan memory_plan;  // how state.memory_cap_mb is spent
  // How many changed customers a checkpoint may take, from the plan's part.
  CheckpointBudget checkpoint_budget;
  kafka::ClientConfig client;
  OutputPartitionCounts output_partitions{};
  std::unique_ptr<state::StateStore> store;
  std::unique_ptr<kafka::Producer> producer;
  std::unique_ptr<KafkaSink> sink;
  std::unique_ptr<kafka::Consumer> consumer;
  // state.changelog: the writer, and each input topic's changelog topic.
  std::unique_ptr<ChangelogWriter> changelog;
  std::map<std::string, std::string, std::less<>> changelog_topics;
  TaskMap tasks;
  TaskTotals dropped_tasks;  // counters of the tasks erased so far
  EngineProbe probe;
  // Run(): stop once every partition is processed to its end.
  bool until_caught_up = false;
  // Threads processing the tasks (worker_pool.h): 1, the engine thread
  // alone, or several, each the only one touching its tasks during a batch.
  int workers = 1;

  // Records of the task's partition not processed yet; -1 while unknown.
  int64_t TaskLag(const PartitionTask& task) const;
  // Erases the task of `tp`, if any, keeping its counters in dropped_tasks.
  void EraseTask(const kafka::TopicPartition& tp, const DeliveryMode& delivery);
};

}  // namespace crmstream::runtime
