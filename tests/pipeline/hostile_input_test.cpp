// Input meant to poison a partition's state: an event stamped far in the
// future (it would move the event-time watermark) and an event the processor
// cannot take (a customer beyond the feature store's bound). Each is replayed
// inside a normal generated stream and the run is compared with the same
// stream without it: the only difference may be the record's dead letter.
#include <simdjson.h>

#include <array>
#include <catch2/catch.hpp>
#include <cstdint>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "crmstream/common/hash.h"
#include "crmstream/common/partial_update_error.h"
#include "crmstream/generator/world_generator.h"
#include "crmstream/pipeline/event_processor.h"
#include "support/require_ok.h"

namespace crmstream::pipeline {
namespace {

constexpr int64_t kDay = 86'400'000;
constexpr int64_t kHour = 3'600'000;
constexpr int64_t kYear2099 = 4'070'908'800'000;  // 2099-01-01T00:00:00Z

// Every output but dead letters, folded into an order-sensitive digest per
// kind (all of them kept would be hundreds of megabytes); dead letters kept.
class DigestSink final : public OutputSink {
 public:
  void Emit(OutputKind kind, std::string_view key, std::string_view value) override {
    const auto k = static_cast<size_t>(kind);
    ++counts[k];
    if (kind == OutputKind::kDeadLetter) {
      dead_letters.emplace_back(value);
      return;
    }
    digests[k] =
        Hash64(std::string(key) + '\n' + std::string(value) + '\n' + std::to_string(digests[k]));
  }
  std::array<uint64_t, kOutputKindCount> counts{};
  std::array<uint64_t, kOutputKindCount> digests{};
  std::vector<std::string> dead_letters;
};

struct Record {
  int64_t ts;
  std::string customer;
  std::string value;
};

// A generated world of 300 customers over 75 days (churn labels mature after
// 30), with hourly flushes as the engine's commits.
std::vector<Record> GeneratedStream() {
  generator::WorldOptions wo;
  wo.seed = 11;
  wo.customers = 300;
  wo.churn_rate = 0.1;
  wo.anomalies.enabled = true;
  wo.duplicate_rate = 0.01;
  REQUIRE_OK_AND_ASSIGN(auto gen, generator::WorldGenerator::Create(wo));
  std::vector<Record> out;
  std::string key, value;
  simdjson::dom::parser parser;
  const int64_t end = wo.start_ms + 75 * kDay;
  for (int i = 0; i < 2'000'000; ++i) {
    const int64_t ts = gen->Next(&key, &value);
    if (ts >= end) break;
    simdjson::dom::element doc = parser.parse(value);
    out.push_back({ts, std::string(std::string_view(doc["customer_id"])), value});
  }
  return out;
}

struct RunResult {
  DigestSink sink;
  int64_t watermark_ms = 0;
  scoring::ChurnValueModel::Quality quality;
  uint64_t late_events = 0;
  uint64_t processing_errors = 0;
  uint64_t accepted = 0;
};

// Runs `records` through one processor, "now" being each record's own time
// (the broker timestamp of a topic written as the events happen).
void Run(const ProcessorOptions& options, const std::vector<Record>& records, RunResult* out) {
  REQUIRE_OK_AND_ASSIGN(auto p, EventProcessor::Create(options, &out->sink));
  ingest::SourcePosition pos{"crm.interactions", 0, 0};
  // Refreshes (the engine's batches) and flushes (its commits) on event-time
  // schedules, so that both runs meet them at the same records.
  constexpr int64_t kRefresh = 10 * 60'000;
  int64_t next_flush = records.front().ts + kHour;
  int64_t next_refresh = records.front().ts + kRefresh;
  for (const Record& r : records) {
    // The poison's clock is its neighbours': no refresh on its account.
    const int64_t now = r.ts > kYear2099 - kDay ? next_refresh - kRefresh : r.ts;
    while (now >= next_refresh) {
      if (next_refresh >= next_flush) {
        p->FlushOutputs();
        next_flush += kHour;
      } else {
        p->RefreshScores();
      }
      next_refresh += kRefresh;
    }
    (void)p->Process(r.value, pos, now);
    ++pos.offset;
  }
  p->FlushOutputs();
  out->watermark_ms = p->customer_models().watermark_ms();
  out->quality = p->customer_models().churn().quality();
  out->late_events = p->minute_metrics().late_events();
  out->processing_errors =
      p->counters().by_reason[static_cast<size_t>(ingest::RejectReason::kProcessingError)].Get();
  out->accepted = p->counters().accepted.Get();
}

void RequireSameOutputs(const RunResult& a, const RunResult& b) {
  for (size_t k = 0; k < kOutputKindCount; ++k) {
    if (k == static_cast<size_t>(OutputKind::kDeadLetter)) continue;
    INFO("output kind " << k);
    CHECK(a.sink.counts[k] == b.sink.counts[k]);
    CHECK(a.sink.digests[k] == b.sink.digests[k]);
  }
}

TEST_CASE("An event stamped 2099 amid a normal stream is dead-lettered and poisons nothing",
          "[pipeline]") {
  const std::vector<Record> clean = GeneratedStream();
  REQUIRE(clean.size() > 20'000);
  std::vector<Record> poisoned = clean;
  const Record& middle = clean[clean.size() / 2];
  poisoned.insert(poisoned.begin() + static_cast<std::ptrdiff_t>(clean.size() / 2),
                  {kYear2099, middle.customer,
                   R"({"event_id":"poison-1","customer_id":")" + middle.customer +
                       R"(","timestamp":"2099-01-01T00:00:00Z","type":"login"})"});

  ProcessorOptions options;  // the defaults: the skew check is on
  RunResult reference, defended;
  Run(options, clean, &reference);
  Run(options, poisoned, &defended);

  // The reference run really learnt: labels matured both ways, minutes closed.
  CHECK(reference.quality.churn_positives > 5);
  CHECK(reference.quality.churn_negatives > 100);
  CHECK(reference.watermark_ms < clean.back().ts + 1);

  // The poison went to the dead-letter output, with its reason...
  REQUIRE(defended.sink.dead_letters.size() == reference.sink.dead_letters.size() + 1);
  simdjson::dom::parser parser;
  int in_future = 0;
  for (const std::string& dl : defended.sink.dead_letters) {
    simdjson::dom::element doc = parser.parse(dl);
    if (std::string_view(doc["reason"]) != "timestamp_in_future") continue;
    ++in_future;
    CHECK(std::string_view(doc["field"]) == "timestamp");
    CHECK_THAT(std::string(std::string_view(doc["original"])), Catch::Contains("poison-1"));
  }
  CHECK(in_future == 1);
  // ...and changed nothing else: the watermark, the labels that matured, the
  // minute metrics and every output are those of the stream without it.
  CHECK(defended.watermark_ms == reference.watermark_ms);
  CHECK(defended.quality.churn_positives == reference.quality.churn_positives);
  CHECK(defended.quality.churn_negatives == reference.quality.churn_negatives);
  CHECK(defended.quality.pending_examples == reference.quality.pending_examples);
  CHECK(defended.quality.churn_auc == reference.quality.churn_auc);
  CHECK(defended.late_events == reference.late_events);
  RequireSameOutputs(reference, defended);

  // Without the check (the old default) the same poison does what the check
  // is for: the watermark jumps to 2099, every pending label matures at once
  // as "not churned", and the rest of the stream is late for the minutes.
  ProcessorOptions unchecked;
  unchecked.decoder.max_future_skew_ms = 0;
  RunResult poisoned_run;
  Run(unchecked, poisoned, &poisoned_run);
  CHECK(poisoned_run.watermark_ms == kYear2099);
  CHECK(poisoned_run.quality.pending_examples < reference.quality.pending_examples / 10);
  CHECK(poisoned_run.quality.churn_negatives > reference.quality.churn_negatives);
  CHECK(poisoned_run.late_events > reference.late_events + clean.size() / 3);
}

TEST_CASE(
    "A record whose processing throws before changing state is dead-lettered and the "
    "partition goes on as if it never came",
    "[pipeline]") {
  const std::vector<Record> all = GeneratedStream();
  // The feature store of this partition holds at most 120 customers: every
  // event of a later customer throws std::length_error (a real bound on
  // input-driven growth, not a test hook).
  ProcessorOptions options;
  options.features.max_customers = 120;
  std::set<std::string> admitted;
  std::vector<Record> kept;
  size_t refused = 0;
  for (const Record& r : all) {
    if (admitted.count(r.customer) == 0 && admitted.size() < 120) admitted.insert(r.customer);
    if (admitted.count(r.customer) != 0) {
      kept.push_back(r);
    } else {
      ++refused;
    }
  }
  REQUIRE(refused > 1000);

  RunResult bounded, reference;
  Run(options, all, &bounded);
  ProcessorOptions unbounded;
  Run(unbounded, kept, &reference);

  // Every refused record is a processing_error dead letter naming the bound
  // (generator duplicates of a refused event count as duplicates instead:
  // its event_id was seen).
  CHECK(bounded.processing_errors > 1000);
  CHECK(bounded.processing_errors <= refused);
  CHECK(bounded.sink.dead_letters.size() ==
        reference.sink.dead_letters.size() + bounded.processing_errors);
  simdjson::dom::parser parser;
  uint64_t seen = 0;
  for (const std::string& dl : bounded.sink.dead_letters) {
    simdjson::dom::element doc = parser.parse(dl);
    if (std::string_view(doc["reason"]) != "processing_error") continue;
    ++seen;
    if (seen == 1) {
      CHECK_THAT(std::string(std::string_view(doc["detail"])),
                 Catch::Contains("features.max_customers (120)"));
    }
  }
  CHECK(seen == bounded.processing_errors);
  // The partition kept learning from everything else, exactly as without
  // the refused customers: state and outputs are identical.
  CHECK(bounded.accepted == reference.accepted);
  CHECK(bounded.watermark_ms == reference.watermark_ms);
  CHECK(bounded.quality.churn_negatives == reference.quality.churn_negatives);
  CHECK(bounded.quality.churn_positives == reference.quality.churn_positives);
  CHECK(bounded.late_events == reference.late_events);
  RequireSameOutputs(reference, bounded);
}

// A sink whose publisher fails: it throws on the first correlations
// snapshot, which the processor emits after the event changed the state.
class FailingSink final : public OutputSink {
 public:
  void Emit(OutputKind kind, std::string_view, std::string_view) override {
    if (kind == OutputKind::kCorrelations) throw std::length_error("injected: output too large");
  }
};

TEST_CASE("A failure after the state changed stops processing with a clear error", "[pipeline]") {
  const std::vector<Record> records = GeneratedStream();
  FailingSink sink;
  REQUIRE_OK_AND_ASSIGN(auto p, EventProcessor::Create(ProcessorOptions{}, &sink));
  ingest::SourcePosition pos{"crm.interactions", 2, 0};
  std::string message;
  for (const Record& r : records) {
    try {
      (void)p->Process(r.value, pos, r.ts);
    } catch (const PartialUpdateError& e) {
      message = e.what();
      break;
    }
    ++pos.offset;
  }
  // Not dead-lettered as if nothing happened: the event is half applied (its
  // features and models took it), so the caller must not checkpoint.
  REQUIRE_FALSE(message.empty());
  CHECK_THAT(message, Catch::StartsWith("crm.interactions:2 offset " + std::to_string(pos.offset)));
  CHECK_THAT(message, Catch::Contains("injected: output too large") &&
                          Catch::Contains("the state may be inconsistent") &&
                          Catch::Contains("resumes from the last checkpoint"));
  CHECK(
      p->counters().by_reason[static_cast<size_t>(ingest::RejectReason::kProcessingError)].Get() ==
      0);
}

}  // namespace
}  // namespace crmstream::pipeline
