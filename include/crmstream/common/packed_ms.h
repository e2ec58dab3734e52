// Integers in 6 bytes instead of 8, for per-customer state held for every
// customer in memory, where the two bytes add up. Alignment 2: a struct of
// them packs without padding. Thread-safety: value types.
#pragma once

#include <algorithm>
#include <cstdint>

namespace crmstream {

// A signed amount (e.g. cents) in 6 bytes: values beyond [-2^47, 2^47 - 1]
// saturate there (1.4e12 currency units in cents).
class PackedInt48 {
 public:
  static constexpr int64_t kMax = (int64_t{1} << 47) - 1;
  static constexpr int64_t kMin = -(int64_t{1} << 47);

  PackedInt48() = default;
  PackedInt48(int64_t v) { *this = v; }  // NOLINT(google-explicit-constructor): a number
  PackedInt48& operator=(int64_t v) {
    const auto u = static_cast<uint64_t>(std::clamp(v, kMin, kMax));
    parts_[0] = static_cast<uint16_t>(u);
    parts_[1] = static_cast<uint16_t>(u >> 16);
    parts_[2] = static_cast<uint16_t>(u >> 32);
    return *this;
  }
  // Saturating.
  PackedInt48& operator+=(int64_t v) {
    const int64_t now = *this;
    return *this = v > kMax - now ? kMax : now + v;
  }
  operator int64_t() const {  // NOLINT(google-explicit-constructor)
    const uint64_t u = parts_[0] | uint64_t{parts_[1]} << 16 | uint64_t{parts_[2]} << 32;
    return static_cast<int64_t>(u << 16) >> 16;  // sign-extended
  }

 private:
  uint16_t parts_[3] = {};
};
static_assert(sizeof(PackedInt48) == 6 && alignof(PackedInt48) == 2);

// An event time (ms since the epoch): exact within +-(2^47 - 1) ms, about
// 4,400 years either side of 1970 (ingest accepts 2000-2099 by default);
// times beyond are stored as those limits. INT64_MIN ("never") is kept
// exactly, as the one value below them.
class PackedMs {
 public:
  static constexpr int64_t kMax = PackedInt48::kMax;
  static constexpr int64_t kMin = -kMax;

  PackedMs() = default;
  PackedMs(int64_t ms) { *this = ms; }  // NOLINT(google-explicit-constructor): a time
  PackedMs& operator=(int64_t ms) {
    v_ = ms == INT64_MIN ? PackedInt48::kMin : std::clamp(ms, kMin, kMax);
    return *this;
  }
  operator int64_t() const {  // NOLINT(google-explicit-constructor)
    const int64_t ms = v_;
    return ms == PackedInt48::kMin ? INT64_MIN : ms;
  }

 private:
  PackedInt48 v_;
};
static_assert(sizeof(PackedMs) == 6 && alignof(PackedMs) == 2);

}  // namespace crmstream
