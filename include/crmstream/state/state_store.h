// StateStore: the engine's local state on disk (RocksDB): per-customer
// features, model state, input offsets, changelog offsets, the dedup window
// and metadata, in the column families and key layout of state_keys.h.
//
// Checkpoints: the engine collects, per commit interval, the dirty entries of
// its partitions plus their input (and changelog) offsets in one
// CheckpointBatch and Commit()s it as ONE atomic RocksDB WriteBatch: after a
// crash the store holds either all of a checkpoint or none of it. The
// durability of the last checkpoints depends on `sync` (state/README.md).
//
// Values: features and model values are the modules' own sealed blobs
// (SealBlob: magic, kind, version, CRC32C), stored as they are: a second
// envelope would add 16 bytes and a second CRC pass per customer for nothing,
// as the blob already carries a version and an end-to-end checksum (which
// also covers the changelog path). Offsets and metadata are small sealed
// blobs of kind kCheckpointMeta. The layout as a whole is versioned by the
// format version in the metadata family.
//
// Memory: one LRU block cache shared by every column family, and a
// WriteBufferManager that charges memtables to that cache, so blocks,
// index/filter blocks and memtables together stay under memory_cap_bytes.
// Flushes are atomic over all column families: whatever triggers one (a
// memtable full, the manager's budget, the WAL's size) frees every memtable,
// so memory pressure always ends with the flush it starts. (With per-family
// flushes, the manager could pick a small family's old memtable, free a few
// bytes, and leave a stalled writer waiting for good.)
//
// Writes never wait inside RocksDB: every write asks RocksDB to fail fast
// (WriteOptions::no_slowdown) instead of stalling, and the store waits itself
// for memory to be freed, asking for flushes, up to write_timeout or until the
// caller cancels; the time spent waiting is counted (WriteFigures).
//
// Unusable state directories (not a directory, read-only, locked by another
// instance, disk full, corrupt files, another pipeline's state, another
// format version) give a Status naming the path and the cause. Open first
// validates an existing store read-only, so a store it refuses is left
// byte-for-byte as it was.
//
// Thread-safety: a StateStore may be used from several threads (RocksDB is
// thread-safe); a CheckpointBatch is used by one thread at a time.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "crmstream/common/status.h"
#include "crmstream/state/state_keys.h"

namespace rocksdb {
class Env;
}  // namespace rocksdb

