#include "crmstream/pipeline/stream_engine.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>

#include "crmstream/common/json_writer.h"
#include "crmstream/kafka/partition_reader.h"
#include "crmstream/kafka/topic_admin.h"
#include "crmstream/pipeline/partition_checkpoint.h"

namespace crmstream::pipeline {
namespace {

using Clock = std::chrono::steady_clock;

int64_t SteadyMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now().time_since_epoch())
      .count();
}

int64_t WallMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// How long a flush may wait for the brokers before the commit is skipped
// (and tried again next interval).
constexpr auto kFlushTimeout = std::chrono::seconds(30);

// Smallest per-partition dedup window (event ids).
constexpr size_t kMinDedupPerPartition = 10000;

constexpr auto kLagRefresh = std::chrono::milliseconds(500);
// How often the loop checks for idle blocks and for the end of the input.
constexpr auto kIdleCheck = std::chrono::milliseconds(100);

// Floor division: the broker-time slot of a timestamp (negative-safe).
int64_t FloorDiv(int64_t a, int64_t b) {
  int64_t q = a / b;
  if (a % b != 0 && a < 0) --q;
  return q;
}

// Metadata names of a task's exactly-once bookkeeping (outside the state
// families, so two runs of the same input dump the same state).
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
constexpr auto kQualityRefresh = std::chrono::seconds(1);

}  // namespace

DurationHistogram::DurationHistogram(std::span<const double> bounds) : bounds_(bounds) {
  // A programmer error, caught by every test that builds an engine.
  if (bounds.size() > kMaxBounds) std::abort();
}

void DurationHistogram::Observe(double seconds) {
  if (!(seconds >= 0)) seconds = 0;  // also maps NaN to 0
  size_t i = 0;
  while (i < bounds_.size() && seconds > bounds_[i]) ++i;
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  sum_ns_.fetch_add(static_cast<uint64_t>(std::llround(seconds * 1e9)), std::memory_order_relaxed);
}

StreamEngine::StreamEngine(config::EngineConfig config, ProcessorOptions processor_options)
    : config_(std::move(config)), processor_options_(std::move(processor_options)) {}

StreamEngine::~StreamEngine() = default;

Result<std::unique_ptr<StreamEngine>> StreamEngine::Create(
    const config::EngineConfig& config, const config::PipelineSpec& pipeline,
    std::shared_ptr<rocksdb::Env> state_env) {
  if (config.kafka.embedded()) {
    return Status::InvalidArgument("StreamEngine needs kafka.properties.bootstrap.servers");
  }
  ProcessorOptions options = ProcessorOptions::FromPipeline(pipeline);
  // The dedup window is configured for the whole input: each partition task
  // remembers its share, so memory stays what the user configured.
  int partitions = 0;
  for (const auto& t : config.inputs) partitions += t.partitions;
  if (options.dedup_capacity > 0) {
    options.dedup_capacity =
        std::max<size_t>(kMinDedupPerPartition,
                         options.dedup_capacity / static_cast<size_t>(std::max(1, partitions)));
  }
  auto engine = std::unique_ptr<StreamEngine>(new StreamEngine(config, std::move(options)));
  CRM_RETURN_NOT_OK(engine->processor_options_.Validate().WithContext(pipeline.file));

  engine->exactly_once_ = config.guarantee == config::Guarantee::kExactlyOnce;

  state::StateStoreOptions store_options;
  store_options.path = std::filesystem::path(config.state_dir) / state::kStoreSubdirectory;
  store_options.memory_cap_bytes = static_cast<size_t>(config.state.memory_cap_mb) << 20;
  store_options.sync = config.state.sync;
  store_options.write_timeout = std::chrono::milliseconds(config.state.write_timeout_ms);
  store_options.env = std::move(state_env);
  store_options.identity = config.kafka.group_id + "/" + pipeline.name;
  CRM_ASSIGN_OR_RETURN(engine->store_, state::StateStore::Open(store_options));
  engine->checkpoint_batch_.emplace(engine->store_->NewBatch());
  std::string windows;
  for (int d : pipeline.window_days) windows += (windows.empty() ? "" : ",") + std::to_string(d);
  CRM_RETURN_NOT_OK(engine->store_->PutMetadata(state::kFeatureWindowsMetadata, windows));

  kafka::ClientConfig client = MakeClientConfig(config.kafka);
  engine->client_ = client;
  const auto output_topics = OutputTopicNames(config.outputs);
  if (engine->exactly_once_) {
    // The engine partitions its outputs itself (exactly_once.h): it needs
    // the real partition counts.
    CRM_ASSIGN_OR_RETURN(auto admin, kafka::TopicAdmin::Create(client));
    for (int k = 0; k < kOutputKindCount; ++k) {
      auto ids = admin->ListPartitions(output_topics[k]);
      if (!ids.ok()) {
        return ids.status().WithContext("output topic " + output_topics[k] +
                                        " (exactly_once needs it to exist)");
      }
      engine->output_partitions_[k] = static_cast<int32_t>(ids->size());
    }
  }
  kafka::ProducerOptions producer_options;
  producer_options.linger_ms = config.producer_linger_ms;
  CRM_ASSIGN_OR_RETURN(engine->producer_, kafka::Producer::Create(client, producer_options));
  if (engine->exactly_once_) {
    for (const auto& t : output_topics) engine->producer_->TrackDeliveredOffsets(t);
  }
  engine->sink_ = std::make_unique<KafkaSink>(engine->producer_.get(), output_topics);
  kafka::ConsumerOptions consumer_options;
  consumer_options.listener = engine.get();
  // A restarted engine rejoins its group after one session timeout: keep it
  // short (librdkafka's default is 45 s) unless the user chose one.
  kafka::ClientConfig consumer_client = client;
  consumer_client.SetDefault("session.timeout.ms", "10000");
  consumer_client.SetDefault("heartbeat.interval.ms", "1000");
  CRM_ASSIGN_OR_RETURN(
      engine->consumer_,
      kafka::Consumer::Create(consumer_client, config.kafka.group_id, consumer_options));
  return engine;
}

