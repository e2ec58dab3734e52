// The hot path must not allocate per event once warm. Allocations are
// counted only inside the measured region (support/allocation_counter.h).
#include <catch2/catch.hpp>
#include <fstream>
#include <string>

#include "crmstream/ingest/csv_decoder.h"
#include "crmstream/ingest/dead_letter.h"
#include "crmstream/ingest/dedup_window.h"
#include "crmstream/ingest/json_decoder.h"
#include "crmstream/ingest/line_reader.h"
#include "support/allocation_counter.h"
#include "support/require_ok.h"
#include "support/test_support.h"

namespace crmstream::ingest {
namespace {

// Counts the allocations made by `fn`.
template <typename Fn>
long CountAllocations(Fn&& fn) {
  crmstream::testing::StartCountingAllocations();
  fn();
  return crmstream::testing::StopCountingAllocations();
}

std::string JsonEvent(int i) {
  return R"({"event_id":"evt-)" + std::to_string(i) +
         R"(","customer_id":"c-7","timestamp":"2026-03-01T12:00:00.250+01:00","type":"purchase",)"
         R"("amount":12.5,"currency":"EUR","attributes":{"k":[1,2,{"x":"y"}]},"other":"z"})";
}

TEST_CASE("A warm decoder, dedup window and dead-letter builder allocate nothing", "[ingest]") {
  EventDecoder decoder;
  DedupWindow window(1000);
  DeadLetterRecord dead_letter;
  auto csv = CsvEventDecoder::FromHeader("event_id,customer_id,timestamp,type,amount");
  REQUIRE_OK(csv);
  std::vector<std::string> messages;
  std::vector<std::string> lines;
  for (int i = 0; i < 3000; ++i) {  // more ids than the window holds: evictions too
    messages.push_back(JsonEvent(i));
    lines.push_back("e" + std::to_string(i) + ",c,2011-12-01 08:26:00,refund,3.5");
  }
  const std::string bad = R"({"event_id":"e","type":"login"})";
  Event e;
  // Warm-up: the dead-letter buffers grow once.
  (void)dead_letter.Build(decoder.Decode(bad, &e), {"t", 0, 0}, bad, 1);

  // A control: the counter does see allocations.
  std::string grown;
  CHECK(CountAllocations([&] { grown.assign(1000, 'x'); }) > 0);

  long accepted = 0;
  const long allocations = CountAllocations([&] {
    for (size_t i = 0; i < messages.size(); ++i) {
      if (!decoder.Decode(messages[i], &e).rejected() && !window.SeenBefore(e.event_id)) {
        ++accepted;
      }
      if (!csv->Decode(lines[i], &e).rejected()) ++accepted;
      (void)dead_letter.Build(decoder.Decode(bad, &e), {"t", 0, static_cast<int64_t>(i)}, bad, 1);
    }
  });
  CHECK(accepted == 6000);
  CHECK(allocations == 0);
}

TEST_CASE("LineReader allocates nothing per line", "[ingest]") {
  crmstream::testing::ScratchDir dir;
  const auto path = dir.path() / "events.jsonl";
  {
    std::ofstream out(path, std::ios::binary);
    for (int i = 0; i < 20000; ++i) out << JsonEvent(i) << (i % 3 ? "\n" : "\r\n");
  }
  for (const bool keep_previous_line : {false, true}) {
    CAPTURE(keep_previous_line);
    LineReaderOptions options;
    options.read_size = 1 << 16;  // many refills
    options.keep_previous_line = keep_previous_line;
    auto reader = LineReader::Open(path, options);
    REQUIRE_OK(reader);
    // The first reads allocate the buffer (and, keeping the previous line,
    // the second one at the first refill).
    Line lines[2];
    long count = 0;
    for (; count < 2000; ++count) REQUIRE(*reader->Next(&lines[count % 2]));
    const long allocations = CountAllocations([&] {
      while (true) {
        Result<bool> more = reader->Next(&lines[count % 2]);
        if (!more.ok() || !*more) break;
        ++count;
      }
    });
    CHECK(count == 20000);
    CHECK(allocations == 0);
  }
}

}  // namespace
}  // namespace crmstream::ingest
