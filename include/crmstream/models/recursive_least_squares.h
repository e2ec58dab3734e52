// Recursive least squares for continuous targets (next-period spend, customer
// value), exact and online.
//
// The model minimises
//     sum_i lambda^(n-i) (y_i - w'x_i)^2  +  lambda^n * delta * ||w||^2
// over the n rows seen so far: with lambda = 1 this is batch ridge regression,
// and the coefficients equal a batch solve to ~1e-12 relative even with
// nearly collinear columns. It is a square-root (QR) RLS: the state is the
// upper-triangular Cholesky factor R of the augmented Gram matrix
// [X y]'[X y] + delta*I, and each row is folded in by d+1 Givens rotations in
// O(d^2) with no heap allocation. The factor is never squared, so precision
// follows cond(X), not cond(X'X) as the textbook P-matrix recursion does.
// Forgetting multiplies R by sqrt(lambda) inside the same rotations.
//
// Coefficients are obtained by back substitution, O(d^2), cached until the
// next update. Each Update first records the a-priori error (prediction with
// the coefficients before the row) in a prequential RMSE, read off the
// rotations at no extra cost.
//
// Merge is exact: the factors are stacked and re-triangularised, and the
// second ridge prior is removed by a Cholesky downdate, so two instances that
// saw disjoint rows give the model of one instance that saw all of them (with
// forgetting, both streams are taken to end now).
//
// Thread-safety: none. Const methods read and may fill the coefficient cache,
// so an instance must not be shared between threads without external locking.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "crmstream/common/status.h"
#include "crmstream/models/prequential_metrics.h"

namespace crmstream::models {

struct RecursiveLeastSquaresOptions {
  // Number of features (the caller appends a constant 1 for an intercept).
  // Required, >= 1, <= 4096.
  int dimension = 0;
  // Forgetting factor lambda in (0, 1]; 1 keeps every row with equal weight.
  // The effective memory is about 1 / (1 - lambda) rows.
  double forgetting_factor = 1.0;
  // Ridge penalty delta > 0 (the classic P0 = I / delta start).
  double ridge = 1e-6;
};

class RecursiveLeastSquares {
 public:
  static constexpr uint16_t kBlobVersion = 1;
  static constexpr bool kExactMerge = true;

  // InvalidArgument naming the field when the options are out of range.
  static Result<RecursiveLeastSquares> Create(const RecursiveLeastSquaresOptions& options);

  // Folds one row in. x.size() must equal dimension() (checked by assert:
  // a programmer error). Returns the a-priori prediction w'x made before the
  // update. A row with a non-finite value is skipped (returns NaN) so one bad
  // event cannot poison the state.
  double Update(std::span<const double> x, double y);
  // Rows in row-major order, rows.size() == ys.size() * dimension().
  void UpdateBatch(std::span<const double> rows, std::span<const double> ys);

  // w'x with the current coefficients.
  double Predict(std::span<const double> x) const;
  // The current coefficients (dimension() values), valid until the next
  // non-const call.
  std::span<const double> Coefficients() const;

  // The minimised objective: weighted sum of squared residuals of the
  // current fit plus its ridge penalty (the last diagonal entry of R, squared).
  double MinimisedObjective() const;

  int dimension() const { return d_; }
  double forgetting_factor() const { return lambda_; }
  double ridge() const { return delta_; }
  uint64_t count() const { return count_; }
  // Prequential (a-priori) RMSE over every update.
  const Rmse& prequential_rmse() const { return rmse_; }

  // InvalidArgument if the dimension, forgetting factor or ridge differ.
  Status Merge(const RecursiveLeastSquares& other);

  std::string Serialize() const;
  // Corruption on a truncated, damaged or foreign blob.
  static Result<RecursiveLeastSquares> Deserialize(std::string_view blob);

 private:
  RecursiveLeastSquares(int d, double lambda, double delta);
  // Index of R(i, j), j >= i, in the packed row-major upper triangle of the
  // (d+1) x (d+1) augmented factor.
  size_t At(int i, int j) const { return row_start_[i] + static_cast<size_t>(j - i); }
  // Rotates `row` (d+1 values, consumed) into R from column `first` on, with
  // R scaled by `scale` first. Returns the product of the cosines.
  double RotateIn(double* row, int first, double scale);
  void SolveCoefficients() const;
  // Removes the row sqrt(weight) * e_k for every k (the ridge prior) from R.
  Status DowndatePrior(double weight);

  int d_;
  double lambda_;
  double sqrt_lambda_;
  double delta_;
  // delta * lambda^count: the prior's current weight, tracked for Merge.
  double prior_weight_;
  uint64_t count_ = 0;
  std::vector<size_t> row_start_;
  std::vector<double> r_;     // packed upper triangle, (d+1)(d+2)/2 values
  std::vector<double> work_;  // one augmented row, reused by every update
  mutable std::vector<double> coefficients_;
  mutable bool coefficients_valid_ = false;
  Rmse rmse_;
};

}  // namespace crmstream::models
