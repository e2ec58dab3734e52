#include "crmstream/models/rolling_correlation.h"

#include <array>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <deque>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "crmstream/common/binary_io.h"
#include "support/require_ok.h"

namespace crmstream::models {
namespace {

// Sanitizer builds run ~20x slower; they check memory safety, the Release
// build checks the 10^7-update precision claim.
#if defined(__SANITIZE_ADDRESS__)
constexpr int64_t kLongRunUpdates = 1'000'000;
#else
constexpr int64_t kLongRunUpdates = 10'000'000;
#endif

// At most 4 metrics in these tests; a fixed array keeps the 10^7-row loops
// free of allocation.
constexpr int kMaxTestMetrics = 4;
struct Row {
  int64_t t = 0;
  std::array<double, kMaxTestMetrics> x{};
  std::span<const double> view(int m) const { return std::span<const double>(x.data(), m); }
};

// Two-pass Pearson correlation in long double over exactly the given rows:
// the independent reference.
struct TwoPass {
  std::vector<long double> mean;
  std::vector<long double> c;  // m * m
  int m = 0;
  long double r(int i, int j) const {
    return c[i * m + j] / std::sqrt(c[i * m + i] * c[j * m + j]);
  }
};

template <typename Rows>
TwoPass ComputeTwoPass(const Rows& rows, int m) {
  TwoPass tp;
  tp.m = m;
  tp.mean.assign(m, 0.0L);
  tp.c.assign(static_cast<size_t>(m) * m, 0.0L);
  for (const Row& row : rows) {
    for (int i = 0; i < m; ++i) tp.mean[i] += row.x[i];
  }
  for (int i = 0; i < m; ++i) tp.mean[i] /= static_cast<long double>(rows.size());
  for (const Row& row : rows) {
    for (int i = 0; i < m; ++i) {
      for (int j = 0; j < m; ++j) {
        tp.c[i * m + j] += (row.x[i] - tp.mean[i]) * (row.x[j] - tp.mean[j]);
      }
    }
  }
  return tp;
}

// m correlated series around `level` with unit-scale noise: x = level + A z,
// A lower-triangular with a strong shared factor, so the true correlations
// are far from 0 and from +-1.
class CorrelatedSource {
 public:
  CorrelatedSource(int m, uint64_t seed) : m_(m), rng_(seed), z_(m) {}
  void Next(double level, double* x) {
    for (int i = 0; i < m_; ++i) z_[i] = normal_(rng_);
    for (int i = 0; i < m_; ++i) {
      // Shared factor z0, plus a neighbour term and own noise.
      const double shared = (i % 2 == 0 ? 0.8 : -0.6) * z_[0];
      const double own = i == 0 ? 0.6 * z_[0] : 0.5 * z_[i] + 0.3 * z_[i - 1];
      x[i] = level + shared + own;
    }
  }

