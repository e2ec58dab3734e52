#include "crmstream/models/sustained_shift.h"

#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "crmstream/common/binary_io.h"
#include "support/allocation_counter.h"
#include "support/require_ok.h"

namespace crmstream::models {
namespace {

constexpr int64_t kMinute = 60'000;
constexpr int kPerDay = 1440;

// Minute counts with a daily cycle (x 0.5 to x 1.5 around `level`), Poisson.
// `factor(minute)` scales the rate: the injected incidents.
template <typename Factor>
std::vector<double> DailyCounts(int days, double level, uint64_t seed, Factor factor) {
  std::mt19937_64 rng(seed);
  std::vector<double> out(static_cast<size_t>(days) * kPerDay);
  for (size_t m = 0; m < out.size(); ++m) {
    const double hour = static_cast<double>(m % kPerDay) / 60.0;
    const double rate =
        level * (1.0 + 0.5 * std::sin(2.0 * M_PI * hour / 24.0)) * factor(static_cast<int64_t>(m));
    out[m] = static_cast<double>(std::poisson_distribution<int>(rate)(rng));
  }
  return out;
}

struct Alarm {
  int64_t minute;
  ShiftAlarm what;
};

std::vector<Alarm> Run(SustainedShiftDetector* d, const std::vector<double>& v) {
  std::vector<Alarm> alarms;
  for (size_t m = 0; m < v.size(); ++m) {
    const auto t = static_cast<int64_t>(m) * kMinute;
    if (d->Add(t, static_cast<uint32_t>((m / 60) % 24), v[m])) {
      alarms.push_back({static_cast<int64_t>(m), d->last_alarm()});
    }
  }
  return alarms;
}

const auto kNoIncident = [](int64_t) { return 1.0; };

}  // namespace

TEST_CASE("Sustained shift: a daily cycle alone raises nothing, a 70% drop for 3 hours once",
          "[models]") {
  // Two weeks of quiet minutes, then the level falls to 30% for 3 hours.
  const int64_t from = 14 * kPerDay + 600, to = from + 180;
  const auto drop = [&](int64_t m) { return m >= from && m < to ? 0.3 : 1.0; };
  for (const uint64_t seed : {1u, 2u, 3u}) {
    SustainedShiftDetector d;
    const std::vector<double> v = DailyCounts(16, 3.0, seed, drop);
    const std::vector<Alarm> alarms = Run(&d, v);
    INFO("seed " << seed);
    REQUIRE(alarms.size() == 1);
    const Alarm& a = alarms[0];
    CHECK(a.what.direction == -1);
    CHECK(a.minute >= from);
    CHECK(a.minute < from + 60);  // found within the first hour
    CHECK(a.what.since >= (from - 30) * kMinute);
    CHECK(a.what.since <= a.minute * kMinute);
    CHECK(a.what.statistic >= d.options().threshold);
    // The run's observed mean is the plain mean of its minutes, recomputed.
    const auto first = static_cast<size_t>(a.what.since / kMinute);
    REQUIRE(a.what.points == static_cast<uint64_t>(a.minute) - first + 1);
    double sum = 0;
    for (size_t m = first; m <= static_cast<size_t>(a.minute); ++m) sum += v[m];
    CHECK(a.what.observed_mean == Approx(sum / static_cast<double>(a.what.points)));
    CHECK(a.what.observed_mean < 0.6 * a.what.expected_mean);
  }
}

TEST_CASE("Sustained shift: a rise to 5x is an alarm upwards", "[models]") {
  const int64_t from = 10 * kPerDay + 100;
  const auto rise = [&](int64_t m) { return m >= from && m < from + 60 ? 5.0 : 1.0; };
  SustainedShiftDetector d;
  const std::vector<Alarm> alarms = Run(&d, DailyCounts(11, 0.2, 4, rise));
  REQUIRE(alarms.size() == 1);
  CHECK(alarms[0].what.direction == 1);
  CHECK(alarms[0].minute >= from);
  CHECK(alarms[0].minute < from + 60);
  CHECK(alarms[0].what.observed_mean > 2.0 * alarms[0].what.expected_mean);
}

TEST_CASE("Sustained shift: small shifts and single extreme minutes are not incidents",
          "[models]") {
  SECTION("a weekly swing of +-30% on top of the daily cycle, for four weeks") {
    const auto weekly = [](int64_t m) {
      return 1.0 + 0.3 * std::sin(2.0 * M_PI * static_cast<double>(m) / (7.0 * kPerDay));
    };
    for (const uint64_t seed : {5u, 11u}) {
      SustainedShiftDetector d;
      const std::vector<Alarm> alarms = Run(&d, DailyCounts(28, 3.0, seed, weekly));
      for (const Alarm& a : alarms) {
        UNSCOPED_INFO("seed " << seed << ": alarm at minute " << a.minute << " direction "
                              << a.what.direction << " over " << a.what.points << " minutes");
      }
      CHECK(alarms.empty());
    }
  }
  SECTION("a 25% dip for two whole days is not an alarm downwards") {
    const auto dip = [](int64_t m) { return m >= 10 * kPerDay && m < 12 * kPerDay ? 0.75 : 1.0; };
    SustainedShiftDetector d;
    for (const Alarm& a : Run(&d, DailyCounts(12, 3.0, 5, dip))) CHECK(a.what.direction != -1);
  }
  SECTION("one minute at 1000 times the level, once a day") {
    std::vector<double> v = DailyCounts(14, 3.0, 6, kNoIncident);
    for (int day = 3; day < 14; ++day) v[static_cast<size_t>(day * kPerDay + 700)] = 3000.0;
    SustainedShiftDetector d;
    CHECK(Run(&d, v).empty());
  }
}

TEST_CASE("Sustained shift: a long incident is one alarm, the next one another", "[models]") {
  const auto two = [](int64_t m) {
    const bool first = m >= 8 * kPerDay && m < 8 * kPerDay + 12 * 60;
    const bool second = m >= 11 * kPerDay && m < 11 * kPerDay + 120;
    return first || second ? 0.1 : 1.0;
  };
  SustainedShiftDetector d;
  const std::vector<Alarm> alarms = Run(&d, DailyCounts(13, 3.0, 7, two));
  REQUIRE(alarms.size() == 2);
  CHECK(alarms[0].minute >= 8 * kPerDay);
  CHECK(alarms[0].minute < 8 * kPerDay + 60);
  CHECK(alarms[1].minute >= 11 * kPerDay);
  CHECK(alarms[1].minute < 11 * kPerDay + 60);
}

TEST_CASE("Sustained shift: nothing before each slot has its warm-up", "[models]") {
  // The level collapses on day 1, before the slots have seen 120 points.
  const auto early = [](int64_t m) { return m >= 600 && m < kPerDay ? 0.0 : 1.0; };
  SustainedShiftOptions o;
  REQUIRE_OK_AND_ASSIGN(SustainedShiftDetector d, SustainedShiftDetector::Create(o));
  CHECK(Run(&d, DailyCounts(2, 3.0, 8, early)).empty());
}

TEST_CASE("Sustained shift: options are validated, naming the field", "[models]") {
  SustainedShiftOptions o;
  o.change = 0;
  auto r = SustainedShiftDetector::Create(o);
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == StatusCode::kInvalidArgument);
  CHECK(r.status().message().find("change") != std::string::npos);
  o = {};
  o.season_slots = 0;
  r = SustainedShiftDetector::Create(o);
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().message().find("season_slots") != std::string::npos);
  o = {};
  o.threshold = -1;
  CHECK_FALSE(SustainedShiftDetector::Create(o).ok());
}

