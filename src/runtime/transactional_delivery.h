// exactly_once with Kafka transactions (exactly-once v2, KIP-447): one
// transactional producer per engine instance; its transaction holds the
// outputs and the input offsets (sent in the consumer group's name) of every
// task, and commits every commit interval. read_committed consumers see each
// output once, and the group's committed offsets are those of the outputs
// they see.
//
// The local store is not part of the transaction, so processing is made a
// function of the input (blocked_delivery.h) and the store written after the
// commit:
//   - a task's outputs are held back (BufferedOutputs) until a block close
//     "stages" the task: its state at that offset is added to the staged
//     checkpoint and its held outputs enter the open transaction;
//   - a live block (one that ended within the last commit interval of the
//     wall clock) is staged at its close and the transaction commits after
//     that batch, so an output is visible about one commit interval after
//     its event; a replay's blocks are staged and committed every commit
//     interval;
//   - at the commit, SendOffsetsToTransaction(each task's staged offset),
//     CommitTransaction, then the staged checkpoint is written;
//   - a crash between the two leaves the store behind the group's offsets:
//     the restart catches up from the store's offset to the group's,
//     regenerating the same state and dropping the outputs (they are in the
//     committed transaction); a crash before the commit aborts the
//     transaction (the restart's InitTransactions fences it) and both
//     restart from the store's offsets.
// An abortable error aborts the transaction and rewinds every task to the
// store (the run loop restores them); a fatal one (fenced by a newer
// instance) stops the engine.
//
// Thread-safety: the engine thread only.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "runtime/blocked_delivery.h"

namespace crmstream::runtime {

// Output records held in one reusable buffer (no allocation once warm).
class BufferedOutputs final : public pipeline::OutputSink {
 public:
  void Emit(OutputKind kind, std::string_view key, std::string_view value) override;
  // Hands every held record to `sink` in order, then forgets them.
  void Release(pipeline::OutputSink* sink);
  void Clear();
  size_t records() const { return entries_.size(); }
  size_t bytes() const { return data_.size(); }

 private:
  struct Entry {
    OutputKind kind;
    uint32_t key_size;
    uint32_t value_size;
    int64_t origin_ms;
  };
  std::vector<Entry> entries_;
  std::string data_;
};

class TransactionalDelivery final : public BlockedDelivery {
 public:
  TransactionalDelivery(EngineCore* core, Checkpointer* checkpointer);

  pipeline::OutputSink* PrepareTask(PartitionTask* task) override;
  Status AfterRestore(std::span<const RestoredTask> tasks) override;
  // Commits what is staged before the partitions go (KIP-447): the next
  // owner starts from the committed offsets.
  void OnRevoked(std::span<const kafka::TopicPartition> revoked) override;
  // Another instance owns them now: the open transaction is aborted (its
  // offsets would be refused anyway) and the remaining tasks rewound.
  void OnLost(std::span<const kafka::TopicPartition> lost) override;
  uint64_t Suppressed(const PartitionTask& task) const override;
  bool CatchesUpToGroupOffsets() const override { return true; }
  bool TakeRewind() override;

 private:
  struct TaskState;
  static TaskState& StateOf(PartitionTask* task);
  static const TaskState& StateOf(const PartitionTask& task);

  Status OnBlockClosed(PartitionTask* task, bool checkpoint) override;
  Status CheckpointSettled(std::span<PartitionTask* const> tasks) override;
  Status TickMode(Clock::time_point now) override;
  Status FinishDrain() override;
  bool Durable(const PartitionTask& task) const override {
    return task.next_offset == task.checkpointed_offset;
  }

  // The task's held outputs enter the transaction (or are dropped while it
  // catches up) and its state is staged.
  Status StageTask(PartitionTask* task);
  Status ReleaseAndStage(PartitionTask* task);
  Status EnsureTransaction();
  // Sends the staged offsets, commits, writes the staged checkpoint.
  Status Commit();
  // An abortable error: abort, drop what is staged, and ask for a rewind
  // (until it is done, nothing is staged).
  Status Abort(const Status& cause);

  bool in_transaction_ = false;
  // Live blocks staged since the last commit: the newest one's slot, and
  // when the first was staged. The commit waits until the other tasks'
  // blocks of that slot have closed too, or kGatherLiveCloses has passed.
  bool commit_due_ = false;
  int64_t due_slot_ = 0;
  Clock::time_point due_since_;
  bool LiveClosesGathered() const;
  bool rewind_ = false;
  Status revoke_error_;
  Clock::time_point last_commit_ = Clock::now();
};

}  // namespace crmstream::runtime
