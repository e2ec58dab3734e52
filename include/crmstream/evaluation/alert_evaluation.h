// Quality of the churn alerts against the generator's ground truth
// (`crmstream eval alerts`, docs/outputs.md "Alert quality"): a generated
// world runs through the event processor as a replay would (no Kafka),
// flushing on a fixed event-time cadence, and every published churn alert is
// compared with the account closings the generator recorded.
//
// Definitions (H = the churn horizon of the models, 30 days by default; the
// first `warmup_days` are left out because the churn model has no labels
// yet during its first horizon):
// - a churner is a customer whose account_closed falls in [warm-up end, end];
//   it is caught (true positive) if an alert for it was published in the H
//   before its closing; recall = caught churners / churners;
// - an alert published in [warm-up end, end - H] (so that its horizon is
//   observed) is correct if its customer closes within H after it;
//   precision = correct alerts / alerts;
// - lead time of a caught churner = closing time - its first alert in the H
//   before the closing; the median is reported.
//
// Single-threaded; allocates freely (an evaluation, not the hot path).
#pragma once

#include <array>
#include <cstdint>

#include "crmstream/common/status.h"
#include "crmstream/pipeline/event_processor.h"

namespace crmstream::evaluation {

using pipeline::EventProcessor;
using pipeline::OutputKind;
using pipeline::OutputSink;
using pipeline::ProcessorOptions;

struct AlertEvaluationOptions {
  uint64_t seed = 42;        // generator seed
  int customers = 5000;      // generator population, >= 10
  double churn_rate = 0.05;  // generator churn per 30 days, in (0, 1]
  int days = 240;            // simulated days, > warmup_days + horizon
  int warmup_days = 60;      // days left out at the start, >= 0
  // Outputs are flushed (customers scored, alerts decided) every this many
  // ms of event time, > 0. Default one hour.
  int64_t flush_interval_ms = 3'600'000;
  // The pipeline: models, alert policy (the defaults of pipelines/crm.yaml).
  ProcessorOptions processor;

  Status Validate() const;
};

struct AlertEvaluation {
  uint64_t records = 0;
  double simulated_days = 0.0;
  uint64_t alerts_published = 0;                 // all alerts, whole run
  std::array<uint64_t, 3> alerts_by_severity{};  // warning, high, critical (whole run)
  uint64_t alerts_scored = 0;                    // alerts inside the precision window
  uint64_t alerts_correct = 0;
  uint64_t churners = 0;  // closings inside the recall window
  uint64_t churners_caught = 0;
  double precision = 0.0;
  double recall = 0.0;
  double median_lead_days = 0.0;  // over caught churners (0 when none)
  double churn_auc = 0.5;         // the churn model's prequential AUC, warm labels
};

Result<AlertEvaluation> EvaluateChurnAlerts(const AlertEvaluationOptions& options);

}  // namespace crmstream::evaluation
