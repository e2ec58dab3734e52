#include "crmstream/models/logistic_regression.h"

#include <Eigen/Dense>
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "crmstream/common/binary_io.h"
#include "support/require_ok.h"

namespace crmstream::models {
namespace {

struct Synthetic {
  std::vector<double> w_true;
  double b_true;
  std::mt19937_64 rng;
  std::normal_distribution<double> z{0.0, 1.0};
  std::uniform_real_distribution<double> u{0.0, 1.0};

  // Fills x and returns the label drawn from the true model; *logit gets the
  // true log-odds.
  bool Draw(std::vector<double>& x, double* logit) {
    double t = b_true;
    for (size_t j = 0; j < x.size(); ++j) {
      x[j] = z(rng);
      t += w_true[j] * x[j];
    }
    *logit = t;
    return u(rng) < 1.0 / (1.0 + std::exp(-t));
  }
};

// Independent AUC by the rank formula.
double RankAuc(std::vector<std::pair<double, bool>> s) {
  std::sort(s.begin(), s.end());
  long double rank_pos = 0;
  double pos = 0, neg = 0;
  for (size_t i = 0; i < s.size();) {
    size_t j = i;
    while (j < s.size() && s[j].first == s[i].first) ++j;
    for (size_t k = i; k < j; ++k) {
      if (s[k].second) {
        rank_pos += (i + 1 + j) / 2.0L;
        ++pos;
      } else {
        ++neg;
      }
    }
    i = j;
  }
  return static_cast<double>((rank_pos - pos * (pos + 1) / 2) / (pos * neg));
}

TEST_CASE("FTRL logistic regression recovers known coefficients", "[models]") {
  Synthetic gen{{1.5, -2.0, 0.5, 0.0, 1.0}, -1.0, std::mt19937_64(17)};
  auto lr = LogisticRegression::Create({.dense_dimension = 5, .alpha = 0.1}).value();
  std::vector<double> x(5);
  double logit = 0;
  for (int i = 0; i < 200000; ++i) {
    const bool y = gen.Draw(x, &logit);
    (void)lr.Update(x, y);
  }
  for (int j = 0; j < 5; ++j) {
    INFO("coefficient " << j);
    CHECK(lr.weights()[j] == Approx(gen.w_true[j]).margin(0.05));
  }
  CHECK(lr.intercept() == Approx(gen.b_true).margin(0.06));
  CHECK(lr.count() == 200000);
}

TEST_CASE("FTRL AUC approaches the Bayes-optimal AUC on held-out rows", "[models]") {
  Synthetic gen{{0.8, -0.6, 0.4, 0.3, -0.2, 0.0, 0.0, 0.1}, -1.2, std::mt19937_64(23)};
  auto lr = LogisticRegression::Create({.dense_dimension = 8, .alpha = 0.3, .l2 = 1e-3}).value();
  std::vector<double> x(8);
  double logit = 0;
  for (int i = 0; i < 50000; ++i) {
    const bool y = gen.Draw(x, &logit);
    (void)lr.Update(x, y);
  }
  std::vector<std::pair<double, bool>> model_scores, bayes_scores;
  for (int i = 0; i < 50000; ++i) {
    const bool y = gen.Draw(x, &logit);
    model_scores.emplace_back(lr.PredictLogit(x), y);
    bayes_scores.emplace_back(logit, y);
  }
  const double bayes = RankAuc(bayes_scores);
  const double model = RankAuc(model_scores);
  INFO("Bayes AUC " << bayes << ", model AUC " << model);
  CHECK(model > bayes - 0.003);
  // Prequential AUC includes the early rows, so it sits a little lower.
  CHECK(lr.prequential_auc().Value() > bayes - 0.01);
  CHECK(lr.prequential_log_loss().count() == 50000);
}

// FTRL-Proximal written coordinate by coordinate from McMahan et al. (2013),
// Algorithm 1, with the documented order of operations (the logit's dot
// product in four partial sums, lanes i mod 4, added as ((s0 + s2) + (s1 +
// s3)) and then the tail). The model's vectorised paths must give exactly
// these bits on every CPU.
struct ReferenceFtrl {
  double alpha, beta, l1, l2;
  std::vector<double> z, n, w;  // d + 1, intercept last
  ReferenceFtrl(int d, double alpha, double beta, double l1, double l2)
      : alpha(alpha), beta(beta), l1(l1), l2(l2), z(d + 1), n(d + 1), w(d + 1) {}
  double Logit(const std::vector<double>& x) const {
    const size_t d = x.size();
    double s[4] = {0, 0, 0, 0};
    size_t i = 0;
    for (; i + 4 <= d; i += 4) {
      for (size_t k = 0; k < 4; ++k) s[k] += w[i + k] * x[i + k];
    }
    double sum = (s[0] + s[2]) + (s[1] + s[3]);
    for (; i < d; ++i) sum += w[i] * x[i];
    return w[d] + sum;
  }
  void Coordinate(size_t i, double g, double l1_i, double l2_i) {
    const double inv_alpha = 1.0 / alpha;
    const double n_new = n[i] + g * g;
    const double sigma = (std::sqrt(n_new) - std::sqrt(n[i])) * inv_alpha;
    z[i] = z[i] + (g - sigma * w[i]);
    n[i] = n_new;
    const double shrunk = z[i] - std::min(std::max(-l1_i, z[i]), l1_i);
    w[i] = -shrunk / ((beta + std::sqrt(n[i])) * inv_alpha + l2_i);
  }
  double Update(const std::vector<double>& x, bool label) {
    const double t = std::clamp(Logit(x), -35.0, 35.0);
    const double p = 1.0 / (1.0 + std::exp(-t));
    const double g = p - (label ? 1.0 : 0.0);
    for (size_t i = 0; i < x.size(); ++i) Coordinate(i, g * x[i], l1, l2);
    Coordinate(x.size(), g, 0.0, 0.0);
    return p;
  }
};

TEST_CASE("FTRL update equals the coordinate-wise algorithm bit for bit", "[models]") {
  // d = 51: blocks of four and of two, and a last single coordinate.
  for (int d : {1, 2, 7, 51}) {
    auto model =
        LogisticRegression::Create({.dense_dimension = d, .alpha = 0.2, .l1 = 0.01, .l2 = 0.5});
    REQUIRE_OK(model);
    ReferenceFtrl reference(d, 0.2, 1.0, 0.01, 0.5);
    std::mt19937_64 rng(static_cast<uint64_t>(d));
    std::normal_distribution<double> z(0.0, 1.0);
    std::vector<double> x(static_cast<size_t>(d));
    for (int row = 0; row < 3000; ++row) {
      double t = 0.0;
      for (int j = 0; j < d; ++j) {
        x[static_cast<size_t>(j)] = (row + j) % 5 == 0 ? 0.0 : z(rng);  // some zero features
        t += (j % 3 - 1) * x[static_cast<size_t>(j)];
      }
      const bool label = t + z(rng) > 0.0;
      const double expected = reference.Update(x, label);
      REQUIRE(model->Update(x, label) == expected);
    }
    for (int j = 0; j < d; ++j) {
      REQUIRE(model->weights()[static_cast<size_t>(j)] == reference.w[static_cast<size_t>(j)]);
    }
    REQUIRE(model->intercept() == reference.w[static_cast<size_t>(d)]);
  }
}

TEST_CASE("Hashed sparse features learn category effects", "[models]") {
  const uint32_t buckets = 1 << 12;
  auto lr =
      LogisticRegression::Create({.dense_dimension = 1, .hashed_dimension = buckets, .alpha = 0.3})
          .value();
  std::mt19937_64 rng(4);
  std::uniform_int_distribution<int> city(0, 9);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  const double effect[10] = {-2, -1.5, -1, -0.5, 0, 0, 0.5, 1, 1.5, 2};
  std::vector<double> x(1);
  for (int i = 0; i < 60000; ++i) {
    const int c = city(rng);
    x[0] = u(rng);
    const SparseFeature f{LogisticRegression::HashedIndex("city=" + std::to_string(c), buckets),
                          1.0};
    const bool y = u(rng) < 1.0 / (1.0 + std::exp(-(effect[c] + x[0])));
    (void)lr.Update(x, std::span<const SparseFeature>(&f, 1), y);
  }
  // Each city's logit, relative to city 4, matches its true effect.
  x[0] = 0.5;
  const auto city_logit = [&](int c) {
    const SparseFeature f{LogisticRegression::HashedIndex("city=" + std::to_string(c), buckets),
                          1.0};
    return lr.PredictLogit(x, std::span<const SparseFeature>(&f, 1));
  };
  for (int c : {0, 2, 7, 9}) {
    INFO("city " << c);
    CHECK(city_logit(c) - city_logit(4) == Approx(effect[c]).margin(0.15));
  }
}

TEST_CASE("Contributions sum to the logit minus the intercept, largest first", "[models]") {
  Synthetic gen{{1.0, -3.0, 0.2, 2.0}, 0.5, std::mt19937_64(8)};
  auto lr = LogisticRegression::Create({.dense_dimension = 4, .hashed_dimension = 64}).value();
  std::vector<double> x(4);
  double logit = 0;
  const SparseFeature sparse[] = {{3, 1.0}, {70, 0.5}};  // 70 wraps to bucket 6
  for (int i = 0; i < 5000; ++i) {
    const bool y = gen.Draw(x, &logit);
    (void)lr.Update(x, sparse, y);
  }
  x = {0.3, 0.9, -1.2, 0.7};
  std::vector<FeatureContribution> all, top;
  lr.TopContributions(x, sparse, 100, &all);
  double sum = 0;
  for (const auto& c : all) sum += c.contribution;
  CHECK(sum == Approx(lr.PredictLogit(x, sparse) - lr.intercept()).margin(1e-12));
  REQUIRE(all.size() >= 4);
  CHECK(all[0].feature == 1);  // -3.0 * 0.9 dominates
  CHECK_FALSE(all[0].hashed);
  CHECK(all[0].contribution == Approx(lr.weights()[1] * 0.9));
  for (size_t i = 1; i < all.size(); ++i) {
    CHECK(std::fabs(all[i - 1].contribution) >= std::fabs(all[i].contribution));
  }
  lr.TopContributions(x, sparse, 2, &top);
  REQUIRE(top.size() == 2);
  CHECK(top[0].feature == all[0].feature);
  CHECK(top[1].feature == all[1].feature);
}

TEST_CASE("Logistic merge averages state and rejects mismatched options", "[models]") {
  Synthetic gen{{1.0, -1.0}, 0.0, std::mt19937_64(2)};
  auto a = LogisticRegression::Create({.dense_dimension = 2}).value();
  std::vector<double> x(2);
  double logit = 0;
  for (int i = 0; i < 3000; ++i) (void)a.Update(x, gen.Draw(x, &logit));
  auto copy = LogisticRegression::Deserialize(a.Serialize()).value();
  const std::vector<double> before(a.weights().begin(), a.weights().end());
  REQUIRE_OK(a.Merge(copy));
  // Averaging two identical states is the identity on the weights.
  CHECK(a.weights()[0] == Approx(before[0]).epsilon(1e-12));
  CHECK(a.weights()[1] == Approx(before[1]).epsilon(1e-12));
  CHECK(a.count() == 6000);
  CHECK(a.prequential_log_loss().count() == 6000);
  auto other = LogisticRegression::Create({.dense_dimension = 2, .alpha = 0.2}).value();
  CHECK(a.Merge(other).code() == StatusCode::kInvalidArgument);
  CHECK(LogisticRegression::Create({.dense_dimension = 2, .alpha = 0.0}).status().code() ==
        StatusCode::kInvalidArgument);
}

TEST_CASE("Logistic blob round-trips exactly and rejects damage", "[models]") {
  Synthetic gen{{1.0, -1.0, 0.5}, 0.2, std::mt19937_64(6)};
  auto lr = LogisticRegression::Create(
                {.dense_dimension = 3, .hashed_dimension = 8, .l1 = 0.01, .auc_bins = 64})
                .value();
  std::vector<double> x(3);
  double logit = 0;
  const SparseFeature f[] = {{5, 1.0}};
  for (int i = 0; i < 400; ++i) (void)lr.Update(x, f, gen.Draw(x, &logit));
  const std::string blob = lr.Serialize();
  auto back = LogisticRegression::Deserialize(blob);
  REQUIRE_OK(back);
  CHECK(back->Serialize() == blob);
  CHECK(back->PredictLogit(x, f) == lr.PredictLogit(x, f));
  CHECK(back->prequential_auc().Value() == lr.prequential_auc().Value());
  // Training continues identically after a restore.
  (void)lr.Update(x, f, true);
  (void)back->Update(x, f, true);
  CHECK(back->Serialize() == lr.Serialize());

  for (size_t cut = 0; cut < blob.size(); ++cut) {
    CHECK(LogisticRegression::Deserialize(std::string_view(blob).substr(0, cut)).status().code() ==
          StatusCode::kCorruption);
  }
  for (size_t pos = 0; pos < blob.size(); ++pos) {
    std::string damaged = blob;
    damaged[pos] = static_cast<char>(damaged[pos] ^ 0x3C);
    CHECK(LogisticRegression::Deserialize(damaged).status().code() == StatusCode::kCorruption);
  }
  CHECK_FALSE(LogisticRegression::Deserialize(SealBlob(BlobKind::kLogisticRegression, 1, "")).ok());
  CHECK_FALSE(LogisticRegression::Deserialize(SealBlob(BlobKind::kMiniBatchKMeans, 1, "")).ok());
}

}  // namespace
}  // namespace crmstream::models

