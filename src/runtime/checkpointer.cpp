#include "runtime/checkpointer.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <vector>

#include "crmstream/common/crash_point.h"
#include "crmstream/pipeline/partition_checkpoint.h"

namespace crmstream::runtime {

Checkpointer::Checkpointer(EngineCore* core)
    : core_(core), batch_(core->store->NewBatch()), staged_batch_(core->store->NewBatch()) {}

Status Checkpointer::AddTask(PartitionTask* task, DeliveryMode* delivery,
                             state::CheckpointBatch* batch) {
  CRM_RETURN_NOT_OK(pipeline::AddToCheckpoint(*task->processor, delivery->OutputSequence(*task),
                                              task->key, batch, &scratch_));
  batch->SetInputOffset(task->key, task->next_offset);
  delivery->AddToCheckpoint(task, batch);
  return Status::OK();
}

Status Checkpointer::Write(state::CheckpointBatch* batch, Clock::time_point started, Status st) {
  const uint64_t bytes = batch->byte_size();
  // While running, a stop cancels a checkpoint that waits on the store;
  // after the stop, the final one has until the drain deadline.
  CRMSTREAM_CRASH_POINT(crash_point::kBeforeWrite);
  if (st.ok()) st = core_->store->Commit(batch, draining_ ? nullptr : stop_, drain_deadline_);
  CRMSTREAM_CRASH_POINT(crash_point::kAfterWrite);
  core_->probe.RecordCheckpoint(std::chrono::duration<double>(Clock::now() - started).count(),
                                bytes, st.ok());
  return st;
}

Status Checkpointer::Stage(PartitionTask* task, DeliveryMode* delivery) {
  CRM_RETURN_NOT_OK(AddTask(task, delivery, &*staged_batch_));
  // Later changes are the next checkpoint's.
  pipeline::MarkCheckpointed(task->processor.get());
  for (StagedTask& s : staged_) {
    if (s.task == task) {
      s.offset = task->next_offset;
      return Status::OK();
    }
  }
  staged_.push_back({task, task->next_offset});
  return Status::OK();
}

int64_t Checkpointer::StagedOffset(const PartitionTask& task) const {
  for (const StagedTask& s : staged_) {
    if (s.task == &task) return s.offset;
  }
  return -1;
}

Status Checkpointer::WriteStaged() {
  if (staged_.empty()) return Status::OK();
  const auto started = Clock::now();
  core_->probe.CheckpointStarted();
  CRM_RETURN_NOT_OK(Write(&*staged_batch_, started, Status::OK()));
  for (const StagedTask& s : staged_) {
    s.task->checkpointed_offset = s.offset;
    s.task->committed_offset = s.offset;
    s.task->last_checkpoint = Clock::now();
  }
  DropStaged();
  core_->probe.stats().commits.fetch_add(1, std::memory_order_relaxed);
  return Status::OK();
}

void Checkpointer::DropStaged() {
  staged_batch_->Clear();
  staged_.clear();
}

void Checkpointer::Start(const std::atomic<bool>* stop) {
  stop_ = stop;
  draining_ = false;
  drain_deadline_ = Clock::time_point::max();
}

void Checkpointer::BeginDrain(Clock::time_point deadline) {
  draining_ = true;
  drain_deadline_ = deadline;
}

std::chrono::milliseconds Checkpointer::FlushTimeout() const {
  const auto full = std::chrono::duration_cast<std::chrono::milliseconds>(kFlushTimeout);
  if (!draining_) return full;
  return std::clamp(
      std::chrono::duration_cast<std::chrono::milliseconds>(drain_deadline_ - Clock::now()),
      std::chrono::milliseconds(0), full);
}

Status Checkpointer::Checkpoint(std::span<PartitionTask* const> tasks, DeliveryMode* delivery) {
  const auto started = Clock::now();
  EngineProbe& probe = core_->probe;
  probe.CheckpointStarted();
  // Outputs first: a checkpoint covers a record only once everything it
  // produced is acknowledged.
  kafka::Producer& producer = *core_->producer;
  CRMSTREAM_CRASH_POINT(crash_point::kBeforeFlush);
  Status st = producer.Flush(FlushTimeout()).WithContext("flushing outputs");
  CRMSTREAM_CRASH_POINT(crash_point::kAfterFlush);
  if (st.ok()) st = core_->sink->first_error();
  if (st.ok() && producer.failed_count() != delivery_failures_seen_) {
    // An output the brokers never took: the checkpoint must not claim its
    // record. Fatal for this run; a restart re-processes from the last
    // checkpoint (exactly_once: dropping what was delivered).
    st = Status::Unavailable(
        std::to_string(producer.failed_count() - delivery_failures_seen_) +
        " output record(s) could not be delivered: " + producer.last_delivery_error().ToString());
    delivery_failures_seen_ = producer.failed_count();
    fatal_ = st;
  }
  if (st.ok()) st = producer.FatalError();
  state::CheckpointBatch& batch = *batch_;
  batch.Clear();
  for (PartitionTask* task : tasks) {
    if (!st.ok()) break;
    st = AddTask(task, delivery, &batch);
  }
  st = Write(&batch, started, st);
  if (!st.ok()) return st;
  for (PartitionTask* task : tasks) {
    pipeline::MarkCheckpointed(task->processor.get());
    task->checkpointed_offset = task->next_offset;
    task->last_checkpoint = Clock::now();
  }
  std::vector<kafka::TopicPartitionOffset> offsets;
  for (auto& [tp, task] : core_->tasks) {
    if (task.checkpointed_offset >= 0 && task.checkpointed_offset != task.committed_offset) {
      offsets.push_back({tp.topic, tp.partition, task.checkpointed_offset});
      task.committed_offset = task.checkpointed_offset;
    }
  }
  // The group's offsets follow the store (for lag monitoring and tools);
  // the store's win on restart, so a lost commit costs nothing.
  if (!offsets.empty()) {
    Status committed = core_->consumer->CommitOffsets(offsets, /*async=*/true);
    if (!committed.ok()) spdlog::warn("committing offsets: {}", committed.ToString());
  }
  probe.stats().commits.fetch_add(1, std::memory_order_relaxed);
  return Status::OK();
}

}  // namespace crmstream::runtime
