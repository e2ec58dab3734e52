// Model sync in the engine: every models.sync_interval_ms, each owned
// partition task's model statistics (scoring::ModelStatistics) are
// published to `<group_id>.model-sync` as model-sync records
// (pipeline/model_sync.h), with the task's next input offset as their
// generation. The published statistics are the task's own, never a merged
// model, so no partition is counted twice by a reader.
//
// Private to the runtime. Thread-safety: the engine thread only, between
// batches (worker threads are idle then); it allocates, off the hot path.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "crmstream/common/status.h"
#include "crmstream/pipeline/model_sync.h"
#include "runtime/engine_core.h"

namespace crmstream::runtime {

class ModelSyncPublisher {
 public:
  // `producer` must not be transactional (at_least_once shares the
  // engine's idempotent producer). `stats` counts the records. `chunk_bytes`: at most the bytes of
  // statistics per record.
  ModelSyncPublisher(const EngineCore* core, kafka::Producer* producer, EngineStats* stats,
                     std::chrono::milliseconds interval, size_t chunk_bytes);

  // Publishes every task once `interval` has passed since the last time.
  Status MaybePublish(Clock::time_point now);
  // Publishes every task with records processed now (the final publish).
  Status Publish();

  uint64_t records_produced() const { return records_produced_; }

 private:
  const EngineCore* core_;
  kafka::Producer* producer_;
  std::chrono::milliseconds interval_;
  size_t chunk_bytes_;
  std::string topic_;
  EngineStats* stats_;
  Clock::time_point last_{};
  uint64_t records_produced_ = 0;
  std::string blob_;
  std::vector<pipeline::ModelSyncRecord> records_;
};

}  // namespace crmstream::runtime
