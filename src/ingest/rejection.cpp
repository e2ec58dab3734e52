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
    case RejectReason::kTimestampInFuture:
      return "timestamp_in_future";
    case RejectReason::kDuplicateKey:
      return "duplicate_key";
    case RejectReason::kProcessingError:
      return "processing_error";
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
    case RejectReason::kTimestampInFuture:
      return "the timestamp is further ahead of the record's clock than max_future_skew_ms";
    case RejectReason::kDuplicateKey:
      return "a field appears more than once in the object";
    case RejectReason::kProcessingError:
      return "the event is valid but processing it failed; the engine went on without it";
  }
  return "unknown reason";
}

}  // namespace crmstream::ingest
