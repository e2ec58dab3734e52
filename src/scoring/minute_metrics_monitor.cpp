#include "crmstream/scoring/minute_metrics_monitor.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>

#include "crmstream/common/binary_io.h"
#include "scoring/scoring_internal.h"

namespace crmstream::scoring {
namespace {

using internal::kMillisPerMinute;
using internal::ReadNested;

// 2: the sustained-shift tests replaced the point anomalies' running mean.
constexpr uint16_t kStateVersion = 2;

models::RollingCorrelationOptions CorrelationOptions(const MinuteMetricsOptions& o) {
  models::RollingCorrelationOptions c;
  c.metrics = MinuteMetrics::kMetrics;
  c.window = models::CorrelationWindowKind::kCount;
  c.window_rows = o.correlation_window_minutes;
  c.metric_names = {"revenue", "tickets", "logins"};
  return c;
}

Status Mismatch(std::string_view what) {
  return Status::Corruption("minute metrics state: " + std::string(what));
}

}  // namespace

Status MinuteMetricsOptions::Validate() const {
  auto bad = [](std::string_view field, std::string_view rule, auto value) {
    return Status::InvalidArgument("MinuteMetricsOptions." + std::string(field) + " must be " +
                                   std::string(rule) + ", got " + std::to_string(value));
  };
  if (correlation_window_minutes < 2) {
    return bad("correlation_window_minutes", ">= 2", correlation_window_minutes);
  }
  if (correlation_min_minutes < 2 || correlation_min_minutes > correlation_window_minutes) {
    return bad("correlation_min_minutes", "in [2, correlation_window_minutes]",
               correlation_min_minutes);
  }
  if (max_empty_minutes < 0) return bad("max_empty_minutes", ">= 0", max_empty_minutes);
  if (!(anomaly_level > 0 && anomaly_level <= 1)) {
    return bad("anomaly_level", "in (0, 1]", anomaly_level);
  }
  if (Status st = shift.Validate(); !st.ok()) {
    return Status::InvalidArgument("MinuteMetricsOptions.shift: " + st.message());
  }
  return Status::OK();
}

std::string_view MinuteMetricName(int metric) {
  static constexpr std::array<std::string_view, MinuteMetrics::kMetrics> kNames = {
      "revenue_per_minute", "tickets_per_minute", "logins_per_minute"};
  return kNames[static_cast<size_t>(metric)];
}

Result<MinuteMetricsMonitor> MinuteMetricsMonitor::Create(const MinuteMetricsOptions& options) {
  CRM_RETURN_NOT_OK(options.Validate());
  CRM_ASSIGN_OR_RETURN(models::RollingCorrelation correlation,
                       models::RollingCorrelation::Create(CorrelationOptions(options)));
  CRM_ASSIGN_OR_RETURN(const models::SustainedShiftDetector shift,
                       models::SustainedShiftDetector::Create(options.shift));
  return MinuteMetricsMonitor(options, std::move(correlation), shift);
}

MinuteMetricsMonitor::MinuteMetricsMonitor(const MinuteMetricsOptions& options,
                                           models::RollingCorrelation correlation,
                                           const models::SustainedShiftDetector& shift)
    : options_(options), shifts_{shift, shift, shift}, correlation_(std::move(correlation)) {
  // A jump in event time closes at most max_empty_minutes + 1 minutes, each
  // with up to three anomalous metrics: the queue never grows past that
  // between two drains.
  anomalies_.reserve(static_cast<size_t>(options.max_empty_minutes + 2) * MinuteMetrics::kMetrics);
  latest_.correlation.fill(std::numeric_limits<double>::quiet_NaN());
}

void MinuteMetricsMonitor::OnEvent(const ingest::Event& event) {
  const int64_t minute = internal::FloorDiv(event.timestamp_ms, kMillisPerMinute);
  if (open_minute_ == INT64_MIN) open_minute_ = minute;
  if (minute < open_minute_) {
    ++late_events_;
    return;
  }
  if (minute > open_minute_) {
    CloseMinute();
    const int64_t empty = std::min<int64_t>(minute - open_minute_ - 1, options_.max_empty_minutes);
    for (int64_t k = empty; k >= 1; --k) {
      open_minute_ = minute - k;
      CloseMinute();
    }
    open_minute_ = minute;
  }
  switch (event.type) {
    case ingest::EventType::kPurchase:
      revenue_ += event.amount;
      break;
    case ingest::EventType::kSupportTicket:
    case ingest::EventType::kComplaint:
      tickets_ += 1.0;
      break;
    case ingest::EventType::kLogin:
      logins_ += 1.0;
      break;
    default:
      break;
  }
}

void MinuteMetricsMonitor::CloseMinute() {
  const int64_t t = open_minute_ * kMillisPerMinute;
  const std::array<double, MinuteMetrics::kMetrics> values = {revenue_, tickets_, logins_};
  MinuteMetrics& m = latest_;
  m.minute_start_ms = t;
  m.revenue = values[0];
  m.tickets = values[1];
  m.logins = values[2];
  m.revenue_score = detectors_[0].Score(t, values[0]);
  m.tickets_score = detectors_[1].Score(t, values[1]);
  m.logins_score = detectors_[2].Score(t, values[2]);
  const std::array<double, MinuteMetrics::kMetrics> scores = {m.revenue_score, m.tickets_score,
                                                              m.logins_score};
  // The hour of the day (UTC) is the shift tests' season.
  const auto hour = static_cast<uint32_t>(((internal::FloorDiv(t, 3'600'000) % 24) + 24) % 24);
  for (int i = 0; i < MinuteMetrics::kMetrics; ++i) {
    const auto k = static_cast<size_t>(i);
    const double hour_expected = shifts_[k].expected(hour);
    const bool warm = minutes_closed_ > 0;
    if (shifts_[k].Add(t, hour, values[k]) && warm && anomalies_.size() < anomalies_.capacity()) {
      const models::ShiftAlarm& a = shifts_[k].last_alarm();
      anomalies_.push_back({i, t, 1.0 - std::exp(-a.statistic), a.observed_mean, a.expected_mean,
                            a.direction, a.since, static_cast<uint32_t>(a.points), true});
    } else if (options_.point_anomalies && warm && scores[k] >= options_.anomaly_level &&
               shifts_[k].Extreme(hour, values[k]) && anomalies_.size() < anomalies_.capacity()) {
      anomalies_.push_back({i, t, scores[k], values[k], hour_expected,
                            values[k] >= hour_expected ? 1 : -1, t, 1, false});
    }
  }
  ++minutes_closed_;
  // Minutes close in increasing order, so Add cannot refuse the timestamp.
  static_cast<void>(correlation_.Add(values, t));
  const bool enough = correlation_.count() >= options_.correlation_min_minutes;
  for (int i = 0; i < MinuteMetrics::kMetrics; ++i) {
    for (int j = 0; j < MinuteMetrics::kMetrics; ++j) {
      m.correlation[static_cast<size_t>(i * MinuteMetrics::kMetrics + j)] =
          enough ? correlation_.Correlation(i, j) : std::numeric_limits<double>::quiet_NaN();
    }
  }
  revenue_ = 0.0;
  tickets_ = 0.0;
  logins_ = 0.0;
}

void MinuteMetricsMonitor::Encode(std::string* out) const {
  std::string payload;
  BinaryWriter w(&payload);
  w.Put<int64_t>(open_minute_);
  w.Put<double>(revenue_);
  w.Put<double>(tickets_);
  w.Put<double>(logins_);
  w.Put<uint64_t>(late_events_);
  for (const auto& detector : detectors_) w.PutBytes(detector.Serialize());
  for (const auto& shift : shifts_) shift.Write(&w);
  w.PutBytes(correlation_.Serialize());
  const MinuteMetrics& m = latest_;
  w.Put<int64_t>(m.minute_start_ms);
  for (double v :
       {m.revenue, m.tickets, m.logins, m.revenue_score, m.tickets_score, m.logins_score}) {
    w.Put<double>(v);
  }
  for (double v : m.correlation) w.Put<double>(v);
  w.Put<uint64_t>(minutes_closed_);
  // Not yet drained by the processor: they would be lost otherwise.
  w.Put<uint32_t>(static_cast<uint32_t>(anomalies_.size()));
  for (const MinuteAnomaly& a : anomalies_) {
    w.Put<int32_t>(a.metric);
    w.Put<int64_t>(a.minute_start_ms);
    w.Put<double>(a.score);
    w.Put<double>(a.observed);
    w.Put<double>(a.expected);
    w.Put<int32_t>(a.direction);
    w.Put<int64_t>(a.since_ms);
    w.Put<uint32_t>(a.minutes);
    w.Put<uint8_t>(a.sustained ? 1 : 0);
  }
  *out = SealBlob(BlobKind::kMinuteMetricsState, kStateVersion, payload);
}

Status MinuteMetricsMonitor::Decode(std::string_view blob) {
  CRM_ASSIGN_OR_RETURN(const std::string_view payload,
                       OpenBlobPayload(blob, BlobKind::kMinuteMetricsState, kStateVersion));
  BinaryReader in(payload);
  int64_t open_minute = 0;
  double revenue = 0, tickets = 0, logins = 0;
  uint64_t late_events = 0;
  CRM_RETURN_NOT_OK(in.Get(&open_minute));
  CRM_RETURN_NOT_OK(in.Get(&revenue));
  CRM_RETURN_NOT_OK(in.Get(&tickets));
  CRM_RETURN_NOT_OK(in.Get(&logins));
  CRM_RETURN_NOT_OK(in.Get(&late_events));
  std::string scratch;
  std::array<models::UnivariateAnomalyDetector, MinuteMetrics::kMetrics> detectors;
  for (auto& detector : detectors) {
    CRM_ASSIGN_OR_RETURN(detector, ReadNested<models::UnivariateAnomalyDetector>(in, &scratch));
  }
  std::vector<models::SustainedShiftDetector> shifts;
  for (int i = 0; i < MinuteMetrics::kMetrics; ++i) {
    CRM_ASSIGN_OR_RETURN(models::SustainedShiftDetector shift,
                         models::SustainedShiftDetector::Read(&in));
    const models::SustainedShiftOptions& o = shift.options();
    if (o.season_slots != options_.shift.season_slots ||
        o.baseline_horizon != options_.shift.baseline_horizon ||
        o.warmup != options_.shift.warmup || o.change != options_.shift.change ||
        o.threshold != options_.shift.threshold || o.min_points != options_.shift.min_points ||
        o.level_horizon != options_.shift.level_horizon) {
      return Status::InvalidArgument("minute metrics state: other shift options");
    }
    shifts.push_back(std::move(shift));
  }
  CRM_ASSIGN_OR_RETURN(models::RollingCorrelation correlation,
                       ReadNested<models::RollingCorrelation>(in, &scratch));
  if (correlation.metrics() != MinuteMetrics::kMetrics ||
      correlation.options().window != models::CorrelationWindowKind::kCount ||
      correlation.options().window_rows != options_.correlation_window_minutes) {
    return Status::InvalidArgument("minute metrics state: another correlation window");
  }
  MinuteMetrics latest;
  CRM_RETURN_NOT_OK(in.Get(&latest.minute_start_ms));
  for (double* v : {&latest.revenue, &latest.tickets, &latest.logins, &latest.revenue_score,
                    &latest.tickets_score, &latest.logins_score}) {
    CRM_RETURN_NOT_OK(in.Get(v));
  }
  for (double& v : latest.correlation) CRM_RETURN_NOT_OK(in.Get(&v));
  uint64_t minutes_closed = 0;
  CRM_RETURN_NOT_OK(in.Get(&minutes_closed));
  uint32_t queued = 0;
  CRM_RETURN_NOT_OK(in.Get(&queued));
  if (queued > anomalies_.capacity()) return Mismatch("too many queued minute anomalies");
  std::vector<MinuteAnomaly> anomalies(queued);
  for (MinuteAnomaly& a : anomalies) {
    CRM_RETURN_NOT_OK(in.Get(&a.metric));
    CRM_RETURN_NOT_OK(in.Get(&a.minute_start_ms));
    CRM_RETURN_NOT_OK(in.Get(&a.score));
    CRM_RETURN_NOT_OK(in.Get(&a.observed));
    CRM_RETURN_NOT_OK(in.Get(&a.expected));
    uint8_t sustained = 0;
    CRM_RETURN_NOT_OK(in.Get(&a.direction));
    CRM_RETURN_NOT_OK(in.Get(&a.since_ms));
    CRM_RETURN_NOT_OK(in.Get(&a.minutes));
    CRM_RETURN_NOT_OK(in.Get(&sustained));
    if (a.metric < 0 || a.metric >= MinuteMetrics::kMetrics) return Mismatch("bad metric");
    if ((a.direction != 1 && a.direction != -1) || sustained > 1) {
      return Mismatch("bad anomaly direction");
    }
    a.sustained = sustained == 1;
  }
  CRM_RETURN_NOT_OK(in.ExpectEnd());

  open_minute_ = open_minute;
  revenue_ = revenue;
  tickets_ = tickets;
  logins_ = logins;
  late_events_ = late_events;
  detectors_ = std::move(detectors);
  correlation_ = std::move(correlation);
  latest_ = latest;
  for (size_t i = 0; i < shifts_.size(); ++i) shifts_[i] = std::move(shifts[i]);
  minutes_closed_ = minutes_closed;
  anomalies_.assign(anomalies.begin(), anomalies.end());  // keeps capacity
  return Status::OK();
}

}  // namespace crmstream::scoring
