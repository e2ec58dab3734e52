// How the engine delivers its outputs and moves its checkpoints: the part
// of the run loop that differs between delivery guarantees (README
// "Delivery semantics"). The run loop calls the same hooks whatever the
// mode; a new mode (e.g. Kafka transactions) is a new implementation, not a
// change to the loop.
//
//   at_least_once (at_least_once_delivery.h): every commit interval all
//     tasks flush their outputs and are checkpointed together.
//   exactly_once_stamped (stamped_exactly_once_delivery.h): deterministic
//     blocks, stamped outputs, suppression of what a predecessor delivered
//     (clusters without transactions, e.g. the embedded one).
//   exactly_once_transactions (transactional_delivery.h): deterministic
//     blocks, outputs and input offsets in one Kafka transaction per commit
//     interval, the store written after the commit.
//
// Thread-safety: the engine thread only, but for the worker threads' calls
// of modes that support them (SupportsWorkers).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <span>

#include "crmstream/common/status.h"
#include "crmstream/config/engine_config.h"
#include "crmstream/kafka/consumer.h"
#include "crmstream/pipeline/output_sink.h"
#include "crmstream/state/state_store.h"
#include "runtime/engine_core.h"

namespace crmstream::runtime {

class Checkpointer;

// A task just restored from the store (or set to be rebuilt from its input).
struct RestoredTask {
  PartitionTask* task = nullptr;
  uint64_t output_sequence = 0;  // the task's checkpointed output sequence
};

class DeliveryMode {
 public:
  virtual ~DeliveryMode() = default;

  // A new task: sets up its delivery state and returns the sink its
  // processor writes to.
  virtual pipeline::OutputSink* PrepareTask(PartitionTask* task) = 0;
  // Before an assignment's tasks are restored.
  virtual Status BeforeRestore() { return Status::OK(); }
  // After they are restored from the store (or set to rebuild).
  virtual Status AfterRestore(std::span<const RestoredTask> tasks) = 0;

  // One record of a task. `wall_ms` is the wall clock of the batch.
  virtual Status Process(PartitionTask* task, const kafka::MessageView& m, int64_t wall_ms) = 0;
  // The clock Process gives the record's processing ("now"): the engine
  // looks the record up ahead with it (EventProcessor::LookAhead).
  virtual int64_t RecordClock(const kafka::MessageView& m, int64_t wall_ms) const = 0;
  // After each consumed batch.
  virtual Status AfterBatch(bool had_records) = 0;

  // Worker threads (worker_pool.h): a mode that supports them lets Process
  // and FinishTaskBatch of different tasks run at once on the workers, and
  // its tasks' sinks may be written from them (PrepareTask knows
  // EngineCore::workers). With several workers the engine calls
  // FinishTaskBatch on each task's worker after its share of a batch, then
  // AfterBatch on the engine thread, which then leaves the tasks' own part
  // to FinishTaskBatch.
  virtual bool SupportsWorkers() const { return false; }
  virtual void FinishTaskBatch(PartitionTask*) {}
  // Every loop iteration: whatever is due (commits, idle closes). A failed
  // commit the mode retries is not an error of Tick.
  virtual Status Tick(Clock::time_point now, bool had_records) = 0;
  // Partitions about to be taken away (their tasks still exist).
  virtual void OnRevoked(std::span<const kafka::TopicPartition> revoked) = 0;
  // Partitions already taken away (the group moved on without this
  // instance: a session that expired): nothing of them may be committed.
  virtual void OnLost(std::span<const kafka::TopicPartition> lost) { OnRevoked(lost); }
  // After the stop: delivers and checkpoints everything processed.
  virtual Status Drain() = 0;
  // Nothing of the task waits for a close or a checkpoint.
  virtual bool Settled(const PartitionTask& task) const = 0;
  // Whether the loop takes no input now (it goes on serving the producer and
  // Tick): the mode waits for a checkpoint that frees memory. Asked before
  // each consume.
  virtual bool HoldInput(Clock::time_point) { return false; }

  // Checkpoint hooks (Checkpointer): the task's output sequence, and the
  // mode's own entries of the task, written atomically with its state.
  virtual uint64_t OutputSequence(const PartitionTask&) const { return 0; }
  virtual void AddToCheckpoint(PartitionTask*, state::CheckpointBatch*) {}
  // Outputs of the task not produced because they were delivered before.
  virtual uint64_t Suppressed(const PartitionTask&) const { return 0; }
  // The group's committed offsets are the mode's truth (transactions): a
  // store behind them catches up (TaskRestorer sets rebuild_until).
  virtual bool CatchesUpToGroupOffsets() const { return false; }
  // The mode dropped uncommitted work: every task must be restored from the
  // store again and the consumer moved back (asked once).
  virtual bool TakeRewind() { return false; }
};

std::unique_ptr<DeliveryMode> MakeDeliveryMode(config::Guarantee guarantee, EngineCore* core,
                                               Checkpointer* checkpointer);

}  // namespace crmstream::runtime
