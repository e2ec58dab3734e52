// DashboardView: the dashboard's bounded, in-memory picture of the engine's
// output topics (docs/dashboard.md). Records are applied one at a time as
// they are consumed; Snapshot() renders the whole picture as one compact JSON
// document for the page (GET /api/state and the 1 Hz live stream).
//
// Everything it keeps is bounded: the alert feed and the anomaly timeline
// keep the newest N entries, the churn-risk histogram keeps one small entry
// per customer up to a cap (customers past the cap are counted, not kept),
// engine samples keep a fixed window. Unknown fields are ignored, malformed
// records are counted and dropped.
//
// Thread-safety: every public method takes the view's mutex, so one thread
// (the Kafka reader) may apply records while others (the HTTP server) take
// snapshots. This is not the engine's hot path; a mutex is cheap here.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "crmstream/config/engine_config.h"

namespace crmstream::dashboard {

// Which output topic a record came from.
using schema::kOutputKindCount;
using schema::OutputKind;

struct DashboardViewOptions {
  size_t max_alerts = 50;                  // newest alerts kept for the feed
  size_t max_anomalies = 200;              // newest anomalies kept for the timeline
  size_t max_customers = 1'000'000;        // customers whose latest churn risk is kept
  int histogram_bins = 20;                 // bins of the churn-risk histogram over [0, 1]
  size_t max_engine_samples = 300;         // throughput/lag samples kept (1 per second: 5 min)
  size_t max_alerted_customers = 100'000;  // customers whose recent alerts are kept (oldest go)
  size_t alerts_per_customer = 3;          // newest alerts kept per customer
};

// One reading of the engine's /metrics (or of the output rates when the
// engine's admin port does not answer).
struct EngineSample {
  int64_t wall_ms = 0;
  bool engine_reachable = false;
  double events_per_second = -1;   // engine input rate, -1 unknown
  double lag = -1;                 // engine consumer lag in records, -1 unknown
  double outputs_per_second = -1;  // records/s seen on the output topics
};

class DashboardView {
 public:
  explicit DashboardView(DashboardViewOptions options = {});
  DashboardView(const DashboardView&) = delete;
  DashboardView& operator=(const DashboardView&) = delete;
  ~DashboardView();

  // Applies one record's JSON value. Returns false (and counts it) when the
  // value is not a JSON object of the expected shape.
  bool Apply(OutputKind kind, std::string_view value);

  void AddEngineSample(const EngineSample& sample);
  // Whether the Kafka reader currently has a working connection.
  void SetFeedStatus(bool connected, std::string_view detail);

  // Records applied per topic since start (for output rates).
  std::array<uint64_t, kOutputKindCount> RecordCounts() const;

  // The whole picture as compact JSON (a few KB).
  std::string Snapshot(int64_t now_ms) const;

  // The customer's newest churn alerts as published (a JSON array, newest
  // first; "[]" when none is kept), for the customer lookup.
  std::string CustomerAlertsJson(std::string_view customer_id) const;

 private:
  struct State;
  mutable std::mutex mu_;
  std::unique_ptr<State> state_;
};

}  // namespace crmstream::dashboard
