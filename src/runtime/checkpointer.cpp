#include "runtime/checkpointer.h"

#include <pthread.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <string>
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

// A store write the stop cancelled (the store's only kAborted): not failed.
bool CancelledByStop(const Status& written) { return written.code() == StatusCode::kAborted; }

}  // namespace

Checkpointer::Checkpointer(EngineCore* core)
    : core_(core), batch_(core->store->NewBatch()), staged_batch_(core->store->NewBatch()) {
  encoder_.emplace(core->store.get(), nullptr, &core->checkpoint_budget);
}

void Checkpointer::UseWorkers(WorkerPool* pool) {
  encoder_.emplace(core_->store.get(), pool, &core_->checkpoint_budget);
}

Checkpointer::~Checkpointer() {
  if (!writer_.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(writer_mutex_);
    writer_exit_ = true;
  }
  writer_wake_.notify_one();
  writer_.join();
}

Status Checkpointer::AddState(PartitionTask* task, DeliveryMode* delivery,
                              state::CheckpointBatch* batch) {
  CRM_RETURN_NOT_OK(pipeline::AddToCheckpoint(*task->processor, delivery->OutputSequence(*task),
                                              task->key, batch, &scratch_));
  batch->SetInputOffset(task->key, task->next_offset);
  delivery->AddToCheckpoint(task, batch);
  return Status::OK();
}

Status Checkpointer::AddStates(std::span<PartitionTask* const> tasks, DeliveryMode* delivery,
                               state::CheckpointBatch* batch, std::vector<StagedTask>* encoded) {
  parts_.clear();
  for (PartitionTask* task : tasks) {
    parts_.push_back({task->processor.get(), delivery->OutputSequence(*task), task->key});
  }
  // As AddState task after task: the offset and delivery entries follow
  // each task's state.
  return encoder_->Encode(parts_, batch, [&](size_t i, state::CheckpointBatch* b) {
    PartitionTask* task = tasks[i];
    b->SetInputOffset(task->key, task->next_offset);
    delivery->AddToCheckpoint(task, b);
    encoded->push_back({task, task->next_offset});
  });
}

Status Checkpointer::AppendChangelog(const state::CheckpointBatch& batch, size_t from_entry,
                                     std::span<const StagedTask> tasks) {
  if (!core_->changelog) return Status::OK();
  // The same changes to the changelog, stamped with the offset they cover.
  std::vector<ChangelogWriter::Target> targets;
  targets.reserve(tasks.size());
  for (const StagedTask& t : tasks) {
    const auto topic = core_->changelog_topics.find(t.task->tp.topic);
    targets.push_back({t.task->key, topic->second, t.task->tp.partition, t.offset});
  }
  Status st = core_->changelog->Append(batch, from_entry, targets);
  core_->probe.stats().changelog_records.store(core_->changelog->records(),
                                               std::memory_order_relaxed);
  return st;
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
  if (st.ok()) {
    st = CommitToStore(batch, draining_ ? nullptr : stop_, drain_deadline_);
    if (CancelledByStop(st)) {
      core_->probe.CheckpointAbandoned();
      return st;
    }
  }
  core_->probe.RecordCheckpoint(std::chrono::duration<double>(Clock::now() - started).count(),
                                bytes, st.ok());
  return st;
}

Status Checkpointer::CommitToStore(state::CheckpointBatch* batch, const std::atomic<bool>* cancel,
                                   Clock::time_point deadline) {
  CRMSTREAM_CRASH_POINT(crash_point::kBeforeWrite);
  Status st = core_->store->Commit(batch, cancel, deadline);
  CRMSTREAM_CRASH_POINT(crash_point::kAfterWrite);
  return st;
}

