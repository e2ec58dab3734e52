#include "runtime/changelog.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "crmstream/common/crash_point.h"
#include "crmstream/kafka/partition_reader.h"

namespace crmstream::runtime {
namespace {

constexpr uint8_t kChunkFlag = 0x80;
constexpr char kMarkerKey = 0x7f;
constexpr size_t kChunkIndexBytes = 4;
constexpr size_t kMinRestoreBufferBytes = size_t{8} << 20;
constexpr auto kProgressInterval = std::chrono::seconds(2);
// Records read between two looks at the clock for the progress line.
constexpr uint64_t kProgressCheckRecords = 4096;

bool ValidFamily(uint8_t f) {
  return f == static_cast<uint8_t>(state::StateFamily::kFeatures) ||
         f == static_cast<uint8_t>(state::StateFamily::kModels) ||
         f == static_cast<uint8_t>(state::StateFamily::kDedup);
}

std::optional<int64_t> ParseDecimal(std::string_view text) {
  int64_t v = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return v;
}

// A chunked value being put together: chunk 0 and those after it with the
// same checkpoint offset.
struct Assembly {
  int64_t offset = -1;
  uint32_t chunks = 0;
  uint32_t next = 0;
  std::string value;
};

// A restore's changes on their way to the store, a batch at a time: only
// the last change of each key goes in, in key order. An uncompacted
// changelog repeats a customer once per checkpoint that changed it, and
// sorted keys are what RocksDB's memtable inserts fastest (most of a
// restore's time went into unordered memtable inserts). A key's later
// change replaces its entry as it comes (an open-addressing table of entry
// indexes), so only distinct keys are sorted.
class RestoreBuffer {
 public:
  // Room for `bytes` up front: a buffer grown by copies would hold up to
  // twice its bound for a moment. (The pages are touched only as used.)
  explicit RestoreBuffer(size_t bytes) { bytes_.reserve(bytes); }
  void Add(state::StateFamily family, std::string_view suffix, bool deleted,
           std::string_view value) {
    if (2 * (entries_.size() + 1) > slots_.size()) Grow();
    const size_t hash = std::hash<std::string_view>{}(suffix) ^ static_cast<size_t>(family);
    const size_t mask = slots_.size() - 1;
    size_t i = hash & mask;
    for (; slots_[i] != 0; i = (i + 1) & mask) {
      Entry& e = entries_[slots_[i] - 1];
      if (e.hash == hash && e.family == family && this->suffix(e) == suffix) {
        Place(&e, deleted, suffix, value);  // the later change wins
        return;
      }
    }
    entries_.push_back({family, false, Head(suffix), hash, 0, 0, 0});
    slots_[i] = static_cast<uint32_t>(entries_.size());
    Place(&entries_.back(), deleted, suffix, value);
  }
  size_t byte_size() const { return bytes_.size(); }

  // Hands each key's last change to `write(family, suffix, deleted, value)`
  // in (family, suffix) order, and empties the buffer.
  template <typename Write>
  Status MoveTo(const Write& write) {
    // The keys' first bytes, held in the entries, order most pairs without
    // reading the buffer (a cache miss per key).
    std::sort(entries_.begin(), entries_.end(), [&](const Entry& a, const Entry& b) {
      if (a.family != b.family) return a.family < b.family;
      if (a.head != b.head) return a.head < b.head;
      return suffix(a) < suffix(b);
    });
    Status status;
    for (const Entry& e : entries_) {
      status = write(e.family, suffix(e), e.deleted,
                     std::string_view(bytes_).substr(e.at + e.suffix_size, e.value_size));
      if (!status.ok()) break;
    }
    entries_.clear();
    bytes_.clear();
    std::fill(slots_.begin(), slots_.end(), 0);
    return status;
  }

