// The dynamics the alert evaluation's worlds are built from, measured from
// the emitted records against the ground truth: a late start of churn,
// churners who close without fading, and seasonality.
#include <simdjson.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <memory>
#include <numbers>
#include <string>
#include <unordered_map>
#include <vector>

#include "crmstream/generator/world_generator.h"
#include "generator/parsed_record.h"
#include "support/require_ok.h"

namespace crmstream::generator {
namespace {

struct Run {
  std::vector<int64_t> closings;                                    // account_closed times
  std::unordered_map<std::string, std::vector<int64_t>> logins_of;  // per customer
  std::vector<int64_t> per_day;                                     // events per simulated day
};

Run Generate(const WorldOptions& o, int days, WorldGenerator** keep = nullptr,
             std::unique_ptr<WorldGenerator>* owner = nullptr) {
  auto g = WorldGenerator::Create(o);
  REQUIRE_OK(g);
  simdjson::ondemand::parser parser;
  Run run;
  run.per_day.assign(static_cast<size_t>(days), 0);
  std::string key, value;
  const int64_t end = o.start_ms + days * kMillisPerDay;
  for (int i = 0; i < 10'000'000; ++i) {
    const int64_t t = (*g)->Next(&key, &value);
    if (t >= end) break;
    const testing::ParsedRecord p = testing::ParseRecord(parser, value);
    REQUIRE(p.type.has_value());
    ++run.per_day[static_cast<size_t>((t - o.start_ms) / kMillisPerDay)];
    if (*p.type == "account_closed") run.closings.push_back(t);
    if (*p.type == "login") run.logins_of[*p.customer_id].push_back(t);
  }
  if (keep != nullptr) {
    *owner = std::move(*g);
    *keep = owner->get();
  }
  return run;
}

TEST_CASE("churn_start_days: nobody closes before, closings follow after", "[generator]") {
  WorldOptions o;
  o.seed = 9;
  o.customers = 600;
  o.churn_rate = 0.1;
  o.churn_start_days = 45;
  const Run run = Generate(o, 75);
  const int64_t start = o.start_ms + 45 * kMillisPerDay;
  REQUIRE(!run.closings.empty());
  for (int64_t t : run.closings) CHECK(t >= start);
  // 10% per 30 days of 600 over the 30 days after the start: about 60.
  CHECK(run.closings.size() > 30);
  CHECK(run.closings.size() < 120);
}

TEST_CASE("sudden_churn_share: that share of churners closes without fading", "[generator]") {
  WorldOptions o;
  o.seed = 10;
  o.customers = 800;
  o.churn_rate = 0.1;
  o.sudden_churn_share = 0.4;
  WorldGenerator* g = nullptr;
  std::unique_ptr<WorldGenerator> owner;
  const Run run = Generate(o, 150, &g, &owner);
  int sudden = 0, faded = 0;
  // Logins in the 14 days before closing against the 14 days before that:
  // a fading churner logs in much less, a sudden one as before.
  double sudden_before = 0, sudden_late = 0, faded_before = 0, faded_late = 0;
  for (const ChurnerTruth& c : g->ground_truth().churners) {
    const bool is_sudden = c.fade_start_ms == c.closed_ms;
    (is_sudden ? sudden : faded)++;
    if (c.closed_ms < o.start_ms + 60 * kMillisPerDay) continue;  // a full history only
    const auto it = run.logins_of.find(c.customer_id);
    if (it == run.logins_of.end()) continue;
    double late = 0, before = 0;
    for (int64_t t : it->second) {
      if (t >= c.closed_ms - 14 * kMillisPerDay) {
        late += 1;
      } else if (t >= c.closed_ms - 28 * kMillisPerDay) {
        before += 1;
      }
    }
    (is_sudden ? sudden_late : faded_late) += late;
    (is_sudden ? sudden_before : faded_before) += before;
  }
  const double share = static_cast<double>(sudden) / (sudden + faded);
  INFO("sudden " << sudden << " faded " << faded << "; logins late/before: sudden " << sudden_late
                 << "/" << sudden_before << ", faded " << faded_late << "/" << faded_before);
  REQUIRE(sudden + faded > 200);
  CHECK(share == Approx(0.4).margin(0.08));
  CHECK(sudden_late / sudden_before > 0.7);
  CHECK(faded_late / faded_before < 0.6);
}

TEST_CASE("seasonality: daily event counts follow the configured cycle", "[generator]") {
  WorldOptions o;
  o.seed = 12;
  o.customers = 1000;
  o.churn_rate = 0.0;
  o.bad_week_every_days = 0;
  o.seasonality_amplitude = 0.4;
  o.seasonality_period_days = 7;
  const Run run = Generate(o, 28);
  // Least squares of the daily counts on sin and cos of the weekly phase
  // (taken at the middle of each day): the relative amplitude of the fit.
  double mean = 0;
  for (int64_t c : run.per_day) mean += static_cast<double>(c);
  mean /= static_cast<double>(run.per_day.size());
  double s = 0, c = 0;
  for (size_t d = 0; d < run.per_day.size(); ++d) {
    const double phase = 2 * std::numbers::pi * (static_cast<double>(d) + 0.5) / 7.0;
    s += (static_cast<double>(run.per_day[d]) - mean) * std::sin(phase);
    c += (static_cast<double>(run.per_day[d]) - mean) * std::cos(phase);
  }
  const double n = static_cast<double>(run.per_day.size());
  const double amplitude = std::hypot(2 * s / n, 2 * c / n) / mean;
  INFO("relative amplitude " << amplitude << " mean per day " << mean);
  // A day averages the cycle over its 24 hours: 0.4 x sin(pi/7)/(pi/7) = 0.39.
  CHECK(amplitude == Approx(0.39).margin(0.05));
  CHECK(2 * s / n > 0);  // the peak a quarter period after the start
}

TEST_CASE("The new dynamics are validated and off by default", "[generator]") {
  WorldOptions o;
  CHECK(o.churn_start_days == 0);
  CHECK(o.sudden_churn_share == 0);
  CHECK(o.seasonality_amplitude == 0);
  o.sudden_churn_share = 1.5;
  CHECK(o.Validate().message().find("sudden_churn_share") != std::string::npos);
  o = {};
  o.seasonality_amplitude = 1.0;
  CHECK(o.Validate().message().find("seasonality_amplitude") != std::string::npos);
  o = {};
  o.churn_start_days = -1;
  CHECK(o.Validate().message().find("churn_start_days") != std::string::npos);
}

}  // namespace
}  // namespace crmstream::generator
