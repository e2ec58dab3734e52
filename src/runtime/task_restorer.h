// Restores partition tasks when partitions are assigned: each task's state
// comes back from its checkpoint in the store, and consumption resumes from
// the checkpointed offset (the store's offset wins over the group's). A
// partition the group had processed but the store knows nothing of (a lost
// or corrupt store moved away) is rebuilt by processing its input again from
// offset 0 (the input is the state's changelog: processing is deterministic),
// provided retention has not removed its start; progress is logged and the
// engine is not ready until every rebuild is done.
//
// Thread-safety: the engine thread (inside the consumer's rebalance callback
// and the run loop).
#pragma once

#include <span>

#include "crmstream/common/status.h"
#include "crmstream/kafka/consumer.h"
#include "runtime/delivery_mode.h"
#include "runtime/engine_core.h"

namespace crmstream::runtime {

class TaskRestorer {
 public:
  TaskRestorer(EngineCore* core, DeliveryMode* delivery);

  // Creates and restores a task for each assigned partition and sets the
  // offset each starts from. On error the assignment must not be processed.
  Status Restore(std::span<kafka::TopicPartitionOffset> partitions);
  // Some task is being rebuilt from its input.
  bool rebuilding() const { return rebuilding_; }
  // After processing: ends finished rebuilds, logs progress every 2 s, and
  // marks the state restored once no task is rebuilding.
  void TrackRebuilds();

 private:
  PartitionTask& NewTask(const kafka::TopicPartition& tp);

  EngineCore* core_;
  DeliveryMode* delivery_;
  bool rebuilding_ = false;
  Clock::time_point last_report_{};
};

}  // namespace crmstream::runtime
