#include "crmstream/ingest/dedup_window.h"

#include <algorithm>
#include <bit>
#include <span>

#include "crmstream/common/binary_io.h"
#include "crmstream/common/hash.h"

namespace crmstream::ingest {

namespace {
// A table at most 2/3 full keeps linear-probing runs short (a miss probes
// about five slots at worst, within a cache line or two).
size_t TableSlots(size_t capacity) { return std::bit_ceil(capacity + capacity / 2 + 1); }
}  // namespace

size_t DedupWindow::MemoryBytes(size_t capacity) {
  capacity = std::min(capacity, kMaxCapacity);
  if (capacity == 0) return 0;
  return (capacity + TableSlots(capacity)) * sizeof(uint64_t);
}

DedupWindow::DedupWindow(size_t capacity) : capacity_(std::min(capacity, kMaxCapacity)) {
  if (capacity_ == 0) return;
  const size_t slots = TableSlots(capacity_);
  mask_ = slots - 1;
  table_.assign(slots, 0);
  ring_.assign(capacity_, 0);
}

uint64_t DedupWindow::HashId(std::string_view event_id) {
  const uint64_t h = Hash64(event_id);
  return h == 0 ? 1 : h;  // 0 marks an empty slot
}

bool DedupWindow::ContainsHash(uint64_t h) const {
  for (uint64_t i = h & mask_;; i = (i + 1) & mask_) {
    const uint64_t slot = table_[i];
    if (slot == h) return true;
    if (slot == 0) return false;
  }
}

void DedupWindow::InsertHash(uint64_t h) {
  uint64_t i = h & mask_;
  while (table_[i] != 0) i = (i + 1) & mask_;
  table_[i] = h;
}

// Backward-shift deletion: no tombstones, so lookups never slow down as ids
// come and go.
void DedupWindow::EraseHash(uint64_t h) {
  uint64_t i = h & mask_;
  while (table_[i] != h) {
    if (table_[i] == 0) return;
    i = (i + 1) & mask_;
  }
  uint64_t hole = i;
  for (uint64_t j = (hole + 1) & mask_; table_[j] != 0; j = (j + 1) & mask_) {
    const uint64_t home = table_[j] & mask_;
    // Move table_[j] into the hole unless its home lies cyclically in (hole, j].
    const bool home_after_hole = ((j - home) & mask_) < ((j - hole) & mask_);
    if (!home_after_hole) {
      table_[hole] = table_[j];
      hole = j;
    }
  }
  table_[hole] = 0;
}

bool DedupWindow::SeenBefore(std::string_view event_id) {
  if (capacity_ == 0) return false;
  const uint64_t h = HashId(event_id);
  if (ContainsHash(h)) return true;
  if (size_ == capacity_) {
    // The table is far larger than the caches and the ids to forget come in
    // ring order: fetch the slot of an id forgotten a few events from now,
    // so that its erase finds it cached.
    size_t ahead = head_ + kEraseLookahead;
    if (ahead >= capacity_) ahead %= capacity_;
    __builtin_prefetch(&table_[ring_[ahead] & mask_], 1);
    EraseHash(ring_[head_]);
    ring_[head_] = h;
    head_ = head_ + 1 == capacity_ ? 0 : head_ + 1;
    ++unsaved_;
  } else {
    size_t tail = head_ + size_;
    if (tail >= capacity_) tail -= capacity_;
    ring_[tail] = h;
    ++size_;
    ++unsaved_;
  }
  InsertHash(h);
  return false;
}

void DedupWindow::Prefetch(std::string_view event_id) const {
  if (capacity_ != 0) __builtin_prefetch(&table_[HashId(event_id) & mask_]);
}

bool DedupWindow::Contains(std::string_view event_id) const {
  return capacity_ != 0 && ContainsHash(HashId(event_id));
}

size_t DedupWindow::memory_bytes() const {
  return (table_.capacity() + ring_.capacity()) * sizeof(uint64_t);
}

void DedupWindow::EncodeTo(std::string* out) const {
  BinaryWriter w(out);
  w.Put<uint64_t>(capacity_);
  std::vector<uint64_t> ordered;
  ordered.reserve(size_ + 1);  // never a null data() (an empty span's memcpy)
  for (size_t k = 0; k < size_; ++k) {
    size_t i = head_ + k;
    if (i >= capacity_) i -= capacity_;
    ordered.push_back(ring_[i]);
  }
  w.PutArray<uint64_t>(ordered);
}

Result<DedupWindow> DedupWindow::Decode(std::string_view payload, size_t capacity) {
  BinaryReader r(payload);
  uint64_t saved_capacity = 0;
  CRM_RETURN_NOT_OK(r.Get(&saved_capacity));
  if (saved_capacity > kMaxCapacity) {
    return Status::Corruption("dedup window: capacity " + std::to_string(saved_capacity) +
                              " exceeds the maximum");
  }
  std::vector<uint64_t> hashes;
  // BinaryReader::GetArray memcpy's into data(), which must not be null even
  // for zero elements.
  hashes.reserve(1);
  CRM_RETURN_NOT_OK(r.GetArray(&hashes, static_cast<size_t>(saved_capacity)));
  CRM_RETURN_NOT_OK(r.ExpectEnd());
  DedupWindow window(capacity);
  // The newest ids that fit, oldest first.
  const size_t keep = std::min(hashes.size(), window.capacity_);
  for (size_t k = hashes.size() - keep; k < hashes.size(); ++k) {
    CRM_RETURN_NOT_OK(window.Remember(hashes[k]));
  }
  return window;
}

Status DedupWindow::Remember(uint64_t h) {
  if (h == 0 || ContainsHash(h)) {
    return Status::Corruption("dedup window: a zero or repeated hash");
  }
  ring_[size_++] = h;
  InsertHash(h);
  return Status::OK();
}

size_t DedupWindow::cursor() const {
  if (capacity_ == 0) return 0;
  const size_t tail = head_ + size_;
  return tail >= capacity_ ? tail - capacity_ : tail;
}

void DedupWindow::ForEachUnsavedChunk(const std::function<void(size_t chunk)>& f) const {
  if (capacity_ == 0 || unsaved_ == 0) return;
  if (all_unsaved()) {
    for (size_t c = 0; c < chunk_count(); ++c) f(c);
    return;
  }
  // The slots [saved_cursor_, saved_cursor_ + unsaved_), circular.
  size_t slot = saved_cursor_;
  uint64_t left = unsaved_;
  const size_t first = slot / kChunkIds;
  for (size_t c = first;;) {
    f(c);
    const size_t end = std::min(capacity_, (c + 1) * kChunkIds);
    if (end - slot >= left) return;
    left -= end - slot;
    slot = end == capacity_ ? 0 : end;
    c = slot / kChunkIds;
    if (c == first) return;  // wrapped into the first chunk, already written
  }
}

void DedupWindow::ForEachStaleChunk(const std::function<void(size_t chunk)>& f) const {
  for (size_t c = chunk_count(); c < stale_chunks_end_; ++c) f(c);
}

void DedupWindow::MarkSaved() {
  unsaved_ = 0;
  stale_chunks_end_ = 0;
  saved_cursor_ = cursor();
}

void DedupWindow::EncodeHead(std::string* out) const {
  BinaryWriter w(out);
  w.Put<uint64_t>(capacity_);
  w.Put<uint64_t>(head_);
  w.Put<uint64_t>(size_);
  w.Put<uint32_t>(static_cast<uint32_t>(kChunkIds));
}

void DedupWindow::EncodeChunk(size_t chunk, std::string* out) const {
  const size_t begin = std::min(capacity_, chunk * kChunkIds);
  const size_t end = std::min(capacity_, begin + kChunkIds);
  BinaryWriter(out).PutArray<uint64_t>(
      std::span<const uint64_t>(ring_.data() + begin, end - begin));
}

Result<DedupWindow> DedupWindow::DecodeChunked(std::string_view head, const ChunkSource& chunk,
                                               size_t capacity) {
  BinaryReader r(head);
  uint64_t saved_capacity = 0, first = 0, size = 0;
  uint32_t chunk_ids = 0;
  CRM_RETURN_NOT_OK(r.Get(&saved_capacity));
  CRM_RETURN_NOT_OK(r.Get(&first));
  CRM_RETURN_NOT_OK(r.Get(&size));
  CRM_RETURN_NOT_OK(r.Get(&chunk_ids));
  CRM_RETURN_NOT_OK(r.ExpectEnd());
  if (saved_capacity > kMaxCapacity) {
    return Status::Corruption("dedup window: capacity " + std::to_string(saved_capacity) +
                              " exceeds the maximum");
  }
  // Ids fill the ring from slot 0; the oldest moves on only once it is full.
  if (size > saved_capacity || (size < saved_capacity && first != 0) ||
      (saved_capacity != 0 && first >= saved_capacity)) {
    return Status::Corruption("dedup window: ring position " + std::to_string(first) + ", size " +
                              std::to_string(size) + " do not fit capacity " +
                              std::to_string(saved_capacity));
  }
  if (chunk_ids != kChunkIds) {
    return Status::Corruption("dedup window: chunks of " + std::to_string(chunk_ids) +
                              " ids, this build reads chunks of " + std::to_string(kChunkIds));
  }
  // The saved ring's slots, a chunk at a time (the last one read is kept).
  std::vector<uint64_t> slots;
  slots.reserve(kChunkIds);
  size_t loaded = SIZE_MAX;
  const auto slot = [&](size_t i) -> Result<uint64_t> {
    const size_t c = i / kChunkIds;
    if (c != loaded) {
      CRM_ASSIGN_OR_RETURN(const std::string payload, chunk(c));
      BinaryReader cr(payload);
      const size_t length = std::min<size_t>(saved_capacity - c * kChunkIds, kChunkIds);
      CRM_RETURN_NOT_OK(cr.GetArray(&slots, kChunkIds));
      CRM_RETURN_NOT_OK(cr.ExpectEnd());
      if (slots.size() != length) {
        return Status::Corruption("dedup window: chunk " + std::to_string(c) + " holds " +
                                  std::to_string(slots.size()) + " slots, not " +
                                  std::to_string(length));
      }
      loaded = c;
    }
    return slots[i - loaded * kChunkIds];
  };
  DedupWindow window(capacity);
  if (window.capacity_ == saved_capacity) {
    // The same ids in the same ring slots: the saved chunks stay current.
    for (size_t i = 0; i < size; ++i) {
      CRM_ASSIGN_OR_RETURN(const uint64_t h, slot(i));
      CRM_RETURN_NOT_OK(window.Remember(h).WithContext("chunk " + std::to_string(i / kChunkIds)));
    }
    window.head_ = static_cast<size_t>(first);
    window.MarkSaved();
    return window;
  }
  // Another capacity: the newest ids that fit, oldest first from slot 0,
  // all of them to be saved again.
  const size_t keep = std::min<size_t>(size, window.capacity_);
  for (size_t k = size - keep; k < size; ++k) {
    size_t i = static_cast<size_t>(first) + k;
    if (i >= saved_capacity) i -= saved_capacity;
    CRM_ASSIGN_OR_RETURN(const uint64_t h, slot(i));
    CRM_RETURN_NOT_OK(window.Remember(h).WithContext("chunk " + std::to_string(i / kChunkIds)));
  }
  window.MarkAllUnsaved();
  window.stale_chunks_end_ = static_cast<size_t>((saved_capacity + kChunkIds - 1) / kChunkIds);
  return window;
}

}  // namespace crmstream::ingest
