// `crmstream eval telco|retail|recommend|value|associations|nab`: the models
// on the public data sets, each figure printed beside the published one or a
// batch reference. `crmstream eval alerts`: the churn alerts and anomalies
// on generated worlds against their ground truth.
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include "cli_support.h"
#include "commands.h"
#include "crmstream/evaluation/alert_evaluation.h"
#include "crmstream/evaluation/associations.h"
#include "crmstream/evaluation/nab.h"
#include "crmstream/evaluation/recommend.h"
#include "crmstream/evaluation/retail.h"
#include "crmstream/evaluation/telco.h"
#include "crmstream/evaluation/value.h"
#include "crmstream/pipeline/pipeline_spec.h"

namespace crmstream::cli {
namespace {

struct EvalOptions {
  std::string what;
  std::string data_dir = "../shared/data";
  std::string nab_results;  // optional folder for per-row NAB scores
  // alerts
  std::string pipeline = "pipelines/crm.yaml";  // alert policy and models
  evaluation::AlertEvaluationOptions alerts;
  std::string world = "baseline";  // a world of evaluation::kAlertWorlds, or "all"
};

double Ratio(uint64_t a, uint64_t b) {
  return b == 0 ? 0.0 : static_cast<double>(a) / static_cast<double>(b);
}

void PrintAlertEvaluation(const evaluation::AlertEvaluation& r) {
  auto u = [](uint64_t v) { return static_cast<unsigned long long>(v); };
  std::printf("%-24s %10llu (%.1f simulated days)\n", "records", u(r.records), r.simulated_days);
  std::printf("%-24s %10s (first opened on day %.1f; at the end %s)\n", "churn alert gate",
              r.gate_open_day < 0 ? "never" : "opened", r.gate_open_day, r.gate_summary.c_str());
  std::printf("%-24s %10llu\n", "alerts before the gate", u(r.alerts_before_gate));
  std::printf("%-24s %10llu (warning %llu, high %llu, critical %llu)\n", "alerts published",
              u(r.alerts_published), u(r.alerts_by_severity[0]), u(r.alerts_by_severity[1]),
              u(r.alerts_by_severity[2]));
  std::printf("%-24s %10.3f (%llu of %llu alerts closed within the horizon; target >= 0.7)\n",
              "churn precision", r.precision, u(r.alerts_correct), u(r.alerts_scored));
  std::printf("%-24s %10.3f (mean calibrated probability of those alerts; Platt a %.2f, b %.2f)\n",
              "", r.mean_alert_probability, r.calibration_slope, r.calibration_intercept);
  std::printf("%-24s %10.3f (%llu of %llu fading churners alerted before closing; target >= 0.5)\n",
              "churn recall", r.recall, u(r.churners_caught), u(r.churners));
  std::printf(
      "%-24s %10.3f (%llu of %llu fading churners closing a horizon or more after the "
      "gate opened)\n",
      "", Ratio(r.churners_after_gate_caught, r.churners_after_gate),
      u(r.churners_after_gate_caught), u(r.churners_after_gate));
  std::printf("%-24s %10llu (of %llu sudden churners, not in recall)\n", "",
              u(r.churners_sudden_caught), u(r.churners_sudden));
  std::printf("%-24s %10.1f days (first alert to account_closed; target >= 7)\n",
              "median lead time", r.median_lead_days);
  std::printf("%-24s %10.3f (prequential, warm labels)\n", "churn model AUC", r.churn_auc);
  std::printf(
      "%-24s %10.3f (%llu of %llu records on a refund burst; %llu customers flagged; "
      "target >= 0.5)\n",
      "customer anomaly prec.", Ratio(r.customer_anomalies_correct, r.customer_anomalies),
      u(r.customer_anomalies_correct), u(r.customer_anomalies), u(r.customers_flagged));
  std::printf("%-24s %10.3f (%llu of %llu refund bursts caught; target >= 0.9)\n",
              "refund bursts caught", Ratio(r.refund_bursts_caught, r.refund_bursts),
              u(r.refund_bursts_caught), u(r.refund_bursts));
  std::printf("%-24s %10.3f (%llu of %llu metric anomalies in an outage or revenue drop)\n",
              "metric anomaly prec.", Ratio(r.metric_anomalies_correct, r.metric_anomalies),
              u(r.metric_anomalies_correct), u(r.metric_anomalies));
  std::printf("%-24s %10.3f (%llu of %llu global incidents caught)\n", "global incidents",
              Ratio(r.global_incidents_caught, r.global_incidents), u(r.global_incidents_caught),
              u(r.global_incidents));
}

int RunAlertEval(const EvalOptions& o) {
  evaluation::AlertEvaluationOptions a = o.alerts;
  if (!o.pipeline.empty()) {
    auto spec = pipeline::LoadPipelineSpec(o.pipeline);
    if (!spec.ok()) return Fail("eval", spec.status());
    a.processor = spec->processor;
  }
  const auto& policy = a.processor.models.churn.alerts;
  const auto& gate = a.processor.models.churn.gate;
  std::printf(
      "Policy: enter %g, exit %g, high %g, critical %g, cool-down %g h; horizon %d days; gate: "
      ">= %d closings and %d non-closings among the recent labels, AUC >= %g\n",
      policy.enter_probability, policy.exit_probability, policy.high_probability,
      policy.critical_probability, static_cast<double>(policy.cooldown_ms) / 3'600'000,
      a.processor.models.churn.horizon_days, gate.min_positive_labels, gate.min_negative_labels,
      gate.auc_floor);
  std::vector<std::string> worlds;
  if (o.world == "all") {
    worlds.assign(evaluation::kAlertWorlds.begin(), evaluation::kAlertWorlds.end());
  } else {
    worlds.push_back(o.world);
  }
  for (const std::string& world : worlds) {
    a.world = world;
    std::printf(
        "\nWorld '%s': seed %llu, %d customers, churn rate %g per 30 days, %d days (first %d "
        "left out), flush every %lld min of event time\n",
        world.c_str(), static_cast<unsigned long long>(a.seed), a.customers, a.churn_rate, a.days,
        a.warmup_days, static_cast<long long>(a.flush_interval_ms / 60'000));
    std::fflush(stdout);
    auto r = evaluation::EvaluateChurnAlerts(a);
    if (!r.ok()) return Fail("eval", r.status());
    PrintAlertEvaluation(*r);
    std::fflush(stdout);
  }
  return 0;
}

int RunEval(const EvalOptions& o) {
  if (o.what == "alerts") return RunAlertEval(o);
  if (!std::filesystem::is_directory(o.data_dir)) {
    return Fail("eval", Status::NotFound(o.data_dir + ": no data folder (give --data DIR)"));
  }
  if (o.what == "telco") {
    auto r = evaluation::EvaluateTelco(o.data_dir);
    if (!r.ok()) return Fail("eval", r.status());
    evaluation::PrintTelcoReport(*r, std::cout);
  } else if (o.what == "retail") {
    auto r = evaluation::EvaluateRetail(o.data_dir);
    if (!r.ok()) return Fail("eval", r.status());
    evaluation::PrintRetailReport(*r, std::cout);
  } else if (o.what == "recommend") {
    auto r = evaluation::EvaluateRecommendations(o.data_dir);
    if (!r.ok()) return Fail("eval", r.status());
    evaluation::PrintRecommendReport(*r, std::cout);
  } else if (o.what == "value") {
    auto r = evaluation::EvaluateValue(o.data_dir);
    if (!r.ok()) return Fail("eval", r.status());
    evaluation::PrintValueReport(*r, std::cout);
  } else if (o.what == "associations") {
    auto r = evaluation::EvaluateAssociations(o.data_dir);
    if (!r.ok()) return Fail("eval", r.status());
    evaluation::PrintAssociationReport(*r, std::cout);
  } else {
    std::optional<std::filesystem::path> out;
    if (!o.nab_results.empty()) out = o.nab_results;
    auto r = evaluation::EvaluateNab(o.data_dir, out);
    if (!r.ok()) return Fail("eval", r.status());
    evaluation::PrintNabReport(*r, std::cout);
  }
  return 0;
}

}  // namespace

void AddEvalCommand(CLI::App* app, int* exit_code) {
  auto* cmd = app->add_subcommand(
      "eval",
      "Evaluate the online models on the public data sets against published figures, or the "
      "churn alerts on generated ground truth");
  auto o = std::make_shared<EvalOptions>();
  cmd->add_option("what", o->what, "telco, retail, recommend, value, associations, nab or alerts")
      ->required()
      ->check(CLI::IsMember(
          {"telco", "retail", "recommend", "value", "associations", "nab", "alerts"}));
  cmd->add_option("--data", o->data_dir, "Folder of the public data sets")->capture_default_str();
  cmd->add_option("--nab-results", o->nab_results,
                  "With nab: write per-row scores as <category>/<detector>_<file>.csv here");
  cmd->add_option("--pipeline", o->pipeline,
                  "With alerts: pipeline file giving the alert policy and models ('' for defaults)")
      ->capture_default_str();
  cmd->add_option("--world", o->world,
                  "With alerts: baseline, late_churn, sudden, seasonal_dips or all")
      ->capture_default_str();
  cmd->add_option("--seed", o->alerts.seed, "With alerts: generator seed")->capture_default_str();
  cmd->add_option("--customers", o->alerts.customers, "With alerts: generated customers")
      ->capture_default_str();
  cmd->add_option("--churn-rate", o->alerts.churn_rate,
                  "With alerts: share of customers closing per 30 days")
      ->capture_default_str();
  cmd->add_option("--days", o->alerts.days, "With alerts: simulated days")->capture_default_str();
  cmd->add_option("--warmup-days", o->alerts.warmup_days,
                  "With alerts: first days left out of the figures")
      ->capture_default_str();
  cmd->callback([=] { *exit_code = RunEval(*o); });
}

}  // namespace crmstream::cli
