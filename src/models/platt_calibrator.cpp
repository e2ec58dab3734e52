#include "crmstream/models/platt_calibrator.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <numeric>
#include <string>

namespace crmstream::models {
namespace {

constexpr uint16_t kStateVersion = 1;
// Raw probabilities are clamped before the logit: a saturated model still
// gives a finite input (|logit| <= 16).
constexpr double kClamp = 1e-7;
constexpr int kMaxNewtonSteps = 100;
constexpr int kCalibrationBins = 10;

double Sigmoid(double z) {
  if (z >= 0) return 1.0 / (1.0 + std::exp(-z));
  const double e = std::exp(z);
  return e / (1.0 + e);
}

double Logit(double p) {
  p = std::clamp(p, kClamp, 1.0 - kClamp);
  return std::log(p / (1.0 - p));
}

// log(1 + e^z) without overflow.
double Softplus(double z) { return z > 0 ? z + std::log1p(std::exp(-z)) : std::log1p(std::exp(z)); }

}  // namespace

Status PlattCalibratorOptions::Validate() const {
  auto bad = [](std::string_view field, std::string_view rule) {
    return Status::InvalidArgument("PlattCalibratorOptions." + std::string(field) + " must be " +
                                   std::string(rule));
  };
  if (window < 16 || window > (1 << 20)) return bad("window", "in [16, 1048576]");
  if (refit_every < 1 || refit_every > window) return bad("refit_every", "in [1, window]");
  if (min_labels < 2 || min_labels > window) return bad("min_labels", "in [2, window]");
  if (!(prior_precision > 0) || !std::isfinite(prior_precision)) {
    return bad("prior_precision", "finite and > 0");
  }
  return Status::OK();
}

Result<PlattCalibrator> PlattCalibrator::Create(const PlattCalibratorOptions& options) {
  CRM_RETURN_NOT_OK(options.Validate());
  return PlattCalibrator(options);
}

PlattCalibrator::PlattCalibrator(const PlattCalibratorOptions& options)
    : options_(options),
      scores_(static_cast<size_t>(options.window)),
      labels_(static_cast<size_t>(options.window)),
      order_(static_cast<size_t>(options.window)) {}

size_t PlattCalibrator::At(size_t k) const {
  // Oldest first: every sum over the window runs in arrival order, so a
  // restored window refits to the same bits as the original.
  const size_t i = (size_ < scores_.size() ? 0 : head_) + k;
  return i >= scores_.size() ? i - scores_.size() : i;
}

double PlattCalibrator::LogitAt(size_t k) const { return Logit(scores_[At(k)]); }

void PlattCalibrator::Add(double raw_probability, bool label) {
  if (std::isnan(raw_probability)) return;
  scores_[head_] = static_cast<float>(std::clamp(raw_probability, 0.0, 1.0));
  labels_[head_] = label ? 1 : 0;
  head_ = head_ + 1 == scores_.size() ? 0 : head_ + 1;
  size_ = std::min(size_ + 1, scores_.size());
  ++labels_seen_;
  if (++since_refit_ >= static_cast<uint32_t>(options_.refit_every)) Refit();
}

void PlattCalibrator::Refit() {
  since_refit_ = 0;
  const size_t n = size_;
  CalibrationFit fit;
  for (size_t i = 0; i < n; ++i) (labels_[i] ? fit.positives : fit.negatives)++;

  // Exact ROC-AUC of the raw scores over the window, ties counted half.
  if (fit.positives > 0 && fit.negatives > 0) {
    std::iota(order_.begin(), order_.begin() + static_cast<ptrdiff_t>(n), 0u);
    std::sort(order_.begin(), order_.begin() + static_cast<ptrdiff_t>(n),
              [&](uint32_t x, uint32_t y) { return scores_[x] < scores_[y]; });
    double pairs = 0;
    uint64_t negatives_below = 0;
    for (size_t i = 0; i < n;) {
      size_t j = i;
      uint64_t pos = 0, neg = 0;
      while (j < n && scores_[order_[j]] == scores_[order_[i]]) {
        (labels_[order_[j]] ? pos : neg)++;
        ++j;
      }
      pairs += static_cast<double>(pos) * static_cast<double>(negatives_below) +
               0.5 * static_cast<double>(pos) * static_cast<double>(neg);
      negatives_below += neg;
      i = j;
    }
    fit.auc = pairs / (static_cast<double>(fit.positives) * static_cast<double>(fit.negatives));
  }

  if (n < static_cast<size_t>(options_.min_labels)) {
    fit_ = fit;  // not fitted: the identity map
    return;
  }
  // Newton-Raphson on the penalised log-likelihood, with step halving so
  // that every accepted step lowers the objective.
  const double lambda = options_.prior_precision;
  auto objective = [&](double a, double b) {
    double f = 0.5 * lambda * ((a - 1) * (a - 1) + b * b);
    for (size_t i = 0; i < n; ++i) {
      const double z = a * LogitAt(i) + b;
      f += Softplus(z) - (labels_[At(i)] ? z : 0.0);
    }
    return f;
  };
  double a = fit_.fitted ? fit_.slope : 1.0;
  double b = fit_.fitted ? fit_.intercept : 0.0;
  double current = objective(a, b);
  for (int step = 0; step < kMaxNewtonSteps; ++step) {
    double ga = lambda * (a - 1), gb = lambda * b;
    double haa = lambda, hab = 0, hbb = lambda;
    for (size_t i = 0; i < n; ++i) {
      const double x = LogitAt(i);
      const double p = Sigmoid(a * x + b);
      const double r = p - labels_[At(i)];
      const double w = p * (1 - p);
      ga += r * x;
      gb += r;
      haa += w * x * x;
      hab += w * x;
      hbb += w;
    }
    const double det = haa * hbb - hab * hab;
    if (!(det > 0)) break;
    const double da = (hbb * ga - hab * gb) / det;
    const double db = (haa * gb - hab * ga) / det;
    double t = 1.0, next = current;
    for (int halving = 0; halving < 40; ++halving, t *= 0.5) {
      next = objective(a - t * da, b - t * db);
      if (next <= current) break;
    }
    if (!(next <= current)) break;
    a -= t * da;
    b -= t * db;
    const bool converged = std::fabs(t * da) + std::fabs(t * db) < 1e-12 ||
                           current - next <= 1e-15 * std::max(1.0, std::fabs(current));
    current = next;
    if (converged) break;
  }
  fit.fitted = true;
  fit.slope = std::max(a, kMinSlope);
  fit.intercept = b;

  // Calibration of the fitted map on the window it was fitted on.
  std::array<double, kCalibrationBins> predicted{}, observed{}, count{};
  double mean_predicted = 0;
  for (size_t i = 0; i < n; ++i) {
    const double p = Sigmoid(fit.slope * LogitAt(i) + fit.intercept);
    const int bin = std::min(kCalibrationBins - 1, static_cast<int>(p * kCalibrationBins));
    predicted[static_cast<size_t>(bin)] += p;
    observed[static_cast<size_t>(bin)] += labels_[At(i)];
    count[static_cast<size_t>(bin)] += 1;
    mean_predicted += p;
  }
  const double dn = static_cast<double>(n);
  fit.mean_error = mean_predicted / dn - static_cast<double>(fit.positives) / dn;
  for (size_t k = 0; k < count.size(); ++k) {
    fit.expected_calibration_error += std::fabs(predicted[k] - observed[k]) / dn;
  }
  fit_ = fit;
}

double PlattCalibrator::Calibrate(double raw) const {
  if (!fit_.fitted || std::isnan(raw)) return raw;
  return Sigmoid(fit_.slope * Logit(raw) + fit_.intercept);
}

void PlattCalibrator::AppendTo(BinaryWriter& out) const {
  out.Put<uint16_t>(kStateVersion);
  out.Put<int32_t>(options_.window);
  out.Put<uint64_t>(labels_seen_);
  out.Put<uint32_t>(since_refit_);
  out.Put<uint8_t>(fit_.fitted ? 1 : 0);
  out.Put<double>(fit_.slope);
  out.Put<double>(fit_.intercept);
  out.Put<uint64_t>(fit_.positives);
  out.Put<uint64_t>(fit_.negatives);
  out.Put<double>(fit_.auc);
  out.Put<double>(fit_.mean_error);
  out.Put<double>(fit_.expected_calibration_error);
  // The window oldest first, so the reader rebuilds it in arrival order.
  out.Put<uint32_t>(static_cast<uint32_t>(size_));
  for (size_t k = 0; k < size_; ++k) {
    const size_t i = At(k);
    out.Put<float>(scores_[i]);
    out.Put<uint8_t>(labels_[i]);
  }
}

Result<PlattCalibrator> PlattCalibrator::ReadFrom(BinaryReader& in,
                                                  const PlattCalibratorOptions& options) {
  CRM_RETURN_NOT_OK(options.Validate());
  auto corrupt = [](std::string_view what) {
    return Status::Corruption("calibrator state: " + std::string(what));
  };
  uint16_t version = 0;
  CRM_RETURN_NOT_OK(in.Get(&version));
  if (version != kStateVersion) return corrupt("unknown version " + std::to_string(version));
  int32_t window = 0;
  CRM_RETURN_NOT_OK(in.Get(&window));
  if (window != options.window) {
    return Status::InvalidArgument("calibrator state written with a window of " +
                                   std::to_string(window) + " labels; configured " +
                                   std::to_string(options.window));
  }
  PlattCalibrator c(options);
  uint8_t fitted = 0;
  CRM_RETURN_NOT_OK(in.Get(&c.labels_seen_));
  CRM_RETURN_NOT_OK(in.Get(&c.since_refit_));
  CRM_RETURN_NOT_OK(in.Get(&fitted));
  CRM_RETURN_NOT_OK(in.Get(&c.fit_.slope));
  CRM_RETURN_NOT_OK(in.Get(&c.fit_.intercept));
  CRM_RETURN_NOT_OK(in.Get(&c.fit_.positives));
  CRM_RETURN_NOT_OK(in.Get(&c.fit_.negatives));
  CRM_RETURN_NOT_OK(in.Get(&c.fit_.auc));
  CRM_RETURN_NOT_OK(in.Get(&c.fit_.mean_error));
  CRM_RETURN_NOT_OK(in.Get(&c.fit_.expected_calibration_error));
  if (fitted > 1) return corrupt("bad flag");
  c.fit_.fitted = fitted == 1;
  if (!std::isfinite(c.fit_.slope) || !std::isfinite(c.fit_.intercept) ||
      c.fit_.slope < kMinSlope || !(c.fit_.auc >= 0 && c.fit_.auc <= 1)) {
    return corrupt("invalid fit");
  }
  uint32_t size = 0;
  CRM_RETURN_NOT_OK(in.Get(&size));
  if (size > static_cast<uint32_t>(window) || size > c.labels_seen_ ||
      c.since_refit_ >= static_cast<uint32_t>(options.refit_every)) {
    return corrupt("inconsistent counters");
  }
  for (uint32_t k = 0; k < size; ++k) {
    float score = 0;
    uint8_t label = 0;
    CRM_RETURN_NOT_OK(in.Get(&score));
    CRM_RETURN_NOT_OK(in.Get(&label));
    if (!(score >= 0 && score <= 1) || label > 1) return corrupt("invalid window entry");
    c.scores_[k] = score;
    c.labels_[k] = label;
  }
  c.size_ = size;
  c.head_ = size % static_cast<size_t>(window);
  return c;
}

}  // namespace crmstream::models
