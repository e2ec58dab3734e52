// Limits applied by every event decoder (JSON and CSV share one validator).
// Plain configuration values: checked once at start-up with Validate().
#pragma once

#include <cstddef>
#include <cstdint>

#include "crmstream/common/status.h"

namespace crmstream::ingest {

struct DecoderOptions {
  // Largest accepted record, in bytes (a Kafka message or one file line).
  // Larger records are rejected as too_large without being parsed. The
  // decoder allocates its buffers for this size once, at construction.
  size_t max_message_bytes = 64 * 1024;

  // Largest accepted `amount`, in the event's currency units; amounts must
  // also be finite and >= 0.
  double max_amount = 1e9;

  // Accepted event-time window, Unix epoch milliseconds (UTC):
  // [min_timestamp_ms, max_timestamp_ms). Defaults: 2000-01-01T00:00:00Z
  // inclusive to 2100-01-01T00:00:00Z exclusive.
  int64_t min_timestamp_ms = 946'684'800'000;
  int64_t max_timestamp_ms = 4'102'444'800'000;

  // When > 0, an event whose timestamp is more than this many milliseconds
  // ahead of "now" (the decoder's caller-supplied clock, else the system
  // clock) is rejected as out_of_range. 0 disables the check (default).
  int64_t max_future_skew_ms = 0;

  // InvalidArgument naming the first bad field, or OK.
  Status Validate() const;
};

}  // namespace crmstream::ingest
