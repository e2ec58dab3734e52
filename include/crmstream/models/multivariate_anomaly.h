// Streaming anomaly detector for small fixed-dimension vectors, such as a
// customer's recent activity rates. One global model scores every
// customer's vector: Score(x) returns the chi-square probability of x's
// squared Mahalanobis distance under the mean and covariance of the past
// vectors, a score in [0, 1] (near 1 for an outlier), then learns x.
//
// Why it is robust enough for a stream: the covariance is shrunk towards a
// scaled identity (Ledoit-Wolf style, fixed intensity) so that it stays
// invertible with few points or collinear features; and the update is
// winsorised, a point far out (squared distance above the chi-square mean +
// 4 sd) being pulled back onto that radius before it is learned, so that a
// burst of outliers does not inflate the covariance that should flag them.
//
// Statistics are Welford sums (count, mean, scatter matrix), so Merge()
// combines two instances exactly (Chan et al.'s parallel update). The
// Cholesky factor used for scoring is refreshed every `refresh_interval`
// updates. Memory is O(dim^2), allocated at construction; Score() does not
// allocate. Not thread-safe.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "crmstream/common/status.h"

namespace crmstream::models {

class MultivariateAnomalyDetector {
 public:
  struct Options {
    uint32_t dim = 4;                // vector length, 1..64
    double shrinkage = 0.1;          // weight of the scaled identity, in [0, 1)
    uint32_t warmup = 0;             // points scored 0; 0 means 2 * dim + 10
    uint32_t refresh_interval = 16;  // updates between Cholesky refreshes
    Status Validate() const;
  };

  static Result<MultivariateAnomalyDetector> Create(const Options& options);

  // Scores x (x.size() must be dim: a programmer error otherwise, which
  // returns 0 and learns nothing), then learns it. Non-finite inputs score 0
  // and are not learned.
  double Score(std::span<const double> x);
  // The squared Mahalanobis distance behind the latest Score() (0 when it
  // scored 0 for want of data): its magnitude, where the score saturates.
  double last_squared_distance() const { return last_squared_distance_; }

  // Squared Mahalanobis distance of x under the current model, without
  // learning it (for explanations: how far, not just how rare).
  double SquaredDistance(std::span<const double> x);

  // Adds the other instance's statistics; options must match.
  Status Merge(const MultivariateAnomalyDetector& other);

  double count() const { return count_; }
  std::span<const double> mean() const { return mean_; }
  const Options& options() const { return options_; }

  std::string Serialize() const;
  static Result<MultivariateAnomalyDetector> Deserialize(std::string_view blob);

  static constexpr uint16_t kBlobVersion = 1;

 private:
  explicit MultivariateAnomalyDetector(const Options& options);
  void RefreshFactor();
  uint32_t warmup() const;

  Options options_;
  double count_ = 0.0;
  std::vector<double> mean_;     // dim
  std::vector<double> scatter_;  // dim x dim, column-major: sum of (x - mean)(x - mean)^T
  // Lower Cholesky factor of the shrunk covariance as of the last refresh.
  std::vector<double> factor_;
  std::vector<double> scratch_;  // dim
  uint32_t since_refresh_ = 0;
  bool factor_valid_ = false;
  double last_squared_distance_ = 0.0;  // not serialised: a property of the last call
};

// P(chi-square with `dof` degrees of freedom <= x); exposed for tests.
double ChiSquareCdf(double x, uint32_t dof);

// -log10 P(chi-square with `dof` degrees of freedom >= x): how rare x is, in
// decades, computed in log space so that it keeps growing where the CDF has
// rounded to 1 (x = 200 with 4 degrees of freedom gives about 41). 0 for
// x <= 0 or dof 0.
double ChiSquareRarity(double x, uint32_t dof);

}  // namespace crmstream::models
