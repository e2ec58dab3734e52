// Encodes partition tasks' state into one checkpoint batch on the worker
// threads: each worker encodes whole tasks (pipeline::AddToCheckpoint) into
// a batch of the task's slot, in parallel; the calling thread then appends
// the slots in the tasks' order (CheckpointBatch::Append), so the batch,
// and the changelog records mirrored from it, hold the bytes one thread
// encoding task after task would have added. The slots and the workers'
// scratch buffers are kept from checkpoint to checkpoint.
//
// Thread-safety: Encode from the thread that owns the pool, while the
// workers are parked (between two batches): the processors are read by one
// worker each.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "crmstream/common/status.h"
#include "crmstream/pipeline/event_processor.h"
#include "crmstream/state/state_store.h"
#include "runtime/checkpoint_budget.h"
#include "runtime/worker_pool.h"

namespace crmstream::runtime {

// One task's part of a checkpoint.
struct CheckpointPart {
  const pipeline::EventProcessor* processor = nullptr;
  uint64_t next_output_sequence = 0;
  state::PartitionKey key;
};

class CheckpointEncoder final : BatchJob {
 public:
  // `pool` nullptr or of one worker: Encode encodes on the calling thread.
  // The tasks' batches keep their buffers from checkpoint to checkpoint,
  // within `budget`'s bytes together (nullptr: no bound).
  CheckpointEncoder(const state::StateStore* store, WorkerPool* pool,
                    const CheckpointBudget* budget = nullptr);

  // Adds each part's state to `batch` in the order of `parts`, each followed
  // by what `after_part(i, batch)` adds (on the calling thread). Stops at the
  // first part that fails (its entries left out; the parts before it in the
  // batch) and returns its Status.
  Status Encode(std::span<const CheckpointPart> parts, state::CheckpointBatch* batch,
                const std::function<void(size_t, state::CheckpointBatch*)>& after_part);

 private:
  struct Slot {
    state::CheckpointBatch batch;
    Status status;
  };
  void RunWorker(int worker) override;

  const state::StateStore* store_;
  WorkerPool* pool_;
  const CheckpointBudget* budget_;
  std::vector<Slot> slots_;
  std::vector<std::string> scratch_;  // one a worker
  // The checkpoint in hand, for the workers.
  std::span<const CheckpointPart> parts_;
  state::CheckpointBatch::CommitTicket ticket_;
  std::atomic<size_t> next_part_{0};
};

}  // namespace crmstream::runtime
