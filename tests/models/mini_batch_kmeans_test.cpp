#include "crmstream/models/mini_batch_kmeans.h"

#include <algorithm>
#include <array>
#include <catch2/catch.hpp>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "crmstream/common/binary_io.h"
#include "support/require_ok.h"

namespace crmstream::models {
namespace {

constexpr int kDim = 3;
using Point = std::array<double, kDim>;

const std::vector<Point> kTrueCentres = {
    {0.0, 0.0, 0.0}, {10.0, 0.0, 0.0}, {0.0, 10.0, 0.0}, {0.0, 0.0, 10.0}, {10.0, 10.0, 10.0}};

// Gaussian blobs (sd 0.5) around `centres`, in random order.
std::vector<Point> Blobs(const std::vector<Point>& centres, int n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> noise(0.0, 0.5);
  std::vector<Point> points(n);
  for (Point& p : points) {
    const Point& c = centres[rng() % centres.size()];
    for (int j = 0; j < kDim; ++j) p[j] = c[j] + noise(rng);
  }
  return points;
}

double Distance2(std::span<const double> a, const Point& b) {
  double s = 0.0;
  for (int j = 0; j < kDim; ++j) s += (a[j] - b[j]) * (a[j] - b[j]);
  return s;
}

// Largest distance from a true centre to the nearest learnt centre.
double WorstCentreError(const MiniBatchKMeans& m, const std::vector<Point>& truth) {
  double worst = 0.0;
  for (const Point& t : truth) {
    double best = 1e300;
    for (int c = 0; c < m.k(); ++c) best = std::min(best, Distance2(m.centroid(c), t));
    worst = std::max(worst, std::sqrt(best));
  }
  return worst;
}

MiniBatchKMeans Train(const MiniBatchKMeansOptions& o, const std::vector<Point>& points) {
  auto m = MiniBatchKMeans::Create(o);
  REQUIRE_OK(m);
  for (const Point& p : points) {
    auto a = m->Update(p);
    if (!a.ok()) FAIL(a.status().ToString());
  }
  return std::move(m).value();
}

MiniBatchKMeansOptions BlobOptions() {
  MiniBatchKMeansOptions o;
  o.k = 5;
  o.dim = kDim;
  o.seed_buffer_size = 200;
  o.random_seed = 17;
  return o;
}

TEST_CASE("k-means recovers well-separated Gaussian blobs", "[models][kmeans]") {
  const std::vector<Point> points = Blobs(kTrueCentres, 20'000, 1);
  for (const int batch : {1, 64}) {
    MiniBatchKMeansOptions o = BlobOptions();
    o.mini_batch_size = batch;
    MiniBatchKMeans m = Train(o, points);
    m.Flush();
    INFO("mini-batch " << batch);
    REQUIRE(m.seeded());
    // The mean of ~4,000 points with sd 0.5 is within ~0.01 of the truth.
    CHECK(WorstCentreError(m, kTrueCentres) < 0.05);
    double total = 0.0;
    for (double c : m.counts()) {
      total += c;
      CHECK(c == Approx(4000).epsilon(0.1));
    }
    CHECK(total == Approx(20'000));
    // Prequential inertia estimates the true within-cluster variance, 3 * 0.25.
    CHECK(m.quality().scored_points == 20'000 - 200);
    CHECK(m.quality().mean_squared_distance() == Approx(0.75).epsilon(0.05));
    CHECK(m.quality().ewma_squared_distance == Approx(0.75).epsilon(0.15));
    // Assign agrees with the nearest true centre for a fresh point.
    const Point probe = {9.8, 10.1, 10.2};
    const KMeansAssignment a = m.Assign(probe);
    REQUIRE(a.cluster >= 0);
    CHECK(Distance2(m.centroid(a.cluster), kTrueCentres[4]) < 0.01);
    CHECK(a.squared_distance == Approx(Distance2(m.centroid(a.cluster), probe)));
  }
}

TEST_CASE("k-means seeding is deterministic and k-means++ spreads the seeds", "[models][kmeans]") {
  const std::vector<Point> points = Blobs(kTrueCentres, 200, 2);  // exactly the seeding buffer
  MiniBatchKMeansOptions o = BlobOptions();
  o.seed_lloyd_iterations = 0;
  MiniBatchKMeans a = Train(o, points);
  MiniBatchKMeans b = Train(o, points);
  REQUIRE(a.seeded());
  CHECK(std::vector<double>(a.centroids().begin(), a.centroids().end()) ==
        std::vector<double>(b.centroids().begin(), b.centroids().end()));
  // k-means++ on well-separated blobs puts one seed in each blob, so even
  // without Lloyd iterations every blob has a centre.
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    o.random_seed = seed;
    MiniBatchKMeans m = Train(o, points);
    INFO("seed " << seed);
    CHECK(WorstCentreError(m, kTrueCentres) < 0.3);
  }
  // Before the buffer fills there is no model.
  auto fresh = MiniBatchKMeans::Create(o);
  REQUIRE_OK(fresh);
  auto first = fresh->Update(points[0]);
  REQUIRE_OK(first);
  CHECK(first->cluster == -1);
  CHECK(fresh->Assign(points[1]).cluster == -1);
}

TEST_CASE("with a half-life the centre follows a moving blob", "[models][kmeans]") {
  MiniBatchKMeansOptions o;
  o.k = 2;
  o.dim = 2;
  o.seed_buffer_size = 100;
  std::mt19937_64 rng(3);
  std::normal_distribution<double> noise(0.0, 0.3);
  // Blob A drifts from (0, 0) to (30, 0) over 30,000 points; blob B stays at
  // (0, 50).
  auto run = [&](double half_life) {
    o.half_life = half_life;
    auto m = MiniBatchKMeans::Create(o);
    REQUIRE_OK(m);
    rng.seed(3);
    for (int i = 0; i < 30'000; ++i) {
      const double ax = 30.0 * i / 30'000.0;
      const bool in_a = i % 2 == 0;
      const std::array<double, 2> p = {(in_a ? ax : 0.0) + noise(rng),
                                       (in_a ? 0.0 : 50.0) + noise(rng)};
      REQUIRE_OK(m->Update(p));
    }
    int a = 0;
    for (int c = 1; c < 2; ++c) {
      if (m->centroid(c)[1] < m->centroid(a)[1]) a = c;
    }
    return m->centroid(a)[0];
  };
  // A half-life of 500 points weights the recent path (mean age ~720 points,
  // over which A moves ~0.7): the centre sits close behind the blob.
  CHECK(run(500.0) == Approx(30.0).margin(1.0));
  // Without decay the centre is the mean of the whole path.
  CHECK(run(0.0) == Approx(15.0).margin(0.6));
}

TEST_CASE("a dead centre is re-seeded where the data moved", "[models][kmeans]") {
  MiniBatchKMeansOptions o;
  o.k = 3;
  o.dim = kDim;
  o.seed_buffer_size = 300;
  o.random_seed = 5;
  o.half_life = 2000;  // so the first centre forgets the points it absorbed from the new segment
  const std::vector<Point> before = {{0, 0, 0}, {10, 0, 0}, {0, 10, 0}};
  // The third segment disappears; a new one appears nearer to the first
  // segment's centre than to the dead centre.
  const std::vector<Point> after = {{0, 0, 0}, {10, 0, 0}, {-8, -8, 0}};
  const std::vector<Point> phase1 = Blobs(before, 6000, 6);
  const std::vector<Point> phase2 = Blobs(after, 30'000, 7);
  auto run = [&](uint64_t dead_after) {
    o.dead_after = dead_after;
    auto m = MiniBatchKMeans::Create(o);
    REQUIRE_OK(m);
    for (const Point& p : phase1) REQUIRE_OK(m->Update(p));
    REQUIRE(WorstCentreError(*m, before) < 0.1);
    for (const Point& p : phase2) REQUIRE_OK(m->Update(p));
    return std::move(m).value();
  };
  const MiniBatchKMeans with = run(2000);
  CHECK(with.quality().reseeded_centres >= 1);
  CHECK(WorstCentreError(with, after) < 0.2);
  const MiniBatchKMeans without = run(0);
  CHECK(without.quality().reseeded_centres == 0);
  CHECK(WorstCentreError(without, after) > 3.0);  // the new segment is merged into the first
  CHECK(with.quality().ewma_squared_distance < without.quality().ewma_squared_distance);
}

TEST_CASE("a rescaled model continues as one trained in the new coordinates", "[models][kmeans]") {
  // An isotropic scale keeps every nearest-centre and k-means++ choice, so a
  // model moved to new coordinates mid-stream (once while seeding, once
  // after) must hold the centres of a model fed the mapped points from the
  // start.
  MiniBatchKMeansOptions o = BlobOptions();
  o.dead_after = 500;
  const std::vector<Point> points = Blobs(kTrueCentres, 6000, 21);
  const Point scale = {2.5, 2.5, 2.5};
  const Point shift = {-3.0, 7.0, 0.5};
  auto mapped = [&](const Point& p) {
    Point q;
    for (int j = 0; j < kDim; ++j) q[j] = scale[j] * p[j] + shift[j];
    return q;
  };
  std::vector<Point> all_mapped;
  for (const Point& p : points) all_mapped.push_back(mapped(p));
  const MiniBatchKMeans reference = Train(o, all_mapped);

  auto m = MiniBatchKMeans::Create(o);
  REQUIRE_OK(m);
  for (size_t i = 0; i < points.size(); ++i) {
    if (i == 120) m->Rescale(scale, shift);  // while the seeding buffer fills
    if (i == 3000) {                         // seeded: round trip through other units
      m->Rescale(Point{0.5, 0.5, 0.5}, Point{1.0, 2.0, 3.0});
      m->Rescale(Point{2.0, 2.0, 2.0}, Point{-2.0, -4.0, -6.0});
    }
    REQUIRE_OK(m->Update(i < 120 ? points[i] : all_mapped[i]));
  }
  REQUIRE(m->seeded());
  for (int c = 0; c < o.k; ++c) {
    for (int j = 0; j < kDim; ++j) {
      CHECK(m->centroid(c)[j] == Approx(reference.centroid(c)[j]).margin(1e-9));
    }
    CHECK(m->counts()[c] == reference.counts()[c]);
  }
}

TEST_CASE("merging two k-means models combines their per-cluster statistics", "[models][kmeans]") {
  const std::vector<Point> points = Blobs(kTrueCentres, 20'000, 8);
  const std::vector<Point> first(points.begin(), points.begin() + 10'000);
  const std::vector<Point> second(points.begin() + 10'000, points.end());
  MiniBatchKMeansOptions oa = BlobOptions();
  MiniBatchKMeansOptions ob = BlobOptions();
  ob.random_seed = 99;  // different seeds: the centres come out in another order
  MiniBatchKMeans a = Train(oa, first);
  const MiniBatchKMeans b = Train(ob, second);

  // Without decay each (centre, count) is the mean and number of the points
  // the instance gave that centre, so the merged centre is the count-weighted
  // mean of its pair: check that against the statistics computed here.
  std::vector<double> expected_sum(5 * kDim, 0.0), expected_n(5, 0.0);
  for (int c = 0; c < 5; ++c) {
    // b's centre nearest to a's centre c is its pair for well-separated blobs.
    int pair = 0;
    double best = 1e300;
    for (int d = 0; d < 5; ++d) {
      double s = 0.0;
      for (int j = 0; j < kDim; ++j) s += std::pow(a.centroid(c)[j] - b.centroid(d)[j], 2);
      if (s < best) {
        best = s;
        pair = d;
      }
    }
    expected_n[c] = a.counts()[c] + b.counts()[pair];
    for (int j = 0; j < kDim; ++j) {
      expected_sum[c * kDim + j] =
          a.centroid(c)[j] * a.counts()[c] + b.centroid(pair)[j] * b.counts()[pair];
    }
  }
  const uint64_t scored = a.quality().scored_points + b.quality().scored_points;
  REQUIRE_OK(a.Merge(b));
  for (int c = 0; c < 5; ++c) {
    CHECK(a.counts()[c] == Approx(expected_n[c]));
    for (int j = 0; j < kDim; ++j) {
      CHECK(a.centroid(c)[j] == Approx(expected_sum[c * kDim + j] / expected_n[c]).margin(1e-12));
    }
  }
  CHECK(a.points_seen() == 20'000);
  CHECK(a.quality().scored_points == scored);
  CHECK(WorstCentreError(a, kTrueCentres) < 0.05);

  // An unseeded instance's buffered points are learnt by the other.
  MiniBatchKMeans c = Train(oa, std::vector<Point>(points.begin(), points.begin() + 50));
  REQUIRE(!c.seeded());
  const double before =
      a.counts()[0] + a.counts()[1] + a.counts()[2] + a.counts()[3] + a.counts()[4];
  REQUIRE_OK(a.Merge(c));
  const double after =
      a.counts()[0] + a.counts()[1] + a.counts()[2] + a.counts()[3] + a.counts()[4];
  CHECK(after == Approx(before + 50));

  MiniBatchKMeansOptions other = BlobOptions();
  other.k = 4;
  auto wrong = MiniBatchKMeans::Create(other);
  REQUIRE_OK(wrong);
  CHECK(a.Merge(*wrong).code() == StatusCode::kInvalidArgument);
}

TEST_CASE("k-means rejects malformed points", "[models][kmeans]") {
  auto m = MiniBatchKMeans::Create(BlobOptions());
  REQUIRE_OK(m);
  CHECK(m->Update(std::vector<double>{1.0, 2.0}).status().code() == StatusCode::kInvalidArgument);
  CHECK(m->Update(std::vector<double>{1.0, NAN, 2.0}).status().code() ==
        StatusCode::kInvalidArgument);
  CHECK(m->points_seen() == 0);
  MiniBatchKMeansOptions bad = BlobOptions();
  bad.seed_buffer_size = 2;  // < k
  CHECK(MiniBatchKMeans::Create(bad).status().code() == StatusCode::kInvalidArgument);
  bad = BlobOptions();
  bad.half_life = -1.0;
  CHECK(!MiniBatchKMeans::Create(bad).ok());
}

// A model in the middle of everything: seeded, decaying, re-seeding, with a
// partly filled mini-batch.
MiniBatchKMeans BusyModel(const std::vector<Point>& points) {
  MiniBatchKMeansOptions o = BlobOptions();
  o.mini_batch_size = 7;
  o.half_life = 3000;
  o.dead_after = 500;
  o.recent_capacity = 32;
  return Train(o, points);
}

TEST_CASE("k-means serialisation round trip continues bit-identically", "[models][kmeans]") {
  const std::vector<Point> points = Blobs(kTrueCentres, 8000, 9);
  const std::vector<Point> head(points.begin(), points.begin() + 3003);
  MiniBatchKMeans m = BusyModel(head);
  const std::string blob = m.Serialize();
  auto restored = MiniBatchKMeans::Deserialize(blob);
  REQUIRE_OK(restored);
  CHECK(restored->Serialize() == blob);
  for (size_t i = 3003; i < points.size(); ++i) {
    auto x = m.Update(points[i]);
    auto y = restored->Update(points[i]);
    REQUIRE((x.ok() && y.ok()));
    REQUIRE(x->cluster == y->cluster);
  }
  CHECK(std::vector<double>(m.centroids().begin(), m.centroids().end()) ==
        std::vector<double>(restored->centroids().begin(), restored->centroids().end()));
  CHECK(m.Serialize() == restored->Serialize());

  // Still seeding.
  MiniBatchKMeans young = BusyModel(std::vector<Point>(points.begin(), points.begin() + 10));
  auto young2 = MiniBatchKMeans::Deserialize(young.Serialize());
  REQUIRE_OK(young2);
  CHECK(!young2->seeded());
  CHECK(young2->Serialize() == young.Serialize());
}

TEST_CASE("a truncated, corrupted or foreign k-means blob is Corruption", "[models][kmeans]") {
  const std::vector<Point> points = Blobs(kTrueCentres, 400, 10);
  const std::string blob = BusyModel(points).Serialize();
  for (size_t len = 0; len < blob.size(); ++len) {
    auto r = MiniBatchKMeans::Deserialize(std::string_view(blob).substr(0, len));
    REQUIRE(!r.ok());
    REQUIRE(r.status().code() == StatusCode::kCorruption);
  }
  for (size_t i = 0; i < blob.size(); ++i) {
    std::string bad = blob;
    bad[i] = static_cast<char>(bad[i] ^ (1 << (i % 8)));
    auto r = MiniBatchKMeans::Deserialize(bad);
    REQUIRE(!r.ok());
    REQUIRE(r.status().code() == StatusCode::kCorruption);
  }
  CHECK(MiniBatchKMeans::Deserialize(SealBlob(BlobKind::kRollingCorrelation, 1, "abc"))
            .status()
            .code() == StatusCode::kCorruption);
  // Well-sealed payloads that lie about their contents never crash.
  auto opened = OpenBlob(blob, BlobKind::kMiniBatchKMeans);
  REQUIRE_OK(opened);
  const std::string payload(opened->payload);
  int rejected = 0;
  for (size_t i = 0; i < payload.size(); ++i) {
    std::string lie = payload;
    lie[i] = static_cast<char>(lie[i] ^ 0x80);
    auto r = MiniBatchKMeans::Deserialize(SealBlob(BlobKind::kMiniBatchKMeans, 1, lie));
    if (!r.ok()) {
      REQUIRE(r.status().code() == StatusCode::kCorruption);
      ++rejected;
    }
  }
  CHECK(rejected > 0);
  CHECK(MiniBatchKMeans::Deserialize(SealBlob(BlobKind::kMiniBatchKMeans, 9, payload))
            .status()
            .code() == StatusCode::kCorruption);
}

}  // namespace
}  // namespace crmstream::models
