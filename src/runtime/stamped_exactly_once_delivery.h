// exactly_once without broker transactions (the embedded cluster has none):
// processing is made a function of the input alone, and outputs are stamped
// and de-duplicated at restart (stamped_outputs.h).
//
// Refresh points ("blocks": scores, alerts, customer-scores records) are
// fixed by the records' broker timestamps (one block per commit interval of
// CreateTime, and at most kMaxBlockRecords offsets); "now" is the record's
// timestamp; a block closed for wall-clock reasons (an idle, caught-up
// partition; shutdown) is first logged in the store, so a replay closes it
// at the same offset. A task is checkpointed after a block closes. On
// restart it re-processes from its checkpoint, regenerating the same outputs
// with the same sequence numbers, and drops those its predecessor already
// delivered.
//
// Thread-safety: the engine thread only.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <string>

#include "runtime/checkpointer.h"
#include "runtime/delivery_mode.h"

namespace crmstream::runtime {

class StampedExactlyOnceDelivery final : public DeliveryMode {
 public:
  // Largest block, in input offsets (a block also ends when its records'
  // broker timestamps enter the next commit interval).
  static constexpr int64_t kMaxBlockRecords = 65536;

  StampedExactlyOnceDelivery(EngineCore* core, Checkpointer* checkpointer);

  pipeline::OutputSink* PrepareTask(PartitionTask* task) override;
  Status BeforeRestore() override;
  Status AfterRestore(std::span<const RestoredTask> tasks) override;
  Status Process(PartitionTask* task, const kafka::MessageView& m, int64_t wall_ms) override;
  Status AfterBatch(bool had_records) override;
  Status Tick(Clock::time_point now, bool had_records) override;
  // An open block is not closed here (that would be a close the input did
  // not decide): the next owner re-processes it from the checkpoint and
  // drops what was already delivered.
  void OnRevoked(std::span<const kafka::TopicPartition>) override {}
  Status Drain() override;
  bool Settled(const PartitionTask& task) const override;
  uint64_t OutputSequence(const PartitionTask& task) const override;
  void AddToCheckpoint(PartitionTask* task, state::CheckpointBatch* batch) override;
  uint64_t Suppressed(const PartitionTask& task) const override;

 private:
  struct TaskState;
  static TaskState& StateOf(PartitionTask* task);
  static const TaskState& StateOf(const PartitionTask& task);

  // Closes the task's block (refresh, customer-scores); checkpoints it when
  // the commit interval has passed or `checkpoint`.
  Status CloseBlock(PartitionTask* task, bool checkpoint);
  // A close decided by the wall clock, logged first.
  Status CloseBlockLogged(PartitionTask* task);
  Status CloseIdleBlocks(bool all);

  EngineCore* core_;
  Checkpointer* checkpointer_;
  Clock::time_point last_idle_check_ = Clock::now();
};

}  // namespace crmstream::runtime