const EventProcessor* StreamEngine::processor(const std::string& topic, int32_t partition) const {
  auto it = tasks_.find(kafka::TopicPartition{topic, partition});
  return it == tasks_.end() ? nullptr : it->second.processor.get();
}

void StreamEngine::OnAssigned(std::span<kafka::TopicPartitionOffset> partitions) {
  state_restored_.store(false);
  Status st = RestoreTasks(partitions);
  if (!st.ok()) {
    // Never process from half-restored state: the loop stops with this error.
    spdlog::error("restoring state: {}", st.ToString());
    if (rebalance_error_.ok()) rebalance_error_ = st;
  }
  rebuilding_ = Rebuilding();
  state_restored_.store(st.ok() && !rebuilding_);
  stats_.partitions.store(static_cast<int>(tasks_.size()), std::memory_order_relaxed);
  stats_.rebalances.fetch_add(1, std::memory_order_relaxed);
  spdlog::info("assigned {} partition(s); {} in total", partitions.size(), tasks_.size());
}

Status StreamEngine::RestoreTasks(std::span<kafka::TopicPartitionOffset> partitions) {
  const auto started = Clock::now();
  spdlog::info("restoring state of {} partition(s)", partitions.size());
  if (exactly_once_) {
    // Outputs of tasks this instance ran before (a revocation drops them
    // without a checkpoint) must be on the topics before the scan below
    // looks for them: one still in flight would be produced again.
    CRM_RETURN_NOT_OK(producer_->Flush(kFlushTimeout).WithContext("flushing outputs"));
  }
  std::vector<RestoredTask> restored;
  std::vector<kafka::TopicPartitionOffset> rebuild_from;
  uint64_t customers = 0;
  for (auto& p : partitions) {
    const kafka::TopicPartition tp{p.topic, p.partition};
    CRM_ASSIGN_OR_RETURN(state::PartitionKey key, store_->Partition(p.topic, p.partition));
    CRM_ASSIGN_OR_RETURN(state::PartitionState ps, store_->GetPartition(key));
    const std::string what = p.topic + " [" + std::to_string(p.partition) + "]";
    if (ps.restoring) {
      return Status::Corruption(store_->path().string() + ": the state of " + what +
                                " is partially restored; move the store away to start afresh");
    }
    tasks_.erase(tp);  // a re-assignment starts from the checkpoint again
    last_task_ = nullptr;
    PartitionTask& task = NewTask(tp);
    task.key = key;
    CRM_ASSIGN_OR_RETURN(const uint64_t sequence,
                         RestoreProcessor(*store_, key, task.processor.get()));
    customers += task.processor->feature_store().size();
    if (ps.input_offset >= 0) {
      // The checkpoint's offset wins over the group's: state and position
      // must match.
      p.offset = ps.input_offset;
      task.next_offset = ps.input_offset;
      task.checkpointed_offset = ps.input_offset;
    } else {
      // No local state. If the group committed an offset for the partition,
      // this engine had state for it that is gone (a lost store, or a
      // corrupt one moved away): rebuild it by processing the input again
      // from its beginning. The input is the state's changelog: processing
      // is deterministic, so the rebuilt state is the lost one.
      const std::array<kafka::TopicPartition, 1> one{tp};
      auto committed = consumer_->Committed(one, std::chrono::seconds(10));
      if (!committed.ok()) return committed.status().WithContext(what + ": committed offset");
      if ((*committed)[0].offset > 0) {
        p.offset = kafka::kOffsetBeginning;
        task.rebuild_until = (*committed)[0].offset;
        rebuild_from.push_back({p.topic, p.partition, kafka::kOffsetBeginning});
        spdlog::warn(
            "{}: no local state but the group had processed up to offset {}: rebuilding "
            "the state from the input's beginning",
            what, task.rebuild_until);
      }
    }
    task.last_checkpoint = Clock::now();
    if (!exactly_once_) continue;

    task.stamping->set_next_sequence(sequence);
    CRM_ASSIGN_OR_RETURN(auto positions, store_->GetMetadata(PositionsName(tp)));
    if (positions) {
      CRM_ASSIGN_OR_RETURN(task.positions, OutputPositions::Decode(*positions, output_partitions_));
    }
    CRM_ASSIGN_OR_RETURN(auto closes, store_->GetMetadata(LoggedClosesName(tp)));
    if (closes) {
      CRM_ASSIGN_OR_RETURN(task.logged_closes, DecodeOffsets(*closes));
      // Closes at or before the checkpoint are in it already.
      while (!task.logged_closes.empty() && task.logged_closes.front() <= task.next_offset) {
        task.logged_closes.pop_front();
      }
    }
    // A rebuild re-generates every output from the first: look for them from
    // the beginning of the output topics (positions unknown).
    const bool rebuilding = task.rebuild_until >= 0;
    restored.push_back({task.stamping.get(), positions || rebuilding ? &task.positions : nullptr});
  }
  if (!rebuild_from.empty()) {
    // Only a complete input rebuilds the state: retention must not have
    // removed its first records.
    Status complete = kafka::ReadPartitionsToEnd(
        client_, rebuild_from, {},
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
        nullptr);
    CRM_RETURN_NOT_OK(complete);
  }
  if (exactly_once_ && !restored.empty()) {
    // What a crashed predecessor delivered after the checkpoint. A task
    // without positions has never run here: none of its outputs can be there,
    // and from now on its outputs start at the current ends.
    std::vector<RestoredTask> scanned;
    for (const auto& r : restored) {
      if (r.from != nullptr) scanned.push_back(r);
    }
    OutputPositions ends(output_partitions_);
    CRM_RETURN_NOT_OK(
        FindDeliveredOutputs(client_, sink_->topics(), output_partitions_, scanned, &ends)
            .WithContext("finding outputs delivered before the restart"));
    for (auto& [tp, task] : tasks_) {
      if (!task.stamping) continue;
      for (const auto& r : restored) {
        if (r.sink != task.stamping.get() || r.from != nullptr) continue;
        // First run of this task: record where its outputs begin before any
        // is produced (synced), so a crash before its first checkpoint is
        // covered too.
        task.positions = ends;
        CRM_RETURN_NOT_OK(store_->PutMetadata(PositionsName(tp), task.positions.Encode()));
      }
    }
  }
  const double seconds = std::chrono::duration<double>(Clock::now() - started).count();
  spdlog::info("state restored for {} partition(s): {} customers in {:.3f} s", partitions.size(),
               customers, seconds);
  return Status::OK();
}

