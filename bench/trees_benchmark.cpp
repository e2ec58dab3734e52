// Learning throughput of the online trees and the drift detector, one core:
//   bench_trees --benchmark_min_time=1
// items_per_second is examples (values, for ADWIN) per second; each Learn
// predicts first, as the engine does. Rows: 20 features, a label set by two
// thresholds plus 5% noise.
#include <benchmark/benchmark.h>

#include <random>
#include <span>
#include <vector>

#include "crmstream/models/adaptive_random_forest.h"
#include "crmstream/models/adwin.h"
#include "crmstream/models/hoeffding_tree.h"

namespace crmstream::models {
namespace {

constexpr size_t kRows = 4096;
constexpr int kDim = 20;

struct Rows {
  std::vector<double> x;
  std::vector<uint8_t> label;
  std::span<const double> Row(size_t i) const {
    return std::span<const double>(x).subspan((i % kRows) * kDim, kDim);
  }
};

const Rows& MakeRows() {
  static const Rows rows = [] {
    Rows r;
    std::mt19937_64 rng(3);
    std::uniform_real_distribution<double> u(0.0, 1.0);
    for (size_t i = 0; i < kRows; ++i) {
      for (int j = 0; j < kDim; ++j) r.x.push_back(u(rng));
      const double* x = r.x.data() + i * kDim;
      r.label.push_back(((x[0] > 0.3 && x[1] < 0.6) != (u(rng) < 0.05)) ? 1 : 0);
    }
    return r;
  }();
  return rows;
}

void BM_HoeffdingTreeLearn(benchmark::State& state) {
  const Rows& rows = MakeRows();
  HoeffdingTreeOptions o;
  o.dimension = kDim;
  o.leaf_prediction = static_cast<LeafPrediction>(state.range(0));
  auto tree = HoeffdingTree::Create(o).value();
  for (size_t i = 0; i < 20'000; ++i) (void)tree.Learn(rows.Row(i), rows.label[i % kRows]);
  size_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(tree.Learn(rows.Row(i), rows.label[i % kRows]));
    ++i;
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
  state.counters["leaves"] = static_cast<double>(tree.leaves());
}
// Naive Bayes adaptive leaves (2) and Bayesian logistic leaves (3).
BENCHMARK(BM_HoeffdingTreeLearn)->Arg(2)->Arg(3);

void BM_AdaptiveRandomForestLearn(benchmark::State& state) {
  const Rows& rows = MakeRows();
  AdaptiveRandomForestOptions o;
  o.dimension = kDim;
  o.models = static_cast<int>(state.range(0));
  o.tree.leaf_prediction = static_cast<LeafPrediction>(state.range(1));
  auto forest = AdaptiveRandomForest::Create(o).value();
  for (size_t i = 0; i < 5'000; ++i) (void)forest.Learn(rows.Row(i), rows.label[i % kRows]);
  size_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(forest.Learn(rows.Row(i), rows.label[i % kRows]));
    ++i;
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
// 10 trees; naive Bayes adaptive leaves (2) and model trees (3).
BENCHMARK(BM_AdaptiveRandomForestLearn)->Args({10, 2})->Args({10, 3});

void BM_AdwinUpdate(benchmark::State& state) {
  auto adwin = Adwin::Create({}).value();
  std::mt19937_64 rng(5);
  std::vector<double> values(kRows);
  for (double& v : values) v = rng() % 5 == 0 ? 1.0 : 0.0;
  size_t i = 0;
  for (auto _ : state) benchmark::DoNotOptimize(adwin.Update(values[i++ % kRows]));
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_AdwinUpdate);

}  // namespace
}  // namespace crmstream::models

BENCHMARK_MAIN();
