#include "crmstream/models/multivariate_anomaly.h"

#include <Eigen/Cholesky>
#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <limits>
#include <numbers>

#include "crmstream/common/binary_io.h"

namespace crmstream::models {
namespace {

using MatrixMap = Eigen::Map<Eigen::MatrixXd>;
using ConstMatrixMap = Eigen::Map<const Eigen::MatrixXd>;
using VectorMap = Eigen::Map<Eigen::VectorXd>;
using ConstVectorMap = Eigen::Map<const Eigen::VectorXd>;

constexpr uint32_t kMaxDim = 64;

bool AllFinite(std::span<const double> x) {
  return std::all_of(x.begin(), x.end(), [](double v) { return std::isfinite(v); });
}

}  // namespace

double ChiSquareCdf(double x, uint32_t dof) {
  if (!(x > 0.0) || dof == 0) return 0.0;
  if (std::isinf(x)) return 1.0;
  // Closed forms of the upper tail for integer degrees of freedom:
  //   even k: Q = e^{-x/2} sum_{j < k/2} (x/2)^j / j!
  //   odd k:  Q = erfc(sqrt(x/2)) + e^{-x/2} sum_{j=1}^{(k-1)/2} (x/2)^{j-1/2} / Gamma(j+1/2)
  const double h = 0.5 * x;
  const double e = std::exp(-h);
  double upper;
  if (dof % 2 == 0) {
    double term = 1.0, sum = 1.0;
    for (uint32_t j = 1; j < dof / 2; ++j) {
      term *= h / j;
      sum += term;
    }
    upper = e * sum;
  } else {
    double term = std::sqrt(h) / (0.5 * std::sqrt(std::numbers::pi));  // (x/2)^{1/2} / Gamma(3/2)
    double sum = 0.0;
    for (uint32_t j = 1; j <= (dof - 1) / 2; ++j) {
      sum += term;
      term *= h / (j + 0.5);
    }
    upper = std::erfc(std::sqrt(h)) + e * sum;
  }
  return std::clamp(1.0 - upper, 0.0, 1.0);
}

double ChiSquareRarity(double x, uint32_t dof) {
  if (!(x > 0.0) || dof == 0) return 0.0;
  if (std::isinf(x)) return std::numeric_limits<double>::infinity();
  // The upper tail as e^{-x/2} * s, s from the closed forms above; for odd k
  // erfc(sqrt(x/2)) e^{x/2} is taken from its asymptotic series where erfc
  // underflows.
  const double h = 0.5 * x;
  double s;
  if (dof % 2 == 0) {
    double term = 1.0;
    s = 1.0;
    for (uint32_t j = 1; j < dof / 2; ++j) {
      term *= h / j;
      s += term;
    }
  } else {
    const double z = std::sqrt(h);
    s = h < 600.0 ? std::erfc(z) * std::exp(h)
                  : (1.0 - 0.5 / h) / (z * std::sqrt(std::numbers::pi));
    double term = std::sqrt(h) / (0.5 * std::sqrt(std::numbers::pi));
    for (uint32_t j = 1; j <= (dof - 1) / 2; ++j) {
      s += term;
      term *= h / (j + 0.5);
    }
  }
  return std::max(0.0, (h - std::log(s)) / std::numbers::ln10);
}

Status MultivariateAnomalyDetector::Options::Validate() const {
  if (dim < 1 || dim > kMaxDim) return Status::InvalidArgument("dim must be in [1, 64]");
  if (!(shrinkage >= 0.0 && shrinkage < 1.0)) {
    return Status::InvalidArgument("shrinkage must be in [0, 1)");
  }
  if (refresh_interval < 1) return Status::InvalidArgument("refresh_interval must be >= 1");
  return Status::OK();
}

MultivariateAnomalyDetector::MultivariateAnomalyDetector(const Options& options)
    : options_(options),
      mean_(options.dim, 0.0),
      scatter_(size_t{options.dim} * options.dim, 0.0),
      factor_(size_t{options.dim} * options.dim, 0.0),
      scratch_(options.dim, 0.0) {}

Result<MultivariateAnomalyDetector> MultivariateAnomalyDetector::Create(const Options& options) {
  CRM_RETURN_NOT_OK(options.Validate());
  return MultivariateAnomalyDetector(options);
}

uint32_t MultivariateAnomalyDetector::warmup() const {
  return options_.warmup > 0 ? options_.warmup : 2 * options_.dim + 10;
}

void MultivariateAnomalyDetector::RefreshFactor() {
  const Eigen::Index d = options_.dim;
  since_refresh_ = 0;
  factor_valid_ = false;
  if (count_ < 2.0) return;
  ConstMatrixMap scatter(scatter_.data(), d, d);
  MatrixMap factor(factor_.data(), d, d);
  factor = scatter / (count_ - 1.0);
  double scale = factor.trace() / static_cast<double>(d);
  if (!(scale > 0.0) || !std::isfinite(scale)) scale = 1.0;
  factor *= 1.0 - options_.shrinkage;
  factor.diagonal().array() += options_.shrinkage * scale + 1e-12 * scale;
  // In place: the factor overwrites the covariance without allocating.
  Eigen::LLT<Eigen::Ref<Eigen::MatrixXd>> llt(factor);
  factor_valid_ = llt.info() == Eigen::Success;
}

double MultivariateAnomalyDetector::SquaredDistance(std::span<const double> x) {
  if (x.size() != options_.dim || !AllFinite(x)) return 0.0;
  if (!factor_valid_ || since_refresh_ >= options_.refresh_interval) RefreshFactor();
  if (!factor_valid_) return 0.0;
  const Eigen::Index d = options_.dim;
  VectorMap diff(scratch_.data(), d);
  diff = ConstVectorMap(x.data(), d) - ConstVectorMap(mean_.data(), d);
  ConstMatrixMap(factor_.data(), d, d).triangularView<Eigen::Lower>().solveInPlace(diff);
  return diff.squaredNorm();
}

double MultivariateAnomalyDetector::Score(std::span<const double> x) {
  last_squared_distance_ = 0.0;
  if (x.size() != options_.dim || !AllFinite(x)) return 0.0;
  const double d2 = SquaredDistance(x);
  const double score = count_ >= warmup() ? ChiSquareCdf(d2, options_.dim) : 0.0;
  last_squared_distance_ = score > 0.0 ? d2 : 0.0;

  // Winsorised Welford update: beyond the chi-square mean + 4 sd the point
  // is learned as if it lay on that radius.
  const double dim = options_.dim;
  const double clip = dim + 4.0 * std::sqrt(2.0 * dim);
  const double shrink = count_ >= warmup() && d2 > clip ? std::sqrt(clip / d2) : 1.0;
  const Eigen::Index d = options_.dim;
  VectorMap delta(scratch_.data(), d);
  VectorMap mean(mean_.data(), d);
  delta = (ConstVectorMap(x.data(), d) - mean) * shrink;
  count_ += 1.0;
  mean += delta / count_;
  MatrixMap(scatter_.data(), d, d).noalias() +=
      ((count_ - 1.0) / count_) * delta * delta.transpose();
  ++since_refresh_;
  if (count_ <= warmup()) factor_valid_ = false;  // refresh every point while young
  return score;
}

Status MultivariateAnomalyDetector::Merge(const MultivariateAnomalyDetector& other) {
  if (other.options_.dim != options_.dim) {
    return Status::InvalidArgument("cannot merge multivariate anomaly models of different dim");
  }
  if (other.count_ == 0.0) return Status::OK();
  const Eigen::Index d = options_.dim;
  const double n = count_ + other.count_;
  VectorMap mean(mean_.data(), d);
  VectorMap delta(scratch_.data(), d);
  delta = ConstVectorMap(other.mean_.data(), d) - mean;
  MatrixMap scatter(scatter_.data(), d, d);
  scatter += ConstMatrixMap(other.scatter_.data(), d, d);
  scatter.noalias() += (count_ * other.count_ / n) * delta * delta.transpose();
  mean += delta * (other.count_ / n);
  count_ = n;
  factor_valid_ = false;
  return Status::OK();
}

std::string MultivariateAnomalyDetector::Serialize() const {
  std::string payload;
  BinaryWriter w(&payload);
  w.Put<uint32_t>(options_.dim);
  w.Put<double>(options_.shrinkage);
  w.Put<uint32_t>(options_.warmup);
  w.Put<uint32_t>(options_.refresh_interval);
  w.Put<double>(count_);
  w.PutArray<double>(mean_);
  w.PutArray<double>(scatter_);
  // The factor in use is part of the state: it is refreshed only every
  // refresh_interval updates, and a resumed model must score identically.
  w.PutArray<double>(factor_);
  w.Put<uint32_t>(since_refresh_);
  w.Put<uint8_t>(factor_valid_ ? 1 : 0);
  return SealBlob(BlobKind::kMultivariateAnomaly, kBlobVersion, payload);
}

Result<MultivariateAnomalyDetector> MultivariateAnomalyDetector::Deserialize(
    std::string_view blob) {
  CRM_ASSIGN_OR_RETURN(const std::string_view opened_payload,
                       OpenBlobPayload(blob, BlobKind::kMultivariateAnomaly, kBlobVersion));
  BinaryReader r(opened_payload);
  Options o;
  CRM_RETURN_NOT_OK(r.Get(&o.dim));
  CRM_RETURN_NOT_OK(r.Get(&o.shrinkage));
  CRM_RETURN_NOT_OK(r.Get(&o.warmup));
  CRM_RETURN_NOT_OK(r.Get(&o.refresh_interval));
  if (Status st = o.Validate(); !st.ok()) {
    return Status::Corruption("multivariate anomaly blob: " + st.message());
  }
  MultivariateAnomalyDetector m(o);
  CRM_RETURN_NOT_OK(r.Get(&m.count_));
  CRM_RETURN_NOT_OK(r.GetArray(&m.mean_, o.dim));
  CRM_RETURN_NOT_OK(r.GetArray(&m.scatter_, size_t{o.dim} * o.dim));
  CRM_RETURN_NOT_OK(r.GetArray(&m.factor_, size_t{o.dim} * o.dim));
  CRM_RETURN_NOT_OK(r.Get(&m.since_refresh_));
  uint8_t valid = 0;
  CRM_RETURN_NOT_OK(r.Get(&valid));
  CRM_RETURN_NOT_OK(r.ExpectEnd());
  if (valid > 1) return Status::Corruption("multivariate anomaly blob: bad factor flag");
  m.factor_valid_ = valid == 1;
  if (m.mean_.size() != o.dim || m.scatter_.size() != size_t{o.dim} * o.dim ||
      m.factor_.size() != size_t{o.dim} * o.dim) {
    return Status::Corruption("multivariate anomaly blob: array sizes do not match dim");
  }
  if (!(m.count_ >= 0.0) || !std::isfinite(m.count_) || !AllFinite(m.mean_) ||
      !AllFinite(m.scatter_) || !AllFinite(m.factor_)) {
    return Status::Corruption("multivariate anomaly blob: non-finite statistics");
  }
  return m;
}

}  // namespace crmstream::models
