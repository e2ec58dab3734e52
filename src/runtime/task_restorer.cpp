#include "runtime/task_restorer.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <map>
#include <vector>

#include "crmstream/kafka/partition_reader.h"
#include "crmstream/pipeline/partition_checkpoint.h"

namespace crmstream::runtime {

TaskRestorer::TaskRestorer(EngineCore* core, DeliveryMode* delivery)
    : core_(core), delivery_(delivery) {}

PartitionTask& TaskRestorer::NewTask(const kafka::TopicPartition& tp) {
  PartitionTask& task = core_->tasks[tp];
  task.tp = tp;
  pipeline::OutputSink* sink = delivery_->PrepareTask(&task);
  // The options passed Validate() in StreamEngine::Create: this cannot fail.
  task.processor =
      std::move(pipeline::EventProcessor::Create(core_->processor_options, sink)).value();
  return task;
}

Status TaskRestorer::Restore(std::span<kafka::TopicPartitionOffset> partitions) {
  const auto started = Clock::now();
  spdlog::info("restoring state of {} partition(s)", partitions.size());
  CRM_RETURN_NOT_OK(delivery_->BeforeRestore());
  state::StateStore& store = *core_->store;
  std::vector<RestoredTask> restored;
  std::vector<kafka::TopicPartitionOffset> rebuild_from;
  uint64_t customers = 0;
  // The group's committed offsets: where a lost store was (rebuild), or,
  // with transactions, the truth the store may lag behind (catch-up).
  std::vector<kafka::TopicPartition> tps;
  for (const auto& p : partitions) tps.push_back({p.topic, p.partition});
  std::map<kafka::TopicPartition, int64_t> group_offsets;
  if (!tps.empty()) {
    // An open transaction of a crashed or paused instance keeps the offsets
    // it sent "unstable" until the broker aborts it (transaction.timeout.ms):
    // wait for longer than that.
    auto committed = core_->consumer->Committed(tps, std::chrono::seconds(90));
    if (!committed.ok()) {
      return committed.status().WithContext("fetching the group's committed offsets");
    }
    for (const auto& c : *committed) group_offsets[{c.topic, c.partition}] = c.offset;
  }
  for (size_t i = 0; i < partitions.size(); ++i) {
    kafka::TopicPartitionOffset& p = partitions[i];
    const kafka::TopicPartition& tp = tps[i];
    const auto found = group_offsets.find(tp);
    const int64_t group_offset = found == group_offsets.end() ? -1 : found->second;
    CRM_ASSIGN_OR_RETURN(state::PartitionKey key, store.Partition(p.topic, p.partition));
    CRM_ASSIGN_OR_RETURN(state::PartitionState ps, store.GetPartition(key));
    const std::string what = p.topic + " [" + std::to_string(p.partition) + "]";
    if (ps.restoring) {
      return Status::Corruption(store.path().string() + ": the state of " + what +
                                " is partially restored; move the store away to start afresh");
    }
    core_->tasks.erase(tp);  // a re-assignment starts from the checkpoint again
    PartitionTask& task = NewTask(tp);
    task.key = key;
    CRM_ASSIGN_OR_RETURN(const uint64_t sequence,
                         pipeline::RestoreProcessor(store, key, task.processor.get()));
    customers += task.processor->feature_store().size();
    if (ps.input_offset >= 0) {
      // The checkpoint's offset wins over the group's: state and position
      // must match.
      p.offset = ps.input_offset;
      task.next_offset = ps.input_offset;
      task.checkpointed_offset = ps.input_offset;
      task.committed_offset = ps.input_offset;
      if (delivery_->CatchesUpToGroupOffsets() && group_offset > ps.input_offset) {
        // A transaction committed and the engine stopped before its state
        // was written: process up to the group's offset again (the same
        // state; its outputs are committed already).
        task.rebuild_until = group_offset;
        spdlog::info(
            "{}: catching up from the checkpoint at offset {} to the group's committed "
            "offset {}",
            what, ps.input_offset, group_offset);
      } else if (delivery_->CatchesUpToGroupOffsets() && group_offset >= 0 &&
                 group_offset < ps.input_offset) {
        spdlog::warn(
            "{}: the group's committed offset {} is behind the checkpoint's {} (offsets "
            "reset by a tool?): resuming from the checkpoint",
            what, group_offset, ps.input_offset);
      }
    } else if (group_offset > 0) {
      // No local state, but the group committed an offset for the
      // partition: this engine had state for it that is gone (a lost store,
      // or a corrupt one moved away): rebuild it by processing the input
      // again from its beginning.
      p.offset = kafka::kOffsetBeginning;
      task.rebuild_until = group_offset;
      rebuild_from.push_back({p.topic, p.partition, kafka::kOffsetBeginning});
      spdlog::warn(
          "{}: no local state but the group had processed up to offset {}: rebuilding "
          "the state from the input's beginning",
          what, task.rebuild_until);
    }
    task.last_checkpoint = Clock::now();
    restored.push_back({&task, sequence});
  }
  if (!rebuild_from.empty()) {
    // Only a complete input rebuilds the state: retention must not have
    // removed its first records.
    CRM_RETURN_NOT_OK(kafka::ReadPartitionsToEnd(
        core_->client, rebuild_from, {},
        [&](std::span<const kafka::PartitionEnd> ends) {
          for (const auto& e : ends) {
            if (e.start_offset > 0) {
              return Status::Corruption(
                  e.topic + " [" + std::to_string(e.partition) +
                  "]: cannot rebuild its state: the input no longer starts at offset 0 "
                  "(retention removed records up to offset " +
                  std::to_string(e.start_offset) + ")");
            }
          }
          return Status::OK();
        },
        nullptr));
  }
  CRM_RETURN_NOT_OK(delivery_->AfterRestore(restored));
  rebuilding_ = std::any_of(core_->tasks.begin(), core_->tasks.end(),
                            [](const auto& entry) { return entry.second.rebuild_until >= 0; });
  const double seconds = std::chrono::duration<double>(Clock::now() - started).count();
  spdlog::info("state restored for {} partition(s): {} customers in {:.3f} s", partitions.size(),
               customers, seconds);
  return Status::OK();
}

void TaskRestorer::TrackRebuilds() {
  const auto now = Clock::now();
  const bool report = now - last_report_ >= std::chrono::seconds(2);
  bool any = false;
  for (auto& [tp, task] : core_->tasks) {
    if (task.rebuild_until < 0) continue;
    if (task.next_offset >= task.rebuild_until) {
      spdlog::info("{} [{}]: state rebuilt from the input (offset {})", tp.topic, tp.partition,
                   task.next_offset);
      task.rebuild_until = -1;
      continue;
    }
    any = true;
    if (report) {
      const int64_t done = std::max<int64_t>(0, task.next_offset);
      spdlog::info("{} [{}]: rebuilding state: offset {} of {} ({:.0f}%)", tp.topic, tp.partition,
                   done, task.rebuild_until,
                   100.0 * static_cast<double>(done) / static_cast<double>(task.rebuild_until));
    }
  }
  if (report) last_report_ = now;
  // Never serve half-restored state: not ready (and no customer answers)
  // until every partition is rebuilt.
  if (!any && rebuilding_) core_->probe.SetStateRestored(true);
  rebuilding_ = any;
}

}  // namespace crmstream::runtime
