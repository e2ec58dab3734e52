#include "runtime/model_sync_loop.h"

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
      ++records_produced_;
      stats_->model_sync_records.fetch_add(1, std::memory_order_relaxed);
    }
  }
  return Status::OK();
}

}  // namespace crmstream::runtime