void StreamEngine::OnRevoked(std::span<const kafka::TopicPartition> partitions) {
  std::vector<kafka::TopicPartition> revoked(partitions.begin(), partitions.end());
  if (!exactly_once_) {
    Status st = CommitProcessed(&revoked);
    if (!st.ok()) {
      // Another member will re-process from the last checkpoint: at-least-once.
      spdlog::warn("checkpoint before revocation failed: {}", st.ToString());
    }
  }
  // exactly_once: an open block is not closed here (that would be a close
  // the input did not decide); the next owner re-processes it from the
  // checkpoint and drops what was already delivered.
  PublishStats();
  for (const auto& tp : revoked) tasks_.erase(tp);
  last_task_ = nullptr;
  stats_.partitions.store(static_cast<int>(tasks_.size()), std::memory_order_relaxed);
  stats_.rebalances.fetch_add(1, std::memory_order_relaxed);
  spdlog::info("revoked {} partition(s); {} left", partitions.size(), tasks_.size());
}

StreamEngine::PartitionTask& StreamEngine::NewTask(const kafka::TopicPartition& tp) {
  PartitionTask task;
  OutputSink* sink = sink_.get();
  if (exactly_once_) {
    task.stamping = std::make_unique<StampingSink>(sink_.get(), config_.kafka.group_id, tp.topic,
                                                   tp.partition, output_partitions_);
    task.positions = OutputPositions(output_partitions_);
    sink = task.stamping.get();
  }
  // The options passed Validate() in Create(): this cannot fail.
  task.processor = std::move(EventProcessor::Create(processor_options_, sink)).value();
  return tasks_.emplace(tp, std::move(task)).first->second;
}

StreamEngine::PartitionTask& StreamEngine::TaskFor(std::string_view topic, int32_t partition) {
  if (last_task_ && last_key_.partition == partition && last_key_.topic == topic) {
    return *last_task_;
  }
  kafka::TopicPartition key{std::string(topic), partition};
  auto it = tasks_.find(key);
  PartitionTask& task = it == tasks_.end() ? NewTask(key) : it->second;
  last_key_ = std::move(key);
  last_task_ = &task;
  return task;
}

