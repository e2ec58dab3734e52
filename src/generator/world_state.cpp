#include "generator/world_state.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>
#include <limits>
#include <numbers>

#include "crmstream/common/json_writer.h"
#include "crmstream/ingest/event.h"

namespace crmstream::generator {
namespace {

constexpr int64_t kNever = std::numeric_limits<int64_t>::max();

// Event types as indices into the per-type tables (ingest/event.h's order
// and wire names).
constexpr int TypeIndex(ingest::EventType t) { return static_cast<int>(t); }
constexpr int kPurchase = TypeIndex(ingest::EventType::kPurchase);
constexpr int kLogin = TypeIndex(ingest::EventType::kLogin);
constexpr int kPageView = TypeIndex(ingest::EventType::kPageView);
constexpr int kSupportTicket = TypeIndex(ingest::EventType::kSupportTicket);
constexpr int kComplaint = TypeIndex(ingest::EventType::kComplaint);
constexpr int kRefund = TypeIndex(ingest::EventType::kRefund);
constexpr int kPlanChange = TypeIndex(ingest::EventType::kPlanChange);
constexpr int kAccountClosed = TypeIndex(ingest::EventType::kAccountClosed);
// Types drawn from rates: all but account_closed (the last), which the fade
// schedules.
constexpr int kRatedTypes = kAccountClosed;
static_assert(kAccountClosed == ingest::kEventTypeCount - 1);

enum : int { kWeb = 0, kApp, kStore, kPhone, kEmail };
constexpr std::string_view kChannelNames[] = {"web", "app", "store", "phone", "email"};
constexpr std::string_view kPlanNames[] = {"basic", "plus", "premium"};
constexpr std::string_view kCurrencies[] = {"EUR", "USD", "GBP", "SEK"};
constexpr double kCurrencyWeights[] = {0.70, 0.15, 0.10, 0.05};

// What a latent segment does. Rates are events per customer per day at the
// daily mean of the diurnal cycle; page views come mostly from the sessions
// that follow logins, the rate here is the stray ones.
struct SegmentProfile {
  double weight;  // share of the established population
  double rate_per_day[kRatedTypes];
  double pages_per_login;
  double amount_log_mean;  // purchase amounts are log-normal
  double amount_log_sd;
  double churn_weight;  // relative churn hazard
  double app_share;
  double store_share;
  double plan_weights[3];
  double upgrade_share;  // of ordinary plan changes, the share that upgrade
};

//                     purchase login page  ticket complaint refund plan
constexpr SegmentProfile kProfiles[kSegmentCount] = {
    // bargain hunters: browse a lot, buy often and cheap, refund often.
    {0.25,
     {0.30, 0.90, 0.60, 0.030, 0.008, 0.030, 0.004},
     6.0,
     3.09,
     0.5,
     1.0,
     0.50,
     0.30,
     {0.70, 0.25, 0.05},
     0.3},
    // loyal, high value: frequent logins, large baskets, few problems.
    {0.20,
     {0.22, 1.40, 0.40, 0.015, 0.003, 0.008, 0.004},
     4.0,
     4.70,
     0.6,
     0.3,
     0.65,
     0.25,
     {0.10, 0.40, 0.50},
     0.6},
    // occasional: rarely around, medium baskets.
    {0.35,
     {0.04, 0.22, 0.15, 0.008, 0.002, 0.003, 0.002},
     3.0,
     4.01,
     0.7,
     1.0,
     0.30,
     0.45,
     {0.60, 0.30, 0.10},
     0.4},
    // newcomers: exploring, many logins, few purchases; mature after 45-90 days.
    {0.00,
     {0.08, 1.30, 0.80, 0.040, 0.006, 0.004, 0.010},
     5.0,
     3.56,
     0.6,
     1.6,
     0.60,
     0.15,
     {0.60, 0.30, 0.10},
     0.7},
    // at risk: low engagement, many tickets and complaints.
    {0.20,
     {0.05, 0.35, 0.20, 0.050, 0.020, 0.010, 0.006},
     3.0,
     3.81,
     0.7,
     2.6,
     0.40,
     0.30,
     {0.50, 0.35, 0.15},
     0.2},
};
constexpr double kInitialNewcomerShare = 0.08;

// The fade before churn, p in [0, 1] its progress: activity (logins, page
// views, purchases) falls from 0.8 to 0.1 of normal, tickets and complaints
// rise to 4 and 5 times normal, refunds to twice.
constexpr double kFadeActivityFloor = 0.1;
constexpr double kFadeActivitySpan = 0.7;
constexpr double kFadeTicketBoost = 3.0;
constexpr double kFadeComplaintBoost = 4.0;
constexpr double kFadeRefundBoost = 1.0;
constexpr double kFadeDowngradeShare = 0.4;
// Bad weeks, the noise that makes fades hard to tell from ordinary dips.
constexpr double kBadWeekActivity = 0.45;
constexpr double kBadWeekTicketBoost = 1.5;
constexpr double kBadWeekMinDays = 4;
constexpr double kBadWeekMaxDays = 12;
// Page views of a session follow its login within seconds to minutes.
constexpr double kFirstPageDelayMs = 2'000;
constexpr double kMeanPageGapMs = 40'000;

int64_t ToMs(double ms) {
  // Far-future times (a customer who would churn in centuries) become never.
  return ms >= 1e15 ? kNever : static_cast<int64_t>(ms);
}

template <size_t N>
int DrawWeighted(Rng& rng, const double (&weights)[N]) {
  double total = 0;
  for (double w : weights) total += w;
  double u = rng.Uniform() * total;
  for (size_t i = 0; i + 1 < N; ++i) {
    if (u < weights[i]) return static_cast<int>(i);
    u -= weights[i];
  }
  return static_cast<int>(N - 1);
}

Segment DrawEstablishedSegment(Rng& rng) {
  double weights[kSegmentCount];
  for (int s = 0; s < kSegmentCount; ++s) weights[s] = kProfiles[s].weight;
  return static_cast<Segment>(DrawWeighted(rng, weights));
}

float Clamp01(double v, double lo, double hi) { return static_cast<float>(std::clamp(v, lo, hi)); }

// Howard Hinnant's civil_from_days: days since 1970-01-01 to y/m/d.
void CivilFromDays(int64_t z, int64_t* y, unsigned* m, unsigned* d) {
  z += 719468;
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const auto doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  *d = doy - (153 * mp + 2) / 5 + 1;
  *m = mp < 10 ? mp + 3 : mp - 9;
  *y = static_cast<int64_t>(yoe) + era * 400 + (*m <= 2);
}

void PutDigits(char* p, int64_t v, int width) {
  for (int i = width - 1; i >= 0; --i) {
    p[i] = static_cast<char>('0' + v % 10);
    v /= 10;
  }
}

// "YYYY-MM-DDThh:mm:ss.sssZ" (24 bytes), for times from 1970 on.
std::string_view FormatIso(int64_t ms, char (&buf)[32]) {
  const int64_t days = ms / kMillisPerDay;
  int64_t rem = ms % kMillisPerDay;
  int64_t y;
  unsigned mo, d;
  CivilFromDays(days, &y, &mo, &d);
  std::memcpy(buf, "0000-00-00T00:00:00.000Z", 24);
  PutDigits(buf, y, 4);
  PutDigits(buf + 5, mo, 2);
  PutDigits(buf + 8, d, 2);
  PutDigits(buf + 11, rem / kMillisPerHour, 2);
  rem %= kMillisPerHour;
  PutDigits(buf + 14, rem / kMillisPerMinute, 2);
  rem %= kMillisPerMinute;
  PutDigits(buf + 17, rem / 1000, 2);
  PutDigits(buf + 20, rem % 1000, 3);
  return {buf, 24};
}

// "C" + the number zero-padded to at least 8 digits; returns the length.
uint8_t FormatCustomerId(uint64_t number, char* out) {
  out[0] = 'C';
  char digits[24];
  const auto r = std::to_chars(digits, digits + sizeof(digits), number);
  const auto len = static_cast<int>(r.ptr - digits);
  const int pad = len < 8 ? 8 - len : 0;
  std::memset(out + 1, '0', pad);
  std::memcpy(out + 1 + pad, digits, len);
  return static_cast<uint8_t>(1 + pad + len);
}

// prefix + decimal counter, in a stack buffer.
std::string_view NumberedId(std::string_view prefix, int64_t n, char (&buf)[64]) {
  std::memcpy(buf, prefix.data(), prefix.size());
  const auto r = std::to_chars(buf + prefix.size(), buf + sizeof(buf), n);
  return {buf, static_cast<size_t>(r.ptr - buf)};
}

}  // namespace

WorldState::WorldState(const WorldOptions& options)
    : options_(options),
      rng_(options.seed),
      noise_(options.seed ^ 0xD1B54A32D192ED03ull),
      next_number_(options.first_customer_number),
      now_ms_(options.start_ms),
      next_burst_trigger_ms_(kNever) {
  event_id_prefix_ = "e-" + std::to_string(options_.seed) + "-";
  malformed_id_prefix_ = "m-" + std::to_string(options_.seed) + "-";
  constexpr double kTwoPi = 6.283185307179586;
  for (int h = 0; h < 24; ++h) {
    // Peak at 15:00 UTC, trough at 03:00.
    diurnal_[h] = 1.0 + options_.diurnal_amplitude * std::sin(kTwoPi * (h + 0.5 - 9.0) / 24.0);
  }
  // Scale the segments' relative hazards so the population loses
  // churn_rate of its members per 30 days.
  double mean_weight =
      kInitialNewcomerShare * kProfiles[static_cast<int>(Segment::kNewcomer)].churn_weight;
  for (const auto& p : kProfiles)
    mean_weight += (1 - kInitialNewcomerShare) * p.weight * p.churn_weight;
  base_hazard_per_day_ = options_.churn_rate / 30.0 / mean_weight;

  const auto n = static_cast<uint32_t>(options_.customers);
  slots_.resize(n);
  customers_.reserve(n);
  std::vector<int64_t> times(n);
  for (uint32_t s = 0; s < n; ++s) {
    CreateCustomer(s, options_.start_ms, /*initial=*/true);
    times[s] = NextActionTime(slots_[s]);
  }
  heap_.Build(times);

  const AnomalyOptions& a = options_.anomalies;
  outage_ = {kNever, kNever, true};
  revenue_drop_ = {kNever, kNever, true};
  if (a.enabled) {
    // Draw each process's first window from the start.
    outage_ = {options_.start_ms, options_.start_ms, true};
    revenue_drop_ = outage_;
    AdvanceWindows(options_.start_ms);
    if (a.refund_bursts_per_day > 0) {
      next_burst_trigger_ms_ =
          ToMs(options_.start_ms + rng_.ExponentialMean(kMillisPerDay / a.refund_bursts_per_day));
    }
  }
}

void WorldState::CreateCustomer(uint32_t slot, int64_t now, bool initial) {
  Customer& c = slots_[slot];
  c = Customer{};
  c.number = next_number_++;
  c.id_len = FormatCustomerId(c.number, c.id);

  Segment segment = Segment::kNewcomer;
  Segment mature = DrawEstablishedSegment(rng_);
  int64_t joined = now;
  c.mature_ms = kNever;
  if (initial) {
    if (rng_.Bernoulli(kInitialNewcomerShare)) {
      joined = now - ToMs(rng_.Uniform(0, 45) * kMillisPerDay);
      c.mature_ms = joined + ToMs(rng_.Uniform(45, 90) * kMillisPerDay);
    } else {
      segment = mature;
      // Tenure: at least two months, mean about two years.
      joined = now - ToMs((60 + rng_.ExponentialMean(670)) * kMillisPerDay);
    }
  } else {
    c.mature_ms = now + ToMs(rng_.Uniform(45, 90) * kMillisPerDay);
  }
  c.segment = static_cast<uint8_t>(segment);
  c.mature_segment = static_cast<uint8_t>(mature);
  customers_.push_back({joined, c.segment});

  const SegmentProfile& p = kProfiles[c.segment];
  constexpr double kActivitySd = 0.35;
  c.activity = std::exp(kActivitySd * rng_.Normal() - kActivitySd * kActivitySd / 2);
  c.log_value = 0.4 * rng_.Normal();
  c.app_share = Clamp01(p.app_share + 0.15 * rng_.Normal(), 0.02, 0.98);
  c.store_share = Clamp01(p.store_share + 0.1 * rng_.Normal(), 0.0, 0.9);
  c.plan = static_cast<uint8_t>(DrawWeighted(rng_, p.plan_weights));
  c.currency = options_.per_customer_currency
                   ? static_cast<uint8_t>(DrawWeighted(rng_, kCurrencyWeights))
                   : 0;

  // Churn: the decision time follows the customer's hazard; the fade runs
  // from it to account_closed. The first population is already in motion:
  // some of them started fading before the stream begins.
  const double hazard =
      base_hazard_per_day_ * p.churn_weight * std::exp(0.4 * rng_.Normal() - 0.08);
  double fade_days = rng_.Uniform(options_.fade_min_days, options_.fade_max_days);
  // Drawn only when enabled, so that worlds without sudden churners are the
  // same stream as before the option existed.
  const bool sudden =
      options_.sudden_churn_share > 0 && rng_.Bernoulli(options_.sudden_churn_share);
  if (sudden) fade_days = 0;
  // The churn clock starts no earlier than the first day closings may happen.
  const double churn_start =
      static_cast<double>(options_.start_ms) + options_.churn_start_days * kMillisPerDay;
  c.fade_start_ms = kNever;
  c.close_ms = kNever;
  c.downgrade_ms = kNever;
  if (hazard > 0) {
    const double wait_ms = rng_.ExponentialMean(kMillisPerDay / hazard);
    if (initial) {
      c.close_ms = ToMs(std::max(static_cast<double>(now), churn_start) + wait_ms);
      if (c.close_ms != kNever) {
        c.fade_start_ms = std::max(joined, c.close_ms - ToMs(fade_days * kMillisPerDay));
      }
    } else {
      const double clock =
          std::max(static_cast<double>(now), churn_start - fade_days * kMillisPerDay);
      c.fade_start_ms = ToMs(clock + wait_ms);
      if (c.fade_start_ms != kNever) {
        c.close_ms = ToMs(c.fade_start_ms + fade_days * kMillisPerDay);
      }
    }
    const double at = rng_.Uniform(0.1, 0.7);
    if (c.close_ms != kNever && rng_.Bernoulli(kFadeDowngradeShare) && !sudden) {
      const int64_t when =
          c.fade_start_ms +
          static_cast<int64_t>(at * static_cast<double>(c.close_ms - c.fade_start_ms));
      if (when >= now) c.downgrade_ms = when;
    }
  }

  c.bad_start_ms = kNever;
  c.bad_end_ms = kNever;
  if (options_.bad_week_every_days > 0) {
    c.bad_start_ms = ToMs(now + rng_.ExponentialMean(options_.bad_week_every_days * kMillisPerDay));
    if (c.bad_start_ms != kNever) {
      c.bad_end_ms =
          c.bad_start_ms + ToMs(rng_.Uniform(kBadWeekMinDays, kBadWeekMaxDays) * kMillisPerDay);
    }
  }

  c.bound_per_ms = ComputeBound(c);
  c.next_page_ms = kNever;
  c.next_burst_ms = kNever;
  c.burst_start_ms = 0;
  c.burst_span_ms = 0;
  c.pages_left = 0;
  c.burst_index = 0;
  c.burst_total = 0;
  c.vacant = false;
  c.next_candidate_ms = CandidateAfter(c, now);
}

double WorldState::ComputeBound(const Customer& c) const {
  const AnomalyOptions& a = options_.anomalies;
  const double outage_boost =
      a.enabled && a.outages_per_day > 0 ? a.outage_ticket_factor - 1.0 : 0.0;
  const double caps[kRatedTypes] = {1.0,
                                    1.0,
                                    1.0,
                                    1.0 + kFadeTicketBoost + kBadWeekTicketBoost + outage_boost,
                                    1.0 + kFadeComplaintBoost + kBadWeekTicketBoost + outage_boost,
                                    1.0 + kFadeRefundBoost,
                                    1.0};
  const SegmentProfile& now_p = kProfiles[c.segment];
  const SegmentProfile& later_p = kProfiles[c.mature_segment];
  double sum = 0;
  for (int k = 0; k < kRatedTypes; ++k) {
    sum += std::max(now_p.rate_per_day[k], later_p.rate_per_day[k]) * caps[k];
  }
  const double diurnal_max = 1.0 + options_.diurnal_amplitude;
  return sum * diurnal_max * (1.0 + options_.seasonality_amplitude) * c.activity / kMillisPerDay;
}

int64_t WorldState::CandidateAfter(const Customer& c, int64_t t) {
  const int64_t next = ToMs(static_cast<double>(t) + rng_.ExponentialMean(1.0 / c.bound_per_ms));
  return next < c.close_ms ? next : kNever;
}

int64_t WorldState::NextActionTime(const Customer& c) const {
  return std::min(
      {c.next_candidate_ms, c.next_page_ms, c.next_burst_ms, c.downgrade_ms, c.close_ms});
}

void WorldState::Mature(Customer& c) {
  c.segment = c.mature_segment;
  c.mature_ms = kNever;
  customers_[c.number - options_.first_customer_number].segment = c.segment;
}

int WorldState::Evaluate(Customer& c, int64_t t) {
  if (t >= c.mature_ms) Mature(c);
  while (t >= c.bad_end_ms) {
    c.bad_start_ms =
        ToMs(c.bad_end_ms + rng_.ExponentialMean(options_.bad_week_every_days * kMillisPerDay));
    c.bad_end_ms =
        c.bad_start_ms == kNever
            ? kNever
            : c.bad_start_ms + ToMs(rng_.Uniform(kBadWeekMinDays, kBadWeekMaxDays) * kMillisPerDay);
  }
  double activity = 1.0;
  double ticket_boost = 0.0;
  double complaint_boost = 0.0;
  double refund_factor = 1.0;
  if (t >= c.fade_start_ms) {
    const double progress =
        std::min(1.0, static_cast<double>(t - c.fade_start_ms) /
                          static_cast<double>(std::max<int64_t>(1, c.close_ms - c.fade_start_ms)));
    const double left = 1.0 - progress;
    activity = kFadeActivityFloor + kFadeActivitySpan * left * std::sqrt(left);
    const double rise = std::sqrt(progress);
    ticket_boost += kFadeTicketBoost * rise;
    complaint_boost += kFadeComplaintBoost * rise;
    refund_factor += kFadeRefundBoost * progress;
  }
  if (t >= c.bad_start_ms) {
    activity *= kBadWeekActivity;
    ticket_boost += kBadWeekTicketBoost;
    complaint_boost += kBadWeekTicketBoost;
  }
  double digital = activity;
  double purchase = activity;
  const AnomalyOptions& a = options_.anomalies;
  if (t >= outage_.start_ms && t < outage_.end_ms) {
    digital *= a.outage_activity_factor;
    purchase *= a.outage_activity_factor;
    ticket_boost += a.outage_ticket_factor - 1.0;
    complaint_boost += a.outage_ticket_factor - 1.0;
  }
  if (t >= revenue_drop_.start_ms && t < revenue_drop_.end_ms) purchase *= a.revenue_drop_factor;

  const double* r = kProfiles[c.segment].rate_per_day;
  double scale = diurnal_[(t / kMillisPerHour) % 24] * c.activity / kMillisPerDay;
  if (options_.seasonality_amplitude > 0) {
    const double phase = static_cast<double>(t - options_.start_ms) /
                         (options_.seasonality_period_days * kMillisPerDay);
    scale *= 1.0 + options_.seasonality_amplitude * std::sin(2 * std::numbers::pi * phase);
  }
  const double rates[kRatedTypes] = {r[kPurchase] * purchase,
                                     r[kLogin] * digital,
                                     r[kPageView] * digital,
                                     r[kSupportTicket] * (1.0 + ticket_boost),
                                     r[kComplaint] * (1.0 + complaint_boost),
                                     r[kRefund] * refund_factor,
                                     r[kPlanChange]};
  double u = rng_.Uniform() * c.bound_per_ms / scale;
  for (int k = 0; k < kRatedTypes; ++k) {
    u -= rates[k];
    if (u < 0) return k;
  }
  return -1;
}

void WorldState::AdvanceWindow(Window* w, AnomalyKind kind, double per_day, double min_h,
                               double max_h, int64_t t) {
  while (t >= w->end_ms) {
    if (!w->recorded) RecordAnomaly(kind, {}, w->start_ms, w->end_ms);
    if (per_day <= 0) {
      *w = {kNever, kNever, true};
      return;
    }
    const int64_t start = ToMs(w->end_ms + rng_.ExponentialMean(kMillisPerDay / per_day));
    if (start == kNever) {
      *w = {kNever, kNever, true};
      return;
    }
    *w = {start, start + ToMs(rng_.Uniform(min_h, max_h) * kMillisPerHour), false};
  }
  if (!w->recorded && t >= w->start_ms) RecordAnomaly(kind, {}, w->start_ms, w->end_ms);
  if (t >= w->start_ms) w->recorded = true;
}

void WorldState::AdvanceWindows(int64_t t) {
  const AnomalyOptions& a = options_.anomalies;
  if (!a.enabled) return;
  AdvanceWindow(&outage_, AnomalyKind::kOutage, a.outages_per_day, a.outage_min_hours,
                a.outage_max_hours, t);
  AdvanceWindow(&revenue_drop_, AnomalyKind::kRevenueDrop, a.revenue_drops_per_day,
                a.revenue_drop_min_hours, a.revenue_drop_max_hours, t);
}

int64_t WorldState::BurstRefundTime(const Customer& c, int index) {
  if (index == 0) return c.burst_start_ms;
  if (index == c.burst_total - 1) return c.burst_start_ms + c.burst_span_ms;
  // Evenly spread with jitter below half a gap, so refunds stay in order.
  const double gap = static_cast<double>(c.burst_span_ms) / (c.burst_total - 1);
  return c.burst_start_ms + static_cast<int64_t>(gap * (index + rng_.Uniform(-0.3, 0.3)));
}

void WorldState::TriggerRefundBurst(int64_t t) {
  const AnomalyOptions& a = options_.anomalies;
  const int64_t span =
      ToMs(rng_.Uniform(a.refund_burst_min_hours, a.refund_burst_max_hours) * kMillisPerHour);
  const int total = a.refund_burst_min_refunds +
                    static_cast<int>(rng_.Below(static_cast<uint32_t>(
                        a.refund_burst_max_refunds - a.refund_burst_min_refunds + 1)));
  // A customer who is neither fading nor in a burst already; a few tries,
  // then the burst is skipped (only possible in tiny or dying populations).
  for (int attempt = 0; attempt < 16; ++attempt) {
    const uint32_t slot = rng_.Below(static_cast<uint32_t>(slots_.size()));
    Customer& c = slots_[slot];
    if (c.vacant || c.burst_total != 0 || c.fade_start_ms <= t + span + kMillisPerDay) continue;
    c.burst_start_ms = t;
    c.burst_span_ms = span;
    c.burst_total = static_cast<int16_t>(total);
    c.burst_index = 0;
    c.next_burst_ms = t;
    heap_.Update(slot, NextActionTime(c));
    RecordAnomaly(AnomalyKind::kRefundBurst, c.customer_id(), t, t + span);
    return;
  }
}

void WorldState::CloseAccount(uint32_t slot, int64_t t) {
  Customer& c = slots_[slot];
  truth_.churners.push_back({std::string(c.customer_id()), c.fade_start_ms, t});
  if (sink_) {
    sink_line_.clear();
    JsonWriter w(&sink_line_);
    w.BeginObject();
    w.Field("record", "churner");
    w.Field("customer_id", c.customer_id());
    w.Field("fade_start_ms", c.fade_start_ms);
    w.Field("closed_ms", t);
    w.EndObject();
    Publish();
  }
  // The slot waits for the replacement customer.
  c.vacant = true;
  c.next_candidate_ms = c.next_page_ms = c.next_burst_ms = c.downgrade_ms = kNever;
  c.close_ms = ToMs(t + rng_.ExponentialMean(options_.arrival_delay_days * kMillisPerDay));
  heap_.Update(slot, c.close_ms);
}

int64_t WorldState::Next(std::string* key, std::string* value) {
  if (pending_duplicate_) {
    pending_duplicate_ = false;
    key->assign(duplicate_key_);
    value->assign(duplicate_value_);
    ++truth_.duplicates;
    ++truth_.records;
    return now_ms_;
  }
  if (pending_malformed_) return EmitMalformed(key, value);

  for (;;) {
    const uint32_t slot = heap_.top_slot();
    const int64_t t = heap_.top_time();
    if (next_burst_trigger_ms_ <= t) {
      const int64_t at = next_burst_trigger_ms_;
      next_burst_trigger_ms_ =
          ToMs(at + rng_.ExponentialMean(kMillisPerDay / options_.anomalies.refund_bursts_per_day));
      AdvanceWindows(at);
      TriggerRefundBurst(at);
      continue;
    }
    AdvanceWindows(t);
    Customer& c = slots_[slot];
    if (c.vacant) {
      CreateCustomer(slot, t, /*initial=*/false);
      heap_.Update(slot, NextActionTime(c));
      continue;
    }
    if (t == c.next_page_ms) {
      if (--c.pages_left > 0) {
        const int64_t next = ToMs(t + rng_.ExponentialMean(kMeanPageGapMs));
        c.next_page_ms = next < c.close_ms ? next : kNever;
      } else {
        c.next_page_ms = kNever;
      }
      heap_.Update(slot, NextActionTime(c));
      return Emit(c, t, kPageView, key, value);
    }
    if (t == c.next_burst_ms) {
      if (++c.burst_index < c.burst_total) {
        c.next_burst_ms = BurstRefundTime(c, c.burst_index);
      } else {
        c.next_burst_ms = kNever;
        c.burst_total = 0;
      }
      heap_.Update(slot, NextActionTime(c));
      return Emit(c, t, kRefund, key, value);
    }
    if (t == c.downgrade_ms) {
      c.downgrade_ms = kNever;
      heap_.Update(slot, NextActionTime(c));
      if (c.plan == 0) continue;  // nothing to downgrade from
      --c.plan;
      return Emit(c, t, kPlanChange, key, value);
    }
    if (t == c.next_candidate_ms) {
      const int type = Evaluate(c, t);
      c.next_candidate_ms = CandidateAfter(c, t);
      if (type == kLogin) {
        const int pages = rng_.GeometricMean(kProfiles[c.segment].pages_per_login);
        if (pages > 0) {
          if (c.pages_left == 0) {
            const int64_t first =
                ToMs(t + kFirstPageDelayMs + rng_.ExponentialMean(kMeanPageGapMs));
            c.next_page_ms = first < c.close_ms ? first : kNever;
          }
          c.pages_left += pages;
        }
      } else if (type == kPlanChange) {
        const bool up =
            c.plan == 0 || (c.plan < 2 && rng_.Bernoulli(kProfiles[c.segment].upgrade_share));
        c.plan = static_cast<uint8_t>(up ? c.plan + 1 : c.plan - 1);
      }
      heap_.Update(slot, NextActionTime(c));
      if (type < 0) continue;
      return Emit(c, t, type, key, value);
    }
    // Only account_closed is left.
    const int64_t emitted = Emit(c, t, kAccountClosed, key, value);
    CloseAccount(slot, t);
    return emitted;
  }
}

int WorldState::DrawChannel(const Customer& c, int type) {
  const auto digital = [&] { return rng_.Uniform() < c.app_share ? kApp : kWeb; };
  const double u = rng_.Uniform();
  switch (type) {
    case kLogin:
    case kPageView:
      return u < c.app_share ? kApp : kWeb;
    case kPurchase:
      return u < c.store_share ? kStore : digital();
    case kRefund:
      if (u < c.store_share) return kStore;
      return u < c.store_share + 0.15 ? kPhone : digital();
    case kSupportTicket:
      if (u < 0.40) return kPhone;
      return u < 0.75 ? kEmail : digital();
    case kComplaint:
      if (u < 0.45) return kPhone;
      return u < 0.90 ? kEmail : kWeb;
    case kPlanChange:
      return u < 0.2 ? kPhone : digital();
    default:  // account_closed
      if (u < 0.5) return kPhone;
      return u < 0.8 ? kEmail : kWeb;
  }
}

double WorldState::DrawAmount(const Customer& c) {
  const SegmentProfile& p = kProfiles[c.segment];
  const double amount = std::exp(p.amount_log_mean + c.log_value + p.amount_log_sd * rng_.Normal());
  return std::max(0.5, std::round(amount * 100.0) / 100.0);
}

int64_t WorldState::Emit(const Customer& c, int64_t t, int type, std::string* key,
                         std::string* value) {
  const int channel = DrawChannel(c, type);
  double amount = 0;
  if (type == kPurchase) {
    amount = DrawAmount(c);
  } else if (type == kRefund) {
    // Part or all of a typical basket.
    amount = std::max(0.5, std::round(DrawAmount(c) * rng_.Uniform(0.3, 1.0) * 100.0) / 100.0);
  }
  ++truth_.events;
  WriteEvent(c, t, type, channel, amount, c.plan, value);
  key->assign(c.customer_id());
  now_ms_ = t;
  ++truth_.records;

  if (options_.duplicate_rate > 0 && noise_.Bernoulli(options_.duplicate_rate)) {
    pending_duplicate_ = true;
    duplicate_key_.assign(*key);
    duplicate_value_.assign(*value);
  }
  if (options_.malformed_rate > 0 && noise_.Bernoulli(options_.malformed_rate)) {
    pending_malformed_ = true;
    malformed_customer_.assign(c.customer_id());
  }
  return t;
}

void WorldState::WriteTimestamp(JsonWriter* w, int64_t t) const {
  if (options_.iso_timestamps) {
    char buf[32];
    w->String(FormatIso(t, buf));
  } else {
    w->Int(t);
  }
}

namespace {

// Appends pre-encoded pieces to a stack buffer. An event record holds only
// strings this file generates (ids, names, codes: letters, digits, '-' and
// '_'), so they need no JSON escaping, and skipping JsonWriter's escape scan
// halves the cost of a record on the hot path.
class RecordBuffer {
 public:
  void Put(std::string_view s) {
    std::memcpy(p_, s.data(), s.size());
    p_ += s.size();
  }
  void Put(char c) { *p_++ = c; }
  void PutInt(int64_t v) { p_ = std::to_chars(p_, end(), v).ptr; }
  void PutDouble(double v) { p_ = std::to_chars(p_, end(), v).ptr; }
  void PutQuoted(std::string_view s) {
    Put('"');
    Put(s);
    Put('"');
  }
  std::string_view view() const { return {buf_, static_cast<size_t>(p_ - buf_)}; }

