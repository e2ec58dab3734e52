// The Numenta Anomaly Benchmark (NAB) scoring rule, written from its
// published definition (Lavin & Ahmad 2015; NAB v1.1 sweeper):
//
// - Rows in the first min(floor(0.15 n), 750) of a file are probationary and
//   not scored.
// - A row inside an anomaly window weighs tp_weight * S(p) / S(-1), where
//   p = -(right - i + 1) / width is its relative position in the window and
//   S(p) = 2 / (1 + exp(5 p)) - 1 (so the first row of a window weighs exactly
//   tp_weight). Only the best (earliest) detection of a window counts; a
//   window with no detection costs -fn_weight.
// - A row outside every window weighs fp_weight * S(q), with q = |i - r| /
//   (w - 1) after a window of width w ending at row r (S(q) = -1 for q >= 3
//   and before the first window): late detections just after a window cost
//   little, others a full fp_weight.
// - A detection is a row whose anomaly score is >= the threshold; the
//   threshold is swept over every distinct score of the corpus and the best
//   total is kept, per profile.
// - Normalised score = 100 (raw - null) / (perfect - null), where null is the
//   raw score of a detector that never fires (-fn_weight per scored window)
//   and perfect is tp_weight per labelled window.
//
// NabScorer accumulates files, then sweeps. Not thread-safe.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "crmstream/common/status.h"

namespace crmstream::evaluation {

// Weights of one NAB application profile (config/profiles.json).
struct NabCostProfile {
  std::string name;
  double tp_weight = 1.0;
  double fp_weight = 0.11;
  double fn_weight = 1.0;
};

// standard (fp 0.11), reward_low_FP_rate (fp 0.22), reward_low_FN_rate
// (fn 2.0): NAB v1.1's config/profiles.json.
std::vector<NabCostProfile> DefaultNabProfiles();

// S(p) above: 2 * sigmoid(-5 p) - 1, and -1 for p >= 3.
double NabScaledSigmoid(double relative_position);

// Rows not scored at the start of a file of `rows` rows.
size_t NabProbationaryLength(size_t rows);

// An anomaly window as inclusive row indices of its file.
struct NabWindow {
  size_t first_row = 0;
  size_t last_row = 0;
};

// The outcome of the threshold sweep for one profile.
struct NabProfileScore {
  std::string profile;
  double threshold = 1.1;  // best threshold; 1.1 means "never fire"
  double raw = 0.0;        // best raw score over the sweep
  double null_raw = 0.0;   // raw score of a detector that never fires
  double perfect_raw = 0.0;
  double normalized = 0.0;            // 100 (raw - null) / (perfect - null)
  int64_t true_positive_windows = 0;  // windows detected at the best threshold
  int64_t false_negative_windows = 0;
  int64_t false_positive_rows = 0;
};

class NabScorer {
 public:
  explicit NabScorer(std::vector<NabCostProfile> profiles = DefaultNabProfiles());

  // Adds one file: one anomaly score per row, in row order, and its windows
  // (sorted, disjoint, within the file). Scores must be finite.
  Status AddFile(std::span<const double> scores, std::span<const NabWindow> windows);

  // Sweeps the threshold over the whole corpus, per profile.
  std::vector<NabProfileScore> Score() const;

  // Scores each profile at a threshold fixed beforehand (one per profile, in
  // the profiles' order), e.g. the one a sweep chose on other files: a
  // held-out figure whose threshold was not picked on the files it scores.
  Result<std::vector<NabProfileScore>> ScoreAt(std::span<const double> thresholds) const;

  size_t files() const { return files_; }
  size_t rows() const { return rows_; }
  size_t windows() const { return labelled_windows_; }

 private:
  struct ScoredRow {
    double anomaly_score;
    double position_weight;  // S(p) / S(-1) in a window, S(q) outside
    int32_t window;          // index into the corpus' scored windows, or -1
  };
  // Walks rows in descending score order and keeps the best total; with
  // `fixed_threshold`, the total once every row at or above it is in.
  NabProfileScore Sweep(const NabCostProfile& profile, std::span<const uint32_t> order,
                        const double* fixed_threshold) const;
  std::vector<uint32_t> DescendingOrder() const;

  std::vector<NabCostProfile> profiles_;
  std::vector<ScoredRow> scored_rows_;
  size_t scored_windows_ = 0;    // windows with at least one scored row
  size_t labelled_windows_ = 0;  // every window, for the perfect score
  size_t files_ = 0;
  size_t rows_ = 0;
};

}  // namespace crmstream::evaluation
