// Internal: the one validator behind both decoders. A front-end (JSON or
// CSV) only classifies each top-level field into a RawValue; every rule on
// required fields, types, ranges and timestamps lives in ValidateEvent, so
// the two input formats cannot drift apart. Stateless; thread-safe.
#pragma once

#include <cstdint>
#include <string_view>

#include "crmstream/ingest/decoder_options.h"
#include "crmstream/ingest/event.h"
#include "crmstream/ingest/rejection.h"

namespace crmstream::ingest::internal {

enum class RawKind : uint8_t {
  kAbsent,      // not present, or JSON null, or an empty CSV cell
  kString,      // text = the unescaped string
  kInteger,     // fits int64: integer = value, text = its digits
  kBigInteger,  // an integer beyond int64: text = its digits
  kNumber,      // any other number: number = value
  kObject,      // text = the raw JSON of the object
  kOther,       // bool, array, or an object where none is expected
};

struct RawValue {
  RawKind kind = RawKind::kAbsent;
  std::string_view text;
  int64_t integer = 0;
  double number = 0.0;
};

// Indexes of the known top-level fields.
enum FieldIndex : int {
  kFieldEventId = 0,
  kFieldCustomerId,
  kFieldTimestamp,
  kFieldType,
  kFieldChannel,
  kFieldAmount,
  kFieldCurrency,
  kFieldPlan,
  kFieldOrderId,
  kFieldItemId,
  kFieldAttributes,
  kFieldCount,
};

// The wire names, indexed by FieldIndex.
inline constexpr std::string_view kFieldNames[kFieldCount] = {
    "event_id", "customer_id", "timestamp", "type",    "channel",   "amount",
    "currency", "plan",        "order_id",  "item_id", "attributes"};

// The FieldIndex of a wire name, or -1 for an unknown field.
int FindField(std::string_view name);

struct RawEvent {
  RawValue fields[kFieldCount];
  void Clear() {
    for (RawValue& f : fields) f = RawValue{};
  }
};

inline constexpr size_t kMaxIdBytes = 128;

// Checks `raw` against every rule and fills `*out` on acceptance. `now_ms`
// is used only when options.max_future_skew_ms > 0.
Rejection ValidateEvent(const RawEvent& raw, const DecoderOptions& options, int64_t now_ms,
                        Event* out);

// Unix epoch ms from the system clock.
int64_t SystemNowMs();

}  // namespace crmstream::ingest::internal