TEST_CASE("Sustained shift: state round-trips and resumes identically, bad bytes are Corruption",
          "[models]") {
  const int64_t from = 9 * kPerDay + 300;
  const auto drop = [&](int64_t m) { return m >= from && m < from + 240 ? 0.2 : 1.0; };
  const std::vector<double> v = DailyCounts(10, 2.0, 9, drop);
  // Cut in the middle of the incident, while a sum is running.
  const size_t cut = static_cast<size_t>(from + 5);
  SustainedShiftDetector a;
  for (size_t m = 0; m < cut; ++m) {
    a.Add(static_cast<int64_t>(m) * kMinute, static_cast<uint32_t>((m / 60) % 24), v[m]);
  }
  REQUIRE(a.statistic() > 0);
  std::string bytes;
  BinaryWriter w(&bytes);
  a.Write(&w);
  BinaryReader r(bytes);
  REQUIRE_OK_AND_ASSIGN(SustainedShiftDetector b, SustainedShiftDetector::Read(&r));
  CHECK(r.AtEnd());
  CHECK(b.statistic() == a.statistic());
  int alarms = 0;
  for (size_t m = cut; m < v.size(); ++m) {
    const auto t = static_cast<int64_t>(m) * kMinute;
    const auto slot = static_cast<uint32_t>((m / 60) % 24);
    const bool alarm = a.Add(t, slot, v[m]);
    REQUIRE(alarm == b.Add(t, slot, v[m]));
    REQUIRE(a.statistic() == b.statistic());
    alarms += alarm ? 1 : 0;
  }
  CHECK(alarms == 1);
  CHECK(a.last_alarm().since == b.last_alarm().since);
  CHECK(a.last_alarm().points == b.last_alarm().points);

  // Truncated, bad options (slots 0), a negative variance.
  for (size_t len : {size_t{0}, size_t{10}, bytes.size() / 2, bytes.size() - 1}) {
    BinaryReader t(std::string_view(bytes).substr(0, len));
    CHECK_FALSE(SustainedShiftDetector::Read(&t).ok());
  }
  std::string bad = bytes;
  const uint32_t zero = 0;
  std::memcpy(bad.data(), &zero, sizeof zero);
  BinaryReader z(bad);
  auto refused = SustainedShiftDetector::Read(&z);
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.status().code() == StatusCode::kCorruption);
  bad = bytes;
  const double negative = -1.0;
  // The first slot's variance: after 4 + 4 + 4 + 8 + 8 + 4 + 4 option bytes,
  // the recent level's 8 + 8 + 8 and the slot's count and mean.
  std::memcpy(bad.data() + 36 + 24 + 16, &negative, sizeof negative);
  BinaryReader n(bad);
  CHECK(SustainedShiftDetector::Read(&n).status().code() == StatusCode::kCorruption);
}

TEST_CASE("Sustained shift: Add allocates nothing", "[models]") {
  const std::vector<double> v = DailyCounts(3, 3.0, 10, kNoIncident);
  SustainedShiftDetector d;
  testing::StartCountingAllocations();
  for (size_t m = 0; m < v.size(); ++m) {
    d.Add(static_cast<int64_t>(m) * kMinute, static_cast<uint32_t>((m / 60) % 24), v[m]);
  }
  CHECK(testing::StopCountingAllocations() == 0);
}

}  // namespace crmstream::models
