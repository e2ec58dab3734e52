#include "crmstream/pipeline/stream_engine.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cmath>

#include "crmstream/common/json_writer.h"

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

Result<std::unique_ptr<StreamEngine>> StreamEngine::Create(const config::EngineConfig& config,
                                                           const config::PipelineSpec& pipeline) {
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

  kafka::ClientConfig client = MakeClientConfig(config.kafka);
  kafka::ProducerOptions producer_options;
  producer_options.linger_ms = config.producer_linger_ms;
  CRM_ASSIGN_OR_RETURN(engine->producer_, kafka::Producer::Create(client, producer_options));
  engine->sink_ =
      std::make_unique<KafkaSink>(engine->producer_.get(), OutputTopicNames(config.outputs));
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
  for (auto& p : partitions) {
    TaskFor(p.topic, p.partition);
    // Start from the group's committed offsets (kOffsetCommitted): the state
    // store will supply its own checkpointed offsets here.
  }
  stats_.partitions.store(static_cast<int>(tasks_.size()), std::memory_order_relaxed);
  stats_.rebalances.fetch_add(1, std::memory_order_relaxed);
  spdlog::info("assigned {} partition(s); {} in total", partitions.size(), tasks_.size());
}

void StreamEngine::OnRevoked(std::span<const kafka::TopicPartition> partitions) {
  std::vector<kafka::TopicPartition> revoked(partitions.begin(), partitions.end());
  Status st = CommitProcessed(&revoked);
  if (!st.ok()) {
    // Another member will re-process from the last commit: at-least-once.
    spdlog::warn("commit before revocation failed: {}", st.ToString());
  }
  PublishStats();
  for (const auto& tp : revoked) tasks_.erase(tp);
  last_task_ = nullptr;
  stats_.partitions.store(static_cast<int>(tasks_.size()), std::memory_order_relaxed);
  stats_.rebalances.fetch_add(1, std::memory_order_relaxed);
  spdlog::info("revoked {} partition(s); {} left", partitions.size(), tasks_.size());
}

StreamEngine::PartitionTask& StreamEngine::TaskFor(std::string_view topic, int32_t partition) {
  if (last_task_ && last_key_.partition == partition && last_key_.topic == topic) {
    return *last_task_;
  }
  kafka::TopicPartition key{std::string(topic), partition};
  auto it = tasks_.find(key);
  if (it == tasks_.end()) {
    PartitionTask task;
    task.processor = std::make_unique<EventProcessor>(processor_options_, sink_.get());
    it = tasks_.emplace(key, std::move(task)).first;
  }
  last_key_ = std::move(key);
  last_task_ = &it->second;
  return it->second;
}

Status StreamEngine::CommitProcessed(const std::vector<kafka::TopicPartition>* only) {
  std::vector<kafka::TopicPartitionOffset> offsets;
  for (auto& [tp, task] : tasks_) {
    if (only && std::find(only->begin(), only->end(), tp) == only->end()) continue;
    task.processor->FlushOutputs();
    if (task.next_offset >= 0 && task.next_offset != task.committed_offset) {
      offsets.push_back({tp.topic, tp.partition, task.next_offset});
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
  if (offsets.empty()) return Status::OK();
  // Outputs first: an offset is committed only once everything it produced
  // is acknowledged.
  CRM_RETURN_NOT_OK(producer_->Flush(kFlushTimeout).WithContext("flushing outputs"));
  if (!sink_->first_error().ok()) return sink_->first_error();
  CRM_RETURN_NOT_OK(consumer_->CommitOffsets(offsets, /*async=*/false));
  for (const auto& o : offsets) {
    tasks_[kafka::TopicPartition{o.topic, o.partition}].committed_offset = o.offset;
  }
  stats_.commits.fetch_add(1, std::memory_order_relaxed);
  return Status::OK();
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
    const CustomerModels& m = task.processor->customer_models();
    const CustomerModels::Quality pq = m.quality();
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
  const int64_t idle_ms = SteadyMs() - loop_heartbeat_ms_.load(std::memory_order_relaxed);
  if (idle_ms > stall_after.count()) {
    h.reason = "engine loop stalled: no iteration for " + std::to_string(idle_ms) + " ms";
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

Status StreamEngine::Run(const std::atomic<bool>& stop) {
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
  Status result;
  loop_heartbeat_ms_.store(SteadyMs(), std::memory_order_relaxed);
  loop_state_.store(LoopState::kRunning);

  while (!stop.load(std::memory_order_relaxed)) {
    auto consumed = consumer_->ConsumeBatch(config_.poll_timeout_ms, &batch);
    if (!consumed.ok()) {
      // Transport errors are retried by librdkafka; keep polling.
      spdlog::warn("consume: {}", consumed.status().ToString());
    }
    const auto batch_start = Clock::now();
    const int64_t now_ms = WallMs();
    if (batch.size() > 0 && oldest_unflushed_ms_ < 0) {
      // The event-to-output sample of the next flush.
      oldest_unflushed_ms_ = batch[0].timestamp_ms();
    }
    for (size_t i = 0; i < batch.size(); ++i) {
      kafka::MessageView m = batch[i];
      PartitionTask& task = TaskFor(m.topic(), m.partition());
      ingest::SourcePosition pos{m.topic(), m.partition(), m.offset()};
      task.processor->Process(m.payload(), pos, now_ms);
      task.next_offset = m.offset() + 1;
    }
    const bool had_records = batch.size() > 0;
    batch.Clear();
    // Alerts, segment changes and customer anomalies of this batch's
    // customers now; their customer-scores records wait for the commit.
    if (had_records) {
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
    if (now - last_commit >= commit_interval) {
      Status st = CommitProcessed();
      if (!st.ok()) {
        stats_.commit_failures.fetch_add(1, std::memory_order_relaxed);
        spdlog::warn("commit: {} (will retry)", st.ToString());
      }
      last_commit = now;
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
  // Drain: everything processed is delivered and committed before leaving.
  Status st = CommitProcessed();
  if (!st.ok()) {
    stats_.commit_failures.fetch_add(1, std::memory_order_relaxed);
    spdlog::warn("final commit: {}", st.ToString());
  }
  PublishStats();
  RefreshQuality();
  Status closed = consumer_->Close();
  if (!closed.ok()) spdlog::warn("closing consumer: {}", closed.ToString());
  if (result.ok() && !st.ok()) result = st;
  return result;
}

}  // namespace crmstream::pipeline