namespace crmstream::models {
namespace {

// Batch MAP of ridge-logistic regression by Newton's method, the reference
// for the one-pass Bayesian learner.
std::vector<double> BatchMap(const std::vector<std::vector<double>>& xs,
                             const std::vector<bool>& ys, double prior_var, double icpt_var) {
  const int n = static_cast<int>(xs[0].size()) + 1;
  Eigen::VectorXd w = Eigen::VectorXd::Zero(n);
  for (int iter = 0; iter < 30; ++iter) {
    Eigen::MatrixXd h = Eigen::MatrixXd::Zero(n, n);
    Eigen::VectorXd g = Eigen::VectorXd::Zero(n);
    for (int i = 0; i < n - 1; ++i) {
      h(i, i) = 1.0 / prior_var;
      g(i) = w(i) / prior_var;
    }
    h(n - 1, n - 1) = 1.0 / icpt_var;
    g(n - 1) = w(n - 1) / icpt_var;
    Eigen::VectorXd x(n);
    for (size_t r = 0; r < xs.size(); ++r) {
      for (int i = 0; i < n - 1; ++i) x(i) = xs[r][i];
      x(n - 1) = 1.0;
      const double p = 1.0 / (1.0 + std::exp(-w.dot(x)));
      g += (p - (ys[r] ? 1.0 : 0.0)) * x;
      h += p * (1 - p) * x * x.transpose();
    }
    w -= h.ldlt().solve(g);
  }
  return std::vector<double>(w.data(), w.data() + n);
}

TEST_CASE("Bayesian logistic regression tracks the batch MAP in one pass", "[models]") {
  Synthetic gen{{1.2, -0.8, 0.5, 0.0, -1.5, 0.3}, -0.7, std::mt19937_64(31)};
  auto model = BayesianLogisticRegression::Create({.dimension = 6, .prior_variance = 1.0}).value();
  std::vector<std::vector<double>> xs;
  std::vector<bool> ys;
  std::vector<double> x(6);
  double logit = 0;
  for (int i = 0; i < 20000; ++i) {
    const bool y = gen.Draw(x, &logit);
    // The moderated prediction (x' C x from C's upper triangle) is the one
    // the update computes with the whole covariance before it learns.
    const double predicted = model.PredictProbability(x);
    const double before_update = model.Update(x, y);
    if (i % 1000 == 0) {
      INFO("update " << i);
      CHECK(predicted == Approx(before_update).epsilon(1e-12));
    }
    xs.push_back(x);
    ys.push_back(y);
  }
  const auto map = BatchMap(xs, ys, 1.0, 10.0);
  for (int j = 0; j < 6; ++j) {
    INFO("weight " << j);
    CHECK(model.weights()[j] == Approx(map[j]).margin(0.02));
  }
  CHECK(model.intercept() == Approx(map[6]).margin(0.02));
  // The posterior variance shrinks like 1 / (n * Fisher information).
  CHECK(model.weight_variance(0) < 1e-3);
  CHECK(model.count() == 20000);

  std::vector<FeatureContribution> all;
  model.TopContributions(x, 10, &all);
  double sum = 0;
  for (const auto& c : all) sum += c.contribution;
  CHECK(sum == Approx(model.PredictMeanLogit(x) - model.intercept()).margin(1e-12));
  // Moderation only pulls the logit towards 0.
  CHECK(std::fabs(model.PredictLogit(x)) <= std::fabs(model.PredictMeanLogit(x)));
}

TEST_CASE("Bayesian logistic merge combines shards' posteriors", "[models]") {
  Synthetic gen{{1.0, -1.0, 0.5}, 0.3, std::mt19937_64(12)};
  const BayesianLogisticRegressionOptions options{.dimension = 3, .prior_variance = 1.0};
  auto a = BayesianLogisticRegression::Create(options).value();
  auto b = BayesianLogisticRegression::Create(options).value();
  auto all = BayesianLogisticRegression::Create(options).value();
  std::vector<double> x(3);
  double logit = 0;
  for (int i = 0; i < 20000; ++i) {
    const bool y = gen.Draw(x, &logit);
    (i % 2 == 0 ? a : b).Update(x, y);
    (void)all.Update(x, y);
  }
  REQUIRE_OK(a.Merge(b));
  for (int j = 0; j < 3; ++j) CHECK(a.weights()[j] == Approx(all.weights()[j]).margin(0.01));
  CHECK(a.weight_variance(1) == Approx(all.weight_variance(1)).epsilon(0.05));
  CHECK(a.count() == 20000);
  auto other = BayesianLogisticRegression::Create({.dimension = 3, .prior_variance = 2.0}).value();
  CHECK(a.Merge(other).code() == StatusCode::kInvalidArgument);
}

TEST_CASE("Bayesian logistic blob round-trips exactly and rejects damage", "[models]") {
  Synthetic gen{{1.0, -1.0}, 0.3, std::mt19937_64(13)};
  auto model = BayesianLogisticRegression::Create({.dimension = 2, .auc_bins = 32}).value();
  std::vector<double> x(2);
  double logit = 0;
  for (int i = 0; i < 300; ++i) (void)model.Update(x, gen.Draw(x, &logit));
  const std::string blob = model.Serialize();
  auto back = BayesianLogisticRegression::Deserialize(blob);
  REQUIRE_OK(back);
  CHECK(back->Serialize() == blob);
  CHECK(back->PredictLogit(x) == model.PredictLogit(x));
  (void)model.Update(x, true);
  (void)back->Update(x, true);
  CHECK(back->Serialize() == model.Serialize());
  for (size_t cut = 0; cut < blob.size(); ++cut) {
    CHECK(BayesianLogisticRegression::Deserialize(std::string_view(blob).substr(0, cut))
              .status()
              .code() == StatusCode::kCorruption);
  }
  for (size_t pos = 0; pos < blob.size(); ++pos) {
    std::string damaged = blob;
    damaged[pos] = static_cast<char>(damaged[pos] ^ 0x11);
    CHECK(BayesianLogisticRegression::Deserialize(damaged).status().code() ==
          StatusCode::kCorruption);
  }
  // The two logistic learners never read each other's blobs.
  auto ftrl = LogisticRegression::Create({.dense_dimension = 2}).value();
  CHECK(BayesianLogisticRegression::Deserialize(ftrl.Serialize()).status().code() ==
        StatusCode::kCorruption);
  CHECK(LogisticRegression::Deserialize(blob).status().code() == StatusCode::kCorruption);
}

}  // namespace
}  // namespace crmstream::models