 private:
  char* end() { return buf_ + sizeof(buf_); }
  // The longest record is a refund: about 190 bytes with 20-digit ids.
  char buf_[384];
  char* p_ = buf_;
};

}  // namespace

void WorldState::WriteEvent(const Customer& c, int64_t t, int type, int channel, double amount,
                            int plan, std::string* value) {
  RecordBuffer b;
  b.Put(R"({"event_id":")");
  b.Put(event_id_prefix_);
  b.PutInt(truth_.events);
  b.Put(R"(","customer_id":")");
  b.Put(c.customer_id());
  b.Put(R"(","timestamp":)");
  if (options_.iso_timestamps) {
    char buf[32];
    b.PutQuoted(FormatIso(t, buf));
  } else {
    b.PutInt(t);
  }
  b.Put(R"(,"type":")");
  b.Put(ingest::kEventTypeNames[static_cast<size_t>(type)]);
  b.Put(R"(","channel":")");
  b.Put(kChannelNames[channel]);
  b.Put('"');
  if (type == kPurchase || type == kRefund) {
    b.Put(R"(,"amount":)");
    b.PutDouble(amount);
    b.Put(R"(,"currency":")");
    b.Put(kCurrencies[c.currency]);
    b.Put('"');
  } else if (type == kPlanChange) {
    b.Put(R"(,"plan":")");
    b.Put(kPlanNames[plan]);
    b.Put('"');
  }
  b.Put('}');
  value->assign(b.view());
}

int64_t WorldState::EmitMalformed(std::string* key, std::string* value) {
  pending_malformed_ = false;
  const auto reason = static_cast<MalformedReason>(noise_.Below(kMalformedReasonCount));
  const int64_t record_index = truth_.records;
  ++truth_.malformed_by_reason[static_cast<int>(reason)];
  char id_buf[64];
  const std::string_view id =
      NumberedId(malformed_id_prefix_, static_cast<int64_t>(truth_.malformed.size()) + 1, id_buf);

  value->clear();
  JsonWriter w(value);
  w.BeginObject();
  w.Field("event_id", id);
  if (reason != MalformedReason::kMissingCustomerId) {
    w.Field("customer_id", std::string_view(malformed_customer_));
  }
  w.Key("timestamp");
  if (reason == MalformedReason::kBadTimestamp) {
    w.String("31/02/2026 25:61");  // day-first, impossible date and time
  } else {
    WriteTimestamp(&w, now_ms_);
  }
  switch (reason) {
    case MalformedReason::kAmountAsString:
      w.Field("type", "purchase");
      w.Field("channel", "web");
      w.Field("amount", "19.99");
      w.Field("currency", "EUR");
      break;
    case MalformedReason::kNegativeAmount:
      w.Field("type", "purchase");
      w.Field("channel", "web");
      w.Field("amount", -19.99);
      w.Field("currency", "EUR");
      break;
    case MalformedReason::kUnknownType:
      w.Field("type", "teleport");
      w.Field("channel", "app");
      break;
    default:
      w.Field("type", "login");
      w.Field("channel", "web");
      break;
  }
  w.EndObject();
  if (reason == MalformedReason::kNotJson) {
    // A record cut short mid-string, as a broken producer would send it.
    value->resize(value->size() - 7);
  }
  key->assign(malformed_customer_);

  truth_.malformed.push_back({record_index, reason});
  ++truth_.records;
  if (sink_) {
    sink_line_.clear();
    JsonWriter s(&sink_line_);
    s.BeginObject();
    s.Field("record", "malformed");
    s.Field("record_index", record_index);
    s.Field("event_id", id);
    s.Field("reason", MalformedReasonName(reason));
    s.Field("expected_reject", ExpectedRejectReasonName(reason));
    s.EndObject();
    Publish();
  }
  return now_ms_;
}

void WorldState::RecordAnomaly(AnomalyKind kind, std::string_view customer_id, int64_t start,
                               int64_t end) {
  truth_.anomalies.push_back({kind, std::string(customer_id), start, end});
  if (!sink_) return;
  sink_line_.clear();
  JsonWriter w(&sink_line_);
  w.BeginObject();
  w.Field("record", "anomaly");
  w.Field("kind", AnomalyKindName(kind));
  w.Field("scope", customer_id.empty() ? "global" : "customer");
  if (!customer_id.empty()) w.Field("customer_id", customer_id);
  w.Field("start_ms", start);
  w.Field("end_ms", end);
  w.EndObject();
  Publish();
}

void WorldState::Publish() { sink_(sink_line_); }

std::vector<ChurnerTruth> WorldState::FadingCustomers() const {
  std::vector<ChurnerTruth> out;
  for (const Customer& c : slots_) {
    if (!c.vacant && c.fade_start_ms <= now_ms_) {
      out.push_back({std::string(c.customer_id()), c.fade_start_ms, c.close_ms});
    }
  }
  std::sort(out.begin(), out.end(), [](const ChurnerTruth& a, const ChurnerTruth& b) {
    return a.customer_id < b.customer_id;
  });
  return out;
}

std::vector<CustomerTruth> WorldState::Customers() const {
  std::vector<CustomerTruth> out;
  out.reserve(customers_.size());
  for (size_t i = 0; i < customers_.size(); ++i) {
    char id[32];
    const uint8_t len = FormatCustomerId(i + options_.first_customer_number, id);
    out.push_back({std::string(id, len), static_cast<Segment>(customers_[i].segment),
                   customers_[i].joined_ms});
  }
  return out;
}

}  // namespace crmstream::generator
