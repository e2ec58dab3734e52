// Configuration of the simulated CRM world: population, churn, injected
// anomalies and injected faults (malformed records, duplicates). Plain
// values with their defaults and units; Validate() once before use, it names
// the first bad field. Immutable after construction of the generator, so
// sharing a const WorldOptions between threads is safe.
#pragma once

#include <cstdint>

#include "crmstream/common/status.h"

namespace crmstream::generator {

inline constexpr int64_t kMillisPerSecond = 1000;
inline constexpr int64_t kMillisPerMinute = 60 * kMillisPerSecond;
inline constexpr int64_t kMillisPerHour = 60 * kMillisPerMinute;
inline constexpr int64_t kMillisPerDay = 24 * kMillisPerHour;

// Anomalies injected into the world, all recorded in the ground truth. Each
// kind is a Poisson process over simulated time; a rate of 0 disables it.
struct AnomalyOptions {
  // Master switch: when false no anomaly is injected whatever the rates.
  bool enabled = false;

  // Refund bursts: one customer files several refunds within hours.
  double refund_bursts_per_day = 2.0;  // over the whole population
  int refund_burst_min_refunds = 4;
  int refund_burst_max_refunds = 8;
  double refund_burst_min_hours = 0.5;  // first to last refund
  double refund_burst_max_hours = 4.0;

  // Global outage: logins and page views collapse, tickets spike.
  double outages_per_day = 0.25;
  double outage_min_hours = 0.5;
  double outage_max_hours = 3.0;
  double outage_activity_factor = 0.1;  // multiplies login, page_view, purchase rates
  double outage_ticket_factor = 5.0;    // multiplies support_ticket and complaint rates (>= 1)

  // Global revenue drop: purchases fall for a window.
  double revenue_drops_per_day = 0.25;
  double revenue_drop_min_hours = 2.0;
  double revenue_drop_max_hours = 12.0;
  double revenue_drop_factor = 0.3;  // multiplies the purchase rate

  Status Validate() const;
};

struct WorldOptions {
  // Everything the generator emits is a pure function of the options,
  // including the seed: same options, byte-identical stream.
  uint64_t seed = 42;

  // Size of the active population. Closed accounts are replaced by new
  // customers arriving a few days later, so the population stays near this.
  int customers = 10000;

  // The first customer's number (its id is "C" + the number, zero-padded to
  // 8 digits); replacements take the numbers after the population's. Worlds
  // with ranges far enough apart share no customer: a population beyond one
  // world's 10M is several worlds one after another.
  uint32_t first_customer_number = 1;

  // Simulated clock at the first event, Unix epoch milliseconds (UTC).
  // Default 2026-01-01T00:00:00Z.
  int64_t start_ms = 1'767'225'600'000;

  // Fraction of the population that closes its account per 30 simulated
  // days, on average over segments (each segment and customer deviates).
  double churn_rate = 0.03;

  // A churner's activity fades for a random period, uniform in
  // [fade_min_days, fade_max_days], before its account_closed event.
  double fade_min_days = 14.0;
  double fade_max_days = 45.0;

  // No account closes before this many days after start_ms (fades may
  // begin earlier, closings wait): a world whose first months carry only
  // "stayed" labels. >= 0, default 0.
  double churn_start_days = 0.0;
  // Share of churners who close without fading (no change of behaviour
  // before account_closed; their truth has fade_start_ms == closed_ms).
  // In [0, 1], default 0.
  double sudden_churn_share = 0.0;
  // Seasonality: every customer's activity swings by this fraction around
  // its mean over a cycle of seasonality_period_days (peak a quarter
  // period after start_ms). In [0, 1), default 0 (none).
  double seasonality_amplitude = 0.0;
  double seasonality_period_days = 7.0;  // > 0

  // Noise that keeps churn prediction honest: every customer has "bad
  // weeks" (less activity, more tickets) about once per this many days
  // (0 disables), each lasting 4 to 12 days.
  double bad_week_every_days = 75.0;

  // Mean days between a closed account and its replacement's arrival.
  double arrival_delay_days = 3.0;

  // Strength of the day/night cycle of activity, in [0, 1): rates swing by
  // this fraction around their daily mean (peak in the afternoon, UTC).
  double diurnal_amplitude = 0.5;

  // false: every amount is in EUR. true: each customer pays in one of EUR,
  // USD, GBP, SEK (mostly EUR).
  bool per_customer_currency = false;

  // false: `timestamp` is epoch milliseconds (an integer). true: an
  // ISO-8601 UTC string "YYYY-MM-DDThh:mm:ss.sssZ".
  bool iso_timestamps = false;

  AnomalyOptions anomalies;

  // Probability, per emitted event, that a malformed record follows it (a
  // record the decoder must reject; its reason goes to the ground truth).
  double malformed_rate = 0.0;

  // Probability, per emitted event, that the same record (same event_id,
  // same bytes) is emitted again right after it.
  double duplicate_rate = 0.0;

  // InvalidArgument naming the first bad field ("WorldOptions.churn_rate
  // must be in [0, 1], got 2"), or OK.
  Status Validate() const;
};

}  // namespace crmstream::generator
