#include "crmstream/state/state_store.h"

#include <rocksdb/cache.h>
#include <rocksdb/db.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/sst_file_writer.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>
#include <rocksdb/write_buffer_manager.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <mutex>
#include <new>
#include <optional>
#include <system_error>
#include <thread>
#include <utility>

#include "crmstream/common/binary_io.h"

namespace crmstream::state {
namespace {

namespace fs = std::filesystem;

constexpr uint16_t kMetaValueVersion = 1;
constexpr std::string_view kFormatVersionKey = "format_version";
constexpr std::string_view kIdentityKey = "identity";
constexpr std::string_view kTopicPrefix = "topic/";
constexpr std::string_view kChangelogPrefix = "changelog/";
constexpr std::string_view kRestoringPrefix = "restoring/";
constexpr std::string_view kUserPrefix = "user/";
// RocksDB's LOG file in the store: rotated at 4 MiB, 3 old files kept.
constexpr uint64_t kLogFileBytes = uint64_t{4} << 20;
constexpr int kLogFilesKept = 3;

// RocksDB's names for the families, indexed by StateFamily. "default" must
// exist in every RocksDB database; the metadata lives there.
constexpr std::array<const char*, kStateFamilyCount> kFamilyNames = {"features", "models",
                                                                     "offsets", "dedup", "default"};

rocksdb::Slice ToSlice(std::string_view s) { return {s.data(), s.size()}; }
std::string_view ToView(const rocksdb::Slice& s) { return {s.data(), s.size()}; }

// RocksDB's own LOG file in the store, written by us rather than by
// RocksDB's file logger: on a full disk RocksDB's logger trips an assertion
// on the append after a failed one (Debian's build keeps assertions on),
// i.e. it would end the process exactly when the disk fills. This one drops
// the lines it cannot write and tries again at the next line. Rotated at
// `max_bytes`; `keep` old files (LOG.old.1 is the newest).
class RocksLogFile {
 public:
  RocksLogFile(fs::path path, uint64_t max_bytes, int keep)
      : path_(std::move(path)), max_bytes_(max_bytes), keep_(keep) {}
  ~RocksLogFile() {
    if (file_ != nullptr) std::fclose(file_);
  }
  void Write(std::string_view line) {
    std::lock_guard lock(mutex_);
    if (file_ == nullptr || written_ >= max_bytes_) Rotate();
    if (file_ == nullptr) return;
    if (std::fwrite(line.data(), 1, line.size(), file_) != line.size() || std::fflush(file_) != 0) {
      // Disk full or gone: the line is lost; reopen for the next one.
      std::fclose(file_);
      file_ = nullptr;
      return;
    }
    written_ += line.size();
  }

 private:
  void Rotate() {
    if (file_ != nullptr) {
      std::fclose(file_);
      file_ = nullptr;
      std::error_code ec;
      for (int i = keep_; i >= 1; --i) {
        const fs::path from = i == 1 ? path_ : Old(i - 1);
        if (fs::exists(from, ec)) fs::rename(from, Old(i), ec);
      }
    }
    file_ = std::fopen(path_.c_str(), "a");
    written_ = 0;
    std::error_code ec;
    if (file_ != nullptr) written_ = fs::file_size(path_, ec);
    if (ec) written_ = 0;
  }
  fs::path Old(int i) const { return path_.string() + ".old." + std::to_string(i); }

  std::mutex mutex_;
  fs::path path_;
  uint64_t max_bytes_;
  int keep_;
  std::FILE* file_ = nullptr;
  uint64_t written_ = 0;
};

// RocksDB's log: to the store's LOG file at INFO when there is one (the
// engine's store: the figures behind a stall can be read after the fact),
// and from warnings up to the process logger. Read-only and validation opens
// have no file (a refused store stays byte for byte as it was).
class SpdlogRocksLogger final : public rocksdb::Logger {
 public:
  explicit SpdlogRocksLogger(std::shared_ptr<RocksLogFile> file = nullptr)
      : rocksdb::Logger(file ? rocksdb::InfoLogLevel::INFO_LEVEL
                             : rocksdb::InfoLogLevel::WARN_LEVEL),
        file_(std::move(file)) {}
  using rocksdb::Logger::Logv;
  void Logv(const char* format, va_list ap) override {
    Logv(rocksdb::InfoLogLevel::INFO_LEVEL, format, ap);
  }
  void Logv(const rocksdb::InfoLogLevel level, const char* format, va_list ap) override {
    if (level < GetInfoLogLevel()) return;
    std::array<char, 4096> line{};
    const int n = std::vsnprintf(line.data(), line.size(), format, ap);
    if (n < 0) return;
    const size_t length = std::min(static_cast<size_t>(n), line.size() - 1);
    if (file_) {
      char stamp[64];
      const auto now = std::chrono::system_clock::now();
      const std::time_t t = std::chrono::system_clock::to_time_t(now);
      std::tm tm{};
      gmtime_r(&t, &tm);
      const auto micros =
          std::chrono::duration_cast<std::chrono::microseconds>(now.time_since_epoch()).count() %
          1000000;
      const size_t stamped = std::strftime(stamp, sizeof(stamp), "%Y/%m/%d-%H:%M:%S", &tm);
      std::string text(stamp, stamped);
      text += "." + std::to_string(1000000 + micros).substr(1) + " ";
      text.append(line.data(), length);
      text += '\n';
      file_->Write(text);
    }
    if (level < rocksdb::InfoLogLevel::WARN_LEVEL) return;
    // Files written before RocksDB 7.x's unique ids, and read-only opens,
    // trigger this on every open; it says nothing actionable.
    if (std::strstr(line.data(), "without unique ID to verify") != nullptr) return;
    if (level >= rocksdb::InfoLogLevel::ERROR_LEVEL) {
      spdlog::error("rocksdb: {}", line.data());
    } else {
      spdlog::warn("rocksdb: {}", line.data());
    }
  }

 private:
  std::shared_ptr<RocksLogFile> file_;
};

bool Contains(const std::string& haystack, std::string_view needle) {
  return haystack.find(needle) != std::string::npos;
}

// Turns a RocksDB error into a Status that names the state directory and
// says what is wrong with it in words a user can act on.
Status StoreError(const rocksdb::Status& s, const fs::path& path, std::string_view doing) {
  const std::string text = s.ToString();
  const std::string where = path.string() + ": " + std::string(doing) + ": ";
  if (s.IsNoSpace() || Contains(text, "No space left")) {
    return Status::IOError(where + "disk full (no space left on device); free space and restart (" +
                           text + ")");
  }
  if (Contains(text, "LOCK") && (Contains(text, "Resource temporarily unavailable") ||
                                 Contains(text, "already held") || Contains(text, "lock hold"))) {
    return Status::IOError(where + "locked: another running crmstream instance holds " +
                           (path / "LOCK").string() + " (" + text + ")");
  }
  if (Contains(text, "Read-only file system")) {
    return Status::IOError(where + "the state directory is on a read-only file system (" + text +
                           ")");
  }
  if (Contains(text, "Permission denied")) {
    return Status::IOError(where + "permission denied: the state directory is not writable (" +
                           text + ")");
  }
  if (s.IsCorruption()) {
    return Status::Corruption(
        where +
        "corrupt state files; move the directory away and the engine rebuilds "
        "the state from its input (" +
        text + ")");
  }
  if (s.IsNotFound() || s.IsPathNotFound()) {
    return Status::NotFound(where + "missing state files (" + text + ")");
  }
  return Status::IOError(where + text);
}

std::string SealMeta(std::string_view payload) {
  return SealBlob(BlobKind::kCheckpointMeta, kMetaValueVersion, payload);
}

Result<std::string_view> OpenMeta(std::string_view value) {
  return OpenBlobPayload(value, BlobKind::kCheckpointMeta, kMetaValueVersion);
}

std::string PartitionMetaKey(std::string_view prefix, PartitionKey p) {
  std::string key(prefix);
  AppendPartitionPrefix(p, &key);
  return key;
}

}  // namespace

std::string EncodeOffsetValue(int64_t offset) {
  std::string payload;
  BinaryWriter(&payload).Put<int64_t>(offset);
  return SealMeta(payload);
}

namespace {
// The example of a label deadline's value (PutLabelDeadline).
Result<std::string_view> LabelExample(std::string_view value, int64_t deadline_ms) {
  auto payload = OpenMeta(value);
  if (!payload.ok()) return payload.status().WithContext("label deadline value");
  BinaryReader reader(*payload);
  int64_t deadline = 0;
  if (!reader.Get(&deadline).ok() || deadline != deadline_ms) {
    return Status::Corruption("label deadline value: does not repeat its key's deadline");
  }
  return payload->substr(sizeof(int64_t));
}
}  // namespace

Result<int64_t> DecodeOffsetValue(std::string_view value) {
  CRM_ASSIGN_OR_RETURN(std::string_view payload, OpenMeta(value));
  BinaryReader reader(payload);
  int64_t offset = 0;
  CRM_RETURN_NOT_OK(reader.Get(&offset));
  CRM_RETURN_NOT_OK(reader.ExpectEnd());
  return offset;
}

Status CheckSealedValue(std::string_view value) {
  // The envelope's kind sits after the 4-byte magic; OpenBlob checks the rest.
  if (value.size() < 8)
    return Status::Corruption("value of " + std::to_string(value.size()) +
                              " bytes is too short for a sealed blob");
  uint16_t kind = 0;
  std::memcpy(&kind, value.data() + 4, sizeof(kind));
  auto opened = OpenBlob(value, static_cast<BlobKind>(kind));
  return opened.ok() ? Status::OK() : opened.status();
}

// ---------------------------------------------------------------------------

namespace {

// A WriteBatch that takes another's records after its own, as RocksDB's
// WriteBatchInternal::Append does (internal in RocksDB 7.8): the records
// copied as they are, the count summed, nothing decoded. The format is the
// WAL's (db/write_batch.cc): a 12-byte header, sequence (8) then count
// (fixed32, little endian), then the records.
class AppendableWriteBatch final : public rocksdb::WriteBatch {
 public:
  AppendableWriteBatch() = default;
  void AppendRecordsOf(const rocksdb::WriteBatch& other) {
    constexpr size_t kHeader = 12;
    const std::string& from = other.Data();
    if (other.Count() == 0 || from.size() <= kHeader) return;
    const uint32_t count = Count() + other.Count();
    std::string rep = std::move(rep_);
    rep.append(from, kHeader, std::string::npos);
    for (size_t b = 0; b < 4; ++b) rep[8 + b] = static_cast<char>((count >> (8 * b)) & 0xff);
    // Rebuilt from its bytes (the buffer moved, not copied): RocksDB works
    // out what kinds of records it holds again when asked. As this class,
    // not through WriteBatch's assignment, which rebuilds a WriteBatch in
    // place (its destructor and placement new) and would leave this object
    // of the base's type.
    this->~AppendableWriteBatch();
    new (this) AppendableWriteBatch(std::move(rep));
  }
  void Reserve(size_t bytes) { rep_.reserve(bytes); }
  // Empty, its buffer freed.
  void Release() {
    std::string().swap(rep_);
    Clear();
  }

