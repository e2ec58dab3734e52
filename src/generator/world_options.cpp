#include "crmstream/generator/world_options.h"

#include <cmath>
#include <string>

namespace crmstream::generator {
namespace {

std::string Num(double v) {
  std::string s = std::to_string(v);
  // std::to_string prints six decimals; drop the noise for readable errors.
  while (s.size() > 1 && s.back() == '0') s.pop_back();
  if (!s.empty() && s.back() == '.') s.pop_back();
  return s;
}

Status Bad(std::string_view field, std::string_view rule, double got) {
  return Status::InvalidArgument(std::string(field) + " must be " + std::string(rule) + ", got " +
                                 Num(got));
}

// Closed interval check that also rejects NaN.
bool Within(double v, double lo, double hi) { return v >= lo && v <= hi; }

Status CheckHours(std::string_view min_field, double min_h, std::string_view max_field,
                  double max_h) {
  if (!Within(min_h, 1.0 / 60.0, 24.0 * 30.0)) {
    return Bad(min_field, "in [1/60, 720] hours", min_h);
  }
  if (!Within(max_h, min_h, 24.0 * 30.0)) {
    return Bad(max_field, "in [" + Num(min_h) + ", 720] hours", max_h);
  }
  return Status::OK();
}

}  // namespace

Status AnomalyOptions::Validate() const {
  constexpr double kMaxPerDay = 1e4;
  if (!Within(refund_bursts_per_day, 0, kMaxPerDay)) {
    return Bad("AnomalyOptions.refund_bursts_per_day", "in [0, 10000]", refund_bursts_per_day);
  }
  if (refund_burst_min_refunds < 2 || refund_burst_min_refunds > 1000) {
    return Bad("AnomalyOptions.refund_burst_min_refunds", "in [2, 1000]", refund_burst_min_refunds);
  }
  if (refund_burst_max_refunds < refund_burst_min_refunds || refund_burst_max_refunds > 1000) {
    return Bad("AnomalyOptions.refund_burst_max_refunds", "in [refund_burst_min_refunds, 1000]",
               refund_burst_max_refunds);
  }
  CRM_RETURN_NOT_OK(CheckHours("AnomalyOptions.refund_burst_min_hours", refund_burst_min_hours,
                               "AnomalyOptions.refund_burst_max_hours", refund_burst_max_hours));
  if (!Within(outages_per_day, 0, kMaxPerDay)) {
    return Bad("AnomalyOptions.outages_per_day", "in [0, 10000]", outages_per_day);
  }
  CRM_RETURN_NOT_OK(CheckHours("AnomalyOptions.outage_min_hours", outage_min_hours,
                               "AnomalyOptions.outage_max_hours", outage_max_hours));
  if (!Within(outage_activity_factor, 0, 1)) {
    return Bad("AnomalyOptions.outage_activity_factor", "in [0, 1]", outage_activity_factor);
  }
  if (!Within(outage_ticket_factor, 1, 100)) {
    return Bad("AnomalyOptions.outage_ticket_factor", "in [1, 100]", outage_ticket_factor);
  }
  if (!Within(revenue_drops_per_day, 0, kMaxPerDay)) {
    return Bad("AnomalyOptions.revenue_drops_per_day", "in [0, 10000]", revenue_drops_per_day);
  }
  CRM_RETURN_NOT_OK(CheckHours("AnomalyOptions.revenue_drop_min_hours", revenue_drop_min_hours,
                               "AnomalyOptions.revenue_drop_max_hours", revenue_drop_max_hours));
  if (!Within(revenue_drop_factor, 0, 1)) {
    return Bad("AnomalyOptions.revenue_drop_factor", "in [0, 1]", revenue_drop_factor);
  }
  return Status::OK();
}

Status WorldOptions::Validate() const {
  // Customer numbers are 32-bit and replacements keep adding to them.
  if (customers < 1 || customers > 10'000'000) {
    return Bad("WorldOptions.customers", "in [1, 10000000]", customers);
  }
  // Room for more than 2^31 replacements after the last number.
  if (first_customer_number < 1 || first_customer_number > (uint32_t{1} << 31)) {
    return Bad("WorldOptions.first_customer_number", "in [1, 2147483648]", first_customer_number);
  }
  // 1970 to 2200: keeps every simulated time far from int64 overflow.
  constexpr int64_t kMaxStartMs = 7'258'118'400'000;
  if (start_ms < 0 || start_ms > kMaxStartMs) {
    return Bad("WorldOptions.start_ms", "in [0, 7258118400000] (1970..2200)",
               static_cast<double>(start_ms));
  }
  if (!Within(churn_rate, 0, 1)) return Bad("WorldOptions.churn_rate", "in [0, 1]", churn_rate);
  if (!Within(fade_min_days, 1, 365)) {
    return Bad("WorldOptions.fade_min_days", "in [1, 365]", fade_min_days);
  }
  if (!Within(fade_max_days, fade_min_days, 365)) {
    return Bad("WorldOptions.fade_max_days", "in [fade_min_days, 365]", fade_max_days);
  }
  if (!Within(churn_start_days, 0, 36500)) {
    return Bad("WorldOptions.churn_start_days", "in [0, 36500]", churn_start_days);
  }
  if (!Within(sudden_churn_share, 0, 1)) {
    return Bad("WorldOptions.sudden_churn_share", "in [0, 1]", sudden_churn_share);
  }
  if (!(seasonality_amplitude >= 0 && seasonality_amplitude < 1)) {
    return Bad("WorldOptions.seasonality_amplitude", "in [0, 1)", seasonality_amplitude);
  }
  if (!Within(seasonality_period_days, 1.0 / 24, 3650)) {
    return Bad("WorldOptions.seasonality_period_days", "in [1/24, 3650]", seasonality_period_days);
  }
  if (!(bad_week_every_days == 0 || Within(bad_week_every_days, 1, 1e5))) {
    return Bad("WorldOptions.bad_week_every_days", "0 or in [1, 100000]", bad_week_every_days);
  }
  if (!Within(arrival_delay_days, 0, 365)) {
    return Bad("WorldOptions.arrival_delay_days", "in [0, 365]", arrival_delay_days);
  }
  if (!(diurnal_amplitude >= 0 && diurnal_amplitude < 1)) {
    return Bad("WorldOptions.diurnal_amplitude", "in [0, 1)", diurnal_amplitude);
  }
  if (!(malformed_rate >= 0 && malformed_rate < 1)) {
    return Bad("WorldOptions.malformed_rate", "in [0, 1)", malformed_rate);
  }
  if (!(duplicate_rate >= 0 && duplicate_rate < 1)) {
    return Bad("WorldOptions.duplicate_rate", "in [0, 1)", duplicate_rate);
  }
  return anomalies.Validate().WithContext("WorldOptions.anomalies");
}

}  // namespace crmstream::generator
