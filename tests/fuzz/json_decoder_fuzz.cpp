// libFuzzer target for the JSON event decoder and the dead-letter record of
// whatever it rejects: neither may crash, read out of bounds or hit UB on any
// input, and every accepted event must satisfy the documented invariants.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "crmstream/ingest/dead_letter.h"
#include "crmstream/ingest/json_decoder.h"

namespace {

using crmstream::ingest::DeadLetterRecord;
using crmstream::ingest::Event;
using crmstream::ingest::EventDecoder;
using crmstream::ingest::EventTypeHasAmount;
using crmstream::ingest::Rejection;

void Check(bool ok) {
  if (!ok) std::abort();  // an invariant of an accepted event broke
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static EventDecoder decoder;
  static DeadLetterRecord dead_letter;
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  Event event;
  constexpr int64_t kNow = 1'772'366'400'000;
  const Rejection r = decoder.Decode(bytes, kNow, &event);
  if (r.rejected()) {
    (void)dead_letter.Build(r, {"fuzz", 0, 0}, bytes, 0);
    return 0;
  }
  const auto& options = decoder.options();
  Check(!event.event_id.empty() && event.event_id.size() <= 128);
  Check(!event.customer_id.empty() && event.customer_id.size() <= 128);
  Check(event.timestamp_ms >= options.min_timestamp_ms &&
        event.timestamp_ms < options.max_timestamp_ms);
  Check(event.timestamp_ms <= kNow + options.max_future_skew_ms);  // the default skew check
  Check(!EventTypeHasAmount(event.type) || event.has_amount);
  Check(std::isfinite(event.amount) && event.amount >= 0 && event.amount <= options.max_amount);
  Check(event.currency.empty() || event.currency.size() == 3);
  Check(event.attributes_json.empty() ||
        (event.attributes_json.front() == '{' && event.attributes_json.back() == '}'));
  return 0;
}
