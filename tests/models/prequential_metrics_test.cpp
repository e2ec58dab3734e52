#include "crmstream/models/prequential_metrics.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <random>
#include <utility>
#include <vector>

#include "support/require_ok.h"

namespace crmstream::models {
namespace {

// Independent reference: the Mann-Whitney statistic from average ranks,
// O(n log n), ties given their mean rank.
double RankAuc(std::vector<std::pair<double, bool>> scored) {
  std::sort(scored.begin(), scored.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  long double rank_sum_pos = 0;
  uint64_t pos = 0, neg = 0;
  size_t i = 0;
  while (i < scored.size()) {
    size_t j = i;
    while (j < scored.size() && scored[j].first == scored[i].first) ++j;
    const long double mean_rank = (static_cast<long double>(i + 1) + j) / 2.0L;
    for (size_t k = i; k < j; ++k) {
      if (scored[k].second) {
        rank_sum_pos += mean_rank;
        ++pos;
      } else {
        ++neg;
      }
    }
    i = j;
  }
  const long double u = rank_sum_pos - static_cast<long double>(pos) * (pos + 1) / 2.0L;
  return static_cast<double>(u / (static_cast<long double>(pos) * neg));
}

TEST_CASE("StreamingAuc equals the rank formula on scores with ties", "[models]") {
  std::mt19937_64 rng(7);
  std::uniform_int_distribution<int> grid(0, 200);  // heavy ties
  std::bernoulli_distribution coin(0.3);
  StreamingAuc auc(1000);  // grid points k/200 fall on distinct bins
  std::vector<std::pair<double, bool>> seen;
  for (int i = 0; i < 20000; ++i) {
    const bool label = coin(rng);
    // Informative but noisy: positives skew high.
    int g = grid(rng);
    if (label) g = std::min(200, g + 30);
    const double score = g / 200.0;
    auc.Add(score, label);
    seen.emplace_back(score, label);
    if (i % 2500 == 2499) {
      CHECK(auc.Value() == Approx(RankAuc(seen)).margin(1e-12));
    }
  }
  CHECK(auc.positives() + auc.negatives() == 20000);
  CHECK(auc.Value() > 0.55);
}

TEST_CASE("StreamingAuc on continuous scores is within its documented resolution", "[models]") {
  std::mt19937_64 rng(11);
  std::normal_distribution<double> noise(0.0, 1.0);
  std::bernoulli_distribution coin(0.25);
  StreamingAuc auc;  // default 2^14 bins on [0, 1]
  std::vector<std::pair<double, bool>> seen;
  for (int i = 0; i < 50000; ++i) {
    const bool label = coin(rng);
    const double logit = (label ? 1.0 : 0.0) + noise(rng);
    const double p = 1.0 / (1.0 + std::exp(-logit));
    auc.Add(p, label);
    seen.emplace_back(p, label);
  }
  // Bayes AUC of two unit-variance normals one s.d. apart: Phi(1/sqrt(2)).
  const double expected = 0.5 * std::erfc(-1.0 / 2.0);
  CHECK(auc.Value() == Approx(RankAuc(seen)).margin(1e-4));
  CHECK(auc.Value() == Approx(expected).margin(0.01));
}

TEST_CASE("StreamingAuc edge cases: one class, all tied, clamping, NaN", "[models]") {
  StreamingAuc auc;
  CHECK(auc.Value() == 0.5);
  auc.Add(0.9, true);
  auc.Add(0.8, true);
  CHECK(auc.Value() == 0.5);
  auc.Add(0.1, false);
  CHECK(auc.Value() == 1.0);
  auc.Add(std::nan(""), false);
  CHECK(auc.negatives() == 1);
  auc.Add(5.0, false);  // clamped to the top bin: above both positives
  CHECK(auc.Value() == 0.5);
  StreamingAuc tied;
  for (int i = 0; i < 10; ++i) tied.Add(0.5, i % 2 == 0);
  CHECK(tied.Value() == 0.5);
}

TEST_CASE("StreamingAuc merge equals one instance over all observations", "[models]") {
  std::mt19937_64 rng(3);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  StreamingAuc a, b, all;
  for (int i = 0; i < 6000; ++i) {
    const bool label = u(rng) < 0.4;
    const double score = std::clamp(u(rng) * 0.8 + (label ? 0.2 : 0.0), 0.0, 1.0);
    (i % 3 == 0 ? a : b).Add(score, label);
    all.Add(score, label);
  }
  REQUIRE_OK(a.Merge(b));
  CHECK(a.Value() == all.Value());
  CHECK(a.positives() == all.positives());
  StreamingAuc other_range(100, 0.0, 2.0);
  CHECK(a.Merge(other_range).code() == StatusCode::kInvalidArgument);
}

TEST_CASE("Metrics round-trip through a blob and reject damaged bytes", "[models]") {
  StreamingAuc auc(256);
  LogLoss ll;
  Rmse rmse;
  std::mt19937_64 rng(5);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  for (int i = 0; i < 500; ++i) {
    const double p = u(rng);
    const bool y = u(rng) < p;
    auc.Add(p, y);
    ll.Add(p, y);
    rmse.Add(p, y ? 1.0 : 0.0);
  }
  std::string payload;
  BinaryWriter w(&payload);
  auc.AppendTo(w);
  ll.AppendTo(w);
  rmse.AppendTo(w);

  BinaryReader r(payload);
  auto auc2 = StreamingAuc::ReadFrom(r);
  REQUIRE_OK(auc2);
  auto ll2 = LogLoss::ReadFrom(r);
  REQUIRE_OK(ll2);
  auto rmse2 = Rmse::ReadFrom(r);
  REQUIRE_OK(rmse2);
  CHECK_OK(r.ExpectEnd());
  CHECK(auc2->Value() == auc.Value());
  CHECK(auc2->positives() == auc.positives());
  CHECK(ll2->Value() == ll.Value());
  CHECK(rmse2->Value() == rmse.Value());

  // Every truncation fails cleanly (no crash, no success with missing state).
  for (size_t cut = 0; cut < payload.size(); ++cut) {
    BinaryReader t(std::string_view(payload).substr(0, cut));
    auto a = StreamingAuc::ReadFrom(t);
    if (!a.ok()) continue;
    auto l = LogLoss::ReadFrom(t);
    if (!l.ok()) continue;
    CHECK_FALSE(Rmse::ReadFrom(t).ok());
  }
}

TEST_CASE("LogLoss and RMSE match hand-computed values", "[models]") {
  LogLoss ll;
  ll.Add(0.8, true);
  ll.Add(0.4, false);
  ll.Add(0.0, true);  // clipped at 1e-15
  CHECK(ll.Value() == Approx((-std::log(0.8) - std::log(0.6) - std::log(1e-15)) / 3.0));
  CHECK(ll.count() == 3);

  Rmse r;
  r.Add(1.0, 2.0);
  r.Add(3.0, 1.0);
  CHECK(r.Value() == Approx(std::sqrt((1.0 + 4.0) / 2.0)));

  // Compensated sum: 1e8 tiny errors on top of one large one survive.
  Rmse big;
  big.Add(1e8, 0.0);
  for (int i = 0; i < 100000; ++i) big.Add(1e-4, 0.0);
  const double expected_mse = (1e16 + 100000 * 1e-8) / 100001.0;
  CHECK(big.MeanSquaredError() == Approx(expected_mse).epsilon(1e-15));

  LogLoss a, b;
  a.Add(0.3, true);
  b.Add(0.9, false);
  REQUIRE_OK(a.Merge(b));
  CHECK(a.Value() == Approx((-std::log(0.3) - std::log(0.1)) / 2.0));
}

}  // namespace
}  // namespace crmstream::models
