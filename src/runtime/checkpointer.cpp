#include "runtime/checkpointer.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <vector>

#include "crmstream/common/crash_point.h"
#include "crmstream/pipeline/partition_checkpoint.h"

namespace crmstream::runtime {

namespace {

// A record the broker refused as too large although it was within the
// bounds read at start-up: the topic's limit was lowered since (or the
// broker's default, for a topic created since). Names the topic and what
// the engine holds to; a restart reads the limits again.
std::string TooLargeExplanation(const EngineCore& core, const kafka::Producer& producer) {
  const std::string& topic = producer.last_failed_topic();
  std::string bound = "the producer's message.max.bytes";
  for (int k = 0; k < kOutputKindCount; ++k) {
    const auto kind = static_cast<OutputKind>(k);
    if (core.config.outputs.of(kind).name == topic) {
      bound = std::to_string(core.processor_options.OutputBound(kind)) + " bytes a record";
    }
  }
  for (const auto& [input, changelog] : core.changelog_topics) {
    if (changelog == topic && core.changelog) {
      bound = std::to_string(core.changelog->chunk_bytes()) + " bytes a chunk";
    }
  }
  return "topic " + topic + " refused a record of " + std::to_string(producer.last_failed_bytes()) +
         " bytes, or its batch, as too large (the broker checks each batch against the topic's "
         "max.message.bytes), while the engine holds its records to that topic to " +
         bound +
         " and its batches to the producer's batch.size, from the limits it read at start-up. "
         "Was the topic's max.message.bytes lowered while the engine ran? A restart reads it "
         "again and sends larger outputs to the dead-letter topic";
}

}  // namespace

Checkpointer::Checkpointer(EngineCore* core)
    : core_(core), batch_(core->store->NewBatch()), staged_batch_(core->store->NewBatch()) {}

Status Checkpointer::AddTask(PartitionTask* task, DeliveryMode* delivery,
                             state::CheckpointBatch* batch) {
  const size_t first_entry = batch->entry_count();
  CRM_RETURN_NOT_OK(pipeline::AddToCheckpoint(*task->processor, delivery->OutputSequence(*task),
                                              task->key, batch, &scratch_));
  batch->SetInputOffset(task->key, task->next_offset);
  delivery->AddToCheckpoint(task, batch);
  if (core_->changelog) {
    // The same changes to the changelog, stamped with the offset they cover.
    const auto topic = core_->changelog_topics.find(task->tp.topic);
    CRM_RETURN_NOT_OK(core_->changelog->Append(*batch, first_entry, task->key, topic->second,
                                               task->tp.partition, task->next_offset));
    core_->probe.stats().changelog_records.store(core_->changelog->records(),
                                                 std::memory_order_relaxed);
  }
  return Status::OK();
}

Status Checkpointer::CheckDeliveries() {
  kafka::Producer& producer = *core_->producer;
  Status st = core_->sink->first_error();
  if (st.ok() && producer.failed_count() != delivery_failures_seen_) {
    // An output the brokers never took: the checkpoint must not claim its
    // record. Fatal for this run; a restart re-processes from the last
    // checkpoint (exactly_once: dropping what was delivered).
    const Status error = producer.last_delivery_error();
    const bool too_large =
        producer.last_delivery_error_code() == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE;
    st = Status::Unavailable(std::to_string(producer.failed_count() - delivery_failures_seen_) +
                             " output record(s) could not be delivered: " + error.ToString() +
                             (too_large ? "; " + TooLargeExplanation(*core_, producer) : ""));
    delivery_failures_seen_ = producer.failed_count();
    fatal_ = st;
  }
  if (st.ok()) st = producer.FatalError();
  return st;
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
  if (st.ok()) st = CheckDeliveries();
  state::CheckpointBatch& batch = *batch_;
  batch.Clear();
  for (PartitionTask* task : tasks) {
    if (!st.ok()) break;
    st = AddTask(task, delivery, &batch);
  }
  if (st.ok() && core_->changelog) {
    // The changelog holds the checkpoint before the store and the group
    // do: whoever restores from it never finds a committed offset whose
    // state is missing.
    st = producer.Flush(FlushTimeout()).WithContext("flushing the changelog");
    if (st.ok()) st = CheckDeliveries();
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
