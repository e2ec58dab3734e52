// Online Platt scaling over a window of recent labelled predictions: maps a
// model's raw probability p to sigmoid(a * logit(p) + b), with (a, b) the
// maximum-likelihood fit on the last `window` (prediction, label) pairs, so
// that a calibrated 0.7 closes about 70% of the time. A classifier trained
// on labels that mature late, with a prior and standardised inputs, is
// ranked well long before its probabilities are right; the fit corrects the
// scale without changing the ranking (the slope is kept positive).
//
// The same window gives the figures a churn alert gate needs: its positives,
// negatives and exact ROC-AUC (ties counted half), recomputed at every refit.
//
// The fit is batch and exact (Newton-Raphson to convergence, with a weak
// Gaussian prior centred on the identity map a = 1, b = 0, which keeps it
// finite on separable windows) and runs every `refit_every` labels, so its
// cost is amortised to a few hundred operations per label. Nothing
// allocates after Create(). The state (window in arrival order, fit,
// counters) round-trips exactly through AppendTo / ReadFrom.
//
// Thread-safety: none; one instance per partition's churn model.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "crmstream/common/binary_io.h"
#include "crmstream/common/status.h"

namespace crmstream::models {

struct PlattCalibratorOptions {
  // Labelled predictions kept, in [16, 1 << 20]. Default 2048 (for a
  // partition of 5,000 customers and a 30-day horizon, about 12 days of
  // labels: recent enough to follow the model as it learns).
  int window = 2048;
  // Labels between two refits, in [1, window]. Default 128.
  int refit_every = 128;
  // Labels (in the window) before the first fit, in [2, window]; until then
  // Calibrate() is the identity. Default 200.
  int min_labels = 200;
  // Precision of the Gaussian prior on (a - 1, b), > 0: the weight of
  // about this many pseudo-observations. Default 1.
  double prior_precision = 1.0;

  // InvalidArgument naming the field.
  Status Validate() const;
};

struct CalibrationFit {
  bool fitted = false;
  double slope = 1.0;      // a
  double intercept = 0.0;  // b
  // The window as of the latest refit.
  uint64_t positives = 0;
  uint64_t negatives = 0;
  double auc = 0.5;  // 0.5 until both classes are present
  // Mean calibrated probability minus the positive rate on the window at
  // the fit (calibration-in-the-large), and the expected calibration error
  // over 10 equal-width bins of calibrated probability.
  double mean_error = 0.0;
  double expected_calibration_error = 0.0;
  friend bool operator==(const CalibrationFit&, const CalibrationFit&) = default;
};

class PlattCalibrator {
 public:
  // The smallest slope a fit keeps: the calibrated order stays the raw order.
  static constexpr double kMinSlope = 1e-3;

  static Result<PlattCalibrator> Create(const PlattCalibratorOptions& options);

  // Records one labelled raw prediction (NaN ignored); refits every
  // refit_every labels. Does not allocate.
  void Add(double raw_probability, bool label);
  // Refits now on the window (also called by Add).
  void Refit();

  // The calibrated probability; `raw` itself until the first fit.
  double Calibrate(double raw) const;

  const CalibrationFit& fit() const { return fit_; }
  uint64_t labels_seen() const { return labels_seen_; }
  size_t window_size() const { return size_; }
  const PlattCalibratorOptions& options() const { return options_; }

  // Embeds the state in a larger blob.
  void AppendTo(BinaryWriter& out) const;
  // Corruption on bad bytes; InvalidArgument if written with another window.
  static Result<PlattCalibrator> ReadFrom(BinaryReader& in, const PlattCalibratorOptions& options);

 private:
  explicit PlattCalibrator(const PlattCalibratorOptions& options);
  size_t At(size_t k) const;  // the k-th oldest entry's position
  double LogitAt(size_t k) const;

  PlattCalibratorOptions options_;
  std::vector<float> scores_;    // ring buffer of raw probabilities
  std::vector<uint8_t> labels_;  // the matching labels
  size_t head_ = 0;              // next write position
  size_t size_ = 0;
  uint64_t labels_seen_ = 0;
  uint32_t since_refit_ = 0;
  CalibrationFit fit_;
  std::vector<uint32_t> order_;  // scratch: window positions sorted by score
};

}  // namespace crmstream::models
