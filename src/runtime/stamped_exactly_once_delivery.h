// exactly_once without broker transactions (the embedded cluster has none):
// deterministic blocks (blocked_delivery.h), outputs stamped with their
// source and sequence number, and de-duplicated at restart
// (stamped_outputs.h). A task is checkpointed after a block closes once a
// commit interval has passed; on restart it re-processes from its
// checkpoint, regenerating the same outputs with the same sequence numbers,
// and drops those its predecessor already delivered.
//
// Thread-safety: the engine thread only.
#pragma once

#include <memory>

#include "runtime/blocked_delivery.h"

namespace crmstream::runtime {

class StampedExactlyOnceDelivery final : public BlockedDelivery {
 public:
  StampedExactlyOnceDelivery(EngineCore* core, Checkpointer* checkpointer);

  pipeline::OutputSink* PrepareTask(PartitionTask* task) override;
  Status BeforeRestore() override;
  Status AfterRestore(std::span<const RestoredTask> tasks) override;
  // An open block is not closed here (that would be a close the input did
  // not decide): the next owner re-processes it from the checkpoint and
  // drops what was already delivered.
  void OnRevoked(std::span<const kafka::TopicPartition>) override {}
  uint64_t OutputSequence(const PartitionTask& task) const override;
  void AddToCheckpoint(PartitionTask* task, state::CheckpointBatch* batch) override;
  uint64_t Suppressed(const PartitionTask& task) const override;

 private:
  struct TaskState;
  static TaskState& StateOf(PartitionTask* task);
  static const TaskState& StateOf(const PartitionTask& task);

  Status OnBlockClosed(PartitionTask* task, bool checkpoint) override;
  Status CheckpointSettled(std::span<PartitionTask* const> tasks) override;
  bool Durable(const PartitionTask& task) const override {
    return task.next_offset == task.checkpointed_offset;
  }
};

}  // namespace crmstream::runtime
