// An indexed 4-ary min-heap of (time, slot): the simulation's agenda. Every
// customer slot is always in the heap with the time of its next pending
// action, so the earliest action overall is at the top and updating a slot
// after it acts is one sift. Ties break on the slot number, which keeps the
// order independent of heap history. Not thread-safe.
#pragma once

#include <cstdint>
#include <vector>

namespace crmstream::generator {

class SlotHeap {
 public:
  // Slots 0..times.size()-1 with their initial times.
  void Build(const std::vector<int64_t>& times) {
    heap_.resize(times.size());
    pos_.resize(times.size());
    for (uint32_t s = 0; s < times.size(); ++s) {
      heap_[s] = {times[s], s};
      pos_[s] = s;
    }
    for (size_t i = heap_.size(); i-- > 0;) SiftDown(i);
  }
  bool empty() const { return heap_.empty(); }
  uint32_t top_slot() const { return heap_[0].slot; }
  int64_t top_time() const { return heap_[0].time; }

  // Moves `slot` to its new time.
  void Update(uint32_t slot, int64_t time) {
    const size_t i = pos_[slot];
    const Entry old = heap_[i];
    heap_[i].time = time;
    if (Less(heap_[i], old)) {
      SiftUp(i);
    } else {
      SiftDown(i);
    }
  }

 private:
  struct Entry {
    int64_t time;
    uint32_t slot;
  };
  static bool Less(const Entry& a, const Entry& b) {
    return a.time < b.time || (a.time == b.time && a.slot < b.slot);
  }
  void Place(size_t i, const Entry& e) {
    heap_[i] = e;
    pos_[e.slot] = static_cast<uint32_t>(i);
  }
  void SiftUp(size_t i) {
    const Entry e = heap_[i];
    while (i > 0) {
      const size_t parent = (i - 1) / 4;
      if (!Less(e, heap_[parent])) break;
      Place(i, heap_[parent]);
      i = parent;
    }
    Place(i, e);
  }
  void SiftDown(size_t i) {
    const Entry e = heap_[i];
    const size_t n = heap_.size();
    for (;;) {
      const size_t first = 4 * i + 1;
      if (first >= n) break;
      size_t best = first;
      const size_t last = first + 4 < n ? first + 4 : n;
      for (size_t c = first + 1; c < last; ++c) {
        if (Less(heap_[c], heap_[best])) best = c;
      }
      if (!Less(heap_[best], e)) break;
      Place(i, heap_[best]);
      i = best;
    }
    Place(i, e);
  }

  std::vector<Entry> heap_;
  std::vector<uint32_t> pos_;
};

}  // namespace crmstream::generator
