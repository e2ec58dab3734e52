#include "crmstream/evaluation/alert_evaluation.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <string>
#include <unordered_map>
#include <vector>

#include "crmstream/alerts/churn_gate.h"
#include "crmstream/generator/world_generator.h"

namespace crmstream::evaluation {
namespace {

constexpr int64_t kMillisPerDay = 86'400'000;

struct PublishedAlert {
  std::string customer_id;
  int64_t as_of_ms;      // the customer's latest event
  int64_t published_ms;  // the partition's watermark when it was published
  double probability;
};

struct PublishedAnomaly {
  std::string key;  // customer id, or the metric's name
  int64_t as_of_ms;
};

// Keeps the churn alerts and anomalies (key, time) and drops everything else.
class AlertCollector final : public OutputSink {
 public:
  void Emit(OutputKind kind, std::string_view key, std::string_view value) override {
    if (kind == OutputKind::kAnomalies) {
      const bool customer = value.find("\"kind\":\"customer\"") != std::string_view::npos;
      (customer ? customer_anomalies : metric_anomalies)
          .push_back({std::string(key), Int64Field(value, "\"as_of_ms\":")});
      return;
    }
    if (kind != OutputKind::kChurnAlerts) return;
    alerts.push_back({std::string(key), Int64Field(value, "\"as_of_ms\":"),
                      churn == nullptr ? INT64_MIN : churn->watermark_ms(),
                      DoubleField(value, "\"churn_probability\":")});
    for (size_t s = 0; s < kSeverities.size(); ++s) {
      if (value.find(kSeverities[s]) != std::string_view::npos) ++by_severity[s];
    }
  }
  // The model whose watermark dates each alert's publication.
  const scoring::ChurnValueModel* churn = nullptr;
  std::vector<PublishedAlert> alerts;
  std::vector<PublishedAnomaly> customer_anomalies;
  std::vector<PublishedAnomaly> metric_anomalies;
  std::array<uint64_t, 3> by_severity{};

