// The sufficient statistics partitions exchange for the global models: the
// merge of k disjoint parts, each sent through its encoding, against a batch
// computation over the whole computed here (exact models), or against the
// model one learner builds over the whole (approximate ones).
#include "crmstream/scoring/model_statistics.h"

#include <Eigen/Dense>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "crmstream/models/mini_batch_kmeans.h"
#include "support/require_ok.h"

namespace crmstream::scoring {
namespace {

constexpr int kDim = 5;
constexpr int64_t kMinute = 60'000;
constexpr int64_t kStart = 1'700'000'006'400'000;

struct Row {
  std::vector<double> x;
  double y = 0.0;
};

std::vector<Row> RegressionRows(int n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> z(0.0, 1.0);
  const std::vector<double> w = {1.5, -2.0, 0.25, 3.0, 7.0};
  std::vector<Row> rows(static_cast<size_t>(n));
  for (Row& r : rows) {
    r.x = {1e3 + 40.0 * z(rng), z(rng), 5.0 * z(rng), z(rng) * z(rng), 1.0};
    for (int j = 0; j < kDim; ++j) r.y += w[static_cast<size_t>(j)] * r.x[static_cast<size_t>(j)];
    r.y += 0.5 * z(rng);
  }
  return rows;
}

// Sends a part's statistics through the wire format.
ModelStatistics RoundTrip(const ModelStatistics& s) {
  std::string blob;
  s.Encode(&blob);
  auto back = ModelStatistics::Decode(blob);
  REQUIRE_OK(back);
  return std::move(back).value();
}

double Relative(double got, double want) {
  return std::abs(got - want) / std::max(1.0, std::abs(want));
}

// A part's minutes: sums per minute of its events over [first, last].
struct MinuteEvent {
  int64_t minute = 0;  // index from kStart
  double revenue = 0.0, tickets = 0.0, logins = 0.0;
};

TEST_CASE("Merged statistics of disjoint parts equal a batch computation over the whole",
          "[scoring][model_sync]") {
  const double lambda = GENERATE(1.0, 0.999);
  const double ridge = 1e-3;
  const std::vector<Row> rows = RegressionRows(4000, 17);
  // Four disjoint parts of unequal sizes, as partitions are.
  const std::vector<size_t> cuts = {0, 700, 1900, 2300, rows.size()};
  const size_t parts = cuts.size() - 1;

  // Each part's minutes: a contiguous range of minutes, partly overlapping
  // the others'; the minutes all of them hold are [30, 89].
  std::mt19937_64 rng(5);
  std::uniform_real_distribution<double> u(0.0, 100.0);
  const std::vector<std::pair<int64_t, int64_t>> ranges = {{0, 89}, {30, 120}, {10, 95}, {20, 89}};
  std::vector<std::vector<MinuteEvent>> part_minutes(parts);
  for (size_t p = 0; p < parts; ++p) {
    for (int64_t m = ranges[p].first; m <= ranges[p].second; ++m) {
      part_minutes[p].push_back({m, u(rng) * (1.0 + 1e-2 * static_cast<double>(m)),
                                 std::floor(u(rng) / 10.0), std::floor(u(rng))});
    }
  }

  ModelStatistics merged;
  for (size_t p = 0; p < parts; ++p) {
    ModelStatistics s;
    s.parts = 1;
    auto rls = models::RecursiveLeastSquares::Create(
        {.dimension = kDim, .forgetting_factor = lambda, .ridge = ridge});
    REQUIRE_OK(rls);
    auto standardizer = models::Standardizer::Create(kDim);
    REQUIRE_OK(standardizer);
    for (size_t i = cuts[p]; i < cuts[p + 1]; ++i) {
      (void)rls->Update(rows[i].x, rows[i].y);
      standardizer->Update(rows[i].x);
    }
    s.value.emplace(std::move(rls).value());
    s.churn_features.emplace(std::move(standardizer).value());
    models::RollingCorrelationOptions window_options;
    window_options.window_rows = 1000;
    auto window = models::RollingCorrelation::Create(window_options);
    REQUIRE_OK(window);
    for (const MinuteEvent& m : part_minutes[p]) {
      const std::vector<double> v = {m.revenue, m.tickets, m.logins};
      REQUIRE_OK(window->Add(v, kStart + m.minute * kMinute));
      s.minutes.push_back({kStart + m.minute * kMinute, m.revenue, m.tickets, m.logins});
    }
    s.minutes_closed = part_minutes[p].size();
    s.covered_from_ms = s.minutes.front().minute_start_ms;
    s.complete_through_ms = s.minutes.back().minute_start_ms;
    s.minute_moments = window->Moments();
    REQUIRE_OK(merged.Merge(RoundTrip(s)));
  }
  REQUIRE(merged.parts == parts);

  SECTION("spend regression: weighted ridge least squares over all rows") {
    // Minimises sum over parts of lambda^(n_p - 1 - i) (y_i - w'x_i)^2 (each
    // part's rows end now) plus the first part's prior ridge * lambda^(n_1)
    // ||w||^2: solved by QR of the stacked, weighted rows (the normal
    // equations would lose digits to cond(X'X) here).
    const Eigen::Index n_rows = static_cast<Eigen::Index>(rows.size());
    Eigen::MatrixXd a = Eigen::MatrixXd::Zero(n_rows + kDim, kDim);
    Eigen::VectorXd b = Eigen::VectorXd::Zero(n_rows + kDim);
    for (size_t p = 0; p < parts; ++p) {
      const size_t n = cuts[p + 1] - cuts[p];
      for (size_t i = cuts[p]; i < cuts[p + 1]; ++i) {
        const double sw = std::sqrt(std::pow(lambda, static_cast<double>(n - 1 - (i - cuts[p]))));
        const auto r = static_cast<Eigen::Index>(i);
        for (int j = 0; j < kDim; ++j) a(r, j) = sw * rows[i].x[static_cast<size_t>(j)];
        b(r) = sw * rows[i].y;
      }
    }
    const double prior = ridge * std::pow(lambda, static_cast<double>(cuts[1] - cuts[0]));
    for (int j = 0; j < kDim; ++j) a(n_rows + j, j) = std::sqrt(prior);
    const Eigen::VectorXd want = a.colPivHouseholderQr().solve(b);
    REQUIRE(merged.value.has_value());
    CHECK(merged.value->count() == rows.size());
    const std::span<const double> got = merged.value->Coefficients();
    for (int j = 0; j < kDim; ++j) CHECK(Relative(got[static_cast<size_t>(j)], want(j)) < 1e-9);
  }

  SECTION("feature standardisation: two-pass means and variances") {
    REQUIRE(merged.churn_features.has_value());
    for (int j = 0; j < kDim; ++j) {
      double mean = 0.0;
      for (const Row& r : rows) mean += r.x[static_cast<size_t>(j)];
      mean /= static_cast<double>(rows.size());
      double ss = 0.0;
      for (const Row& r : rows) ss += std::pow(r.x[static_cast<size_t>(j)] - mean, 2);
      CHECK(merged.churn_features->count(j) == rows.size());
      CHECK(Relative(merged.churn_features->mean(j), mean) < 1e-9);
      CHECK(Relative(merged.churn_features->variance(j), ss / static_cast<double>(rows.size())) <
            1e-9);
    }
  }

  SECTION("minute metrics: sums per minute over the minutes every part holds") {
    std::map<int64_t, std::array<double, 3>> want;
    for (const auto& part : part_minutes) {
      for (const MinuteEvent& m : part) {
        if (m.minute < 30 || m.minute > 89) continue;
        auto& sums = want[kStart + m.minute * kMinute];
        sums[0] += m.revenue;
        sums[1] += m.tickets;
        sums[2] += m.logins;
      }
    }
    CHECK(merged.covered_from_ms == kStart + 30 * kMinute);
    CHECK(merged.complete_through_ms == kStart + 89 * kMinute);
    REQUIRE(merged.minutes.size() == want.size());
    size_t i = 0;
    for (const auto& [start, sums] : want) {
      const MinuteSums& got = merged.minutes[i++];
      CHECK(got.minute_start_ms == start);
      CHECK(Relative(got.revenue, sums[0]) < 1e-12);
      CHECK(got.tickets == sums[1]);
      CHECK(got.logins == sums[2]);
    }
    uint64_t closed = 0;
    for (const auto& part : part_minutes) closed += part.size();
    CHECK(merged.minutes_closed == closed);

    // The correlation of the merged series, against one computed here.
    std::vector<std::array<double, 3>> series;
    for (const auto& [start, sums] : want) series.push_back(sums);
    for (int a = 0; a < 3; ++a) {
      for (int c = 0; c < 3; ++c) {
        double ma = 0, mc = 0;
        for (const auto& s : series) ma += s[a], mc += s[c];
        ma /= static_cast<double>(series.size());
        mc /= static_cast<double>(series.size());
        double sac = 0, saa = 0, scc = 0;
        for (const auto& s : series) {
          sac += (s[a] - ma) * (s[c] - mc);
          saa += (s[a] - ma) * (s[a] - ma);
          scc += (s[c] - mc) * (s[c] - mc);
        }
        CHECK(std::abs(merged.MinuteCorrelation(a, c) - sac / std::sqrt(saa * scc)) < 1e-12);
      }
    }
  }

  SECTION("correlation moments: pooled over every part's minutes, two-pass") {
    std::vector<std::array<double, 3>> pooled;
    for (const auto& part : part_minutes) {
      for (const MinuteEvent& m : part) pooled.push_back({m.revenue, m.tickets, m.logins});
    }
    const double n = static_cast<double>(pooled.size());
    REQUIRE(merged.minute_moments.count == static_cast<int64_t>(pooled.size()));
    std::array<double, 3> mean{};
    for (const auto& r : pooled) {
      for (int a = 0; a < 3; ++a) mean[a] += r[a] / n;
    }
    for (int a = 0; a < 3; ++a) {
      CHECK(Relative(merged.minute_moments.Mean(a), mean[a]) < 1e-12);
      for (int c = 0; c < 3; ++c) {
        double cm = 0.0;
        for (const auto& r : pooled) cm += (r[a] - mean[a]) * (r[c] - mean[c]);
        CHECK(Relative(merged.minute_moments.comoment[static_cast<size_t>(a * 3 + c)], cm) < 1e-10);
      }
    }
  }
}

TEST_CASE("Statistics of mismatched models refuse to merge and leave the target unchanged",
          "[scoring][model_sync]") {
  ModelStatistics a;
  a.parts = 1;
  a.value.emplace(models::RecursiveLeastSquares::Create({.dimension = 3}).value());
  a.minutes = {{kStart, 1.0, 2.0, 3.0}};
  a.covered_from_ms = a.complete_through_ms = kStart;
  ModelStatistics b = a;
  b.value.emplace(models::RecursiveLeastSquares::Create({.dimension = 4}).value());
  std::string before;
  a.Encode(&before);
  CHECK(a.Merge(b).code() == StatusCode::kInvalidArgument);
  std::string after;
  a.Encode(&after);
  CHECK(after == before);
}

TEST_CASE("A damaged or truncated statistics blob is refused", "[scoring][model_sync]") {
  ModelStatistics s;
  s.parts = 2;
  s.minutes = {{kStart, 1.0, 2.0, 3.0}, {kStart + kMinute, 4.0, 5.0, 6.0}};
  s.covered_from_ms = kStart;
  s.complete_through_ms = kStart + kMinute;
  s.value.emplace(models::RecursiveLeastSquares::Create({.dimension = 2}).value());
  s.segments = {2, {0, 0, 0, 0, 1, 1, 1, 1}, {3.0, 4.0}, {10, 20}};
  std::string blob;
  s.Encode(&blob);
  REQUIRE_OK(ModelStatistics::Decode(blob));
  for (size_t cut = 0; cut < blob.size(); ++cut) {
    CHECK(ModelStatistics::Decode(std::string_view(blob).substr(0, cut)).status().code() ==
          StatusCode::kCorruption);
  }
  // A centre that is not finite would break the centres' pairing.
  ModelStatistics bad = s;
  bad.segments.centres[5] = std::nan("");
  std::string bad_blob;
  bad.Encode(&bad_blob);
  CHECK(ModelStatistics::Decode(bad_blob).status().code() == StatusCode::kCorruption);
  bad = s;
  bad.segments.counts[1] = -1.0;
  bad.Encode(&bad_blob);
  CHECK(ModelStatistics::Decode(bad_blob).status().code() == StatusCode::kCorruption);
  for (size_t pos = 0; pos < blob.size(); pos += 3) {
    std::string damaged = blob;
    damaged[pos] = static_cast<char>(damaged[pos] ^ 0x21);
    CHECK(!ModelStatistics::Decode(damaged).ok());
  }
}

// Four well-separated groups in the 4 segment dimensions.
std::vector<double> ClusteredPoints(int n, int group_first, uint64_t seed,
                                    std::vector<int>* groups) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> z(0.0, 0.05);
  std::vector<double> points;
  for (int i = 0; i < n; ++i) {
    const int g = (group_first + i) % 4;
    groups->push_back(g);
    for (int j = 0; j < SegmentCentres::kDim; ++j) {
      points.push_back(10.0 * g + (j == 1 ? 3.0 * g : 0.0) + z(rng));
    }
  }
  return points;
}

TEST_CASE(
    "Merged segment centres: the count-weighted means, equal to the batch group means "
    "when the parts found the same segments",
    "[scoring][model_sync]") {
  constexpr int k = 4;
  constexpr int d = SegmentCentres::kDim;
  std::vector<std::vector<double>> all_points(k);  // by true group
  ModelStatistics merged;
  for (int p = 0; p < 3; ++p) {
    std::vector<int> groups;
    // Each part sees the groups in another order, so its centres are
    // numbered differently.
    const std::vector<double> points = ClusteredPoints(600 + 150 * p, p, 40 + p, &groups);
    auto km = models::MiniBatchKMeans::Create(
        {.k = k, .dim = d, .seed_buffer_size = 64, .random_seed = static_cast<uint64_t>(p + 1)});
    REQUIRE_OK(km);
    for (size_t i = 0; i < groups.size(); ++i) {
      const std::span<const double> x(points.data() + i * d, d);
      REQUIRE_OK(km->Update(x));
      all_points[static_cast<size_t>(groups[i])].insert(
          all_points[static_cast<size_t>(groups[i])].end(), x.begin(), x.end());
    }
    km->Flush();
    ModelStatistics s;
    s.parts = 1;
    s.segments.k = k;
    s.segments.centres.assign(km->centroids().begin(), km->centroids().end());
    s.segments.counts.assign(km->counts().begin(), km->counts().end());
    for (int c = 0; c < k; ++c) s.segments.sizes.push_back(static_cast<uint64_t>(10 + c));
    REQUIRE_OK(merged.Merge(RoundTrip(s)));
  }
  REQUIRE(merged.segments.k == k);
  uint64_t customers = 0;
  for (uint64_t n : merged.segments.sizes) customers += n;
  CHECK(customers == 3 * (10 + 11 + 12 + 13));
  // Every true group's batch mean has one merged centre on it.
  for (int g = 0; g < k; ++g) {
    const std::vector<double>& pts = all_points[static_cast<size_t>(g)];
    const double n = static_cast<double>(pts.size() / d);
    std::vector<double> mean(d, 0.0);
    for (size_t i = 0; i < pts.size(); ++i) mean[i % d] += pts[i] / n;
    double best = 1e300;
    double best_count = 0.0;
    for (int c = 0; c < k; ++c) {
      double d2 = 0.0;
      for (int j = 0; j < d; ++j) {
        d2 += std::pow(merged.segments.centres[static_cast<size_t>(c * d + j)] - mean[j], 2);
      }
      if (d2 < best) {
        best = d2;
        best_count = merged.segments.counts[static_cast<size_t>(c)];
      }
    }
    CHECK(std::sqrt(best) < 1e-9);
    CHECK(best_count == Approx(n));
  }
}

TEST_CASE("The merged churn model is close to one learnt over the whole stream",
          "[scoring][model_sync]") {
  constexpr int d = 4;
  std::mt19937_64 rng(23);
  std::normal_distribution<double> z(0.0, 1.0);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  const std::vector<double> w = {1.2, -0.8, 0.5, 0.0};
  std::vector<std::vector<double>> xs;
  std::vector<bool> ys;
  for (int i = 0; i < 6000; ++i) {
    std::vector<double> x(d);
    double logit = -0.5;
    for (int j = 0; j < d; ++j) {
      x[static_cast<size_t>(j)] = z(rng);
      logit += w[static_cast<size_t>(j)] * x[static_cast<size_t>(j)];
    }
    xs.push_back(x);
    ys.push_back(u(rng) < 1.0 / (1.0 + std::exp(-logit)));
  }
  const models::BayesianLogisticRegressionOptions options{.dimension = d};
  auto whole = models::BayesianLogisticRegression::Create(options).value();
  for (size_t i = 0; i < xs.size(); ++i) (void)whole.Update(xs[i], ys[i]);
  ModelStatistics merged;
  for (size_t p = 0; p < 3; ++p) {
    auto part = models::BayesianLogisticRegression::Create(options).value();
    for (size_t i = p; i < xs.size(); i += 3) (void)part.Update(xs[i], ys[i]);
    ModelStatistics s;
    s.parts = 1;
    s.churn.emplace(std::move(part));
    REQUIRE_OK(merged.Merge(RoundTrip(s)));
  }
  REQUIRE(merged.churn.has_value());
  // Approximate: each weight within 0.05 of the single learner's, and the
  // probabilities it predicts within 0.02.
  for (int j = 0; j < d; ++j) {
    CHECK(std::abs(merged.churn->weights()[static_cast<size_t>(j)] -
                   whole.weights()[static_cast<size_t>(j)]) < 0.05);
  }
  CHECK(std::abs(merged.churn->intercept() - whole.intercept()) < 0.05);
  double worst = 0.0;
  for (size_t i = 0; i < 500; ++i) {
    worst = std::max(
        worst, std::abs(merged.churn->PredictProbability(xs[i]) - whole.PredictProbability(xs[i])));
  }
  CHECK(worst < 0.02);
}

}  // namespace
}  // namespace crmstream::scoring
