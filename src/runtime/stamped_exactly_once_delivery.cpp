#include "runtime/stamped_exactly_once_delivery.h"

#include <spdlog/spdlog.h>

#include <vector>

namespace crmstream::runtime {
namespace {

// Metadata name of a task's output positions.
std::string PositionsName(const kafka::TopicPartition& tp) {
  return "outputs/" + tp.topic + "/" + std::to_string(tp.partition);
}

}  // namespace

struct StampedExactlyOnceDelivery::TaskState final : BlockState {
  std::unique_ptr<StampingSink> stamping;
  OutputPositions positions;  // where this task's later outputs can land
};

StampedExactlyOnceDelivery::StampedExactlyOnceDelivery(EngineCore* core, Checkpointer* checkpointer)
    : BlockedDelivery(core, checkpointer) {}

StampedExactlyOnceDelivery::TaskState& StampedExactlyOnceDelivery::StateOf(PartitionTask* task) {
  return static_cast<TaskState&>(*task->delivery);
}
const StampedExactlyOnceDelivery::TaskState& StampedExactlyOnceDelivery::StateOf(
    const PartitionTask& task) {
  return static_cast<const TaskState&>(*task.delivery);
}

pipeline::OutputSink* StampedExactlyOnceDelivery::PrepareTask(PartitionTask* task) {
  auto state = std::make_unique<TaskState>();
  state->stamping =
      std::make_unique<StampingSink>(core_->sink.get(), core_->config.kafka.group_id,
                                     task->tp.topic, task->tp.partition, core_->output_partitions);
  state->positions = OutputPositions(core_->output_partitions);
  pipeline::OutputSink* sink = state->stamping.get();
  task->delivery = std::move(state);
  return sink;
}

Status StampedExactlyOnceDelivery::BeforeRestore() {
  // Outputs of tasks this instance ran before (a revocation drops them
  // without a checkpoint) must be on the topics before the scan below
  // looks for them: one still in flight would be produced again.
  return core_->producer->Flush(kFlushTimeout).WithContext("flushing outputs");
}

Status StampedExactlyOnceDelivery::AfterRestore(std::span<const RestoredTask> restored) {
  if (restored.empty()) return Status::OK();
  std::vector<StampedRestore> scanned;
  std::vector<PartitionTask*> first_run;
  for (const RestoredTask& r : restored) {
    PartitionTask* task = r.task;
    TaskState& s = StateOf(task);
    s.stamping->set_next_sequence(r.output_sequence);
    CRM_ASSIGN_OR_RETURN(auto positions, core_->store->GetMetadata(PositionsName(task->tp)));
    if (positions) {
      CRM_RETURN_NOT_OK(OutputPositions::CheckPartitionCounts(*positions, core_->output_partitions,
                                                              core_->sink->topics()));
      CRM_ASSIGN_OR_RETURN(s.positions,
                           OutputPositions::Decode(*positions, core_->output_partitions));
    }
    CRM_RETURN_NOT_OK(RestoreLoggedCloses(task));
    // A rebuild re-generates every output from the first: look for them
    // from the beginning of the output topics (positions unknown); so does a
    // task restored from the changelog (another instance ran it). A task
    // without positions that is neither has never run on this store: its
    // outputs are looked for from the beginning too, to tell a first run
    // (none there) from a lost store (FirstRunCheck).
    scanned.push_back({s.stamping.get(), &s.positions});
    if (!positions && task->rebuild_until < 0 && !task->restored_from_changelog) {
      first_run.push_back(task);
    }
  }
  OutputPositions ends(core_->output_partitions);
  CRM_RETURN_NOT_OK(FindDeliveredOutputs(core_->client, core_->sink->topics(),
                                         core_->output_partitions, scanned, &ends)
                        .WithContext("finding outputs delivered before the restart"));
  for (PartitionTask* task : first_run) {
    CRM_RETURN_NOT_OK(FirstRunCheck(*task));
  }
  for (PartitionTask* task : first_run) {
    // Recorded before any output is produced (synced), so a crash before the
    // task's first checkpoint is covered too. A task replaying a
    // predecessor's outputs keeps its positions unknown: a crash during the
    // replay looks for them from the beginning again.
    TaskState& s = StateOf(task);
    if (!s.stamping->dropping()) s.positions = ends;
    CRM_RETURN_NOT_OK(core_->store->PutMetadata(PositionsName(task->tp), s.positions.Encode()));
  }
  return Status::OK();
}

Status StampedExactlyOnceDelivery::FirstRunCheck(const PartitionTask& task) const {
  const StampingSink& stamping = *StateOf(task).stamping;
  if (!stamping.dropping()) return Status::OK();
  const std::string what = task.tp.topic + " [" + std::to_string(task.tp.partition) + "]";
  if (task.never_checkpointed) {
    // The outputs come from an owner that died or left before the
    // partition's first checkpoint (every checkpoint writes the changelog,
    // and it holds none). That owner began at the input's beginning, as
    // this task does: processing it again from offset 0 regenerates its
    // outputs with the same sequence numbers, and the stamps drop them.
    if (task.input_start_offset == 0) {
      spdlog::info(
          "{}: outputs of a predecessor that never checkpointed the partition are on the "
          "topics: processing its input again from offset 0, dropping what was delivered",
          what);
      return Status::OK();
    }
    return Status::InvalidArgument(
        what + ": the output topics hold outputs of application (group) '" +
        core_->config.kafka.group_id +
        "' from an owner that never checkpointed the partition, and the input no longer "
        "starts at offset 0 (it starts at " +
        std::to_string(task.input_start_offset) +
        "): processing it again cannot tell which outputs were delivered. Start afresh under "
        "a new kafka.group_id with an empty state directory (its outputs are told apart by "
        "their stamp)");
  }
  // Outputs of this application for this input partition on the topics, but
  // no state, no committed group offset and no changelog to tell a partition
  // never checkpointed (state.changelog off, or a consumer that does not
  // start at the input's beginning): the store was lost (or the state
  // directory changed) together with the group's offsets. Processing from
  // scratch would number its outputs from 0 again and produce every past
  // output a second time (or, from another start offset, drop the wrong
  // ones): refuse, with the ways out.
  return Status::InvalidArgument(
      what + ": the output topics hold outputs of application (group) '" +
      core_->config.kafka.group_id +
      "' for this input partition, but the state store has no state for it and the group no "
      "committed offset: the state directory was lost or changed. Starting again would produce "
      "those outputs a second time. Restore the state directory (" +
      core_->config.state_dir +
      ") from a backup, or start afresh under a new kafka.group_id with an empty state "
      "directory (its outputs are told apart by their stamp)");
}

Status StampedExactlyOnceDelivery::OnBlockClosed(PartitionTask* task, bool checkpoint) {
  // A cache full of customers only a checkpoint makes evictable: checkpoint
  // at this close, not at the interval. Like the interval's, it falls on a
  // block close, which the input alone fixes, so the outputs stay the same.
  const bool memory = !checkpoint && task->processor->feature_store().UnderPressure();
  if (!checkpoint && !memory &&
      Clock::now() - task->last_checkpoint <
          std::chrono::milliseconds(core_->config.commit_interval_ms)) {
    return Status::OK();
  }
  if (memory) core_->probe.stats().memory_checkpoints.fetch_add(1, std::memory_order_relaxed);
  PartitionTask* one[] = {task};
  return checkpointer_->Checkpoint(one, this);
}

Status StampedExactlyOnceDelivery::CheckpointSettled(std::span<PartitionTask* const> tasks) {
  return checkpointer_->Checkpoint(tasks, this);
}

uint64_t StampedExactlyOnceDelivery::OutputSequence(const PartitionTask& task) const {
  return StateOf(task).stamping->next_sequence();
}

void StampedExactlyOnceDelivery::AddToCheckpoint(PartitionTask* task,
                                                 state::CheckpointBatch* batch) {
  BlockedDelivery::AddToCheckpoint(task, batch);
  TaskState& s = StateOf(task);
  AdvanceForCheckpoint(*s.stamping, *core_->producer, core_->sink->topics(), &s.positions);
  batch->PutMetadata(PositionsName(task->tp), s.positions.Encode());
}

uint64_t StampedExactlyOnceDelivery::Suppressed(const PartitionTask& task) const {
  return StateOf(task).stamping->suppressed();
}

}  // namespace crmstream::runtime
