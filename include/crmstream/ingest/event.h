// The customer interaction event: what every input (Kafka JSON, JSON-lines
// file, CSV file, the generator) becomes after decoding and validation.
//
// An Event is a view: its string_views point into the decoder's buffer and
// are valid only until the decoder decodes the next record. Copy what must
// outlive that. This keeps the hot path free of per-event allocation.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string_view>

namespace crmstream::ingest {

enum class EventType : uint8_t {
  kPurchase = 0,
  kLogin,
  kPageView,
  kSupportTicket,
  kComplaint,
  kRefund,
  kPlanChange,
  kAccountClosed,
};
inline constexpr int kEventTypeCount = 8;
// Longest plan name accepted (plan names become per-partition state).
inline constexpr size_t kMaxPlanBytes = 64;

// The wire names, as in docs/event-schema.json.
inline constexpr std::array<std::string_view, kEventTypeCount> kEventTypeNames = {
    "purchase",  "login",  "page_view",   "support_ticket",
    "complaint", "refund", "plan_change", "account_closed"};

inline std::string_view EventTypeName(EventType t) { return kEventTypeNames[static_cast<int>(t)]; }
inline std::optional<EventType> ParseEventType(std::string_view s) {
  for (int i = 0; i < kEventTypeCount; ++i) {
    if (kEventTypeNames[i] == s) return static_cast<EventType>(i);
  }
  return std::nullopt;
}
// Events that carry money and so require `amount` (and may carry `currency`).
inline bool EventTypeHasAmount(EventType t) {
  return t == EventType::kPurchase || t == EventType::kRefund;
}

struct Event {
  std::string_view event_id;     // required, 1..128 bytes
  std::string_view customer_id;  // required, 1..128 bytes
  int64_t timestamp_ms = 0;      // event time, Unix epoch milliseconds (UTC)
  EventType type = EventType::kPurchase;
  std::string_view channel;  // optional: web, app, store, phone, email, ... (empty if absent)
  double amount = 0.0;       // purchase/refund value, >= 0, in `currency`; 0 when absent
  bool has_amount = false;
  std::string_view currency;  // optional ISO-4217 code (3 upper-case letters)
  // optional, at most kMaxPlanBytes: the plan after a plan_change, or the current plan
  std::string_view plan;
  // optional, 1..128 bytes: the order (basket) a purchase belongs to, and the
  // item (product, SKU) bought; "" if absent. The co-purchase models use them.
  std::string_view order_id;
  std::string_view item_id;
  std::string_view attributes_json;  // optional free object, raw JSON text ("" if absent)
};

// Where a raw record came from; travels to the dead-letter topic with it.
struct SourcePosition {
  std::string_view topic;  // input topic, or the file path for replay
  int32_t partition = -1;  // -1 for files
  int64_t offset = -1;     // Kafka offset, or the line number for files
};

}  // namespace crmstream::ingest