namespace crmstream::state {

// Version of the store's layout (column families, keys, offset values) and
// of the blobs in it. 2: per-part model blobs (crmstream/scoring/). 3: the
// churn label deadlines are keys of their own (state_keys.h), no longer a
// list inside the churn partition blob, so a restart decodes no customer.
// 4: the behaviour detector's customer section and partition blob carry the
// anomaly episode and the alert budget (scoring/behaviour_anomaly_detector.h);
// the churn partition blob names its churn model (logistic, tree, forest)
// and carries a tree's or forest's state; the basket models' partition blobs.
// 5: the churn partition blob's spend regression takes the spend terms
// (scoring/value_spend_terms.h); the stamped output positions cover eight
// output kinds (crm.recommendations); the minute metrics carry the global
// anomalies' sustained-shift tests (scoring/minute_metrics_monitor.h, blob
// version 2).
// 6: a pending churn example's feature snapshot is in its label deadline's
// value, no longer in the customer's churn section (version 2), so a cached
// customer does not hold it in memory.
// 7: the dedup window is a head and chunks of its ring (state_keys.h), so a
// checkpoint writes the chunks new ids went to, not the whole window. A
// format-6 store opens: it is marked 7, and each partition's whole window
// is read and written as chunks at its next checkpoint (which deletes it).
inline constexpr uint32_t kStateFormatVersion = 7;
// The older format a store may have and still be opened (and upgraded).
inline constexpr uint32_t kUpgradableStateFormatVersion = 6;
// The oldest format whose state gives this build's outputs, which the output
// fingerprint (runtime/output_fingerprint.h) records: a store upgraded from
// format 6 restarts under exactly-once as it was.
inline constexpr uint32_t kOutputStateFormatVersion = 6;

// Where the engine keeps the store inside its state directory (which also
// holds broker.addr): <state_dir>/store.
inline constexpr std::string_view kStoreSubdirectory = "store";
// Where a full restore writes its table files before they are ingested,
// inside the store's directory (StateStore::RestoreTableWriter).
inline constexpr std::string_view kRestoreTablesSubdirectory = "restore-tables";
// Metadata name (PutMetadata) under which the engine records its feature
// windows ("7,30,90"), so tools decode features with the spec they were
// written with.
inline constexpr std::string_view kFeatureWindowsMetadata = "feature_windows";

struct StateStoreOptions {
  // The state directory (RocksDB's). Required.
  std::filesystem::path path;
  // Create an empty store when `path` holds none. Default true.
  bool create_if_missing = true;
  // Inspect only (`crmstream state`): no LOCK taken, nothing written; works
  // while an engine holds the store. Default false.
  bool read_only = false;
  // Block cache + memtables, bytes. Default 256 MiB.
  size_t memory_cap_bytes = size_t{256} << 20;
  // Share of the cap the memtables may use (charged to the cache). Default 0.25.
  double memtable_fraction = 0.25;
  // fsync the WAL on every Commit (WriteOptions::sync). Default false: a
  // process crash loses nothing, a machine crash may lose the last
  // checkpoints (rebuilt from the changelog or the inputs; state/README.md).
  bool sync = false;
  // How long one write may wait for RocksDB to free memtable memory (a
  // write stall) before it fails with TimedOut naming the store's figures.
  // Default 30 s.
  std::chrono::milliseconds write_timeout{30000};
  // RocksDB's environment; nullptr: the default one. Tests inject faults
  // (e.g. a disk whose table files hang) through it.
  std::shared_ptr<rocksdb::Env> env;
  // Who writes this state (engine application id + pipeline name). When
  // non-empty: stored on creation, and a store written by another identity
  // is refused (InvalidArgument naming both). Default: not checked.
  std::string identity;
};

// What the store holds for one input partition.
struct PartitionState {
  std::string topic;
  PartitionKey key;
  int64_t input_offset = -1;      // next input offset to read; -1: none checkpointed
  int64_t changelog_offset = -1;  // next changelog offset not yet included; -1: none
  // A changelog restore began and has not finished: the partition's state is
  // partial and must not be served (restore again).
  bool restoring = false;
};

// Sizes of one column family (from iterating it) and RocksDB's file sizes.
struct FamilyStats {
  std::string name;
  uint64_t keys = 0;
  uint64_t key_bytes = 0;
  uint64_t value_bytes = 0;
  uint64_t sst_file_bytes = 0;  // live SST files on disk
  uint64_t sst_files = 0;
};
struct PartitionStats {
  std::string topic;
  int32_t partition = 0;
  uint64_t customers = 0;  // features entries
  uint64_t feature_bytes = 0;
  uint64_t model_entries = 0;
  uint64_t model_bytes = 0;
};
struct StoreStats {
  std::vector<FamilyStats> families;       // in StateFamily order
  std::vector<PartitionStats> partitions;  // in key order
  uint64_t block_cache_usage_bytes = 0;    // includes memtables charged to it
  uint64_t memtable_bytes = 0;
};

struct VerifyReport {
  uint64_t values_checked = 0;
  uint64_t bad_values = 0;
  // "<family> <key as hex>: <reason>", first 100.
  std::vector<std::string> problems;
};

class StateStore;

// One checkpoint's changes, written atomically by StateStore::Commit. Reuse
// one batch across intervals: Clear keeps its memory.
class CheckpointBatch {
 public:
  ~CheckpointBatch();
  CheckpointBatch(CheckpointBatch&&) noexcept;
  CheckpointBatch& operator=(CheckpointBatch&&) noexcept;

