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

  // An event whose timestamp is more than this many milliseconds ahead of
  // the record's clock (the `now_ms` the caller passes: the broker timestamp
  // in the engine, else the system clock) is rejected as timestamp_in_future.
  // One such event would otherwise move its partition's event-time
  // watermark: every pending churn label would mature at once as "not
  // churned" and every later event would be late for the minute metrics.
  // Default 1 day. 0 or negative disables the check (not recommended: one
  // event stamped 2099 then poisons the partition's models for good). A
  // caller that has no clock passes now_ms <= 0, which skips the check.
  int64_t max_future_skew_ms = 86'400'000;

  // InvalidArgument naming the first bad field, or OK.
  Status Validate() const;
};

}  // namespace crmstream::ingest
