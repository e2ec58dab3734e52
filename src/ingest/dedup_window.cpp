#include "crmstream/ingest/dedup_window.h"

#include <algorithm>
#include <bit>

#include "crmstream/common/binary_io.h"
#include "crmstream/common/hash.h"

namespace crmstream::ingest {

DedupWindow::DedupWindow(size_t capacity) : capacity_(std::min(capacity, kMaxCapacity)) {
  if (capacity_ == 0) return;
  // A table at most half full keeps linear-probing runs short.
  const size_t slots = std::bit_ceil(capacity_ * 2);
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
  } else {
    size_t tail = head_ + size_;
    if (tail >= capacity_) tail -= capacity_;
    ring_[tail] = h;
    ++size_;
  }
  InsertHash(h);
  return false;
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

Result<DedupWindow> DedupWindow::Decode(std::string_view payload) {
  BinaryReader r(payload);
  uint64_t capacity = 0;
  CRM_RETURN_NOT_OK(r.Get(&capacity));
  if (capacity > kMaxCapacity) {
    return Status::Corruption("dedup window: capacity " + std::to_string(capacity) +
                              " exceeds the maximum");
  }
  std::vector<uint64_t> hashes;
  // BinaryReader::GetArray memcpy's into data(), which must not be null even
  // for zero elements.
  hashes.reserve(1);
  CRM_RETURN_NOT_OK(r.GetArray(&hashes, static_cast<size_t>(capacity)));
  CRM_RETURN_NOT_OK(r.ExpectEnd());
  DedupWindow window(static_cast<size_t>(capacity));
  for (uint64_t h : hashes) {
    if (h == 0 || window.ContainsHash(h)) {
      return Status::Corruption("dedup window: a zero or repeated hash in the payload");
    }
    window.ring_[window.size_++] = h;
    window.InsertHash(h);
  }
  return window;
}

}  // namespace crmstream::ingest
