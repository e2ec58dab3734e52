#include "crmstream/models/multivariate_anomaly.h"

#include <Eigen/Dense>
#include <algorithm>
#include <catch2/catch.hpp>
#include <random>
#include <vector>

#include "crmstream/common/binary_io.h"
#include "support/require_ok.h"

namespace crmstream::models {
namespace {

constexpr uint32_t kDim = 4;

// Correlated activity-like vectors: x = A z with a fixed mixing matrix.
struct CorrelatedSource {
  std::mt19937_64 rng;
  std::normal_distribution<double> gauss{0.0, 1.0};
  Eigen::Matrix4d mix;
  explicit CorrelatedSource(uint32_t seed) : rng(seed) {
    mix << 1.0, 0.0, 0.0, 0.0,  //
        0.9, 0.3, 0.0, 0.0,     //
        0.5, 0.4, 0.5, 0.0,     //
        -0.6, 0.2, 0.1, 0.4;
  }
  Eigen::Vector4d Normal() {
    Eigen::Vector4d z(gauss(rng), gauss(rng), gauss(rng), gauss(rng));
    return mix * z + Eigen::Vector4d(5, 3, 2, 1);
  }
};

// ROC-AUC by ranks (ties count one half), the batch reference.
double Auc(const std::vector<double>& scores, const std::vector<int>& labels) {
  double pos = 0, neg = 0, wins = 0;
  for (size_t i = 0; i < scores.size(); ++i) {
    if (!labels[i]) continue;
    ++pos;
    for (size_t j = 0; j < scores.size(); ++j) {
      if (labels[j]) continue;
      wins += scores[i] > scores[j] ? 1.0 : scores[i] == scores[j] ? 0.5 : 0.0;
    }
  }
  for (int l : labels) neg += !l;
  return wins / (pos * neg);
}

TEST_CASE("Chi-square CDF matches table values", "[models]") {
  // 95% quantiles from standard chi-square tables.
  CHECK(ChiSquareCdf(3.841, 1) == Approx(0.95).margin(2e-4));
  CHECK(ChiSquareCdf(5.991, 2) == Approx(0.95).margin(2e-4));
  CHECK(ChiSquareCdf(7.815, 3) == Approx(0.95).margin(2e-4));
  CHECK(ChiSquareCdf(9.488, 4) == Approx(0.95).margin(2e-4));
  CHECK(ChiSquareCdf(11.070, 5) == Approx(0.95).margin(2e-4));
  CHECK(ChiSquareCdf(0.0, 3) == 0.0);
}

TEST_CASE("Chi-square rarity keeps counting decades where the CDF rounds to 1", "[models]") {
  // Table: the 1 - 1e-6 quantile of chi-square(1) is 4.8916^2 = 23.928.
  CHECK(ChiSquareRarity(23.928, 1) == Approx(6.0).margin(2e-3));
  // Closed forms: dof 2, tail e^{-x/2}; dof 4, tail e^{-x/2} (1 + x/2).
  CHECK(ChiSquareRarity(100.0, 2) == Approx(50.0 / std::log(10.0)).epsilon(1e-12));
  CHECK(ChiSquareRarity(100.0, 4) ==
        Approx((50.0 - std::log(51.0)) / std::log(10.0)).epsilon(1e-12));
  CHECK(ChiSquareRarity(4000.0, 4) ==
        Approx((2000.0 - std::log(2001.0)) / std::log(10.0)).epsilon(1e-12));
  // Where the CDF is still resolved, the same as -log10(1 - CDF).
  for (uint32_t dof : {1u, 3u, 5u}) {
    CHECK(ChiSquareRarity(20.0, dof) ==
          Approx(-std::log10(1.0 - ChiSquareCdf(20.0, dof))).epsilon(1e-6));
  }
  // Far out, odd degrees of freedom (Mills ratio of the normal tail):
  // log P(|Z| > z) ~ -z^2/2 - log(z sqrt(pi/2)), z^2 = 2000.
  const double z = std::sqrt(2000.0);
  CHECK(ChiSquareRarity(2000.0, 1) ==
        Approx((1000.0 + std::log(z * std::sqrt(std::acos(-1.0) / 2.0))) / std::log(10.0))
            .epsilon(1e-5));
  // Continuous across the switch to the asymptotic series, and increasing.
  CHECK(ChiSquareRarity(1199.9, 3) == Approx(ChiSquareRarity(1200.1, 3)).epsilon(1e-3));
  CHECK(ChiSquareRarity(1200.1, 3) > ChiSquareRarity(1199.9, 3));
  CHECK(ChiSquareRarity(0.0, 4) == 0.0);
  CHECK(ChiSquareRarity(-1.0, 4) == 0.0);
}

TEST_CASE("Multivariate detector ranks injected outliers above normal points", "[models]") {
  auto detector = MultivariateAnomalyDetector::Create({.dim = kDim});
  REQUIRE_OK(detector);
  CorrelatedSource source(42);
  std::bernoulli_distribution is_outlier(0.02);
  std::vector<double> scores;
  std::vector<int> labels;
  for (int i = 0; i < 5000; ++i) {
    Eigen::Vector4d x = source.Normal();
    const bool outlier = i >= 500 && is_outlier(source.rng);
    // An outlier breaks the correlation: feature 1 moves 1.5 against feature
    // 0 (5 conditional sd, yet within 1.6 marginal sd of its mean).
    if (outlier) x(1) += x(0) > 5.0 ? -1.5 : 1.5;
    const double s = detector->Score(std::span<const double>(x.data(), kDim));
    REQUIRE(s >= 0.0);
    REQUIRE(s <= 1.0);
    if (i >= 500) {
      scores.push_back(s);
      labels.push_back(outlier);
    }
  }
  REQUIRE(std::count(labels.begin(), labels.end(), 1) > 40);
  CHECK(Auc(scores, labels) > 0.95);
}

// Batch reference: mean and shrunk covariance of all points, Mahalanobis by
// a dense solve.
double BatchSquaredDistance(const std::vector<Eigen::Vector4d>& xs, const Eigen::Vector4d& q,
                            double shrinkage) {
  Eigen::Vector4d mean = Eigen::Vector4d::Zero();
  for (const auto& x : xs) mean += x;
  mean /= static_cast<double>(xs.size());
  Eigen::Matrix4d cov = Eigen::Matrix4d::Zero();
  for (const auto& x : xs) cov += (x - mean) * (x - mean).transpose();
  cov /= static_cast<double>(xs.size() - 1);
  const double scale = cov.trace() / 4.0;
  Eigen::Matrix4d shrunk = (1.0 - shrinkage) * cov;
  shrunk.diagonal().array() += shrinkage * scale;
  return (q - mean).dot(shrunk.fullPivLu().solve(q - mean));
}

TEST_CASE("Multivariate merge equals one model over all points", "[models]") {
  // warmup beyond the data: no winsorising, so the sums are plain Welford.
  MultivariateAnomalyDetector::Options o{.dim = kDim, .shrinkage = 0.1, .warmup = 1000000};
  auto a = MultivariateAnomalyDetector::Create(o);
  auto b = MultivariateAnomalyDetector::Create(o);
  REQUIRE_OK(a);
  REQUIRE_OK(b);
  CorrelatedSource source(5);
  std::vector<Eigen::Vector4d> all;
  for (int i = 0; i < 3000; ++i) {
    all.push_back(source.Normal());
    auto& target = i < 1200 ? *a : *b;
    (void)target.Score(std::span<const double>(all.back().data(), kDim));
  }
  REQUIRE_OK(a->Merge(*b));
  CHECK(a->count() == 3000.0);
  const Eigen::Vector4d query(6.0, 2.0, 2.5, 0.0);
  const double expected = BatchSquaredDistance(all, query, 0.1);
  CHECK(a->SquaredDistance(std::span<const double>(query.data(), kDim)) ==
        Approx(expected).epsilon(1e-9));

  auto other_dim = MultivariateAnomalyDetector::Create({.dim = 3});
  REQUIRE_OK(other_dim);
  CHECK(a->Merge(*other_dim).code() == StatusCode::kInvalidArgument);
}

TEST_CASE("Multivariate blob round-trips exactly and rejects corruption", "[models]") {
  auto detector = MultivariateAnomalyDetector::Create({.dim = kDim});
  REQUIRE_OK(detector);
  CorrelatedSource source(9);
  for (int i = 0; i < 300; ++i) {
    Eigen::Vector4d x = source.Normal();
    (void)detector->Score(std::span<const double>(x.data(), kDim));
  }
  const std::string blob = detector->Serialize();
  auto restored = MultivariateAnomalyDetector::Deserialize(blob);
  REQUIRE_OK(restored);
  CHECK(restored->Serialize() == blob);
  for (int i = 0; i < 200; ++i) {
    Eigen::Vector4d x = source.Normal();
    std::span<const double> s(x.data(), kDim);
    REQUIRE(restored->Score(s) == detector->Score(s));
  }
  for (size_t cut = 0; cut < blob.size(); ++cut) {
    REQUIRE(MultivariateAnomalyDetector::Deserialize(std::string_view(blob).substr(0, cut))
                .status()
                .code() == StatusCode::kCorruption);
  }
  for (size_t pos = 0; pos < blob.size(); ++pos) {
    std::string flipped = blob;
    flipped[pos] = static_cast<char>(flipped[pos] ^ 0x21);
    REQUIRE(MultivariateAnomalyDetector::Deserialize(flipped).status().code() ==
            StatusCode::kCorruption);
  }
  CHECK(MultivariateAnomalyDetector::Deserialize(SealBlob(BlobKind::kUnivariateAnomaly, 1, ""))
            .status()
            .code() == StatusCode::kCorruption);
  CHECK(MultivariateAnomalyDetector::Deserialize(
            SealBlob(BlobKind::kMultivariateAnomaly, 1, std::string(24, '\0')))
            .status()
            .code() == StatusCode::kCorruption);
}

}  // namespace
}  // namespace crmstream::models
