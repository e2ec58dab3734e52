// Why an input record was rejected: a small value type returned by every
// decoder (JSON, CSV) instead of a Status, so that the hot path never
// allocates, and so that the pipeline can count rejections by reason and
// route the record to the dead-letter topic with the offending field.
//
// Reason names are stable snake_case strings: they label the rejection
// metric and appear in dead-letter records, so they must never change.
// Everything here is immutable and thread-safe.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string_view>

namespace crmstream::ingest {

enum class RejectReason : uint8_t {
  kNone = 0,           // accepted
  kNotJson,            // malformed JSON, not UTF-8, or content after the object
  kNotObject,          // valid JSON whose top level is not an object
  kMissingField,       // a required field is absent (or null)
  kWrongType,          // a field has the wrong JSON type (e.g. amount as a string)
  kOutOfRange,         // a field's value is outside its allowed range or format
  kBadTimestamp,       // timestamp is a string that is not ISO-8601 / RFC 3339
  kUnknownEventType,   // `type` is not one of the names in event.h
  kTooLarge,           // the record exceeds DecoderOptions::max_message_bytes
  kMalformedCsv,       // a CSV line that does not parse (quoting, column count, UTF-8)
  kTimestampInFuture,  // further ahead of the record's clock than max_future_skew_ms
  kDuplicateKey,       // a known top-level field appears twice in one object
  kProcessingError,    // valid, but processing it failed (the engine went on without it)
};

// Every reason a record can be rejected for (kNone excluded), e.g. to
// pre-create one metric series per reason.
inline constexpr std::array<RejectReason, 12> kAllRejectReasons = {
    RejectReason::kNotJson,           RejectReason::kNotObject,    RejectReason::kMissingField,
    RejectReason::kWrongType,         RejectReason::kOutOfRange,   RejectReason::kBadTimestamp,
    RejectReason::kUnknownEventType,  RejectReason::kTooLarge,     RejectReason::kMalformedCsv,
    RejectReason::kTimestampInFuture, RejectReason::kDuplicateKey, RejectReason::kProcessingError};

// Stable snake_case name: "none", "not_json", "missing_field", ...
std::string_view RejectReasonName(RejectReason reason);
// The inverse of RejectReasonName (for tools reading dead letters).
std::optional<RejectReason> ParseRejectReason(std::string_view name);
// One human sentence describing the reason in general.
std::string_view RejectReasonDescription(RejectReason reason);

// The outcome of decoding one record. `field` and `detail` always point to
// static strings, so a Rejection may be kept after the next decode.
struct Rejection {
  RejectReason code = RejectReason::kNone;
  std::string_view field;   // the offending top-level field ("" when not about one field)
  std::string_view detail;  // what exactly was wrong, human text ("" when accepted)

  bool rejected() const { return code != RejectReason::kNone; }
  static Rejection Accepted() { return {}; }
};

}  // namespace crmstream::ingest
