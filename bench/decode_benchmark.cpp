// Decode + validate + dedup throughput for typical ~200-byte events, the
// front of the per-event hot path (product target: 1,000,000 events/s per
// core for decode + validate + features). Every iteration decodes a distinct
// event id, so the dedup window runs its insert-and-evict path.
#include <benchmark/benchmark.h>

#include <cstdio>
#include <string>
#include <vector>

#include "crmstream/ingest/csv_decoder.h"
#include "crmstream/ingest/dedup_window.h"
#include "crmstream/ingest/json_decoder.h"

namespace crmstream::ingest {
namespace {

constexpr int kEvents = 4096;
constexpr int kIdDigits = 12;

struct Corpus {
  std::vector<std::string> messages;
  std::vector<size_t> id_digits_at;  // where each message's 12-digit id counter starts
  size_t bytes = 0;
};

// A CRM-like mix: mostly page views and logins, some purchases with money.
Corpus MakeJsonCorpus() {
  static const char* kTypes[] = {"page_view", "page_view", "login",     "page_view",
                                 "purchase",  "login",     "page_view", "support_ticket",
                                 "purchase",  "page_view", "refund",    "plan_change"};
  static const char* kChannels[] = {"web", "app", "store", "email"};
  Corpus c;
  char buf[512];
  for (int i = 0; i < kEvents; ++i) {
    const char* type = kTypes[i % 12];
    const bool money = type[0] == 'p' && type[1] == 'u' ? true : type[0] == 'r';
    const int n = std::snprintf(
        buf, sizeof(buf),
        R"({"event_id":"evt-%012d","customer_id":"cust-%06d","timestamp":"2026-03-%02dT%02d:%02d:%02d.%03dZ",)"
        R"("type":"%s","channel":"%s"%s%s,"plan":"pro","attributes":{"campaign":"spring-%d"}})",
        i, (i * 7919) % 100000, 1 + i % 28, i % 24, i % 60, (i * 7) % 60, i % 1000, type,
        kChannels[i % 4], money ? R"(,"amount":)" : "",
        money ? (std::to_string(5 + i % 200) + ".99,\"currency\":\"EUR\"").c_str() : "", i % 10);
    c.messages.emplace_back(buf, n);
    c.id_digits_at.push_back(c.messages.back().find("evt-") + 4);
    c.bytes += n;
  }
  return c;
}

// Writes `value` as the message's 12-digit id counter, so ids never repeat.
void StampId(std::string* message, size_t at, uint64_t value) {
  for (int d = kIdDigits - 1; d >= 0; --d) {
    (*message)[at + d] = static_cast<char>('0' + value % 10);
    value /= 10;
  }
}

void BM_JsonDecode(benchmark::State& state) {
  Corpus corpus = MakeJsonCorpus();
  EventDecoder decoder;
  Event event;
  size_t i = 0;
  for (auto _ : state) {
    const Rejection r = decoder.Decode(corpus.messages[i], &event);
    benchmark::DoNotOptimize(r);
    benchmark::DoNotOptimize(event.timestamp_ms);
    if (++i == corpus.messages.size()) i = 0;
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * corpus.bytes / kEvents));
}
BENCHMARK(BM_JsonDecode);

void BM_JsonDecodeValidateDedup(benchmark::State& state) {
  Corpus corpus = MakeJsonCorpus();
  EventDecoder decoder;
  DedupWindow window;  // default: 1,000,000 ids
  Event event;
  size_t i = 0;
  uint64_t next_id = 0;
  int64_t accepted = 0;
  for (auto _ : state) {
    StampId(&corpus.messages[i], corpus.id_digits_at[i], next_id++);
    const Rejection r = decoder.Decode(corpus.messages[i], &event);
    if (!r.rejected() && !window.SeenBefore(event.event_id)) ++accepted;
    if (++i == corpus.messages.size()) i = 0;
  }
  if (accepted != static_cast<int64_t>(state.iterations())) state.SkipWithError("rejected events");
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * corpus.bytes / kEvents));
}
BENCHMARK(BM_JsonDecodeValidateDedup);

void BM_CsvDecodeValidate(benchmark::State& state) {
  std::vector<std::string> lines;
  for (int i = 0; i < kEvents; ++i) {
    char buf[256];
    const bool money = i % 4 == 0;
    const int n = std::snprintf(
        buf, sizeof(buf), "evt-%012d,cust-%06d,2026-03-%02dT%02d:%02d:%02dZ,%s,web,%s,%s,pro", i,
        i % 100000, 1 + i % 28, i % 24, i % 60, i % 60, money ? "purchase" : "page_view",
        money ? "19.99" : "", money ? "EUR" : "");
    lines.emplace_back(buf, n);
  }
  auto decoder = CsvEventDecoder::FromHeader(
      "event_id,customer_id,timestamp,type,channel,amount,currency,plan");
  Event event;
  size_t i = 0;
  for (auto _ : state) {
    const Rejection r = decoder->Decode(lines[i], &event);
    benchmark::DoNotOptimize(r);
    if (++i == lines.size()) i = 0;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_CsvDecodeValidate);

void BM_DedupWindowNewIds(benchmark::State& state) {
  DedupWindow window(static_cast<size_t>(state.range(0)));
  std::string id = "evt-000000000000";
  uint64_t next = 0;
  for (auto _ : state) {
    StampId(&id, 4, next++);
    benchmark::DoNotOptimize(window.SeenBefore(id));
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_DedupWindowNewIds)->Arg(100'000)->Arg(1'000'000);

}  // namespace
}  // namespace crmstream::ingest

BENCHMARK_MAIN();
