#include "crmstream/models/logistic_regression.h"

#include <Eigen/Dense>
#include <algorithm>
#include <cassert>
#include <cmath>
#include <numbers>

#if defined(__x86_64__)
#include <immintrin.h>
#elif defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "crmstream/common/binary_io.h"
#include "crmstream/common/hash.h"

namespace crmstream::models {
namespace {

constexpr int kMaxDense = 1 << 20;
constexpr uint32_t kMaxHashed = 1u << 24;

inline double Sigmoid(double logit) {
  // Beyond |35| the probability is 1 - 6e-16 anyway; clamping keeps exp finite.
  const double t = std::clamp(logit, -35.0, 35.0);
  return 1.0 / (1.0 + std::exp(-t));
}

// w . x with four partial sums (lanes i mod 4), added as ((s0 + s2) + (s1 +
// s3)) and then the tail: a single running sum is a chain of d dependent
// additions, which at d = 50 costs more than the rest of the prediction.
// Both paths add in the same order, so they give the same bits.
double DenseDot(const double* w, const double* x, size_t d) {
  size_t i = 0;
  double sum = 0.0;
#if defined(__SSE2__)
  __m128d a = _mm_setzero_pd(), b = _mm_setzero_pd();
  for (; i + 4 <= d; i += 4) {
    a = _mm_add_pd(a, _mm_mul_pd(_mm_loadu_pd(w + i), _mm_loadu_pd(x + i)));
    b = _mm_add_pd(b, _mm_mul_pd(_mm_loadu_pd(w + i + 2), _mm_loadu_pd(x + i + 2)));
  }
  const __m128d ab = _mm_add_pd(a, b);
  sum = _mm_cvtsd_f64(_mm_add_sd(ab, _mm_unpackhi_pd(ab, ab)));
#else
  double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
  for (; i + 4 <= d; i += 4) {
    s0 += w[i] * x[i];
    s1 += w[i + 1] * x[i + 1];
    s2 += w[i + 2] * x[i + 2];
    s3 += w[i + 3] * x[i + 3];
  }
  sum = (s0 + s2) + (s1 + s3);
#endif
  for (; i < d; ++i) sum += w[i] * x[i];
  return sum;
}

Status ValidateOptions(const LogisticRegressionOptions& o) {
  if (o.dense_dimension < 0 || o.dense_dimension > kMaxDense) {
    return Status::InvalidArgument("LogisticRegressionOptions.dense_dimension out of range");
  }
  if (o.hashed_dimension > kMaxHashed) {
    return Status::InvalidArgument("LogisticRegressionOptions.hashed_dimension out of range");
  }
  if (!(o.alpha > 0.0) || !std::isfinite(o.alpha)) {
    return Status::InvalidArgument("LogisticRegressionOptions.alpha must be finite and > 0");
  }
  if (!(o.beta >= 0.0) || !std::isfinite(o.beta)) {
    return Status::InvalidArgument("LogisticRegressionOptions.beta must be finite and >= 0");
  }
  if (!(o.l1 >= 0.0) || !std::isfinite(o.l1) || !(o.l2 >= 0.0) || !std::isfinite(o.l2)) {
    return Status::InvalidArgument("LogisticRegressionOptions.l1 / l2 must be finite and >= 0");
  }
  if (o.auc_bins < 1 || o.auc_bins > (1u << 24)) {
    return Status::InvalidArgument("LogisticRegressionOptions.auc_bins must be in [1, 2^24]");
  }
  return Status::OK();
}

}  // namespace

Result<LogisticRegression> LogisticRegression::Create(const LogisticRegressionOptions& options) {
  CRM_RETURN_NOT_OK(ValidateOptions(options));
  return LogisticRegression(options);
}

LogisticRegression::LogisticRegression(const LogisticRegressionOptions& options)
    : options_(options),
      inverse_alpha_(1.0 / options.alpha),
      intercept_index_(static_cast<size_t>(options.dense_dimension) + options.hashed_dimension),
      z_(intercept_index_ + 1, 0.0),
      n_(intercept_index_ + 1, 0.0),
      sqrt_n_(intercept_index_ + 1, 0.0),
      weights_(intercept_index_ + 1, 0.0),
      auc_(options.auc_bins) {}

uint32_t LogisticRegression::HashedIndex(std::string_view name, uint32_t hashed_dimension) {
  return hashed_dimension == 0 ? 0 : static_cast<uint32_t>(Hash64(name) % hashed_dimension);
}

double LogisticRegression::PredictLogit(std::span<const double> dense,
                                        std::span<const SparseFeature> sparse) const {
  assert(static_cast<int>(dense.size()) == options_.dense_dimension);
  const double* w = weights_.data();
  const size_t d = dense.size();
  double logit = weights_[intercept_index_] + DenseDot(w, dense.data(), d);
  if (options_.hashed_dimension != 0) {
    const double* wh = w + d;
    for (const SparseFeature& f : sparse)
      logit += wh[f.index % options_.hashed_dimension] * f.value;
  }
  return logit;
}

double LogisticRegression::PredictProbability(std::span<const double> dense,
                                              std::span<const SparseFeature> sparse) const {
  return Sigmoid(PredictLogit(dense, sparse));
}

inline void LogisticRegression::RefreshWeight(size_t i, double l1, double l2) {
  const double z = z_[i];
  const double shrunk = std::fabs(z) <= l1 ? 0.0 : z - std::copysign(l1, z);
  weights_[i] = -shrunk / ((options_.beta + sqrt_n_[i]) * inverse_alpha_ + l2);
}

inline void LogisticRegression::Step(size_t i, double g, double l1, double l2) {
  const double n_new = n_[i] + g * g;
  const double sqrt_new = std::sqrt(n_new);
  const double sigma = (sqrt_new - sqrt_n_[i]) * inverse_alpha_;
  z_[i] += g - sigma * weights_[i];
  n_[i] = n_new;
  sqrt_n_[i] = sqrt_new;
  RefreshWeight(i, l1, l2);
}

namespace {

// The dense block of one FTRL-Proximal step, fused into one pass over the
// coordinates (z, n, sqrt(n) and w of a coordinate are read and written once).
// Per coordinate, in this order of operations:
//   gx = g x;  n' = n + gx^2;  s' = sqrt(n');  z' = z + (gx - ((s' - s) / alpha) w)
//   w' = -(z' - clamp(z', -l1, l1)) / ((beta + s') / alpha + l2)
// (1 / alpha is precomputed). A zero feature gives a zero gradient and leaves
// its coordinate unchanged. The square root and the division dominate: SSE2
// does two of each per instruction and AVX four (taken when the CPU has it;
// the build targets baseline x86-64). Every operation is elementwise and IEEE
// square root and division are correctly rounded (no fused multiply-add is
// used), so all paths give the same bits.
struct DenseFtrlArgs {
  const double* x;
  size_t d;
  double g, inv_alpha, beta, l1, l2;
  double *z, *n, *sqrt_n, *w;
};

// Coordinates [i, d) one at a time.
void DenseFtrlTail(const DenseFtrlArgs& a, size_t i) {
  for (; i < a.d; ++i) {
    const double gx = a.g * a.x[i];
    const double n_new = a.n[i] + gx * gx;
    const double s_new = std::sqrt(n_new);
    const double z_new = a.z[i] + (gx - (s_new - a.sqrt_n[i]) * a.inv_alpha * a.w[i]);
    const double clamped = std::min(std::max(-a.l1, z_new), a.l1);
    a.n[i] = n_new;
    a.sqrt_n[i] = s_new;
    a.z[i] = z_new;
    a.w[i] = -(z_new - clamped) / ((a.beta + s_new) * a.inv_alpha + a.l2);
  }
}

#if defined(__SSE2__)
// Coordinates from i in pairs; returns where it stopped.
size_t DenseFtrlSse2(const DenseFtrlArgs& a, size_t i) {
  const __m128d vg = _mm_set1_pd(a.g), va = _mm_set1_pd(a.inv_alpha), vb = _mm_set1_pd(a.beta),
                vl2 = _mm_set1_pd(a.l2), vhi = _mm_set1_pd(a.l1), vlo = _mm_set1_pd(-a.l1),
                vsign = _mm_set1_pd(-0.0);
  for (; i + 2 <= a.d; i += 2) {
    const __m128d gx = _mm_mul_pd(vg, _mm_loadu_pd(a.x + i));
    const __m128d n_new = _mm_add_pd(_mm_loadu_pd(a.n + i), _mm_mul_pd(gx, gx));
    const __m128d s_new = _mm_sqrt_pd(n_new);
    const __m128d sigma = _mm_mul_pd(_mm_sub_pd(s_new, _mm_loadu_pd(a.sqrt_n + i)), va);
    const __m128d z_new =
        _mm_add_pd(_mm_loadu_pd(a.z + i), _mm_sub_pd(gx, _mm_mul_pd(sigma, _mm_loadu_pd(a.w + i))));
    const __m128d clamped = _mm_min_pd(_mm_max_pd(vlo, z_new), vhi);
    const __m128d shrunk = _mm_xor_pd(_mm_sub_pd(z_new, clamped), vsign);
    const __m128d denominator = _mm_add_pd(_mm_mul_pd(_mm_add_pd(vb, s_new), va), vl2);
    _mm_storeu_pd(a.n + i, n_new);
    _mm_storeu_pd(a.sqrt_n + i, s_new);
    _mm_storeu_pd(a.z + i, z_new);
    _mm_storeu_pd(a.w + i, _mm_div_pd(shrunk, denominator));
  }
  return i;
}
#endif

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define CRMSTREAM_FTRL_AVX 1
// The same in fours, compiled for AVX (not FMA, which would round differently).
__attribute__((target("avx"))) size_t DenseFtrlAvx(const DenseFtrlArgs& a, size_t i) {
  const __m256d vg = _mm256_set1_pd(a.g), va = _mm256_set1_pd(a.inv_alpha),
                vb = _mm256_set1_pd(a.beta), vl2 = _mm256_set1_pd(a.l2), vhi = _mm256_set1_pd(a.l1),
                vlo = _mm256_set1_pd(-a.l1), vsign = _mm256_set1_pd(-0.0);
  for (; i + 4 <= a.d; i += 4) {
    const __m256d gx = _mm256_mul_pd(vg, _mm256_loadu_pd(a.x + i));
    const __m256d n_new = _mm256_add_pd(_mm256_loadu_pd(a.n + i), _mm256_mul_pd(gx, gx));
    const __m256d s_new = _mm256_sqrt_pd(n_new);
    const __m256d sigma = _mm256_mul_pd(_mm256_sub_pd(s_new, _mm256_loadu_pd(a.sqrt_n + i)), va);
    const __m256d z_new =
        _mm256_add_pd(_mm256_loadu_pd(a.z + i),
                      _mm256_sub_pd(gx, _mm256_mul_pd(sigma, _mm256_loadu_pd(a.w + i))));
    const __m256d clamped = _mm256_min_pd(_mm256_max_pd(vlo, z_new), vhi);
    const __m256d shrunk = _mm256_xor_pd(_mm256_sub_pd(z_new, clamped), vsign);
    const __m256d denominator = _mm256_add_pd(_mm256_mul_pd(_mm256_add_pd(vb, s_new), va), vl2);
    _mm256_storeu_pd(a.n + i, n_new);
    _mm256_storeu_pd(a.sqrt_n + i, s_new);
    _mm256_storeu_pd(a.z + i, z_new);
    _mm256_storeu_pd(a.w + i, _mm256_div_pd(shrunk, denominator));
  }
  return i;
}

const bool kCpuHasAvx = __builtin_cpu_supports("avx");
#endif

void DenseFtrlStep(const DenseFtrlArgs& a) {
  size_t i = 0;
#if defined(CRMSTREAM_FTRL_AVX)
  if (kCpuHasAvx) i = DenseFtrlAvx(a, i);
#endif
#if defined(__SSE2__)
  i = DenseFtrlSse2(a, i);
#endif
  DenseFtrlTail(a, i);
}

}  // namespace

double LogisticRegression::Update(std::span<const double> dense,
                                  std::span<const SparseFeature> sparse, bool label) {
  assert(static_cast<int>(dense.size()) == options_.dense_dimension);
  const double logit = PredictLogit(dense, sparse);
  // The weights are finite, so a finite logit means every value was finite;
  // only a non-finite logit needs the values looked at.
  if (!std::isfinite(logit)) {
    bool finite = true;
    for (double v : dense) finite = finite && std::isfinite(v);
    for (const SparseFeature& f : sparse) finite = finite && std::isfinite(f.value);
    if (!finite) return std::nan("");
  }
  const double p = Sigmoid(logit);
  // The prequential metrics record p after the training step: they do not
  // feed it, and the step hides the latency of their histogram counter and
  // logarithm.
  auc_.Prefetch(p, label);

  // Gradient of the log loss with respect to the logit.
  const double g = p - (label ? 1.0 : 0.0);
  const double l1 = options_.l1, l2 = options_.l2;
  const size_t d = dense.size();
  DenseFtrlStep({dense.data(), d, g, inverse_alpha_, options_.beta, l1, l2, z_.data(), n_.data(),
                 sqrt_n_.data(), weights_.data()});
  if (options_.hashed_dimension != 0) {
    for (const SparseFeature& f : sparse) {
      Step(d + f.index % options_.hashed_dimension, g * f.value, l1, l2);
    }
  }
  if (options_.fit_intercept) Step(intercept_index_, g, 0.0, 0.0);
  auc_.Add(p, label);
  log_loss_.Add(p, label);
  ++count_;
  return p;
}

void LogisticRegression::TopContributions(std::span<const double> dense,
                                          std::span<const SparseFeature> sparse, size_t k,
                                          std::vector<FeatureContribution>* out) const {
  assert(static_cast<int>(dense.size()) == options_.dense_dimension);
  out->clear();
  for (size_t i = 0; i < dense.size(); ++i) {
    const double c = weights_[i] * dense[i];
    if (c != 0.0) out->push_back({static_cast<uint32_t>(i), false, c});
  }
  if (options_.hashed_dimension != 0) {
    for (const SparseFeature& f : sparse) {
      const uint32_t bucket = f.index % options_.hashed_dimension;
      const double c = weights_[dense.size() + bucket] * f.value;
      if (c != 0.0) out->push_back({bucket, true, c});
    }
  }
  const auto by_magnitude = [](const FeatureContribution& a, const FeatureContribution& b) {
    const double ma = std::fabs(a.contribution), mb = std::fabs(b.contribution);
    if (ma != mb) return ma > mb;
    return a.hashed != b.hashed ? !a.hashed : a.feature < b.feature;  // deterministic ties
  };
  const size_t keep = std::min(k, out->size());
  std::partial_sort(out->begin(), out->begin() + static_cast<std::ptrdiff_t>(keep), out->end(),
                    by_magnitude);
  out->resize(keep);
}

Status LogisticRegression::Merge(const LogisticRegression& other) {
  const auto& a = options_;
  const auto& b = other.options_;
  if (a.dense_dimension != b.dense_dimension || a.hashed_dimension != b.hashed_dimension ||
      a.alpha != b.alpha || a.beta != b.beta || a.l1 != b.l1 || a.l2 != b.l2 ||
      a.fit_intercept != b.fit_intercept) {
    return Status::InvalidArgument("LogisticRegression::Merge: options differ");
  }
  if (&other == this) return Status::InvalidArgument("LogisticRegression::Merge: self");
  CRM_RETURN_NOT_OK(auc_.Merge(other.auc_));
  CRM_RETURN_NOT_OK(log_loss_.Merge(other.log_loss_));
  const uint64_t total = count_ + other.count_;
  if (total != 0) {
    const double wa = static_cast<double>(count_) / static_cast<double>(total);
    const double wb = 1.0 - wa;
    for (size_t i = 0; i <= intercept_index_; ++i) {
      z_[i] = wa * z_[i] + wb * other.z_[i];
      n_[i] = wa * n_[i] + wb * other.n_[i];
      sqrt_n_[i] = std::sqrt(n_[i]);
      const bool is_intercept = i == intercept_index_;
      RefreshWeight(i, is_intercept ? 0.0 : a.l1, is_intercept ? 0.0 : a.l2);
    }
  }
  count_ = total;
  return Status::OK();
}

std::string LogisticRegression::Serialize() const {
  std::string payload;
  BinaryWriter w(&payload);
  w.Put<int32_t>(options_.dense_dimension);
  w.Put<uint32_t>(options_.hashed_dimension);
  w.Put<double>(options_.alpha);
  w.Put<double>(options_.beta);
  w.Put<double>(options_.l1);
  w.Put<double>(options_.l2);
  w.Put<uint8_t>(options_.fit_intercept ? 1 : 0);
  w.Put<uint32_t>(options_.auc_bins);
  w.Put<uint64_t>(count_);
  w.PutArray<double>(z_);
  w.PutArray<double>(n_);
  auc_.AppendTo(w);
  log_loss_.AppendTo(w);
  return SealBlob(BlobKind::kLogisticRegression, kBlobVersion, payload);
}

Result<LogisticRegression> LogisticRegression::Deserialize(std::string_view blob) {
  CRM_ASSIGN_OR_RETURN(const std::string_view opened_payload,
                       OpenBlobPayload(blob, BlobKind::kLogisticRegression, kBlobVersion));
  BinaryReader in(opened_payload);
  LogisticRegressionOptions o;
  uint8_t fit_intercept = 0;
  uint64_t count = 0;
  CRM_RETURN_NOT_OK(in.Get(&o.dense_dimension));
  CRM_RETURN_NOT_OK(in.Get(&o.hashed_dimension));
  CRM_RETURN_NOT_OK(in.Get(&o.alpha));
  CRM_RETURN_NOT_OK(in.Get(&o.beta));
  CRM_RETURN_NOT_OK(in.Get(&o.l1));
  CRM_RETURN_NOT_OK(in.Get(&o.l2));
  CRM_RETURN_NOT_OK(in.Get(&fit_intercept));
  CRM_RETURN_NOT_OK(in.Get(&o.auc_bins));
  CRM_RETURN_NOT_OK(in.Get(&count));
  if (fit_intercept > 1) return Status::Corruption("LogisticRegression blob: bad intercept flag");
  o.fit_intercept = fit_intercept == 1;
  if (Status st = ValidateOptions(o); !st.ok()) {
    return Status::Corruption("LogisticRegression blob: " + st.message());
  }
  const size_t size = static_cast<size_t>(o.dense_dimension) + o.hashed_dimension + 1;
  // Check the sizes against the input before allocating the model.
  if (in.remaining() / (2 * sizeof(double)) < size) {
    return Status::Corruption("LogisticRegression blob is too short for its dimensions");
  }
  std::vector<double> z, n;
  CRM_RETURN_NOT_OK(in.GetArray(&z, size));
  CRM_RETURN_NOT_OK(in.GetArray(&n, size));
  if (z.size() != size || n.size() != size) {
    return Status::Corruption("LogisticRegression blob has state of the wrong size");
  }
  for (size_t i = 0; i < size; ++i) {
    if (!std::isfinite(z[i]) || !std::isfinite(n[i]) || n[i] < 0.0) {
      return Status::Corruption("LogisticRegression blob has invalid state");
    }
  }
  CRM_ASSIGN_OR_RETURN(StreamingAuc auc, StreamingAuc::ReadFrom(in));
  CRM_ASSIGN_OR_RETURN(LogLoss log_loss, LogLoss::ReadFrom(in));
  CRM_RETURN_NOT_OK(in.ExpectEnd());
  if (auc.bins() != o.auc_bins) return Status::Corruption("LogisticRegression blob: AUC bins");
  LogisticRegression model(o);
  model.count_ = count;
  model.z_ = std::move(z);
  model.n_ = std::move(n);
  for (size_t i = 0; i < size; ++i) {
    model.sqrt_n_[i] = std::sqrt(model.n_[i]);
    const bool is_intercept = i == model.intercept_index_;
    model.RefreshWeight(i, is_intercept ? 0.0 : o.l1, is_intercept ? 0.0 : o.l2);
  }
  model.auc_ = std::move(auc);
  model.log_loss_ = log_loss;
  return model;
}

}  // namespace crmstream::models

