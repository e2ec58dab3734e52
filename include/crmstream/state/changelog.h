// The changelog: every state change of a checkpoint, also written to a
// changelog topic (one per input topic, partition for partition), so a lost
// or corrupt local store can be rebuilt and a store that is behind (crash
// after a transaction commit, before the local checkpoint) can catch up.
//
// A changelog record:
//   key      [u8 change kind][id]       (customer id, model name; empty for dedup)
//   value    the sealed state blob, or null (a tombstone: the entry was deleted)
//   header   "crm.state" = [u8 record version = 1][i64 big-endian input offset]
//            the input partition's next offset as of the checkpoint that
//            produced the change
// The topic is meant to be compacted (latest value per key); restore also
// works on an uncompacted log (the mock cluster does not compact): replaying
// in order, the last record of a key wins.
//
// Exactly-once: the records are produced in the same Kafka transaction as
// the outputs and the input offsets, and restore reads with read_committed,
// so aborted changes are never applied.
//
// Thread-safety: the free functions are reentrant; a restore owns its own
// consumer and must be the only writer of its partition in the store.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "crmstream/common/status.h"
#include "crmstream/kafka/client_config.h"
#include "crmstream/kafka/producer.h"
#include "crmstream/state/state_store.h"

namespace crmstream::state {

enum class ChangeKind : uint8_t {
  kFeatures = 'F',
  kCustomerModel = 'C',
  kPartitionModel = 'P',
  kDedupWindow = 'D',
};

inline constexpr std::string_view kChangelogHeader = "crm.state";
inline constexpr uint8_t kChangelogRecordVersion = 1;

// One state change. Views: valid as long as what they point into.
struct StateChange {
  ChangeKind kind = ChangeKind::kFeatures;
  std::string_view id;
  std::string_view value;  // empty: tombstone
  int64_t input_offset = -1;
  bool tombstone() const { return value.empty(); }
};

// "<application_id>-<input_topic>-changelog" (Kafka Streams' convention).
std::string ChangelogTopicName(std::string_view application_id, std::string_view input_topic);

// Codec. Key into *key, the header value into *stamp (both reused).
void EncodeChangelogKey(ChangeKind kind, std::string_view id, std::string* key);
void EncodeChangelogStamp(int64_t input_offset, std::string* stamp);
// Decodes a consumed record; Corruption naming what is wrong (unknown kind,
// missing or bad stamp, a value that is not a sealed blob).
Result<StateChange> DecodeChangelogRecord(std::string_view key, std::string_view value,
                                          std::optional<std::string_view> stamp);

// Adds the change to a checkpoint batch (put, or delete for a tombstone).
void ApplyChange(PartitionKey p, const StateChange& change, CheckpointBatch* batch);

// Produces the change to changelog partition `partition` (inside the
// producer's open transaction, in exactly-once mode). `key` and `stamp` are
// scratch buffers reused across calls.
Status ProduceChange(kafka::Producer* producer, const std::string& topic, int32_t partition,
                     const StateChange& change, std::string* key, std::string* stamp);

struct RestoreProgress {
  uint64_t records = 0;     // applied so far
  int64_t next_offset = 0;  // changelog offset reached
  int64_t end_offset = 0;   // high watermark when the restore began
};

struct ChangelogRestoreOptions {
  // First changelog offset to apply: a checkpoint's changelog offset to catch
  // up an intact store, or kafka::kOffsetBeginning (the default) to rebuild
  // the partition from nothing (its local state is dropped first).
  int64_t start_offset = -2;  // RD_KAFKA_OFFSET_BEGINNING
  // Records per RocksDB write while restoring. Default 10,000.
  size_t records_per_write = 10000;
  // Bound on the whole restore. Default 10 minutes.
  std::chrono::milliseconds timeout = std::chrono::minutes(10);
  // Called after every write and once at the end, on the calling thread.
  std::function<void(const RestoreProgress&)> progress;
};

struct ChangelogRestoreResult {
  uint64_t records = 0;
  uint64_t tombstones = 0;
  int64_t next_changelog_offset = -1;  // written to the store as its changelog offset
  int64_t input_offset = -1;           // stamp of the last record; -1 if none was read
  double seconds = 0.0;
};

// Reads `topic` partition `partition` with read_committed from
// options.start_offset to its end and applies every record to `target` in
// `store`. The partition is marked restoring until the last write, which
// also records the changelog offset reached and (if any record was read) the
// input offset of the last record; a crash midway leaves the mark, and the
// restore is simply run again. Unavailable if the end is not reached within
// the timeout; Corruption for a record that does not decode.
//
// In exactly-once mode, call it only after the producer with the engine's
// transactional.id has run InitTransactions (which aborts a crashed
// instance's open transaction): an open transaction holds back the end.
Result<ChangelogRestoreResult> RestoreFromChangelog(const kafka::ClientConfig& config,
                                                    const std::string& topic, int32_t partition,
                                                    StateStore* store, PartitionKey target,
                                                    const ChangelogRestoreOptions& options = {});

}  // namespace crmstream::state
