// Global anomalies of the minute metrics: a sustained, large shift of a
// metric for its hour of the day, once per incident; single odd minutes and
// the daily cycle raise nothing.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "crmstream/ingest/event.h"
#include "crmstream/scoring/minute_metrics_monitor.h"
#include "support/require_ok.h"

namespace crmstream::scoring {
namespace {

using ingest::Event;
using ingest::EventType;

constexpr int64_t kMinute = 60'000;
constexpr int64_t kDay = 1440 * kMinute;
constexpr int64_t kStart = 1'700'000'006'400'000;  // a UTC midnight

// One minute of logins at a daily cycle (mean 4 per minute, x 0.5 to x 1.5),
// Poisson, the rate multiplied by `factor`; the anomalies raised go to `out`.
void FeedMinute(MinuteMetricsMonitor* monitor, std::mt19937_64* rng, int64_t t, double factor,
                std::vector<MinuteAnomaly>* out) {
  const double hour = static_cast<double>((t - kStart) % kDay) / (60.0 * kMinute);
  const double rate = 4.0 * (1.0 + 0.5 * std::sin(2.0 * M_PI * hour / 24.0)) * factor;
  const int n = std::poisson_distribution<int>(rate)(*rng);
  Event e;
  e.event_id = "e";
  e.customer_id = "c";
  e.type = EventType::kLogin;
  for (int i = 0; i < n; ++i) {
    e.timestamp_ms = t + i;
    monitor->OnEvent(e);
  }
  // An event in every minute, so that every minute closes in order.
  e.type = EventType::kPageView;
  e.timestamp_ms = t + kMinute - 1;
  monitor->OnEvent(e);
  out->insert(out->end(), monitor->anomalies().begin(), monitor->anomalies().end());
  monitor->ClearAnomalies();
}

template <typename Factor>
std::vector<MinuteAnomaly> Run(MinuteMetricsMonitor* monitor, int days, uint64_t seed,
                               Factor factor) {
  std::mt19937_64 rng(seed);
  std::vector<MinuteAnomaly> out;
  for (int64_t t = kStart; t < kStart + days * kDay; t += kMinute) {
    FeedMinute(monitor, &rng, t, factor(t), &out);
  }
  return out;
}

}  // namespace

TEST_CASE("Minute metrics: a two-hour outage of logins is one global anomaly with its start",
          "[scoring]") {
  const int64_t from = kStart + 9 * kDay + 14 * 60 * kMinute, to = from + 120 * kMinute;
  const auto outage = [&](int64_t t) { return t >= from && t < to ? 0.1 : 1.0; };
  REQUIRE_OK_AND_ASSIGN(MinuteMetricsMonitor monitor, MinuteMetricsMonitor::Create({}));
  const std::vector<MinuteAnomaly> anomalies = Run(&monitor, 10, 1, outage);
  REQUIRE(anomalies.size() == 1);
  const MinuteAnomaly& a = anomalies[0];
  CHECK(MinuteMetricName(a.metric) == "logins_per_minute");
  CHECK(a.sustained);
  CHECK(a.direction == -1);
  CHECK(a.minute_start_ms >= from);
  CHECK(a.minute_start_ms < from + 30 * kMinute);
  CHECK(a.since_ms >= from - 15 * kMinute);
  CHECK(a.since_ms <= from + 5 * kMinute);
  CHECK(a.minutes == static_cast<uint32_t>((a.minute_start_ms - a.since_ms) / kMinute + 1));
  // About a tenth of the hour's usual logins (4 x (1 + 0.5 sin) at 14:00).
  const double usual = 4.0 * (1.0 + 0.5 * std::sin(2.0 * M_PI * 14.0 / 24.0));
  CHECK(a.expected == Approx(usual).epsilon(0.25));
  CHECK(a.observed < 0.35 * a.expected);
  CHECK(a.score > 0.99);
}

TEST_CASE("Minute metrics: without an incident, ten days raise no global anomaly", "[scoring]") {
  for (const uint64_t seed : {2u, 3u}) {
    REQUIRE_OK_AND_ASSIGN(MinuteMetricsMonitor monitor, MinuteMetricsMonitor::Create({}));
    CHECK(Run(&monitor, 10, seed, [](int64_t) { return 1.0; }).empty());
  }
}

TEST_CASE("Minute metrics: the shift test survives a checkpoint in the middle of an outage",
          "[scoring]") {
  const int64_t from = kStart + 8 * kDay + 60 * kMinute;
  const auto outage = [&](int64_t t) { return t >= from && t < from + 90 * kMinute ? 0.1 : 1.0; };
  REQUIRE_OK_AND_ASSIGN(MinuteMetricsMonitor uninterrupted, MinuteMetricsMonitor::Create({}));
  const std::vector<MinuteAnomaly> expected = Run(&uninterrupted, 9, 4, outage);
  REQUIRE(expected.size() == 1);

  // The same stream cut a few minutes into the outage, restored, continued.
  REQUIRE_OK_AND_ASSIGN(MinuteMetricsMonitor first, MinuteMetricsMonitor::Create({}));
  std::mt19937_64 rng(4);
  std::vector<MinuteAnomaly> got;
  MinuteMetricsMonitor* current = &first;
  REQUIRE_OK_AND_ASSIGN(MinuteMetricsMonitor restored, MinuteMetricsMonitor::Create({}));
  for (int64_t t = kStart; t < kStart + 9 * kDay; t += kMinute) {
    if (t == from + 5 * kMinute) {
      std::string blob;
      first.Encode(&blob);
      REQUIRE_OK(restored.Decode(blob));
      current = &restored;
    }
    FeedMinute(current, &rng, t, outage(t), &got);
  }
  REQUIRE(got.size() == 1);
  CHECK(got[0].minute_start_ms == expected[0].minute_start_ms);
  CHECK(got[0].since_ms == expected[0].since_ms);
  CHECK(got[0].observed == expected[0].observed);
}

TEST_CASE("Minute metrics: one extreme minute is a point record only when asked for", "[scoring]") {
  const int64_t at = kStart + 5 * kDay + 600 * kMinute;
  const auto spike = [&](int64_t t) { return t == at ? 20.0 : 1.0; };
  for (const bool points : {false, true}) {
    MinuteMetricsOptions o;
    o.point_anomalies = points;
    REQUIRE_OK_AND_ASSIGN(MinuteMetricsMonitor monitor, MinuteMetricsMonitor::Create(o));
    const std::vector<MinuteAnomaly> anomalies = Run(&monitor, 6, 5, spike);
    if (!points) {
      CHECK(anomalies.empty());
      continue;
    }
    REQUIRE(anomalies.size() == 1);
    CHECK(anomalies[0].minute_start_ms == at);
    CHECK_FALSE(anomalies[0].sustained);
    CHECK(anomalies[0].direction == 1);
    CHECK(anomalies[0].minutes == 1);
    CHECK(anomalies[0].observed > 10 * anomalies[0].expected);
  }
}

TEST_CASE("Minute metrics: shift options are validated", "[scoring]") {
  MinuteMetricsOptions o;
  o.shift.change = 1.5;
  const auto r = MinuteMetricsMonitor::Create(o);
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == StatusCode::kInvalidArgument);
  CHECK(r.status().message().find("shift") != std::string::npos);
  CHECK(r.status().message().find("change") != std::string::npos);
}

}  // namespace crmstream::scoring
