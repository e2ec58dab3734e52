// Writes partition tasks' checkpoints: a task's state (its unsaved
// customers, partition-wide models, schedules, dedup window), its next input
// offset and its delivery mode's entries go to the store in one atomic
// write, always after every output of the checkpointed records is
// acknowledged by the brokers; then the offsets are committed to the group
// (for monitoring and tools: the store's offsets win on restart).
//
// Bounded: while the engine runs, a stop cancels a checkpoint that waits on
// the store; after the stop (BeginDrain) the final one ends by the drain
// deadline. An output the brokers never acknowledged is fatal (fatal()): the
// run loop stops rather than checkpoint past it.
//
// Thread-safety: the engine thread only.
#pragma once

#include <atomic>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "crmstream/common/status.h"
#include "crmstream/state/state_store.h"
#include "runtime/delivery_mode.h"
#include "runtime/engine_core.h"

namespace crmstream::runtime {

class Checkpointer {
 public:
  explicit Checkpointer(EngineCore* core);

  // Run() begins: `stop` cancels a checkpoint waiting on the store.
  void Start(const std::atomic<bool>* stop);
  // After the stop: checkpoints end by `deadline` instead.
  void BeginDrain(Clock::time_point deadline);
  // How long a flush may wait now: kFlushTimeout, or what is left of the
  // drain.
  std::chrono::milliseconds FlushTimeout() const;

  Status Checkpoint(std::span<PartitionTask* const> tasks, DeliveryMode* delivery);
  // Outputs could not be delivered: stops the run loop.
  const Status& fatal() const { return fatal_; }

  // Transactions (transactional_delivery.h) write a checkpoint in two steps
  // around the commit of the transaction that holds its outputs and input
  // offsets. Stage adds the task's state as it is now to the staged batch
  // (a task staged twice: the later entries win); WriteStaged writes the
  // batch once the transaction committed; DropStaged forgets it (the
  // transaction aborted: the engine rewinds to the store). Outputs and
  // offsets are the transaction's: nothing is flushed nor committed to the
  // group here.
  Status Stage(PartitionTask* task, DeliveryMode* delivery);
  Status WriteStaged();
  void DropStaged();
  bool has_staged() const { return !staged_.empty(); }
  // The offset a task's staged state covers; -1 when not staged.
  int64_t StagedOffset(const PartitionTask& task) const;

 private:
  struct StagedTask {
    PartitionTask* task;
    int64_t offset;
  };
  // Adds the task's state, its offset and its delivery entries to `batch`.
  Status AddTask(PartitionTask* task, DeliveryMode* delivery, state::CheckpointBatch* batch);
  // Writes `batch` within the bounds (a stop cancels, the drain has a
  // deadline), between the crash points, and records it in the probe.
  Status Write(state::CheckpointBatch* batch, Clock::time_point started, Status st);

  EngineCore* core_;
  std::optional<state::CheckpointBatch> batch_;
  std::optional<state::CheckpointBatch> staged_batch_;
  std::vector<StagedTask> staged_;
  std::string scratch_;
  uint64_t delivery_failures_seen_ = 0;
  Status fatal_;
  const std::atomic<bool>* stop_ = nullptr;
  bool draining_ = false;
  Clock::time_point drain_deadline_ = Clock::time_point::max();
};

}  // namespace crmstream::runtime
