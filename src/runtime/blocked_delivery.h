// The exactly-once modes' shared part: processing made a function of the
// input alone, so that re-processing after a crash regenerates exactly what
// the crashed instance did.
//
// Refresh points ("blocks": scores, alerts, customer-scores records) are
// fixed by the records' broker timestamps (one block per commit interval of
// CreateTime, and at most kMaxBlockRecords offsets); "now" is the record's
// timestamp. A block closed for a wall-clock reason (an idle, caught-up
// partition, also at the drain) is first logged in the store (synced), so
// that a replay closes it at the same offset. The drain leaves the open
// blocks of partitions with input left open: their records are processed
// again by whoever resumes the partition, as after a crash, so a stop in a
// group publishes nothing a run without it would not (the next owner, on
// another instance, never reads this store's logged closes). What a mode
// does at a block close (OnBlockClosed) and with idle tasks
// (CheckpointSettled) is its own.
//
// Thread-safety: the engine thread only.
#pragma once

#include <cstdint>
#include <deque>
#include <span>
#include <string>
#include <vector>

#include "runtime/checkpointer.h"
#include "runtime/delivery_mode.h"

namespace crmstream::runtime {

class BlockedDelivery : public DeliveryMode {
 public:
  // Largest block, in input offsets (a block also ends when its records'
  // broker timestamps enter the next commit interval).
  static constexpr int64_t kMaxBlockRecords = 65536;

  Status Process(PartitionTask* task, const kafka::MessageView& m, int64_t wall_ms) override;
  int64_t RecordClock(const kafka::MessageView& m, int64_t wall_ms) const override;
  Status AfterBatch(bool had_records) override;
  Status Tick(Clock::time_point now, bool had_records) override;
  Status Drain() override;
  bool Settled(const PartitionTask& task) const override;
  void AddToCheckpoint(PartitionTask* task, state::CheckpointBatch* batch) override;

 protected:
  // A task's block bookkeeping; a mode's task state derives from it.
  struct BlockState : TaskDeliveryState {
    bool block_open = false;
    int64_t block_slot = 0;             // the open block's slot of broker time
    int64_t last_record_ms = 0;         // steady clock, when the task's last record came
    std::deque<int64_t> logged_closes;  // replay: close the block at these next-offsets
    // Close the block when the task reaches this next-offset (-1: none):
    // the end of a replay that must end exactly where its original did.
    int64_t close_at = -1;
  };
  static BlockState& BlocksOf(PartitionTask* task);
  static const BlockState& BlocksOf(const PartitionTask& task);

  BlockedDelivery(EngineCore* core, Checkpointer* checkpointer);

  // Reads the task's logged closes from the store (after a restore).
  Status RestoreLoggedCloses(PartitionTask* task);
  // The block just closed (its outputs are flushed into the task's sink):
  // the mode's part. `checkpoint`: a close the input did not decide (logged,
  // or the drain), or a replay's end: the task's state must be made durable
  // now.
  virtual Status OnBlockClosed(PartitionTask* task, bool checkpoint) = 0;
  // Tasks that closed their last block without making it durable and have
  // been quiet since (`all`: the drain): the mode's part.
  virtual Status CheckpointSettled(std::span<PartitionTask* const> tasks) = 0;
  // Every loop iteration, after the idle closes.
  virtual Status TickMode(Clock::time_point) { return Status::OK(); }
  // After the drain's closes.
  virtual Status FinishDrain() { return Status::OK(); }
  // The task's state is durable up to its next offset.
  virtual bool Durable(const PartitionTask& task) const = 0;

  EngineCore* core_;
  Checkpointer* checkpointer_;

 private:
  Status CloseBlock(PartitionTask* task, bool checkpoint);
  // A close decided by the wall clock, logged first.
  Status CloseBlockLogged(PartitionTask* task);
  Status CloseIdleBlocks(bool all);

  Clock::time_point last_idle_check_ = Clock::now();
};

}  // namespace crmstream::runtime