  void PutFeatures(PartitionKey p, std::string_view customer_id, std::string_view blob);
  void PutCustomerModel(PartitionKey p, std::string_view customer_id, std::string_view blob);
  // Removes a customer's features and per-customer model blob.
  void DeleteCustomer(PartitionKey p, std::string_view customer_id);
  void DeleteFeatures(PartitionKey p, std::string_view customer_id);
  void DeleteCustomerModel(PartitionKey p, std::string_view customer_id);
  void PutPartitionModel(PartitionKey p, std::string_view name, std::string_view blob);
  // The index of pending churn labels by deadline (state_keys.h); `example`
  // is the pending example's data kept only here (the churn model's feature
  // snapshot), read back by NextLabelDeadline when the label matures.
  void PutLabelDeadline(PartitionKey p, int64_t deadline_ms, uint64_t id_hash,
                        std::string_view customer_id, std::string_view example = {});
  void DeleteLabelDeadline(PartitionKey p, int64_t deadline_ms, uint64_t id_hash,
                           std::string_view customer_id);
  void DeletePartitionModel(PartitionKey p, std::string_view name);
  // The dedup window's head and the chunks of its ring (DedupWindow::
  // EncodeHead, EncodeChunk, sealed).
  void PutDedupHead(PartitionKey p, std::string_view blob);
  void PutDedupChunk(PartitionKey p, uint32_t chunk, std::string_view blob);
  void DeleteDedupChunk(PartitionKey p, uint32_t chunk);
  // The whole window under its format-6 key: written by tests of the
  // migration only; deleted once the window is in chunks.
  void PutDedupWindow(PartitionKey p, std::string_view blob);
  void DeleteDedupWindow(PartitionKey p);
  // The next input offset the checkpointed state has consumed up to.
  void SetInputOffset(PartitionKey p, int64_t next_offset);
  // The next changelog offset NOT included in this state (last included + 1).
  void SetChangelogOffset(PartitionKey p, int64_t next_offset);
  // Ends a changelog restore of `p` (clears its restoring mark).
  void FinishRestore(PartitionKey p);
  // Metadata for other modules ("user/<name>", as StateStore::PutMetadata)
  // that must change atomically with the checkpoint.
  void PutMetadata(std::string_view name, std::string_view value);
  void DeleteMetadata(std::string_view name);

  // Partition-scoped state entries by family and key suffix (the key after
  // the partition prefix): a changelog restore writes what the changelog
  // carries. Only the features, models and dedup families.
  void PutStateEntry(StateFamily family, PartitionKey p, std::string_view suffix,
                     std::string_view value);
  void DeleteStateEntry(StateFamily family, PartitionKey p, std::string_view suffix);

  // One put or delete of partition state in the batch (what a changelog
  // mirrors): the features, models and dedup families only; offsets and
  // metadata are the store's own bookkeeping.
  struct StateChange {
    StateFamily family = StateFamily::kFeatures;
    PartitionKey partition;
    std::string_view suffix;  // the key after the partition prefix
    bool deleted = false;
    std::string_view value;  // empty when deleted
  };
  // Calls `f` for each state change among the batch's entries [from, end),
  // in the order they were added; a non-OK Status from `f` stops and is
  // returned. Entry indexes count every entry (entry_count()).
  Status ForEachStateChange(size_t from, const std::function<Status(const StateChange&)>& f) const;

  // Adds `other`'s entries after this batch's, in their order: the batch
  // then holds what adding them here would have given, byte for byte. Both
  // batches from the same store. Lets threads encode parts of one
  // checkpoint into batches of their own, written in one atomic write.
  void Append(const CheckpointBatch& other);
  // Room for `bytes` in all (as byte_size() counts them), so that parts
  // appended up to that size are copied once, not again as the batch grows.
  void Reserve(size_t bytes);

