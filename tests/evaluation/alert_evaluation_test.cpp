#include "crmstream/evaluation/alert_evaluation.h"

#include <catch2/catch.hpp>
#include <cmath>
#include <unordered_map>

#include "crmstream/config/engine_config.h"
#include "crmstream/generator/world_generator.h"
#include "crmstream/pipeline/pipeline_spec.h"
#include "support/require_ok.h"
#include "support/test_support.h"

namespace crmstream::evaluation {
namespace {

// A small generated world (1,000 customers, 10% churn per 30 days), judged
// over the whole run. The floors are below the measured figures (see the
// WARN line) but far above what alerting at random or on everyone gives:
// the base rate of closing within 30 days is about 0.1, so a useless policy
// has precision near 0.1 or recall near 0.
TEST_CASE("Churn alerts catch real churners ahead of their closing, none before the gate",
          "[pipeline][alerts]") {
  AlertEvaluationOptions o;
  o.seed = 5;
  o.customers = 1000;
  o.churn_rate = 0.1;
#ifdef NDEBUG
  o.days = 200;
#else
  o.days = 100;  // debug and sanitizer builds are tens of times slower
#endif
  auto r = EvaluateChurnAlerts(o);
  REQUIRE_OK(r);
  WARN("gate day " << r->gate_open_day << " alerts " << r->alerts_published << " scored "
                   << r->alerts_scored << " precision " << r->precision << " (mean p "
                   << r->mean_alert_probability << ") churners " << r->churners << " recall "
                   << r->recall << " median lead days " << r->median_lead_days << " auc "
                   << r->churn_auc);
  CHECK(r->simulated_days > o.days - 1);
  CHECK(r->alerts_published ==
        r->alerts_by_severity[0] + r->alerts_by_severity[1] + r->alerts_by_severity[2]);
  // No alert before the model earned it; and it cannot earn it before a
  // trained model's predictions have matured (two horizons, 60 days).
  CHECK(r->alerts_before_gate == 0);
  if (r->gate_open_day < 0) {
    CHECK(r->alerts_published == 0);
  } else {
    CHECK(r->gate_open_day > 60);
  }
#ifdef NDEBUG
  // Measured: gate open on day 96.6; precision 0.595, recall 0.196 (closings
  // before the gate count as missed), median lead 7.1 days.
  REQUIRE(r->gate_open_day > 0);
  REQUIRE(r->churners > 300);
  REQUIRE(r->alerts_scored > 50);
  CHECK(r->precision > 0.45);
  CHECK(r->recall > 0.12);
  // Churners fade for 14 to 45 days before closing: an alert worth having
  // comes days ahead, not at the closing.
  CHECK(r->median_lead_days > 4.0);
  CHECK(r->median_lead_days <= 30.0);
  // Calibrated: the mean probability of the alerts is close to the share
  // of them that came true.
  CHECK(std::abs(r->mean_alert_probability - r->precision) < 0.15);
#endif
}

// The precision of alerting at random, on the README's world: of the
// customers active on a day of the scored window (seen before it, not yet
// closed), the share that closes within the horizon after it, over every
// day. Computed here from the generator's ground truth.
double ChancePrecision(const AlertEvaluationOptions& o) {
  constexpr int64_t kDay = 86'400'000;
  generator::WorldOptions world;
  world.seed = o.seed;
  world.customers = o.customers;
  world.churn_rate = o.churn_rate;
  REQUIRE_OK(WorldPreset(o.world, &world));
  auto gen = generator::WorldGenerator::Create(world);
  REQUIRE_OK(gen);
  const int64_t start = world.start_ms;
  const int64_t end = start + int64_t{o.days} * kDay;
  std::unordered_map<std::string, int64_t> first_seen;
  std::string key, value;
  while (true) {
    const int64_t ts = (*gen)->Next(&key, &value);
    if (ts >= end) break;
    if (!key.empty()) first_seen.emplace(key, ts);
  }
  std::unordered_map<std::string, int64_t> closed;
  for (const auto& c : (*gen)->ground_truth().churners) closed[c.customer_id] = c.closed_ms;
  const int64_t horizon = int64_t{o.processor.models.churn.horizon_days} * kDay;
  double active = 0, closing = 0;
  for (int64_t day = start + int64_t{o.warmup_days} * kDay; day <= end - horizon; day += kDay) {
    for (const auto& [customer, seen] : first_seen) {
      if (seen > day) continue;
      const auto it = closed.find(customer);
      if (it != closed.end() && it->second <= day) continue;
      active += 1;
      if (it != closed.end() && it->second <= day + horizon) closing += 1;
    }
  }
  REQUIRE(active > 0);
  return closing / active;
}

// The README's alert table ("Alerts a CRM team can trust"): its world and
// levels, judged over the whole run, and the claims made on it: nothing
// before the gate, the default's precision about 10 times chance (chance
// computed independently above), the levels trading precision for recall
// and lead time, and calibrated probabilities (an alert's mean probability
// is about the share of alerts that came true).
TEST_CASE("The README's churn alert table: gated, calibrated, levels trading recall",
          "[pipeline][alerts][slow]") {
#ifndef NDEBUG
  CRMSTREAM_SKIP("the README's world (5.2M records, four runs) needs an optimised build");
#endif
  auto spec =
      pipeline::LoadPipelineSpec((testing::SourceDir() / "pipelines" / "crm.yaml").string());
  REQUIRE_OK(spec);
  AlertEvaluationOptions o;  // the README's world: baseline, seed 42, 5,000 customers, 240 days
  o.processor = spec->processor;
  const double chance = ChancePrecision(o);
  REQUIRE(chance > 0);

  struct Row {
    double enter, exit, high;
    AlertEvaluation r;
  };
  std::vector<Row> rows{
      {0.3, 0.2, 0.55, {}}, {0.4, 0.3, 0.55, {}}, {0.5, 0.35, 0.55, {}}, {0.6, 0.45, 0.6, {}}};
  for (Row& row : rows) {
    AlertEvaluationOptions level = o;
    level.processor.models.churn.alerts.enter_probability = row.enter;
    level.processor.models.churn.alerts.exit_probability = row.exit;
    level.processor.models.churn.alerts.high_probability = row.high;
    auto r = EvaluateChurnAlerts(level);
    REQUIRE_OK(r);
    row.r = *r;
    WARN("enter " << row.enter << " / exit " << row.exit << ": precision " << r->precision
                  << " (mean p " << r->mean_alert_probability << "), recall " << r->recall
                  << ", median lead " << r->median_lead_days << " days, gate day "
                  << r->gate_open_day << " (" << r->alerts_scored << " alerts scored; chance "
                  << chance << ")");
    REQUIRE(r->alerts_scored > 100);
    CHECK(r->alerts_before_gate == 0);
    CHECK(r->gate_open_day > 60);
    CHECK(std::abs(r->mean_alert_probability - r->precision) < 0.1);
  }
  // The default (pipelines/crm.yaml) is the second row.
  CHECK(spec->processor.models.churn.alerts.enter_probability == rows[1].enter);
  CHECK(spec->processor.models.churn.alerts.exit_probability == rows[1].exit);
  // "The default's precision is about 10 times chance."
  CHECK(rows[1].r.precision >= 8 * chance);
  // Each level above the last: more precise, fewer churners caught, later.
  for (size_t i = 1; i < rows.size(); ++i) {
    CHECK(rows[i].r.precision > rows[i - 1].r.precision);
    CHECK(rows[i].r.recall < rows[i - 1].r.recall);
    CHECK(rows[i].r.median_lead_days < rows[i - 1].r.median_lead_days);
  }
}

// The churn model choices of pipelines/crm.yaml on the small world above:
// each learns the late-labelled snapshots well above chance, and the tree
// models (whose logistic leaves standardise their inputs with the few
// examples seen so far) come within a few points of the logistic model.
// Measured (seed 5, 1,000 customers, 200 days): see the WARN line.
TEST_CASE("Every churn model learns the generated world's churn", "[pipeline][alerts]") {
#ifndef NDEBUG
  CRMSTREAM_SKIP("200 simulated days of 1,000 customers per model need an optimised build");
#endif
  auto evaluate = [](scoring::ChurnModelKind kind) {
    AlertEvaluationOptions o;
    o.seed = 5;
    o.customers = 1000;
    o.churn_rate = 0.1;
    o.days = 200;
    o.processor.models.churn.churn_model = kind;
    auto r = EvaluateChurnAlerts(o);
    REQUIRE_OK(r);
    return r->churn_auc;
  };
  const double logistic = evaluate(scoring::ChurnModelKind::kLogistic);
  for (scoring::ChurnModelKind kind :
       {scoring::ChurnModelKind::kModelTree, scoring::ChurnModelKind::kRandomForest,
        scoring::ChurnModelKind::kModelForest}) {
    const double auc = evaluate(kind);
    WARN(scoring::kChurnModelKindNames[static_cast<size_t>(kind)] << " AUC " << auc << ", logistic "
                                                                  << logistic);
    CHECK(auc > 0.65);
    CHECK(auc > logistic - 0.05);
  }
}

// The storm the gate prevents: a world where nobody closes during the first
// 90 days. The model's first matured labels all say "stayed"; it must not
// alert until closings have been seen and predicted.
TEST_CASE("No churn alert storm before churn has been seen and learned",
          "[pipeline][alerts][slow]") {
#ifndef NDEBUG
  CRMSTREAM_SKIP("240 simulated days of 5,000 customers need an optimised build");
#endif
  AlertEvaluationOptions o;
  o.world = "late_churn";
  auto r = EvaluateChurnAlerts(o);
  REQUIRE_OK(r);
  WARN("gate day " << r->gate_open_day << " alerts " << r->alerts_published << " precision "
                   << r->precision << " recall " << r->recall);
  CHECK(r->alerts_before_gate == 0);
  // Closings start on day 90 (tests/generator/world_dynamics_test.cpp); a
  // positive label matures at the closing's prediction deadline and the
  // gate then needs predictions of a model that learned from them.
  CHECK(r->gate_open_day > 90);
  CHECK(r->alerts_published > 50);
  CHECK(r->precision > 0.4);
}

// The README's customer-anomaly row for the baseline world (and its global
// anomalies): the default
// budget (1 per 1,000 customers per day) and severities (rarity 6 / 9 / 12)
// of pipelines/crm.yaml. Without them the same detector published about
// 17,000 records at 2.5% precision.
TEST_CASE("Customer anomalies are few, mostly real and catch the injected bursts",
          "[pipeline][alerts][slow]") {
#ifndef NDEBUG
  CRMSTREAM_SKIP("240 simulated days of 5,000 customers need an optimised build");
#endif
  auto spec =
      pipeline::LoadPipelineSpec((testing::SourceDir() / "pipelines" / "crm.yaml").string());
  REQUIRE_OK(spec);
  AlertEvaluationOptions o;
  o.processor = spec->processor;
  auto r = EvaluateChurnAlerts(o);
  REQUIRE_OK(r);
  const auto& c = r->customer_anomalies_correct_by_severity;
  const auto& n = r->customer_anomalies_by_severity;
  WARN(r->customer_anomalies << " customer anomalies, " << r->customer_anomalies_correct
                             << " correct; bursts " << r->refund_bursts_caught << " of "
                             << r->refund_bursts << "; withheld " << r->customer_anomalies_withheld
                             << "; by severity " << c[0] << "/" << n[0] << ", " << c[1] << "/"
                             << n[1] << ", " << c[2] << "/" << n[2]);
  REQUIRE(r->refund_bursts > 300);
  CHECK(r->customer_anomalies == n[0] + n[1] + n[2]);
  // The targets: precision >= 0.5 with >= 90% of the bursts caught.
  CHECK(r->customer_anomalies_correct >= r->customer_anomalies / 2);
  CHECK(r->refund_bursts_caught >= 0.9 * static_cast<double>(r->refund_bursts));
  // The budget bound: 1 per 1,000 customers seen (5,000 plus the
  // replacements of about 2,000 who closed) per day, plus a day up front.
  CHECK(static_cast<double>(r->customer_anomalies) <= 7.5 * (r->simulated_days + 1));
  CHECK(r->customer_anomalies_withheld > 0);
  // Severity means something: a critical record is more often real than a
  // warning.
  REQUIRE(n[0] > 0);
  REQUIRE(n[2] > 0);
  CHECK(static_cast<double>(c[2]) / static_cast<double>(n[2]) >
        static_cast<double>(c[0]) / static_cast<double>(n[0]));

  // Global anomalies (README, "Global anomalies: persistence and
  // magnitude"): the sustained-shift records of the same run. Each is in an
  // outage or revenue drop far more often than those windows cover the time
  // (a few percent), no incident floods (at most one record per metric), and
  // most incidents are caught. Single minutes gave 25 records at 0.40 here,
  // catching 8 of 131 incidents.
  WARN(r->metric_anomalies << " metric anomalies, " << r->metric_anomalies_correct
                           << " correct; incidents " << r->global_incidents_caught << " of "
                           << r->global_incidents);
  REQUIRE(r->global_incidents > 100);
  CHECK(r->metric_anomalies_correct >= 0.8 * static_cast<double>(r->metric_anomalies));
  CHECK(r->metric_anomalies <= 3 * r->global_incidents);
  CHECK(r->global_incidents_caught >= 0.65 * static_cast<double>(r->global_incidents));
}

TEST_CASE("Alert evaluation options are validated", "[pipeline][alerts]") {
  AlertEvaluationOptions o;
  o.world = "atlantis";
  CHECK_FALSE(o.Validate().ok());
  o = {};
  o.days = 50;
  o.warmup_days = 30;  // 30 + 30-day horizon >= 50
  CHECK_FALSE(EvaluateChurnAlerts(o).ok());
  o = {};
  o.flush_interval_ms = 0;
  CHECK_FALSE(o.Validate().ok());
}

}  // namespace
}  // namespace crmstream::evaluation
