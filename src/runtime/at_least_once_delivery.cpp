#include "runtime/at_least_once_delivery.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <memory>
#include <vector>

#include "crmstream/common/clock.h"

namespace crmstream::runtime {
namespace {

// Run until caught up: how often an idle loop checkpoints what it processed.
constexpr auto kIdleCommit = std::chrono::milliseconds(100);

}  // namespace

void OutputBuffer::Emit(OutputKind kind, std::string_view key, std::string_view value) {
  if (direct_ != nullptr) {
    direct_->set_origin_ms(origin_ms_);
    direct_->Emit(kind, key, value);
    return;
  }
  entries_.push_back(
      {kind, origin_ms_, static_cast<uint32_t>(key.size()), static_cast<uint32_t>(value.size())});
  bytes_.append(key);
  bytes_.append(value);
}

void OutputBuffer::ForwardTo(pipeline::OutputSink* to) {
  size_t at = 0;
  for (const Entry& e : entries_) {
    const std::string_view key(bytes_.data() + at, e.key_bytes);
    const std::string_view value(bytes_.data() + at + e.key_bytes, e.value_bytes);
    at += e.key_bytes + e.value_bytes;
    to->set_origin_ms(e.origin_ms);
    to->Emit(e.kind, key, value);
  }
  entries_.clear();
  bytes_.clear();
}

AtLeastOnceDelivery::AtLeastOnceDelivery(EngineCore* core, Checkpointer* checkpointer)
    : core_(core), checkpointer_(checkpointer) {}

pipeline::OutputSink* AtLeastOnceDelivery::PrepareTask(PartitionTask* task) {
  if (core_->workers <= 1) return core_->sink.get();
  auto buffer = std::make_unique<OutputBuffer>();
  OutputBuffer* sink = buffer.get();
  task->delivery = std::move(buffer);
  return sink;
}

void AtLeastOnceDelivery::Forward(PartitionTask* task) {
  if (auto* buffer = static_cast<OutputBuffer*>(task->delivery.get())) {
    buffer->ForwardTo(core_->sink.get());
  }
}

Status AtLeastOnceDelivery::Process(PartitionTask* task, const kafka::MessageView& m,
                                    int64_t wall_ms) {
  // The event-to-output sample of the next flush: its oldest record.
  // A relaxed read per record; the first after a flush sets it.
  if (oldest_unflushed_ms_.load(std::memory_order_relaxed) < 0) {
    int64_t none = -1;
    oldest_unflushed_ms_.compare_exchange_strong(none, m.timestamp_ms(), std::memory_order_relaxed);
  }
  task->processor->Process(m.payload(), {m.topic(), m.partition(), m.offset()},
                           RecordClock(m, wall_ms));
  task->next_offset = m.offset() + 1;
  return Status::OK();
}

int64_t AtLeastOnceDelivery::RecordClock(const kafka::MessageView& m, int64_t wall_ms) const {
  // The record's clock is its broker timestamp, as in the exactly-once
  // modes: the future-skew check must not pass an event that is a day ahead
  // of when it was produced only because the engine processes it late. The
  // wall clock stands in for a record without one.
  return m.timestamp_ms() > 0 ? m.timestamp_ms() : wall_ms;
}

void AtLeastOnceDelivery::FinishTaskBatch(PartitionTask* task) {
  // Alerts, segment changes and customer anomalies of this batch's
  // customers now; their customer-scores records wait for the commit unless
  // the pipeline asks for them per batch.
  if (core_->processor_options.customer_scores_cadence ==
      pipeline::ProcessorOptions::ScoresCadence::kBatch) {
    task->processor->FlushOutputs();
  } else {
    task->processor->RefreshScores();
  }
}

Status AtLeastOnceDelivery::AfterBatch(bool had_records) {
  if (core_->workers > 1) {
    // The workers refreshed their tasks: their outputs leave now.
    for (auto& [tp, task] : core_->tasks) Forward(&task);
  } else if (had_records) {
    for (auto& [tp, task] : core_->tasks) FinishTaskBatch(&task);
  }
  return Status::OK();
}

Status AtLeastOnceDelivery::Tick(Clock::time_point now, bool had_records) {
  Status st = checkpointer_->Advance();
  if (!st.ok()) CheckpointFailed(now, st);
  const bool interval_passed =
      now - last_commit_ >= std::chrono::milliseconds(core_->config.commit_interval_ms);
  // Run until caught up: an idle loop checkpoints soon, so the end is seen.
  const bool idle_commit =
      core_->until_caught_up && !had_records && now - last_idle_commit_ >= kIdleCommit;
  // One checkpoint at a time: the next begins once the last is written.
  if (checkpointer_->pending()) return Status::OK();
  // A task's cache filling with customers only a checkpoint makes
  // evictable, or the changes since the last checkpoint reaching what one
  // may hold (the plan's part for checkpoints): one begins now, before the
  // cache grows past its capacity or the checkpoint past its part (after a
  // failed one, not before the interval: no retry per batch). Counted as
  // such even when the loop is also idle: the input held for the budget
  // leaves it idle.
  const bool memory =
      !interval_passed && now >= memory_retry_ &&
      (AnyTaskStore(&features::FeatureStore::UnderPressure) || CheckpointBudgetReached());
  if (!interval_passed && !idle_commit && !memory) return Status::OK();
  if (idle_commit) last_idle_commit_ = now;
  if (interval_passed || memory) last_commit_ = now;
  const std::vector<PartitionTask*> due = FlushDue();
  if (due.empty()) return Status::OK();
  st = checkpointer_->Begin(due, this);
  if (st.ok() && memory) {
    core_->probe.stats().memory_checkpoints.fetch_add(1, std::memory_order_relaxed);
  }
  if (!st.ok()) CheckpointFailed(now, st);
  return Status::OK();
}

void AtLeastOnceDelivery::CheckpointFailed(Clock::time_point now, const Status& st) {
  core_->probe.stats().commit_failures.fetch_add(1, std::memory_order_relaxed);
  spdlog::warn("checkpoint: {} (will retry)", st.ToString());
  memory_retry_ = now + std::chrono::milliseconds(core_->config.commit_interval_ms);
}

Status AtLeastOnceDelivery::AfterRestore(std::span<const RestoredTask>) {
  // A checkpoint covers everything before its offset (its outputs were
  // acknowledged first): where the group's offset is behind a restored one,
  // the group learns it now, not at the next record, which may never come
  // (the lag tools report would stay).
  checkpointer_->CommitGroupOffsets();
  return Status::OK();
}

Status AtLeastOnceDelivery::BeforeRestore() {
  // The store is read for the new tasks: the begun checkpoint is written
  // first (a partition revoked and assigned again must not see it later).
  return checkpointer_->Finish().WithContext("finishing the checkpoint before a restore");
}

void AtLeastOnceDelivery::OnRevoked(std::span<const kafka::TopicPartition> revoked) {
  Status st = checkpointer_->Finish();
  if (st.ok()) {
    const std::vector<PartitionTask*> due = FlushDue(revoked);
    if (!due.empty()) st = checkpointer_->Checkpoint(due, this);
  } else {
    checkpointer_->Forget(revoked);
  }
  if (!st.ok()) {
    // Another member will re-process from the last checkpoint: at-least-once.
    spdlog::warn("checkpoint before revocation failed: {}", st.ToString());
  }
}

Status AtLeastOnceDelivery::Drain() {
  CRM_RETURN_NOT_OK(checkpointer_->Finish());
  const std::vector<PartitionTask*> due = FlushDue();
  if (due.empty()) return Status::OK();
  return checkpointer_->Checkpoint(due, this);
}

bool AtLeastOnceDelivery::HoldInput(Clock::time_point now) {
  // A cache with nothing left to evict but customers the pending checkpoint
  // saves, or that changed since: more input would grow it past its
  // capacity, so none is taken until that checkpoint is written (its
  // outputs acknowledged first). Bounded by the flush timeout, as a
  // checkpoint's wait for acknowledgements is: past it (a broker down) the
  // input goes on, the cache growing (counted), rather than the group
  // seeing an instance that stopped polling.
  // So too when the changes since it reached what the next checkpoint may
  // hold: both would be in memory at once past the plan's part.
  if (!checkpointer_->pending() ||
      !(AnyTaskStore(&features::FeatureStore::Full) || CheckpointBudgetReached())) {
    held_since_ = Clock::time_point::max();
    return false;
  }
  if (held_since_ == Clock::time_point::max()) {
    held_since_ = now;
    core_->probe.stats().input_holds.fetch_add(1, std::memory_order_relaxed);
  }
  return now - held_since_ < checkpointer_->FlushTimeout();
}

bool AtLeastOnceDelivery::CheckpointBudgetReached() const {
  size_t changed = 0;
  for (const auto& [tp, task] : core_->tasks) {
    changed += task.processor->feature_store().changed_count();
  }
  return core_->checkpoint_budget.Reached(changed);
}

bool AtLeastOnceDelivery::AnyTaskStore(bool (features::FeatureStore::*test)() const) const {
  for (const auto& [tp, task] : core_->tasks) {
    if ((task.processor->feature_store().*test)()) return true;
  }
  return false;
}

std::vector<PartitionTask*> AtLeastOnceDelivery::FlushDue(
    std::span<const kafka::TopicPartition> only) {
  std::vector<PartitionTask*> due;
  for (auto& [tp, task] : core_->tasks) {
    if (!only.empty() && std::find(only.begin(), only.end(), tp) == only.end()) continue;
    if (auto* buffer = static_cast<OutputBuffer*>(task.delivery.get())) {
      // The engine thread's own flush: what the workers left first, then
      // straight to the sink (a commit's scores can be many).
      buffer->ForwardTo(core_->sink.get());
      buffer->set_direct(core_->sink.get());
      task.processor->FlushOutputs();
      buffer->set_direct(nullptr);
    } else {
      task.processor->FlushOutputs();
    }
    if (task.next_offset >= 0 && task.next_offset != task.checkpointed_offset) {
      due.push_back(&task);
    }
  }
  if (only.empty()) {
    // Every output of the records processed so far is now with the producer.
    const int64_t oldest = oldest_unflushed_ms_.exchange(-1, std::memory_order_relaxed);
    if (oldest > 0) {
      core_->probe.stats().event_to_output.Observe(
          static_cast<double>(std::max<int64_t>(0, WallMs() - oldest)) * 1e-3);
    }
  }
  return due;
}

}  // namespace crmstream::runtime
