// Quality of the churn and anomaly alerts against the generator's ground
// truth (`crmstream eval alerts`, docs/outputs.md "Alert quality"): a
// generated world runs through the event processor as a replay would (no
// Kafka), flushing on a fixed event-time cadence, and every published churn
// alert and anomaly is compared with what the generator recorded.
//
// Churn definitions (H = the churn horizon of the models, 30 days by
// default). By default the whole run counts (warmup_days 0): alerts raised
// while the model is learning are false alerts like any other.
// - an alert published in [warm-up end, end - H] (so that its horizon is
//   observed) is correct if its customer closes within H after it;
//   precision = correct alerts / alerts;
// - a churner is a customer whose account_closed falls in [warm-up end,
//   end]; recall counts only churners who fade (a sudden churner changes
//   nothing before closing; they are reported apart): caught if an alert
//   for it was published in the H before its closing;
// - lead time of a caught churner = closing time - its first alert in the H
//   before the closing; the median is reported;
// - the gate: the event time at which the churn model's alert gate first
//   opened, and the alerts published before it (zero by design).
// Customer anomalies: a record is correct if its customer had an injected
// refund burst from its start to one day after its last refund; a burst is
// caught if such a record exists. Metric anomalies likewise against the
// global windows (outages, revenue drops), to one hour after their end.
//
// Worlds (WorldPreset): "baseline" (the generator's defaults), "late_churn"
// (nobody closes during the first 90 days), "sudden" (40% of churners close
// without fading), "seasonal_dips" (weekly seasonality of 30% and a bad
// week every 30 days per customer); all with refund bursts and outages.
//
// Single-threaded; allocates freely (an evaluation, not the hot path).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "crmstream/common/status.h"
#include "crmstream/generator/world_options.h"
#include "crmstream/pipeline/event_processor.h"

namespace crmstream::evaluation {

using pipeline::EventProcessor;
using pipeline::OutputKind;
using pipeline::OutputSink;
using pipeline::ProcessorOptions;

// The named worlds, in the order `eval alerts --world all` runs them.
inline constexpr std::array<std::string_view, 4> kAlertWorlds = {"baseline", "late_churn", "sudden",
                                                                 "seasonal_dips"};
// Applies the named world's dynamics to `world` (population, seed and churn
// rate untouched); InvalidArgument for an unknown name.
Status WorldPreset(std::string_view name, generator::WorldOptions* world);

struct AlertEvaluationOptions {
  std::string world = "baseline";  // one of kAlertWorlds
  uint64_t seed = 42;              // generator seed
  int customers = 5000;            // generator population, >= 10
  double churn_rate = 0.05;        // generator churn per 30 days, in (0, 1]
  int days = 240;                  // simulated days, > warmup_days + horizon
  int warmup_days = 0;             // days left out at the start, >= 0 (default: none)
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
  uint64_t churners_sudden = 0;  // closings without a fade (not in recall)
  uint64_t churners_sudden_caught = 0;
  double precision = 0.0;
  double recall = 0.0;            // of churners who faded
  double median_lead_days = 0.0;  // over caught churners (0 when none)
  double churn_auc = 0.5;         // the churn model's prequential AUC, warm labels
  // The gate: day (since the start) it first opened, -1 if never; alerts
  // published before that.
  double gate_open_day = -1;
  uint64_t alerts_before_gate = 0;
  // Recall over the fading churners who closed at least a horizon after the
  // gate opened (what the model can do once it alerts at all).
  uint64_t churners_after_gate = 0;
  uint64_t churners_after_gate_caught = 0;
  std::string gate_summary;  // DescribeChurnGate at the end
  // The calibration at the end, and the calibrated probabilities of the
  // alerts published in the precision window: the mean probability of those
  // alerts against their precision.
  double calibration_slope = 1.0;
  double calibration_intercept = 0.0;
  double mean_alert_probability = 0.0;

  // Customer anomalies against injected refund bursts.
  uint64_t customer_anomalies = 0;
  uint64_t customer_anomalies_correct = 0;
  uint64_t refund_bursts = 0;
  uint64_t refund_bursts_caught = 0;
  uint64_t customers_flagged = 0;  // distinct customers with a customer anomaly
  // Metric anomalies against global windows (outages, revenue drops).
  uint64_t metric_anomalies = 0;
  uint64_t metric_anomalies_correct = 0;
  uint64_t global_incidents = 0;
  uint64_t global_incidents_caught = 0;
};

Result<AlertEvaluation> EvaluateChurnAlerts(const AlertEvaluationOptions& options);

}  // namespace crmstream::evaluation
