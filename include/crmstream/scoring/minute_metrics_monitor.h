// Partition-wide metrics per event-time minute: revenue (purchase amounts),
// tickets (support tickets + complaints) and logins; each closed minute is
// scored by a univariate anomaly detector per metric, enters a rolling
// correlation of the three, and feeds a sustained-shift test per metric
// (models/sustained_shift.h, hour-of-day baseline): a metric that stays off
// its usual level for its hour, by a configured share, long enough is queued
// for the processor as a global anomaly (anomalies()), once per episode. A
// single minute's score alone queues nothing unless point_anomalies is on
// (and then only with the same magnitude). Nothing here is per customer: one
// monitor per partition, fed every accepted event.
//
// A minute closes when an event of a later minute arrives; a jump in event
// time closes the empty minutes between (at most max_empty_minutes, a longer
// silence is an outage of the input, not a metric). Events older than the
// open minute are counted apart (late_events()), not added to a closed one.
//
// Thread-safety: none. OnEvent does not allocate (the anomaly queue's
// capacity is reserved for the largest jump); drain the queue after every
// event.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "crmstream/common/status.h"
#include "crmstream/ingest/event.h"
#include "crmstream/models/rolling_correlation.h"
#include "crmstream/models/sustained_shift.h"
#include "crmstream/models/univariate_anomaly.h"

namespace crmstream::scoring {

struct MinuteMetricsOptions {
  // Closed minutes in the rolling correlation window, >= 2. Default 60.
  int correlation_window_minutes = 60;
  // A coefficient is published (not NaN) only once the window holds at
  // least this many closed minutes: a correlation of three minutes is
  // noise, often +-1. In [2, correlation_window_minutes]. Default 30.
  int correlation_min_minutes = 30;
  // When event time jumps, at most this many empty minutes are fed to the
  // minute models, >= 0. Default 1440.
  int max_empty_minutes = 1440;
  // The global-anomaly test per metric: hour-of-day slots, the relative
  // change looked for and the evidence needed (sustained_shift.h).
  models::SustainedShiftOptions shift;
  // Also queue single minutes whose anomaly score reaches anomaly_level and
  // whose value is off the hour's expected level by shift.change of it and
  // by 6 standard deviations (SustainedShiftDetector::Extreme).
  // Default off: one minute of a partition rarely says anything global.
  bool point_anomalies = false;
  // The point score counted as an anomaly, in (0, 1]. Default 0.99.
  double anomaly_level = 0.99;

  // InvalidArgument naming the field.
  Status Validate() const;
};

// The metrics of one closed event-time minute.
struct MinuteMetrics {
  static constexpr int kMetrics = 3;  // revenue, tickets, logins
  int64_t minute_start_ms = 0;        // 0 before the first minute closes
  double revenue = 0.0;               // purchase amounts (currency units)
  double tickets = 0.0;               // support_ticket + complaint events
  double logins = 0.0;                // login events
  double revenue_score = 0.0;         // anomaly scores in [0, 1]
  double tickets_score = 0.0;
  double logins_score = 0.0;
  // Pearson correlation over the last correlation_window_minutes closed
  // minutes, row-major in the order revenue, tickets, logins; NaN where
  // undefined (a constant metric) or not yet meaningful (fewer than
  // correlation_min_minutes minutes in the window).
  std::array<double, kMetrics * kMetrics> correlation{};
};

// A global anomaly of one metric: a sustained shift, raised at the closed
// minute where the evidence reached the threshold, or (point_anomalies) a
// single minute.
struct MinuteAnomaly {
  int metric = 0;               // 0 revenue, 1 tickets, 2 logins (MinuteMetricName)
  int64_t minute_start_ms = 0;  // the minute that raised it
  // In [0, 1]: 1 - exp(-log-likelihood ratio) for a shift, the minute's
  // anomaly score for a point.
  double score = 0.0;
  // Per-minute means over the shift's minutes (since_ms to minute_start_ms):
  // the metric's value and what the hour-of-day baseline expected.
  double observed = 0.0;
  double expected = 0.0;
  int direction = 0;      // +1 above the expected level, -1 below
  int64_t since_ms = 0;   // start of the shift's first minute
  uint32_t minutes = 0;   // minutes in the shift (1 for a point)
  bool sustained = true;  // false for a point anomaly
};
// "revenue_per_minute", "tickets_per_minute", "logins_per_minute".
std::string_view MinuteMetricName(int metric);

class MinuteMetricsMonitor {
 public:
  // InvalidArgument for options that fail Validate().
  static Result<MinuteMetricsMonitor> Create(const MinuteMetricsOptions& options);

  // Adds an accepted event to its minute, closing the minutes before it.
  void OnEvent(const ingest::Event& event);

  // Closed minutes with an anomalous metric since the last ClearAnomalies().
  std::span<const MinuteAnomaly> anomalies() const { return anomalies_; }
  void ClearAnomalies() { anomalies_.clear(); }
  // The latest closed minute (minute_start_ms == 0 before the first).
  const MinuteMetrics& latest_minute() const { return latest_; }
  // Events older than the open minute, left out of the metrics.
  uint64_t late_events() const { return late_events_; }
  const MinuteMetricsOptions& options() const { return options_; }
  uint64_t minutes_closed() const { return minutes_closed_; }
  // The closed minutes of the correlation window (rows: revenue, tickets,
  // logins; timestamps: minute starts), oldest first.
  const models::RollingCorrelation& correlation() const { return correlation_; }

  // Checkpoints: the whole state (open minute, detectors, correlation
  // window, shift tests, queued anomalies) as a sealed blob (BlobKind::kMinuteMetricsState),
  // replacing `*out`. The three detectors' context tables make it a fixed
  // ~1.2 MB.
  void Encode(std::string* out) const;
  // Restores Encode's blob. Corruption on bad bytes, InvalidArgument if
  // written with another correlation window or shift options. The object is
  // unchanged on error.
  Status Decode(std::string_view blob);

 private:
  MinuteMetricsMonitor(const MinuteMetricsOptions& options, models::RollingCorrelation correlation,
                       const models::SustainedShiftDetector& shift);
  void CloseMinute();

  MinuteMetricsOptions options_;
  // The open minute's sums.
  int64_t open_minute_ = INT64_MIN;  // minute index (ms / 60000)
  double revenue_ = 0.0;
  double tickets_ = 0.0;
  double logins_ = 0.0;
  uint64_t late_events_ = 0;
  std::array<models::UnivariateAnomalyDetector, MinuteMetrics::kMetrics> detectors_;
  std::array<models::SustainedShiftDetector, MinuteMetrics::kMetrics> shifts_;
  models::RollingCorrelation correlation_;
  MinuteMetrics latest_;
  uint64_t minutes_closed_ = 0;
  std::vector<MinuteAnomaly> anomalies_;  // capacity reserved up front
};

}  // namespace crmstream::scoring
