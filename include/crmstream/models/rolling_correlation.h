// Rolling Pearson correlation matrix of m metrics over a sliding window:
// either the last W rows (count window) or the rows whose timestamp lies in
// (t - T, t] where t is the newest timestamp (time window).
//
// Exact add/remove updates that stay equal to a two-pass computation over the
// window's rows (to ~1e-15 on correlations) even for values near 1e9 with
// unit noise, where sum / sum-of-squares formulas lose every digit and
// Welford add/remove drifts:
//   * every statistic is a sum of deviations from a shift K (a double close
//     to the window mean), so d = x - K is exact (Sterbenz) and small;
//   * the sums of d_i and of the products d_i * d_j are accumulated in
//     double-double (TwoSum), so adding a row and later removing the same row
//     cancel to ~2^-106 instead of leaving a rounding residue that would
//     random-walk over 10^7 updates;
//   * after as many add/remove operations as twice the window holds, the
//     shift is moved to the current mean and the sums are recomputed from the
//     stored rows (amortised O(m^2) per update), so a drifting level never
//     makes the deviations large.
// The window's rows are stored anyway (they must be removed later), in a ring
// buffer preallocated at construction (count windows) or grown by doubling up
// to max_rows (time windows): Add() allocates nothing in steady state.
//
// Not thread-safe: one instance per thread (or partition). Instances over
// disjoint streams combine with Merge (windows) or CorrelationMoments::Merge
// (statistics only).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "crmstream/common/status.h"

namespace crmstream::models {

enum class CorrelationWindowKind : uint8_t {
  kCount = 0,  // the last window_rows rows
  kTime = 1,   // rows with timestamp in (newest - window_duration, newest]
};

struct RollingCorrelationOptions {
  // Number of metrics m, in [1, 256].
  int metrics = 3;
  CorrelationWindowKind window = CorrelationWindowKind::kCount;
  // Count windows: rows kept, >= 1.
  int64_t window_rows = 1000;
  // Time windows: length T, in the units of the timestamps given to Add
  // (milliseconds in the engine), >= 1.
  int64_t window_duration = 60'000;
  // Time windows: rows preallocated; the ring doubles when a burst needs more.
  int64_t initial_capacity = 1024;
  // Time windows: hard cap on rows held. Past it the oldest row leaves early
  // (counted in capped_evictions()), so memory stays bounded.
  int64_t max_rows = int64_t{1} << 22;
  // Optional metric names (empty, or exactly `metrics` names) for snapshots.
  std::vector<std::string> metric_names;

  Status Validate() const;
};

// Sufficient statistics of a set of rows: count, means and co-moments
// C_ij = sum (x_i - mean_i)(x_j - mean_j). A mean is held as shift + offset
// (a double near the data plus a small exact remainder), so means near 1e9
// keep the precision the co-moment formulas need.
struct CorrelationMoments {
  int metrics = 0;
  int64_t count = 0;
  std::vector<double> shift;        // m
  std::vector<double> mean_offset;  // m: mean_i = shift_i + mean_offset_i
  std::vector<double> comoment;     // m * m, symmetric, row-major

  double Mean(int i) const { return shift[i] + mean_offset[i]; }
  // Pearson correlation; NaN when count < 2 or a variance is zero.
  double Correlation(int i, int j) const;
  // Combines the statistics of a disjoint set of rows (Chan, Golub & LeVeque
  // 1979): the result describes the union of both sets of rows exactly, up to
  // rounding. Metrics must match.
  Status Merge(const CorrelationMoments& other);
};

// A copy of the matrix at one moment, for publishing.
struct CorrelationSnapshot {
  int metrics = 0;
  int64_t count = 0;                // rows in the window
  int64_t newest_timestamp = 0;     // timestamp of the newest row (0 if none)
  std::vector<double> means;        // m
  std::vector<double> correlation;  // m * m, row-major; NaN where undefined
};

class RollingCorrelation {
 public:
  static Result<RollingCorrelation> Create(const RollingCorrelationOptions& options);

