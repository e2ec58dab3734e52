// Replay throughput on one core: decode + validate + dedup + features, then
// with the customer-scores JSON records, then with every online model and
// every output (churn alerts, segments, anomalies, correlations), over 2^20
// generated events for 100,000 customers held in memory, so the figure is the
// pipeline's and not the disk's. Each run is one pass over distinct events,
// starting from an empty state, as a replay is.
//
// The processor coalesces outputs until FlushOutputs() (the engine flushes at
// every commit) and scores customers there, so a pass flushes every
// `flush_every` events: 65536 is about 15 flushes per second at 1M events/s
// (the engine commits once per second by default); 2048, once per consumer
// batch, is the worst case.
//
// BM_RetailReplay: the basket models' cost on a stream that has baskets.
// The generated world has no order or item ids, so these rows replay the
// UCI Online Retail invoice lines (one purchase or refund event per line,
// InvoiceNo the order and StockCode the item, as pipelines/online-retail.yaml
// maps them; CRMSTREAM_DATA_DIR or ../shared/data) with every scoring model
// on, the co-purchase rules on or off and the item recommender on or off.
//
//   build/release/bench/bench_pipeline
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "crmstream/evaluation/retail_transactions.h"
#include "crmstream/generator/world_generator.h"
#include "crmstream/pipeline/event_processor.h"

namespace crmstream::pipeline {
namespace {

constexpr int kEvents = 1 << 20;

const std::vector<std::string>& Events() {
  static const std::vector<std::string> events = [] {
    generator::WorldOptions world;
    world.customers = 100000;
    auto gen = std::move(generator::WorldGenerator::Create(world)).value();  // valid options
    std::vector<std::string> out;
    out.reserve(kEvents);
    std::string key, value;
    for (int i = 0; i < kEvents; ++i) {
      gen->Next(&key, &value);
      out.push_back(value);
    }
    return out;
  }();
  return events;
}

// One timed pass of `events` per iteration through a new processor (its
// creation and destruction untimed), flushing every `flush_every` events and
// at the end, the stream time `now_ms`. Returns the events accepted over all
// passes (nothing when the processor could not be created: the benchmark is
// skipped with the error); `*outputs`, if given, the records of the last pass.
std::optional<uint64_t> ReplayPasses(benchmark::State& state,
                                     const std::vector<std::string>& events,
                                     const ProcessorOptions& options, int64_t now_ms,
                                     int64_t flush_every, uint64_t* outputs = nullptr) {
  uint64_t accepted = 0;
  for (auto _ : state) {
    state.PauseTiming();
    DiscardingSink sink;
    auto created = EventProcessor::Create(options, &sink);
    if (!created.ok()) {
      state.SkipWithError(created.status().ToString().c_str());
      return std::nullopt;
    }
    std::unique_ptr<EventProcessor> processor = std::move(created).value();
    ingest::SourcePosition pos{"crm.interactions", 0, 0};
    state.ResumeTiming();
    int64_t since_flush = 0;
    for (size_t i = 0; i < events.size(); ++i) {
      // As the engine does: the next record is looked ahead at.
      if (i + 1 < events.size()) processor->LookAhead(events[i + 1], now_ms);
      accepted += processor->Process(events[i], pos, now_ms) == ProcessOutcome::kAccepted;
      if (++since_flush == flush_every) {
        processor->FlushOutputs();
        since_flush = 0;
      }
    }
    processor->FlushOutputs();
    if (outputs != nullptr) {
      *outputs = sink.records(OutputKind::kCustomerScores) +
                 sink.records(OutputKind::kChurnAlerts) + sink.records(OutputKind::kSegments) +
                 sink.records(OutputKind::kAnomalies) + sink.records(OutputKind::kCorrelations);
    }
    state.PauseTiming();
    processor.reset();  // freeing state is not part of the pass
    state.ResumeTiming();
  }
  return accepted;
}

void BM_ReplayPass(benchmark::State& state) {
  const auto& events = Events();
  ProcessorOptions options;
  // models 2: churn and value only (the pipeline's models.segmentation and
  // models.behaviour switched off).
  options.models_enabled = state.range(0) != 0;
  options.models.segments_enabled = state.range(0) != 2;
  options.models.behaviour_enabled = state.range(0) != 2;
  options.emit_customer_scores = state.range(1) != 0;
  // flush_every 1: the pipeline's customer_scores_every: event (the
  // processor flushes each accepted event itself).
  int64_t flush_every = state.range(2);
  if (flush_every == 1) {
    options.customer_scores_cadence = ProcessorOptions::ScoresCadence::kEvent;
    flush_every = 0;
  }
  uint64_t outputs = 0;
  if (!ReplayPasses(state, events, options, 0, flush_every, &outputs)) return;
  uint64_t bytes = 0;
  for (const auto& e : events) bytes += e.size();
  state.counters["outputs"] = static_cast<double>(outputs);
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * kEvents);
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * bytes));
}
BENCHMARK(BM_ReplayPass)
    ->ArgNames({"models", "scores_json", "flush_every"})
    ->Args({0, 0, 65536})
    ->Args({0, 1, 65536})
    ->Args({1, 0, 65536})
    ->Args({1, 1, 65536})
    ->Args({1, 1, 2048})
    ->Args({1, 1, 1})
    ->Args({2, 0, 65536})
    ->Args({2, 1, 1})
    ->Unit(benchmark::kMillisecond)
    ->MinTime(2.0);

struct RetailEvents {
  std::vector<std::string> events;
  int64_t now_ms = 0;  // a day after the last line: no event is in the future
  std::string error;
};

const RetailEvents& Retail() {
  static const RetailEvents retail = [] {
    RetailEvents r;
    const char* env = std::getenv("CRMSTREAM_DATA_DIR");
    const std::filesystem::path dir =
        env != nullptr && *env != '\0'
            ? std::filesystem::path(env)
            : std::filesystem::path(CRMSTREAM_SOURCE_DIR_STR) / ".." / "shared" / "data";
    auto data = evaluation::LoadRetailTransactions(dir);
    if (!data.ok()) {
      r.error = data.status().ToString();
      return r;
    }
    r.now_ms = data->last_ms + 86'400'000;
    for (size_t i = 0; i < data->lines.size(); ++i) {
      r.events.push_back(evaluation::RetailEventJson(data->lines[i], i));
    }
    return r;
  }();
  return retail;
}

void BM_RetailReplay(benchmark::State& state) {
  const RetailEvents& retail = Retail();
  if (!retail.error.empty()) return state.SkipWithError(retail.error.c_str());
  ProcessorOptions options;  // pipelines/crm.yaml's defaults: every model on
  options.associations_enabled = state.range(0) != 0;
  options.recommendations_enabled = state.range(1) != 0;
  const std::optional<uint64_t> accepted =
      ReplayPasses(state, retail.events, options, retail.now_ms, 65536);
  if (!accepted) return;
  // Accepted per pass: all lines but the few the validator refuses.
  state.counters["accepted"] =
      static_cast<double>(*accepted) / static_cast<double>(state.iterations());
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) *
                          static_cast<int64_t>(retail.events.size()));
}
BENCHMARK(BM_RetailReplay)
    ->ArgNames({"associations", "recommendations"})
    ->Args({0, 0})
    ->Args({1, 0})
    ->Args({0, 1})
    ->Args({1, 1})
    ->Unit(benchmark::kMillisecond)
    ->MinTime(2.0);

}  // namespace
}  // namespace crmstream::pipeline

BENCHMARK_MAIN();
