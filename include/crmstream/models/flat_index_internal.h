// Internal to the models module (not an API): an open-addressing map from a
// 64-bit key to a 32-bit value (an index into the owner's own arrays), for
// the hot paths of the co-purchase models (item ids, order ids, item pairs),
// and the item dictionary those models share.
//
// Linear probing with backward-shift deletion, load factor <= 1/2, so a
// lookup touches one or two cache lines and erasing leaves no tombstones.
// Insert grows the table by doubling (amortised; a steady state with a
// stable number of keys never allocates). Keys are hashed again internally,
// so callers may pass raw ids or packed pairs. Not thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "crmstream/common/hash.h"

namespace crmstream::models::internal {

class FlatIndex {
 public:
  static constexpr uint32_t kMissing = UINT32_MAX;

  FlatIndex() { Rehash(16); }

  // The value stored for `key`, or kMissing.
  uint32_t Find(uint64_t key) const {
    for (size_t i = Home(key);; i = (i + 1) & mask_) {
      const Slot& s = slots_[i];
      if (s.value == kMissing) return kMissing;
      if (s.key == key) return s.value;
    }
  }

  // Stores key -> value (value != kMissing); replaces an existing value.
  void Insert(uint64_t key, uint32_t value) {
    if ((size_ + 1) * 2 > slots_.size()) Rehash(slots_.size() * 2);
    for (size_t i = Home(key);; i = (i + 1) & mask_) {
      Slot& s = slots_[i];
      if (s.value == kMissing) {
        s = {key, value};
        ++size_;
        return;
      }
      if (s.key == key) {
        s.value = value;
        return;
      }
    }
  }

  // Removes `key`; false when it was absent.
  bool Erase(uint64_t key) {
    size_t i = Home(key);
    while (true) {
      const Slot& s = slots_[i];
      if (s.value == kMissing) return false;
      if (s.key == key) break;
      i = (i + 1) & mask_;
    }
    // Backward shift: pull later members of the probe run into the hole
    // when their home does not lie cyclically in (hole, position].
    size_t hole = i;
    for (size_t j = (hole + 1) & mask_;; j = (j + 1) & mask_) {
      const Slot& s = slots_[j];
      if (s.value == kMissing) break;
      const size_t home = Home(s.key);
      const bool stays = hole <= j ? (hole < home && home <= j) : (hole < home || home <= j);
      if (stays) continue;
      slots_[hole] = s;
      hole = j;
    }
    slots_[hole].value = kMissing;
    --size_;
    return true;
  }

  void Clear() {
    for (Slot& s : slots_) s.value = kMissing;
    size_ = 0;
  }
  size_t size() const { return size_; }
  // Bytes held by the table.
  size_t memory_bytes() const { return slots_.capacity() * sizeof(Slot); }

 private:
  struct Slot {
    uint64_t key = 0;
    uint32_t value = kMissing;
  };

  size_t Home(uint64_t key) const {
    // Murmur3's finaliser: packed pairs and sequential ids spread evenly.
    key ^= key >> 33;
    key *= 0xff51afd7ed558ccdULL;
    key ^= key >> 33;
    key *= 0xc4ceb9fe1a85ec53ULL;
    key ^= key >> 33;
    return static_cast<size_t>(key) & mask_;
  }

  void Rehash(size_t capacity) {
    std::vector<Slot> old;
    old.swap(slots_);
    slots_.assign(capacity, Slot{});
    mask_ = capacity - 1;
    size_ = 0;
    for (const Slot& s : old) {
      if (s.value != kMissing) Insert(s.key, s.value);
    }
  }

  std::vector<Slot> slots_;
  size_t mask_ = 0;
  size_t size_ = 0;
};

// Item names by dense index, found by the Hash64 of the name. Names longer
// than kMaxNameBytes are cut there (both when added and when looked up).
class ItemDictionary {
 public:
  static constexpr size_t kMaxNameBytes = 1024;
  static constexpr uint32_t kMissing = FlatIndex::kMissing;

  // The name's index, or -1.
  int64_t Find(std::string_view name) const {
    name = name.substr(0, kMaxNameBytes);
    const uint32_t i = index_.Find(Hash64(name));
    return i == kMissing || names_[i] != name ? -1 : int64_t{i};
  }
  // The name's index, adding it (and setting *added) while fewer than
  // `capacity` names are known; kMissing when the dictionary is full.
  uint32_t Intern(std::string_view name, size_t capacity, bool* added) {
    name = name.substr(0, kMaxNameBytes);
    *added = false;
    const uint64_t key = Hash64(name);
    const uint32_t found = index_.Find(key);
    if (found != kMissing) return found;
    if (names_.size() >= capacity) return kMissing;
    const auto i = static_cast<uint32_t>(names_.size());
    names_.emplace_back(name);
    index_.Insert(key, i);
    *added = true;
    return i;
  }
  // For decoders: appends a name read from a blob; false (and nothing
  // added) when it is too long or already known.
  bool Restore(std::string name) {
    const uint64_t key = Hash64(name);
    if (name.size() > kMaxNameBytes || index_.Find(key) != kMissing) return false;
    index_.Insert(key, static_cast<uint32_t>(names_.size()));
    names_.push_back(std::move(name));
    return true;
  }
  const std::string& name(uint32_t i) const { return names_[i]; }
  size_t size() const { return names_.size(); }
  size_t memory_bytes() const {
    size_t bytes = index_.memory_bytes() + names_.capacity() * sizeof(std::string);
    for (const std::string& n : names_) bytes += n.capacity();
    return bytes;
  }

 private:
  std::vector<std::string> names_;
  FlatIndex index_;
};

}  // namespace crmstream::models::internal
