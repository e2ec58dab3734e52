// What the generator knows and the stream does not say: which customers
// churned and when their fade began, which anomalies were injected, which
// records are malformed (and why) or duplicated, and every customer's latent
// segment. Used to score the engine's churn alerts, anomaly detection and
// dead-letter handling against the truth. Plain values; not thread-safe
// while the generator that owns it is running.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace crmstream::generator {

// The latent customer segments. They set activity rates, basket sizes,
// channel mix, plan and churn hazard; they never appear in the events.
enum class Segment : uint8_t {
  kBargainHunter = 0,
  kLoyalHighValue,
  kOccasional,
  kNewcomer,
  kAtRisk,
};
inline constexpr int kSegmentCount = 5;
// "bargain_hunter", "loyal_high_value", "occasional", "newcomer", "at_risk".
std::string_view SegmentName(Segment s);

enum class AnomalyKind : uint8_t {
  kRefundBurst = 0,  // one customer, several refunds within hours
  kOutage,           // global: logins and page views drop, tickets spike
  kRevenueDrop,      // global: purchases fall
};
// "refund_burst", "outage", "revenue_drop".
std::string_view AnomalyKindName(AnomalyKind k);

// The intended defect of a malformed record.
enum class MalformedReason : uint8_t {
  kMissingCustomerId = 0,  // valid JSON without `customer_id`
  kAmountAsString,         // a purchase whose `amount` is a JSON string
  kUnknownType,            // `type` is not an event type name
  kBadTimestamp,           // `timestamp` is a string that is not ISO-8601
  kNotJson,                // bytes that are not JSON (a truncated object)
  kNegativeAmount,         // a purchase with amount < 0
};
inline constexpr int kMalformedReasonCount = 6;
// "missing_customer_id", "amount_as_string", "unknown_type",
// "bad_timestamp", "not_json", "negative_amount".
std::string_view MalformedReasonName(MalformedReason r);
// The decoder's rejection reason this defect must produce, as the stable
// names of ingest/rejection.h: "missing_field", "wrong_type",
// "unknown_event_type", "bad_timestamp", "not_json", "out_of_range".
std::string_view ExpectedRejectReasonName(MalformedReason r);

struct ChurnerTruth {
  std::string customer_id;
  int64_t fade_start_ms = 0;  // may precede the stream's start for the first customers
  int64_t closed_ms = 0;      // the account_closed event's timestamp
};

struct AnomalyTruth {
  AnomalyKind kind = AnomalyKind::kOutage;
  std::string customer_id;  // empty for global anomalies
  int64_t start_ms = 0;
  int64_t end_ms = 0;  // inclusive for refund bursts (the last refund), exclusive otherwise
};

struct MalformedTruth {
  int64_t record_index = 0;  // 0-based position in the stream of records returned by Next()
  MalformedReason reason = MalformedReason::kNotJson;
};

struct CustomerTruth {
  std::string customer_id;
  Segment segment = Segment::kOccasional;  // after a newcomer matures, its mature segment
  int64_t joined_ms = 0;
};

struct GroundTruth {
  // In order of their account_closed events.
  std::vector<ChurnerTruth> churners;
  // In order of start (customer refund bursts are recorded when triggered,
  // global windows when the simulated clock enters them).
  std::vector<AnomalyTruth> anomalies;
  std::vector<MalformedTruth> malformed;
  std::array<int64_t, kMalformedReasonCount> malformed_by_reason{};
  int64_t duplicates = 0;  // extra copies emitted (a record sent twice counts 1)
  int64_t events = 0;      // well-formed events, first copies only
  int64_t records = 0;     // everything Next() returned: events + duplicates + malformed
};

}  // namespace crmstream::generator
