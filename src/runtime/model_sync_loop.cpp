#include "runtime/model_sync_loop.h"

#include <spdlog/spdlog.h>

#include "crmstream/scoring/model_statistics.h"

namespace crmstream::runtime {

ModelSyncPublisher::ModelSyncPublisher(const EngineCore* core, kafka::Producer* producer,
                                       EngineStats* stats, std::chrono::milliseconds interval,
                                       size_t chunk_bytes)
    : core_(core),
      producer_(producer),
      interval_(interval),
      chunk_bytes_(chunk_bytes),
      topic_(ModelSyncTopicName(core->config)),
      stats_(stats) {}

Status ModelSyncPublisher::MaybePublish(Clock::time_point now) {
  if (now - last_ < interval_) return Status::OK();
  last_ = now;
  return Publish();
}

Status ModelSyncPublisher::Publish() {
  for (const auto& [tp, task] : core_->tasks) {
    // A task that has processed nothing yet has nothing of its own to say.
    if (task.processor == nullptr || task.next_offset < 0) continue;
    blob_.clear();
    scoring::ModelStatistics::Collect(task.processor->customer_models(),
                                      task.processor->minute_metrics())
        .Encode(&blob_);
    records_.clear();
    pipeline::EncodeModelSyncRecords(core_->config.kafka.group_id, tp.topic, tp.partition,
                                     task.next_offset, blob_, chunk_bytes_, &records_);
    for (const pipeline::ModelSyncRecord& r : records_) {
      // One partition (AllTopics): every instance reads all of it.
      CRM_RETURN_NOT_OK(producer_->Produce(topic_, 0, r.key, r.value)
                            .WithContext("producing model-sync records to " + topic_));
      stats_->model_sync_records.fetch_add(1, std::memory_order_relaxed);
    }
  }
  return Status::OK();
}

namespace {

// Records taken per step at most: a step runs between batches, and a
// backlog (a restart reading the topic's history) is spread over steps.
constexpr size_t kRecordsPerStep = 256;

// Logs the 1st, 2nd, 4th, 8th... occurrence of a repeated failure.
bool WorthLogging(uint64_t count) { return (count & (count - 1)) == 0; }

}  // namespace

Result<std::unique_ptr<ModelSyncReader>> ModelSyncReader::Create(
    EngineCore* core, EngineStats* stats, std::chrono::milliseconds interval) {
  std::unique_ptr<ModelSyncReader> reader(new ModelSyncReader(core, stats, interval));
  const std::vector<kafka::TopicPartitionOffset> from = {
      {ModelSyncTopicName(core->config), 0, kafka::kOffsetBeginning}};
  kafka::PartitionFollowOptions options;
  options.client_id = core->config.kafka.group_id + ".model-sync-reader";
  CRM_ASSIGN_OR_RETURN(reader->follower_,
                       kafka::PartitionFollower::Create(core->client, from, options));
  return reader;
}

Status ModelSyncReader::Apply(const kafka::MessageView& m) {
  if (Status st = board_.Apply(m.key(), m.payload()); !st.ok()) {
    if (WorthLogging(++refused_)) {
      spdlog::warn("model sync: record at offset {} refused ({} so far): {}", m.offset(), refused_,
                   st.ToString());
    }
  }
  board_changed_ = board_.TakeChanged() || board_changed_;
  return Status::OK();
}

Status ModelSyncReader::Step(Clock::time_point now) {
  const auto read = follower_->Poll(std::chrono::milliseconds(0), kRecordsPerStep,
                                    [this](const kafka::MessageView& m) { return Apply(m); });
  if (!read.ok() && WorthLogging(++read_failures_)) {
    spdlog::warn("model sync: reading {}: {}", ModelSyncTopicName(core_->config),
                 read.status().ToString());
  }
  if (board_changed_ && now - last_merge_ >= interval_) {
    last_merge_ = now;
    Merge();
  }
  HandOver();
  return Status::OK();
}

Status ModelSyncReader::CatchUp(std::chrono::milliseconds timeout) {
  Status st =
      follower_->ReadToEnd(timeout, [this](const kafka::MessageView& m) { return Apply(m); });
  if (board_changed_) Merge();
  HandOver();
  return st;
}

void ModelSyncReader::Merge() {
  board_changed_ = false;
  auto merged = board_.Merge();
  if (!merged.ok()) {
    spdlog::warn(
        "model sync: the partitions' statistics do not merge ({}); the tasks keep the "
        "previous global models",
        merged.status().ToString());
    return;
  }
  merged_ = std::move(merged).value();
  ++merges_;
  stats_->model_sync_merges.fetch_add(1, std::memory_order_relaxed);
  stats_->model_sync_partitions_merged.store(merged_->parts, std::memory_order_relaxed);
}

void ModelSyncReader::HandOver() {
  if (!merged_) return;
  for (auto& [tp, task] : core_->tasks) {
    if (task.processor == nullptr || task.global_model_merge == merges_) continue;
    // Not tried again before the next merge, whether or not it fits.
    task.global_model_merge = merges_;
    Status st = task.processor->customer_models().UseGlobalModels(&*merged_);
    if (!st.ok()) {
      spdlog::warn("model sync: {} [{}] keeps scoring with its own models: {}", tp.topic,
                   tp.partition, st.ToString());
    }
  }
}

}  // namespace crmstream::runtime
