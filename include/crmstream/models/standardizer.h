// Online per-column standardisation (z-scores) with Welford's algorithm:
// each column keeps its count, mean and sum of squared deviations (M2), so
// the mean and variance are exact to rounding however long the stream runs,
// and two instances merge exactly with Chan et al.'s parallel formula.
// A NaN value counts as missing: it updates nothing in its column.
// Each column is accumulated relative to a shift (its first value), so a
// column such as epoch seconds or 1e9 + noise keeps its variance to ~1e-12
// relative, where plain Welford loses digits in proportion to mean / sd.
//
// Thread-safety: none; one instance per partition, merge to combine.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "crmstream/common/status.h"

namespace crmstream::models {

class Standardizer {
 public:
  static constexpr uint16_t kBlobVersion = 1;
  static constexpr bool kExactMerge = true;
  static constexpr int kMaxDimension = 1 << 20;

  // InvalidArgument unless 1 <= dimension <= kMaxDimension.
  static Result<Standardizer> Create(int dimension);

  // x.size() must equal dimension() (assert: programmer error).
  void Update(std::span<const double> x);
  // Writes (x - mean) / sd per column into `out` (same size). A column with
  // fewer than two values, or whose standard deviation is zero or below
  // 1e-12 of its mean's magnitude (constant up to rounding), maps to 0: the
  // value carries no information yet. A missing (NaN) value maps to 0, the
  // mean. `out` may alias `x`.
  void Transform(std::span<const double> x, std::span<double> out) const;
  // One column's z-score, with the same rules.
  double TransformOne(int column, double value) const;

  int dimension() const { return static_cast<int>(count_.size()); }
  uint64_t count(int column) const { return count_[column]; }
  double mean(int column) const { return shift_[column] + mean_[column]; }
  // Population variance M2 / n (0 before two values).
  double variance(int column) const;
  // Unbiased sample variance M2 / (n - 1) (0 before two values).
  double sample_variance(int column) const;

  // Exact (Chan et al. 1979); InvalidArgument if the dimensions differ.
  Status Merge(const Standardizer& other);

  std::string Serialize() const;
  static Result<Standardizer> Deserialize(std::string_view blob);

 private:
  explicit Standardizer(int dimension);
  // Sets scale_[j] from the column's moments.
  void RefreshScale(int j);

  std::vector<uint64_t> count_;
  std::vector<double> shift_;  // first value seen; 0 while empty
  std::vector<double> mean_;   // of (value - shift)
  std::vector<double> m2_;
  // Per column, the standard deviation Transform divides by, or 0 where the
  // column maps to 0. Kept by every change (Update is once per example for
  // the churn model, Transform once per event).
  std::vector<double> scale_;
};

}  // namespace crmstream::models