// ------------------------------------------------- BayesianLogisticRegression

namespace crmstream::models {
namespace {

constexpr int kMaxBayesianDimension = 2048;

Status ValidateBayesianOptions(const BayesianLogisticRegressionOptions& o) {
  if (o.dimension < 1 || o.dimension > kMaxBayesianDimension) {
    return Status::InvalidArgument(
        "BayesianLogisticRegressionOptions.dimension must be in [1, 2048]");
  }
  if (!(o.prior_variance > 0.0) || !std::isfinite(o.prior_variance)) {
    return Status::InvalidArgument(
        "BayesianLogisticRegressionOptions.prior_variance must be finite and > 0");
  }
  if (!(o.intercept_prior_variance > 0.0) || !std::isfinite(o.intercept_prior_variance)) {
    return Status::InvalidArgument(
        "BayesianLogisticRegressionOptions.intercept_prior_variance must be finite and > 0");
  }
  if (o.auc_bins < 1 || o.auc_bins > (1u << 24)) {
    return Status::InvalidArgument("BayesianLogisticRegressionOptions.auc_bins out of range");
  }
  return Status::OK();
}

using RowMatrix = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

}  // namespace

Result<BayesianLogisticRegression> BayesianLogisticRegression::Create(
    const BayesianLogisticRegressionOptions& options) {
  CRM_RETURN_NOT_OK(ValidateBayesianOptions(options));
  return BayesianLogisticRegression(options);
}

BayesianLogisticRegression::BayesianLogisticRegression(
    const BayesianLogisticRegressionOptions& options)
    : options_(options),
      d_(options.dimension),
      mean_(static_cast<size_t>(d_) + 1, 0.0),
      cov_(static_cast<size_t>(d_ + 1) * (d_ + 1), 0.0),
      work_(static_cast<size_t>(d_) + 1, 0.0),
      x_work_(static_cast<size_t>(d_) + 1, 0.0),
      auc_(options.auc_bins) {
  for (int i = 0; i < d_; ++i) cov_[static_cast<size_t>(i) * (d_ + 1) + i] = options.prior_variance;
  cov_[static_cast<size_t>(d_) * (d_ + 1) + d_] = options.intercept_prior_variance;
}

double BayesianLogisticRegression::PredictMeanLogit(std::span<const double> x) const {
  assert(static_cast<int>(x.size()) == d_);
  double logit = mean_[d_];
  for (int i = 0; i < d_; ++i) logit += mean_[i] * x[i];
  return logit;
}

double BayesianLogisticRegression::PredictLogit(std::span<const double> x) const {
  assert(static_cast<int>(x.size()) == d_);
  const int n = d_ + 1;
  std::copy(x.begin(), x.end(), x_work_.begin());
  x_work_[d_] = 1.0;
  const Eigen::Map<const Eigen::VectorXd> xv(x_work_.data(), n);
  const Eigen::Map<const RowMatrix> cov(cov_.data(), n, n);
  // x' C x from C's upper triangle (C is symmetric: half the products of
  // the full form), row by row: no temporary vector, so no allocation.
  double quadratic = 0.0;
  for (int i = 0; i < n; ++i) {
    const int tail = n - i - 1;
    const double off_diagonal = cov.row(i).tail(tail).dot(xv.tail(tail));
    quadratic += xv[i] * (cov(i, i) * xv[i] + 2.0 * off_diagonal);
  }
  const double variance = std::max(0.0, quadratic);
  const double m = PredictMeanLogit(x);
  return m / std::sqrt(1.0 + (std::numbers::pi / 8.0) * variance);
}

double BayesianLogisticRegression::PredictProbability(std::span<const double> x) const {
  return Sigmoid(PredictLogit(x));
}

double BayesianLogisticRegression::Update(std::span<const double> x, bool label) {
  assert(static_cast<int>(x.size()) == d_);
  for (double v : x) {
    if (!std::isfinite(v)) return std::nan("");
  }
  const int n = d_ + 1;
  std::copy(x.begin(), x.end(), x_work_.begin());
  x_work_[d_] = 1.0;
  const Eigen::Map<const Eigen::VectorXd> xv(x_work_.data(), n);
  Eigen::Map<RowMatrix> cov(cov_.data(), n, n);
  Eigen::Map<Eigen::VectorXd> s(work_.data(), n);
  Eigen::Map<Eigen::VectorXd> mean(mean_.data(), n);

  s.noalias() = cov * xv;
  const double variance = std::max(0.0, xv.dot(s));
  const double m = mean.dot(xv);
  const double p_moderated = Sigmoid(m / std::sqrt(1.0 + (std::numbers::pi / 8.0) * variance));
  auc_.Add(p_moderated, label);
  log_loss_.Add(p_moderated, label);

  // Laplace / EKF step at the current mean: the likelihood's curvature
  // w = p (1 - p) gives a rank-one precision update; Sherman-Morrison turns
  // it into a covariance downdate.
  const double p = Sigmoid(m);
  const double w = std::max(p * (1.0 - p), 1e-9);
  const double denom = 1.0 + w * variance;
  mean.noalias() += s * (((label ? 1.0 : 0.0) - p) / denom);
  cov.noalias() -= (w / denom) * s * s.transpose();
  ++count_;
  return p_moderated;
}

void BayesianLogisticRegression::TopContributions(std::span<const double> x, size_t k,
                                                  std::vector<FeatureContribution>* out) const {
  assert(static_cast<int>(x.size()) == d_);
  out->clear();
  for (int i = 0; i < d_; ++i) {
    const double c = mean_[i] * x[i];
    if (c != 0.0) out->push_back({static_cast<uint32_t>(i), false, c});
  }
  const auto by_magnitude = [](const FeatureContribution& a, const FeatureContribution& b) {
    const double ma = std::fabs(a.contribution), mb = std::fabs(b.contribution);
    return ma != mb ? ma > mb : a.feature < b.feature;
  };
  const size_t keep = std::min(k, out->size());
  std::partial_sort(out->begin(), out->begin() + static_cast<std::ptrdiff_t>(keep), out->end(),
                    by_magnitude);
  out->resize(keep);
}

Status BayesianLogisticRegression::Merge(const BayesianLogisticRegression& other) {
  const auto& a = options_;
  const auto& b = other.options_;
  if (a.dimension != b.dimension || a.prior_variance != b.prior_variance ||
      a.intercept_prior_variance != b.intercept_prior_variance) {
    return Status::InvalidArgument("BayesianLogisticRegression::Merge: options differ");
  }
  if (&other == this) return Status::InvalidArgument("BayesianLogisticRegression::Merge: self");
  const int n = d_ + 1;
  const Eigen::Map<const RowMatrix> cov_a(cov_.data(), n, n);
  const Eigen::Map<const RowMatrix> cov_b(other.cov_.data(), n, n);
  const Eigen::Map<const Eigen::VectorXd> mean_a(mean_.data(), n);
  const Eigen::Map<const Eigen::VectorXd> mean_b(other.mean_.data(), n);
  // Natural parameters: precision and precision-weighted mean. The prior
  // (zero mean) is in both, so its precision is subtracted once.
  const Eigen::MatrixXd identity = Eigen::MatrixXd::Identity(n, n);
  Eigen::LDLT<Eigen::MatrixXd> lda(cov_a);
  Eigen::LDLT<Eigen::MatrixXd> ldb(cov_b);
  if (lda.info() != Eigen::Success || ldb.info() != Eigen::Success || !lda.isPositive() ||
      !ldb.isPositive()) {
    return Status::Internal("BayesianLogisticRegression::Merge: covariance not positive definite");
  }
  const Eigen::MatrixXd precision_a = lda.solve(identity);
  const Eigen::MatrixXd precision_b = ldb.solve(identity);
  Eigen::MatrixXd precision = precision_a + precision_b;
  for (int i = 0; i < d_; ++i) precision(i, i) -= 1.0 / a.prior_variance;
  precision(d_, d_) -= 1.0 / a.intercept_prior_variance;
  const Eigen::VectorXd eta = precision_a * mean_a + precision_b * mean_b;
  Eigen::LDLT<Eigen::MatrixXd> ld(precision);
  if (ld.info() != Eigen::Success || !ld.isPositive()) {
    return Status::Internal("BayesianLogisticRegression::Merge: merged precision not positive");
  }
  Eigen::MatrixXd cov = ld.solve(identity);
  cov = 0.5 * (cov + cov.transpose()).eval();
  const Eigen::VectorXd mean = cov * eta;
  CRM_RETURN_NOT_OK(auc_.Merge(other.auc_));
  CRM_RETURN_NOT_OK(log_loss_.Merge(other.log_loss_));
  Eigen::Map<RowMatrix>(cov_.data(), n, n) = cov;
  Eigen::Map<Eigen::VectorXd>(mean_.data(), n) = mean;
  count_ += other.count_;
  return Status::OK();
}

std::string BayesianLogisticRegression::Serialize() const {
  std::string payload;
  BinaryWriter w(&payload);
  w.Put<int32_t>(d_);
  w.Put<double>(options_.prior_variance);
  w.Put<double>(options_.intercept_prior_variance);
  w.Put<uint32_t>(options_.auc_bins);
  w.Put<uint64_t>(count_);
  w.PutArray<double>(mean_);
  w.PutArray<double>(cov_);
  auc_.AppendTo(w);
  log_loss_.AppendTo(w);
  return SealBlob(BlobKind::kBayesianLogisticRegression, kBlobVersion, payload);
}

Result<BayesianLogisticRegression> BayesianLogisticRegression::Deserialize(std::string_view blob) {
  CRM_ASSIGN_OR_RETURN(const std::string_view opened_payload,
                       OpenBlobPayload(blob, BlobKind::kBayesianLogisticRegression, kBlobVersion));
  BinaryReader in(opened_payload);
  BayesianLogisticRegressionOptions o;
  uint64_t count = 0;
  CRM_RETURN_NOT_OK(in.Get(&o.dimension));
  CRM_RETURN_NOT_OK(in.Get(&o.prior_variance));
  CRM_RETURN_NOT_OK(in.Get(&o.intercept_prior_variance));
  CRM_RETURN_NOT_OK(in.Get(&o.auc_bins));
  CRM_RETURN_NOT_OK(in.Get(&count));
  if (Status st = ValidateBayesianOptions(o); !st.ok()) {
    return Status::Corruption("BayesianLogisticRegression blob: " + st.message());
  }
  const size_t n = static_cast<size_t>(o.dimension) + 1;
  if (in.remaining() / sizeof(double) < n + n * n) {
    return Status::Corruption("BayesianLogisticRegression blob is too short for its dimension");
  }
  std::vector<double> mean, cov;
  CRM_RETURN_NOT_OK(in.GetArray(&mean, n));
  CRM_RETURN_NOT_OK(in.GetArray(&cov, n * n));
  if (mean.size() != n || cov.size() != n * n) {
    return Status::Corruption("BayesianLogisticRegression blob has state of the wrong size");
  }
  for (double v : mean) {
    if (!std::isfinite(v)) return Status::Corruption("BayesianLogisticRegression: bad mean");
  }
  for (size_t i = 0; i < n; ++i) {
    if (!(cov[i * n + i] >= 0.0))
      return Status::Corruption("BayesianLogisticRegression: bad variance");
    for (size_t j = 0; j < n; ++j) {
      if (!std::isfinite(cov[i * n + j])) {
        return Status::Corruption("BayesianLogisticRegression: bad covariance");
      }
    }
  }
  CRM_ASSIGN_OR_RETURN(StreamingAuc auc, StreamingAuc::ReadFrom(in));
  CRM_ASSIGN_OR_RETURN(LogLoss log_loss, LogLoss::ReadFrom(in));
  CRM_RETURN_NOT_OK(in.ExpectEnd());
  if (auc.bins() != o.auc_bins) return Status::Corruption("BayesianLogisticRegression: AUC bins");
  BayesianLogisticRegression model(o);
  model.count_ = count;
  model.mean_ = std::move(mean);
  model.cov_ = std::move(cov);
  model.auc_ = std::move(auc);
  model.log_loss_ = log_loss;
  return model;
}

}  // namespace crmstream::models
