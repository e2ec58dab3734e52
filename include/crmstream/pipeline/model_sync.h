// Model sync: the global models of an application, built from every input
// partition's sufficient statistics (scoring::ModelStatistics).
//
// Each partition task publishes its statistics to the compacted topic
// `<application id>.model-sync` as records
//   key    <application id> '\n' <input topic> '\n' <partition> '\n' <chunk>
//   value  [generation i64][chunk u32][chunks u32][bytes]
// (decimal partition and chunk). The generation is the partition's next
// input offset when the statistics were taken: it grows across restarts and
// moves between instances, since the state restored with a partition carries
// its offset. The blob is split in chunks below the broker's message limit,
// each chunk under its own key, so compaction keeps the latest of each; a
// chunk left from an older, longer blob has an older generation and is
// never assembled with a newer one.
//
// Every instance reads the whole topic into a ModelSyncBoard: the latest
// complete statistics of every partition of its own application (records of
// another application are counted and ignored), merged on demand in the
// order of (input topic, partition), so all instances that read the same
// records build the same global model whatever partitions they own.
//
// Thread-safety: none. The board is fed and merged off the hot path (the
// engine thread between batches); the merged model is handed to scoring by
// value.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "crmstream/common/status.h"
#include "crmstream/scoring/model_statistics.h"

namespace crmstream::pipeline {

// `<application id>.model-sync`.
std::string ModelSyncTopic(std::string_view application_id);

// Below the broker's default 1 MB message limit with room for the key.
inline constexpr size_t kModelSyncChunkBytes = size_t{512} << 10;

struct ModelSyncRecord {
  std::string key;
  std::string value;
};

// The records of one partition's statistics blob (ModelStatistics::Encode),
// appended to `*out`. chunk_bytes >= 1 (tests make it small).
void EncodeModelSyncRecords(std::string_view application_id, std::string_view input_topic,
                            int32_t partition, int64_t generation, std::string_view statistics,
                            size_t chunk_bytes, std::vector<ModelSyncRecord>* out);

class ModelSyncBoard {
 public:
  explicit ModelSyncBoard(std::string application_id)
      : application_id_(std::move(application_id)) {}

  // One record of the topic, in topic order. Corruption for a malformed key
  // or value (the board is unchanged); a record of another application is
  // counted in foreign_records() and ignored.
  Status Apply(std::string_view key, std::string_view value);

  // The merge of every partition's latest complete statistics. Allocates.
  // InvalidArgument when partitions' models do not merge (a pipeline
  // changed shape between them).
  Result<scoring::ModelStatistics> Merge() const;

  // Partitions with complete statistics.
  size_t partitions() const;
  // Complete statistics taken in since the last TakeChanged(); resets it.
  bool TakeChanged() {
    const bool c = changed_;
    changed_ = false;
    return c;
  }
  uint64_t foreign_records() const { return foreign_records_; }
  // Records refused (a blob that failed to decode counts once).
  uint64_t refused_records() const { return refused_records_; }

 private:
  struct Partition {
    int64_t generation = -1;  // of `statistics`; -1: none yet
    scoring::ModelStatistics statistics;
    // The chunks of the newest generation seen, while incomplete.
    int64_t pending_generation = -1;
    std::vector<std::string> chunks;
    std::vector<bool> received;
    uint32_t received_count = 0;
  };

  std::string application_id_;
  std::map<std::pair<std::string, int32_t>, Partition> partitions_;
  bool changed_ = false;
  uint64_t foreign_records_ = 0;
  uint64_t refused_records_ = 0;
};

}  // namespace crmstream::pipeline