 private:
  struct Entry {
    state::StateFamily family;
    bool deleted;
    uint64_t head;  // Head(suffix)
    size_t hash;
    size_t at;  // suffix, then value, in bytes_
    size_t suffix_size;
    size_t value_size;
  };
  // The first 8 bytes of `suffix`, big-endian, zero-padded: a smaller head
  // means a smaller suffix (equal heads say nothing).
  static uint64_t Head(std::string_view suffix) {
    uint64_t head = 0;
    for (size_t i = 0; i < 8; ++i) {
      head = (head << 8) | (i < suffix.size() ? static_cast<uint8_t>(suffix[i]) : 0);
    }
    return head;
  }
  std::string_view suffix(const Entry& e) const {
    return std::string_view(bytes_).substr(e.at, e.suffix_size);
  }
  void Place(Entry* e, bool deleted, std::string_view suffix, std::string_view value) {
    e->deleted = deleted;
    e->at = bytes_.size();
    e->suffix_size = suffix.size();
    e->value_size = value.size();
    bytes_.append(suffix);
    bytes_.append(value);
  }
  void Grow() {
    slots_.assign(std::max<size_t>(1024, 2 * slots_.size()), 0);
    const size_t mask = slots_.size() - 1;
    for (size_t n = 0; n < entries_.size(); ++n) {
      size_t i = entries_[n].hash & mask;
      while (slots_[i] != 0) i = (i + 1) & mask;
      slots_[i] = static_cast<uint32_t>(n + 1);
    }
  }

  std::vector<Entry> entries_;
  std::vector<uint32_t> slots_;  // entry index + 1; 0: free
  std::string bytes_;
};

// Writes a restore's spans on a thread of its own while the reading thread
// fills the next one (a span's sort, table files and ingest took as long as
// reading it, one after the other). Two buffers, each half of the
// restore's: at most one span is written while one is filled, so memory
// stays within the restore's bound. Spans are written in the order they
// were read, one at a time: a later span's change of a key is ingested
// after, and overrides, an earlier span's.
class SpanWriter {
 public:
  using Write = std::function<Status(RestoreBuffer*)>;
  SpanWriter(size_t span_bytes, Write write)
      : buffers_{RestoreBuffer(span_bytes), RestoreBuffer(span_bytes)},
        write_(std::move(write)),
        thread_([this] { Run(); }) {}
  // Waits for the span being written (a failed restore's too: its files
  // and the store stay consistent; the restoring mark makes it count for
  // nothing).
  ~SpanWriter() { Stop(); }
  SpanWriter(const SpanWriter&) = delete;
  SpanWriter& operator=(const SpanWriter&) = delete;

  RestoreBuffer& filling() { return buffers_[filling_]; }

  // Hands the span filled to the writing thread once the one before it is
  // written, and fills the other buffer next. The first failed write's
  // Status, then and from every later call.
  Status Hand() {
    std::unique_lock lock(mutex_);
    idle_.wait(lock, [&] { return writing_ == nullptr; });
    if (!status_.ok()) return status_;
    writing_ = &buffers_[filling_];
    filling_ ^= 1;
    work_.notify_one();
    return Status::OK();
  }

  // Writes the span being filled after the others; every write is done
  // when it returns.
  Status Finish() {
    const Status handed = Hand();
    Stop();
    return handed.ok() ? status_ : handed;
  }