 private:
  int m_;
  std::mt19937_64 rng_;
  std::normal_distribution<double> normal_;
  std::vector<double> z_;
};

// Level of the series at update u: near 1e9, with a jump of 1e6 units a
// third of the way and a slow ramp later, so the shift has to follow.
double LevelAt(int64_t u, int64_t total) {
  double level = 1e9;
  if (u > total / 3) level += 1e6;
  if (u > 2 * total / 3) level += 1e-3 * static_cast<double>(u - 2 * total / 3);
  return level;
}

template <typename Rows>
double MaxCorrelationError(const RollingCorrelation& rc, const Rows& window, int m) {
  REQUIRE(rc.count() == static_cast<int64_t>(window.size()));
  const TwoPass tp = ComputeTwoPass(window, m);
  double worst = 0.0;
  for (int i = 0; i < m; ++i) {
    for (int j = 0; j < m; ++j) {
      const double err = std::fabs(rc.Correlation(i, j) - static_cast<double>(tp.r(i, j)));
      worst = std::max(worst, err);
    }
    // Means: relative to the level, and on the noise scale.
    CHECK(std::fabs(rc.Mean(i) - static_cast<double>(tp.mean[i])) < 1e-6);
  }
  return worst;
}

// What the textbook sum / sum-of-squares formula gives on the same rows: the
// data are hard enough that it is badly wrong, so passing is meaningful.
template <typename Rows>
double NaiveCorrelation01(const Rows& rows) {
  double n = 0, s0 = 0, s1 = 0, s00 = 0, s11 = 0, s01 = 0;
  for (const Row& row : rows) {
    n += 1;
    s0 += row.x[0];
    s1 += row.x[1];
    s00 += row.x[0] * row.x[0];
    s11 += row.x[1] * row.x[1];
    s01 += row.x[0] * row.x[1];
  }
  const double c01 = s01 - s0 * s1 / n;
  const double c00 = s00 - s0 * s0 / n;
  const double c11 = s11 - s1 * s1 / n;
  return c01 / std::sqrt(std::fabs(c00 * c11));
}

TEST_CASE("count window equals a two-pass computation at 1e9 after 10^7 updates",
          "[models][correlation]") {
  constexpr int m = 4;
  constexpr int64_t W = 1000;
  RollingCorrelationOptions o;
  o.metrics = m;
  o.window = CorrelationWindowKind::kCount;
  o.window_rows = W;
  auto rc = RollingCorrelation::Create(o);
  REQUIRE_OK(rc);

  CorrelatedSource source(m, 42);
  std::deque<Row> window;
  Row row;
  const int64_t total = kLongRunUpdates;
  const std::vector<int64_t> checkpoints = {
      2,         3,    10, 999, 1000, 1001, 12'345, total / 3 + 500, total / 2, 2 * total / 3 + 777,
      total - 1, total};
  size_t next_checkpoint = 0;
  double worst = 0.0;
  bool naive_checked = false;
  for (int64_t u = 1; u <= total; ++u) {
    source.Next(LevelAt(u, total), row.x.data());
    if (!rc->Add(row.view(m)).ok()) FAIL("Add failed at update " << u);
    window.push_back(row);
    if (static_cast<int64_t>(window.size()) > W) window.pop_front();
    if (next_checkpoint < checkpoints.size() && u == checkpoints[next_checkpoint]) {
      ++next_checkpoint;
      const double err = MaxCorrelationError(*rc, window, m);
      INFO("update " << u << " max |r - r_two_pass| = " << err);
      CHECK(err <= 1e-12);
      worst = std::max(worst, err);
      if (u == total / 2) {
        const TwoPass tp = ComputeTwoPass(window, m);
        const double naive_err =
            std::fabs(NaiveCorrelation01(window) - static_cast<double>(tp.r(0, 1)));
        CHECK(naive_err > 1e-3);
        naive_checked = true;
      }
    }
  }
  CHECK(naive_checked);
  CHECK(next_checkpoint == checkpoints.size());
  WARN("count window: worst |r - two-pass| over checkpoints = " << worst << " after " << total
                                                                << " updates");
}

TEST_CASE("time window equals a two-pass computation at 1e9 after 10^7 updates",
          "[models][correlation]") {
  constexpr int m = 3;
  constexpr int64_t T = 2000;  // ms
  RollingCorrelationOptions o;
  o.metrics = m;
  o.window = CorrelationWindowKind::kTime;
  o.window_duration = T;
  o.initial_capacity = 64;  // forces the ring to grow during bursts
  auto rc = RollingCorrelation::Create(o);
  REQUIRE_OK(rc);

  CorrelatedSource source(m, 7);
  std::mt19937_64 gaps(11);
  std::deque<Row> window;
  Row row;
  int64_t t = 1'700'000'000'000;  // epoch milliseconds
  const int64_t total = kLongRunUpdates;
  double worst = 0.0;
  int checks = 0;
  for (int64_t u = 1; u <= total; ++u) {
    // Mostly 0-3 ms apart (ties included); now and then a burst of many rows
    // on one timestamp, or a gap longer than the window that empties it.
    const uint64_t g = gaps();
    if (g % 100'003 == 0) {
      t += 3 * T;
    } else if (g % 5'000 >= 40) {
      t += static_cast<int64_t>((g >> 20) % 4);
    }
    row.t = t;
    source.Next(LevelAt(u, total), row.x.data());
    if (!rc->Add(row.view(m), t).ok()) FAIL("Add failed at update " << u);
    window.push_back(row);
    while (!window.empty() && window.front().t <= t - T) window.pop_front();
    if (u % (total / 10) == 0 || u == 5 || u == 2500 || u == total / 3 + 1) {
      if (window.size() < 2) continue;
      const double err = MaxCorrelationError(*rc, window, m);
      INFO("update " << u << " rows " << window.size() << " max |r - r_two_pass| = " << err);
      CHECK(err <= 1e-12);
      worst = std::max(worst, err);
      ++checks;
    }
  }
  CHECK(checks >= 10);
  // AdvanceTo forgets without a new row.
  rc->AdvanceTo(t + T);
  CHECK(rc->count() == 0);
  CHECK(std::isnan(rc->Correlation(0, 1)));
  WARN("time window: worst |r - two-pass| over checkpoints = " << worst << " after " << total
                                                               << " updates");
}

TEST_CASE("correlation edge cases", "[models][correlation]") {
  RollingCorrelationOptions o;
  o.metrics = 2;
  o.window_rows = 3;
  auto rc = RollingCorrelation::Create(o);
  REQUIRE_OK(rc);
  CHECK(std::isnan(rc->Correlation(0, 1)));
  REQUIRE_OK(rc->Add(std::vector<double>{1.0, 2.0}, 10));
  CHECK(std::isnan(rc->Correlation(0, 1)));  // one row
  REQUIRE_OK(rc->Add(std::vector<double>{2.0, 4.0}, 10));
  CHECK(rc->Correlation(0, 1) == Approx(1.0).margin(1e-15));
  REQUIRE_OK(rc->Add(std::vector<double>{3.0, 1.0}, 11));
  // Hand computed: x = 1,2,3; y = 2,4,1 -> cov = -0.5, var x = 1, var y = 7/3.
  CHECK(rc->Correlation(0, 1) == Approx(-0.5 / std::sqrt(7.0 / 3.0)).margin(1e-15));
  CHECK(rc->Covariance(0, 1) == Approx(-0.5).margin(1e-15));
  REQUIRE(rc->Add(std::vector<double>{4.0, 4.0}, 12).ok());  // drops (1, 2)
  // x = 2,3,4; y = 4,1,4 -> cov 0.
  CHECK(rc->Correlation(0, 1) == Approx(0.0).margin(1e-15));

  CHECK(rc->Add(std::vector<double>{1.0}, 13).code() == StatusCode::kInvalidArgument);
  CHECK(rc->Add(std::vector<double>{NAN, 1.0}, 13).code() == StatusCode::kInvalidArgument);
  CHECK(rc->Add(std::vector<double>{1.0, 1.0}, 11).code() == StatusCode::kInvalidArgument);
  CHECK(rc->count() == 3);

  // A constant metric has no correlation.
  auto flat = RollingCorrelation::Create(o);
  REQUIRE_OK(flat);
  for (int i = 0; i < 5; ++i) REQUIRE_OK(flat->Add(std::vector<double>{5.0, double(i)}));
  CHECK(std::isnan(flat->Correlation(0, 1)));
  CHECK(flat->Correlation(1, 1) == 1.0);

  RollingCorrelationOptions bad;
  bad.metrics = 0;
  CHECK(!RollingCorrelation::Create(bad).ok());
  bad.metrics = 2;
  bad.metric_names = {"only-one"};
  CHECK(!RollingCorrelation::Create(bad).ok());
}

// Feeds n rows of a correlated stream at 1e9, each to `a` or `b` at random,
// and all to `both` (and to the returned row list).
std::vector<Row> FeedDisjoint(RollingCorrelation* a, RollingCorrelation* b,
                              RollingCorrelation* both, int m, int64_t n, uint64_t seed) {
  CorrelatedSource source(m, seed);
  std::mt19937_64 pick(seed + 1);
  std::vector<Row> all;
  Row row;
  int64_t t = 0;
  for (int64_t u = 0; u < n; ++u) {
    t += static_cast<int64_t>(pick() % 3);
    row.t = t;
    source.Next(1e9, row.x.data());
    RollingCorrelation* target = pick() % 2 == 0 ? a : b;
    REQUIRE_OK(target->Add(row.view(m), t));
    REQUIRE_OK(both->Add(row.view(m), t));
    all.push_back(row);
  }
  return all;
}

TEST_CASE("merging windows of disjoint streams equals one instance on the union",
          "[models][correlation]") {
  constexpr int m = 4;
  for (const CorrelationWindowKind kind :
       {CorrelationWindowKind::kCount, CorrelationWindowKind::kTime}) {
    RollingCorrelationOptions o;
    o.metrics = m;
    o.window = kind;
    o.window_rows = 700;
    o.window_duration = 900;
    auto a = RollingCorrelation::Create(o);
    auto b = RollingCorrelation::Create(o);
    auto both = RollingCorrelation::Create(o);
    REQUIRE((a.ok() && b.ok() && both.ok()));
    const std::vector<Row> all = FeedDisjoint(&*a, &*b, &*both, m, 50'000, 3);
    REQUIRE_OK(a->Merge(*b));
    CHECK(a->count() == both->count());
    CHECK(a->newest_timestamp() == both->newest_timestamp());
    // The union window, computed directly from the union stream.
    std::vector<Row> window;
    for (const Row& r : all) {
      if (kind == CorrelationWindowKind::kTime && r.t <= all.back().t - o.window_duration) continue;
      window.push_back(r);
    }
    if (kind == CorrelationWindowKind::kCount) {
      window.erase(window.begin(), window.end() - o.window_rows);
    }
    const TwoPass tp = ComputeTwoPass(window, m);
    for (int i = 0; i < m; ++i) {
      for (int j = 0; j < m; ++j) {
        CHECK(std::fabs(a->Correlation(i, j) - both->Correlation(i, j)) <= 1e-12);
        CHECK(std::fabs(a->Correlation(i, j) - static_cast<double>(tp.r(i, j))) <= 1e-12);
      }
    }
    // Both keep streaming identically.
    Row row;
    CorrelatedSource more(m, 99);
    for (int u = 0; u < 5000; ++u) {
      more.Next(1e9, row.x.data());
      const int64_t t = all.back().t + 1 + u;
      REQUIRE_OK(a->Add(row.view(m), t));
      REQUIRE_OK(both->Add(row.view(m), t));
    }
    for (int i = 0; i < m; ++i) {
      for (int j = 0; j < m; ++j)
        CHECK(std::fabs(a->Correlation(i, j) - both->Correlation(i, j)) <= 1e-12);
    }
  }
  RollingCorrelationOptions x, y;
  x.metrics = y.metrics = 2;
  y.window_rows = x.window_rows + 1;
  auto rx = RollingCorrelation::Create(x);
  auto ry = RollingCorrelation::Create(y);
  CHECK(rx->Merge(*ry).code() == StatusCode::kInvalidArgument);
}

TEST_CASE("Chan merge of moments equals a two-pass computation on the union",
          "[models][correlation]") {
  constexpr int m = 3;
  RollingCorrelationOptions o;
  o.metrics = m;
  o.window = CorrelationWindowKind::kCount;
  o.window_rows = 100'000;  // larger than the stream: nothing leaves
  auto a = RollingCorrelation::Create(o);
  auto b = RollingCorrelation::Create(o);
  auto both = RollingCorrelation::Create(o);
  REQUIRE((a.ok() && b.ok() && both.ok()));
  // b's rows sit 3 units higher than a's: the merge must account for the
  // difference of means, at 1e9.
  CorrelatedSource sa(m, 5), sb(m, 6);
  std::vector<Row> all;
  Row row;
  for (int u = 0; u < 20'000; ++u) {
    sa.Next(1e9, row.x.data());
    REQUIRE_OK(a->Add(row.view(m)));
    all.push_back(row);
    if (u % 3 == 0) {
      sb.Next(1e9 + 3.0, row.x.data());
      REQUIRE_OK(b->Add(row.view(m)));
      all.push_back(row);
    }
  }
  CorrelationMoments merged = a->Moments();
  REQUIRE_OK(merged.Merge(b->Moments()));
  const TwoPass tp = ComputeTwoPass(all, m);
  CHECK(merged.count == static_cast<int64_t>(all.size()));
  for (int i = 0; i < m; ++i) {
    CHECK(std::fabs(merged.Mean(i) - static_cast<double>(tp.mean[i])) < 1e-6);
    for (int j = 0; j < m; ++j) {
      CHECK(std::fabs(merged.Correlation(i, j) - static_cast<double>(tp.r(i, j))) <= 1e-12);
      const long double rel =
          std::fabs((merged.comoment[i * m + j] - tp.c[i * m + j]) / tp.c[i * m + i]);
      CHECK(rel <= 1e-12L);
    }
  }
  CorrelationMoments empty;
  empty.metrics = m;
  REQUIRE_OK(empty.Merge(a->Moments()));
  CHECK(empty.count == a->count());
  CorrelationMoments other_shape;
  other_shape.metrics = m + 1;
  CHECK(!merged.Merge(other_shape).ok());
}

RollingCorrelation MakeBusyTimeWindow() {
  RollingCorrelationOptions o;
  o.metrics = 3;
  o.window = CorrelationWindowKind::kTime;
  o.window_duration = 500;
  o.initial_capacity = 16;
  o.metric_names = {"spend", "tickets", "logins"};
  auto rc = RollingCorrelation::Create(o);
  REQUIRE_OK(rc);
  CorrelatedSource source(3, 8);
  std::array<double, 3> x{};
  for (int u = 0; u < 3000; ++u) {
    source.Next(1e9, x.data());
    REQUIRE_OK(rc->Add(x, u / 2));
  }
  return std::move(rc).value();
}

TEST_CASE("correlation serialisation round trip continues bit-identically",
          "[models][correlation]") {
  RollingCorrelation rc = MakeBusyTimeWindow();
  const std::string blob = rc.Serialize();
  auto restored = RollingCorrelation::Deserialize(blob);
  REQUIRE_OK(restored);
  CHECK(restored->Serialize() == blob);
  CHECK(restored->options().metric_names == rc.options().metric_names);
  CorrelatedSource source(3, 9);
  std::array<double, 3> x{};
  for (int u = 0; u < 4000; ++u) {
    source.Next(1e9, x.data());
    REQUIRE_OK(rc.Add(x, 1500 + u / 3));
    REQUIRE_OK(restored->Add(x, 1500 + u / 3));
  }
  const CorrelationSnapshot s1 = rc.Snapshot();
  const CorrelationSnapshot s2 = restored->Snapshot();
  CHECK(s1.count == s2.count);
  CHECK(s1.correlation == s2.correlation);  // bitwise
  CHECK(s1.means == s2.means);
  CHECK(rc.Serialize() == restored->Serialize());

  // Count window, partially filled.
  RollingCorrelationOptions o;
  o.metrics = 2;
  o.window_rows = 50;
  auto small = RollingCorrelation::Create(o);
  REQUIRE_OK(small);
  REQUIRE_OK(small->Add(std::vector<double>{1.0, 3.0}));
  REQUIRE_OK(small->Add(std::vector<double>{2.0, 5.0}));
  auto small2 = RollingCorrelation::Deserialize(small->Serialize());
  REQUIRE_OK(small2);
  CHECK(small2->Serialize() == small->Serialize());
}

TEST_CASE("a truncated, corrupted or foreign correlation blob is Corruption",
          "[models][correlation]") {
  RollingCorrelationOptions o;
  o.metrics = 3;
  o.window = CorrelationWindowKind::kTime;
  o.window_duration = 40;
  o.metric_names = {"a", "b", "c"};
  auto rc = RollingCorrelation::Create(o);
  REQUIRE_OK(rc);
  CorrelatedSource source(3, 10);
  std::array<double, 3> x{};
  for (int u = 0; u < 120; ++u) {
    source.Next(1e9, x.data());
    REQUIRE_OK(rc->Add(x, u / 2));
  }
  const std::string blob = rc->Serialize();
  for (size_t len = 0; len < blob.size(); ++len) {
    auto r = RollingCorrelation::Deserialize(std::string_view(blob).substr(0, len));
    REQUIRE(!r.ok());
    REQUIRE(r.status().code() == StatusCode::kCorruption);
  }
  for (size_t i = 0; i < blob.size(); ++i) {
    std::string bad = blob;
    bad[i] = static_cast<char>(bad[i] ^ (1 << (i % 8)));
    auto r = RollingCorrelation::Deserialize(bad);
    REQUIRE(!r.ok());
    REQUIRE(r.status().code() == StatusCode::kCorruption);
  }
  // A well-sealed blob of another kind, and sealed payloads that lie.
  CHECK(RollingCorrelation::Deserialize(SealBlob(BlobKind::kMiniBatchKMeans, 1, "xyz"))
            .status()
            .code() == StatusCode::kCorruption);
  auto opened = OpenBlob(blob, BlobKind::kRollingCorrelation);
  REQUIRE_OK(opened);
  const std::string payload(opened->payload);
  for (size_t i = 0; i < payload.size(); i += 3) {
    std::string lie = payload;
    lie[i] = static_cast<char>(0xff);
    auto r = RollingCorrelation::Deserialize(SealBlob(BlobKind::kRollingCorrelation, 1, lie));
    if (!r.ok()) REQUIRE(r.status().code() == StatusCode::kCorruption);
  }
  CHECK(RollingCorrelation::Deserialize(SealBlob(BlobKind::kRollingCorrelation, 2, payload))
            .status()
            .code() == StatusCode::kCorruption);
  CHECK(RollingCorrelation::Deserialize(SealBlob(BlobKind::kRollingCorrelation, 1, payload + "x"))
            .status()
            .code() == StatusCode::kCorruption);
}

}  // namespace
}  // namespace crmstream::models
