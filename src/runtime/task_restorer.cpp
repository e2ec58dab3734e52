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
  task.global_model_merge = 0;  // a new processor scores with its own models until handed one
  return task;
}

Status TaskRestorer::Restore(std::span<kafka::TopicPartitionOffset> partitions) {
  const auto started = Clock::now();
  spdlog::info("restoring state of {} partition(s)", partitions.size());
  CRM_RETURN_NOT_OK(delivery_->BeforeRestore());
  state::StateStore& store = *core_->store;
  std::vector<RestoredTask> restored;
  std::vector<kafka::TopicPartitionOffset> rebuild_from;
  // Partitions resuming from a checkpoint, at its offset.
  std::vector<kafka::TopicPartitionOffset> resume_from;
  // Partitions nobody ever checkpointed: where their input begins.
  std::vector<kafka::TopicPartitionOffset> first_from;
  // Whether a partition without a committed offset starts at its input's
  // beginning (the consumer's auto.offset.reset): only then does its first
  // owner's processing start where a successor's does.
  const auto reset = core_->client.Get("auto.offset.reset");
  const bool unset_starts_at_beginning =
      !reset || *reset == "earliest" || *reset == "smallest" || *reset == "beginning";
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
  // The last complete checkpoint in each partition's changelog.
  std::map<kafka::TopicPartition, int64_t> changelog_offsets;
  if (core_->changelog && !tps.empty()) {
    std::map<std::string, std::vector<int32_t>> by_topic;
    for (const auto& tp : tps) by_topic[tp.topic].push_back(tp.partition);
    for (const auto& [topic, ids] : by_topic) {
      auto last =
          LastChangelogCheckpoints(core_->client, core_->changelog_topics.find(topic)->second, ids);
      if (!last.ok()) return last.status().WithContext("reading the changelog of " + topic);
      for (const auto& [partition, offset] : *last) {
        changelog_offsets[kafka::TopicPartition{topic, partition}] = offset;
      }
    }
  }
  for (size_t i = 0; i < partitions.size(); ++i) {
    kafka::TopicPartitionOffset& p = partitions[i];
    const kafka::TopicPartition& tp = tps[i];
    const auto found = group_offsets.find(tp);
    const int64_t group_offset = found == group_offsets.end() ? -1 : found->second;
    CRM_ASSIGN_OR_RETURN(state::PartitionKey key, store.Partition(p.topic, p.partition));
    CRM_ASSIGN_OR_RETURN(state::PartitionState ps, store.GetPartition(key));
    const std::string what = p.topic + " [" + std::to_string(p.partition) + "]";
    bool from_changelog = false;
    const auto in_changelog = changelog_offsets.find(tp);
    // The changelog's last complete checkpoint, or the group's offset if
    // that is further (a changelog turned on late).
    const int64_t restore_to =
        std::max(group_offset, in_changelog == changelog_offsets.end() ? -1 : in_changelog->second);
    if (core_->changelog && restore_to > 0 && (ps.restoring || ps.input_offset < restore_to)) {
      // The changelog holds more than this store (another instance ran the
      // partition, the store is lost, or a restore was cut short): it brings
      // the store up to its last complete checkpoint.
      CRM_ASSIGN_OR_RETURN(const ChangelogRestoreResult r,
                           RestoreChangelog(key, tp, ps, restore_to, what));
      from_changelog = r.records_applied > 0;
      CRM_ASSIGN_OR_RETURN(ps, store.GetPartition(key));
      if (ps.input_offset >= 0 && ps.input_offset < group_offset) {
        spdlog::warn(
            "{}: the changelog covers the input up to offset {}, the group committed {}: "
            "processing from {} again",
            what, ps.input_offset, group_offset, ps.input_offset);
      }
    }
    if (ps.restoring) {
      return Status::Corruption(store.path().string() + ": the state of " + what +
                                " is partially restored; move the store away to start afresh");
    }
    core_->EraseTask(tp, *delivery_);  // a re-assignment starts from the checkpoint again
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
      // What the group holds, when it is behind the state (a changelog
      // restore past offsets whose commit never landed): the delivery mode
      // decides whether to commit the checkpoint's.
      task.committed_offset = std::clamp<int64_t>(group_offset, -1, ps.input_offset);
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
    if (core_->changelog && ps.input_offset < 0 && group_offset < 0 &&
        (in_changelog == changelog_offsets.end() || in_changelog->second < 0) &&
        unset_starts_at_beginning) {
      task.never_checkpointed = true;
      first_from.push_back({p.topic, p.partition, kafka::kOffsetBeginning});
    }
    task.last_checkpoint = Clock::now();
    task.restored_from_changelog = from_changelog;
    restored.push_back({&task, sequence});
    if (ps.input_offset > 0) resume_from.push_back({p.topic, p.partition, ps.input_offset});
  }
  CRM_RETURN_NOT_OK(CheckInputsStillHold(rebuild_from, resume_from, first_from));
  CRM_RETURN_NOT_OK(delivery_->AfterRestore(restored));
  rebuilding_ = std::any_of(core_->tasks.begin(), core_->tasks.end(),
                            [](const auto& entry) { return entry.second.rebuild_until >= 0; });
  const double seconds = std::chrono::duration<double>(Clock::now() - started).count();
  spdlog::info("state restored for {} partition(s): {} customers in {:.3f} s", partitions.size(),
               customers, seconds);
  return Status::OK();
}

