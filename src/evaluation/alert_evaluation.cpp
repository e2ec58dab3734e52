#include "crmstream/evaluation/alert_evaluation.h"

#include <algorithm>
#include <charconv>
#include <string>
#include <unordered_map>
#include <vector>

#include "crmstream/generator/world_generator.h"

namespace crmstream::evaluation {
namespace {

constexpr int64_t kMillisPerDay = 86'400'000;

struct PublishedAlert {
  std::string customer_id;
  int64_t as_of_ms;
};

// Keeps the churn alerts (customer, time) and drops everything else.
class AlertCollector final : public OutputSink {
 public:
  void Emit(OutputKind kind, std::string_view key, std::string_view value) override {
    if (kind != OutputKind::kChurnAlerts) return;
    alerts.push_back({std::string(key), Int64Field(value, "\"as_of_ms\":")});
    for (size_t s = 0; s < kSeverities.size(); ++s) {
      if (value.find(kSeverities[s]) != std::string_view::npos) ++by_severity[s];
    }
  }
  std::vector<PublishedAlert> alerts;
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
};

}  // namespace

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
  return processor.Validate();
}

Result<AlertEvaluation> EvaluateChurnAlerts(const AlertEvaluationOptions& options) {
  CRM_RETURN_NOT_OK(options.Validate());
  generator::WorldOptions world;
  world.seed = options.seed;
  world.customers = options.customers;
  world.churn_rate = options.churn_rate;
  CRM_ASSIGN_OR_RETURN(auto gen, generator::WorldGenerator::Create(world));

  AlertCollector alerts;
  ProcessorOptions po = options.processor;
  po.models_enabled = true;
  po.emit_churn_alerts = true;
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
    // Alerts are decided per consumed batch in the engine (2048 records).
    if ((out.records & 2047) == 0) processor->RefreshScores();
    last_ms = ts;
  }
  processor->FlushOutputs();
  out.simulated_days = static_cast<double>(last_ms - start) / kMillisPerDay;
  out.alerts_published = alerts.alerts.size();
  out.alerts_by_severity = alerts.by_severity;
  out.churn_auc = processor->customer_models().quality().warm_churn_auc;

  std::unordered_map<std::string, int64_t> closed_at;
  for (const auto& c : gen->ground_truth().churners) {
    if (c.closed_ms < end) closed_at[c.customer_id] = c.closed_ms;
  }
  std::unordered_map<std::string, std::vector<int64_t>> alerts_of;
  for (const auto& a : alerts.alerts) {
    alerts_of[a.customer_id].push_back(a.as_of_ms);
    if (a.as_of_ms < warm || a.as_of_ms > end - horizon) continue;
    ++out.alerts_scored;
    auto it = closed_at.find(a.customer_id);
    if (it != closed_at.end() && it->second > a.as_of_ms && it->second <= a.as_of_ms + horizon) {
      ++out.alerts_correct;
    }
  }
  std::vector<double> leads;
  for (const auto& [customer, closed] : closed_at) {
    if (closed < warm) continue;
    ++out.churners;
    auto it = alerts_of.find(customer);
    if (it == alerts_of.end()) continue;
    int64_t first = INT64_MAX;
    for (int64_t t : it->second) {
      if (t >= closed - horizon && t < closed) first = std::min(first, t);
    }
    if (first == INT64_MAX) continue;
    ++out.churners_caught;
    leads.push_back(static_cast<double>(closed - first) / kMillisPerDay);
  }
  out.precision = out.alerts_scored == 0 ? 0.0
                                         : static_cast<double>(out.alerts_correct) /
                                               static_cast<double>(out.alerts_scored);
  out.recall = out.churners == 0
                   ? 0.0
                   : static_cast<double>(out.churners_caught) / static_cast<double>(out.churners);
  if (!leads.empty()) {
    std::sort(leads.begin(), leads.end());
    const size_t n = leads.size();
    out.median_lead_days = n % 2 == 1 ? leads[n / 2] : 0.5 * (leads[n / 2 - 1] + leads[n / 2]);
  }
  return out;
}

}  // namespace crmstream::evaluation
