#include "runtime/stamped_exactly_once_delivery.h"

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
      CRM_ASSIGN_OR_RETURN(s.positions,
                           OutputPositions::Decode(*positions, core_->output_partitions));
    }
    CRM_RETURN_NOT_OK(RestoreLoggedCloses(task));
    // A rebuild re-generates every output from the first: look for them
    // from the beginning of the output topics (positions unknown). A task
    // without positions has never run here: none of its outputs can be
    // there, and from now on its outputs start at the current ends.
    if (positions || task->rebuild_until >= 0) {
      scanned.push_back({s.stamping.get(), &s.positions});
    } else {
      first_run.push_back(task);
    }
  }
  OutputPositions ends(core_->output_partitions);
  CRM_RETURN_NOT_OK(FindDeliveredOutputs(core_->client, core_->sink->topics(),
                                         core_->output_partitions, scanned, &ends)
                        .WithContext("finding outputs delivered before the restart"));
  for (PartitionTask* task : first_run) {
    // Recorded before any output is produced (synced), so a crash before the
    // task's first checkpoint is covered too.
    TaskState& s = StateOf(task);
    s.positions = ends;
    CRM_RETURN_NOT_OK(core_->store->PutMetadata(PositionsName(task->tp), s.positions.Encode()));
  }
  return Status::OK();
}

Status StampedExactlyOnceDelivery::OnBlockClosed(PartitionTask* task, bool checkpoint) {
  if (!checkpoint && Clock::now() - task->last_checkpoint <
                         std::chrono::milliseconds(core_->config.commit_interval_ms)) {
    return Status::OK();
  }
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