Result<ChangelogRestoreResult> TaskRestorer::RestoreChangelog(state::PartitionKey key,
                                                              const kafka::TopicPartition& tp,
                                                              const state::PartitionState& ps,
                                                              int64_t up_to_offset,
                                                              const std::string& what) {
  ChangelogRestoreOptions o;
  o.changelog_topic = core_->changelog_topics.find(tp.topic)->second;
  o.partition = tp.partition;
  // A restore cut short starts again from nothing.
  o.after_offset = ps.restoring ? -1 : ps.input_offset;
  o.up_to_offset = up_to_offset;
  o.what = what;
  o.buffer_bytes = RestoreBufferBytes(core_->memory_plan);
  spdlog::info("{}: restoring state from the changelog {} [{}]: {} up to input offset {}", what,
               o.changelog_topic, o.partition,
               o.after_offset < 0 ? "all of it"
                                  : "changes after input offset " + std::to_string(o.after_offset),
               up_to_offset);
  EngineProbe& probe = core_->probe;
  probe.ChangelogRestoreStarted();
  auto restored = RestoreFromChangelog(
      core_->client, core_->store.get(), key, o, [&](const ChangelogRestoreResult& r) {
        spdlog::info("{}: restoring from the changelog: {} of {} records ({:.0f}%), {:.1f} MB",
                     what, r.records_read, r.changelog_end,
                     r.changelog_end > 0 ? 100.0 * static_cast<double>(r.records_read) /
                                               static_cast<double>(r.changelog_end)
                                         : 100.0,
                     static_cast<double>(r.bytes_read) / 1e6);
      });
  if (!restored.ok()) {
    probe.ChangelogRestoreEnded(0, 0);
    return restored.status().WithContext(what);
  }
  const ChangelogRestoreResult& r = *restored;
  probe.ChangelogRestoreEnded(r.records_read, r.bytes_read);
  spdlog::info(
      "{}: restored from the changelog: {} records read, {} applied, {} beyond the committed "
      "offset skipped; {:.1f} MB in {:.3f} s ({:.0f} records/s); state at input offset {}",
      what, r.records_read, r.records_applied, r.records_beyond,
      static_cast<double>(r.bytes_read) / 1e6, r.seconds,
      r.seconds > 0 ? static_cast<double>(r.records_read) / r.seconds : 0.0, r.input_offset);
  return restored;
}

Status TaskRestorer::CheckInputsStillHold(std::span<const kafka::TopicPartitionOffset> rebuild_from,
                                          std::span<const kafka::TopicPartitionOffset> resume_from,
                                          std::span<const kafka::TopicPartitionOffset> first_from) {
  if (rebuild_from.empty() && resume_from.empty() && first_from.empty()) return Status::OK();
  // Where each input partition now begins: a rebuild needs all of it, a
  // checkpoint needs the records after it. Never skip records silently.
  std::vector<kafka::TopicPartitionOffset> from;
  std::map<kafka::TopicPartition, int64_t> needed;
  for (const auto& p : first_from) from.push_back(p);
  for (const auto* list : {&rebuild_from, &resume_from}) {
    for (const auto& p : *list) {
      from.push_back({p.topic, p.partition, kafka::kOffsetBeginning});
      needed[{p.topic, p.partition}] = std::max<int64_t>(0, p.offset);
    }
  }
  return kafka::ReadPartitionsToEnd(
      core_->client, from, {},
      [&](std::span<const kafka::PartitionEnd> ends) {
        for (const auto& e : ends) {
          const kafka::TopicPartition tp{e.topic, e.partition};
          const auto need_it = needed.find(tp);
          if (need_it == needed.end()) {
            // Only read (a first run needs nothing retained).
            if (auto task = core_->tasks.find(tp); task != core_->tasks.end()) {
              task->second.input_start_offset = e.start_offset;
            }
            continue;
          }
          const int64_t need = need_it->second;
          if (e.start_offset <= need) continue;
          const std::string what = e.topic + " [" + std::to_string(e.partition) + "]";
          if (need == 0) {
            return Status::Corruption(
                what +
                ": cannot rebuild its state: the changelog holds nothing for it and the input "
                "no longer starts at offset 0 (retention removed records up to offset " +
                std::to_string(e.start_offset) + ")");
          }
          return Status::Corruption(
              what + ": the state covers the input up to offset " + std::to_string(need) +
              ", but the input now begins at offset " + std::to_string(e.start_offset) +
              " (retention removed records the state never saw, and the changelog does not "
              "cover them): stopping rather than skip them");
        }
        return Status::OK();
      },
      nullptr);
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