 private:
  void Run() {
    std::unique_lock lock(mutex_);
    while (true) {
      work_.wait(lock, [&] { return writing_ != nullptr || stopping_; });
      if (writing_ == nullptr) return;
      RestoreBuffer* span = writing_;
      lock.unlock();
      Status written = write_(span);
      lock.lock();
      if (status_.ok()) status_ = std::move(written);
      writing_ = nullptr;
      idle_.notify_all();
    }
  }
  void Stop() {
    {
      const std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    work_.notify_one();
    if (thread_.joinable()) thread_.join();
  }

  std::array<RestoreBuffer, 2> buffers_;
  size_t filling_ = 0;  // the reading thread's
  Write write_;
  std::mutex mutex_;
  std::condition_variable work_;  // a span to write, or stop
  std::condition_variable idle_;  // the span written
  RestoreBuffer* writing_ = nullptr;
  bool stopping_ = false;
  Status status_;
  std::thread thread_;  // last: starts once the rest is set
};
}  // namespace

Status ChangelogWriter::Produce(const Target& target, size_t index, std::string_view key,
                                std::string_view value, std::string_view chunks) {
  kafka::MessageHeader headers[2] = {{kChangelogOffsetHeader, offset_texts_[index]},
                                     {kChangelogChunksHeader, chunks}};
  ++records_;
  bytes_ += key.size() + value.size();
  return producer_->Produce(target.topic, target.partition, key, value,
                            std::span<const kafka::MessageHeader>(headers, chunks.empty() ? 1 : 2));
}

Status ChangelogWriter::Append(const state::CheckpointBatch& batch, size_t from_entry,
                               std::span<const Target> targets) {
  if (targets.empty()) return Status::OK();
  if (offset_texts_.size() < targets.size()) offset_texts_.resize(targets.size());
  for (size_t i = 0; i < targets.size(); ++i) {
    offset_texts_[i] = std::to_string(targets[i].input_offset);
  }
  size_t last = 0;
  CRM_RETURN_NOT_OK(batch.ForEachStateChange(
      from_entry, [&](const state::CheckpointBatch::StateChange& c) -> Status {
        // A task's changes are contiguous: the last target is the likely one.
        if (targets[last].key != c.partition) {
          const auto found = std::find_if(targets.begin(), targets.end(),
                                          [&](const Target& t) { return t.key == c.partition; });
          if (found == targets.end()) return Status::OK();
          last = static_cast<size_t>(found - targets.begin());
        }
        const Target& target = targets[last];
        key_.assign(1, static_cast<char>(c.family));
        key_.append(c.suffix);
        // A null value: compaction's tombstone.
        if (c.deleted) return Produce(target, last, key_, std::string_view(), {});
        if (c.value.size() <= chunk_bytes_) return Produce(target, last, key_, c.value, {});
        const size_t n = (c.value.size() + chunk_bytes_ - 1) / chunk_bytes_;
        const std::string count = std::to_string(n);
        CRM_RETURN_NOT_OK(Produce(target, last, key_, c.value.substr(0, chunk_bytes_), count));
        for (size_t i = 1; i < n; ++i) {
          chunk_key_.assign(1, static_cast<char>(static_cast<uint8_t>(c.family) | kChunkFlag));
          for (int shift = 24; shift >= 0; shift -= 8) {
            chunk_key_.push_back(static_cast<char>((i >> shift) & 0xff));
          }
          chunk_key_.append(c.suffix);
          CRM_RETURN_NOT_OK(Produce(target, last, chunk_key_,
                                    c.value.substr(i * chunk_bytes_, chunk_bytes_), {}));
        }
        return Status::OK();
      }));
  // Each partition's checkpoint is complete in the changelog.
  for (size_t i = 0; i < targets.size(); ++i) {
    CRM_RETURN_NOT_OK(
        Produce(targets[i], i, std::string_view(&kMarkerKey, 1), offset_texts_[i], {}));
  }
  return Status::OK();
}

size_t RestoreBufferBytes(const pipeline::MemoryPlan& plan) {
  return std::max(kMinRestoreBufferBytes,
                  plan.cached_customers_per_partition * pipeline::kBytesPerCachedCustomer);
}

Result<std::map<int32_t, int64_t>> LastChangelogCheckpoints(const kafka::ClientConfig& client,
                                                            const std::string& topic,
                                                            std::span<const int32_t> partitions) {
  std::map<int32_t, int64_t> last;
  std::map<int32_t, std::pair<int64_t, int64_t>> bounds;  // partition -> (start, end)
  std::vector<kafka::TopicPartitionOffset> from;
  for (int32_t p : partitions) {
    last[p] = -1;
    from.push_back({topic, p, kafka::kOffsetBeginning});
  }
  kafka::PartitionReadOptions read;
  read.client_id = "crmstream-changelog-tail";
  CRM_RETURN_NOT_OK(kafka::ReadPartitionsToEnd(
      client, from, read,
      [&](std::span<const kafka::PartitionEnd> ends) {
        for (const auto& e : ends) bounds[e.partition] = {e.start_offset, e.end_offset};
        return Status::OK();
      },
      nullptr));
  // The last checkpoint's marker is normally the partition's last record;
  // after a crash in the middle of a checkpoint, before that one's records.
  int64_t window = 256;
  while (true) {
    from.clear();
    for (const auto& [p, b] : bounds) {
      if (last[p] < 0 && b.second > b.first) {
        from.push_back({topic, p, std::max(b.first, b.second - window)});
      }
    }
    if (from.empty()) break;
    CRM_RETURN_NOT_OK(
        kafka::ReadPartitionsToEnd(client, from, read, nullptr, [&](const kafka::MessageView& m) {
          if (m.key().size() != 1 || m.key()[0] != kMarkerKey) return Status::OK();
          const auto stamp = ParseDecimal(m.payload());
          if (!stamp) {
            return Status::Corruption(topic + " [" + std::to_string(m.partition()) + "] offset " +
                                      std::to_string(m.offset()) + ": bad checkpoint marker");
          }
          last[m.partition()] = std::max(last[m.partition()], *stamp);
          return Status::OK();
        }));
    // Partitions read from their start have no marker at all.
    for (auto& [p, b] : bounds) {
      if (b.second - window <= b.first) b.second = b.first;
    }
    window *= 16;
  }
  return last;
}

Result<ChangelogRestoreResult> RestoreFromChangelog(
    const kafka::ClientConfig& client, state::StateStore* store, state::PartitionKey key,
    const ChangelogRestoreOptions& options,
    const std::function<void(const ChangelogRestoreResult&)>& on_progress) {
  using Clock = std::chrono::steady_clock;
  const auto started = Clock::now();
  auto last_progress = started;
  ChangelogRestoreResult result;
  const bool full = options.after_offset < 0;
  CRM_RETURN_NOT_OK(store->BeginRestore(key, /*drop_state=*/full));
  state::CheckpointBatch batch = store->NewBatch();
  // Chunked values in assembly, by "[family][suffix]" (few: partition-wide blobs).
  std::map<std::string, Assembly, std::less<>> assemblies;
  const std::string where =
      options.changelog_topic + " [" + std::to_string(options.partition) + "]";

  // (The engine's buffer is at least kMinRestoreBufferBytes: RestoreBufferBytes.)
  // Half of it is filled while the other half is written.
  const size_t span_bytes = std::max<size_t>(1, options.buffer_bytes / 2);
  // A full restore writes each span as table files ingested into the store;
  // a restore of a tail (small, over the partition's state, which an ingest
  // would flush from the memtable first) writes through the memtable.
  std::unique_ptr<state::StateStore::RestoreTableWriter> tables;
  if (full && options.ingest_tables) {
    CRM_ASSIGN_OR_RETURN(tables, store->NewRestoreTableWriter(key));
  }
  // Writes a span (on the writing thread; `tables` and `batch` are its
  // until Finish).
  auto write_span = [&](RestoreBuffer* span) -> Status {
    if (tables) {
      CRM_RETURN_NOT_OK(span->MoveTo([&](state::StateFamily family, std::string_view suffix,
                                         bool deleted, std::string_view value) {
        return deleted ? tables->Delete(family, suffix) : tables->Put(family, suffix, value);
      }));
      // A crash between a span's table files and their ingest.
      CRMSTREAM_CRASH_POINT(crash_point::kRestoreBeforeIngest);
      return tables->Ingest();
    }
    CRM_RETURN_NOT_OK(span->MoveTo([&](state::StateFamily family, std::string_view suffix,
                                       bool deleted, std::string_view value) {
      if (deleted) {
        batch.DeleteStateEntry(family, key, suffix);
      } else {
        batch.PutStateEntry(family, key, suffix, value);
      }
      return Status::OK();
    }));
    return store->CommitRestoring(&batch);
  };
  // A record's value goes in whole before the bound is checked.
  SpanWriter spans(span_bytes + 2 * kChangelogChunkBytes, write_span);
  auto apply = [&](state::StateFamily family, std::string_view suffix, bool deleted,
                   std::string_view value) {
    spans.filling().Add(family, suffix, deleted, value);
    ++result.records_applied;
  };

  uint64_t since_clock = 0;  // records since the clock was read
  auto on_message = [&](const kafka::MessageView& m) -> Status {
    ++result.records_read;
    const std::string_view k = m.key();
    const std::string_view v = m.payload();
    result.bytes_read += k.size() + v.size();
    // Only an error names the record: no string is built per record.
    const auto at = [&] { return where + " offset " + std::to_string(m.offset()); };
    const auto stamp_text = kafka::FindHeader(m, kChangelogOffsetHeader);
    const std::optional<int64_t> stamp = stamp_text ? ParseDecimal(*stamp_text) : std::nullopt;
    if (!stamp)
      return Status::Corruption(at() + ": changelog record without a valid offset header");
    if (k.empty()) return Status::Corruption(at() + ": changelog record without a key");
    if (k.size() == 1 && k[0] == kMarkerKey) return Status::OK();
    const uint8_t head = static_cast<uint8_t>(k[0]);
    const bool chunk = (head & kChunkFlag) != 0;
    const uint8_t family_byte = head & static_cast<uint8_t>(~kChunkFlag);
    if (!ValidFamily(family_byte)) {
      return Status::Corruption(at() + ": changelog key of unknown family " +
                                std::to_string(family_byte));
    }
    const auto family = static_cast<state::StateFamily>(family_byte);
    if (*stamp > options.up_to_offset) {
      ++result.records_beyond;
      return Status::OK();
    }
    if (*stamp <= options.after_offset) return Status::OK();
    result.input_offset = std::max(result.input_offset, *stamp);
    if (!chunk) {
      const std::string_view suffix = k.substr(1);
      auto it = assemblies.find(k);
      if (it != assemblies.end()) assemblies.erase(it);  // superseded
      const auto chunks_text = kafka::FindHeader(m, kChangelogChunksHeader);
      if (chunks_text && !v.empty()) {
        const auto n = ParseDecimal(*chunks_text);
        if (!n || *n < 2 || *n > (int64_t{1} << 20)) {
          return Status::Corruption(at() + ": bad chunk count '" + std::string(*chunks_text) + "'");
        }
        Assembly& a = assemblies[std::string(k)];
        a.offset = *stamp;
        a.chunks = static_cast<uint32_t>(*n);
        a.next = 1;
        a.value.assign(v);
        return Status::OK();
      }
      apply(family, suffix, v.empty(), v);
    } else {
      if (k.size() < 1 + kChunkIndexBytes) return Status::Corruption(at() + ": short chunk key");
      uint32_t index = 0;
      for (size_t i = 0; i < kChunkIndexBytes; ++i) {
        index = (index << 8) | static_cast<uint8_t>(k[1 + i]);
      }
      const std::string_view suffix = k.substr(1 + kChunkIndexBytes);
      std::string plain(1, static_cast<char>(family_byte));
      plain.append(suffix);
      auto it = assemblies.find(plain);
      // A chunk of an older value whose chunk 0 was superseded: not part of
      // any assembly.
      if (it == assemblies.end() || it->second.offset != *stamp || it->second.next != index) {
        return Status::OK();
      }
      Assembly& a = it->second;
      a.value.append(v);
      if (++a.next == a.chunks) {
        apply(family, suffix, false, a.value);
        assemblies.erase(it);
      }
    }
    if (spans.filling().byte_size() >= span_bytes) CRM_RETURN_NOT_OK(spans.Hand());
    if (on_progress && ++since_clock == kProgressCheckRecords) {
      since_clock = 0;
      const auto now = Clock::now();
      if (now - last_progress >= kProgressInterval) {
        last_progress = now;
        result.seconds = std::chrono::duration<double>(now - started).count();
        on_progress(result);
      }
    }
    return Status::OK();
  };

  kafka::PartitionReadOptions read;
  read.client_id = "crmstream-changelog-restore";
  read.timeout = options.timeout;
  const kafka::TopicPartitionOffset from[] = {
      {options.changelog_topic, options.partition, kafka::kOffsetBeginning}};
  CRM_RETURN_NOT_OK(kafka::ReadPartitionsToEnd(
                        client, from, read,
                        [&](std::span<const kafka::PartitionEnd> ends) {
                          for (const auto& e : ends) result.changelog_end = e.end_offset;
                          return Status::OK();
                        },
                        on_message)
                        .WithContext("restoring from the changelog " + where));
  if (!assemblies.empty()) {
    return Status::Corruption(where + ": " + std::to_string(assemblies.size()) +
                              " chunked value(s) end incomplete (first: offset " +
                              std::to_string(assemblies.begin()->second.offset) + ")");
  }
  CRM_RETURN_NOT_OK(spans.Finish());
  // Every change is written (through the memtable: not yet on disk), the
  // restoring mark still set: a crash here must restore again.
  CRMSTREAM_CRASH_POINT(crash_point::kRestoreBeforeEnd);
  if (result.input_offset > options.after_offset) {
    batch.SetInputOffset(key, result.input_offset);
  }
  batch.SetChangelogOffset(key, result.changelog_end);
  batch.FinishRestore(key);
  CRM_RETURN_NOT_OK(store->EndRestore(&batch));
  result.seconds = std::chrono::duration<double>(Clock::now() - started).count();
  return result;
}

}  // namespace crmstream::runtime
