// The compact encoding of a customer's per-day aggregates (private to the
// features module). A customer's days are one byte string, oldest first, one
// record per UTC day that had windowed events:
//
//   header byte: bits 0-5 = which of the six counted metrics are non-zero
//                (WindowMetric order), bits 6-7 = gap code: 1..3 is the gap in
//                days from the previous record, 0 means a varint gap follows
//   [varint gap]
//   varint count for each metric present, in WindowMetric order
//   varint purchase cents, if purchases are present
//   varint refund cents, if refunds are present
//
// A quiet day with a login and two page views takes 3 bytes. Stateless
// functions; thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>

#include "crmstream/features/feature_store.h"

namespace crmstream::features::internal {

struct DayAggregate {
  int32_t day = 0;  // UTC days since 1970-01-01
  uint32_t counts[kWindowMetricCount] = {};
  uint64_t cents[2] = {};  // purchase, refund

  bool empty() const {
    for (uint32_t c : counts) {
      if (c != 0) return false;
    }
    return true;
  }
};

// header + gap + six uint32 counts + two uint64 amounts, all as varints.
inline constexpr size_t kMaxDayRecordBytes = 1 + 5 + kWindowMetricCount * 5 + 2 * 10;
// Days further apart than this are corruption (windows are at most 1000
// days; a ring spans less than two longest windows).
inline constexpr uint32_t kMaxGapDays = 1u << 20;

// LEB128 varints.
namespace varint {

inline uint8_t* Put(uint64_t v, uint8_t* out) {
  while (v >= 0x80) {
    *out++ = static_cast<uint8_t>(v | 0x80);
    v >>= 7;
  }
  *out++ = static_cast<uint8_t>(v);
  return out;
}

// nullptr on truncation or a varint longer than 10 bytes.
inline const uint8_t* Get(const uint8_t* p, const uint8_t* end, uint64_t* v) {
  if (p < end && *p < 0x80) {  // most values fit one byte
    *v = *p;
    return p + 1;
  }
  uint64_t result = 0;
  for (int shift = 0; shift < 64 && p < end; shift += 7) {
    const uint8_t byte = *p++;
    result |= static_cast<uint64_t>(byte & 0x7F) << shift;
    if ((byte & 0x80) == 0) {
      *v = result;
      return p;
    }
  }
  return nullptr;
}

}  // namespace varint

// Writes the record for `d` (which must not be empty) at `out`, with `gap`
// days from the previous record; returns its length (<= kMaxDayRecordBytes).
inline size_t EncodeDayRecord(const DayAggregate& d, uint32_t gap, uint8_t* out) {
  uint8_t mask = 0;
  for (int m = 0; m < kWindowMetricCount; ++m) {
    if (d.counts[m] != 0) mask |= static_cast<uint8_t>(1u << m);
  }
  const uint8_t gap_code = (gap >= 1 && gap <= 3) ? static_cast<uint8_t>(gap) : 0;
  uint8_t* p = out;
  *p++ = static_cast<uint8_t>(mask | (gap_code << 6));
  if (gap_code == 0) p = varint::Put(gap, p);
  for (int m = 0; m < kWindowMetricCount; ++m) {
    if (d.counts[m] != 0) p = varint::Put(d.counts[m], p);
  }
  if (d.counts[static_cast<int>(WindowMetric::kPurchases)] != 0) p = varint::Put(d.cents[0], p);
  if (d.counts[static_cast<int>(WindowMetric::kRefunds)] != 0) p = varint::Put(d.cents[1], p);
  return static_cast<size_t>(p - out);
}

// Reads one record from [p, end); sets *gap and the counts and cents of *out
// (not its day). Returns the bytes consumed, or 0 if the bytes are not a
// valid record (truncated, over-long varint, value out of range, no metric).
inline size_t DecodeDayRecord(const uint8_t* p, const uint8_t* end, uint32_t* gap,
                              DayAggregate* out) {
  const uint8_t* start = p;
  if (p >= end) return 0;
  const uint8_t header = *p++;
  const uint8_t mask = header & 0x3F;
  if (mask == 0) return 0;
  uint64_t v = header >> 6;
  if (v == 0) {
    p = varint::Get(p, end, &v);
    if (p == nullptr || v > kMaxGapDays) return 0;
  }
  *gap = static_cast<uint32_t>(v);
  for (int m = 0; m < kWindowMetricCount; ++m) {
    out->counts[m] = 0;
    if ((mask & (1u << m)) == 0) continue;
    p = varint::Get(p, end, &v);
    if (p == nullptr || v == 0 || v > std::numeric_limits<uint32_t>::max()) return 0;
    out->counts[m] = static_cast<uint32_t>(v);
  }
  out->cents[0] = out->cents[1] = 0;
  if (mask & (1u << static_cast<int>(WindowMetric::kPurchases))) {
    p = varint::Get(p, end, &out->cents[0]);
    if (p == nullptr) return 0;
  }
  if (mask & (1u << static_cast<int>(WindowMetric::kRefunds))) {
    p = varint::Get(p, end, &out->cents[1]);
    if (p == nullptr) return 0;
  }
  return static_cast<size_t>(p - start);
}

// Reads only the gap of the record at [p, end) (0 if the header is bad): the
// expiry loop needs a record's day before deciding to decode it.
inline uint32_t PeekDayGap(const uint8_t* p, const uint8_t* end) {
  if (p >= end) return 0;
  const uint8_t code = *p >> 6;
  if (code != 0) return code;
  uint64_t v = 0;
  if (varint::Get(p + 1, end, &v) == nullptr || v > kMaxGapDays) return 0;
  return static_cast<uint32_t>(v);
}

}  // namespace crmstream::features::internal
