#include "runtime/transactional_delivery.h"

#include <spdlog/spdlog.h>

#include <thread>

#include "crmstream/common/clock.h"
#include "crmstream/common/crash_point.h"

namespace crmstream::runtime {
namespace {

// A task's held outputs beyond this many bytes are staged at the next block
// close even if a commit interval has not passed: the memory they hold is
// bounded.
constexpr size_t kMaxHeldBytes = size_t{8} << 20;

// How long a commit due for a live block waits for the other partitions'
// blocks of the same slot to close (their next records are usually a few
// milliseconds behind), so that one commit takes them all: a commit blocks
// the loop for 10-50 ms, which the later blocks would wait on.
constexpr auto kGatherLiveCloses = std::chrono::milliseconds(5);

// Calls `call` again while it fails with a retriable error, until `timeout`.
template <typename Call>
Status RetryRetriable(std::chrono::milliseconds timeout, Call call) {
  const auto deadline = Clock::now() + timeout;
  while (true) {
    Status st = call();
    if (st.code() != StatusCode::kUnavailable || Clock::now() >= deadline) return st;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

}  // namespace

void BufferedOutputs::Emit(OutputKind kind, std::string_view key, std::string_view value) {
  entries_.push_back(
      {kind, static_cast<uint32_t>(key.size()), static_cast<uint32_t>(value.size()), origin_ms_});
  data_.append(key);
  data_.append(value);
}

void BufferedOutputs::Release(pipeline::OutputSink* sink) {
  std::string_view rest = data_;
  for (const Entry& e : entries_) {
    const std::string_view key = rest.substr(0, e.key_size);
    const std::string_view value = rest.substr(e.key_size, e.value_size);
    sink->set_origin_ms(e.origin_ms);
    sink->Emit(e.kind, key, value);
    rest.remove_prefix(e.key_size + e.value_size);
  }
  Clear();
}

void BufferedOutputs::Clear() {
  entries_.clear();
  data_.clear();
}

struct TransactionalDelivery::TaskState final : BlockState {
  BufferedOutputs held;
  Clock::time_point last_stage = Clock::now();
  // Catching up: outputs of records before this offset are in a committed
  // transaction already, and are dropped.
  int64_t discard_until = -1;
  uint64_t discarded = 0;
};

TransactionalDelivery::TransactionalDelivery(EngineCore* core, Checkpointer* checkpointer)
    : BlockedDelivery(core, checkpointer) {
  core->probe.HoldOutputLatencyUntilCommit();
}

TransactionalDelivery::TaskState& TransactionalDelivery::StateOf(PartitionTask* task) {
  return static_cast<TaskState&>(*task->delivery);
}
const TransactionalDelivery::TaskState& TransactionalDelivery::StateOf(const PartitionTask& task) {
  return static_cast<const TaskState&>(*task.delivery);
}

pipeline::OutputSink* TransactionalDelivery::PrepareTask(PartitionTask* task) {
  auto state = std::make_unique<TaskState>();
  pipeline::OutputSink* sink = &state->held;
  task->delivery = std::move(state);
  return sink;
}

Status TransactionalDelivery::AfterRestore(std::span<const RestoredTask> restored) {
  for (const RestoredTask& r : restored) {
    PartitionTask* task = r.task;
    CRM_RETURN_NOT_OK(RestoreLoggedCloses(task));
    if (task->rebuild_until > std::max<int64_t>(task->next_offset, 0)) {
      // The group's offset is past the store's: up to it, the outputs are
      // committed; the replay ends with a close exactly there, as the
      // original did.
      TaskState& s = StateOf(task);
      s.discard_until = task->rebuild_until;
      s.close_at = task->rebuild_until;
    }
  }
  return Status::OK();
}

void TransactionalDelivery::OnRevoked(std::span<const kafka::TopicPartition> revoked) {
  Status st;
  for (const auto& tp : revoked) {
    auto it = core_->tasks.find(tp);
    if (it == core_->tasks.end()) continue;
    PartitionTask& task = it->second;
    // Blocks closed since the last stage: their outputs and offsets go with
    // this commit. An open block is re-processed by the next owner.
    if (st.ok() && !BlocksOf(task).block_open && task.next_offset >= 0 &&
        checkpointer_->StagedOffset(task) != task.next_offset && !Durable(task)) {
      st = StageTask(&task);
    }
  }
  if (st.ok()) st = Commit();
  if (!st.ok() && revoke_error_.ok()) revoke_error_ = st.WithContext("committing at a revocation");
}

void TransactionalDelivery::OnLost(std::span<const kafka::TopicPartition> lost) {
  Status st = Abort(Status::Aborted(std::to_string(lost.size()) +
                                    " partition(s) lost to another member of the group"));
  if (!st.ok() && revoke_error_.ok()) revoke_error_ = st;
}

uint64_t TransactionalDelivery::Suppressed(const PartitionTask& task) const {
  return StateOf(task).discarded;
}

bool TransactionalDelivery::TakeRewind() {
  const bool rewind = rewind_;
  rewind_ = false;
  return rewind;
}

Status TransactionalDelivery::OnBlockClosed(PartitionTask* task, bool checkpoint) {
  TaskState& s = StateOf(task);
  const int64_t interval_ms = core_->config.commit_interval_ms;
  const auto interval = std::chrono::milliseconds(interval_ms);
  // A live block (it ended less than an interval of the wall clock ago)
  // enters the transaction at once and the transaction commits after this
  // batch: an output is read_committed about a commit interval after its
  // event, not two. A replay's blocks, far behind the wall clock, are
  // staged and committed at the interval, so catching up is not one
  // transaction per block.
  const bool live = WallMs() - (s.block_slot + 1) * interval_ms < interval_ms;
  // A cache full of customers only a checkpoint makes evictable: the
  // transaction commits at this close, not at the interval. Outputs are
  // fixed by the blocks, so only when they are committed changes.
  const bool memory = !checkpoint && task->processor->feature_store().UnderPressure();
  if (checkpoint || memory || live || s.held.bytes() > kMaxHeldBytes ||
      Clock::now() - s.last_stage >= interval) {
    CRM_RETURN_NOT_OK(StageTask(task));
    if (live && !commit_due_) {
      commit_due_ = true;
      due_since_ = Clock::now();
      due_slot_ = s.block_slot;
    } else if (live) {
      due_slot_ = std::max(due_slot_, s.block_slot);
    }
  }
  if (memory) core_->probe.stats().memory_checkpoints.fetch_add(1, std::memory_order_relaxed);
  return checkpoint || memory ? Commit() : Status::OK();
}

Status TransactionalDelivery::CheckpointSettled(std::span<PartitionTask* const> tasks) {
  for (PartitionTask* task : tasks) {
    if (checkpointer_->StagedOffset(*task) != task->next_offset) CRM_RETURN_NOT_OK(StageTask(task));
  }
  return Commit();
}

Status TransactionalDelivery::TickMode(Clock::time_point now) {
  if (!revoke_error_.ok()) return std::exchange(revoke_error_, Status::OK());
  const bool due = commit_due_ && (now - due_since_ >= kGatherLiveCloses || LiveClosesGathered());
  if (checkpointer_->has_staged() &&
      (due || now - last_commit_ >= std::chrono::milliseconds(core_->config.commit_interval_ms))) {
    return Commit();
  }
  return Status::OK();
}

bool TransactionalDelivery::LiveClosesGathered() const {
  for (const auto& [tp, task] : core_->tasks) {
    const BlockState& b = BlocksOf(task);
    if (b.block_open && b.block_slot <= due_slot_) return false;
  }
  return true;
}

Status TransactionalDelivery::FinishDrain() {
  for (auto& [tp, task] : core_->tasks) {
    if (!BlocksOf(task).block_open && task.next_offset >= 0 && !Durable(task) &&
        checkpointer_->StagedOffset(task) != task.next_offset) {
      CRM_RETURN_NOT_OK(StageTask(&task));
    }
  }
  return Commit();
}

Status TransactionalDelivery::StageTask(PartitionTask* task) {
  // Aborted, not yet rewound: the tasks' changes since their last checkpoint
  // went with the aborted transaction (their dirty marks are cleared), so a
  // stage now would commit their offsets without them. The rewind gives
  // every task its checkpoint's state again.
  if (rewind_) return Status::OK();
  Status st = ReleaseAndStage(task);
  if (st.ok()) st = core_->sink->first_error();
  if (st.ok() && CRMSTREAM_FAULT_POINT(crash_point::kTransactionProduceRefused)) {
    st = Status::Aborted("fault point: a produce refused, the transaction failed");
  }
  if (st.ok() || st.code() != StatusCode::kAborted) return st;
  // The transaction failed under the producer (an abortable error, such as
  // skipped sequence numbers after a partition's leader or owner moved):
  // librdkafka refuses every produce until it is aborted. Abort and rewind,
  // as a refused commit does.
  core_->sink->ClearError();
  return Abort(st);
}

Status TransactionalDelivery::ReleaseAndStage(PartitionTask* task) {
  TaskState& s = StateOf(task);
  // The stage's changelog records belong to the transaction.
  if (core_->changelog) CRM_RETURN_NOT_OK(EnsureTransaction());
  if (task->next_offset <= s.discard_until) {
    s.discarded += s.held.records();
    s.held.Clear();
  } else {
    if (s.held.records() > 0) CRM_RETURN_NOT_OK(EnsureTransaction());
    s.held.Release(core_->sink.get());
    s.discard_until = -1;
  }
  s.last_stage = Clock::now();
  return checkpointer_->Stage(task, this);
}

Status TransactionalDelivery::EnsureTransaction() {
  if (in_transaction_) return Status::OK();
  CRM_RETURN_NOT_OK(core_->producer->BeginTransaction());
  in_transaction_ = true;
  return Status::OK();
}

Status TransactionalDelivery::Commit() {
  if (!checkpointer_->has_staged()) return Status::OK();
  kafka::Producer& producer = *core_->producer;
  Status st = EnsureTransaction();
  std::vector<kafka::TopicPartitionOffset> offsets;
  for (const auto& [tp, task] : core_->tasks) {
    const int64_t staged = checkpointer_->StagedOffset(task);
    // Catching up, the group's offset is ahead: never move it back.
    if (staged >= 0 && staged >= task.rebuild_until) {
      offsets.push_back({tp.topic, tp.partition, staged});
    }
  }
  const auto timeout = checkpointer_->FlushTimeout();
  if (st.ok() && CRMSTREAM_FAULT_POINT(crash_point::kTransactionAbortable)) {
    st = Status::Aborted("fault point: the transaction is refused as abortable");
  }
  if (st.ok() && !offsets.empty()) {
    st = RetryRetriable(timeout, [&] {
      return producer.SendOffsetsToTransaction(offsets, *core_->consumer, timeout);
    });
  }
  CRMSTREAM_CRASH_POINT(crash_point::kBeforeTransactionCommit);
  if (st.ok()) {
    st = RetryRetriable(timeout, [&] { return producer.CommitTransaction(timeout); });
  }
  if (!st.ok() && st.code() == StatusCode::kAborted) return Abort(st);
  if (!st.ok() && st.code() == StatusCode::kInternal) {
    return st.WithContext(
        "the transactional producer can no longer commit (another instance with the same "
        "transactional.id, or the group's newer generation, fenced it); stopping: a restart "
        "resumes from the last committed transaction");
  }
  CRM_RETURN_NOT_OK(st);
  CRMSTREAM_CRASH_POINT(crash_point::kAfterTransactionCommit);
  in_transaction_ = false;
  commit_due_ = false;
  last_commit_ = Clock::now();
  core_->probe.OutputsCommitted();
  st = checkpointer_->WriteStaged();
  if (!st.ok()) {
    // The transaction is committed: a restart catches the store up to the
    // group's offsets. Going on would write later checkpoints over a gap.
    return st.WithContext("writing the checkpoint of a committed transaction");
  }
  return Status::OK();
}

Status TransactionalDelivery::Abort(const Status& cause) {
  spdlog::warn("aborting the transaction and rewinding to the last checkpoint: {}",
               cause.ToString());
  checkpointer_->DropStaged();
  commit_due_ = false;
  for (auto& [tp, task] : core_->tasks) StateOf(&task).held.Clear();
  if (in_transaction_) {
    in_transaction_ = false;
    Status st = RetryRetriable(checkpointer_->FlushTimeout(), [&] {
      return core_->producer->AbortTransaction(checkpointer_->FlushTimeout());
    });
    if (!st.ok()) return st.WithContext("aborting the transaction");
  }
  core_->probe.OutputsAborted();
  core_->probe.stats().transactions_aborted.fetch_add(1, std::memory_order_relaxed);
  rewind_ = true;
  return Status::OK();
}

}  // namespace crmstream::runtime
