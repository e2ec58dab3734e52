#include <array>
#include <cmath>

#include "crmstream/features/feature_store.h"

namespace crmstream::features {
namespace {

using json_literals::operator""_key;

// The event_counts keys, in EventType order (checked against the wire names).
constexpr std::array<JsonKey, ingest::kEventTypeCount> kEventCountKeys = {
    "purchase"_key,  "login"_key,  "page_view"_key,   "support_ticket"_key,
    "complaint"_key, "refund"_key, "plan_change"_key, "account_closed"_key};

constexpr bool EventCountKeysMatchNames() {
  for (size_t i = 0; i < kEventCountKeys.size(); ++i) {
    const std::string_view encoded = kEventCountKeys[i].encoded();  // ,"name":
    if (encoded.substr(2, encoded.size() - 4) != ingest::kEventTypeNames[i]) return false;
  }
  return true;
}
static_assert(EventCountKeysMatchNames(), "kEventCountKeys must follow ingest::kEventTypeNames");

}  // namespace

void WriteFeaturesJson(const CustomerFeatures& f, JsonWriter* w) {
  // Every window in one pass over the per-day history (the rates read the
  // longest one).
  WindowAggregates windows[FeatureSpec::kMaxWindows];
  f.Windows(windows);
  const WindowAggregates& longest = windows[f.longest_window_index()];
  w->Field("features_as_of_ms"_key, f.as_of_ms());
  w->Field("first_seen_ms"_key, f.first_seen_ms());
  w->Field("recency_days"_key, f.recency_days());  // null before any purchase
  w->Field("frequency"_key, f.frequency());
  w->Field("monetary"_key, f.monetary());
  w->Field("avg_order_value"_key, f.average_order_value());
  w->Field("days_since_last_login"_key, f.days_since_last_login());
  w->Field("tenure_days"_key, f.tenure_days());
  w->Field("ticket_rate_30d"_key, f.ticket_rate_30d(longest));
  w->Field("complaint_rate_30d"_key, f.complaint_rate_30d(longest));
  w->Key("plan"_key);
  if (f.plan().empty()) {
    w->Null();
  } else {
    w->String(f.plan());
  }
  w->Field("plan_changes"_key, f.plan_changes());
  w->Field("closed"_key, f.closed());
  w->Key("event_counts"_key);
  w->BeginObject();
  for (int t = 0; t < ingest::kEventTypeCount; ++t) {
    w->Field(kEventCountKeys[static_cast<size_t>(t)],
             f.event_count(static_cast<ingest::EventType>(t)));
  }
  w->EndObject();
  w->Key("windows"_key);
  w->BeginObject();
  char key[16];
  for (size_t i = 0; i < f.window_count(); ++i) {
    const WindowAggregates& a = windows[i];
    auto r = std::to_chars(key, key + sizeof(key) - 1, a.days);
    *r.ptr++ = 'd';
    w->Key(std::string_view(key, static_cast<size_t>(r.ptr - key)));
    w->BeginObject();
    w->Field("purchases"_key, a.purchases);
    w->Field("purchase_amount"_key, a.purchase_amount);
    w->Field("logins"_key, a.logins);
    w->Field("page_views"_key, a.page_views);
    w->Field("support_tickets"_key, a.support_tickets);
    w->Field("complaints"_key, a.complaints);
    w->Field("refunds"_key, a.refunds);
    w->Field("refund_amount"_key, a.refund_amount);
    w->EndObject();
  }
  w->EndObject();
}

}  // namespace crmstream::features
