// Restores partition tasks when partitions are assigned: each task's state
// comes back from its checkpoint in the store, and consumption resumes from
// the checkpointed offset (the store's offset wins over the group's). When
// the group committed more than the store holds (another instance ran the
// partition, or the store is lost), the changelog topic (changelog.h)
// brings the store up to the group's offset first: its tail over the local
// checkpoint, or all of it. Without a changelog (state.changelog off, or
// nothing in it yet), a partition the group had processed but the store
// knows nothing of is rebuilt by processing its input again from offset 0
// (processing is deterministic), provided retention has not removed its
// start. A checkpoint whose offset retention passed stops with an error.
// Progress is logged and the engine is not ready until every restore and
// rebuild is done.
//
// Thread-safety: the engine thread (inside the consumer's rebalance callback
// and the run loop).
#pragma once

#include <span>
#include <string>

#include "crmstream/common/status.h"
#include "crmstream/kafka/consumer.h"
#include "runtime/changelog.h"
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
  // The store's state of `tp` brought up to `up_to_offset` from its changelog.
  Result<ChangelogRestoreResult> RestoreChangelog(state::PartitionKey key,
                                                  const kafka::TopicPartition& tp,
                                                  const state::PartitionState& ps,
                                                  int64_t up_to_offset, const std::string& what);
  // Retention has not removed records a rebuild or a checkpoint still needs;
  // also records where the input of each partition of `first_from` (never
  // checkpointed) begins, in its task.
  Status CheckInputsStillHold(std::span<const kafka::TopicPartitionOffset> rebuild_from,
                              std::span<const kafka::TopicPartitionOffset> resume_from,
                              std::span<const kafka::TopicPartitionOffset> first_from);

  EngineCore* core_;
  DeliveryMode* delivery_;
  bool rebuilding_ = false;
  Clock::time_point last_report_{};
};

}  // namespace crmstream::runtime
