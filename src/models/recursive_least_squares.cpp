#include "crmstream/models/recursive_least_squares.h"

#include <cassert>
#include <cmath>
#include <string>

#include "crmstream/common/binary_io.h"

namespace crmstream::models {
namespace {

constexpr int kMaxDimension = 4096;

// sqrt(a^2 + b^2) without the cost of std::hypot unless the squares could
// overflow.
inline double Norm2(double a, double b) {
  const double m = std::fmax(std::fabs(a), std::fabs(b));
  if (m > 1e150 || (m < 1e-150 && m > 0.0)) return std::hypot(a, b);
  return std::sqrt(a * a + b * b);
}

}  // namespace

Result<RecursiveLeastSquares> RecursiveLeastSquares::Create(
    const RecursiveLeastSquaresOptions& options) {
  if (options.dimension < 1 || options.dimension > kMaxDimension) {
    return Status::InvalidArgument("RecursiveLeastSquaresOptions.dimension must be in [1, " +
                                   std::to_string(kMaxDimension) + "], got " +
                                   std::to_string(options.dimension));
  }
  if (!(options.forgetting_factor > 0.0 && options.forgetting_factor <= 1.0)) {
    return Status::InvalidArgument(
        "RecursiveLeastSquaresOptions.forgetting_factor must be in (0, 1]");
  }
  if (!(options.ridge > 0.0) || !std::isfinite(options.ridge)) {
    return Status::InvalidArgument("RecursiveLeastSquaresOptions.ridge must be finite and > 0");
  }
  return RecursiveLeastSquares(options.dimension, options.forgetting_factor, options.ridge);
}

RecursiveLeastSquares::RecursiveLeastSquares(int d, double lambda, double delta)
    : d_(d),
      lambda_(lambda),
      sqrt_lambda_(std::sqrt(lambda)),
      delta_(delta),
      prior_weight_(delta),
      row_start_(static_cast<size_t>(d) + 1),
      r_(static_cast<size_t>(d + 1) * (d + 2) / 2, 0.0),
      work_(static_cast<size_t>(d) + 1, 0.0),
      coefficients_(static_cast<size_t>(d), 0.0) {
  size_t start = 0;
  for (int i = 0; i <= d; ++i) {
    row_start_[i] = start;
    start += static_cast<size_t>(d + 1 - i);
  }
  // R'R = delta * I on the feature block: the ridge prior. The target column
  // starts at zero.
  const double root = std::sqrt(delta);
  for (int i = 0; i < d; ++i) r_[At(i, i)] = root;
  coefficients_valid_ = true;  // all zero, matching the prior
}

double RecursiveLeastSquares::RotateIn(double* row, int first, double scale) {
  const int d = d_;
  double product_of_cosines = 1.0;
  for (int k = first; k < d; ++k) {
    double* __restrict rk = &r_[At(k, k)];
    double* __restrict xr = row + k;
    const double b = xr[0];
    const int len = d - k;  // entries right of the diagonal, target included
    if (b == 0.0) {
      // Nothing to rotate: only the forgetting scale applies (sparse rows
      // such as one-hot features take this path).
      if (scale != 1.0) {
        for (int j = 0; j <= len; ++j) rk[j] *= scale;
      }
      continue;
    }
    const double a = scale * rk[0];
    const double rho = Norm2(a, b);
    const double c = a / rho;
    const double s = b / rho;
    const double cs = c * scale;
    const double ss = s * scale;
    rk[0] = rho;
    for (int j = 1; j <= len; ++j) {
      const double rkj = rk[j];
      const double xj = xr[j];
      rk[j] = cs * rkj + s * xj;
      xr[j] = c * xj - ss * rkj;
    }
    product_of_cosines *= c;
  }
  // The target column's diagonal is the root of the minimised objective.
  double& rdd = r_[At(d, d)];
  rdd = Norm2(scale * rdd, row[d]);
  return product_of_cosines;
}

double RecursiveLeastSquares::Update(std::span<const double> x, double y) {
  assert(static_cast<int>(x.size()) == d_);
  double* row = work_.data();
  bool finite = std::isfinite(y);
  for (int j = 0; j < d_; ++j) {
    row[j] = x[j];
    finite = finite && std::isfinite(x[j]);
  }
  if (!finite) return std::nan("");
  row[d_] = y;
  const double product_of_cosines = RotateIn(row, 0, sqrt_lambda_);
  // QR-RLS identity: after the rotations the target slot holds the
  // angle-normalised error gamma^(1/2) * e, where e = y - w'x is the a-priori
  // error and gamma^(1/2) the product of the cosines.
  double prediction = std::nan("");
  if (product_of_cosines != 0.0) {
    prediction = y - row[d_] / product_of_cosines;
    rmse_.Add(prediction, y);
  }
  prior_weight_ *= lambda_;
  if (prior_weight_ < 1e-300) prior_weight_ = 0.0;  // avoid denormal arithmetic
  ++count_;
  coefficients_valid_ = false;
  return prediction;
}

void RecursiveLeastSquares::UpdateBatch(std::span<const double> rows, std::span<const double> ys) {
  assert(rows.size() == ys.size() * static_cast<size_t>(d_));
  for (size_t i = 0; i < ys.size(); ++i) {
    (void)Update(rows.subspan(i * static_cast<size_t>(d_), static_cast<size_t>(d_)), ys[i]);
  }
}

void RecursiveLeastSquares::SolveCoefficients() const {
  // Back substitution R11 w = z, with z the target column of R.
  for (int i = d_ - 1; i >= 0; --i) {
    const double* ri = &r_[At(i, i)];
    double sum = ri[d_ - i];
    for (int j = i + 1; j < d_; ++j) sum -= ri[j - i] * coefficients_[j];
    coefficients_[i] = ri[0] != 0.0 ? sum / ri[0] : 0.0;
  }
  coefficients_valid_ = true;
}

std::span<const double> RecursiveLeastSquares::Coefficients() const {
  if (!coefficients_valid_) SolveCoefficients();
  return coefficients_;
}

double RecursiveLeastSquares::Predict(std::span<const double> x) const {
  assert(static_cast<int>(x.size()) == d_);
  if (!coefficients_valid_) SolveCoefficients();
  double sum = 0.0;
  for (int j = 0; j < d_; ++j) sum += coefficients_[j] * x[j];
  return sum;
}

double RecursiveLeastSquares::MinimisedObjective() const {
  const double rdd = r_[At(d_, d_)];
  return rdd * rdd;
}

Status RecursiveLeastSquares::DowndatePrior(double weight) {
  if (weight == 0.0) return Status::OK();
  // LINPACK dchdd (Stewart's downdate) applied d times, removing the rows
  // sqrt(weight) * e_k with target 0. Its orthogonal rotations keep it
  // stable while the result stays positive definite, which holds here since
  // the merged factor still carries this instance's own prior.
  const int d = d_;
  const double root = std::sqrt(weight);
  std::vector<double> a(static_cast<size_t>(d)), c(static_cast<size_t>(d)),
      s(static_cast<size_t>(d));
  for (int k = 0; k < d; ++k) {
    // Solve R' a = root * e_k.
    double norm_sq = 0.0;
    for (int j = 0; j < d; ++j) {
      double v = (j == k) ? root : 0.0;
      if (j > k) {
        for (int i = k; i < j; ++i) v -= r_[At(i, j)] * a[i];
      }
      const double rjj = r_[At(j, j)];
      if (j < k) {
        a[j] = 0.0;
        continue;
      }
      if (rjj == 0.0) return Status::Internal("RLS merge: singular factor in prior downdate");
      a[j] = v / rjj;
      norm_sq += a[j] * a[j];
    }
    if (!(norm_sq < 1.0)) {
      return Status::Internal("RLS merge: prior downdate would lose positive definiteness");
    }
    double alpha = std::sqrt(1.0 - norm_sq);
    for (int i = d - 1; i >= 0; --i) {
      const double scale = alpha + std::fabs(a[i]);
      const double aa = alpha / scale;
      const double bb = a[i] / scale;
      const double norm = std::sqrt(aa * aa + bb * bb);
      c[i] = aa / norm;
      s[i] = bb / norm;
      alpha = scale * norm;
    }
    for (int j = 0; j < d; ++j) {
      double xx = 0.0;
      for (int i = j; i >= 0; --i) {
        double& rij = r_[At(i, j)];
        const double t = c[i] * xx + s[i] * rij;
        rij = c[i] * rij - s[i] * xx;
        xx = t;
      }
    }
    double zeta = 0.0;  // the removed row's target
    for (int i = 0; i < d; ++i) {
      double& zi = r_[At(i, d)];
      zi = (zi - s[i] * zeta) / c[i];
      zeta = c[i] * zeta - s[i] * zi;
    }
    double& rho = r_[At(d, d)];
    const double abs_rho = std::fabs(rho);
    rho = std::fabs(zeta) < abs_rho ? abs_rho * std::sqrt(1.0 - (zeta / abs_rho) * (zeta / abs_rho))
                                    : 0.0;
  }
  return Status::OK();
}

Status RecursiveLeastSquares::Merge(const RecursiveLeastSquares& other) {
  if (other.d_ != d_ || other.lambda_ != lambda_ || other.delta_ != delta_) {
    return Status::InvalidArgument(
        "RecursiveLeastSquares::Merge: dimension, forgetting factor or ridge differ");
  }
  if (&other == this) return Status::InvalidArgument("RecursiveLeastSquares::Merge: self");
  // [R_this; R_other] has Gram matrix equal to the sum of both; rotating the
  // rows of R_other in one by one re-triangularises it.
  std::vector<double> saved_r = r_;
  double* row = work_.data();
  for (int i = 0; i <= d_; ++i) {
    for (int j = 0; j < i; ++j) row[j] = 0.0;
    for (int j = i; j <= d_; ++j) row[j] = other.r_[other.At(i, j)];
    (void)RotateIn(row, i, 1.0);
  }
  Status st = DowndatePrior(other.prior_weight_);
  if (!st.ok()) {
    r_ = std::move(saved_r);
    return st;
  }
  count_ += other.count_;
  CRM_RETURN_NOT_OK(rmse_.Merge(other.rmse_));
  coefficients_valid_ = false;
  return Status::OK();
}

std::string RecursiveLeastSquares::Serialize() const {
  std::string payload;
  BinaryWriter w(&payload);
  w.Put<int32_t>(d_);
  w.Put<double>(lambda_);
  w.Put<double>(delta_);
  w.Put<double>(prior_weight_);
  w.Put<uint64_t>(count_);
  w.PutArray<double>(r_);
  rmse_.AppendTo(w);
  return SealBlob(BlobKind::kRecursiveLeastSquares, kBlobVersion, payload);
}

Result<RecursiveLeastSquares> RecursiveLeastSquares::Deserialize(std::string_view blob) {
  CRM_ASSIGN_OR_RETURN(const std::string_view opened_payload,
                       OpenBlobPayload(blob, BlobKind::kRecursiveLeastSquares, kBlobVersion));
  BinaryReader in(opened_payload);
  int32_t d = 0;
  double lambda = 0, delta = 0, prior_weight = 0;
  uint64_t count = 0;
  CRM_RETURN_NOT_OK(in.Get(&d));
  CRM_RETURN_NOT_OK(in.Get(&lambda));
  CRM_RETURN_NOT_OK(in.Get(&delta));
  CRM_RETURN_NOT_OK(in.Get(&prior_weight));
  CRM_RETURN_NOT_OK(in.Get(&count));
  if (d < 1 || d > kMaxDimension || !(lambda > 0.0 && lambda <= 1.0) || !(delta > 0.0) ||
      !std::isfinite(delta) || !(prior_weight >= 0.0 && prior_weight <= delta)) {
    return Status::Corruption("RecursiveLeastSquares blob has invalid parameters");
  }
  RecursiveLeastSquares model(d, lambda, delta);
  std::vector<double> r;
  CRM_RETURN_NOT_OK(in.GetArray(&r, model.r_.size()));
  if (r.size() != model.r_.size()) {
    return Status::Corruption("RecursiveLeastSquares blob has a factor of the wrong size");
  }
  for (double v : r) {
    if (!std::isfinite(v)) return Status::Corruption("RecursiveLeastSquares factor not finite");
  }
  CRM_ASSIGN_OR_RETURN(model.rmse_, Rmse::ReadFrom(in));
  CRM_RETURN_NOT_OK(in.ExpectEnd());
  model.r_ = std::move(r);
  model.prior_weight_ = prior_weight;
  model.count_ = count;
  model.coefficients_valid_ = false;
  return model;
}

}  // namespace crmstream::models
