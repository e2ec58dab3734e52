// Feature store: hand-computed values for a scripted customer, window edges,
// late events, a brute-force recomputation over a random stream, checkpoint
// round trips and spec validation.
#include "crmstream/features/feature_store.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <map>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "crmstream/common/binary_io.h"
#include "support/require_ok.h"

namespace crmstream::features {
namespace {

using ingest::Event;
using ingest::EventType;

constexpr int64_t kDay = 86'400'000;
constexpr int64_t kHour = 3'600'000;
// 2024-01-01T00:00:00Z, UTC day 19723.
constexpr int64_t kT0 = 1'704'067'200'000;

Event MakeEvent(std::string_view customer, int64_t ts, EventType type, double amount = 0,
                std::string_view plan = {}) {
  Event e;
  e.event_id = "e";
  e.customer_id = customer;
  e.timestamp_ms = ts;
  e.type = type;
  e.amount = amount;
  e.has_amount = ingest::EventTypeHasAmount(type);
  e.plan = plan;
  return e;
}

size_t NameIndex(const FeatureStore& store, std::string_view name) {
  const auto names = store.feature_names();
  const auto it = std::find(names.begin(), names.end(), name);
  REQUIRE(it != names.end());
  return static_cast<size_t>(it - names.begin());
}

// ---------------------------------------------------------------------------

TEST_CASE("FeatureSpec validation names the offending field", "[features]") {
  FeatureSpec spec;
  CHECK_OK(spec.Validate());
  CHECK(spec.LongestWindowDays() == 90);

  spec.window_days = {};
  Status st = spec.Validate();
  CHECK(st.code() == StatusCode::kInvalidArgument);
  CHECK_THAT(st.message(), Catch::StartsWith("window_days:"));

  spec.window_days = {7, 0};
  st = spec.Validate();
  CHECK(st.code() == StatusCode::kInvalidArgument);
  CHECK_THAT(st.message(), Catch::StartsWith("window_days[1]:"));

  spec.window_days = {1001};
  CHECK_THAT(spec.Validate().message(), Catch::StartsWith("window_days[0]:"));

  spec.window_days = {30, 7, 30};
  st = spec.Validate();
  CHECK_THAT(st.message(), Catch::StartsWith("window_days[2]:"));
  CHECK_THAT(st.message(), Catch::Contains("repeats window_days[0]"));

  spec.window_days = {1, 2, 3, 4, 5, 6, 7, 8, 9};
  CHECK_THAT(spec.Validate().message(), Catch::StartsWith("window_days:"));

  spec.window_days = {1, 1000};
  CHECK_OK(spec.Validate());
  const auto refused = FeatureStore::Create(FeatureSpec{{0}});
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.status().code() == StatusCode::kInvalidArgument);
  CHECK_THAT(refused.status().message(), Catch::StartsWith("FeatureSpec: window_days[0]:"));
}

// What libm's log1p returns at run time: the compiler folds a constant
// argument correctly rounded, which differs in the last bit for some (2).
double LibmLog1p(double x) {
  volatile double v = x;
  return std::log1p(v);
}

TEST_CASE("Count inputs are libm's log1p of the count, bit for bit", "[features]") {
  REQUIRE_OK_AND_ASSIGN(auto store_owner, FeatureStore::Create(FeatureSpec{}));
  FeatureStore& store = *store_owner;
  const size_t lifetime = NameIndex(store, "log1p_lifetime_page_views");
  const size_t window = NameIndex(store, "log1p_page_views_7d");
  const size_t purchases = NameIndex(store, "log1p_frequency");
  FeatureVector v;
  // Past the counts a table may hold (1024), so both paths are compared.
  for (uint32_t n = 1; n <= 1100; ++n) {
    const CustomerFeatures& f = store.Update(MakeEvent("c", kT0 + n * 1000, EventType::kPageView));
    f.Snapshot(f.as_of_ms(), &v);
    INFO("page views " << n);
    REQUIRE(v[lifetime] == LibmLog1p(n));
    REQUIRE(v[window] == LibmLog1p(n));
    REQUIRE(v[purchases] == 0.0);
  }
  CHECK(LibmLog1p(2.0) != 0.0);
}

// The record's one-pass windows and rates equal the per-window accessors.
TEST_CASE("Windows() sums every window as window(i) does", "[features]") {
  REQUIRE_OK_AND_ASSIGN(auto store_owner, FeatureStore::Create(FeatureSpec{{7, 30, 90}}));
  FeatureStore& store = *store_owner;
  std::mt19937_64 rng(11);
  const EventType types[] = {EventType::kPurchase,      EventType::kLogin,     EventType::kPageView,
                             EventType::kSupportTicket, EventType::kComplaint, EventType::kRefund};
  for (int i = 0; i < 3000; ++i) {
    const EventType type = types[rng() % 6];
    const int64_t ts = kT0 + static_cast<int64_t>(rng() % (200 * kDay));
    const CustomerFeatures& f = store.Update(
        MakeEvent(rng() % 2 == 0 ? "a" : "b", ts, type, static_cast<double>(rng() % 10000) / 100));
    WindowAggregates all[FeatureSpec::kMaxWindows];
    f.Windows(all);
    for (size_t w = 0; w < f.window_count(); ++w) {
      const WindowAggregates one = f.window(w);
      INFO("event " << i << " window " << w);
      REQUIRE(all[w].days == one.days);
      REQUIRE(all[w].purchases == one.purchases);
      REQUIRE(all[w].logins == one.logins);
      REQUIRE(all[w].page_views == one.page_views);
      REQUIRE(all[w].support_tickets == one.support_tickets);
      REQUIRE(all[w].complaints == one.complaints);
      REQUIRE(all[w].refunds == one.refunds);
      REQUIRE(all[w].purchase_amount == one.purchase_amount);
      REQUIRE(all[w].refund_amount == one.refund_amount);
    }
    const WindowAggregates& longest = all[f.longest_window_index()];
    REQUIRE(longest.days == 90);
    REQUIRE(f.ticket_rate_30d(longest) == f.ticket_rate_30d());
    REQUIRE(f.complaint_rate_30d(longest) == f.complaint_rate_30d());
  }
}

// The scripted history of docs/features.md's worked example. Day n means
// UTC day 19723 + n.
TEST_CASE("Scripted customer: every feature equals its hand-computed value", "[features]") {
  REQUIRE_OK_AND_ASSIGN(auto store_owner, FeatureStore::Create(FeatureSpec{}));
  FeatureStore& store = *store_owner;
  const std::string_view c = "cust-1";
  store.Update(MakeEvent(c, kT0 + 10 * kHour, EventType::kLogin));
  store.Update(MakeEvent(c, kT0 + 12 * kHour, EventType::kPlanChange, 0, "basic"));
  store.Update(MakeEvent(c, kT0 + kDay + 2 * kHour, EventType::kPurchase, 100.00));
  store.Update(MakeEvent(c, kT0 + 5 * kDay + 9 * kHour, EventType::kPageView));
  store.Update(MakeEvent(c, kT0 + 5 * kDay + 9 * kHour + 1800'000, EventType::kSupportTicket));
  store.Update(MakeEvent(c, kT0 + 10 * kDay, EventType::kPurchase, 50.50));
  store.Update(MakeEvent(c, kT0 + 10 * kDay + 6 * kHour, EventType::kRefund, 20.25));
  store.Update(MakeEvent(c, kT0 + 40 * kDay + 12 * kHour, EventType::kComplaint));
  store.Update(MakeEvent(c, kT0 + 40 * kDay + 18 * kHour, EventType::kPlanChange, 0, "pro"));
  const CustomerFeatures& f =
      store.Update(MakeEvent(c, kT0 + 41 * kDay - 1, EventType::kLogin));  // 23:59:59.999

  CHECK(f.customer_id() == c);
  CHECK(f.as_of_ms() == kT0 + 41 * kDay - 1);
  CHECK(f.first_seen_ms() == kT0 + 10 * kHour);
  // Last purchase day 10 00:00, clock day 40 23:59:59.999.
  CHECK(f.recency_days() == Approx(30.0 + 86'399'999.0 / 86'400'000.0).epsilon(1e-12));
  CHECK(f.frequency() == 2);
  CHECK(f.purchase_amount_total() == Approx(150.50));
  CHECK(f.refund_amount_total() == Approx(20.25));
  CHECK(f.monetary() == Approx(130.25));
  CHECK(f.average_order_value() == Approx(75.25));
  CHECK(f.days_since_last_login() == 0.0);
  CHECK(f.tenure_days() == Approx(40.0 + 50'399'999.0 / 86'400'000.0).epsilon(1e-12));
  // One ticket and one complaint in 90 days; exposure = days 0..40 = 41 days.
  CHECK(f.ticket_rate_30d() == Approx(30.0 / 41.0));
  CHECK(f.complaint_rate_30d() == Approx(30.0 / 41.0));
  CHECK(f.plan() == "pro");
  CHECK(f.plan_changes() == 2);
  CHECK_FALSE(f.closed());
  CHECK(f.event_count(EventType::kPurchase) == 2);
  CHECK(f.event_count(EventType::kLogin) == 2);
  CHECK(f.event_count(EventType::kPageView) == 1);
  CHECK(f.event_count(EventType::kSupportTicket) == 1);
  CHECK(f.event_count(EventType::kComplaint) == 1);
  CHECK(f.event_count(EventType::kRefund) == 1);
  CHECK(f.event_count(EventType::kPlanChange) == 2);
  CHECK(f.event_count(EventType::kAccountClosed) == 0);

  REQUIRE(f.window_count() == 3);
  // 7 days: days 34..40 -> the complaint and the last login.
  WindowAggregates w7 = f.window(0);
  CHECK(w7.days == 7);
  CHECK(w7.purchases == 0);
  CHECK(w7.logins == 1);
  CHECK(w7.page_views == 0);
  CHECK(w7.support_tickets == 0);
  CHECK(w7.complaints == 1);
  CHECK(w7.refunds == 0);
  CHECK(w7.purchase_amount == 0.0);
  // 30 days: days 11..40; the purchase and refund of day 10 sit just outside.
  WindowAggregates w30 = f.window(1);
  CHECK(w30.purchases == 0);
  CHECK(w30.refunds == 0);
  CHECK(w30.logins == 1);
  CHECK(w30.complaints == 1);
  // 90 days: everything.
  WindowAggregates w90 = f.window(2);
  CHECK(w90.purchases == 2);
  CHECK(w90.purchase_amount == Approx(150.50));
  CHECK(w90.logins == 2);
  CHECK(w90.page_views == 1);
  CHECK(w90.support_tickets == 1);
  CHECK(w90.complaints == 1);
  CHECK(w90.refunds == 1);
  CHECK(w90.refund_amount == Approx(20.25));

  SECTION("model inputs follow the documented names and transforms") {
    FeatureVector v;
    f.Snapshot(kT0 + 41 * kDay - 1, &v);
    REQUIRE(v.size() == store.feature_names().size());
    REQUIRE(v.size() == 17 + 8 * 3);
    CHECK(v[NameIndex(store, "log1p_recency_days")] ==
          Approx(std::log1p(30.0 + 86'399'999.0 / 86'400'000.0)));
    CHECK(v[NameIndex(store, "has_purchase")] == 1.0);
    CHECK(v[NameIndex(store, "log1p_frequency")] == Approx(std::log1p(2.0)));
    CHECK(v[NameIndex(store, "slog1p_monetary")] == Approx(std::log1p(130.25)));
    CHECK(v[NameIndex(store, "log1p_avg_order_value")] == Approx(std::log1p(75.25)));
    CHECK(v[NameIndex(store, "log1p_days_since_login")] == 0.0);
    CHECK(v[NameIndex(store, "has_login")] == 1.0);
    CHECK(v[NameIndex(store, "log1p_ticket_rate_30d")] == Approx(std::log1p(30.0 / 41.0)));
    CHECK(v[NameIndex(store, "log1p_plan_changes")] == Approx(std::log1p(2.0)));
    CHECK(v[NameIndex(store, "closed")] == 0.0);
    CHECK(v[NameIndex(store, "log1p_lifetime_page_views")] == Approx(std::log1p(1.0)));
    CHECK(v[NameIndex(store, "log1p_purchases_90d")] == Approx(std::log1p(2.0)));
    CHECK(v[NameIndex(store, "log1p_purchase_amount_90d")] == Approx(std::log1p(150.50)));
    CHECK(v[NameIndex(store, "log1p_refund_amount_90d")] == Approx(std::log1p(20.25)));
    CHECK(v[NameIndex(store, "log1p_complaints_7d")] == Approx(std::log1p(1.0)));
    CHECK(v[NameIndex(store, "log1p_purchases_30d")] == 0.0);

    // Scored 10 days later (day 50): recency and login gap grow, the 7- and
    // 30-day windows slide (days 44..50 and 21..50), the lifetime part stays.
    f.Snapshot(kT0 + 51 * kDay - 1, &v);
    CHECK(v[NameIndex(store, "log1p_recency_days")] ==
          Approx(std::log1p(40.0 + 86'399'999.0 / 86'400'000.0)));
    CHECK(v[NameIndex(store, "log1p_days_since_login")] == Approx(std::log1p(10.0)));
    CHECK(v[NameIndex(store, "log1p_complaints_7d")] == 0.0);
    CHECK(v[NameIndex(store, "log1p_complaints_30d")] == Approx(std::log1p(1.0)));
    CHECK(v[NameIndex(store, "log1p_purchases_90d")] == Approx(std::log1p(2.0)));
    // Exposure at day 50 is 51 days.
    CHECK(v[NameIndex(store, "log1p_ticket_rate_30d")] == Approx(std::log1p(30.0 / 51.0)));
  }

  SECTION("JSON fields for crm.customer-scores") {
    std::string json;
    JsonWriter w(&json);
    w.BeginObject();
    WriteFeaturesJson(f, &w);
    w.EndObject();
    CHECK_THAT(json, Catch::StartsWith("{\"features_as_of_ms\":1707609599999,"));
    CHECK_THAT(json,
               Catch::Contains("\"frequency\":2,\"monetary\":130.25,\"avg_order_value\":75.25,"));
    CHECK_THAT(json, Catch::Contains("\"plan\":\"pro\",\"plan_changes\":2,\"closed\":false,"));
    CHECK_THAT(json, Catch::Contains("\"event_counts\":{\"purchase\":2,\"login\":2,"));
    CHECK_THAT(json,
               Catch::Contains(
                   "\"7d\":{\"purchases\":0,\"purchase_amount\":0,\"logins\":1,\"page_views\":0,"
                   "\"support_tickets\":0,\"complaints\":1,\"refunds\":0,\"refund_amount\":0}"));
    CHECK_THAT(json, Catch::Contains("\"90d\":{\"purchases\":2,\"purchase_amount\":150.5,"));
    CHECK_THAT(json, Catch::EndsWith("}}}"));
  }

  SECTION("late events count where they fall and never move the clock back") {
    // Day 46, then late ones: a purchase on day 3, a login before the first
    // seen event, a plan change on day 20, a purchase on day 45.
    store.Update(MakeEvent(c, kT0 + 46 * kDay, EventType::kPageView));
    store.Update(MakeEvent(c, kT0 + 3 * kDay, EventType::kPurchase, 10.00));
    store.Update(MakeEvent(c, kT0 - kDay, EventType::kLogin));
    store.Update(MakeEvent(c, kT0 + 20 * kDay, EventType::kPlanChange, 0, "legacy"));
    const CustomerFeatures& g =
        store.Update(MakeEvent(c, kT0 + 45 * kDay, EventType::kPurchase, 5));
    CHECK(g.as_of_ms() == kT0 + 46 * kDay);
    CHECK(g.first_seen_ms() == kT0 - kDay);
    CHECK(g.frequency() == 4);
    CHECK(g.monetary() == Approx(145.25));
    // The latest purchase is now the late one of day 45.
    CHECK(g.recency_days() == Approx(1.0));
    CHECK(g.days_since_last_login() == Approx(5.0 + 1.0 / 86'400'000.0));
    CHECK(g.plan() == "pro");
    CHECK(g.plan_changes() == 3);
    // 7 days = days 40..46.
    CHECK(g.window(0).purchases == 1);
    CHECK(g.window(0).purchase_amount == Approx(5.0));
    CHECK(g.window(0).complaints == 1);
    CHECK(g.window(0).logins == 1);
    CHECK(g.window(0).page_views == 1);
    // 30 days = days 17..46; the day-3 purchase only reaches the 90-day window.
    CHECK(g.window(1).purchases == 1);
    CHECK(g.window(2).purchases == 4);
    CHECK(g.window(2).purchase_amount == Approx(165.50));
    CHECK(g.window(2).logins == 3);
    // Exposure now starts at day -1: 48 days.
    CHECK(g.ticket_rate_30d() == Approx(30.0 / 48.0));
    // A late event beyond the longest window changes lifetime totals only.
    const CustomerFeatures& h = store.Update(MakeEvent(c, kT0 - 60 * kDay, EventType::kRefund, 1));
    CHECK(h.refund_amount_total() == Approx(21.25));
    CHECK(h.window(2).refunds == 1);
    CHECK(h.tenure_days() == Approx(106.0));

    // A jump of 160 days empties every window but the new day's.
    const CustomerFeatures& k = store.Update(MakeEvent(c, kT0 + 200 * kDay, EventType::kLogin));
    for (size_t i = 0; i < 3; ++i) {
      CHECK(k.window(i).logins == 1);
      CHECK(k.window(i).purchases == 0);
      CHECK(k.window(i).page_views == 0);
      CHECK(k.window(i).purchase_amount == 0.0);
    }
    CHECK(k.WindowAt(0, kT0 + 206 * kDay).logins == 1);
    CHECK(k.WindowAt(0, kT0 + 207 * kDay).logins == 0);
    CHECK(k.WindowAt(2, kT0 + 289 * kDay + kDay - 1).logins == 1);
    CHECK(k.WindowAt(2, kT0 + 290 * kDay).logins == 0);
    // Scoring at an earlier time than the clock uses the clock.
    CHECK(k.WindowAt(0, kT0).logins == 1);
    store.Update(MakeEvent(c, kT0 + 200 * kDay + kHour, EventType::kAccountClosed));
    CHECK(store.Find(c)->closed());
  }
}

TEST_CASE("Window edges: an N-day window covers UTC days d-N+1 to d", "[features]") {
  REQUIRE_OK_AND_ASSIGN(auto store_owner, FeatureStore::Create(FeatureSpec{{1, 2, 7}}));
  FeatureStore& store = *store_owner;
  const std::string_view c = "edge";
  // The last millisecond of day 0 and the first of day 1.
  store.Update(MakeEvent(c, kT0 + kDay - 1, EventType::kPageView));
  const CustomerFeatures* f = &store.Update(MakeEvent(c, kT0 + kDay, EventType::kLogin));
  CHECK(f->window(0).page_views == 0);  // 1 day: day 1 only
  CHECK(f->window(0).logins == 1);
  CHECK(f->window(1).page_views == 1);  // 2 days: days 0..1
  // Day 7 at 00:00: the 7-day window is days 1..7, so the day-0 view leaves
  // exactly now and the day-1 login stays until day 8.
  f = &store.Update(MakeEvent(c, kT0 + 7 * kDay, EventType::kSupportTicket));
  CHECK(f->window(2).page_views == 0);
  CHECK(f->window(2).logins == 1);
  CHECK(f->window(2).support_tickets == 1);
  f = &store.Update(MakeEvent(c, kT0 + 8 * kDay - 1, EventType::kSupportTicket));
  CHECK(f->window(2).logins == 1);
  CHECK(f->window(2).support_tickets == 2);
  f = &store.Update(MakeEvent(c, kT0 + 8 * kDay, EventType::kComplaint));
  CHECK(f->window(2).logins == 0);
  CHECK(f->window(2).support_tickets == 2);
  CHECK(f->window(1).support_tickets == 2);  // days 7..8
  CHECK(f->window(0).support_tickets == 0);  // day 8
  // A late event dated exactly at the oldest day of a window is inside it.
  f = &store.Update(MakeEvent(c, kT0 + 2 * kDay, EventType::kRefund, 3.5));
  CHECK(f->window(2).refunds == 1);
  CHECK(f->window(2).refund_amount == Approx(3.5));
  f = &store.Update(MakeEvent(c, kT0 + kDay + kDay - 1, EventType::kRefund, 1));
  CHECK(f->window(2).refunds == 1);  // day 1 is outside days 2..8
  CHECK(f->refund_amount_total() == Approx(4.5));
  // Times before 1970 use floor division for their day.
  REQUIRE_OK_AND_ASSIGN(auto early_owner, FeatureStore::Create(FeatureSpec{{1}}));
  FeatureStore& early = *early_owner;
  early.Update(MakeEvent(c, -kDay, EventType::kLogin));
  f = &early.Update(MakeEvent(c, -1, EventType::kLogin));
  CHECK(f->window(0).logins == 2);
  f = &early.Update(MakeEvent(c, 0, EventType::kLogin));
  CHECK(f->window(0).logins == 1);
}

// ---------------------------------------------------------------------------
// Brute force: every event kept, every feature recomputed from the definition.

struct StoredEvent {
  int64_t ts;
  EventType type;
  double amount;
  std::string plan;
  bool in_order;  // not older than the customer's clock when it arrived
};

struct Reference {
  std::vector<int> windows;
  std::vector<StoredEvent> events;

  static int64_t Day(int64_t ms) { return static_cast<int64_t>(std::floor(ms / 86'400'000.0)); }
  int64_t Clock() const {
    int64_t c = INT64_MIN;
    for (const auto& e : events) c = std::max(c, e.ts);
    return c;
  }
  WindowAggregates Window(int n, int64_t at_ms) const {
    const int64_t d = Day(std::max(at_ms, Clock()));
    WindowAggregates a;
    a.days = n;
    for (const auto& e : events) {
      const int64_t ed = Day(e.ts);
      if (ed <= d - n || ed > d) continue;
      switch (e.type) {
        case EventType::kPurchase:
          ++a.purchases;
          a.purchase_amount += e.amount;
          break;
        case EventType::kLogin:
          ++a.logins;
          break;
        case EventType::kPageView:
          ++a.page_views;
          break;
        case EventType::kSupportTicket:
          ++a.support_tickets;
          break;
        case EventType::kComplaint:
          ++a.complaints;
          break;
        case EventType::kRefund:
          ++a.refunds;
          a.refund_amount += e.amount;
          break;
        default:
          break;
      }
    }
    return a;
  }
};

void CompareWindow(const WindowAggregates& got, const WindowAggregates& want) {
  CHECK(got.days == want.days);
  CHECK(got.purchases == want.purchases);
  CHECK(got.logins == want.logins);
  CHECK(got.page_views == want.page_views);
  CHECK(got.support_tickets == want.support_tickets);
  CHECK(got.complaints == want.complaints);
  CHECK(got.refunds == want.refunds);
  CHECK(got.purchase_amount == Approx(want.purchase_amount).margin(1e-9));
  CHECK(got.refund_amount == Approx(want.refund_amount).margin(1e-9));
}

void CompareToReference(const CustomerFeatures& f, const Reference& ref) {
  const int64_t clock = ref.Clock();
  int64_t first = INT64_MAX, last_purchase = INT64_MIN, last_login = INT64_MIN;
  double purchases_amount = 0, refunds_amount = 0;
  uint32_t counts[ingest::kEventTypeCount] = {};
  bool closed = false;
  std::string plan;
  for (const auto& e : ref.events) {
    first = std::min(first, e.ts);
    ++counts[static_cast<int>(e.type)];
    if (e.type == EventType::kPurchase) {
      last_purchase = std::max(last_purchase, e.ts);
      purchases_amount += e.amount;
    }
    if (e.type == EventType::kRefund) refunds_amount += e.amount;
    if (e.type == EventType::kLogin) last_login = std::max(last_login, e.ts);
    if (e.type == EventType::kAccountClosed) closed = true;
    if (e.in_order && !e.plan.empty()) plan = e.plan;
  }
  CHECK(f.as_of_ms() == clock);
  CHECK(f.first_seen_ms() == first);
  const uint32_t n_purchases = counts[static_cast<int>(EventType::kPurchase)];
  CHECK(f.frequency() == n_purchases);
  if (n_purchases == 0) {
    CHECK(std::isnan(f.recency_days()));
    CHECK(std::isnan(f.average_order_value()));
  } else {
    CHECK(f.recency_days() == Approx((clock - last_purchase) / 86'400'000.0).margin(1e-12));
    CHECK(f.average_order_value() == Approx(purchases_amount / n_purchases).margin(1e-9));
  }
  if (last_login == INT64_MIN) {
    CHECK(std::isnan(f.days_since_last_login()));
  } else {
    CHECK(f.days_since_last_login() == Approx((clock - last_login) / 86'400'000.0).margin(1e-12));
  }
  CHECK(f.monetary() == Approx(purchases_amount - refunds_amount).margin(1e-8));
  CHECK(f.tenure_days() == Approx((clock - first) / 86'400'000.0).margin(1e-12));
  for (int t = 0; t < ingest::kEventTypeCount; ++t) {
    CHECK(f.event_count(static_cast<EventType>(t)) == counts[t]);
  }
  CHECK(f.plan_changes() == counts[static_cast<int>(EventType::kPlanChange)]);
  CHECK(f.closed() == closed);
  CHECK(f.plan() == plan);
  const int longest = *std::max_element(ref.windows.begin(), ref.windows.end());
  const WindowAggregates lw = ref.Window(longest, clock);
  const double exposure = static_cast<double>(
      std::clamp<int64_t>(Reference::Day(clock) - Reference::Day(first) + 1, 1, longest));
  CHECK(f.ticket_rate_30d() == Approx(30.0 * lw.support_tickets / exposure));
  CHECK(f.complaint_rate_30d() == Approx(30.0 * lw.complaints / exposure));
  for (size_t i = 0; i < ref.windows.size(); ++i) {
    CompareWindow(f.window(i), ref.Window(ref.windows[i], clock));
    // And as of a later time, when the window has slid on.
    const int64_t later = clock + static_cast<int64_t>(i * 13 + 5) * kDay;
    CompareWindow(f.WindowAt(i, later), ref.Window(ref.windows[i], later));
  }
}

// A random stream: customers with bursts of activity, long gaps, late events
// (up to 120 days old) and plans; amounts in whole cents.
void RunBruteForce(const std::vector<int>& windows, uint32_t seed) {
  REQUIRE_OK_AND_ASSIGN(auto store_owner, FeatureStore::Create(FeatureSpec{windows}));
  FeatureStore& store = *store_owner;
  REQUIRE_OK_AND_ASSIGN(auto restored_owner, FeatureStore::Create(FeatureSpec{windows}));
  FeatureStore& restored = *restored_owner;
  std::mt19937_64 rng(seed);
  constexpr int kCustomers = 40;
  constexpr int kEvents = 6000;
  std::vector<std::string> ids;
  for (int i = 0; i < kCustomers; ++i) ids.push_back("customer-" + std::to_string(i * 7919));
  const std::vector<std::string> plans = {"free", "basic", "pro", "enterprise"};
  std::map<std::string, Reference> refs;
  for (const auto& id : ids) refs[id].windows = windows;
  std::vector<int64_t> clocks(kCustomers, kT0);
  std::uniform_real_distribution<double> unit(0, 1);
  for (int step = 0; step < kEvents; ++step) {
    const int ci = static_cast<int>(rng() % kCustomers);
    int64_t ts;
    const double u = unit(rng);
    if (u < 0.12 && step > 0) {
      ts = clocks[ci] - static_cast<int64_t>(unit(rng) * 120 * kDay);  // late
    } else if (u < 0.17) {
      ts = clocks[ci] + static_cast<int64_t>(unit(rng) * 150 * kDay);  // long gap
    } else {
      ts = clocks[ci] + static_cast<int64_t>(unit(rng) * 2 * kDay);
    }
    if (u < 0.005) ts = clocks[ci];  // same millisecond as the clock
    EventType type = static_cast<EventType>(rng() % ingest::kEventTypeCount);
    if (rng() % 3 == 0) type = EventType::kPageView;
    const double amount =
        ingest::EventTypeHasAmount(type) ? static_cast<double>(rng() % 100000) / 100.0 : 0.0;
    std::string_view plan;
    if (type == EventType::kPlanChange || rng() % 50 == 0) plan = plans[rng() % plans.size()];
    Reference& ref = refs[ids[ci]];
    const bool in_order = ref.events.empty() || ts >= ref.Clock();
    ref.events.push_back({ts, type, amount, std::string(plan), in_order});
    clocks[ci] = std::max(clocks[ci], ts);

    const Event e = MakeEvent(ids[ci], ts, type, amount, plan);
    const CustomerFeatures& f = store.Update(e);
    INFO("step " << step << " customer " << ids[ci]);
    CompareToReference(f, ref);

    // Every so often, checkpoint a customer into the second store; from then
    // on it must evolve exactly like the original.
    if (step % 97 == 0) {
      std::string blob;
      REQUIRE_OK(store.EncodeCustomer(ids[ci], &blob));
      REQUIRE_OK(restored.DecodeCustomer(ids[ci], blob));
    } else if (restored.Find(ids[ci]) != nullptr) {
      restored.Update(e);
    }
    if (const CustomerFeatures* r = restored.Find(ids[ci])) CompareToReference(*r, ref);
  }
  for (const auto& id : ids) {
    const CustomerFeatures* f = store.Find(id);
    REQUIRE(f != nullptr);
    CompareToReference(*f, refs[id]);
  }
}

TEST_CASE("Random stream: features equal a brute-force recomputation", "[features]") {
  SECTION("default windows 7/30/90") { RunBruteForce({7, 30, 90}, 12345); }
  SECTION("unsorted windows including 1 day") { RunBruteForce({30, 1, 120, 3}, 777); }
}

// ---------------------------------------------------------------------------

TEST_CASE("Checkpoint round trip and corrupted bytes", "[features]") {
  REQUIRE_OK_AND_ASSIGN(auto store_owner, FeatureStore::Create(FeatureSpec{}));
  FeatureStore& store = *store_owner;
  const std::string_view c = "round-trip";
  for (int d = 0; d < 120; ++d) {
    store.Update(MakeEvent(c, kT0 + d * kDay + kHour, EventType::kPageView));
    if (d % 3 == 0) store.Update(MakeEvent(c, kT0 + d * kDay + 2 * kHour, EventType::kLogin));
    if (d % 10 == 0) {
      store.Update(MakeEvent(c, kT0 + d * kDay + 3 * kHour, EventType::kPurchase, 12.34 * d));
    }
  }
  store.Update(MakeEvent(c, kT0 + 119 * kDay + 4 * kHour, EventType::kPlanChange, 0, "gold"));
  std::string blob;
  REQUIRE_OK(store.EncodeCustomer(c, &blob));
  CHECK(store.EncodeCustomer("nobody", &blob).code() == StatusCode::kNotFound);
  REQUIRE_OK(store.EncodeCustomer(c, &blob));

  REQUIRE_OK_AND_ASSIGN(auto other_owner, FeatureStore::Create(FeatureSpec{}));
  FeatureStore& other = *other_owner;
  other.Update(MakeEvent("someone-else", kT0, EventType::kLogin, 0, "silver"));
  REQUIRE_OK(other.DecodeCustomer(c, blob));
  const CustomerFeatures* a = store.Find(c);
  const CustomerFeatures* b = other.Find(c);
  REQUIRE(b != nullptr);
  CHECK(b->plan() == "gold");
  FeatureVector va, vb;
  a->Snapshot(kT0 + 130 * kDay, &va);
  b->Snapshot(kT0 + 130 * kDay, &vb);
  CHECK(va == vb);
  for (size_t i = 0; i < 3; ++i) {
    CHECK(a->window(i).page_views == b->window(i).page_views);
    CHECK(a->window(i).purchase_amount == b->window(i).purchase_amount);
  }
  CHECK(a->window(2).page_views == 90);
  std::string blob2;
  REQUIRE_OK(other.EncodeCustomer(c, &blob2));
  CHECK(blob2 == blob);

  // Decoding marks the customer dirty; clearing empties the set.
  size_t dirty = 0;
  other.ForEachDirty([&](std::string_view id, const CustomerFeatures& f) {
    CHECK(f.customer_id() == id);
    ++dirty;
  });
  CHECK(dirty == 2);
  other.ClearDirty();
  CHECK(other.dirty_count() == 0);

  // Every flipped byte and every truncation is rejected and leaves the
  // stored state as it was.
  for (size_t i = 0; i < blob.size(); ++i) {
    std::string bad = blob;
    bad[i] = static_cast<char>(bad[i] ^ 0x5A);
    CHECK_FALSE(other.DecodeCustomer(c, bad).ok());
    CHECK_FALSE(other.DecodeCustomer(c, std::string_view(blob).substr(0, i)).ok());
  }
  REQUIRE_OK(other.EncodeCustomer(c, &blob2));
  CHECK(blob2 == blob);
  CHECK(other.dirty_count() == 0);

  // A checkpoint written with other windows is refused.
  REQUIRE_OK_AND_ASSIGN(auto weekly_owner, FeatureStore::Create(FeatureSpec{{7}}));
  FeatureStore& weekly = *weekly_owner;
  CHECK(weekly.DecodeCustomer(c, blob).code() == StatusCode::kInvalidArgument);
  CHECK(weekly.size() == 0);

  // A well-sealed payload with a corrupt day ring is Corruption, not UB.
  std::string payload;
  BinaryWriter w(&payload);
  w.PutArray<int>(std::vector<int>{7, 30, 90});
  for (int64_t v : {kT0, kT0, kT0, kT0, int64_t{0}, int64_t{0}}) w.Put<int64_t>(v);
  for (int i = 0; i < 8; ++i) w.Put<uint32_t>(1);
  w.Put<uint8_t>(0);
  w.PutBytes("");
  w.Put<int32_t>(19722);
  w.PutBytes(std::string("\x41\xFF", 2));  // gap 1, purchases, truncated varint
  CHECK(other.DecodeCustomer("x", SealBlob(BlobKind::kCustomerFeatures, 1, payload)).code() ==
        StatusCode::kCorruption);
  CHECK(other.Find("x") == nullptr);
}

TEST_CASE("Dirty set and lookups and memory accounting", "[features]") {
  REQUIRE_OK_AND_ASSIGN(auto store_owner, FeatureStore::Create(FeatureSpec{}));
  FeatureStore& store = *store_owner;
  CHECK(store.Find("a") == nullptr);
  store.Update(MakeEvent("a", kT0, EventType::kLogin));
  store.Update(MakeEvent("b", kT0, EventType::kLogin));
  store.Update(MakeEvent("a", kT0 + 1, EventType::kLogin));
  std::vector<std::string> seen;
  store.ForEachDirty([&](std::string_view id, const CustomerFeatures&) { seen.emplace_back(id); });
  CHECK(seen == std::vector<std::string>{"a", "b"});
  store.ClearDirty();
  store.Update(MakeEvent("b", kT0 + 2, EventType::kLogin));
  seen.clear();
  store.ForEachDirty([&](std::string_view id, const CustomerFeatures&) { seen.emplace_back(id); });
  CHECK(seen == std::vector<std::string>{"b"});

  // Many customers: every one is found by its id, and ids of 128 bytes work.
  const std::string long_id(128, 'z');
  store.Update(MakeEvent(long_id, kT0, EventType::kPurchase, 9.99));
  std::vector<std::string> ids;
  for (int i = 0; i < 5000; ++i) ids.push_back("c" + std::to_string(i));
  for (const auto& id : ids) store.Update(MakeEvent(id, kT0 + kDay, EventType::kPageView));
  CHECK(store.size() == 5003);
  for (const auto& id : ids) {
    const CustomerFeatures* f = store.Find(id);
    REQUIRE(f != nullptr);
    CHECK(f->customer_id() == id);
  }
  REQUIRE(store.Find(long_id) != nullptr);
  CHECK(store.Find(long_id)->frequency() == 1);
  CHECK(store.Find("c5000") == nullptr);

  // A customer who goes quiet gives the per-day memory back.
  REQUIRE_OK_AND_ASSIGN(auto one_owner, FeatureStore::Create(FeatureSpec{}));
  FeatureStore& one = *one_owner;
  for (int d = 0; d < 90; ++d) one.Update(MakeEvent("q", kT0 + d * kDay, EventType::kPurchase, 1));
  const size_t busy = one.MemoryUsageBytes();
  one.Update(MakeEvent("q", kT0 + 400 * kDay, EventType::kAccountClosed));
  CHECK(one.MemoryUsageBytes() < busy - 90 * 3);
  CHECK(one.SlotBytes() == 108);
}

}  // namespace
}  // namespace crmstream::features

namespace crmstream::features {
namespace {

TEST_CASE("Windows stay exact past 65535 events and 2^32 cents", "[features]") {
  REQUIRE_OK_AND_ASSIGN(auto store_owner, FeatureStore::Create(FeatureSpec{{1, 2}}));
  FeatureStore& store = *store_owner;
  const std::string_view c = "bot";
  // 70,000 page views over two days and purchases worth 50 million.
  for (int i = 0; i < 35'000; ++i) store.Update(MakeEvent(c, kT0 + i, EventType::kPageView));
  for (int i = 0; i < 35'000; ++i) {
    store.Update(MakeEvent(c, kT0 + kDay + i, EventType::kPageView));
  }
  for (int i = 0; i < 5; ++i) {
    store.Update(MakeEvent(c, kT0 + kDay + 40'000 + i, EventType::kPurchase, 10'000'000.0));
  }
  const CustomerFeatures* f = store.Find(c);
  CHECK(f->window(1).page_views == 70'000);
  CHECK(f->window(0).page_views == 35'000);
  CHECK(f->window(1).purchase_amount == 50'000'000.0);
  CHECK(f->monetary() == 50'000'000.0);
  f = &store.Update(MakeEvent(c, kT0 + 2 * kDay, EventType::kLogin));
  CHECK(f->window(1).page_views == 35'000);
  CHECK(f->window(0).page_views == 0);
  CHECK(f->window(1).purchase_amount == 50'000'000.0);
  CHECK(f->window(0).purchase_amount == 0.0);
  std::string blob;
  REQUIRE_OK(store.EncodeCustomer(c, &blob));
  REQUIRE_OK_AND_ASSIGN(auto other_owner, FeatureStore::Create(FeatureSpec{{1, 2}}));
  FeatureStore& other = *other_owner;
  REQUIRE_OK(other.DecodeCustomer(c, blob));
  CHECK(other.Find(c)->window(1).page_views == 35'000);
}

// Lifetime cents are kept in 48 bits: a lifetime beyond 2^47 - 1 cents
// (1.4e12 currency units) saturates there, the day history keeps the full
// amounts, and such a customer still checkpoints and loads.
TEST_CASE("Lifetime amounts saturate at 48 bits and still round-trip", "[features]") {
  REQUIRE_OK_AND_ASSIGN(auto store_owner, FeatureStore::Create(FeatureSpec{{1, 2}}));
  FeatureStore& store = *store_owner;
  constexpr double kLimit = static_cast<double>((int64_t{1} << 47) - 1) / 100.0;
  store.Update(MakeEvent("whale", kT0, EventType::kPurchase, 1e12));
  const CustomerFeatures* f =
      &store.Update(MakeEvent("whale", kT0 + 1, EventType::kPurchase, 1e12));
  CHECK(f->purchase_amount_total() == kLimit);
  CHECK(f->window(0).purchase_amount == 2e12);  // the day history is not saturated
  CHECK(f->frequency() == 2);
  std::string blob;
  REQUIRE_OK(store.EncodeCustomer("whale", &blob));
  REQUIRE_OK_AND_ASSIGN(auto other_owner, FeatureStore::Create(FeatureSpec{{1, 2}}));
  REQUIRE_OK(other_owner->DecodeCustomer("whale", blob));
  CHECK(other_owner->Find("whale")->purchase_amount_total() == kLimit);
  CHECK(other_owner->Find("whale")->window(0).purchase_amount == 2e12);
}

// A record keeps its times in 48 bits: exact far beyond what ingest
// accepts, before 1970 too, and clamped (not wrapped) past +-(2^47 - 1) ms.
TEST_CASE("Event times are exact over thousands of years and clamped beyond", "[features]") {
  REQUIRE_OK_AND_ASSIGN(auto store_owner, FeatureStore::Create(FeatureSpec{}));
  FeatureStore& store = *store_owner;
  constexpr int64_t kLimit = (int64_t{1} << 47) - 1;
  const int64_t year_1900 = -2'208'988'800'000;
  const int64_t year_6000 = 127'174'492'800'000;
  store.Update(MakeEvent("old", year_1900 - 1, EventType::kLogin));
  const CustomerFeatures old = store.Update(MakeEvent("old", year_1900, EventType::kPurchase, 1));
  CHECK(old.first_seen_ms() == year_1900 - 1);
  CHECK(old.as_of_ms() == year_1900);
  CHECK(old.last_purchase_ms() == year_1900);
  CHECK(old.last_login_ms() == year_1900 - 1);
  const CustomerFeatures late = store.Update(MakeEvent("late", year_6000, EventType::kLogin));
  CHECK(late.as_of_ms() == year_6000);
  CHECK(late.last_login_ms() == year_6000);
  CHECK_FALSE(late.last_purchase_ms().has_value());
  const CustomerFeatures far = store.Update(MakeEvent("far", INT64_MAX, EventType::kLogin));
  CHECK(far.as_of_ms() == kLimit);
  CHECK(far.first_seen_ms() == kLimit);
  const CustomerFeatures early = store.Update(MakeEvent("far", INT64_MIN + 1, EventType::kLogin));
  CHECK(early.first_seen_ms() == -kLimit);
  CHECK(early.as_of_ms() == kLimit);
  // The blob holds int64 times: a round trip keeps them.
  std::string blob;
  REQUIRE_OK(store.EncodeCustomer("old", &blob));
  REQUIRE_OK_AND_ASSIGN(auto other_owner, FeatureStore::Create(FeatureSpec{}));
  REQUIRE_OK(other_owner->DecodeCustomer("old", blob));
  const CustomerFeatures* back = other_owner->Find("old");
  REQUIRE(back != nullptr);
  CHECK(back->first_seen_ms() == year_1900 - 1);
  CHECK(back->last_purchase_ms() == year_1900);
  CHECK(back->recency_days() == old.recency_days());
}

}  // namespace
}  // namespace crmstream::features

namespace crmstream::features {
namespace {

std::vector<std::string> Ids(const FeatureStore& store, bool pending) {
  std::vector<std::string> ids;
  auto collect = [&](std::string_view id, const CustomerFeatures&) { ids.emplace_back(id); };
  if (pending) {
    store.ForEachPending(collect);
  } else {
    store.ForEachDirty(collect);
  }
  return ids;
}

std::vector<std::string> UnsavedIds(const FeatureStore& store) {
  std::vector<std::string> ids;
  store.ForEachUnsaved([&](std::string_view id, const CustomerFeatures&) { ids.emplace_back(id); });
  return ids;
}

TEST_CASE("A customer beyond max_customers is refused with the store unchanged", "[features]") {
  FeatureSpec spec;
  spec.max_customers = 2;
  REQUIRE_OK_AND_ASSIGN(auto store, FeatureStore::Create(spec));
  store->Update(MakeEvent("a", kT0, EventType::kPurchase, 10));
  store->Update(MakeEvent("b-with-an-id-longer-than-sixteen", kT0, EventType::kLogin, 0, "gold"));
  store->ClearDirty();
  // The third customer's event throws before anything changes: no record,
  // no dirty mark, no new plan is assigned, and the others still update.
  CHECK_THROWS_AS(store->Update(MakeEvent("c-also-with-a-long-identifier", kT0 + kHour,
                                          EventType::kPurchase, 5, "silver")),
                  std::length_error);
  CHECK(store->size() == 2);
  CHECK(store->Find("c-also-with-a-long-identifier") == nullptr);
  int dirty = 0;
  store->ForEachDirty([&](std::string_view, const CustomerFeatures&) { ++dirty; });
  CHECK(dirty == 0);
  const CustomerFeatures& a =
      store->Update(MakeEvent("a", kT0 + 2 * kHour, EventType::kPurchase, 5));
  CHECK(a.monetary() == Approx(15.0));
  const CustomerFeatures* b = store->Find("b-with-an-id-longer-than-sixteen");
  REQUIRE(b != nullptr);
  CHECK(b->plan() == "gold");
  // A checkpoint with more customers than the bound is refused at restore,
  // not thrown.
  std::string blob;
  REQUIRE_OK(store->EncodeCustomer("a", &blob));
  CHECK(store->DecodeCustomer("a", blob).ok());  // replaces: no new customer
  CHECK(store->DecodeCustomer("d", blob).code() == StatusCode::kInvalidArgument);
  CHECK(store->size() == 2);

  spec.max_customers = 0;
  CHECK_THAT(spec.Validate().message(), Catch::StartsWith("max_customers:"));
  spec.max_customers = FeatureSpec::kMaxCustomers + 1;
  CHECK_THAT(spec.Validate().message(), Catch::StartsWith("max_customers:"));
}

}  // namespace

TEST_CASE("Pending and dirty sets: two cycles over the same updates", "[features]") {
  REQUIRE_OK_AND_ASSIGN(auto store_owner, FeatureStore::Create(FeatureSpec{}));
  FeatureStore& store = *store_owner;
  store.Update(MakeEvent("A", kT0, EventType::kLogin));
  store.Update(MakeEvent("B", kT0, EventType::kLogin));
  store.Update(MakeEvent("A", kT0 + kHour, EventType::kLogin));
  using V = std::vector<std::string>;
  CHECK(Ids(store, true) == V{"A", "B"});
  CHECK(Ids(store, false) == V{"A", "B"});

  // A refresh clears the pending set only; a later update of an already
  // dirty customer is pending again without repeating it in the dirty set.
  store.ClearPending();
  CHECK(Ids(store, true).empty());
  store.Update(MakeEvent("A", kT0 + 2 * kHour, EventType::kLogin));
  store.Update(MakeEvent("C", kT0 + 2 * kHour, EventType::kLogin));
  CHECK(Ids(store, true) == V{"A", "C"});
  CHECK(Ids(store, false) == V{"A", "B", "C"});

  // A flush clears both.
  store.ClearDirty();
  CHECK(Ids(store, true).empty());
  CHECK(Ids(store, false).empty());
  store.Update(MakeEvent("B", kT0 + 3 * kHour, EventType::kLogin));
  CHECK(Ids(store, true) == V{"B"});
  CHECK(Ids(store, false) == V{"B"});
}

TEST_CASE("Unsaved set: survives output flushes until a checkpoint clears it", "[features]") {
  REQUIRE_OK_AND_ASSIGN(auto store_owner, FeatureStore::Create(FeatureSpec{}));
  FeatureStore& store = *store_owner;
  using V = std::vector<std::string>;
  store.Update(MakeEvent("A", kT0, EventType::kLogin));
  store.Update(MakeEvent("B", kT0, EventType::kLogin));
  store.ClearDirty();  // an output flush
  CHECK(UnsavedIds(store) == V{"A", "B"});
  store.Update(MakeEvent("C", kT0 + kHour, EventType::kLogin));
  store.Update(MakeEvent("A", kT0 + kHour, EventType::kLogin));
  CHECK(UnsavedIds(store) == V{"A", "B", "C"});
  store.ClearUnsaved();  // a checkpoint
  CHECK(UnsavedIds(store).empty());
  CHECK(Ids(store, false) == V{"C", "A"});  // the dirty set is untouched
  store.Update(MakeEvent("B", kT0 + 2 * kHour, EventType::kLogin));
  CHECK(UnsavedIds(store) == V{"B"});
  CHECK(store.unsaved_count() == 1);
}

}  // namespace crmstream::features
