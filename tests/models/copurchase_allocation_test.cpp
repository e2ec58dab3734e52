// The per-event paths of the new online models allocate nothing in steady
// state (the engine's hot path rule): the co-purchase rules once the window
// has turned over, the recommender once its rows are full, the trees once
// they have stopped growing, ADWIN between two new histogram rows.
#include <catch2/catch.hpp>
#include <random>
#include <string>
#include <vector>

#include "crmstream/models/adaptive_random_forest.h"
#include "crmstream/models/adwin.h"
#include "crmstream/models/association_rules.h"
#include "crmstream/models/hoeffding_tree.h"
#include "crmstream/models/item_recommender.h"
#include "support/allocation_counter.h"

namespace crmstream::models {
namespace {

using testing::StartCountingAllocations;
using testing::StopCountingAllocations;

// A fixed cycle of purchase lines: orders of 1..12 lines over 200 items.
struct Cycle {
  std::vector<std::string> orders, items, customers;
};

Cycle MakeCycle(int lines) {
  std::mt19937_64 rng(11);
  Cycle c;
  int order = 0, left = 0;
  for (int i = 0; i < lines; ++i) {
    if (left == 0) {
      left = 1 + static_cast<int>(rng() % 12);
      ++order;
    }
    --left;
    c.orders.push_back("o" + std::to_string(order));
    c.items.push_back("sku" + std::to_string(rng() % 200));
    c.customers.push_back("c" + std::to_string(order % 50));
  }
  return c;
}

TEST_CASE("co-purchase rules: a steady window allocates nothing per line", "[models][rules]") {
  const int kLines = 2000;  // one window: one line a minute, a 2,000-minute window
  const Cycle cycle = MakeCycle(kLines);
  AssociationRulesOptions o;
  o.window_ms = int64_t{kLines} * 60'000;
  auto miner = AssociationRuleMiner::Create(o).value();
  // Orders are renamed each cycle so that each is a new basket.
  std::vector<std::string> names(kLines);
  int64_t t = 0;
  const auto run = [&](int cycles, bool count) {
    long allocations = 0;
    for (int k = 0; k < cycles; ++k) {
      for (int i = 0; i < kLines; ++i) names[i] = cycle.orders[i] + "/" + std::to_string(k % 2);
      if (count) StartCountingAllocations();
      for (int i = 0; i < kLines; ++i) {
        (void)miner.AddLine(names[i], cycle.items[i], t);
        t += 60'000;
      }
      if (count) allocations += StopCountingAllocations();
    }
    return allocations;
  };
  (void)run(20, false);
  CHECK(run(5, true) == 0);
  CHECK(miner.counters().counted > 0);
  CHECK(miner.baskets() > 100);
}

TEST_CASE("item recommender: learning and recommending allocate nothing once warm",
          "[models][recommender]") {
  const Cycle cycle = MakeCycle(4000);
  ItemRecommenderOptions o;
  o.history_size = 8;  // customers keep learning new pairs
  o.neighbours = 16;   // rows are full: Space-Saving replacements
  o.half_life_days = 30;
  auto model = ItemRecommender::Create(o).value();
  int64_t t = 0;
  for (int k = 0; k < 5; ++k) {
    for (size_t i = 0; i < cycle.items.size(); ++i) {
      (void)model.Observe(cycle.customers[i], cycle.items[(i * 7 + k) % cycle.items.size()], t++);
    }
  }
  std::vector<Recommendation> out;
  out.reserve(10);
  model.Recommend("c1", t, 10, &out);
  const uint64_t learned = model.counters().new_for_customer;
  StartCountingAllocations();
  for (size_t i = 0; i < cycle.items.size(); ++i) {
    (void)model.Observe(cycle.customers[i], cycle.items[(i * 3) % cycle.items.size()], t++);
    if (i % 100 == 0) model.Recommend(cycle.customers[i], t, 10, &out);
  }
  CHECK(StopCountingAllocations() == 0);
  CHECK(model.counters().new_for_customer > learned);  // it did learn
  CHECK(out.size() == 10);
}

TEST_CASE("online trees and ADWIN allocate nothing per example once grown", "[models][tree]") {
  std::mt19937_64 rng(2);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  std::vector<double> rows(4000 * 4);
  std::vector<uint8_t> labels(4000);
  for (size_t i = 0; i < labels.size(); ++i) {
    for (int f = 0; f < 4; ++f) rows[i * 4 + f] = u(rng);
    labels[i] = rows[i * 4] > 0.4 ? 1 : 0;
  }
  const auto row = [&](size_t i) {
    return std::span<const double>(rows).subspan((i % 4000) * 4, 4);
  };
  for (LeafPrediction mode : {LeafPrediction::kNaiveBayesAdaptive, LeafPrediction::kLogistic}) {
    HoeffdingTreeOptions o;
    o.dimension = 4;
    o.max_leaves = 4;
    o.grace_period = 50;
    o.leaf_prediction = mode;
    auto tree = HoeffdingTree::Create(o).value();
    for (size_t i = 0; i < 20000; ++i) (void)tree.Learn(row(i), labels[i % 4000]);
    TreeExplanation e;
    e.contributions.reserve(8);
    StartCountingAllocations();
    for (size_t i = 0; i < 4000; ++i) {
      (void)tree.Learn(row(i), labels[i % 4000]);
      if (i % 100 == 0) tree.Explain(row(i), &e);
    }
    CHECK(StopCountingAllocations() == 0);
  }
  AdaptiveRandomForestOptions fo;
  fo.dimension = 4;
  fo.models = 4;
  fo.drift_detection = false;  // a replaced member is a new tree
  fo.tree.max_leaves = 4;
  auto forest = AdaptiveRandomForest::Create(fo).value();
  for (size_t i = 0; i < 20000; ++i) (void)forest.Learn(row(i), labels[i % 4000]);
  StartCountingAllocations();
  for (size_t i = 0; i < 4000; ++i) (void)forest.Learn(row(i), labels[i % 4000]);
  CHECK(StopCountingAllocations() == 0);

  auto adwin = Adwin::Create({}).value();
  for (int i = 0; i < 100'000; ++i) (void)adwin.Update(i % 5 == 0 ? 1.0 : 0.0);
  StartCountingAllocations();
  for (int i = 0; i < 1000; ++i) (void)adwin.Update(i % 5 == 0 ? 1.0 : 0.0);
  CHECK(StopCountingAllocations() == 0);
}

}  // namespace
}  // namespace crmstream::models
