// The customers of a partition whose model state changed since the last
// checkpoint, named by their feature-store slot (CustomerFeatures::slot()),
// each once, in first-changed order. The scoring parts mark into one shared
// set, so a checkpoint rewrites a customer's model record once whichever
// parts changed it.
//
// Thread-safety: none (one per partition task). Marking a marked slot reads
// one bit; the first mark of a slot since Clear() appends to the list, and
// a slot beyond the largest seen grows the flags (both amortised).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace crmstream::scoring {

class UnsavedSlots {
 public:
  void Mark(uint32_t slot) {
    if (slot >= marked_.size()) marked_.resize(size_t{slot} + 1, false);
    if (!marked_[slot]) {
      marked_[slot] = true;
      slots_.push_back(slot);
    }
  }
  bool contains(uint32_t slot) const { return slot < marked_.size() && marked_[slot]; }
  // First-changed order.
  std::span<const uint32_t> slots() const { return slots_; }
  size_t size() const { return slots_.size(); }
  // Flags for slots below `slots`, exactly (the list grows with what changes
  // between checkpoints).
  void Reserve(size_t slots) {
    if (slots <= marked_.size()) return;
    marked_.reserve(slots);
    marked_.resize(slots, false);
  }
  size_t MemoryBytes() const {
    return marked_.capacity() / 8 + slots_.capacity() * sizeof(uint32_t);  // a bit per slot
  }
  void Clear() {
    for (uint32_t s : slots_) marked_[s] = false;
    slots_.clear();
  }

 private:
  std::vector<bool> marked_;  // per slot, a bit each: in slots_
  std::vector<uint32_t> slots_;
};

}  // namespace crmstream::scoring
