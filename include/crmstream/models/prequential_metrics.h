// Prequential ("predict, then train") quality metrics that every online model
// reports as it learns: ROC-AUC, log loss and RMSE. Each is O(1) memory in
// the number of observations (StreamingAuc: O(bins)), adds without heap
// allocation, merges exactly, and can be embedded in a model's blob through
// AppendTo / ReadFrom.
//
// Thread-safety: none, including const methods (StreamingAuc::Value fills a
// cache); one instance per model / partition, merge to combine.
#pragma once

#include <cstdint>
#include <vector>

#include "crmstream/common/binary_io.h"
#include "crmstream/common/status.h"

namespace crmstream::models {

// ROC-AUC over every (positive, negative) pair seen so far, ties counted as
// one half (the Mann-Whitney statistic).
//
// Resolution: scores are clamped to [lo, hi] and quantised to `bins` equal
// bins; two scores in the same bin count as a tie. The value is therefore
// exact for scores on the bin grid, and for arbitrary scores differs from the
// exact AUC by at most half the fraction of (positive, negative) pairs whose
// scores share a bin (for the default 2^14 bins over [0, 1]: scores closer
// than 6.1e-5). Add is O(1) (one counter); Value sweeps the histogram,
// O(bins) (about 10 us at the default), and caches its result until the next
// Add, so call it when reporting rather than per event. Merging is exact.
// Memory: 16 bytes per bin (256 KiB by default).
class StreamingAuc {
 public:
  static constexpr uint32_t kDefaultBins = 1u << 14;

  // bins >= 1 and lo < hi (programmer error otherwise: clamped to sane values).
  explicit StreamingAuc(uint32_t bins = kDefaultBins, double lo = 0.0, double hi = 1.0);

  // A NaN score is ignored.
  void Add(double score, bool label);
  // Starts loading the counter Add(score, label) will touch, so that a caller
  // with other work to do first does not wait for it (the histogram is larger
  // than L1). No effect on the state.
  void Prefetch(double score, bool label) const {
    if (score == score)
      __builtin_prefetch((label ? pos_counts_ : neg_counts_).data() + BinOf(score), 1);
  }
  // 0.5 until both classes have been seen.
  double Value() const;

  uint64_t positives() const { return positives_; }
  uint64_t negatives() const { return negatives_; }
  uint32_t bins() const { return bins_; }
  double lo() const { return lo_; }
  double hi() const { return hi_; }

  // InvalidArgument unless both use the same bins and range.
  Status Merge(const StreamingAuc& other);

  // Embeds the state in a larger blob (non-empty bins only).
  void AppendTo(BinaryWriter& out) const;
  static Result<StreamingAuc> ReadFrom(BinaryReader& in);

 private:
  uint32_t BinOf(double score) const;

  uint32_t bins_;
  double lo_;
  double hi_;
  double scale_;  // bins / (hi - lo)
  std::vector<uint64_t> pos_counts_;
  std::vector<uint64_t> neg_counts_;
  uint64_t positives_ = 0;
  uint64_t negatives_ = 0;
  mutable bool value_valid_ = false;
  mutable double value_ = 0.5;
};

// Mean binary cross-entropy (natural log) of probabilities, clipped to
// [1e-15, 1 - 1e-15] as scikit-learn does. Compensated (Kahan-Babuska) sum.
class LogLoss {
 public:
  static constexpr double kClip = 1e-15;

  // A NaN probability is ignored.
  void Add(double probability, bool label);
  // 0 before the first observation.
  double Value() const;
  uint64_t count() const { return count_; }

  Status Merge(const LogLoss& other);
  void AppendTo(BinaryWriter& out) const;
  static Result<LogLoss> ReadFrom(BinaryReader& in);

 private:
  uint64_t count_ = 0;
  double sum_ = 0.0;
  double compensation_ = 0.0;
};

// Root mean squared error of predictions, with a compensated sum of squares.
class Rmse {
 public:
  // A NaN prediction or target is ignored.
  void Add(double prediction, double target);
  // 0 before the first observation.
  double Value() const;
  double MeanSquaredError() const;
  uint64_t count() const { return count_; }

  Status Merge(const Rmse& other);
  void AppendTo(BinaryWriter& out) const;
  static Result<Rmse> ReadFrom(BinaryReader& in);

 private:
  uint64_t count_ = 0;
  double sum_sq_ = 0.0;
  double compensation_ = 0.0;
};

}  // namespace crmstream::models