  // Adds one row of `metrics()` finite values. Timestamps must not decrease
  // (InvalidArgument otherwise; the row is not added). Count windows use the
  // timestamp only to order rows when merging; it may stay 0.
  Status Add(std::span<const double> values, int64_t timestamp = 0);

  // Time windows: removes the rows at or before now - window_duration without
  // adding one (a quiet stream still forgets). No effect on count windows or
  // when now is older than the newest row.
  void AdvanceTo(int64_t now);

  int metrics() const { return options_.metrics; }
  int64_t count() const { return size_; }
  int64_t newest_timestamp() const { return newest_timestamp_; }
  uint64_t rows_added() const { return rows_added_; }
  uint64_t capped_evictions() const { return capped_evictions_; }
  const RollingCorrelationOptions& options() const { return options_; }

  double Mean(int i) const;
  // The window's row at position i in [0, count()), 0 the oldest: metrics()
  // values, and its timestamp.
  std::span<const double> Row(int64_t i) const {
    return std::span<const double>(RowAt(i), static_cast<size_t>(options_.metrics));
  }
  int64_t RowTimestamp(int64_t i) const { return TimeAt(i); }
  // Pearson correlation of metrics i and j over the window; NaN when fewer
  // than 2 rows or a metric is constant over the window.
  double Correlation(int i, int j) const;
  // Sample covariance (divisor count - 1); NaN when fewer than 2 rows.
  double Covariance(int i, int j) const;

  // Fills `out`, reusing its vectors' capacity.
  void Snapshot(CorrelationSnapshot* out) const;
  CorrelationSnapshot Snapshot() const;
  CorrelationMoments Moments() const;

  // Versioned blob (BlobKind::kRollingCorrelation) with the window's rows and
  // the accumulators, so a restored instance continues bit-identically.
  std::string Serialize() const;
  static Result<RollingCorrelation> Deserialize(std::string_view blob);

  // Merges the window of an instance that watched a disjoint stream (same
  // metrics and window). The result is the window a single instance fed the
  // union of both streams in timestamp order would hold (ties: this
  // instance's rows first): for time windows the rows of both in
  // (t - T, t] with t the newer of the two newest timestamps; for count
  // windows the newest W rows of the two. Statistics are recomputed from the
  // merged rows, so the merge is exact. O(rows * m^2).
  Status Merge(const RollingCorrelation& other);

 private:
  explicit RollingCorrelation(const RollingCorrelationOptions& options);

  // Row at logical position i (0 = oldest).
  const double* RowAt(int64_t i) const {
    int64_t p = head_ + i;
    if (p >= capacity_) p -= capacity_;
    return values_.data() + p * options_.metrics;
  }
  int64_t TimeAt(int64_t i) const {
    int64_t p = head_ + i;
    if (p >= capacity_) p -= capacity_;
    return times_[p];
  }
  void Accumulate(const double* row, double sign);
  void AccumulateSwap(const double* added, const double* removed);
  void RemoveOldest();
  void GrowTo(int64_t capacity);
  void Rebase();
  void MaybeRebase();
  double CoMoment(int i, int j) const;
  int PairIndex(int i, int j) const;  // i <= j

  RollingCorrelationOptions options_;
  int pairs_ = 0;  // m (m + 1) / 2, upper triangle with the diagonal

  std::vector<double> values_;  // capacity_ * m, ring of rows
  std::vector<int64_t> times_;  // capacity_
  int64_t capacity_ = 0;
  int64_t head_ = 0;  // physical index of the oldest row
  int64_t size_ = 0;
  int64_t newest_timestamp_ = 0;
  uint64_t rows_added_ = 0;
  uint64_t capped_evictions_ = 0;
  int64_t ops_since_rebase_ = 0;

  std::vector<double> shift_;                     // m
  std::vector<double> sum_hi_, sum_lo_;           // m: sum of d_i, double-double
  std::vector<double> prod_hi_, prod_lo_;         // pairs: sum of d_i d_j, double-double
  std::vector<double> dev_add_, dev_remove_;      // m scratch
  std::vector<double> outer_add_, outer_remove_;  // pairs scratch
};

}  // namespace crmstream::models
