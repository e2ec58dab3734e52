#include "event_validator.h"

#include <chrono>
#include <cmath>

#include "crmstream/ingest/timestamp.h"

namespace crmstream::ingest::internal {
namespace {

Rejection Reject(RejectReason code, int field, std::string_view detail) {
  return Rejection{code, kFieldNames[field], detail};
}

// event_id / customer_id: a string (customer_id also an integer), 1..128 bytes.
Rejection CheckId(const RawValue& v, int field, bool allow_integer, std::string_view* out) {
  switch (v.kind) {
    case RawKind::kAbsent:
      return Reject(RejectReason::kMissingField, field, "required field");
    case RawKind::kString:
      break;
    case RawKind::kInteger:
    case RawKind::kBigInteger:
      if (allow_integer) break;
      return Reject(RejectReason::kWrongType, field, "must be a string");
    default:
      return Reject(RejectReason::kWrongType, field,
                    allow_integer ? "must be a string or an integer" : "must be a string");
  }
  if (v.text.empty() || v.text.size() > kMaxIdBytes) {
    return Reject(RejectReason::kOutOfRange, field, "must be 1..128 bytes long");
  }
  *out = v.text;
  return Rejection::Accepted();
}

// order_id / item_id: absent, or an id as event_id / customer_id are.
Rejection CheckOptionalId(const RawValue& v, int field, std::string_view* out) {
  if (v.kind == RawKind::kAbsent) {
    *out = {};
    return Rejection::Accepted();
  }
  return CheckId(v, field, true, out);
}

Rejection CheckOptionalString(const RawValue& v, int field, std::string_view* out) {
  if (v.kind == RawKind::kAbsent) {
    *out = {};
    return Rejection::Accepted();
  }
  if (v.kind != RawKind::kString) {
    return Reject(RejectReason::kWrongType, field, "must be a string");
  }
  *out = v.text;
  return Rejection::Accepted();
}

bool IsCurrencyCode(std::string_view s) {
  if (s.size() != 3) return false;
  for (char c : s) {
    if (c < 'A' || c > 'Z') return false;
  }
  return true;
}

}  // namespace

int FindField(std::string_view name) {
  for (int i = 0; i < kFieldCount; ++i) {
    if (kFieldNames[i] == name) return i;
  }
  return -1;
}

int64_t SystemNowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Rejection ValidateEvent(const RawEvent& raw, const DecoderOptions& options, int64_t now_ms,
                        Event* out) {
  const RawValue* f = raw.fields;
  Rejection r = CheckId(f[kFieldEventId], kFieldEventId, false, &out->event_id);
  if (r.rejected()) return r;
  r = CheckId(f[kFieldCustomerId], kFieldCustomerId, true, &out->customer_id);
  if (r.rejected()) return r;

  const RawValue& type = f[kFieldType];
  if (type.kind == RawKind::kAbsent) {
    return Reject(RejectReason::kMissingField, kFieldType, "required field");
  }
  if (type.kind != RawKind::kString) {
    return Reject(RejectReason::kWrongType, kFieldType, "must be a string");
  }
  const std::optional<EventType> event_type = ParseEventType(type.text);
  if (!event_type) {
    return Reject(RejectReason::kUnknownEventType, kFieldType,
                  "must be one of purchase, login, page_view, support_ticket, complaint, "
                  "refund, plan_change, account_closed");
  }
  out->type = *event_type;

  const RawValue& ts = f[kFieldTimestamp];
  int64_t timestamp_ms = 0;
  switch (ts.kind) {
    case RawKind::kAbsent:
      return Reject(RejectReason::kMissingField, kFieldTimestamp, "required field");
    case RawKind::kInteger:
      timestamp_ms = ts.integer;
      break;
    case RawKind::kBigInteger:
      return Reject(RejectReason::kOutOfRange, kFieldTimestamp,
                    "epoch milliseconds outside the accepted window");
    case RawKind::kString: {
      const std::optional<int64_t> parsed = ParseTimestampMs(ts.text);
      if (!parsed) {
        return Reject(RejectReason::kBadTimestamp, kFieldTimestamp,
                      "expected an ISO-8601 date-time such as 2026-03-01T12:00:00Z");
      }
      timestamp_ms = *parsed;
      break;
    }
    default:
      return Reject(RejectReason::kWrongType, kFieldTimestamp,
                    "must be an ISO-8601 string or an integer of epoch milliseconds");
  }
  if (timestamp_ms < options.min_timestamp_ms || timestamp_ms >= options.max_timestamp_ms) {
    return Reject(RejectReason::kOutOfRange, kFieldTimestamp,
                  "outside the accepted window (default 2000-01-01 to 2100-01-01)");
  }
  // Unsigned difference: exact for any two int64 values with timestamp > now.
  // now_ms <= 0: the caller has no clock for this record (see DecoderOptions).
  if (options.max_future_skew_ms > 0 && now_ms > 0 && timestamp_ms > now_ms &&
      static_cast<uint64_t>(timestamp_ms) - static_cast<uint64_t>(now_ms) >
          static_cast<uint64_t>(options.max_future_skew_ms)) {
    return Reject(RejectReason::kTimestampInFuture, kFieldTimestamp,
                  "further ahead of the record's clock than max_future_skew_ms (default 1 day)");
  }
  out->timestamp_ms = timestamp_ms;

  const RawValue& amount = f[kFieldAmount];
  switch (amount.kind) {
    case RawKind::kAbsent:
      if (EventTypeHasAmount(out->type)) {
        return Reject(RejectReason::kMissingField, kFieldAmount,
                      "required for purchase and refund events");
      }
      out->amount = 0.0;
      out->has_amount = false;
      break;
    case RawKind::kInteger:
    case RawKind::kBigInteger:
    case RawKind::kNumber: {
      const double value =
          amount.kind == RawKind::kInteger ? static_cast<double>(amount.integer) : amount.number;
      if (!std::isfinite(value) || value < 0 || value > options.max_amount) {
        return Reject(RejectReason::kOutOfRange, kFieldAmount,
                      "must be finite, >= 0 and <= max_amount (default 1e9)");
      }
      out->amount = value;
      out->has_amount = true;
      break;
    }
    default:
      return Reject(RejectReason::kWrongType, kFieldAmount, "must be a number");
  }

  r = CheckOptionalString(f[kFieldCurrency], kFieldCurrency, &out->currency);
  if (r.rejected()) return r;
  if (f[kFieldCurrency].kind == RawKind::kString && !IsCurrencyCode(out->currency)) {
    return Reject(RejectReason::kOutOfRange, kFieldCurrency,
                  "must be 3 upper-case ASCII letters (ISO 4217)");
  }
  r = CheckOptionalString(f[kFieldChannel], kFieldChannel, &out->channel);
  if (r.rejected()) return r;
  r = CheckOptionalString(f[kFieldPlan], kFieldPlan, &out->plan);
  if (r.rejected()) return r;
  // A plan name becomes per-partition state (the feature store's plan table).
  if (out->plan.size() > kMaxPlanBytes) {
    return Reject(RejectReason::kOutOfRange, kFieldPlan, "must be at most 64 bytes");
  }
  r = CheckOptionalId(f[kFieldOrderId], kFieldOrderId, &out->order_id);
  if (r.rejected()) return r;
  r = CheckOptionalId(f[kFieldItemId], kFieldItemId, &out->item_id);
  if (r.rejected()) return r;

  const RawValue& attributes = f[kFieldAttributes];
  if (attributes.kind == RawKind::kAbsent) {
    out->attributes_json = {};
  } else if (attributes.kind == RawKind::kObject) {
    out->attributes_json = attributes.text;
  } else {
    return Reject(RejectReason::kWrongType, kFieldAttributes, "must be an object");
  }
  return Rejection::Accepted();
}

}  // namespace crmstream::ingest::internal
