// `crmstream eval telco|retail|recommend|value|associations|nab`: the models
// on the public data sets, each figure printed beside the published one or a
// batch reference. `crmstream eval alerts`: the
// churn alerts on a generated world against its ground truth.
#include <cstdio>
#include <filesystem>
#include <iostream>

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
};

int RunAlertEval(const EvalOptions& o) {
  evaluation::AlertEvaluationOptions a = o.alerts;
  if (!o.pipeline.empty()) {
    auto spec = pipeline::LoadPipelineSpec(o.pipeline);
    if (!spec.ok()) return Fail("eval", spec.status());
    a.processor = spec->processor;
  }
  std::cout << "Churn alerts on a generated world: seed " << a.seed << ", " << a.customers
            << " customers, churn rate " << a.churn_rate << " per 30 days, " << a.days
            << " days (first " << a.warmup_days << " left out), flush every "
            << a.flush_interval_ms / 60'000 << " min of event time\n";
  const auto& policy = a.processor.models.churn.alerts;
  std::cout << "Policy: enter " << policy.enter_probability << ", exit " << policy.exit_probability
            << ", high " << policy.high_probability << ", critical " << policy.critical_probability
            << ", cool-down " << static_cast<double>(policy.cooldown_ms) / 3'600'000
            << " h; horizon " << a.processor.models.churn.horizon_days << " days\n";
  auto r = evaluation::EvaluateChurnAlerts(a);
  if (!r.ok()) return Fail("eval", r.status());
  char line[256];
  std::snprintf(line, sizeof(line), "%-22s %10llu (%.1f simulated days)\n", "records",
                static_cast<unsigned long long>(r->records), r->simulated_days);
  std::cout << line;
  std::snprintf(line, sizeof(line), "%-22s %10llu (warning %llu, high %llu, critical %llu)\n",
                "alerts published", static_cast<unsigned long long>(r->alerts_published),
                static_cast<unsigned long long>(r->alerts_by_severity[0]),
                static_cast<unsigned long long>(r->alerts_by_severity[1]),
                static_cast<unsigned long long>(r->alerts_by_severity[2]));
  std::cout << line;
  std::snprintf(line, sizeof(line),
                "%-22s %10.3f (%llu of %llu alerts closed within the horizon)\n", "precision",
                r->precision, static_cast<unsigned long long>(r->alerts_correct),
                static_cast<unsigned long long>(r->alerts_scored));
  std::cout << line;
  std::snprintf(line, sizeof(line), "%-22s %10.3f (%llu of %llu closings alerted before)\n",
                "recall", r->recall, static_cast<unsigned long long>(r->churners_caught),
                static_cast<unsigned long long>(r->churners));
  std::cout << line;
  std::snprintf(line, sizeof(line), "%-22s %10.1f days (alert to account_closed)\n",
                "median lead time", r->median_lead_days);
  std::cout << line;
  std::snprintf(line, sizeof(line), "%-22s %10.3f (prequential, warm labels)\n", "churn model AUC",
                r->churn_auc);
  std::cout << line;
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