Status Checkpointer::Stage(PartitionTask* task, DeliveryMode* delivery) {
  const size_t first_entry = staged_batch_->entry_count();
  CRM_RETURN_NOT_OK(AddState(task, delivery, &*staged_batch_));
  const StagedTask staged{task, task->next_offset};
  CRM_RETURN_NOT_OK(AppendChangelog(*staged_batch_, first_entry, {&staged, 1}));
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

Status Checkpointer::WriteMetadataFirst(std::string_view name, std::string_view value) {
  const auto started = Clock::now();
  core_->probe.CheckpointStarted();
  const Status st =
      core_->store->PutMetadata(name, value, draining_ ? nullptr : stop_, drain_deadline_);
  if (st.ok() || CancelledByStop(st)) {
    // The checkpoint it begins starts its own clock.
    core_->probe.CheckpointAbandoned();
  } else {
    core_->probe.RecordCheckpoint(std::chrono::duration<double>(Clock::now() - started).count(), 0,
                                  false);
  }
  return st;
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
  if (pending()) return Status::InvalidArgument("a checkpoint is pending");
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
  std::vector<StagedTask> done;
  if (st.ok()) st = AddStates(tasks, delivery, &batch, &done);
  if (st.ok() && core_->changelog) {
    // The changelog holds the checkpoint before the store and the group
    // do: whoever restores from it never finds a committed offset whose
    // state is missing.
    st = AppendChangelog(batch, 0, done);
    if (st.ok()) st = producer.Flush(FlushTimeout()).WithContext("flushing the changelog");
    if (st.ok()) st = CheckDeliveries();
  }
  st = Write(&batch, started, st);
  if (!st.ok()) return st;
  for (PartitionTask* task : tasks) pipeline::MarkCheckpointed(task->processor.get());
  Checkpointed(done);
  return Status::OK();
}

void Checkpointer::Checkpointed(std::span<const StagedTask> tasks) {
  const auto now = Clock::now();
  for (const StagedTask& t : tasks) {
    t.task->checkpointed_offset = t.offset;
    t.task->last_checkpoint = now;
  }
  CommitGroupOffsets();
  core_->probe.stats().commits.fetch_add(1, std::memory_order_relaxed);
}

void Checkpointer::CommitGroupOffsets() {
  std::vector<kafka::TopicPartitionOffset> offsets;
  for (auto& [tp, task] : core_->tasks) {
    if (task.checkpointed_offset >= 0 && task.checkpointed_offset != task.committed_offset) {
      offsets.push_back({tp.topic, tp.partition, task.checkpointed_offset});
      task.committed_offset = task.checkpointed_offset;
    }
  }
  if (offsets.empty()) return;
  Status committed = core_->consumer->CommitOffsets(offsets, /*async=*/true);
  if (!committed.ok()) spdlog::warn("committing offsets: {}", committed.ToString());
}

Status Checkpointer::Begin(std::span<PartitionTask* const> tasks, DeliveryMode* delivery) {
  if (pending()) return Status::InvalidArgument("a checkpoint is pending");
  const auto started = Clock::now();
  CRM_RETURN_NOT_OK(CheckDeliveries());
  state::CheckpointBatch& batch = *batch_;
  // A batch over the budget (the first after a restart, say) is not kept.
  batch.Clear(core_->checkpoint_budget.batch_bytes());
  pending_.clear();
  size_t customers = 0;
  for (const PartitionTask* task : tasks) {
    customers += task->processor->feature_store().changed_count();
  }
  Status st = AddStates(tasks, delivery, &batch, &pending_);
  if (!st.ok()) {
    // Nothing taken from the tasks yet: the next checkpoint has it all.
    batch.Clear();
    pending_.clear();
    return st;
  }
  for (PartitionTask* task : tasks) pipeline::MarkCheckpointed(task->processor.get());
  core_->checkpoint_budget.Observe(batch.byte_size(), customers);
  core_->probe.CheckpointStarted();
  begun_at_ = started;
  retry_at_ = {};
  reported_slow_ = false;
  // The outputs produced so far: the checkpoint waits for these only.
  CRMSTREAM_CRASH_POINT(crash_point::kBeforeFlush);
  awaited_generation_ = core_->producer->CloseGeneration();
  phase_ = Phase::kOutputs;
  return Advance();
}

Status Checkpointer::StepFailed(Status st) {
  core_->probe.RecordCheckpoint(std::chrono::duration<double>(Clock::now() - begun_at_).count(),
                                pending_bytes_, false);
  retry_at_ = Clock::now() + std::chrono::milliseconds(core_->config.commit_interval_ms);
  return st;
}

Status Checkpointer::Advance() {
  if (phase_ == Phase::kIdle) return Status::OK();
  const auto now = Clock::now();
  if (now < retry_at_) return Status::OK();
  kafka::Producer& producer = *core_->producer;
  if (phase_ == Phase::kOutputs || phase_ == Phase::kChangelog) {
    if (!producer.GenerationSettled(awaited_generation_)) {
      if (!reported_slow_ && now - begun_at_ >= kFlushTimeout) {
        // Still waiting, as a flush would have given up: said once.
        reported_slow_ = true;
        return StepFailed(Status::Unavailable(
            std::string(phase_ == Phase::kOutputs ? "outputs" : "changelog records") +
            " of the checkpoint not acknowledged after " +
            std::to_string(
                std::chrono::duration_cast<std::chrono::seconds>(kFlushTimeout).count()) +
            " s (" + std::to_string(producer.OutstandingCount()) + " outstanding)"));
      }
      return Status::OK();
    }
    if (phase_ == Phase::kOutputs) CRMSTREAM_CRASH_POINT(crash_point::kAfterFlush);
    CRM_RETURN_NOT_OK(CheckDeliveries());
    if (phase_ == Phase::kOutputs && core_->changelog) {
      // Produced again in full after a failure: the restore takes a
      // partition's last complete checkpoint, so repeats are harmless.
      Status st = AppendChangelog(*batch_, 0, pending_);
      if (!st.ok()) return StepFailed(st.WithContext("producing the changelog"));
      awaited_generation_ = producer.CloseGeneration();
      phase_ = Phase::kChangelog;
      return Status::OK();
    }
    pending_bytes_ = batch_->byte_size();
    phase_ = Phase::kWriting;
    SubmitWrite();
    return Status::OK();
  }
  // kWriting
  Status written;
  bool before_drain = false;
  {
    std::lock_guard<std::mutex> lock(writer_mutex_);
    if (!write_done_) return Status::OK();
    write_done_ = false;
    written = write_status_;
    // Submitted while the engine ran: a write the stop could cancel.
    before_drain = write_cancel_ != nullptr;
  }
  if (written.ok()) {
    core_->probe.RecordCheckpoint(std::chrono::duration<double>(Clock::now() - begun_at_).count(),
                                  pending_bytes_, true);
    phase_ = Phase::kIdle;
    Checkpointed(pending_);
    pending_.clear();
    return Status::OK();
  }
  // The batch is kept, unwritten: written again (its records are
  // acknowledged: straight to the write).
  phase_ = Phase::kChangelog;
  if (CancelledByStop(written)) {
    // Not counted. The drain writes it again, within its deadline and no
    // longer cancellable; until then Finish does not wait for it.
    spdlog::info("checkpoint: {}; the drain writes it", written.ToString());
    if (draining_) return Advance();
    cancelled_ = std::move(written);
    return Status::OK();
  }
  // Failed for its own reason, the stop set or not: counted here, reported
  // once (by the caller, or below).
  Status failed = StepFailed(std::move(written));
  if (draining_ && before_drain) {
    // Begun before the stop: the drain writes it once more, as it does a
    // cancelled one; its caller sees only the drain's own write.
    spdlog::warn("checkpoint: {} (written again before stopping)", failed.ToString());
    retry_at_ = {};
    return Advance();
  }
  return failed;
}

Status Checkpointer::Finish() {
  const auto deadline = Clock::now() + FlushTimeout();
  retry_at_ = {};
  while (pending()) {
    CRM_RETURN_NOT_OK(Advance());
    if (!pending()) break;
    // Its write cancelled by the stop: the drain's to write, not waited for.
    if (!draining_ && !cancelled_.ok()) return cancelled_;
    // The store write has its own bound (the write timeout, the stop, the
    // drain's deadline); acknowledgements have the flush timeout.
    if (phase_ != Phase::kWriting && Clock::now() >= deadline) {
      return Status::Unavailable(
          "the checkpoint begun " +
          std::to_string(
              std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - begun_at_)
                  .count()) +
          " ms ago has not finished");
    }
    // Serves delivery reports, and sleeps a little while the store writes.
    core_->producer->Poll(std::chrono::milliseconds(5));
  }
  return Status::OK();
}

