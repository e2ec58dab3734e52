// Event-time parsing and formatting shared by the decoders, the generator
// and tools. Accepts ISO-8601 / RFC 3339 date-times:
//   YYYY-MM-DD('T'|'t'|' ')hh:mm:ss[.fraction][Z|z|+hh:mm|-hh:mm|+hhmm|-hhmm]
// A missing zone means UTC. The fraction may have any number of digits and
// is truncated to milliseconds. Leap seconds (ss = 60) are not accepted.
// Pure functions; thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace crmstream::ingest {

// Unix epoch milliseconds, or nullopt when `text` is not a valid date-time.
std::optional<int64_t> ParseTimestampMs(std::string_view text);

// Days since 1970-01-01 of a proleptic Gregorian date (no validation).
int64_t DaysFromCivil(int64_t year, unsigned month, unsigned day);

// Writes "YYYY-MM-DDThh:mm:ss.sssZ" (24 bytes) for years 0..9999 into `buf`
// and returns a view of it.
std::string_view FormatTimestampMs(int64_t epoch_ms, char (&buf)[32]);

}  // namespace crmstream::ingest