Status StreamEngine::CommitProcessed(const std::vector<kafka::TopicPartition>* only) {
  std::vector<PartitionTask*> due;
  for (auto& [tp, task] : tasks_) {
    if (only && std::find(only->begin(), only->end(), tp) == only->end()) continue;
    task.processor->FlushOutputs();
    if (task.next_offset >= 0 && task.next_offset != task.checkpointed_offset) {
      due.push_back(&task);
    }
  }
  if (!only) {
    // Every output of the records processed so far is now with the producer.
    if (oldest_unflushed_ms_ > 0) {
      stats_.event_to_output.Observe(
          static_cast<double>(std::max<int64_t>(0, WallMs() - oldest_unflushed_ms_)) * 1e-3);
    }
    oldest_unflushed_ms_ = -1;
  }
  if (due.empty()) return Status::OK();
  return Checkpoint(due);
}

Status StreamEngine::Checkpoint(std::span<PartitionTask* const> tasks) {
  const auto started = Clock::now();
  stats_.checkpoint_started_ms.store(SteadyMs(), std::memory_order_relaxed);
  // While running, a stop cancels a checkpoint that waits on the store;
  // after the stop, the final one has until the drain deadline.
  const std::atomic<bool>* cancel = draining_ ? nullptr : stop_;
  auto flush_timeout = std::chrono::duration_cast<std::chrono::milliseconds>(kFlushTimeout);
  if (draining_) {
    flush_timeout =
        std::clamp(std::chrono::duration_cast<std::chrono::milliseconds>(drain_deadline_ - started),
                   std::chrono::milliseconds(0), flush_timeout);
  }
  // Outputs first: a checkpoint covers a record only once everything it
  // produced is acknowledged.
  Status st = producer_->Flush(flush_timeout).WithContext("flushing outputs");
  if (st.ok()) st = sink_->first_error();
  if (st.ok() && producer_->failed_count() != delivery_failures_seen_) {
    // An output the brokers never took: the checkpoint must not claim its
    // record. Fatal for this run; a restart re-processes from the last
    // checkpoint (exactly_once: dropping what was delivered).
    st = Status::Unavailable(
        std::to_string(producer_->failed_count() - delivery_failures_seen_) +
        " output record(s) could not be delivered: " + producer_->last_delivery_error().ToString());
    delivery_failures_seen_ = producer_->failed_count();
    fatal_ = st;
  }
  if (st.ok()) st = producer_->FatalError();
  state::CheckpointBatch& batch = *checkpoint_batch_;
  batch.Clear();
  for (PartitionTask* task : tasks) {
    if (!st.ok()) break;
    const uint64_t sequence = task->stamping ? task->stamping->next_sequence() : 0;
    st = AddToCheckpoint(*task->processor, sequence, task->key, &batch, &checkpoint_scratch_);
    batch.SetInputOffset(task->key, task->next_offset);
    if (task->stamping) {
      const kafka::TopicPartition tp{std::string(task->stamping->input_topic()),
                                     task->stamping->input_partition()};
      task->positions.AdvanceToDelivered(*producer_, sink_->topics());
      batch.PutMetadata(PositionsName(tp), task->positions.Encode());
      if (!task->logged_closes.empty()) {
        task->logged_closes.clear();
        batch.DeleteMetadata(LoggedClosesName(tp));
      }
    }
  }
  const uint64_t bytes = batch.byte_size();
  if (st.ok()) st = store_->Commit(&batch, cancel, drain_deadline_);
  RecordCheckpoint(std::chrono::duration<double>(Clock::now() - started).count(), bytes, st.ok());
  stats_.checkpoint_started_ms.store(-1, std::memory_order_relaxed);
  if (st.ok()) {
    stats_.checkpoint_failing_since_ms.store(-1, std::memory_order_relaxed);
  } else if (stats_.checkpoint_failing_since_ms.load(std::memory_order_relaxed) < 0) {
    stats_.checkpoint_failing_since_ms.store(SteadyMs(), std::memory_order_relaxed);
  }
  if (!st.ok()) return st;
  std::vector<kafka::TopicPartitionOffset> offsets;
  for (PartitionTask* task : tasks) {
    MarkCheckpointed(task->processor.get());
    task->checkpointed_offset = task->next_offset;
    task->last_checkpoint = Clock::now();
  }
  for (auto& [tp, task] : tasks_) {
    if (task.checkpointed_offset >= 0 && task.checkpointed_offset != task.committed_offset) {
      offsets.push_back({tp.topic, tp.partition, task.checkpointed_offset});
      task.committed_offset = task.checkpointed_offset;
    }
  }
  // The group's offsets follow the store (for lag monitoring and tools);
  // the store's win on restart, so a lost commit costs nothing.
  if (!offsets.empty()) {
    Status committed = consumer_->CommitOffsets(offsets, /*async=*/true);
    if (!committed.ok()) spdlog::warn("committing offsets: {}", committed.ToString());
  }
  stats_.commits.fetch_add(1, std::memory_order_relaxed);
  return Status::OK();
}