void Checkpointer::Forget(std::span<const kafka::TopicPartition> partitions) {
  std::erase_if(pending_, [&](const StagedTask& t) {
    return std::find(partitions.begin(), partitions.end(), t.task->tp) != partitions.end();
  });
}

void Checkpointer::SubmitWrite() {
  if (!writer_.joinable()) writer_ = std::thread([this] { WriterLoop(); });
  cancelled_ = Status::OK();
  {
    std::lock_guard<std::mutex> lock(writer_mutex_);
    write_requested_ = true;
    write_done_ = false;
    write_cancel_ = draining_ ? nullptr : stop_;
    write_deadline_ = drain_deadline_;
  }
  writer_wake_.notify_one();
}

void Checkpointer::WriterLoop() {
  pthread_setname_np(pthread_self(), "crm:checkpoint");
  std::unique_lock<std::mutex> lock(writer_mutex_);
  while (true) {
    writer_wake_.wait(lock, [this] { return write_requested_ || writer_exit_; });
    if (writer_exit_) return;
    write_requested_ = false;
    const std::atomic<bool>* cancel = write_cancel_;
    const Clock::time_point deadline = write_deadline_;
    lock.unlock();
    Status st = CommitToStore(&*batch_, cancel, deadline);
    lock.lock();
    write_status_ = std::move(st);
    write_done_ = true;
  }
}

}  // namespace crmstream::runtime
