// Maps a categorical value (a plan name, a payment method, a country) to a
// column index for one-hot encoding, online.
//
// Two modes:
//  - Vocabulary: categories get consecutive indices 0, 1, 2, ... in order of
//    first appearance, up to `max_categories`; any later new category maps to
//    one shared overflow column (index max_categories). Width() is
//    max_categories + 1. Indices never change once given out.
//  - Hashing: index = Hash64(value) mod `buckets` (the hashing trick). No
//    state, no growth; collisions are accepted. Width() is `buckets`.
//
// Merge (vocabulary mode) keeps every index of this instance and appends the
// other's categories that are new here in the other's index order, while
// room remains; the rest go to overflow. The merged set of categories is the
// same whichever side merges, but indices depend on the order: merge into
// the instance whose indices a model was trained with.
//
// Thread-safety: none. Lookup is const and allocation-free; Encode allocates
// only when it learns a new category (bounded by max_categories).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "crmstream/common/status.h"

namespace crmstream::models {

struct CategoricalEncoderOptions {
  enum class Mode : uint8_t { kVocabulary = 0, kHashing = 1 };
  Mode mode = Mode::kVocabulary;
  // Vocabulary mode: categories before overflow, in [1, 1 << 20]. Default 64.
  uint32_t max_categories = 64;
  // Hashing mode: number of buckets, in [1, 1 << 24]. Default 1024.
  uint32_t buckets = 1024;
};

class CategoricalEncoder {
 public:
  static constexpr uint16_t kBlobVersion = 1;
  static constexpr bool kExactMerge = true;  // the category set merges exactly

  static Result<CategoricalEncoder> Create(const CategoricalEncoderOptions& options);

  // The value's column, learning it if it is new and there is room.
  uint32_t Encode(std::string_view value);
  // The value's column without learning: an unknown value maps to the
  // overflow column (vocabulary mode).
  uint32_t Lookup(std::string_view value) const;

  // Number of one-hot columns.
  uint32_t Width() const;
  uint32_t OverflowIndex() const { return options_.max_categories; }
  // Categories learnt so far (vocabulary mode), by index.
  const std::vector<std::string>& categories() const { return categories_; }
  // How many Encode calls fell into the overflow column.
  uint64_t overflow_count() const { return overflow_count_; }
  const CategoricalEncoderOptions& options() const { return options_; }

  // InvalidArgument if the modes or sizes differ. When `other_to_merged` is
  // given it receives, for each of the other's indices, its index here.
  Status Merge(const CategoricalEncoder& other, std::vector<uint32_t>* other_to_merged = nullptr);

  std::string Serialize() const;
  static Result<CategoricalEncoder> Deserialize(std::string_view blob);

 private:
  explicit CategoricalEncoder(const CategoricalEncoderOptions& options) : options_(options) {}
  uint32_t Learn(std::string_view value);

  // Heterogeneous lookup: find a string_view without building a string.
  struct TransparentHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const;
  };
  CategoricalEncoderOptions options_;
  std::unordered_map<std::string, uint32_t, TransparentHash, std::equal_to<>> index_;
  std::vector<std::string> categories_;
  uint64_t overflow_count_ = 0;
};

}  // namespace crmstream::models