Status StreamEngine::CloseBlock(PartitionTask* task, bool checkpoint) {
  task->processor->FlushOutputs();
  task->block_open = false;
  if (!checkpoint && Clock::now() - task->last_checkpoint <
                         std::chrono::milliseconds(config_.commit_interval_ms)) {
    return Status::OK();
  }
  PartitionTask* one[] = {task};
  return Checkpoint(one);
}

Status StreamEngine::CloseBlockLogged(const kafka::TopicPartition& tp, PartitionTask* task) {
  // Logged (synced) before any of its outputs exists: a replay after a crash
  // closes the block at the same offset and regenerates the same outputs.
  task->logged_closes.push_back(task->next_offset);
  CRM_RETURN_NOT_OK(store_->PutMetadata(LoggedClosesName(tp), EncodeOffsets(task->logged_closes)));
  return CloseBlock(task, /*checkpoint=*/true);
}

Status StreamEngine::CloseIdleBlocks(bool all) {
  const int64_t now = SteadyMs();
  // A live input pauses often: wait a commit interval of quiet before
  // closing. Run until caught up, the end of the input is the end.
  const int64_t quiet_ms = until_caught_up_ ? 0 : config_.commit_interval_ms;
  for (auto& [tp, task] : tasks_) {
    if (!task.block_open) continue;
    if (!all) {
      // Only a partition that is caught up and quiet: otherwise its next
      // record decides the close.
      if (now - task.last_record_ms < quiet_ms) continue;
      if (TaskLag(tp, task) != 0) continue;
    }
    CRM_RETURN_NOT_OK(CloseBlockLogged(tp, &task));
  }
  // Tasks whose last block closed without a checkpoint (the interval had
  // not passed) and that have nothing new: checkpoint them now.
  std::vector<PartitionTask*> due;
  for (auto& [tp, task] : tasks_) {
    if (!task.block_open && task.next_offset >= 0 && task.next_offset != task.checkpointed_offset &&
        (all || now - task.last_record_ms >= quiet_ms)) {
      due.push_back(&task);
    }
  }
  if (due.empty()) return Status::OK();
  return Checkpoint(due);
}

bool StreamEngine::Rebuilding() const {
  for (const auto& [tp, task] : tasks_) {
    if (task.rebuild_until >= 0) return true;
  }
  return false;
}

