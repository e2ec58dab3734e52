// libFuzzer target for the CSV event decoder. The input's first line is the
// header (so the fuzzer explores column layouts too), every further line a
// record; nothing may crash, and accepted events keep the invariants.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "crmstream/ingest/csv_decoder.h"

namespace {

void Check(bool ok) {
  if (!ok) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  const size_t header_end = input.find('\n');
  if (header_end == std::string_view::npos) return 0;
  crmstream::ingest::DecoderOptions options;
  options.max_message_bytes = 4096;
  auto decoder =
      crmstream::ingest::CsvEventDecoder::FromHeader(input.substr(0, header_end), options);
  if (!decoder.ok()) return 0;
  input.remove_prefix(header_end + 1);
  crmstream::ingest::Event event;
  for (int records = 0; records < 64 && !input.empty(); ++records) {
    const size_t end = input.find('\n');
    const std::string_view line = input.substr(0, end);
    input.remove_prefix(end == std::string_view::npos ? input.size() : end + 1);
    if (decoder->Decode(line, 1'772'366'400'000, &event).rejected()) continue;
    Check(!event.event_id.empty() && event.event_id.size() <= 128);
    Check(!event.customer_id.empty() && event.customer_id.size() <= 128);
    Check(event.timestamp_ms >= options.min_timestamp_ms &&
          event.timestamp_ms < options.max_timestamp_ms);
    Check(std::isfinite(event.amount) && event.amount >= 0 && event.amount <= options.max_amount);
    Check(event.attributes_json.empty());
  }
  return 0;
}
