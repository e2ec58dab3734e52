// The engine's spend regression (ChurnValueModel's predicted value) on a
// generated world its settings were not chosen on: every example's
// prediction against the spend that really followed and against the naive
// "the same as the last horizon", both computed here from the events.
#include <catch2/catch.hpp>
#include <cmath>
#include <string>
#include <unordered_map>
#include <vector>

#include "crmstream/features/feature_store.h"
#include "crmstream/generator/world_generator.h"
#include "crmstream/ingest/json_decoder.h"
#include "crmstream/scoring/customer_models.h"
#include "support/require_ok.h"

namespace crmstream::scoring {
namespace {

using ingest::EventType;
constexpr int64_t kDayMs = 86'400'000;

struct Example {
  std::string customer;
  int64_t t = 0;
  double predicted = 0.0;
};

// Net spend (purchases minus refunds) of `events` in (from, to].
double NetSpend(const std::vector<std::pair<int64_t, double>>& events, int64_t from, int64_t to) {
  double sum = 0.0;
  for (const auto& [t, amount] : events) {
    if (t > from && t <= to) sum += amount;
  }
  return sum;
}

TEST_CASE("Spend regression beats the naive forecast on a generated world once labels came in",
          "[scoring][models][value]") {
  generator::WorldOptions wo;
  wo.customers = 2000;
  wo.churn_rate = 0.05;
  wo.seed = 29;
#ifdef NDEBUG
  constexpr int kRecords = 1'500'000;  // about 160 days: five horizons of labels
#else
  constexpr int kRecords = 400'000;
#endif
  REQUIRE_OK_AND_ASSIGN(auto gen, generator::WorldGenerator::Create(wo));
  ingest::EventDecoder decoder;
  REQUIRE_OK_AND_ASSIGN(auto store, features::FeatureStore::Create(features::FeatureSpec{}));
  CustomerModelsOptions mo;
  REQUIRE_OK_AND_ASSIGN(CustomerModels models, CustomerModels::Create(mo, store.get()));
  const int64_t horizon = int64_t{mo.churn.horizon_days} * kDayMs;

  std::unordered_map<std::string, std::vector<std::pair<int64_t, double>>> spend;
  std::unordered_map<std::string, int64_t> pending_ms;
  std::vector<Example> examples;
  std::string key, value;
  ingest::Event e;
  int64_t last_ms = INT64_MIN;
  for (int i = 0; i < kRecords; ++i) {
    gen->Next(&key, &value);
    if (decoder.Decode(value, &e).rejected()) continue;
    const std::string customer(e.customer_id);
    last_ms = std::max(last_ms, e.timestamp_ms);
    if (e.type == EventType::kPurchase && e.has_amount) {
      spend[customer].emplace_back(e.timestamp_ms, e.amount);
    } else if (e.type == EventType::kRefund && e.has_amount) {
      spend[customer].emplace_back(e.timestamp_ms, -e.amount);
    }
    const features::CustomerFeatures& f = store->Update(e);
    models.OnEvent(e, f);
    // A new example: its prediction is the one the event just made.
    const std::optional<int64_t> at = models.churn().PendingSnapshotMs(f.slot());
    if (!at) continue;
    auto [it, added] = pending_ms.try_emplace(customer, *at);
    if (!added && it->second == *at) continue;
    it->second = *at;
    examples.push_back({customer, *at, models.Scores(f)->predicted_value});
  }
  // The first horizon's predictions come from an untrained regression (no
  // label matures before one horizon has passed): judged apart, as "cold".
  const int64_t warm_from = wo.start_ms + 2 * horizon;
  long double sq[2][2] = {};  // [cold, warm][model, naive]
  size_t scored[2] = {};
  for (const Example& x : examples) {
    if (x.t + horizon > last_ms) continue;  // what followed is not all known
    const auto& events = spend[x.customer];
    const double actual = NetSpend(events, x.t, x.t + horizon);
    const double naive = NetSpend(events, x.t - horizon, x.t);
    const int warm = x.t >= warm_from ? 1 : 0;
    sq[warm][0] += (x.predicted - actual) * (x.predicted - actual);
    sq[warm][1] += (naive - actual) * (naive - actual);
    ++scored[warm];
  }
  REQUIRE(scored[1] > 2000);
  const auto rmse = [&](int warm, int method) {
    return std::sqrt(static_cast<double>(sq[warm][method] / scored[warm]));
  };
  const auto all = [&](int method) {
    return std::sqrt(
        static_cast<double>((sq[0][method] + sq[1][method]) / (scored[0] + scored[1])));
  };
  WARN("generated world, spend regression RMSE against naive: after the first two horizons "
       << rmse(1, 0) << " vs " << rmse(1, 1) << " (" << scored[1] << " examples); before "
       << rmse(0, 0) << " vs " << rmse(0, 1) << " (" << scored[0] << "); all " << all(0) << " vs "
       << all(1));
  // Measured at the time of writing (seed 29): 292.8 against 331.6 (-11.7%)
  // once labels have come in; the recipe without the spend terms, ridge 1,
  // was 436.9 (+31.7%). Over the cold start the untrained regression loses
  // to naive (all examples: 398.1 against 372.2).
  CHECK(rmse(1, 0) < rmse(1, 1));
}

}  // namespace
}  // namespace crmstream::scoring
