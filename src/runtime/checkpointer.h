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
// In steps (at_least_once), so that consumption goes on during a checkpoint:
// Begin takes the tasks' state as it is now (their later changes are the
// next checkpoint's) and closes the producer's delivery generation; Advance,
// every loop iteration and never waiting, sends the changelog records once
// those outputs are acknowledged, hands the batch to the writer thread once
// these are, and moves the tasks' offsets once it is written. One begun
// checkpoint at a time; a step that fails is retried with the same batch
// (its changes are no longer in the tasks' dirty sets), never skipped.
//
// The tasks' state is encoded on the worker threads when there are several
// (checkpoint_encoder.h), the engine thread appending what they encoded.
//
// Thread-safety: the engine thread only, with the workers parked; the
// writer thread only runs StateStore::Commit on a batch the engine thread
// no longer touches.
#pragma once

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "crmstream/common/status.h"
#include "crmstream/state/state_store.h"
#include "runtime/checkpoint_encoder.h"
#include "runtime/delivery_mode.h"
#include "runtime/engine_core.h"

namespace crmstream::runtime {

class Checkpointer {
 public:
  explicit Checkpointer(EngineCore* core);

  // The engine's worker threads encode the tasks of a checkpoint (Begin,
  // Checkpoint); set before the run, `pool` outlives the checkpointer's use.
  void UseWorkers(WorkerPool* pool);

  // Run() begins: `stop` cancels a checkpoint waiting on the store.
  void Start(const std::atomic<bool>* stop);
  // After the stop: checkpoints end by `deadline` instead.
  void BeginDrain(Clock::time_point deadline);
  // How long a flush may wait now: kFlushTimeout, or what is left of the
  // drain.
  std::chrono::milliseconds FlushTimeout() const;

  ~Checkpointer();

  // All at once: flushes, writes, commits before returning. Not while a
  // begun checkpoint is pending (Finish it first).
  Status Checkpoint(std::span<PartitionTask* const> tasks, DeliveryMode* delivery);

  // In steps (see above). Begin: nothing pending. Advance: a failed step's
  // Status (it is retried a commit interval later), every failed step
  // counted once in the probe. A write the stop cancelled is no failure:
  // the drain writes it again, as it does once more one begun before the
  // drain that failed. Finish: waits, serving the producer, until the
  // pending checkpoint is written or a step fails; waiting for
  // acknowledgements ends at the flush timeout (the checkpoint stays
  // pending), a store write within its own bounds, and before the drain a
  // write the stop cancelled ends it (its kAborted Status).
  Status Begin(std::span<PartitionTask* const> tasks, DeliveryMode* delivery);
  Status Advance();
  Status Finish();
  bool pending() const { return phase_ != Phase::kIdle; }
  // Tasks taken away while their checkpoint is pending: their state is still
  // written to the local store (a restore catches up from there), but
  // nothing more of them goes to the changelog, another member's now.
  void Forget(std::span<const kafka::TopicPartition> partitions);

  // Outputs could not be delivered: stops the run loop.
  const Status& fatal() const { return fatal_; }

  // Commits to the group (asynchronously) every task's checkpointed offset
  // the group does not hold yet: the group's offsets follow the store, for
  // lag tools (the store's win on restart, so a lost commit costs nothing).
  void CommitGroupOffsets();

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
  // A synced metadata write that begins a checkpoint (a block close logged
  // before its outputs exist): it waits on the store as a checkpoint does,
  // so it is one under way to the probe (a stalled store is reported) and a
  // stop cancels it (Aborted) while running.
  Status WriteMetadataFirst(std::string_view name, std::string_view value);
  void DropStaged();
  bool has_staged() const { return !staged_.empty(); }
  // The offset a task's staged state covers; -1 when not staged.
  int64_t StagedOffset(const PartitionTask& task) const;

 private:
  struct StagedTask {
    PartitionTask* task;
    int64_t offset;
  };
  enum class Phase { kIdle, kOutputs, kChangelog, kWriting };
  // Adds the task's state, its offset and its delivery entries to `batch`.
  Status AddState(PartitionTask* task, DeliveryMode* delivery, state::CheckpointBatch* batch);
  // The same for each of `tasks`, in their order (encoded on the workers),
  // each added to `encoded` with its offset; stops at the first that fails.
  Status AddStates(std::span<PartitionTask* const> tasks, DeliveryMode* delivery,
                   state::CheckpointBatch* batch, std::vector<StagedTask>* encoded);
  // The changelog records of `tasks`' changes among `batch`'s entries from
  // `from_entry` on (none without a changelog).
  Status AppendChangelog(const state::CheckpointBatch& batch, size_t from_entry,
                         std::span<const StagedTask> tasks);
  // The tasks' offsets after their checkpoint is written, and the group's.
  void Checkpointed(std::span<const StagedTask> tasks);
  // A step of the begun checkpoint failed: counted, retried later.
  Status StepFailed(Status st);
  // The writer thread: writes the pending batch when asked.
  void SubmitWrite();
  void WriterLoop();
  // The producer's delivery failures since the last check (fatal) and its
  // fatal error.
  Status CheckDeliveries();
  // Writes `batch` within the bounds (a stop cancels, the drain has a
  // deadline), between the crash points, and records it in the probe.
  Status Write(state::CheckpointBatch* batch, Clock::time_point started, Status st);
  // The store write itself, between the crash points (either thread).
  Status CommitToStore(state::CheckpointBatch* batch, const std::atomic<bool>* cancel,
                       Clock::time_point deadline);

  EngineCore* core_;
  std::optional<state::CheckpointBatch> batch_;
  std::optional<state::CheckpointBatch> staged_batch_;
  std::vector<StagedTask> staged_;
  std::string scratch_;
  std::optional<CheckpointEncoder> encoder_;
  std::vector<CheckpointPart> parts_;
  uint64_t delivery_failures_seen_ = 0;
  Status fatal_;
  const std::atomic<bool>* stop_ = nullptr;
  bool draining_ = false;
  Clock::time_point drain_deadline_ = Clock::time_point::max();

  // The begun checkpoint (in steps): its tasks and offsets, in batch_.
  Phase phase_ = Phase::kIdle;
  std::vector<StagedTask> pending_;
  uint64_t awaited_generation_ = 0;
  Clock::time_point begun_at_{};
  Clock::time_point retry_at_{};
  bool reported_slow_ = false;
  uint64_t pending_bytes_ = 0;

  std::thread writer_;
  std::mutex writer_mutex_;
  std::condition_variable writer_wake_;
  // Guarded by writer_mutex_.
  bool write_requested_ = false;
  bool write_done_ = false;
  bool writer_exit_ = false;
  Status write_status_;
  const std::atomic<bool>* write_cancel_ = nullptr;
  Clock::time_point write_deadline_ = Clock::time_point::max();
  // The last write the stop cancelled, until the next is submitted: the
  // engine thread's.
  Status cancelled_;
};

}  // namespace crmstream::runtime
