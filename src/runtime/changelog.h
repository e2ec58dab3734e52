// Changelog topics: each checkpoint's partition state, mirrored to a
// compacted topic per input topic (partition for partition), so a
// partition's state can be rebuilt on any instance without the input's
// history.
//
// A record mirrors one put or delete of the partition's CheckpointBatch:
//   key    [family u8][state key after the partition prefix]
//   value  the stored value; a delete is a tombstone (null value)
//   header crm.changelog.offset: the input offset the checkpoint covers
//          (decimal), so a restore applies no change beyond an offset the
//          group committed
// Topic ids are the store's own, so the key leaves the partition prefix
// out: the changelog partition says which partition it is.
//
// A value over kChangelogChunkBytes (a partition's model blob is ~1.3 MB;
// brokers take 1 MB by default) is split: chunk 0 under the plain key with
// header crm.changelog.chunks = N, chunks 1..N-1 under
// [0x80|family][index u32 BE][suffix]. A restore assembles a value from a
// chunk 0 and the chunks that follow it with the same offset; a chunk left
// over from an older, longer value is never part of an assembly.
//
// Each partition's records of a checkpoint end with a marker, key [0x7f],
// value and header the checkpoint's offset: the last marker of a partition
// is its last complete checkpoint, found by reading the partition's last
// records (LastChangelogCheckpoints). The group's committed offset alone
// would not do: a commit made during a rebalance may be refused, and the
// at_least_once and stamped modes commit asynchronously.
//
// Order: the records are produced after the checkpoint's outputs and flushed
// before the store write and the group's commit (at_least_once, stamped),
// or inside the transaction that commits the input offsets
// (exactly_once_transactions).
//
// Thread-safety: the engine thread only.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "crmstream/common/status.h"
#include "crmstream/kafka/client_config.h"
#include "crmstream/kafka/producer.h"
#include "crmstream/pipeline/memory_plan.h"
#include "crmstream/state/state_store.h"

namespace crmstream::runtime {

inline constexpr std::string_view kChangelogOffsetHeader = "crm.changelog.offset";
inline constexpr std::string_view kChangelogChunksHeader = "crm.changelog.chunks";
inline constexpr size_t kChangelogChunkBytes = size_t{512} << 10;

// Produces checkpoint batches' state changes to changelog topics.
class ChangelogWriter {
 public:
  // `chunk_bytes`: the largest value sent in one record (tests make it small).
  explicit ChangelogWriter(kafka::Producer* producer, size_t chunk_bytes = kChangelogChunkBytes)
      : producer_(producer), chunk_bytes_(chunk_bytes) {}

  // The state changes among `batch`'s entries from `from_entry` on, each
  // to the changelog partition of its own partition's target (changes of a
  // partition without one are skipped), stamped with that target's input
  // offset; then each target's marker. One pass over the batch.
  struct Target {
    state::PartitionKey key;
    std::string_view topic;  // the changelog topic
    int32_t partition;
    int64_t input_offset;
  };
  Status Append(const state::CheckpointBatch& batch, size_t from_entry,
                std::span<const Target> targets);
  // One partition's changes (the span form with one target).
  Status Append(const state::CheckpointBatch& batch, size_t from_entry, state::PartitionKey key,
                std::string_view topic, int32_t partition, int64_t input_offset) {
    const Target target{key, topic, partition, input_offset};
    return Append(batch, from_entry, std::span<const Target>(&target, 1));
  }

  uint64_t records() const { return records_; }
  size_t chunk_bytes() const { return chunk_bytes_; }
  uint64_t bytes() const { return bytes_; }

 private:
  // `index`: the target's place in the Append's span (its offset text).
  Status Produce(const Target& target, size_t index, std::string_view key, std::string_view value,
                 std::string_view chunks);

  kafka::Producer* producer_;
  size_t chunk_bytes_;
  std::string key_;
  std::string chunk_key_;
  std::vector<std::string> offset_texts_;  // by target
  uint64_t records_ = 0;
  uint64_t bytes_ = 0;
};

struct ChangelogRestoreOptions {
  std::string changelog_topic;
  int32_t partition = 0;
  // Apply only records stamped with offsets in (after_offset, up_to_offset]:
  // after_offset is what the local store holds already (-1: nothing, the
  // partition's state is dropped first), up_to_offset the last complete
  // checkpoint (LastChangelogCheckpoints) or the group's committed offset.
  int64_t after_offset = -1;
  int64_t up_to_offset = -1;
  // For the progress lines in the log ("crm.interactions [3]").
  std::string what;
  // Bound on reading the changelog. Default 10 min.
  std::chrono::milliseconds timeout = std::chrono::minutes(10);
  // Changes held in memory (keys and values, as read): half of it is filled
  // while the other half, the span read before, is written on a second
  // thread. Of the changes to one key within a span only the last is
  // written, so the larger, the fewer writes (an uncompacted changelog
  // repeats a customer once per checkpoint). Default 64 MiB; the engine
  // gives the partition's share of the customer cache (RestoreBufferBytes,
  // at least 8 MiB); tests give a few bytes for a write per record or two.
  size_t buffer_bytes = size_t{64} << 20;
  // A full restore (after_offset -1) writes each span of the buffer as table
  // files ingested into the store (StateStore::RestoreTableWriter); false:
  // through the memtable without the WAL, flushed at the end. Default true.
  bool ingest_tables = true;
};

// A restore's buffer_bytes under the engine's memory plan: one partition's
// customer cache, empty while the partition is restored (at least 8 MiB).
size_t RestoreBufferBytes(const pipeline::MemoryPlan& plan);

struct ChangelogRestoreResult {
  // The highest checkpoint offset applied (the state's input offset now);
  // -1: nothing applied.
  int64_t input_offset = -1;
  uint64_t records_read = 0;
  uint64_t records_applied = 0;
  uint64_t bytes_read = 0;
  // Records stamped beyond up_to_offset (a checkpoint never completed),
  // not applied.
  uint64_t records_beyond = 0;
  int64_t changelog_end = 0;  // the partition's high watermark at the start
  double seconds = 0;
};

// The offset of the last complete checkpoint in each changelog partition
// (its last marker), by partition; -1 for a partition without one.
Result<std::map<int32_t, int64_t>> LastChangelogCheckpoints(const kafka::ClientConfig& client,
                                                            const std::string& topic,
                                                            std::span<const int32_t> partitions);

// Restores one partition's state into `store` from its changelog, under the
// store's restore mark (StateStore::BeginRestore): a full restore ingests
// table files (ingest_tables), a tail's writes skip the WAL
// (StateStore::CommitRestoring) and are flushed at the end; a crash in the
// middle leaves the mark, and the partition is restored again. On success the
// store's input offset of `key` is the result's input_offset (when it
// applied anything). `on_progress` (optional) is called about every 2 s.
Result<ChangelogRestoreResult> RestoreFromChangelog(
    const kafka::ClientConfig& client, state::StateStore* store, state::PartitionKey key,
    const ChangelogRestoreOptions& options,
    const std::function<void(const ChangelogRestoreResult&)>& on_progress = nullptr);

}  // namespace crmstream::runtime
