#include "crmstream/pipeline/stream_engine.h"

#include <spdlog/spdlog.h>

#include <chrono>

namespace crmstream::pipeline {
namespace {

using Clock = std::chrono::steady_clock;

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

}  // namespace

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
    for (int k = 0; k < kOutputKindCount; ++k) {
      publish(stats_.outputs[k], c.outputs[k].Get(), &task.published_outputs[k]);
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
}

Status StreamEngine::Run(const std::atomic<bool>& stop) {
  std::vector<std::string> topics;
  for (const auto& t : config_.inputs) topics.push_back(t.name);
  CRM_RETURN_NOT_OK(consumer_->Subscribe(topics));

  kafka::MessageBatch batch(static_cast<size_t>(config_.consume_batch_size));
  const auto commit_interval = std::chrono::milliseconds(config_.commit_interval_ms);
  auto last_commit = Clock::now();
  auto last_lag = Clock::now();
  Status result;

  while (!stop.load(std::memory_order_relaxed)) {
    auto consumed = consumer_->ConsumeBatch(config_.poll_timeout_ms, &batch);
    if (!consumed.ok()) {
      // Transport errors are retried by librdkafka; keep polling.
      spdlog::warn("consume: {}", consumed.status().ToString());
    }
    const int64_t now_ms = WallMs();
    for (size_t i = 0; i < batch.size(); ++i) {
      kafka::MessageView m = batch[i];
      PartitionTask& task = TaskFor(m.topic(), m.partition());
      ingest::SourcePosition pos{m.topic(), m.partition(), m.offset()};
      task.processor->Process(m.payload(), pos, now_ms);
      task.next_offset = m.offset() + 1;
    }
    batch.Clear();
    producer_->Poll(std::chrono::milliseconds(0));
    if (!sink_->first_error().ok()) {
      result = sink_->first_error().WithContext("producing outputs");
      break;
    }
    PublishStats();
    const auto now = Clock::now();
    if (now - last_commit >= commit_interval) {
      Status st = CommitProcessed();
      if (!st.ok()) spdlog::warn("commit: {} (will retry)", st.ToString());
      last_commit = now;
    }
    if (now - last_lag >= std::chrono::milliseconds(500)) {
      RefreshLag();
      last_lag = now;
    }
  }

  // Drain: everything processed is delivered and committed before leaving.
  Status st = CommitProcessed();
  if (!st.ok()) spdlog::warn("final commit: {}", st.ToString());
  PublishStats();
  Status closed = consumer_->Close();
  if (!closed.ok()) spdlog::warn("closing consumer: {}", closed.ToString());
  if (result.ok() && !st.ok()) result = st;
  return result;
}

}  // namespace crmstream::pipeline