void StreamEngine::TrackRebuilds() {
  const auto now = Clock::now();
  const bool report = now - last_rebuild_report_ >= std::chrono::seconds(2);
  bool any = false;
  for (auto& [tp, task] : tasks_) {
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
  if (report) last_rebuild_report_ = now;
  // Never serve half-restored state: not ready (and no customer answers)
  // until every partition is rebuilt.
  if (!any && rebuilding_) state_restored_.store(true);
  rebuilding_ = any;
}

bool StreamEngine::CaughtUp() const {
  if (tasks_.empty() || !state_restored_.load()) return false;
  for (const auto& [tp, task] : tasks_) {
    if (task.block_open || task.next_offset != task.checkpointed_offset) return false;
    if (TaskLag(tp, task) != 0) return false;
  }
  return true;
}

int64_t StreamEngine::TaskLag(const kafka::TopicPartition& tp, const PartitionTask& task) const {
  if (task.next_offset < 0) {
    // Nothing processed: the consumer's own view (0 for an empty partition).
    auto lag = consumer_->Lag(tp.topic, tp.partition);
    return lag.ok() ? *lag : -1;
  }
  // Measured from what the task processed: after a restart at the end of a
  // partition the consumer has no position until a record arrives.
  auto high = consumer_->HighWatermark(tp.topic, tp.partition);
  return high.ok() ? std::max<int64_t>(0, *high - task.next_offset) : -1;
}

void StreamEngine::PublishStats() {
  auto publish = [](std::atomic<uint64_t>& total, uint64_t now, uint64_t* published) {
    total.fetch_add(now - *published, std::memory_order_relaxed);
    *published = now;
  };
  for (auto& [tp, task] : tasks_) {
    const ProcessorCounters& c = task.processor->counters();
    publish(stats_.received, c.received.Get(), &task.published_received);
    publish(stats_.accepted, c.accepted.Get(), &task.published_accepted);
    publish(stats_.duplicates, c.duplicates.Get(), &task.published_duplicates);
    publish(stats_.rejected, c.rejected.Get(), &task.published_rejected);
    for (int i = 0; i < kSeverityCount; ++i) {
      publish(stats_.churn_alerts[i], c.alerts_by_severity[i].Get(), &task.published_alerts[i]);
    }
    for (int k = 0; k < kOutputKindCount; ++k) {
      publish(stats_.outputs[k], c.outputs[k].Get(), &task.published_outputs[k]);
    }
    for (int t = 0; t < ingest::kEventTypeCount; ++t) {
      publish(stats_.accepted_by_type[t], c.by_type[t].Get(), &task.published_by_type[t]);
    }
    for (size_t r = 0; r < c.by_reason.size(); ++r) {
      publish(stats_.rejected_by_reason[r], c.by_reason[r].Get(), &task.published_by_reason[r]);
    }
  }
  for (auto& [tp, task] : tasks_) {
    if (task.stamping) {
      publish(stats_.suppressed_outputs, task.stamping->suppressed(), &task.published_suppressed);
    }
  }
  stats_.delivered.store(producer_->delivered_count(), std::memory_order_relaxed);
  stats_.delivery_failures.store(producer_->failed_count(), std::memory_order_relaxed);
}

void StreamEngine::RefreshLag() {
  auto lags = consumer_->LagSnapshot();
  if (!lags.ok()) return;
  int64_t total = 0;
  for (const auto& l : *lags) {
    if (l.lag < 0) {
      total = -1;
      break;
    }
    total += l.lag;
  }
  stats_.lag.store(total, std::memory_order_relaxed);
  // A reader copying the previous snapshot: publish next time rather than wait.
  std::unique_lock lock(snapshot_mutex_, std::try_to_lock);
  if (lock.owns_lock()) lag_by_partition_ = std::move(*lags);
}

void StreamEngine::RefreshQuality() {
  ModelQualitySnapshot q;
  double auc_weighted = 0, log_loss_weighted = 0, warm_auc_weighted = 0, squared_error = 0,
         squared_distance = 0, anomalies = 0;
  for (const auto& [tp, task] : tasks_) {
    const auto pq = task.processor->customer_models().quality();
    ++q.partitions;
    const uint64_t labels = pq.churn_positives + pq.churn_negatives;
    q.churn_labels += labels;
    auc_weighted += pq.churn_auc * static_cast<double>(labels);
    log_loss_weighted += pq.churn_log_loss * static_cast<double>(labels);
    q.warm_churn_labels += pq.warm_churn_labels;
    warm_auc_weighted += pq.warm_churn_auc * static_cast<double>(pq.warm_churn_labels);
    q.value_labels += pq.value_labels;
    squared_error += pq.value_rmse * pq.value_rmse * static_cast<double>(pq.value_labels);
    q.kmeans_points += pq.kmeans_points;
    squared_distance += pq.kmeans_mean_squared_distance * static_cast<double>(pq.kmeans_points);
    q.anomaly_scored += pq.anomaly_scored;
    anomalies += pq.anomaly_rate * static_cast<double>(pq.anomaly_scored);
    q.customers += task.processor->feature_store().size();
    q.feature_store_bytes += task.processor->feature_store().MemoryUsageBytes();
  }
  auto mean = [](double weighted, uint64_t n, double none) {
    return n == 0 ? none : weighted / static_cast<double>(n);
  };
  q.churn_auc = mean(auc_weighted, q.churn_labels, 0.5);
  q.churn_log_loss = mean(log_loss_weighted, q.churn_labels, 0.0);
  q.warm_churn_auc = mean(warm_auc_weighted, q.warm_churn_labels, 0.5);
  q.value_rmse = std::sqrt(mean(squared_error, q.value_labels, 0.0));
  q.kmeans_mean_squared_distance = mean(squared_distance, q.kmeans_points, 0.0);
  q.anomaly_rate = mean(anomalies, q.anomaly_scored, 0.0);
  std::unique_lock lock(snapshot_mutex_, std::try_to_lock);
  if (lock.owns_lock()) quality_ = q;
}

std::vector<kafka::PartitionLag> StreamEngine::LagByPartition() const {
  std::lock_guard lock(snapshot_mutex_);
  return lag_by_partition_;
}

ModelQualitySnapshot StreamEngine::ModelQuality() const {
  std::lock_guard lock(snapshot_mutex_);
  return quality_;
}

EngineHealth StreamEngine::Health(std::chrono::milliseconds stall_after) const {
  EngineHealth h;
  switch (loop_state_.load()) {
    case LoopState::kNotStarted:
      h.live = true;  // starting up is not a failure
      h.reason = "engine loop not started yet";
      return h;
    case LoopState::kStopped:
      h.reason = "engine loop stopped";
      return h;
    case LoopState::kRunning:
      break;
  }
  const int64_t now_ms = SteadyMs();
  const int64_t checkpoint_started = stats_.checkpoint_started_ms.load(std::memory_order_relaxed);
  if (checkpoint_started >= 0 && now_ms - checkpoint_started > stall_after.count()) {
    h.reason = "checkpoint stalled: running for " + std::to_string(now_ms - checkpoint_started) +
               " ms (see the crmstream_rocksdb_ metrics and the store's LOG file)";
    return h;
  }
  const int64_t idle_ms = now_ms - loop_heartbeat_ms_.load(std::memory_order_relaxed);
  if (idle_ms > stall_after.count()) {
    h.reason = "engine loop stalled: no iteration for " + std::to_string(idle_ms) + " ms";
    return h;
  }
  const int64_t failing_since = stats_.checkpoint_failing_since_ms.load(std::memory_order_relaxed);
  if (failing_since >= 0 && now_ms - failing_since > stall_after.count()) {
    h.reason = "checkpoints failing for " + std::to_string(now_ms - failing_since) +
               " ms (see the log and crmstream_checkpoint_failures_total)";
    return h;
  }
  h.live = true;
  if (stats_.partitions.load(std::memory_order_relaxed) == 0) {
    h.reason = "no partitions assigned";
  } else if (!state_restored_.load()) {
    h.reason = "state not restored yet";
  } else {
    h.ready = true;
  }
  return h;
}

void StreamEngine::RecordCheckpoint(double seconds, uint64_t bytes, bool ok) {
  stats_.checkpoint_duration.Observe(seconds);
  if (!ok) {
    stats_.checkpoint_failures.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  stats_.checkpoints.fetch_add(1, std::memory_order_relaxed);
  stats_.checkpoint_bytes.store(static_cast<int64_t>(bytes), std::memory_order_relaxed);
  stats_.last_checkpoint_unix_ms.store(WallMs(), std::memory_order_relaxed);
}

Result<std::shared_ptr<const CustomerQuery>> StreamEngine::SubmitCustomerQuery(
    std::string customer_id) {
  auto query = std::make_shared<CustomerQuery>(std::move(customer_id));
  std::lock_guard lock(query_mutex_);
  // Checked under the lock: FailQueries() runs under it after the loop ends.
  if (loop_state_.load() != LoopState::kRunning) {
    return Status::Unavailable("engine loop is not running");
  }
  if (queries_.size() >= kMaxQueuedQueries) {
    return Status::Unavailable("too many queries waiting");
  }
  queries_.push_back(query);
  queries_pending_.store(true, std::memory_order_relaxed);
  return std::shared_ptr<const CustomerQuery>(std::move(query));
}

void StreamEngine::AnswerQueries() {
  std::vector<std::shared_ptr<CustomerQuery>> queries;
  {
    std::lock_guard lock(query_mutex_);
    queries.swap(queries_);
    queries_pending_.store(false, std::memory_order_relaxed);
  }
  for (auto& q : queries) {
    if (rebuilding_) {
      q->Finish(Status::Unavailable("state being rebuilt"));
      continue;
    }
    bool found = false;
    for (const auto& [tp, task] : tasks_) {
      if (!task.processor->WriteCustomerRecord(q->customer_id(), &q->json_)) continue;
      // The crm.customer-scores record, plus where the customer lives: the
      // record's closing brace gives way to the location's fields.
      std::string location;
      JsonWriter w(&location);
      w.BeginObject();
      w.Field("topic", std::string_view(tp.topic));
      w.Field("partition", tp.partition);
      w.EndObject();
      q->json_.back() = ',';
      q->json_.append(location, 1);
      found = true;
      break;
    }
    if (!found) {
      q->Finish(Status::NotFound("unknown customer"));
      continue;
    }
    q->Finish(Status::OK());
  }
}

void StreamEngine::FailQueries() {
  std::lock_guard lock(query_mutex_);
  for (auto& q : queries_) q->Finish(Status::Unavailable("engine loop stopped"));
  queries_.clear();
  queries_pending_.store(false, std::memory_order_relaxed);
}

Status StreamEngine::Run(const std::atomic<bool>& stop, const RunOptions& options) {
  std::vector<std::string> topics;
  for (const auto& t : config_.inputs) topics.push_back(t.name);
  if (Status subscribed = consumer_->Subscribe(topics); !subscribed.ok()) {
    loop_state_.store(LoopState::kStopped);
    return subscribed;
  }

  kafka::MessageBatch batch(static_cast<size_t>(config_.consume_batch_size));
  const auto commit_interval = std::chrono::milliseconds(config_.commit_interval_ms);
  auto last_commit = Clock::now();
  auto last_lag = Clock::now();
  auto last_quality = Clock::now();
  auto last_idle_check = Clock::now();
  Status result;
  bool caught_up = false;
  until_caught_up_ = options.until_caught_up;
  stop_ = &stop;
  draining_ = false;
  drain_deadline_ = Clock::time_point::max();
  loop_heartbeat_ms_.store(SteadyMs(), std::memory_order_relaxed);
  loop_state_.store(LoopState::kRunning);

  while (!stop.load(std::memory_order_relaxed)) {
    auto consumed = consumer_->ConsumeBatch(config_.poll_timeout_ms, &batch);
    if (!consumed.ok()) {
      // Transport errors are retried by librdkafka; keep polling.
      spdlog::warn("consume: {}", consumed.status().ToString());
    }
    if (!rebalance_error_.ok()) {
      result = rebalance_error_;
      break;
    }
    if (!fatal_.ok()) {
      result = fatal_;
      break;
    }
    const auto batch_start = Clock::now();
    const int64_t now_ms = WallMs();
    if (batch.size() > 0 && oldest_unflushed_ms_ < 0) {
      // The event-to-output sample of the next flush.
      oldest_unflushed_ms_ = batch[0].timestamp_ms();
    }
    for (size_t i = 0; i < batch.size() && result.ok(); ++i) {
      kafka::MessageView m = batch[i];
      PartitionTask& task = TaskFor(m.topic(), m.partition());
      ingest::SourcePosition pos{m.topic(), m.partition(), m.offset()};
      if (!exactly_once_) {
        task.processor->Process(m.payload(), pos, now_ms);
        task.next_offset = m.offset() + 1;
        continue;
      }
      // Exactly-once: block boundaries and "now" come from the input.
      const int64_t timestamp = std::max<int64_t>(0, m.timestamp_ms());
      const int64_t slot = FloorDiv(timestamp, config_.commit_interval_ms);
      if (task.block_open && (slot != task.block_slot || m.offset() % kMaxBlockRecords == 0)) {
        result = CloseBlock(&task, /*checkpoint=*/false);
      }
      task.processor->Process(m.payload(), pos, timestamp);
      task.next_offset = m.offset() + 1;
      task.block_open = true;
      task.block_slot = slot;
      if (!task.logged_closes.empty() && task.logged_closes.front() == task.next_offset) {
        // A replay reaching a close its predecessor logged.
        task.logged_closes.pop_front();
        result = CloseBlock(&task, /*checkpoint=*/true);
      }
    }
    const bool had_records = batch.size() > 0;
    batch.Clear();
    if (!result.ok()) break;
    if (rebuilding_ || had_records) TrackRebuilds();
    if (had_records && exactly_once_) {
      const int64_t steady = SteadyMs();
      for (auto& [tp, task] : tasks_) {
        if (task.block_open) task.last_record_ms = std::max(task.last_record_ms, steady);
      }
    }
    // at_least_once: alerts, segment changes and customer anomalies of this
    // batch's customers now; their customer-scores records wait for the
    // commit. (exactly_once: at block closes.)
    if (had_records && !exactly_once_) {
      for (auto& [tp, task] : tasks_) task.processor->RefreshScores();
    }
    producer_->Poll(std::chrono::milliseconds(0));
    if (!sink_->first_error().ok()) {
      result = sink_->first_error().WithContext("producing outputs");
      break;
    }
    const auto now = Clock::now();
    if (had_records) {
      stats_.batches.fetch_add(1, std::memory_order_relaxed);
      stats_.batch_duration.Observe(std::chrono::duration<double>(now - batch_start).count());
    }
    PublishStats();
    if (queries_pending_.load(std::memory_order_relaxed)) AnswerQueries();
    if (!exactly_once_ && now - last_commit >= commit_interval) {
      Status st = CommitProcessed();
      if (!st.ok()) {
        stats_.commit_failures.fetch_add(1, std::memory_order_relaxed);
        spdlog::warn("checkpoint: {} (will retry)", st.ToString());
      }
      last_commit = now;
    }
    if (now - last_idle_check >= kIdleCheck) {
      last_idle_check = now;
      if (exactly_once_) {
        result = CloseIdleBlocks(/*all=*/false);
        if (!result.ok()) break;
      }
      if (options.until_caught_up) {
        if (!exactly_once_ && !had_records) {
          Status st = CommitProcessed();
          if (!st.ok()) spdlog::warn("checkpoint: {} (will retry)", st.ToString());
        }
        if (CaughtUp()) {
          caught_up = true;
          break;
        }
      }
    }
    if (now - last_lag >= kLagRefresh) {
      RefreshLag();
      last_lag = now;
    }
    if (now - last_quality >= kQualityRefresh) {
      RefreshQuality();
      last_quality = now;
    }
    loop_heartbeat_ms_.store(SteadyMs(), std::memory_order_relaxed);
  }

  loop_state_.store(LoopState::kStopped);
  FailQueries();
  // Drain: everything processed is delivered and checkpointed before
  // leaving, within the shutdown bound.
  draining_ = true;
  drain_deadline_ = Clock::now() + std::chrono::milliseconds(config_.shutdown_timeout_ms);
  Status st;
  if (result.ok()) {
    if (exactly_once_) {
      // Open blocks close at a logged offset: a replay would close them there too.
      st = CloseIdleBlocks(/*all=*/true);
    } else {
      st = CommitProcessed();
    }
  }
  if (!st.ok()) {
    stats_.commit_failures.fetch_add(1, std::memory_order_relaxed);
    spdlog::error(
        "stopping without a final checkpoint: {}. The state resumes from the last checkpoint; "
        "records processed since then are processed again at the next start",
        st.ToString());
  } else if (stats_.checkpoints.load(std::memory_order_relaxed) > 0) {
    spdlog::info("final checkpoint written");
  }
  if (caught_up) spdlog::info("caught up with the input: stopping");
  PublishStats();
  RefreshQuality();
  Status closed = consumer_->Close();
  if (!closed.ok()) spdlog::warn("closing consumer: {}", closed.ToString());
  if (result.ok() && !st.ok()) result = st;
  return result;
}

}  // namespace crmstream::pipeline
