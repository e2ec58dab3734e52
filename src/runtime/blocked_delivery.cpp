#include "runtime/blocked_delivery.h"

#include <algorithm>
#include <cstdlib>

#include "crmstream/common/clock.h"

namespace crmstream::runtime {
namespace {

// How often the loop looks for idle blocks.
constexpr auto kIdleCheck = std::chrono::milliseconds(100);

// Metadata name of a task's logged closes (outside the state families, so
// two runs of the same input dump the same state).
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

BlockedDelivery::BlockedDelivery(EngineCore* core, Checkpointer* checkpointer)
    : core_(core), checkpointer_(checkpointer) {}

BlockedDelivery::BlockState& BlockedDelivery::BlocksOf(PartitionTask* task) {
  return static_cast<BlockState&>(*task->delivery);
}
const BlockedDelivery::BlockState& BlockedDelivery::BlocksOf(const PartitionTask& task) {
  return static_cast<const BlockState&>(*task.delivery);
}

Status BlockedDelivery::RestoreLoggedCloses(PartitionTask* task) {
  BlockState& b = BlocksOf(task);
  CRM_ASSIGN_OR_RETURN(auto closes, core_->store->GetMetadata(LoggedClosesName(task->tp)));
  if (!closes) return Status::OK();
  CRM_ASSIGN_OR_RETURN(b.logged_closes, DecodeOffsets(*closes));
  // Closes at or before the checkpoint are in it already.
  while (!b.logged_closes.empty() && b.logged_closes.front() <= task->next_offset) {
    b.logged_closes.pop_front();
  }
  return Status::OK();
}

int64_t BlockedDelivery::RecordClock(const kafka::MessageView& m, int64_t) const {
  // "Now" comes from the input (a replay must see the same).
  return std::max<int64_t>(0, m.timestamp_ms());
}

Status BlockedDelivery::Process(PartitionTask* task, const kafka::MessageView& m, int64_t wall_ms) {
  BlockState& b = BlocksOf(task);
  // Block boundaries and "now" come from the input.
  const int64_t timestamp = RecordClock(m, wall_ms);
  const int64_t slot = FloorDiv(timestamp, core_->config.commit_interval_ms);
  if (b.block_open && (slot != b.block_slot || m.offset() % kMaxBlockRecords == 0)) {
    CRM_RETURN_NOT_OK(CloseBlock(task, /*checkpoint=*/false));
  }
  task->processor->Process(m.payload(), {m.topic(), m.partition(), m.offset()}, timestamp);
  task->next_offset = m.offset() + 1;
  b.block_open = true;
  b.block_slot = slot;
  if (!b.logged_closes.empty() && b.logged_closes.front() == task->next_offset) {
    // A replay reaching a close its predecessor logged.
    b.logged_closes.pop_front();
    return CloseBlock(task, /*checkpoint=*/true);
  }
  if (b.close_at >= 0 && task->next_offset >= b.close_at) {
    b.close_at = -1;
    return CloseBlock(task, /*checkpoint=*/true);
  }
  return Status::OK();
}

Status BlockedDelivery::AfterBatch(bool had_records) {
  if (!had_records) return Status::OK();
  const int64_t steady = SteadyMs();
  for (auto& [tp, task] : core_->tasks) {
    BlockState& b = BlocksOf(&task);
    if (b.block_open) b.last_record_ms = std::max(b.last_record_ms, steady);
  }
  return Status::OK();
}

Status BlockedDelivery::Tick(Clock::time_point now, bool) {
  if (now - last_idle_check_ >= kIdleCheck) {
    last_idle_check_ = now;
    CRM_RETURN_NOT_OK(CloseIdleBlocks(/*all=*/false));
  }
  return TickMode(now);
}

Status BlockedDelivery::Drain() {
  // Caught-up partitions' open blocks close at a logged offset: a replay
  // would close them there too.
  CRM_RETURN_NOT_OK(CloseIdleBlocks(/*all=*/true));
  return FinishDrain();
}

bool BlockedDelivery::Settled(const PartitionTask& task) const {
  return !BlocksOf(task).block_open && Durable(task);
}

void BlockedDelivery::AddToCheckpoint(PartitionTask* task, state::CheckpointBatch* batch) {
  BlockState& b = BlocksOf(task);
  if (!b.logged_closes.empty()) {
    b.logged_closes.clear();
    batch->DeleteMetadata(LoggedClosesName(task->tp));
  }
}

Status BlockedDelivery::CloseBlock(PartitionTask* task, bool checkpoint) {
  task->processor->FlushOutputs();
  BlocksOf(task).block_open = false;
  return OnBlockClosed(task, checkpoint);
}

Status BlockedDelivery::CloseBlockLogged(PartitionTask* task) {
  // Logged (synced) before any of its outputs exists: a replay after a crash
  // closes the block at the same offset and regenerates the same outputs.
  BlockState& b = BlocksOf(task);
  b.logged_closes.push_back(task->next_offset);
  const Status logged =
      checkpointer_->WriteMetadataFirst(LoggedClosesName(task->tp), EncodeOffsets(b.logged_closes));
  if (!logged.ok()) {
    b.logged_closes.pop_back();  // not logged: the block stays open
    return logged;
  }
  return CloseBlock(task, /*checkpoint=*/true);
}

Status BlockedDelivery::CloseIdleBlocks(bool all) {
  const int64_t now = SteadyMs();
  // A live input pauses often: wait a commit interval of quiet before
  // closing. Run until caught up, the end of the input is the end.
  const int64_t quiet_ms = core_->until_caught_up ? 0 : core_->config.commit_interval_ms;
  for (auto& [tp, task] : core_->tasks) {
    const BlockState& b = BlocksOf(&task);
    if (!b.block_open) continue;
    // Only a partition that is caught up (and quiet, unless stopping):
    // otherwise its next record decides the close.
    if (!all && now - b.last_record_ms < quiet_ms) continue;
    if (core_->TaskLag(task) != 0) continue;
    CRM_RETURN_NOT_OK(CloseBlockLogged(&task));
  }
  // Tasks whose last block closed without being made durable and that have
  // nothing new.
  std::vector<PartitionTask*> due;
  for (auto& [tp, task] : core_->tasks) {
    const BlockState& b = BlocksOf(&task);
    if (!b.block_open && task.next_offset >= 0 && !Durable(task) &&
        (all || now - b.last_record_ms >= quiet_ms)) {
      due.push_back(&task);
    }
  }
  if (due.empty()) return Status::OK();
  return CheckpointSettled(due);
}

}  // namespace crmstream::runtime
