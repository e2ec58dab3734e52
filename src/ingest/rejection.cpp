#include "crmstream/ingest/rejection.h"

namespace crmstream::ingest {

std::string_view RejectReasonName(RejectReason reason) {
  switch (reason) {
    case RejectReason::kNone:
      return "none";
    case RejectReason::kNotJson:
      return "not_json";
    case RejectReason::kNotObject:
      return "not_object";
    case RejectReason::kMissingField:
      return "missing_field";
    case RejectReason::kWrongType:
      return "wrong_type";
    case RejectReason::kOutOfRange:
      return "out_of_range";
    case RejectReason::kBadTimestamp:
      return "bad_timestamp";
    case RejectReason::kUnknownEventType:
      return "unknown_event_type";
    case RejectReason::kTooLarge:
      return "too_large";
    case RejectReason::kMalformedCsv:
      return "malformed_csv";
  }
  return "unknown";
}

std::optional<RejectReason> ParseRejectReason(std::string_view name) {
  if (name == "none") return RejectReason::kNone;
  for (RejectReason r : kAllRejectReasons) {
    if (RejectReasonName(r) == name) return r;
  }
  return std::nullopt;
}

std::string_view RejectReasonDescription(RejectReason reason) {
  switch (reason) {
    case RejectReason::kNone:
      return "accepted";
    case RejectReason::kNotJson:
      return "not a well-formed UTF-8 JSON document, or content follows the object";
    case RejectReason::kNotObject:
      return "the JSON document is not an object";
    case RejectReason::kMissingField:
      return "a required field is absent or null";
    case RejectReason::kWrongType:
      return "a field has the wrong type";
    case RejectReason::kOutOfRange:
      return "a field's value is outside its allowed range";
    case RejectReason::kBadTimestamp:
      return "the timestamp is not an ISO-8601 date-time";
    case RejectReason::kUnknownEventType:
      return "the event type is not a known one";
    case RejectReason::kTooLarge:
      return "the record exceeds the maximum message size";
    case RejectReason::kMalformedCsv:
      return "the line is not valid CSV for the header";
  }
  return "unknown reason";
}

}  // namespace crmstream::ingest
