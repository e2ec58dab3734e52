// The churn model's alert gate and calibration on generated worlds, judged
// against the generator's ground truth.
#include <catch2/catch.hpp>
#include <cmath>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "crmstream/common/json_writer.h"
#include "crmstream/generator/world_generator.h"
#include "scoring/scoring_test_support.h"
#include "support/require_ok.h"
#include "support/test_support.h"

namespace crmstream::scoring {
namespace {

using testing::EventSource;
using testing::Partition;

constexpr int64_t kDay = 86'400'000;

CustomerModelsOptions GatedOptions() {
  CustomerModelsOptions o;
  o.churn.warm_after_examples = 100;
  o.churn.alerts.enter_probability = 0.3;
  o.churn.alerts.exit_probability = 0.2;
  o.churn.alerts.high_probability = 0.4;
  o.churn.alerts.critical_probability = 0.6;
  o.churn.gate.min_positive_labels = 10;
  o.churn.gate.min_negative_labels = 100;
  o.churn.gate.auc_floor = 0.6;
  o.churn.calibration.min_labels = 100;
  o.churn.calibration.refit_every = 64;
  return o;
}

// What a flush publishes for one customer's scores, as JSON.
std::string ScoresRecord(const Partition& p, std::string_view id) {
  std::string out;
  JsonWriter w(&out);
  w.BeginObject();
  p.models.WriteCustomerScores(p.Customer(id), &w);
  w.EndObject();
  return out;
}

// A world where nobody closes an account during the first 90 days: the
// model's first matured labels are all "stayed". It must neither alert nor
// publish a probability until it has seen closings and ranks them well.
TEST_CASE("No churn alert and no published probability before the gate opens",
          "[scoring][models][alerts]") {
  generator::WorldOptions wo;
  wo.seed = 17;
  wo.churn_rate = 0.1;
  wo.churn_start_days = 90;
#ifdef NDEBUG
  wo.customers = 1200;
  constexpr int64_t kEndDay = 200;
#else
  wo.customers = 400;  // debug and sanitizer builds: the warm-up part only
  constexpr int64_t kEndDay = 80;
#endif
  EventSource source(wo);
  Partition p(GatedOptions());

  int64_t first_closing_ms = INT64_MAX;
  int64_t gate_open_ms = INT64_MIN;
  int64_t alerts_before_gate = 0, alerts_after_gate = 0, refreshes = 0;
  bool checked_record = false;
  int64_t next_flush = wo.start_ms + 3'600'000;
  for (int64_t n = 0; n < 20'000'000; ++n) {
    const ingest::Event& e = source.Next();
    if (e.timestamp_ms >= wo.start_ms + kEndDay * kDay) break;
    if (e.type == ingest::EventType::kAccountClosed) {
      first_closing_ms = std::min(first_closing_ms, e.timestamp_ms);
    }
    const std::string customer(e.customer_id);
    p.Process(e);
    if (e.timestamp_ms < next_flush) continue;
    next_flush += 3'600'000;
    const bool open = p.models.churn().gate_open();
    if (open && gate_open_ms == INT64_MIN) gate_open_ms = e.timestamp_ms;
    if (!open && !checked_record && e.timestamp_ms > wo.start_ms + 75 * kDay) {
      // Labels have matured (all "stayed"): the record says so, with no
      // probability in it.
      const std::string record = ScoresRecord(p, customer);
      CHECK(record.find("\"churn_probability\":null") != std::string::npos);
      CHECK(record.find("\"state\":\"warming_up\"") != std::string::npos);
      CHECK(p.models.churn().gate_inputs().negatives > 30);
      CHECK(p.models.churn().gate_inputs().positives == 0);
      checked_record = true;
    }
    p.store->ForEachPending([&](std::string_view, const features::CustomerFeatures& f) {
      const CustomerRefresh& r = p.models.Refresh(f);
      ++refreshes;
      if (!r.churn.alert.raise) return;
      (gate_open_ms == INT64_MIN ? alerts_before_gate : alerts_after_gate)++;
    });
    p.models.EndFlush();
    p.store->ClearPending();
  }
  // Days from the start; -1 for a moment that never came.
  auto day = [&](int64_t ms) {
    return ms == INT64_MIN || ms == INT64_MAX ? -1.0 : double(ms - wo.start_ms) / kDay;
  };
  INFO("first closing day " << day(first_closing_ms) << ", gate open day " << day(gate_open_ms)
                            << ", alerts after " << alerts_after_gate << ", "
                            << alerts::DescribeChurnGate(p.models.churn().gate_state(),
                                                         p.models.churn().gate_inputs()));
  REQUIRE(checked_record);
  REQUIRE(refreshes > 1000);
  // The generator's truth: no closing before day 90.
  CHECK(first_closing_ms >= wo.start_ms + 90 * kDay);
  CHECK(alerts_before_gate == 0);
  // Closings must have been seen and matured before the gate opens.
  if (gate_open_ms != INT64_MIN) CHECK(gate_open_ms > first_closing_ms);
#ifdef NDEBUG
  // Once closings mature the gate opens and real alerts follow.
  CHECK(gate_open_ms != INT64_MIN);
  CHECK(alerts_after_gate > 10);
  CHECK(p.models.churn().calibrator().fit().fitted);
#endif
}

// "P >= x" means what it says: the calibrated probabilities published at a
// flush, against the closings the generator records in the following
// horizon.
TEST_CASE("Calibrated churn probabilities match the closings that follow",
          "[scoring][models][alerts]") {
#ifndef NDEBUG
  CRMSTREAM_SKIP("needs about 200 simulated days: an optimised build");
#endif
  generator::WorldOptions wo;
  wo.seed = 29;
  wo.customers = 2000;
  wo.churn_rate = 0.1;
  EventSource source(wo);
  Partition p(GatedOptions());
  constexpr int64_t kScoreDay = 170, kEndDay = 200;
  std::unordered_map<std::string, double> scored;  // customer -> calibrated p at day 170
  std::unordered_map<std::string, int64_t> closed;
  std::unordered_set<std::string> seen;
  for (int64_t n = 0; n < 20'000'000; ++n) {
    const ingest::Event& e = source.Next();
    const int64_t day = (e.timestamp_ms - wo.start_ms) / kDay;
    if (day >= kEndDay) break;
    if (day >= kScoreDay && scored.empty()) {
      p.RefreshPending();
      REQUIRE(p.models.churn().gate_open());
      for (const std::string& id : seen) {
        const auto s = p.models.Scores(p.Customer(id));
        if (s && !s->closed) scored.emplace(id, s->churn_probability);
      }
    }
    if (scored.empty()) seen.emplace(e.customer_id);
    if (e.type == ingest::EventType::kAccountClosed) closed.emplace(e.customer_id, e.timestamp_ms);
    p.Process(e);
  }
  REQUIRE(scored.size() > 1000);
  // By calibrated band: the mean probability against the share that closed.
  struct Band {
    double predicted = 0, observed = 0, n = 0;
  };
  Band all, high;
  for (const auto& [id, prob] : scored) {
    const double y = closed.count(id) ? 1.0 : 0.0;
    for (Band* b : {&all, prob >= 0.3 ? &high : nullptr}) {
      if (b == nullptr) continue;
      b->predicted += prob;
      b->observed += y;
      b->n += 1;
    }
  }
  INFO("all: predicted " << all.predicted / all.n << " observed " << all.observed / all.n
                         << "; p >= 0.3: " << high.n << " customers, predicted "
                         << high.predicted / high.n << " observed " << high.observed / high.n);
  CHECK(all.predicted / all.n == Approx(all.observed / all.n).margin(0.03));
  REQUIRE(high.n >= 20);
  CHECK(high.observed / high.n == Approx(high.predicted / high.n).margin(0.15));
}

}  // namespace
}  // namespace crmstream::scoring
