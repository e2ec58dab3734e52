#include <cmath>

#include "crmstream/features/feature_store.h"

namespace crmstream::features {

void WriteFeaturesJson(const CustomerFeatures& f, JsonWriter* w) {
  w->Field("features_as_of_ms", f.as_of_ms());
  w->Field("first_seen_ms", f.first_seen_ms());
  w->Field("recency_days", f.recency_days());  // null before any purchase
  w->Field("frequency", f.frequency());
  w->Field("monetary", f.monetary());
  w->Field("avg_order_value", f.average_order_value());
  w->Field("days_since_last_login", f.days_since_last_login());
  w->Field("tenure_days", f.tenure_days());
  w->Field("ticket_rate_30d", f.ticket_rate_30d());
  w->Field("complaint_rate_30d", f.complaint_rate_30d());
  w->Key("plan");
  if (f.plan().empty()) {
    w->Null();
  } else {
    w->String(f.plan());
  }
  w->Field("plan_changes", f.plan_changes());
  w->Field("closed", f.closed());
  w->Key("event_counts");
  w->BeginObject();
  for (int t = 0; t < ingest::kEventTypeCount; ++t) {
    const auto type = static_cast<ingest::EventType>(t);
    w->Field(ingest::EventTypeName(type), f.event_count(type));
  }
  w->EndObject();
  w->Key("windows");
  w->BeginObject();
  char key[16];
  for (size_t i = 0; i < f.window_count(); ++i) {
    const WindowAggregates a = f.window(i);
    auto r = std::to_chars(key, key + sizeof(key) - 1, a.days);
    *r.ptr++ = 'd';
    w->Key(std::string_view(key, static_cast<size_t>(r.ptr - key)));
    w->BeginObject();
    w->Field("purchases", a.purchases);
    w->Field("purchase_amount", a.purchase_amount);
    w->Field("logins", a.logins);
    w->Field("page_views", a.page_views);
    w->Field("support_tickets", a.support_tickets);
    w->Field("complaints", a.complaints);
    w->Field("refunds", a.refunds);
    w->Field("refund_amount", a.refund_amount);
    w->EndObject();
  }
  w->EndObject();
}

}  // namespace crmstream::features
