// Reading the engine's throughput and lag from its Prometheus /metrics text
// (text exposition format 0.0.4). Only the few crmstream_ series the page
// shows are looked at; everything else is skipped. The engine's metric names
// are matched against a short list of candidates, then by a pattern, so the
// dashboard keeps working while names are refined.
//
// Thread-safety: ParsePrometheusText is a pure function; an
// EngineRateTracker is used from one thread.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace crmstream::dashboard {

struct MetricSample {
  std::string name;    // e.g. crmstream_events_consumed_total
  std::string labels;  // the text between the braces, "" when none
  double value = 0;
};

// The samples of every series whose name starts with `prefix`. Comment lines,
// malformed lines and other series are skipped.
std::vector<MetricSample> ParsePrometheusText(std::string_view text,
                                              std::string_view prefix = "crmstream_");

struct EngineMetricNames {
  // Counters of records the engine consumed (summed over labels); the first
  // one present is used. If none is, any crmstream_*_total counter whose name
  // contains "consumed" or "received" (and not "bytes").
  std::vector<std::string> input_counters = {
      "crmstream_input_records_total", "crmstream_events_consumed_total",
      "crmstream_ingest_events_consumed_total", "crmstream_records_consumed_total",
      "crmstream_events_received_total"};
  // Gauges of consumer lag in records (summed over partitions); the first one
  // present is used. If none is, any crmstream_ gauge whose name contains "lag"
  // (not a histogram or summary part).
  std::vector<std::string> lag_gauges = {"crmstream_consumer_lag_records",
                                         "crmstream_consumer_lag"};
};

struct EngineReading {
  std::optional<double> events_per_second;  // needs two readings of the same engine
  std::optional<double> lag;
};

// Turns successive /metrics scrapes into rates. A counter that goes down (the
// engine restarted) starts a new baseline instead of giving a negative rate.
class EngineRateTracker {
 public:
  explicit EngineRateTracker(EngineMetricNames names = {}) : names_(std::move(names)) {}
  EngineReading Update(int64_t wall_ms, const std::vector<MetricSample>& samples);
  // The engine did not answer: the next reading starts a new baseline.
  void Reset() { last_ms_ = -1; }

 private:
  EngineMetricNames names_;
  int64_t last_ms_ = -1;
  double last_count_ = 0;
};

}  // namespace crmstream::dashboard
