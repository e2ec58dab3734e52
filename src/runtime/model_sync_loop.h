// Model sync in the engine: every models.sync_interval_ms, each owned
// partition task's model statistics (scoring::ModelStatistics) are
// published to `<group_id>.model-sync` as model-sync records
// (pipeline/model_sync.h), with the task's next input offset as their
// generation (ModelSyncPublisher). The published statistics are the task's
// own, never a merged model, so no partition is counted twice by a reader.
// The same topic is read back (ModelSyncReader) into a ModelSyncBoard whose
// merge every owned task then scores with (CustomerModels::UseGlobalModels).
//
// Private to the runtime. Thread-safety: the engine thread only, between
// batches (worker threads are idle then); it allocates, off the hot path.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "crmstream/common/status.h"
#include "crmstream/kafka/partition_reader.h"
#include "crmstream/pipeline/model_sync.h"
#include "crmstream/scoring/model_statistics.h"
#include "runtime/engine_core.h"

namespace crmstream::runtime {

class ModelSyncPublisher {
 public:
  // `producer` must not be transactional (at_least_once shares the
  // engine's idempotent producer). `stats` counts the records
  // (model_sync_records). `chunk_bytes`: at most the bytes of statistics
  // per record.
  ModelSyncPublisher(const EngineCore* core, kafka::Producer* producer, EngineStats* stats,
                     std::chrono::milliseconds interval, size_t chunk_bytes);

  // Publishes every task once `interval` has passed since the last time.
  Status MaybePublish(Clock::time_point now);
  // Publishes every task with records processed now (the final publish).
  Status Publish();

 private:
  const EngineCore* core_;
  kafka::Producer* producer_;
  std::chrono::milliseconds interval_;
  size_t chunk_bytes_;
  std::string topic_;
  EngineStats* stats_;
  Clock::time_point last_{};
  std::string blob_;
  std::vector<pipeline::ModelSyncRecord> records_;
};

// Follows `<group_id>.model-sync` from its beginning with a client of its
// own (no group; the topic's one partition assigned), between batches:
// feeds a ModelSyncBoard, merges it at most once per interval when it took
// in new statistics, and hands a copy of the merge to every owned task
// (PartitionTask::global_model_merge says which merge a task has). Memory:
// the client's prefetch (2 MiB) and the board's latest statistics per
// input partition. Records the board refuses and merges that fail are
// logged and skipped: the tasks keep the last good merge.
class ModelSyncReader {
 public:
  static Result<std::unique_ptr<ModelSyncReader>> Create(EngineCore* core, EngineStats* stats,
                                                         std::chrono::milliseconds interval);

  // Reads what arrived (a bounded number of records, without waiting),
  // merges when due, and hands the merge to tasks that lack it (tasks
  // assigned since the last merge too).
  Status Step(Clock::time_point now);
  // Reads the topic to its end within `timeout` (on a failure: what was
  // read), then merges and hands over as Step does, whatever the interval.
  Status CatchUp(std::chrono::milliseconds timeout);

  // The latest merge; nullptr before the first.
  const scoring::ModelStatistics* merged() const { return merged_ ? &*merged_ : nullptr; }
  // The topic's offset read up to (the next one to read; -1 before any).
  int64_t next_offset() const { return follower_->next_offset(0); }

 private:
  ModelSyncReader(EngineCore* core, EngineStats* stats, std::chrono::milliseconds interval)
      : core_(core), stats_(stats), interval_(interval), board_(core->config.kafka.group_id) {}
  Status Apply(const kafka::MessageView& m);
  void Merge();
  void HandOver();

  EngineCore* core_;
  EngineStats* stats_;
  std::chrono::milliseconds interval_;
  std::unique_ptr<kafka::PartitionFollower> follower_;
  pipeline::ModelSyncBoard board_;
  bool board_changed_ = false;
  std::optional<scoring::ModelStatistics> merged_;
  uint64_t merges_ = 0;
  Clock::time_point last_merge_{};
  uint64_t refused_ = 0;        // records the board refused
  uint64_t read_failures_ = 0;  // polls that failed
};

}  // namespace crmstream::runtime
