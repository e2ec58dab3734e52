#include "crmstream/models/univariate_anomaly.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "crmstream/common/binary_io.h"
#include "support/require_ok.h"

namespace crmstream::models {
namespace {

// A daily-looking cycle with noise: 288 points per period.
std::vector<double> PeriodicSeries(size_t n, uint32_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> noise(0.0, 0.05);
  std::vector<double> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = std::sin(2.0 * M_PI * i / 288.0) + noise(rng);
  return v;
}

TEST_CASE("Univariate detector scores in [0, 1] and flags a spike above its past", "[models]") {
  std::vector<double> series = PeriodicSeries(6000, 7);
  series[5000] = 3.0;  // three times the amplitude
  UnivariateAnomalyDetector detector;
  std::vector<double> scores;
  for (size_t i = 0; i < series.size(); ++i) {
    scores.push_back(detector.Score(static_cast<int64_t>(i) * 300, series[i]));
    REQUIRE(scores.back() >= 0.0);
    REQUIRE(scores.back() <= 1.0);
  }
  CHECK(scores[5000] > 0.9);
  // Normal behaviour, once learned, stays quiet: few points score high.
  size_t high = 0;
  for (size_t i = 3000; i < 5000; ++i) high += scores[i] >= 0.5;
  CHECK(high < 20);
  CHECK(detector.count() == series.size());
}

TEST_CASE("Univariate detector flags a level shift that stays inside the past range", "[models]") {
  std::mt19937_64 rng(21);
  std::normal_distribution<double> before(5.0, 1.0), after(7.5, 0.3);
  UnivariateAnomalyDetector detector;
  int alarms_before = 0;
  double max_after = 0.0;
  double lowest = 1e9, highest = -1e9;
  for (int i = 0; i < 4000; ++i) {
    const double v = before(rng);
    lowest = std::min(lowest, v);
    highest = std::max(highest, v);
    const double s = detector.Score(i, v);
    if (i >= 2000) alarms_before += s >= 0.6;
  }
  for (int i = 0; i < 100; ++i) {
    const double v = after(rng);
    // The shifted values stay inside what the detector has already seen.
    REQUIRE(v > lowest);
    REQUIRE(v < highest);
    max_after = std::max(max_after, detector.Score(4000 + i, v));
  }
  CHECK(max_after >= 0.6);
  // A stationary series rarely alarms (a new extreme now and then).
  CHECK(alarms_before <= 5);
}

TEST_CASE("Univariate detector ignores non-finite values", "[models]") {
  UnivariateAnomalyDetector detector;
  CHECK(detector.Score(0, std::nan("")) == 0.0);
  CHECK(detector.Score(1, INFINITY) == 0.0);
  CHECK(detector.count() == 0);
}

TEST_CASE("Univariate options are validated", "[models]") {
  UnivariateAnomalyDetector::Options o;
  o.table_slots = 1000;  // not a power of two
  CHECK(UnivariateAnomalyDetector::Create(o).status().code() == StatusCode::kInvalidArgument);
  o = {};
  o.levels = 1;
  CHECK_FALSE(UnivariateAnomalyDetector::Create(o).ok());
  o = {};
  o.short_window = 0;
  CHECK_FALSE(UnivariateAnomalyDetector::Create(o).ok());
  CHECK_OK(UnivariateAnomalyDetector::Create({}));
}

TEST_CASE("Univariate detector round-trips exactly and resumes identically", "[models]") {
  const std::vector<double> series = PeriodicSeries(3000, 11);
  UnivariateAnomalyDetector uninterrupted;
  UnivariateAnomalyDetector first_half;
  std::vector<double> expected;
  for (size_t i = 0; i < series.size(); ++i) {
    expected.push_back(uninterrupted.Score(static_cast<int64_t>(i), series[i]));
  }
  for (size_t i = 0; i < 1500; ++i) (void)first_half.Score(static_cast<int64_t>(i), series[i]);
  const std::string blob = first_half.Serialize();
  auto restored = UnivariateAnomalyDetector::Deserialize(blob);
  REQUIRE_OK(restored);
  CHECK(restored->Serialize() == blob);
  for (size_t i = 1500; i < series.size(); ++i) {
    REQUIRE(restored->Score(static_cast<int64_t>(i), series[i]) == expected[i]);
  }
}

// The version-2 layout (whole context table) as earlier releases wrote it,
// rebuilt here from a version-3 blob: options and scalars (120 bytes), then
// keys and counts as two arrays and the used count, then the same tail.
std::string AsDenseVersion2(const std::string& blob, uint32_t table_slots) {
  auto opened = OpenBlob(blob, BlobKind::kUnivariateAnomaly);
  REQUIRE_OK(opened);
  REQUIRE(opened->version == 3);
  constexpr size_t kPrefix = 120;
  BinaryReader r(opened->payload.substr(kPrefix));
  uint32_t used = 0;
  REQUIRE_OK(r.Get(&used));
  std::vector<uint64_t> keys(table_slots, 0);
  std::vector<uint32_t> counts(table_slots, 0);
  for (uint32_t i = 0; i < used; ++i) {
    uint32_t slot = 0;
    REQUIRE_OK(r.Get(&slot));
    REQUIRE_OK(r.Get(&keys[slot]));
    REQUIRE_OK(r.Get(&counts[slot]));
  }
  std::string payload(opened->payload.substr(0, kPrefix));
  BinaryWriter w(&payload);
  w.PutArray<uint64_t>(keys);
  w.PutArray<uint32_t>(counts);
  w.Put<uint32_t>(used);
  payload.append(opened->payload.substr(opened->payload.size() - r.remaining()));
  return SealBlob(BlobKind::kUnivariateAnomaly, 2, payload);
}

TEST_CASE("Univariate blob: version 2 (whole table) still restores and the sparse one is smaller",
          "[models]") {
  const std::vector<double> series = PeriodicSeries(3000, 11);
  UnivariateAnomalyDetector uninterrupted, first_half;
  std::vector<double> expected;
  for (size_t i = 0; i < series.size(); ++i) {
    expected.push_back(uninterrupted.Score(static_cast<int64_t>(i), series[i]));
  }
  for (size_t i = 0; i < 1500; ++i) (void)first_half.Score(static_cast<int64_t>(i), series[i]);
  const std::string sparse = first_half.Serialize();
  const std::string dense = AsDenseVersion2(sparse, first_half.options().table_slots);
  // The whole default table is 32768 slots of 12 bytes.
  CHECK(dense.size() > 32768u * 12u);
  CHECK(sparse.size() < dense.size() / 10);
  auto restored = UnivariateAnomalyDetector::Deserialize(dense);
  REQUIRE_OK(restored);
  CHECK(restored->Serialize() == sparse);
  for (size_t i = 1500; i < series.size(); ++i) {
    REQUIRE(restored->Score(static_cast<int64_t>(i), series[i]) == expected[i]);
  }
  // Version 1 (four context orders) is refused, not misread.
  auto opened = OpenBlob(sparse, BlobKind::kUnivariateAnomaly);
  REQUIRE_OK(opened);
  const std::string version1 = SealBlob(BlobKind::kUnivariateAnomaly, 1, opened->payload);
  CHECK(UnivariateAnomalyDetector::Deserialize(version1).status().code() ==
        StatusCode::kCorruption);
}

TEST_CASE("Univariate blob: context slots out of order or outside the table are Corruption",
          "[models]") {
  UnivariateAnomalyDetector::Options o;
  o.table_slots = 64;
  auto detector = UnivariateAnomalyDetector::Create(o);
  REQUIRE_OK(detector);
  const std::vector<double> series = PeriodicSeries(400, 3);
  for (size_t i = 0; i < series.size(); ++i) (void)detector->Score(0, series[i]);
  const std::string blob = detector->Serialize();
  auto opened = OpenBlob(blob, BlobKind::kUnivariateAnomaly);
  REQUIRE_OK(opened);
  const std::string payload(opened->payload);
  uint32_t used = 0;
  std::memcpy(&used, payload.data() + 120, sizeof(used));
  REQUIRE(used >= 2);
  // The first entry's slot index sits right after the used count.
  auto with_first_slot = [&](uint32_t slot) {
    std::string p = payload;
    std::memcpy(p.data() + 124, &slot, sizeof(slot));
    return SealBlob(BlobKind::kUnivariateAnomaly, UnivariateAnomalyDetector::kBlobVersion, p);
  };
  uint32_t second_slot = 0;
  std::memcpy(&second_slot, payload.data() + 124 + 16, sizeof(second_slot));
  CHECK(UnivariateAnomalyDetector::Deserialize(with_first_slot(64)).status().code() ==
        StatusCode::kCorruption);
  CHECK(UnivariateAnomalyDetector::Deserialize(with_first_slot(second_slot)).status().code() ==
        StatusCode::kCorruption);
}

TEST_CASE("Univariate blob: truncation, flipped bytes and foreign blobs are Corruption",
          "[models]") {
  UnivariateAnomalyDetector::Options o;
  o.table_slots = 64;  // a small blob, so every byte can be tried
  auto detector = UnivariateAnomalyDetector::Create(o);
  REQUIRE_OK(detector);
  const std::vector<double> series = PeriodicSeries(400, 3);
  for (size_t i = 0; i < series.size(); ++i) (void)detector->Score(0, series[i]);
  const std::string blob = detector->Serialize();
  for (size_t cut = 0; cut < blob.size(); ++cut) {
    auto r = UnivariateAnomalyDetector::Deserialize(std::string_view(blob).substr(0, cut));
    REQUIRE(r.status().code() == StatusCode::kCorruption);
  }
  for (size_t pos = 0; pos < blob.size(); ++pos) {
    std::string flipped = blob;
    flipped[pos] = static_cast<char>(flipped[pos] ^ 0x5A);
    REQUIRE(UnivariateAnomalyDetector::Deserialize(flipped).status().code() ==
            StatusCode::kCorruption);
  }
  const std::string foreign = SealBlob(BlobKind::kMultivariateAnomaly, 1, "abc");
  CHECK(UnivariateAnomalyDetector::Deserialize(foreign).status().code() == StatusCode::kCorruption);
  // A well-sealed payload whose content is inconsistent (table too small for
  // its options) must be rejected too, not trusted.
  const std::string bogus =
      SealBlob(BlobKind::kUnivariateAnomaly, UnivariateAnomalyDetector::kBlobVersion,
               std::string(200, '\x01'));
  CHECK(UnivariateAnomalyDetector::Deserialize(bogus).status().code() == StatusCode::kCorruption);
}

}  // namespace
}  // namespace crmstream::models