 private:
  explicit AppendableWriteBatch(std::string&& rep) : rocksdb::WriteBatch(std::move(rep)) {}
};

}  // namespace

struct CheckpointBatch::Impl {
  AppendableWriteBatch batch;
  std::array<rocksdb::ColumnFamilyHandle*, kStateFamilyCount> families{};
  std::string key;
  std::string value;
  // Generations of the batch's content: bumped by Clear; `committed` holds
  // the latest one a Commit wrote (CommitTicket).
  uint64_t generation = 1;
  std::shared_ptr<std::atomic<uint64_t>> committed = std::make_shared<std::atomic<uint64_t>>(0);
  rocksdb::ColumnFamilyHandle* cf(StateFamily f) const { return families[static_cast<size_t>(f)]; }
  void Put(StateFamily f, std::string_view k, std::string_view v) {
    // A WriteBatch only fails on a batch larger than 4 GiB; the engine's
    // checkpoints are far below that, so a failure is a programming error.
    const rocksdb::Status s = batch.Put(cf(f), ToSlice(k), ToSlice(v));
    if (!s.ok()) spdlog::error("state: checkpoint batch: {}", s.ToString());
  }
  void Delete(StateFamily f, std::string_view k) {
    const rocksdb::Status s = batch.Delete(cf(f), ToSlice(k));
    if (!s.ok()) spdlog::error("state: checkpoint batch: {}", s.ToString());
  }
};

CheckpointBatch::CheckpointBatch(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
CheckpointBatch::~CheckpointBatch() = default;
CheckpointBatch::CheckpointBatch(CheckpointBatch&&) noexcept = default;
CheckpointBatch& CheckpointBatch::operator=(CheckpointBatch&&) noexcept = default;

void CheckpointBatch::PutFeatures(PartitionKey p, std::string_view customer_id,
                                  std::string_view blob) {
  FeaturesKey(p, customer_id, &impl_->key);
  impl_->Put(StateFamily::kFeatures, impl_->key, blob);
}

void CheckpointBatch::PutCustomerModel(PartitionKey p, std::string_view customer_id,
                                       std::string_view blob) {
  CustomerModelKey(p, customer_id, &impl_->key);
  impl_->Put(StateFamily::kModels, impl_->key, blob);
}

void CheckpointBatch::DeleteCustomer(PartitionKey p, std::string_view customer_id) {
  FeaturesKey(p, customer_id, &impl_->key);
  impl_->Delete(StateFamily::kFeatures, impl_->key);
  CustomerModelKey(p, customer_id, &impl_->key);
  impl_->Delete(StateFamily::kModels, impl_->key);
}

void CheckpointBatch::DeleteFeatures(PartitionKey p, std::string_view customer_id) {
  FeaturesKey(p, customer_id, &impl_->key);
  impl_->Delete(StateFamily::kFeatures, impl_->key);
}

void CheckpointBatch::DeleteCustomerModel(PartitionKey p, std::string_view customer_id) {
  CustomerModelKey(p, customer_id, &impl_->key);
  impl_->Delete(StateFamily::kModels, impl_->key);
}

void CheckpointBatch::PutLabelDeadline(PartitionKey p, int64_t deadline_ms, uint64_t id_hash,
                                       std::string_view customer_id, std::string_view example) {
  LabelDeadlineKey(p, deadline_ms, id_hash, customer_id, &impl_->key);
  // The value repeats the deadline, then the example, sealed like every
  // value (Verify).
  std::string payload;
  BinaryWriter(&payload).Put<int64_t>(deadline_ms);
  payload.append(example);
  impl_->value = SealMeta(payload);
  impl_->Put(StateFamily::kModels, impl_->key, impl_->value);
}

void CheckpointBatch::DeleteLabelDeadline(PartitionKey p, int64_t deadline_ms, uint64_t id_hash,
                                          std::string_view customer_id) {
  LabelDeadlineKey(p, deadline_ms, id_hash, customer_id, &impl_->key);
  impl_->Delete(StateFamily::kModels, impl_->key);
}

void CheckpointBatch::DeletePartitionModel(PartitionKey p, std::string_view name) {
  PartitionModelKey(p, name, &impl_->key);
  impl_->Delete(StateFamily::kModels, impl_->key);
}

void CheckpointBatch::DeleteDedupWindow(PartitionKey p) {
  PartitionOnlyKey(p, &impl_->key);
  impl_->Delete(StateFamily::kDedup, impl_->key);
}

void CheckpointBatch::PutPartitionModel(PartitionKey p, std::string_view name,
                                        std::string_view blob) {
  PartitionModelKey(p, name, &impl_->key);
  impl_->Put(StateFamily::kModels, impl_->key, blob);
}

void CheckpointBatch::PutDedupHead(PartitionKey p, std::string_view blob) {
  DedupHeadKey(p, &impl_->key);
  impl_->Put(StateFamily::kDedup, impl_->key, blob);
}

void CheckpointBatch::PutDedupChunk(PartitionKey p, uint32_t chunk, std::string_view blob) {
  DedupChunkKey(p, chunk, &impl_->key);
  impl_->Put(StateFamily::kDedup, impl_->key, blob);
}

void CheckpointBatch::DeleteDedupChunk(PartitionKey p, uint32_t chunk) {
  DedupChunkKey(p, chunk, &impl_->key);
  impl_->Delete(StateFamily::kDedup, impl_->key);
}

void CheckpointBatch::PutDedupWindow(PartitionKey p, std::string_view blob) {
  PartitionOnlyKey(p, &impl_->key);
  impl_->Put(StateFamily::kDedup, impl_->key, blob);
}

void CheckpointBatch::SetInputOffset(PartitionKey p, int64_t next_offset) {
  PartitionOnlyKey(p, &impl_->key);
  impl_->value = EncodeOffsetValue(next_offset);
  impl_->Put(StateFamily::kOffsets, impl_->key, impl_->value);
}

void CheckpointBatch::SetChangelogOffset(PartitionKey p, int64_t next_offset) {
  impl_->key.assign(kChangelogPrefix);
  AppendPartitionPrefix(p, &impl_->key);
  impl_->value = EncodeOffsetValue(next_offset);
  impl_->Put(StateFamily::kMetadata, impl_->key, impl_->value);
}

void CheckpointBatch::FinishRestore(PartitionKey p) {
  impl_->key.assign(kRestoringPrefix);
  AppendPartitionPrefix(p, &impl_->key);
  impl_->Delete(StateFamily::kMetadata, impl_->key);
}

void CheckpointBatch::PutMetadata(std::string_view name, std::string_view value) {
  impl_->key.assign(kUserPrefix);
  impl_->key.append(name);
  impl_->value = SealMeta(value);
  impl_->Put(StateFamily::kMetadata, impl_->key, impl_->value);
}

void CheckpointBatch::DeleteMetadata(std::string_view name) {
  impl_->key.assign(kUserPrefix);
  impl_->key.append(name);
  impl_->Delete(StateFamily::kMetadata, impl_->key);
}

namespace {

bool IsStateFamily(StateFamily f) {
  return f == StateFamily::kFeatures || f == StateFamily::kModels || f == StateFamily::kDedup;
}

// Walks a WriteBatch's puts and deletes, yielding those of state families.
class StateChangeWalker final : public rocksdb::WriteBatch::Handler {
 public:
  StateChangeWalker(const std::array<rocksdb::ColumnFamilyHandle*, kStateFamilyCount>& families,
                    size_t from,
                    const std::function<Status(const CheckpointBatch::StateChange&)>& f)
      : from_(from), f_(f) {
    for (size_t i = 0; i < families.size(); ++i) {
      ids_[i] = families[i] != nullptr ? families[i]->GetID() : UINT32_MAX;
    }
  }
  rocksdb::Status PutCF(uint32_t cf, const rocksdb::Slice& key,
                        const rocksdb::Slice& value) override {
    return Visit(cf, key, false, value);
  }
  rocksdb::Status DeleteCF(uint32_t cf, const rocksdb::Slice& key) override {
    return Visit(cf, key, true, rocksdb::Slice());
  }
  bool Continue() override { return status_.ok(); }
  const Status& status() const { return status_; }

 private:
  rocksdb::Status Visit(uint32_t cf, const rocksdb::Slice& key, bool deleted,
                        const rocksdb::Slice& value) {
    if (index_++ < from_) return rocksdb::Status::OK();
    std::optional<StateFamily> family;
    for (size_t i = 0; i < ids_.size(); ++i) {
      if (ids_[i] == cf) family = static_cast<StateFamily>(i);
    }
    if (!family || !IsStateFamily(*family)) return rocksdb::Status::OK();
    const std::string_view k(key.data(), key.size());
    auto partition = DecodePartitionPrefix(k);
    if (!partition.ok()) {
      status_ = partition.status();
      return rocksdb::Status::Corruption(status_.ToString());
    }
    CheckpointBatch::StateChange change;
    change.family = *family;
    change.partition = *partition;
    change.suffix = k.substr(kPartitionPrefixBytes);
    change.deleted = deleted;
    change.value = std::string_view(value.data(), value.size());
    status_ = f_(change);
    return status_.ok() ? rocksdb::Status::OK() : rocksdb::Status::Aborted(status_.ToString());
  }

  std::array<uint32_t, kStateFamilyCount> ids_{};
  size_t from_;
  size_t index_ = 0;
  const std::function<Status(const CheckpointBatch::StateChange&)>& f_;
  Status status_;
};

}  // namespace

void CheckpointBatch::PutStateEntry(StateFamily family, PartitionKey p, std::string_view suffix,
                                    std::string_view value) {
  impl_->key.clear();
  AppendPartitionPrefix(p, &impl_->key);
  impl_->key.append(suffix);
  impl_->Put(family, impl_->key, value);
}

void CheckpointBatch::DeleteStateEntry(StateFamily family, PartitionKey p,
                                       std::string_view suffix) {
  impl_->key.clear();
  AppendPartitionPrefix(p, &impl_->key);
  impl_->key.append(suffix);
  impl_->Delete(family, impl_->key);
}

Status CheckpointBatch::ForEachStateChange(
    size_t from, const std::function<Status(const StateChange&)>& f) const {
  StateChangeWalker walker(impl_->families, from, f);
  const rocksdb::Status s = impl_->batch.Iterate(&walker);
  if (!walker.status().ok()) return walker.status();
  if (!s.ok()) return Status::Corruption("reading a checkpoint batch: " + s.ToString());
  return Status::OK();
}

void CheckpointBatch::Append(const CheckpointBatch& other) {
  impl_->batch.AppendRecordsOf(other.impl_->batch);
}

void CheckpointBatch::Reserve(size_t bytes) { impl_->batch.Reserve(bytes); }

size_t CheckpointBatch::entry_count() const { return impl_->batch.Count(); }
size_t CheckpointBatch::byte_size() const { return impl_->batch.GetDataSize(); }
std::string_view CheckpointBatch::bytes() const { return impl_->batch.Data(); }
void CheckpointBatch::Clear(size_t keep_bytes) {
  if (impl_->batch.GetDataSize() > keep_bytes) {
    impl_->batch.Release();
  } else {
    impl_->batch.Clear();
  }
  ++impl_->generation;
}

CheckpointBatch::CommitTicket CheckpointBatch::ticket() const {
  CommitTicket t;
  t.done_ = impl_->committed;
  t.generation_ = impl_->generation;
  return t;
}

// ---------------------------------------------------------------------------

using WriteFigures = StateStore::WriteFigures;

struct StateStore::Impl {
  StateStoreOptions options;
  bool created = false;
  std::shared_ptr<rocksdb::Cache> cache;
  std::shared_ptr<rocksdb::WriteBufferManager> write_buffers;
  std::unique_ptr<rocksdb::DB> db;
  std::array<rocksdb::ColumnFamilyHandle*, kStateFamilyCount> families{};
  rocksdb::WriteOptions write_options;

  // CommitRestoring wrote without the WAL since EndRestore last flushed.
  bool unflushed_restore = false;
  // Names the restore table files apart (RestoreTableWriter).
  uint64_t restore_table_files = 0;

  // Bytes written and write stalls waited out (Write), cumulative.
  std::atomic<uint64_t> written_bytes{0};
  std::atomic<uint64_t> stalled_writes{0};
  std::atomic<uint64_t> stall_ns{0};
  std::atomic<uint64_t> timed_out_writes{0};

  mutable std::mutex topics_mutex;  // topic ids: rare (assignment time)
  std::map<std::string, uint32_t, std::less<>> topic_ids;
  std::map<uint32_t, std::string> topic_names;

  rocksdb::ColumnFamilyHandle* cf(StateFamily f) const { return families[static_cast<size_t>(f)]; }

  // Writes `batch` without ever waiting inside RocksDB: RocksDB refuses the
  // write while it would stall it (no_slowdown), and this waits instead,
  // asking for flushes, bounded by options.write_timeout and `cancel`.
  // Nothing of the batch is written unless it returns OK.
  // `without_wal`: the write is lost in a crash unless a flush follows
  // (a changelog restore's, under its restoring mark).
  Status Write(
      rocksdb::WriteBatch* batch, bool sync, const std::atomic<bool>* cancel,
      std::string_view doing,
      std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max(),
      bool without_wal = false);
  // Starts a flush of every family without waiting for it.
  void RequestFlush();
  WriteFigures Figures() const;
  std::string DescribeStall() const;

  ~Impl() { Close(); }
  void Close() {
    if (!db) return;
    if (!options.read_only) {
      // A clean shutdown leaves nothing in the WAL: the next start replays
      // nothing (a crash still recovers from the WAL).
      std::vector<rocksdb::ColumnFamilyHandle*> all(families.begin(), families.end());
      const rocksdb::Status flushed = db->Flush(rocksdb::FlushOptions(), all);
      if (!flushed.ok()) {
        spdlog::warn("state: flushing {} at close: {}", options.path.string(), flushed.ToString());
      }
    }
    for (auto*& handle : families) {
      if (handle != nullptr) {
        const rocksdb::Status s = db->DestroyColumnFamilyHandle(handle);
        if (!s.ok()) spdlog::warn("state: {}", s.ToString());
        handle = nullptr;
      }
    }
    const rocksdb::Status s = db->Close();
    if (!s.ok()) spdlog::warn("state: closing {}: {}", options.path.string(), s.ToString());
    db.reset();
  }
};

Status StateStore::Impl::Write(rocksdb::WriteBatch* batch, bool sync,
                               const std::atomic<bool>* cancel, std::string_view doing,
                               std::chrono::steady_clock::time_point deadline, bool without_wal) {
  rocksdb::WriteOptions w = write_options;
  w.sync = !without_wal && (w.sync || sync);
  w.disableWAL = without_wal;
  w.no_slowdown = true;
  rocksdb::Status s = db->Write(w, batch);
  if (s.IsIncomplete()) {
    // A write stall: memtables over the budget, or RocksDB's own limits
    // (immutable memtables, L0 files). Wait for flushes to free memory,
    // asking for them, rather than inside RocksDB with no bound.
    using Clock = std::chrono::steady_clock;
    const auto started = Clock::now();
    deadline = std::min(deadline, started + options.write_timeout);
    stalled_writes.fetch_add(1, std::memory_order_relaxed);
    auto last_flush_request = started - std::chrono::hours(1);
    auto backoff = std::chrono::milliseconds(1);
    auto account = [&] {
      stall_ns.fetch_add(
          static_cast<uint64_t>(
              std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - started).count()),
          std::memory_order_relaxed);
    };
    while (s.IsIncomplete()) {
      const auto now = Clock::now();
      if (now - last_flush_request >= std::chrono::milliseconds(500)) {
        RequestFlush();
        last_flush_request = now;
      }
      if (cancel != nullptr && cancel->load(std::memory_order_relaxed)) {
        account();
        return Status::Aborted(options.path.string() + ": " + std::string(doing) +
                               ": stop requested while RocksDB could not take the write (" +
                               DescribeStall() + ")");
      }
      if (now >= deadline) {
        account();
        timed_out_writes.fetch_add(1, std::memory_order_relaxed);
        const auto waited =
            std::chrono::duration_cast<std::chrono::milliseconds>(now - started).count();
        return Status::Unavailable(options.path.string() + ": " + std::string(doing) +
                                   ": timed out after " + std::to_string(waited) +
                                   " ms waiting for RocksDB to take the write (" + DescribeStall() +
                                   ")");
      }
      std::this_thread::sleep_for(backoff);
      backoff = std::min(backoff * 2, std::chrono::milliseconds(20));
      s = db->Write(w, batch);
    }
    account();
  }
  if (!s.ok()) return StoreError(s, options.path, doing);
  written_bytes.fetch_add(batch->GetDataSize(), std::memory_order_relaxed);
  return Status::OK();
}

void StateStore::Impl::RequestFlush() {
  rocksdb::FlushOptions flush;
  flush.wait = false;
  flush.allow_write_stall = true;
  std::vector<rocksdb::ColumnFamilyHandle*> all(families.begin(), families.end());
  const rocksdb::Status s = db->Flush(flush, all);
  if (!s.ok())
    spdlog::warn("state: {}: requesting a flush: {}", options.path.string(), s.ToString());
}

WriteFigures StateStore::Impl::Figures() const {
  WriteFigures f;
  f.memtable_bytes = write_buffers->memory_usage();
  f.memtable_budget_bytes = write_buffers->buffer_size();
  f.mutable_memtable_bytes = write_buffers->mutable_memtable_memory_usage();
  auto sum = [&](const char* property, uint64_t* out) {
    for (auto* family : families) {
      uint64_t v = 0;
      if (family != nullptr && db->GetIntProperty(family, property, &v)) *out += v;
    }
  };
  sum("rocksdb.num-immutable-mem-table", &f.immutable_memtables);
  sum("rocksdb.mem-table-flush-pending", &f.pending_flushes);
  sum("rocksdb.estimate-pending-compaction-bytes", &f.pending_compaction_bytes);
  sum("rocksdb.num-files-at-level0", &f.l0_files);
  uint64_t v = 0;
  if (db->GetIntProperty("rocksdb.num-running-flushes", &v)) f.running_flushes = v;
  if (db->GetIntProperty("rocksdb.num-running-compactions", &v)) f.running_compactions = v;
  if (db->GetIntProperty("rocksdb.is-write-stopped", &v)) f.write_stopped = v != 0;
  if (db->GetIntProperty("rocksdb.total-wal-size", &v)) f.wal_bytes = v;
  f.written_bytes = written_bytes.load(std::memory_order_relaxed);
  f.stalled_writes = stalled_writes.load(std::memory_order_relaxed);
  f.stall_seconds = static_cast<double>(stall_ns.load(std::memory_order_relaxed)) * 1e-9;
  f.timed_out_writes = timed_out_writes.load(std::memory_order_relaxed);
  return f;
}

std::string StateStore::Impl::DescribeStall() const {
  const WriteFigures f = Figures();
  char text[512];
  std::snprintf(text, sizeof(text),
                "memtables %.1f of %.1f MiB (mutable %.1f MiB, %llu immutable), flushes pending "
                "%llu running %llu, compactions running %llu pending %.1f MiB, L0 files %llu, "
                "writes %s, WAL %.1f MiB",
                static_cast<double>(f.memtable_bytes) / 1048576.0,
                static_cast<double>(f.memtable_budget_bytes) / 1048576.0,
                static_cast<double>(f.mutable_memtable_bytes) / 1048576.0,
                static_cast<unsigned long long>(f.immutable_memtables),
                static_cast<unsigned long long>(f.pending_flushes),
                static_cast<unsigned long long>(f.running_flushes),
                static_cast<unsigned long long>(f.running_compactions),
                static_cast<double>(f.pending_compaction_bytes) / 1048576.0,
                static_cast<unsigned long long>(f.l0_files),
                f.write_stopped ? "stopped" : "not stopped",
                static_cast<double>(f.wal_bytes) / 1048576.0);
  return text;
}

namespace {

struct Tuning {
  rocksdb::DBOptions db;
  rocksdb::ColumnFamilyOptions family;
};

size_t MemtableBudget(const StateStoreOptions& o) {
  return static_cast<size_t>(static_cast<double>(o.memory_cap_bytes) * o.memtable_fraction);
}

Tuning MakeTuning(const StateStoreOptions& o, const std::shared_ptr<rocksdb::Cache>& cache,
                  const std::shared_ptr<rocksdb::WriteBufferManager>& write_buffers) {
  Tuning t;
  t.db.create_if_missing = o.create_if_missing;
  t.db.create_missing_column_families = true;
  t.db.paranoid_checks = true;
  if (o.env) t.db.env = o.env.get();
  t.db.info_log = std::make_shared<SpdlogRocksLogger>();
  t.db.info_log_level = rocksdb::InfoLogLevel::WARN_LEVEL;
  t.db.stats_dump_period_sec = 300;
  t.db.write_buffer_manager = write_buffers;
  t.db.max_background_jobs = 2;
  // Every flush flushes all families together: a flush started for memory
  // (the manager's budget, a full memtable, the WAL's size) frees all
  // memtable memory and lets the whole WAL go. Per-family flushes could
  // pick a small family's old memtable and free next to nothing while a
  // writer waits for memory.
  t.db.atomic_flush = true;
  // A torn last WAL record (crash mid-write) is dropped, earlier ones kept:
  // a checkpoint is one record, so recovery ends on a checkpoint boundary.
  t.db.wal_recovery_mode = rocksdb::WALRecoveryMode::kPointInTimeRecovery;
  // After a crash the WAL is replayed into memtables and kept; writing them
  // out as SST files at open would delay the restart for nothing.
  t.db.avoid_flush_during_recovery = true;

  rocksdb::BlockBasedTableOptions table;
  table.block_cache = cache;
  table.cache_index_and_filter_blocks = true;
  table.pin_l0_filter_and_index_blocks_in_cache = true;
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  // Index and filter in partitions of metadata_block_size, only their top
  // levels pinned: a lookup reads the one 4 KiB partition it needs. With a
  // whole filter per table file, a store whose filters outgrow the block
  // cache's high-priority half reads each file's filter (about 500 KB for a
  // 64 MB file) back for every miss: at 16M stored customers under a 1 GiB
  // plan that was 44% of a build's CPU, mostly checksums and copies.
  table.index_type = rocksdb::BlockBasedTableOptions::kTwoLevelIndexSearch;
  table.partition_filters = true;
  table.metadata_block_size = 4096;
  table.pin_top_level_index_and_filter = true;
  table.block_size = 16 * 1024;
  t.family.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  t.family.compression = rocksdb::kLZ4Compression;
  // A bloom filter over each memtable's keys: a customer not in the memtable
  // (every first touch, most cache misses) skips the skip list's search,
  // which took a tenth of a build's CPU at 1M customers (bench_restart).
  t.family.memtable_prefix_bloom_size_ratio = 0.02;
  t.family.memtable_whole_key_filtering = true;
  // Memtables within the manager's budget: any one family's memtable starts
  // a flush (of all) at half the budget, the manager at 7/8 of it; one more
  // memtable per family may fill while the previous ones are written out.
  const size_t budget = MemtableBudget(o);
  t.family.write_buffer_size = std::max<size_t>(size_t{1} << 20, budget / 2);
  t.family.max_write_buffer_number = 3;
  // The WAL holds at most a few budgets' worth: past that, RocksDB flushes.
  t.db.max_total_wal_size = std::max<uint64_t>(uint64_t{16} << 20, uint64_t{4} * budget);
  return t;
}

std::vector<rocksdb::ColumnFamilyDescriptor> Descriptors(const rocksdb::ColumnFamilyOptions& o) {
  std::vector<rocksdb::ColumnFamilyDescriptor> out;
  for (const char* name : kFamilyNames) out.emplace_back(name, o);
  return out;
}

// Files RocksDB writes besides CURRENT; their presence without CURRENT means
// a store lost its CURRENT file (corrupt), not an empty directory.
bool LooksLikeStoreFile(const std::string& name) {
  return name.ends_with(".sst") || name.ends_with(".log") || name.starts_with("MANIFEST-") ||
         name.starts_with("OPTIONS-") || name == "IDENTITY";
}

Status ReadMetaString(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* cf, std::string_view key,
                      std::optional<std::string>* out) {
  std::string value;
  const rocksdb::Status s = db->Get(rocksdb::ReadOptions(), cf, ToSlice(key), &value);
  if (s.IsNotFound()) {
    out->reset();
    return Status::OK();
  }
  if (!s.ok()) return Status::IOError(s.ToString());
  auto payload = OpenMeta(value);
  if (!payload.ok())
    return payload.status().WithContext(std::string("metadata '") + std::string(key) + "'");
  *out = std::string(*payload);
  return Status::OK();
}

// Format version and identity of an open store.
// *found is the store's version.
Status CheckFormatAndIdentity(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* meta,
                              const StateStoreOptions& o, uint32_t* found) {
  const std::string path = o.path.string();
  std::optional<std::string> version;
  Status st = ReadMetaString(db, meta, kFormatVersionKey, &version);
  if (!st.ok()) return Status::Corruption(path + ": " + st.message());
  if (!version) {
    return Status::Corruption(path +
                              ": no format version: not a crmstream state store, or one "
                              "whose creation was interrupted");
  }
  BinaryReader reader(*version);
  uint32_t v = 0;
  if (!reader.Get(&v).ok()) return Status::Corruption(path + ": unreadable format version");
  *found = v;
  if (v != kStateFormatVersion && v != kUpgradableStateFormatVersion) {
    return Status::InvalidArgument(
        path + ": state format version " + std::to_string(v) + ", this build reads version " +
        std::to_string(kStateFormatVersion) +
        "; move the directory away and the engine rebuilds the state from its input");
  }
  if (!o.identity.empty()) {
    std::optional<std::string> identity;
    st = ReadMetaString(db, meta, kIdentityKey, &identity);
    if (!st.ok()) return Status::Corruption(path + ": " + st.message());
    if (identity && !identity->empty() && *identity != o.identity) {
      return Status::InvalidArgument(path + ": state written by '" + *identity +
                                     "', not by this engine and pipeline ('" + o.identity +
                                     "'); give another state directory");
    }
  }
  return Status::OK();
}

}  // namespace

StateStore::StateStore(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
StateStore::~StateStore() = default;

Result<std::unique_ptr<StateStore>> StateStore::Open(const StateStoreOptions& options) {
  if (options.path.empty()) return Status::InvalidArgument("state: no state directory given");
  if (options.memory_cap_bytes < (size_t{8} << 20)) {
    return Status::InvalidArgument("state: memory_cap_bytes must be at least 8 MiB");
  }
  if (!(options.memtable_fraction > 0.0 && options.memtable_fraction < 1.0)) {
    return Status::InvalidArgument("state: memtable_fraction must be in (0, 1)");
  }
  const fs::path& path = options.path;
  const std::string where = path.string() + ": ";

  // What is there before RocksDB touches anything.
  std::error_code ec;
  const fs::file_status status = fs::status(path, ec);
  if (ec && ec != std::errc::no_such_file_or_directory) {
    return Status::IOError(where + "cannot inspect the state directory: " + ec.message());
  }
  bool has_store = false;
  if (fs::exists(status)) {
    if (!fs::is_directory(status)) {
      return Status::IOError(where + "not a directory (the state directory must be a folder)");
    }
    has_store = fs::exists(path / "CURRENT", ec);
    if (!has_store) {
      for (const auto& entry : fs::directory_iterator(path, ec)) {
        if (LooksLikeStoreFile(entry.path().filename().string())) {
          return Status::Corruption(where + "state files without a CURRENT file (" +
                                    entry.path().filename().string() +
                                    "): the store is damaged; move the directory away to "
                                    "have the engine rebuild the state from its input");
        }
      }
      if (ec) return Status::IOError(where + "cannot list the state directory: " + ec.message());
    }
  }
  if (!has_store && (options.read_only || !options.create_if_missing)) {
    return Status::NotFound(where + "no state store here");
  }

  auto impl = std::make_unique<Impl>();
  impl->options = options;
  impl->cache = rocksdb::NewLRUCache(options.memory_cap_bytes);
  // allow_stall: when flushes lag (a busy disk or CPU), writes wait instead
  // of letting memtables grow past the budget. The store's writes ask
  // RocksDB not to wait (no_slowdown) and wait themselves (WriteBounded).
  impl->write_buffers = std::make_shared<rocksdb::WriteBufferManager>(
      MemtableBudget(options), impl->cache, /*allow_stall=*/true);
  impl->write_options.sync = options.sync;
  const Tuning tuning = MakeTuning(options, impl->cache, impl->write_buffers);
  const auto descriptors = Descriptors(tuning.family);

  if (has_store) {
    // Validate read-only first: a store we refuse is left as it was (a
    // read-write open may write a new MANIFEST before failing).
    std::vector<std::string> names;
    rocksdb::Status s = rocksdb::DB::ListColumnFamilies(tuning.db, path.string(), &names);
    if (!s.ok()) return StoreError(s, path, "opening the state");
    for (const char* wanted : kFamilyNames) {
      if (std::find(names.begin(), names.end(), wanted) == names.end()) {
        return Status::Corruption(where + "not a crmstream state store (no column family '" +
                                  wanted + "')");
      }
    }
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    rocksdb::DB* raw = nullptr;
    rocksdb::DBOptions validation = tuning.db;
    validation.max_open_files = 16;  // reads a few metadata keys: open tables lazily
    validation.skip_stats_update_on_db_open = true;
    s = rocksdb::DB::OpenForReadOnly(validation, path.string(), descriptors, &handles, &raw);
    if (!s.ok()) return StoreError(s, path, "opening the state");
    std::unique_ptr<rocksdb::DB> check(raw);
    uint32_t found = 0;
    Status st = CheckFormatAndIdentity(check.get(), handles.back(), options, &found);
    for (auto* h : handles) (void)check->DestroyColumnFamilyHandle(h);
    (void)check->Close();
    check.reset();
    CRM_RETURN_NOT_OK(st);
  } else {
    fs::create_directories(path, ec);
    if (ec) {
      return Status::IOError(where + "cannot create the state directory: " + ec.message());
    }
  }

  rocksdb::DBOptions db_options = tuning.db;
  if (!options.read_only) {
    // RocksDB's own LOG file in the store (rotated, capped), mirrored to the
    // process logger from warnings up.
    db_options.info_log = std::make_shared<SpdlogRocksLogger>(
        std::make_shared<RocksLogFile>(path / "LOG", kLogFileBytes, kLogFilesKept));
    db_options.info_log_level = rocksdb::InfoLogLevel::INFO_LEVEL;
  }
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s =
      options.read_only
          ? rocksdb::DB::OpenForReadOnly(db_options, path.string(), descriptors, &handles, &raw)
          : rocksdb::DB::Open(db_options, path.string(), descriptors, &handles, &raw);
  if (!s.ok()) return StoreError(s, path, "opening the state");
  impl->db.reset(raw);
  for (size_t i = 0; i < handles.size(); ++i) impl->families[i] = handles[i];
  impl->created = !has_store;
  if (!options.read_only) {
    // Table files of a restore a crash cut short (never ingested, or
    // ingested and left): its restoring mark makes it start over.
    std::error_code removed;
    fs::remove_all(path / kRestoreTablesSubdirectory, removed);
  }

  rocksdb::ColumnFamilyHandle* meta = impl->cf(StateFamily::kMetadata);
  std::string version;
  BinaryWriter(&version).Put<uint32_t>(kStateFormatVersion);
  if (impl->created) {
    rocksdb::WriteBatch batch;
    (void)batch.Put(meta, ToSlice(kFormatVersionKey), SealMeta(version));
    (void)batch.Put(meta, ToSlice(kIdentityKey), SealMeta(options.identity));
    CRM_RETURN_NOT_OK(impl->Write(&batch, /*sync=*/true, nullptr, "creating the state"));
  } else {
    // Re-checked on the store actually opened (cheap: two point reads).
    uint32_t found = 0;
    CRM_RETURN_NOT_OK(CheckFormatAndIdentity(impl->db.get(), meta, options, &found));
    if (found != kStateFormatVersion && !options.read_only) {
      // Marked before anything of the new format is written: a build that
      // reads only the old one refuses the store instead of missing the
      // dedup windows already in chunks.
      rocksdb::WriteBatch batch;
      (void)batch.Put(meta, ToSlice(kFormatVersionKey), SealMeta(version));
      CRM_RETURN_NOT_OK(impl->Write(&batch, /*sync=*/true, nullptr, "upgrading the state format"));
    }
  }

  // Topic ids.
  std::unique_ptr<rocksdb::Iterator> it(impl->db->NewIterator(rocksdb::ReadOptions(), meta));
  for (it->Seek(ToSlice(kTopicPrefix)); it->Valid() && it->key().starts_with(ToSlice(kTopicPrefix));
       it->Next()) {
    auto payload = OpenMeta(ToView(it->value()));
    BinaryReader reader(payload.ok() ? *payload : std::string_view());
    uint32_t id = 0;
    if (!payload.ok() || !reader.Get(&id).ok()) {
      return Status::Corruption(where + "unreadable topic id for '" +
                                std::string(ToView(it->key()).substr(kTopicPrefix.size())) + "'");
    }
    std::string name(ToView(it->key()).substr(kTopicPrefix.size()));
    impl->topic_names[id] = name;
    impl->topic_ids.emplace(std::move(name), id);
  }
  if (!it->status().ok()) return StoreError(it->status(), path, "reading topic ids");
  it.reset();
  return std::unique_ptr<StateStore>(new StateStore(std::move(impl)));
}

const fs::path& StateStore::path() const { return impl_->options.path; }
bool StateStore::created() const { return impl_->created; }
bool StateStore::read_only() const { return impl_->options.read_only; }

Result<PartitionKey> StateStore::Partition(std::string_view topic, int32_t partition) {
  if (partition < 0) return Status::InvalidArgument("state: negative partition");
  std::lock_guard<std::mutex> lock(impl_->topics_mutex);
  auto found = impl_->topic_ids.find(topic);
  if (found != impl_->topic_ids.end()) return PartitionKey{found->second, partition};
  if (impl_->options.read_only) {
    return Status::NotFound(path().string() + ": no state for topic '" + std::string(topic) + "'");
  }
  const uint32_t id = impl_->topic_names.empty() ? 1 : impl_->topic_names.rbegin()->first + 1;
  std::string payload;
  BinaryWriter(&payload).Put<uint32_t>(id);
  std::string key(kTopicPrefix);
  key.append(topic);
  rocksdb::WriteBatch batch;
  (void)batch.Put(impl_->cf(StateFamily::kMetadata), ToSlice(key), SealMeta(payload));
  CRM_RETURN_NOT_OK(impl_->Write(&batch, /*sync=*/true, nullptr,
                                 "registering topic '" + std::string(topic) + "'"));
  impl_->topic_names[id] = std::string(topic);
  impl_->topic_ids.emplace(std::string(topic), id);
  return PartitionKey{id, partition};
}

std::string StateStore::TopicName(uint32_t topic_id) const {
  std::lock_guard<std::mutex> lock(impl_->topics_mutex);
  auto it = impl_->topic_names.find(topic_id);
  return it == impl_->topic_names.end() ? std::string() : it->second;
}

CheckpointBatch StateStore::NewBatch() const {
  auto impl = std::make_unique<CheckpointBatch::Impl>();
  impl->families = impl_->families;
  return CheckpointBatch(std::move(impl));
}

Status StateStore::Commit(CheckpointBatch* batch, const std::atomic<bool>* cancel,
                          std::chrono::steady_clock::time_point deadline) {
  return CommitAs(batch, "writing a checkpoint", cancel, deadline, /*sync=*/false,
                  /*without_wal=*/false);
}

Status StateStore::CommitRestoring(CheckpointBatch* batch) {
  if (!batch->empty()) impl_->unflushed_restore = true;
  return CommitAs(batch, "writing restored state", nullptr,
                  std::chrono::steady_clock::time_point::max(), /*sync=*/false,
                  /*without_wal=*/true);
}

Status StateStore::EndRestore(CheckpointBatch* batch) {
  if (impl_->options.read_only) {
    return Status::InvalidArgument(path().string() + ": state opened read-only");
  }
  // What CommitRestoring wrote is only in memtables: on disk before the
  // mark goes. (Ingested table files are on disk already.)
  if (impl_->unflushed_restore) {
    CRM_RETURN_NOT_OK(Flush());
    impl_->unflushed_restore = false;
  }
  return CommitAs(batch, "ending a restore", nullptr, std::chrono::steady_clock::time_point::max(),
                  /*sync=*/true, /*without_wal=*/false);
}

Status StateStore::CommitAs(CheckpointBatch* batch, std::string_view doing,
                            const std::atomic<bool>* cancel,
                            std::chrono::steady_clock::time_point deadline, bool sync,
                            bool without_wal) {
  if (impl_->options.read_only) {
    return Status::InvalidArgument(path().string() + ": state opened read-only");
  }
  if (!batch->empty()) {
    CRM_RETURN_NOT_OK(
        impl_->Write(&batch->impl_->batch, sync, cancel, doing, deadline, without_wal));
  }
  batch->impl_->committed->store(batch->impl_->generation);
  batch->Clear();
  return Status::OK();
}

Status StateStore::ForEachInRange(
    StateFamily family, std::string_view begin, std::string_view end, size_t strip_prefix,
    const std::function<Status(std::string_view, std::string_view)>& f) const {
  rocksdb::ReadOptions read;
  read.fill_cache = false;  // a restore or dump reads everything once
  read.verify_checksums = true;
  const rocksdb::Slice upper = ToSlice(end);
  if (!end.empty()) read.iterate_upper_bound = &upper;
  std::unique_ptr<rocksdb::Iterator> it(impl_->db->NewIterator(read, impl_->cf(family)));
  for (it->Seek(ToSlice(begin)); it->Valid(); it->Next()) {
    const std::string_view key = ToView(it->key());
    CRM_RETURN_NOT_OK(f(key.substr(strip_prefix), ToView(it->value())));
  }
  if (!it->status().ok()) {
    return StoreError(it->status(), path(),
                      "reading the " + std::string(StateFamilyName(family)) + " family");
  }
  return Status::OK();
}

Status StateStore::ForEachCustomer(PartitionKey p, const EntryCallback& f) const {
  std::string begin;
  PartitionOnlyKey(p, &begin);
  return ForEachInRange(StateFamily::kFeatures, begin, PartitionRangeEnd(p), kPartitionPrefixBytes,
                        f);
}

Status StateStore::ForEachCustomerModel(PartitionKey p, const EntryCallback& f) const {
  std::string begin;
  CustomerModelKey(p, "", &begin);
  std::string end = begin;
  end.back() = static_cast<char>(end.back() + 1);
  return ForEachInRange(StateFamily::kModels, begin, end, kPartitionPrefixBytes + 1, f);
}

Status StateStore::ForEachPartitionModel(PartitionKey p, const EntryCallback& f) const {
  std::string begin;
  PartitionModelKey(p, "", &begin);
  std::string end = begin;
  end.back() = static_cast<char>(end.back() + 1);
  return ForEachInRange(StateFamily::kModels, begin, end, kPartitionPrefixBytes + 1, f);
}

Status StateStore::ForEachEntry(
    StateFamily family,
    const std::function<Status(std::string_view key, std::string_view value)>& f) const {
  return ForEachInRange(family, "", "", 0, f);
}

Result<std::optional<std::string>> StateStore::GetRaw(StateFamily family,
                                                      std::string_view key) const {
  std::string value;
  const rocksdb::Status s =
      impl_->db->Get(rocksdb::ReadOptions(), impl_->cf(family), ToSlice(key), &value);
  if (s.IsNotFound()) return std::optional<std::string>();
  if (!s.ok()) return StoreError(s, path(), "reading " + std::string(StateFamilyName(family)));
  return std::optional<std::string>(std::move(value));
}

Result<std::optional<std::string>> StateStore::GetFeatures(PartitionKey p,
                                                           std::string_view customer) const {
  std::string key;
  FeaturesKey(p, customer, &key);
  return GetRaw(StateFamily::kFeatures, key);
}

Result<std::optional<std::string>> StateStore::GetCustomerModel(PartitionKey p,
                                                                std::string_view customer) const {
  std::string key;
  CustomerModelKey(p, customer, &key);
  return GetRaw(StateFamily::kModels, key);
}

Result<StateStore::CustomerBlobs> StateStore::GetCustomer(PartitionKey p,
                                                          std::string_view customer) const {
  std::string features_key, model_key;
  FeaturesKey(p, customer, &features_key);
  CustomerModelKey(p, customer, &model_key);
  std::array<rocksdb::ColumnFamilyHandle*, 2> families{impl_->cf(StateFamily::kFeatures),
                                                       impl_->cf(StateFamily::kModels)};
  std::array<rocksdb::Slice, 2> keys{ToSlice(features_key), ToSlice(model_key)};
  std::array<rocksdb::PinnableSlice, 2> values;
  std::array<rocksdb::Status, 2> statuses;
  impl_->db->MultiGet(rocksdb::ReadOptions(), keys.size(), families.data(), keys.data(),
                      values.data(), statuses.data());
  CustomerBlobs out;
  std::array<std::optional<std::string>*, 2> into{&out.features, &out.model};
  for (size_t i = 0; i < keys.size(); ++i) {
    if (statuses[i].IsNotFound()) continue;
    if (!statuses[i].ok()) return StoreError(statuses[i], path(), "reading a customer");
    *into[i] = values[i].ToString();
  }
  return out;
}

// Two keys per customer (features, model), in that order.
struct CustomerReads::Impl {
  std::string ids;           // the ids, back to back
  std::vector<size_t> ends;  // where each id ends in `ids`
  std::vector<std::string> keys;
  std::vector<rocksdb::Slice> slices;
  std::vector<rocksdb::ColumnFamilyHandle*> families;
  std::unique_ptr<rocksdb::PinnableSlice[]> values;
  size_t values_capacity = 0;
  std::vector<rocksdb::Status> statuses;
  size_t read = 0;  // customers whose values are valid
};

CustomerReads::CustomerReads() : impl_(std::make_unique<Impl>()) {}
CustomerReads::~CustomerReads() = default;

void CustomerReads::Clear() {
  impl_->ids.clear();
  impl_->ends.clear();
  for (size_t i = 0; i < 2 * impl_->read; ++i) impl_->values[i].Reset();
  impl_->read = 0;
}

void CustomerReads::Add(std::string_view customer_id) {
  impl_->ids.append(customer_id);
  impl_->ends.push_back(impl_->ids.size());
}

size_t CustomerReads::size() const { return impl_->ends.size(); }

std::string_view CustomerReads::customer_id(size_t i) const {
  const size_t begin = i == 0 ? 0 : impl_->ends[i - 1];
  return std::string_view(impl_->ids).substr(begin, impl_->ends[i] - begin);
}

std::string_view CustomerReads::features(size_t i) const {
  return i < impl_->read ? ToView(impl_->values[2 * i]) : std::string_view();
}

std::string_view CustomerReads::model(size_t i) const {
  return i < impl_->read ? ToView(impl_->values[2 * i + 1]) : std::string_view();
}

Status StateStore::ReadCustomers(PartitionKey p, CustomerReads* reads) const {
  CustomerReads::Impl& r = *reads->impl_;
  const size_t n = reads->size();
  for (size_t i = 0; i < 2 * r.read; ++i) r.values[i].Reset();
  r.read = 0;
  if (n == 0) return Status::OK();
  if (r.keys.size() < 2 * n) r.keys.resize(2 * n);
  r.slices.resize(2 * n);
  r.families.resize(2 * n);
  r.statuses.resize(2 * n);
  if (r.values_capacity < 2 * n) {
    r.values_capacity = std::max(2 * n, 2 * r.values_capacity);
    r.values = std::make_unique<rocksdb::PinnableSlice[]>(r.values_capacity);
  }
  for (size_t i = 0; i < n; ++i) {
    FeaturesKey(p, reads->customer_id(i), &r.keys[2 * i]);
    CustomerModelKey(p, reads->customer_id(i), &r.keys[2 * i + 1]);
    r.slices[2 * i] = ToSlice(r.keys[2 * i]);
    r.slices[2 * i + 1] = ToSlice(r.keys[2 * i + 1]);
    r.families[2 * i] = impl_->cf(StateFamily::kFeatures);
    r.families[2 * i + 1] = impl_->cf(StateFamily::kModels);
  }
  impl_->db->MultiGet(rocksdb::ReadOptions(), 2 * n, r.families.data(), r.slices.data(),
                      r.values.get(), r.statuses.data(), /*sorted_input=*/false);
  r.read = n;
  for (size_t i = 0; i < 2 * n; ++i) {
    if (r.statuses[i].IsNotFound()) {
      r.values[i].Reset();
    } else if (!r.statuses[i].ok()) {
      const rocksdb::Status failed = r.statuses[i];
      for (size_t j = 0; j < 2 * n; ++j) r.values[j].Reset();
      r.read = 0;
      return StoreError(failed, path(), "reading customers");
    }
  }
  return Status::OK();
}

Result<std::optional<LabelDeadline>> StateStore::NextLabelDeadline(
    PartitionKey p, const LabelDeadline* after) const {
  std::string begin;
  if (after != nullptr) {
    LabelDeadlineKey(p, after->deadline_ms, after->id_hash, after->customer_id, &begin);
    begin.push_back('\0');  // the first key after it
  } else {
    AppendPartitionPrefix(p, &begin);
    begin.push_back(static_cast<char>(ModelScope::kLabelDeadline));
  }
  std::string end;
  AppendPartitionPrefix(p, &end);
  end.push_back(static_cast<char>(static_cast<char>(ModelScope::kLabelDeadline) + 1));
  rocksdb::ReadOptions read;
  const rocksdb::Slice upper = ToSlice(end);
  read.iterate_upper_bound = &upper;
  std::unique_ptr<rocksdb::Iterator> it(
      impl_->db->NewIterator(read, impl_->cf(StateFamily::kModels)));
  it->Seek(ToSlice(begin));
  if (!it->Valid()) {
    if (!it->status().ok()) return StoreError(it->status(), path(), "reading label deadlines");
    return std::optional<LabelDeadline>();
  }
  CRM_ASSIGN_OR_RETURN(LabelDeadline d, DecodeLabelDeadlineKey(ToView(it->key())));
  CRM_ASSIGN_OR_RETURN(const std::string_view example,
                       LabelExample(ToView(it->value()), d.deadline_ms));
  d.example.assign(example);
  return std::optional<LabelDeadline>(std::move(d));
}

Result<std::optional<std::string>> StateStore::GetLabelExample(PartitionKey p, int64_t deadline_ms,
                                                               uint64_t id_hash,
                                                               std::string_view customer_id) const {
  std::string key;
  LabelDeadlineKey(p, deadline_ms, id_hash, customer_id, &key);
  CRM_ASSIGN_OR_RETURN(std::optional<std::string> value, GetRaw(StateFamily::kModels, key));
  if (!value) return std::optional<std::string>();
  CRM_ASSIGN_OR_RETURN(const std::string_view example, LabelExample(*value, deadline_ms));
  return std::optional<std::string>(std::string(example));
}

Result<std::optional<std::string>> StateStore::GetDedupHead(PartitionKey p) const {
  std::string key;
  DedupHeadKey(p, &key);
  return GetRaw(StateFamily::kDedup, key);
}

Result<std::optional<std::string>> StateStore::GetDedupChunk(PartitionKey p, uint32_t chunk) const {
  std::string key;
  DedupChunkKey(p, chunk, &key);
  return GetRaw(StateFamily::kDedup, key);
}

Result<std::optional<std::string>> StateStore::GetDedupWindow(PartitionKey p) const {
  std::string key;
  PartitionOnlyKey(p, &key);
  return GetRaw(StateFamily::kDedup, key);
}

Result<PartitionState> StateStore::GetPartition(PartitionKey p) const {
  PartitionState state;
  state.key = p;
  state.topic = TopicName(p.topic_id);
  std::string key;
  PartitionOnlyKey(p, &key);
  CRM_ASSIGN_OR_RETURN(auto input, GetRaw(StateFamily::kOffsets, key));
  if (input) {
    auto offset = DecodeOffsetValue(*input);
    if (!offset.ok()) return offset.status().WithContext(path().string() + ": input offset");
    state.input_offset = *offset;
  }
  CRM_ASSIGN_OR_RETURN(auto changelog,
                       GetRaw(StateFamily::kMetadata, PartitionMetaKey(kChangelogPrefix, p)));
  if (changelog) {
    auto offset = DecodeOffsetValue(*changelog);
    if (!offset.ok()) return offset.status().WithContext(path().string() + ": changelog offset");
    state.changelog_offset = *offset;
  }
  CRM_ASSIGN_OR_RETURN(auto restoring,
                       GetRaw(StateFamily::kMetadata, PartitionMetaKey(kRestoringPrefix, p)));
  state.restoring = restoring.has_value();
  return state;
}

Result<std::vector<PartitionState>> StateStore::ListPartitions() const {
  std::map<PartitionKey, bool> seen;
  // Partition-scoped families: one seek per partition (skip to its range end).
  for (StateFamily family :
       {StateFamily::kFeatures, StateFamily::kModels, StateFamily::kOffsets, StateFamily::kDedup}) {
    rocksdb::ReadOptions read;
    read.fill_cache = false;
    std::unique_ptr<rocksdb::Iterator> it(impl_->db->NewIterator(read, impl_->cf(family)));
    it->SeekToFirst();
    while (it->Valid()) {
      CRM_ASSIGN_OR_RETURN(PartitionKey p, DecodePartitionPrefix(ToView(it->key())));
      seen[p] = true;
      const std::string end = PartitionRangeEnd(p);
      if (end.empty()) break;
      it->Seek(ToSlice(end));
    }
    if (!it->status().ok()) return StoreError(it->status(), path(), "listing partitions");
  }
  for (std::string_view prefix : {kChangelogPrefix, kRestoringPrefix}) {
    CRM_RETURN_NOT_OK(ForEachInRange(
        StateFamily::kMetadata, prefix, std::string(prefix.substr(0, prefix.size() - 1)) + "0",
        prefix.size(), [&](std::string_view rest, std::string_view) -> Status {
          CRM_ASSIGN_OR_RETURN(PartitionKey p, DecodePartitionPrefix(rest));
          seen[p] = true;
          return Status::OK();
        }));
  }
  std::vector<PartitionState> out;
  out.reserve(seen.size());
  for (const auto& [p, unused] : seen) {
    CRM_ASSIGN_OR_RETURN(PartitionState state, GetPartition(p));
    out.push_back(std::move(state));
  }
  return out;
}

Status StateStore::DropPartition(PartitionKey p) {
  if (impl_->options.read_only) {
    return Status::InvalidArgument(path().string() + ": state opened read-only");
  }
  rocksdb::WriteBatch batch;
  std::string begin;
  PartitionOnlyKey(p, &begin);
  const std::string end = PartitionRangeEnd(p);
  for (StateFamily family :
       {StateFamily::kFeatures, StateFamily::kModels, StateFamily::kOffsets, StateFamily::kDedup}) {
    (void)batch.DeleteRange(impl_->cf(family), ToSlice(begin), ToSlice(end));
  }
  auto* meta = impl_->cf(StateFamily::kMetadata);
  (void)batch.Delete(meta, ToSlice(PartitionMetaKey(kChangelogPrefix, p)));
  (void)batch.Delete(meta, ToSlice(PartitionMetaKey(kRestoringPrefix, p)));
  return impl_->Write(&batch, /*sync=*/false, nullptr, "dropping a partition");
}

Status StateStore::BeginRestore(PartitionKey p, bool drop_state) {
  if (impl_->options.read_only) {
    return Status::InvalidArgument(path().string() + ": state opened read-only");
  }
  rocksdb::WriteBatch batch;
  auto* meta = impl_->cf(StateFamily::kMetadata);
  if (drop_state) {
    std::string begin;
    PartitionOnlyKey(p, &begin);
    const std::string end = PartitionRangeEnd(p);
    rocksdb::ReadOptions read;
    read.fill_cache = false;
    const rocksdb::Slice upper = ToSlice(end);
    read.iterate_upper_bound = &upper;
    for (StateFamily family : {StateFamily::kFeatures, StateFamily::kModels, StateFamily::kOffsets,
                               StateFamily::kDedup}) {
      // Only a family holding something of the partition gets a range
      // delete: one in the memtable would make a restore's first ingest
      // flush the memtables (its files overlap it), a cost each handover to
      // an instance that never had the partition would pay for nothing.
      std::unique_ptr<rocksdb::Iterator> it(impl_->db->NewIterator(read, impl_->cf(family)));
      it->Seek(ToSlice(begin));
      if (!it->status().ok()) return StoreError(it->status(), path(), "starting a restore");
      if (it->Valid()) (void)batch.DeleteRange(impl_->cf(family), ToSlice(begin), ToSlice(end));
    }
    (void)batch.Delete(meta, ToSlice(PartitionMetaKey(kChangelogPrefix, p)));
  }
  (void)batch.Put(meta, ToSlice(PartitionMetaKey(kRestoringPrefix, p)), SealMeta(""));
  // Synced: a crash during the restore must find the mark.
  return impl_->Write(&batch, /*sync=*/true, nullptr, "starting a restore");
}

struct StateStore::RestoreTableWriter::Impl {
  StateStore::Impl* store = nullptr;
  PartitionKey partition;
  fs::path dir;
  std::string key;
  // The family being written and its file; the span's finished files.
  std::optional<StateFamily> family;
  std::unique_ptr<rocksdb::SstFileWriter> writer;
  std::vector<rocksdb::IngestExternalFileArg> files;
  uint64_t span_bytes = 0;  // the finished files not yet ingested
  uint64_t ingested_bytes = 0;

  Status Fail(const rocksdb::Status& s, std::string_view doing) const {
    return StoreError(s, store->options.path, doing);
  }
  // The file of `f` open for the next key (families come one after another).
  Status Open(StateFamily f) {
    if (family == f) return Status::OK();
    CRM_RETURN_NOT_OK(Finish());
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) {
      return Status::IOError(dir.string() +
                             ": creating the restore's table directory: " + ec.message());
    }
    rocksdb::ColumnFamilyHandle* cf = store->cf(f);
    // The page cache keeps the pages: the restored state is read next.
    writer = std::make_unique<rocksdb::SstFileWriter>(
        rocksdb::EnvOptions(), store->db->GetOptions(cf), cf, /*invalidate_page_cache=*/false);
    const fs::path file = dir / (std::to_string(++store->restore_table_files) + ".sst");
    const rocksdb::Status s = writer->Open(file.string());
    if (!s.ok()) return Fail(s, "opening a restore table file");
    family = f;
    rocksdb::IngestExternalFileArg arg;
    arg.column_family = cf;
    arg.external_files.push_back(file.string());
    // Linked into the store, not copied.
    arg.options.move_files = true;
    // The sequence number stays in the manifest; the file is not rewritten.
    arg.options.write_global_seqno = false;
    files.push_back(std::move(arg));
    return Status::OK();
  }
  // Ends the open file (synced), if any.
  Status Finish() {
    if (!writer) return Status::OK();
    rocksdb::ExternalSstFileInfo info;
    const rocksdb::Status s = writer->Finish(&info);
    writer.reset();
    family.reset();
    if (!s.ok()) return Fail(s, "finishing a restore table file");
    span_bytes += info.file_size;
    return Status::OK();
  }
  void SetKey(std::string_view suffix) {
    key.clear();
    AppendPartitionPrefix(partition, &key);
    key.append(suffix);
  }
};

StateStore::RestoreTableWriter::RestoreTableWriter(std::unique_ptr<Impl> impl)
    : impl_(std::move(impl)) {}

StateStore::RestoreTableWriter::~RestoreTableWriter() {
  impl_->writer.reset();
  std::error_code ec;
  fs::remove_all(impl_->dir, ec);
}

Status StateStore::RestoreTableWriter::Put(StateFamily family, std::string_view suffix,
                                           std::string_view value) {
  CRM_RETURN_NOT_OK(impl_->Open(family));
  impl_->SetKey(suffix);
  const rocksdb::Status s = impl_->writer->Put(ToSlice(impl_->key), ToSlice(value));
  return s.ok() ? Status::OK() : impl_->Fail(s, "writing a restore table file");
}

Status StateStore::RestoreTableWriter::Delete(StateFamily family, std::string_view suffix) {
  CRM_RETURN_NOT_OK(impl_->Open(family));
  impl_->SetKey(suffix);
  const rocksdb::Status s = impl_->writer->Delete(ToSlice(impl_->key));
  return s.ok() ? Status::OK() : impl_->Fail(s, "writing a restore table file");
}

Status StateStore::RestoreTableWriter::Ingest() {
  CRM_RETURN_NOT_OK(impl_->Finish());
  if (impl_->files.empty()) return Status::OK();
  // Every family's files of the span, atomically. A range of the memtable
  // they overlap (the restore's drop) is flushed first, by RocksDB.
  const rocksdb::Status s = impl_->store->db->IngestExternalFiles(impl_->files);
  impl_->files.clear();
  const uint64_t bytes = std::exchange(impl_->span_bytes, 0);
  std::error_code ec;
  fs::remove_all(impl_->dir, ec);  // files a failed ingest left
  if (!s.ok()) return impl_->Fail(s, "ingesting restored state");
  impl_->ingested_bytes += bytes;
  impl_->store->written_bytes.fetch_add(bytes, std::memory_order_relaxed);
  return Status::OK();
}

uint64_t StateStore::RestoreTableWriter::ingested_bytes() const { return impl_->ingested_bytes; }

Result<std::unique_ptr<StateStore::RestoreTableWriter>> StateStore::NewRestoreTableWriter(
    PartitionKey p) {
  if (impl_->options.read_only) {
    return Status::InvalidArgument(path().string() + ": state opened read-only");
  }
  auto impl = std::make_unique<RestoreTableWriter::Impl>();
  impl->store = impl_.get();
  impl->partition = p;
  impl->dir = path() / kRestoreTablesSubdirectory;
  return std::unique_ptr<RestoreTableWriter>(new RestoreTableWriter(std::move(impl)));
}

Status StateStore::PutMetadata(std::string_view name, std::string_view value,
                               const std::atomic<bool>* cancel,
                               std::chrono::steady_clock::time_point deadline) {
  if (impl_->options.read_only) {
    return Status::InvalidArgument(path().string() + ": state opened read-only");
  }
  std::string key(kUserPrefix);
  key.append(name);
  rocksdb::WriteBatch batch;
  (void)batch.Put(impl_->cf(StateFamily::kMetadata), ToSlice(key), SealMeta(value));
  return impl_->Write(&batch, /*sync=*/true, cancel, "writing metadata", deadline);
}

Result<std::optional<std::string>> StateStore::GetMetadata(std::string_view name) const {
  std::string key(kUserPrefix);
  key.append(name);
  std::optional<std::string> out;
  Status st = ReadMetaString(impl_->db.get(), impl_->cf(StateFamily::kMetadata), key, &out);
  if (!st.ok()) return st.WithContext(path().string());
  return out;
}

Result<std::string> StateStore::Identity() const {
  std::optional<std::string> out;
  Status st =
      ReadMetaString(impl_->db.get(), impl_->cf(StateFamily::kMetadata), kIdentityKey, &out);
  if (!st.ok()) return st.WithContext(path().string());
  return out.value_or(std::string());
}

Result<VerifyReport> StateStore::Verify() const {
  const rocksdb::Status s = impl_->db->VerifyChecksum();
  if (!s.ok()) return StoreError(s, path(), "verifying SST checksums");
  VerifyReport report;
  for (int f = 0; f < kStateFamilyCount; ++f) {
    const auto family = static_cast<StateFamily>(f);
    CRM_RETURN_NOT_OK(ForEachEntry(family, [&](std::string_view key, std::string_view value) {
      ++report.values_checked;
      const Status st = CheckSealedValue(value);
      if (!st.ok()) {
        ++report.bad_values;
        if (report.problems.size() < 100) {
          static constexpr char kHex[] = "0123456789abcdef";
          std::string hex;
          for (unsigned char c : key) {
            hex.push_back(kHex[c >> 4]);
            hex.push_back(kHex[c & 15]);
          }
          report.problems.push_back(std::string(StateFamilyName(family)) + " " + hex + ": " +
                                    st.message());
        }
      }
      return Status::OK();
    }));
  }
  return report;
}

Result<StoreStats> StateStore::Stats() const {
  StoreStats stats;
  std::map<PartitionKey, PartitionStats> partitions;
  for (int f = 0; f < kStateFamilyCount; ++f) {
    const auto family = static_cast<StateFamily>(f);
    FamilyStats fs;
    fs.name = std::string(StateFamilyName(family));
    rocksdb::ColumnFamilyMetaData meta;
    impl_->db->GetColumnFamilyMetaData(impl_->cf(family), &meta);
    fs.sst_file_bytes = meta.size;
    fs.sst_files = meta.file_count;
    CRM_RETURN_NOT_OK(ForEachEntry(family, [&](std::string_view key, std::string_view value) {
      ++fs.keys;
      fs.key_bytes += key.size();
      fs.value_bytes += value.size();
      if (family == StateFamily::kFeatures || family == StateFamily::kModels) {
        CRM_ASSIGN_OR_RETURN(PartitionKey p, DecodePartitionPrefix(key));
        PartitionStats& ps = partitions[p];
        if (family == StateFamily::kFeatures) {
          ++ps.customers;
          ps.feature_bytes += key.size() + value.size();
        } else {
          ++ps.model_entries;
          ps.model_bytes += key.size() + value.size();
        }
      }
      return Status::OK();
    }));
    stats.families.push_back(std::move(fs));
  }
  for (auto& [p, ps] : partitions) {
    ps.topic = TopicName(p.topic_id);
    ps.partition = p.partition;
    stats.partitions.push_back(std::move(ps));
  }
  stats.block_cache_usage_bytes = impl_->cache->GetUsage();
  stats.memtable_bytes = impl_->write_buffers->memory_usage();
  return stats;
}

size_t StateStore::MemoryUsageBytes() const { return impl_->cache->GetUsage(); }

StateStore::Memory StateStore::MemoryBreakdown() const {
  Memory m;
  m.block_cache_bytes = impl_->cache->GetUsage();
  m.memtable_bytes = impl_->write_buffers->memory_usage();
  for (auto* family : impl_->families) {
    uint64_t readers = 0;
    if (impl_->db->GetIntProperty(family, "rocksdb.estimate-table-readers-mem", &readers)) {
      m.table_reader_bytes += readers;
    }
  }
  return m;
}

StateStore::WriteFigures StateStore::WriteFiguresNow() const { return impl_->Figures(); }

Status StateStore::Flush() {
  if (impl_->options.read_only) return Status::OK();
  std::vector<rocksdb::ColumnFamilyHandle*> all(impl_->families.begin(), impl_->families.end());
  const rocksdb::Status s = impl_->db->Flush(rocksdb::FlushOptions(), all);
  if (!s.ok()) return StoreError(s, path(), "flushing memtables");
  return Status::OK();
}

}  // namespace crmstream::state
