#include "runtime/checkpoint_encoder.h"

#include "crmstream/pipeline/partition_checkpoint.h"

namespace crmstream::runtime {

CheckpointEncoder::CheckpointEncoder(const state::StateStore* store, WorkerPool* pool,
                                     const CheckpointBudget* budget)
    : store_(store),
      pool_(pool != nullptr && pool->workers() > 1 ? pool : nullptr),
      budget_(budget),
      scratch_(static_cast<size_t>(pool_ != nullptr ? pool_->workers() : 1)) {}

Status CheckpointEncoder::Encode(
    std::span<const CheckpointPart> parts, state::CheckpointBatch* batch,
    const std::function<void(size_t, state::CheckpointBatch*)>& after_part) {
  if (pool_ == nullptr || parts.size() < 2) {
    for (size_t i = 0; i < parts.size(); ++i) {
      const CheckpointPart& p = parts[i];
      CRM_RETURN_NOT_OK(pipeline::AddToCheckpoint(*p.processor, p.next_output_sequence, p.key,
                                                  batch, &scratch_[0]));
      after_part(i, batch);
    }
    return Status::OK();
  }
  while (slots_.size() < parts.size()) slots_.push_back({store_->NewBatch(), Status::OK()});
  parts_ = parts;
  // The customers stay in memory until `batch` is committed, not a slot.
  ticket_ = batch->ticket();
  next_part_.store(0, std::memory_order_relaxed);
  pool_->RunBatch(this);
  parts_ = {};
  ticket_ = {};
  // The checkpoint's bytes are known now: each copied once. The offset and
  // delivery entries after each part are a few dozen bytes.
  constexpr size_t kAfterPartBytes = 64;
  size_t bytes = batch->byte_size();
  for (size_t i = 0; i < parts.size(); ++i) bytes += slots_[i].batch.byte_size() + kAfterPartBytes;
  batch->Reserve(bytes);
  // Each task's batch keeps its buffer up to its share of the budget.
  const size_t keep = budget_ == nullptr ? SIZE_MAX : budget_->batch_bytes() / parts.size();
  Status result;
  for (size_t i = 0; i < parts.size(); ++i) {
    Slot& slot = slots_[i];
    if (result.ok()) result = slot.status;
    if (result.ok()) {
      batch->Append(slot.batch);
      after_part(i, batch);
    }
    slot.batch.Clear(keep);
    slot.status = Status::OK();
  }
  return result;
}

void CheckpointEncoder::RunWorker(int worker) {
  std::string& scratch = scratch_[static_cast<size_t>(worker)];
  // Whole tasks, each to the next worker free: a large task does not hold
  // up the others' share.
  for (size_t i = next_part_.fetch_add(1, std::memory_order_relaxed); i < parts_.size();
       i = next_part_.fetch_add(1, std::memory_order_relaxed)) {
    const CheckpointPart& p = parts_[i];
    Slot& slot = slots_[i];
    slot.status = pipeline::AddToCheckpoint(*p.processor, p.next_output_sequence, p.key,
                                            &slot.batch, &scratch, ticket_);
  }
}

}  // namespace crmstream::runtime
