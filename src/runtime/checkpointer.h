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

 private:
  EngineCore* core_;
  std::optional<state::CheckpointBatch> batch_;
  std::string scratch_;
  uint64_t delivery_failures_seen_ = 0;
  Status fatal_;
  const std::atomic<bool>* stop_ = nullptr;
  bool draining_ = false;
  Clock::time_point drain_deadline_ = Clock::time_point::max();
};

}  // namespace crmstream::runtime
