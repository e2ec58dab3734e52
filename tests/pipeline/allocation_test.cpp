// The processor's hot path must not allocate per event, nor per flush once
// warm: events of known customers, their scoring at the flush (with the own
// models or global ones) and the output records reuse their buffers.
// Allocations are counted only inside the measured region
// (support/allocation_counter.h).
#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "crmstream/pipeline/event_processor.h"
#include "support/allocation_counter.h"
#include "support/require_ok.h"

namespace crmstream::pipeline {
namespace {

constexpr int64_t kDay = 86'400'000;
constexpr int64_t kT0 = 1'767'225'600'000;

class CountingSink final : public OutputSink {
 public:
  void Emit(OutputKind kind, std::string_view, std::string_view) override {
    ++records[static_cast<size_t>(kind)];
  }
  std::array<uint64_t, kOutputKindCount> records{};
};

std::string Event(int64_t n, int customer, int64_t ts, int kind) {
  static const char* kTypes[] = {"page_view", "login", "purchase", "page_view", "support_ticket"};
  std::string e = R"({"event_id":"ev-)" + std::to_string(n) + R"(","customer_id":"cust-)" +
                  std::to_string(customer) + R"(","timestamp":)" + std::to_string(ts) +
                  R"(,"type":")" + kTypes[kind % 5] + '"';
  if (kind % 5 == 2) e += R"(,"amount":12.5,"currency":"EUR")";
  return e + "}";
}

TEST_CASE("Warm processing, scoring at the flush and outputs allocate nothing",
          "[pipeline][allocation]") {
  ProcessorOptions options;
  options.models.churn.warm_after_examples = 50;  // alerts are evaluated in the measured region
  CountingSink sink;
  REQUIRE_OK_AND_ASSIGN(auto p_owner, EventProcessor::Create(options, &sink));
  EventProcessor& p = *p_owner;
  ingest::SourcePosition pos{"crm.interactions", 0, 0};
  constexpr int kCustomers = 300;
  int64_t n = 0;
  // 80 days of history: labels mature, k-means seeds, minutes close.
  for (int d = 0; d < 80; ++d) {
    for (int c = 0; c < kCustomers; ++c) {
      for (int k = 0; k < 2; ++k) {
        const int64_t ts = kT0 + d * kDay + c * 200'000 + k * 1000;
        REQUIRE(p.Process(Event(++n, c, ts, c + k + d), pos, ts) == ProcessOutcome::kAccepted);
      }
    }
    p.FlushOutputs();
  }
  if (GENERATE(false, true)) {
    // Scoring with global models (model sync) allocates nothing either: here
    // a merge of the partition's statistics with a copy of them.
    scoring::ModelStatistics merged =
        scoring::ModelStatistics::Collect(p.customer_models(), p.minute_metrics());
    REQUIRE_OK(merged.Merge(merged));
    REQUIRE_OK(p.customer_models().UseGlobalModels(&merged));
    REQUIRE(p.customer_models().global_model_parts() == 2);
    REQUIRE(p.customer_models().segmenter().uses_global_centres());
  }
  // The measured day's events, built before counting. Its first pass warms
  // the day's buffers (a new active day grows a customer's history once).
  std::vector<std::string> day;
  std::vector<int64_t> times;
  for (int c = 0; c < kCustomers; ++c) {
    for (int k = 0; k < 4; ++k) {
      const int64_t ts = kT0 + 80 * kDay + c * 200'000 + k * 1000;
      day.push_back(Event(++n, c, ts, c + k));
      times.push_back(ts);
    }
  }
  for (size_t i = 0; i < day.size() / 2; ++i) p.Process(day[i], pos, times[i]);
  p.FlushOutputs();

  testing::StartCountingAllocations();
  // Each record looked up ahead, as the engine does.
  for (size_t i = day.size() / 2; i < day.size(); ++i) {
    if (i + 1 < day.size()) p.LookAhead(day[i + 1], times[i + 1]);
    p.Process(day[i], pos, times[i]);
  }
  p.FlushOutputs();
  CHECK(testing::StopCountingAllocations() == 0);
  CHECK(p.customer_models().churn().churn_model().count() >= 50);
  CHECK(sink.records[static_cast<size_t>(OutputKind::kCustomerScores)] > 0);
}

}  // namespace
}  // namespace crmstream::pipeline