 private:
  static constexpr std::array<std::string_view, 3> kSeverities = {
      "\"severity\":\"warning\"", "\"severity\":\"high\"", "\"severity\":\"critical\""};
  static int64_t Int64Field(std::string_view json, std::string_view key) {
    const size_t at = json.find(key);
    int64_t v = 0;
    if (at == std::string_view::npos) return v;
    const char* p = json.data() + at + key.size();
    std::from_chars(p, json.data() + json.size(), v);
    return v;
  }
  static double DoubleField(std::string_view json, std::string_view key) {
    const size_t at = json.find(key);
    if (at == std::string_view::npos) return std::nan("");
    return std::strtod(std::string(json.substr(at + key.size(), 32)).c_str(), nullptr);
  }
};

double Ratio(uint64_t a, uint64_t b) {
  return b == 0 ? 0.0 : static_cast<double>(a) / static_cast<double>(b);
}

}  // namespace

Status WorldPreset(std::string_view name, generator::WorldOptions* world) {
  world->anomalies.enabled = true;  // refund bursts, outages and revenue drops
  if (name == "baseline") return Status::OK();
  if (name == "late_churn") {
    world->churn_start_days = 90;
  } else if (name == "sudden") {
    world->sudden_churn_share = 0.4;
  } else if (name == "seasonal_dips") {
    world->seasonality_amplitude = 0.3;
    world->seasonality_period_days = 7;
    world->bad_week_every_days = 30;
  } else {
    return Status::InvalidArgument("unknown world '" + std::string(name) +
                                   "' (baseline, late_churn, sudden, seasonal_dips)");
  }
  return Status::OK();
}

Status AlertEvaluationOptions::Validate() const {
  const int horizon = processor.models.churn.horizon_days;
  if (customers < 10) return Status::InvalidArgument("customers must be >= 10");
  if (!(churn_rate > 0 && churn_rate <= 1)) {
    return Status::InvalidArgument("churn_rate must be in (0, 1]");
  }
  if (warmup_days < 0) return Status::InvalidArgument("warmup_days must be >= 0");
  if (days <= warmup_days + horizon) {
    return Status::InvalidArgument("days must exceed warmup_days + the churn horizon (" +
                                   std::to_string(warmup_days + horizon) + ")");
  }
  if (flush_interval_ms <= 0) return Status::InvalidArgument("flush_interval_ms must be > 0");
  generator::WorldOptions probe;
  CRM_RETURN_NOT_OK(WorldPreset(world, &probe));
  return processor.Validate();
}

Result<AlertEvaluation> EvaluateChurnAlerts(const AlertEvaluationOptions& options) {
  CRM_RETURN_NOT_OK(options.Validate());
  generator::WorldOptions world;
  world.seed = options.seed;
  world.customers = options.customers;
  world.churn_rate = options.churn_rate;
  CRM_RETURN_NOT_OK(WorldPreset(options.world, &world));
  CRM_ASSIGN_OR_RETURN(auto gen, generator::WorldGenerator::Create(world));

  AlertCollector alerts;
  ProcessorOptions po = options.processor;
  po.models_enabled = true;
  po.emit_churn_alerts = true;
  po.emit_anomalies = true;
  CRM_ASSIGN_OR_RETURN(std::unique_ptr<EventProcessor> processor,
                       EventProcessor::Create(po, &alerts));

  const int64_t start = world.start_ms;
  const int64_t end = start + int64_t{options.days} * kMillisPerDay;
  const int64_t warm = start + int64_t{options.warmup_days} * kMillisPerDay;
  const int64_t horizon = int64_t{po.models.churn.horizon_days} * kMillisPerDay;
  ingest::SourcePosition pos{"generated", 0, 0};
  std::string key, value;
  AlertEvaluation out;
  int64_t next_flush = start + options.flush_interval_ms;
  int64_t last_ms = start;
  const scoring::ChurnValueModel& churn = processor->customer_models().churn();
  alerts.churn = &churn;
  int64_t gate_open_ms = INT64_MIN;
  while (true) {
    const int64_t ts = gen->Next(&key, &value);
    if (ts >= end) break;
    while (ts >= next_flush) {
      processor->FlushOutputs();
      next_flush += options.flush_interval_ms;
    }
    processor->Process(value, pos, ts);
    ++pos.offset;
    ++out.records;
    // The gate opens while labels resolve, inside Process.
    if (gate_open_ms == INT64_MIN && churn.gate_open()) gate_open_ms = churn.watermark_ms();
    // Alerts are decided per consumed batch in the engine (2048 records).
    if ((out.records & 2047) == 0) processor->RefreshScores();
    last_ms = ts;
  }
  processor->FlushOutputs();
  out.simulated_days = static_cast<double>(last_ms - start) / kMillisPerDay;
  out.alerts_published = alerts.alerts.size();
  out.alerts_by_severity = alerts.by_severity;
  out.churn_auc = processor->customer_models().quality().warm_churn_auc;

  out.gate_summary = alerts::DescribeChurnGate(churn.gate_state(), churn.gate_inputs());
  out.calibration_slope = churn.calibrator().fit().slope;
  out.calibration_intercept = churn.calibrator().fit().intercept;
  if (gate_open_ms != INT64_MIN) {
    out.gate_open_day = static_cast<double>(gate_open_ms - start) / kMillisPerDay;
  }

  struct Closing {
    int64_t closed_ms;
    bool faded;
  };
  std::unordered_map<std::string, Closing> closed_at;
  for (const auto& c : gen->ground_truth().churners) {
    if (c.closed_ms < end) closed_at[c.customer_id] = {c.closed_ms, c.fade_start_ms < c.closed_ms};
  }
  std::unordered_map<std::string, std::vector<int64_t>> alerts_of;
  double probability_sum = 0;
  for (const auto& a : alerts.alerts) {
    alerts_of[a.customer_id].push_back(a.as_of_ms);
    if (gate_open_ms == INT64_MIN || a.published_ms < gate_open_ms) ++out.alerts_before_gate;
    if (a.as_of_ms < warm || a.as_of_ms > end - horizon) continue;
    ++out.alerts_scored;
    probability_sum += a.probability;
    auto it = closed_at.find(a.customer_id);
    if (it != closed_at.end() && it->second.closed_ms > a.as_of_ms &&
        it->second.closed_ms <= a.as_of_ms + horizon) {
      ++out.alerts_correct;
    }
  }
  if (out.alerts_scored > 0) {
    out.mean_alert_probability = probability_sum / static_cast<double>(out.alerts_scored);
  }
  std::vector<double> leads;
  for (const auto& [customer, closing] : closed_at) {
    if (closing.closed_ms < warm) continue;
    closing.faded ? ++out.churners : ++out.churners_sudden;
    auto it = alerts_of.find(customer);
    int64_t first = INT64_MAX;
    if (it != alerts_of.end()) {
      for (int64_t t : it->second) {
        if (t >= closing.closed_ms - horizon && t < closing.closed_ms) first = std::min(first, t);
      }
    }
    const bool after_gate =
        closing.faded && gate_open_ms != INT64_MIN && closing.closed_ms >= gate_open_ms + horizon;
    out.churners_after_gate += after_gate ? 1 : 0;
    if (first == INT64_MAX) continue;
    if (!closing.faded) {
      ++out.churners_sudden_caught;
      continue;
    }
    out.churners_after_gate_caught += after_gate ? 1 : 0;
    ++out.churners_caught;
    leads.push_back(static_cast<double>(closing.closed_ms - first) / kMillisPerDay);
  }
  out.precision = Ratio(out.alerts_correct, out.alerts_scored);
  out.recall = Ratio(out.churners_caught, out.churners);
  if (!leads.empty()) {
    std::sort(leads.begin(), leads.end());
    const size_t n = leads.size();
    out.median_lead_days = n % 2 == 1 ? leads[n / 2] : 0.5 * (leads[n / 2 - 1] + leads[n / 2]);
  }

  // Anomalies against the injected incidents.
  struct Incident {
    int64_t from_ms, to_ms;
    bool caught;
  };
  std::unordered_map<std::string, std::vector<Incident>> bursts;
  std::vector<Incident> global;
  for (const auto& a : gen->ground_truth().anomalies) {
    if (a.start_ms >= end) continue;
    if (a.kind == generator::AnomalyKind::kRefundBurst) {
      bursts[a.customer_id].push_back({a.start_ms, a.end_ms + kMillisPerDay, false});
      ++out.refund_bursts;
    } else {
      global.push_back({a.start_ms, a.end_ms + kMillisPerDay / 24, false});
      ++out.global_incidents;
    }
  }
  std::unordered_map<std::string, bool> flagged;
  for (const auto& a : alerts.customer_anomalies) {
    ++out.customer_anomalies;
    flagged[a.key] = true;
    auto it = bursts.find(a.key);
    if (it == bursts.end()) continue;
    bool correct = false;
    for (Incident& b : it->second) {
      if (a.as_of_ms >= b.from_ms && a.as_of_ms <= b.to_ms) correct = b.caught = true;
    }
    if (correct) ++out.customer_anomalies_correct;
  }
  out.customers_flagged = flagged.size();
  for (const auto& [customer, list] : bursts) {
    for (const Incident& b : list) out.refund_bursts_caught += b.caught ? 1 : 0;
  }
  for (const auto& a : alerts.metric_anomalies) {
    ++out.metric_anomalies;
    bool correct = false;
    for (Incident& g : global) {
      if (a.as_of_ms >= g.from_ms && a.as_of_ms <= g.to_ms) correct = g.caught = true;
    }
    if (correct) ++out.metric_anomalies_correct;
  }
  for (const Incident& g : global) out.global_incidents_caught += g.caught ? 1 : 0;
  return out;
}

}  // namespace crmstream::evaluation