  size_t entry_count() const;
  size_t byte_size() const;  // the WriteBatch's serialized size
  // The batch's bytes (RocksDB's WriteBatch representation): what two ways
  // of building the same checkpoint compare.
  std::string_view bytes() const;
  bool empty() const { return entry_count() == 0; }
  // Empties the batch. Its buffer is kept for the next use, unless it held
  // more than `keep_bytes`: then it is freed, so that one large checkpoint
  // does not keep its size in memory for good.
  void Clear(size_t keep_bytes = SIZE_MAX);

  // Whether what the batch holds now has been committed: a checkpoint may be
  // staged and committed later, and state dropped from memory because a
  // checkpoint holds it must wait until the store has it. Outlives the
  // batch; a batch cleared without a commit counts as committed once the
  // batch commits again.
  class CommitTicket {
   public:
    CommitTicket() = default;
    bool committed() const { return done_ != nullptr && done_->load() >= generation_; }
    // False for a default-constructed ticket (no batch issued it).
    bool issued() const { return done_ != nullptr; }

   private:
    friend class CheckpointBatch;
    std::shared_ptr<const std::atomic<uint64_t>> done_;
    uint64_t generation_ = 0;
  };
  CommitTicket ticket() const;

 private:
  friend class StateStore;
  struct Impl;
  explicit CheckpointBatch(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Reused buffers of a batched customer read (StateStore::ReadCustomers): the
// customer ids of a batch's cache misses, their keys and, once read, their
// features and model records. Reading the same number of customers again
// allocates nothing.
class CustomerReads {
 public:
  CustomerReads();
  ~CustomerReads();
  CustomerReads(const CustomerReads&) = delete;
  CustomerReads& operator=(const CustomerReads&) = delete;

  // Forgets the ids (and what was read for them), keeping the buffers.
  void Clear();
  // An id to read; ids are kept in the order added, duplicates included.
  void Add(std::string_view customer_id);
  size_t size() const;
  std::string_view customer_id(size_t i) const;
  // After ReadCustomers: the customer's records; empty when the store has
  // none (a stored record is never empty: it is a sealed blob).
  std::string_view features(size_t i) const;
  std::string_view model(size_t i) const;

 private:
  friend class StateStore;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

class StateStore {
 public:
  // Opens (or creates) the store; see the error list above.
  static Result<std::unique_ptr<StateStore>> Open(const StateStoreOptions& options);
  ~StateStore();
  StateStore(const StateStore&) = delete;
  StateStore& operator=(const StateStore&) = delete;

  const std::filesystem::path& path() const;
  // True if this Open created the store (nothing to restore locally).
  bool created() const;
  bool read_only() const;

  // The key of (topic, partition); assigns and persists a topic id (synced)
  // the first time a topic is seen. InvalidArgument in read-only mode for a
  // topic the store does not know.
  Result<PartitionKey> Partition(std::string_view topic, int32_t partition);
  // Every partition that has offsets, state, or a restoring mark, in key order.
  Result<std::vector<PartitionState>> ListPartitions() const;
  Result<PartitionState> GetPartition(PartitionKey p) const;

  CheckpointBatch NewBatch() const;
  // Writes the batch atomically (one WriteBatch) and clears it. On error
  // (disk full, I/O) nothing of the batch is visible and the Status names the
  // path and the cause; the store may then refuse further writes until reopened.
  // While RocksDB cannot take the write (memtables over budget, too many L0
  // files) it waits, asking for flushes, up to write_timeout or `deadline`
  // (Unavailable) or until `cancel` turns true (Aborted); the batch is then
  // kept, unwritten.
  Status Commit(CheckpointBatch* batch, const std::atomic<bool>* cancel = nullptr,
                std::chrono::steady_clock::time_point deadline =
                    std::chrono::steady_clock::time_point::max());

  // A changelog restore's writes, between BeginRestore and EndRestore:
  // without RocksDB's WAL, so the restore writes its data once, not twice.
  // A crash before EndRestore loses them but leaves the partition's
  // restoring mark, and the restore is done again.
  Status CommitRestoring(CheckpointBatch* batch);
  // Ends a restore: flushes the memtables (what CommitRestoring wrote is
  // then on disk), then commits `batch` (its FinishRestore and the offsets
  // reached) synced, with the WAL.
  Status EndRestore(CheckpointBatch* batch);

  // A full restore's writes as table files ingested into the store instead
  // (between BeginRestore(p, drop_state=true) and EndRestore): no memtable,
  // no WAL and no flush. Each span of changes: Put/Delete in ascending
  // suffix order within a family, one family after another, then Ingest
  // (its files, synced, join the store atomically). A later span's files
  // overrule an earlier one's where keys meet: each ingest takes newer
  // sequence numbers. A crash before EndRestore leaves the restoring mark;
  // the next restore's drop (a range delete, newer still) covers what was
  // ingested. Files are written under the store's directory
  // (kRestoreTablesSubdirectory), removed after each ingest and at Open.
  class RestoreTableWriter {
   public:
    ~RestoreTableWriter();
    RestoreTableWriter(const RestoreTableWriter&) = delete;
    RestoreTableWriter& operator=(const RestoreTableWriter&) = delete;
    Status Put(StateFamily family, std::string_view suffix, std::string_view value);
    Status Delete(StateFamily family, std::string_view suffix);
    Status Ingest();
    uint64_t ingested_bytes() const;

   private:
    friend class StateStore;
    struct Impl;
    explicit RestoreTableWriter(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
  };
  Result<std::unique_ptr<RestoreTableWriter>> NewRestoreTableWriter(PartitionKey p);

  // Restore. Callbacks run in key order; a non-OK Status from one stops the
  // iteration and is returned. A value whose block fails RocksDB's checksum
  // is Corruption naming the path.
  using EntryCallback = std::function<Status(std::string_view id, std::string_view blob)>;
  Status ForEachCustomer(PartitionKey p, const EntryCallback& f) const;
  Status ForEachCustomerModel(PartitionKey p, const EntryCallback& f) const;
  Status ForEachPartitionModel(PartitionKey p, const EntryCallback& f) const;
  Result<std::optional<std::string>> GetFeatures(PartitionKey p, std::string_view customer) const;
  Result<std::optional<std::string>> GetCustomerModel(PartitionKey p,
                                                      std::string_view customer) const;
  Result<std::optional<std::string>> GetDedupHead(PartitionKey p) const;
  Result<std::optional<std::string>> GetDedupChunk(PartitionKey p, uint32_t chunk) const;
  // The whole window of a format-6 store, not yet migrated.
  Result<std::optional<std::string>> GetDedupWindow(PartitionKey p) const;
  // One customer's features and model record in one MultiGet (a cache
  // miss): each is nullopt when the store has none.
  struct CustomerBlobs {
    std::optional<std::string> features;
    std::optional<std::string> model;
  };
  Result<CustomerBlobs> GetCustomer(PartitionKey p, std::string_view customer) const;
  // The features and model records of every customer in `reads` in one
  // batched MultiGet (a batch's cache misses: RocksDB sorts the keys and
  // reads each block once). The first read error names the store.
  Status ReadCustomers(PartitionKey p, CustomerReads* reads) const;
  // The first label deadline of `p` after `after` in (deadline, hash, id)
  // order (from the first one when `after` is null), with its example;
  // nullopt when none is left. Corruption for a value that is not one.
  Result<std::optional<LabelDeadline>> NextLabelDeadline(PartitionKey p,
                                                         const LabelDeadline* after) const;
  // The example of one label deadline entry; nullopt when there is none.
  Result<std::optional<std::string>> GetLabelExample(PartitionKey p, int64_t deadline_ms,
                                                     uint64_t id_hash,
                                                     std::string_view customer_id) const;

  // Drops everything of a partition (state, offsets, marks) in one atomic write.
  Status DropPartition(PartitionKey p);
  // Marks the partition restoring (synced), and with `drop_state` first drops
  // its state and changelog offset, atomically. The restore then writes
  // batches (CommitRestoring) and ends with a batch holding
  // CheckpointBatch::FinishRestore and the new offsets (EndRestore). A mark found after a crash
  // means: restore again from the partition's changelog offset (-1: from the beginning); replaying
  // a changelog range twice yields the same state.
  Status BeginRestore(PartitionKey p, bool drop_state);

  // Free-form metadata for other modules ("user/<name>"), e.g. the feature
  // spec a store was written with. PutMetadata is synced; while RocksDB
  // cannot take it, it waits as Commit does (`cancel`, `deadline`).
  Status PutMetadata(std::string_view name, std::string_view value,
                     const std::atomic<bool>* cancel = nullptr,
                     std::chrono::steady_clock::time_point deadline =
                         std::chrono::steady_clock::time_point::max());
  Result<std::optional<std::string>> GetMetadata(std::string_view name) const;
  Result<std::string> Identity() const;

  // RocksDB's VerifyChecksum over every SST file, then every value's own
  // envelope (magic, kind, length, CRC32C). Corruption only for RocksDB-level
  // failures; bad values are listed in the report.
  Result<VerifyReport> Verify() const;
  Result<StoreStats> Stats() const;
  // Raw iteration of one family in key order (for dump).
  Status ForEachEntry(
      StateFamily family,
      const std::function<Status(std::string_view key, std::string_view value)>& f) const;
  // Topic name of a topic id (nullptr-free: "" if unknown).
  std::string TopicName(uint32_t topic_id) const;

  // Block cache usage (memtables included), bytes.
  size_t MemoryUsageBytes() const;
  // RocksDB's memory by kind, cheap enough for every checkpoint.
  struct Memory {
    uint64_t block_cache_bytes = 0;  // includes the memtables charged to it
    uint64_t memtable_bytes = 0;
    uint64_t table_reader_bytes = 0;
  };
  Memory MemoryBreakdown() const;
  // What the write path looks like now: what a stalled checkpoint is
  // waiting for (exported as crmstream_rocksdb_* metrics).
  struct WriteFigures {
    uint64_t memtable_bytes = 0;         // all memtables, the manager's count
    uint64_t memtable_budget_bytes = 0;  // the manager's budget
    uint64_t mutable_memtable_bytes = 0;
    uint64_t immutable_memtables = 0;  // waiting for or in a flush
    uint64_t pending_flushes = 0;      // families with a flush pending
    uint64_t running_flushes = 0;
    uint64_t running_compactions = 0;
    uint64_t pending_compaction_bytes = 0;
    uint64_t l0_files = 0;
    bool write_stopped = false;  // RocksDB's write controller stops writes
    uint64_t wal_bytes = 0;
    // Cumulative, since Open: bytes written (write batches), writes that
    // had to wait, and for how long.
    uint64_t written_bytes = 0;
    uint64_t stalled_writes = 0;
    double stall_seconds = 0;
    uint64_t timed_out_writes = 0;
  };
  WriteFigures WriteFiguresNow() const;
  // Flushes memtables to SST files (tests, benchmarks, before a backup).
  Status Flush();

 private:
  struct Impl;
  explicit StateStore(std::unique_ptr<Impl> impl);
  Status CommitAs(CheckpointBatch* batch, std::string_view doing, const std::atomic<bool>* cancel,
                  std::chrono::steady_clock::time_point deadline, bool sync, bool without_wal);
  Status ForEachInRange(StateFamily family, std::string_view begin, std::string_view end,
                        size_t strip_prefix,
                        const std::function<Status(std::string_view, std::string_view)>& f) const;
  Result<std::optional<std::string>> GetRaw(StateFamily family, std::string_view key) const;
  std::unique_ptr<Impl> impl_;
};

// Offset values (the offsets family and changelog offsets): sealed i64.
std::string EncodeOffsetValue(int64_t offset);
Result<int64_t> DecodeOffsetValue(std::string_view value);

// Checks a value's sealed envelope whatever its kind: OK or Corruption.
Status CheckSealedValue(std::string_view value);

}  // namespace crmstream::state
