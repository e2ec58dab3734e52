// The hot path must not allocate per event once warm. This test binary
// replaces the global operator new to count allocations inside a measured
// region (counting is off elsewhere, so Catch2's own allocations don't count).
#include <atomic>
#include <catch2/catch.hpp>
#include <cstdlib>
#include <fstream>
#include <new>
#include <string>

#include "crmstream/ingest/csv_decoder.h"
#include "crmstream/ingest/dead_letter.h"
#include "crmstream/ingest/dedup_window.h"
#include "crmstream/ingest/json_decoder.h"
#include "crmstream/ingest/line_reader.h"
#include "support/test_support.h"

// Under AddressSanitizer the replacement would pair ASan's operator new
// (called from prebuilt libraries such as simdjson) with our free(): the
// counting is left to the uninstrumented builds there.
#if defined(__SANITIZE_ADDRESS__)
#define CRMSTREAM_COUNT_ALLOCATIONS 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CRMSTREAM_COUNT_ALLOCATIONS 0
#endif
#endif
#ifndef CRMSTREAM_COUNT_ALLOCATIONS
#define CRMSTREAM_COUNT_ALLOCATIONS 1
#endif

namespace {
std::atomic<bool> g_counting{false};
std::atomic<long> g_allocations{0};
}  // namespace

#if CRMSTREAM_COUNT_ALLOCATIONS
void* operator new(std::size_t n) {
  if (g_counting.load(std::memory_order_relaxed)) g_allocations.fetch_add(1);
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
#define SKIP_WITHOUT_ALLOCATION_COUNTING() (void)0
#else
#define SKIP_WITHOUT_ALLOCATION_COUNTING()                               \
  do {                                                                   \
    WARN("SKIPPED: allocations are not counted under AddressSanitizer"); \
    return;                                                              \
  } while (false)
#endif

namespace crmstream::ingest {
namespace {

// Counts the allocations made by `fn`.
template <typename Fn>
long CountAllocations(Fn&& fn) {
  g_allocations = 0;
  g_counting = true;
  fn();
  g_counting = false;
  return g_allocations.load();
}

std::string JsonEvent(int i) {
  return R"({"event_id":"evt-)" + std::to_string(i) +
         R"(","customer_id":"c-7","timestamp":"2026-03-01T12:00:00.250+01:00","type":"purchase",)"
         R"("amount":12.5,"currency":"EUR","attributes":{"k":[1,2,{"x":"y"}]},"other":"z"})";
}

TEST_CASE("A warm decoder, dedup window and dead-letter builder allocate nothing", "[ingest]") {
  SKIP_WITHOUT_ALLOCATION_COUNTING();
  EventDecoder decoder;
  DedupWindow window(1000);
  DeadLetterRecord dead_letter;
  auto csv = CsvEventDecoder::FromHeader("event_id,customer_id,timestamp,type,amount");
  REQUIRE(csv.ok());
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
  SKIP_WITHOUT_ALLOCATION_COUNTING();
  crmstream::testing::ScratchDir dir;
  const auto path = dir.path() / "events.jsonl";
  {
    std::ofstream out(path, std::ios::binary);
    for (int i = 0; i < 20000; ++i) out << JsonEvent(i) << (i % 3 ? "\n" : "\r\n");
  }
  LineReaderOptions options;
  options.read_size = 1 << 16;  // many refills
  auto reader = LineReader::Open(path, options);
  REQUIRE(reader.ok());
  Line line;
  REQUIRE(*reader->Next(&line));  // the first read allocates the buffer
  long lines = 1;
  const long allocations = CountAllocations([&] {
    while (true) {
      Result<bool> more = reader->Next(&line);
      if (!more.ok() || !*more) break;
      ++lines;
    }
  });
  CHECK(lines == 20000);
  CHECK(allocations == 0);
}

}  // namespace
}  // namespace crmstream::ingest
