#include "runtime/stamped_exactly_once_delivery.h"

#include <algorithm>
#include <cstdlib>
#include <vector>

#include "crmstream/common/clock.h"

namespace crmstream::runtime {
namespace {

// How often the loop looks for idle blocks.
constexpr auto kIdleCheck = std::chrono::milliseconds(100);

// Metadata names of a task's bookkeeping (outside the state families, so
// two runs of the same input dump the same state).
std::string PositionsName(const kafka::TopicPartition& tp) {
  return "outputs/" + tp.topic + "/" + std::to_string(tp.partition);
}
std::string LoggedClosesName(const kafka::TopicPartition& tp) {
  return "closes/" + tp.topic + "/" + std::to_string(tp.partition);
}

std::string EncodeOffsets(const std::deque<int64_t>& offsets) {
  std::string out;
  for (int64_t o : offsets) out += std::to_string(o) + "\n";
  return out;
}

Result<std::deque<int64_t>> DecodeOffsets(std::string_view text) {
  std::deque<int64_t> out;
  while (!text.empty()) {
    const size_t nl = text.find('\n');
    if (nl == std::string_view::npos) return Status::Corruption("logged closes: unterminated line");
    const std::string line(text.substr(0, nl));
    char* end = nullptr;
    const long long v = std::strtoll(line.c_str(), &end, 10);
    if (line.empty() || *end != '\0') return Status::Corruption("logged closes: '" + line + "'");
    out.push_back(v);
    text.remove_prefix(nl + 1);
  }
  return out;
}

}  // namespace

struct StampedExactlyOnceDelivery::TaskState final : TaskDeliveryState {
  std::unique_ptr<StampingSink> stamping;
  // Records processed since the block closed, and the last record's
  // broker-time slot.
  bool block_open = false;
  int64_t block_slot = 0;
  int64_t last_record_ms = 0;         // steady clock, when its last record came
  std::deque<int64_t> logged_closes;  // replay: close the block at these next-offsets
  OutputPositions positions;          // where this task's later outputs can land
};

StampedExactlyOnceDelivery::StampedExactlyOnceDelivery(EngineCore* core, Checkpointer* checkpointer)
    : core_(core), checkpointer_(checkpointer) {}

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
    CRM_ASSIGN_OR_RETURN(auto closes, core_->store->GetMetadata(LoggedClosesName(task->tp)));
    if (closes) {
      CRM_ASSIGN_OR_RETURN(s.logged_closes, DecodeOffsets(*closes));
      // Closes at or before the checkpoint are in it already.
      while (!s.logged_closes.empty() && s.logged_closes.front() <= task->next_offset) {
        s.logged_closes.pop_front();
      }
    }
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
  if (restored.empty()) return Status::OK();
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

Status StampedExactlyOnceDelivery::Process(PartitionTask* task, const kafka::MessageView& m,
                                           int64_t) {
  TaskState& s = StateOf(task);
  // Block boundaries and "now" come from the input.
  const int64_t timestamp = std::max<int64_t>(0, m.timestamp_ms());
  const int64_t slot = FloorDiv(timestamp, core_->config.commit_interval_ms);
  if (s.block_open && (slot != s.block_slot || m.offset() % kMaxBlockRecords == 0)) {
    CRM_RETURN_NOT_OK(CloseBlock(task, /*checkpoint=*/false));
  }
  task->processor->Process(m.payload(), {m.topic(), m.partition(), m.offset()}, timestamp);
  task->next_offset = m.offset() + 1;
  s.block_open = true;
  s.block_slot = slot;
  if (!s.logged_closes.empty() && s.logged_closes.front() == task->next_offset) {
    // A replay reaching a close its predecessor logged.
    s.logged_closes.pop_front();
    return CloseBlock(task, /*checkpoint=*/true);
  }
  return Status::OK();
}

Status StampedExactlyOnceDelivery::AfterBatch(bool had_records) {
  if (!had_records) return Status::OK();
  const int64_t steady = SteadyMs();
  for (auto& [tp, task] : core_->tasks) {
    TaskState& s = StateOf(&task);
    if (s.block_open) s.last_record_ms = std::max(s.last_record_ms, steady);
  }
  return Status::OK();
}

Status StampedExactlyOnceDelivery::Tick(Clock::time_point now, bool) {
  if (now - last_idle_check_ < kIdleCheck) return Status::OK();
  last_idle_check_ = now;
  return CloseIdleBlocks(/*all=*/false);
}

Status StampedExactlyOnceDelivery::Drain() {
  // Open blocks close at a logged offset: a replay would close them there too.
  return CloseIdleBlocks(/*all=*/true);
}

bool StampedExactlyOnceDelivery::Settled(const PartitionTask& task) const {
  return !StateOf(task).block_open;
}

uint64_t StampedExactlyOnceDelivery::OutputSequence(const PartitionTask& task) const {
  return StateOf(task).stamping->next_sequence();
}

void StampedExactlyOnceDelivery::AddToCheckpoint(PartitionTask* task,
                                                 state::CheckpointBatch* batch) {
  TaskState& s = StateOf(task);
  AdvanceForCheckpoint(*s.stamping, *core_->producer, core_->sink->topics(), &s.positions);
  batch->PutMetadata(PositionsName(task->tp), s.positions.Encode());
  if (!s.logged_closes.empty()) {
    s.logged_closes.clear();
    batch->DeleteMetadata(LoggedClosesName(task->tp));
  }
}

uint64_t StampedExactlyOnceDelivery::Suppressed(const PartitionTask& task) const {
  return StateOf(task).stamping->suppressed();
}

Status StampedExactlyOnceDelivery::CloseBlock(PartitionTask* task, bool checkpoint) {
  task->processor->FlushOutputs();
  StateOf(task).block_open = false;
  if (!checkpoint && Clock::now() - task->last_checkpoint <
                         std::chrono::milliseconds(core_->config.commit_interval_ms)) {
    return Status::OK();
  }
  PartitionTask* one[] = {task};
  return checkpointer_->Checkpoint(one, this);
}

Status StampedExactlyOnceDelivery::CloseBlockLogged(PartitionTask* task) {
  // Logged (synced) before any of its outputs exists: a replay after a crash
  // closes the block at the same offset and regenerates the same outputs.
  TaskState& s = StateOf(task);
  s.logged_closes.push_back(task->next_offset);
  CRM_RETURN_NOT_OK(
      core_->store->PutMetadata(LoggedClosesName(task->tp), EncodeOffsets(s.logged_closes)));
  return CloseBlock(task, /*checkpoint=*/true);
}

Status StampedExactlyOnceDelivery::CloseIdleBlocks(bool all) {
  const int64_t now = SteadyMs();
  // A live input pauses often: wait a commit interval of quiet before
  // closing. Run until caught up, the end of the input is the end.
  const int64_t quiet_ms = core_->until_caught_up ? 0 : core_->config.commit_interval_ms;
  for (auto& [tp, task] : core_->tasks) {
    const TaskState& s = StateOf(&task);
    if (!s.block_open) continue;
    if (!all) {
      // Only a partition that is caught up and quiet: otherwise its next
      // record decides the close.
      if (now - s.last_record_ms < quiet_ms) continue;
      if (core_->TaskLag(task) != 0) continue;
    }
    CRM_RETURN_NOT_OK(CloseBlockLogged(&task));
  }
  // Tasks whose last block closed without a checkpoint (the interval had
  // not passed) and that have nothing new: checkpoint them now.
  std::vector<PartitionTask*> due;
  for (auto& [tp, task] : core_->tasks) {
    const TaskState& s = StateOf(&task);
    if (!s.block_open && task.next_offset >= 0 && task.next_offset != task.checkpointed_offset &&
        (all || now - s.last_record_ms >= quiet_ms)) {
      due.push_back(&task);
    }
  }
  if (due.empty()) return Status::OK();
  return checkpointer_->Checkpoint(due, this);
}

}  // namespace crmstream::runtime
