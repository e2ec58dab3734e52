// Update throughput of the regression-family models, one core:
//   bench_regression --benchmark_min_time=1
// items_per_second is updates per second.
#include <benchmark/benchmark.h>

#include <random>
#include <span>
#include <vector>

#include "crmstream/models/logistic_regression.h"
#include "crmstream/models/recursive_least_squares.h"
#include "crmstream/models/standardizer.h"

namespace crmstream::models {
namespace {

constexpr size_t kRows = 4096;  // cycled, so the data stays in cache as in a hot loop

struct Rows {
  int d;
  std::vector<double> x;
  std::vector<double> y;
  std::vector<uint8_t> label;
  std::span<const double> Row(size_t i) const {
    return std::span<const double>(x).subspan((i % kRows) * d, static_cast<size_t>(d));
  }
};

Rows MakeRows(int d) {
  std::mt19937_64 rng(1);
  std::normal_distribution<double> z(0.0, 1.0);
  Rows r{d, std::vector<double>(kRows * d), std::vector<double>(kRows),
         std::vector<uint8_t>(kRows)};
  for (size_t i = 0; i < kRows; ++i) {
    double t = 0;
    for (int j = 0; j < d; ++j) {
      r.x[i * d + j] = z(rng);
      t += r.x[i * d + j] * ((j % 3) - 1.0) * 0.3;
    }
    r.y[i] = t + 0.1 * z(rng);
    r.label[i] = t + z(rng) > 0 ? 1 : 0;
  }
  return r;
}

void BM_RecursiveLeastSquaresUpdate(benchmark::State& state) {
  const int d = static_cast<int>(state.range(0));
  const Rows rows = MakeRows(d);
  auto rls = RecursiveLeastSquares::Create({.dimension = d, .forgetting_factor = 1.0}).value();
  size_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(rls.Update(rows.Row(i), rows.y[i % kRows]));
    ++i;
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_RecursiveLeastSquaresUpdate)->Arg(16)->Arg(50);

void BM_RecursiveLeastSquaresForgettingUpdate(benchmark::State& state) {
  const int d = static_cast<int>(state.range(0));
  const Rows rows = MakeRows(d);
  auto rls = RecursiveLeastSquares::Create({.dimension = d, .forgetting_factor = 0.999}).value();
  size_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(rls.Update(rows.Row(i), rows.y[i % kRows]));
    ++i;
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_RecursiveLeastSquaresForgettingUpdate)->Arg(50);

// Prediction after every update: the coefficient solve (back substitution).
void BM_RecursiveLeastSquaresUpdateThenPredict(benchmark::State& state) {
  const int d = static_cast<int>(state.range(0));
  const Rows rows = MakeRows(d);
  auto rls = RecursiveLeastSquares::Create({.dimension = d}).value();
  size_t i = 0;
  for (auto _ : state) {
    (void)rls.Update(rows.Row(i), rows.y[i % kRows]);
    benchmark::DoNotOptimize(rls.Predict(rows.Row(i + 1)));
    ++i;
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_RecursiveLeastSquaresUpdateThenPredict)->Arg(50);

void BM_LogisticRegressionUpdate(benchmark::State& state) {
  const int d = static_cast<int>(state.range(0));
  const Rows rows = MakeRows(d);
  auto lr = LogisticRegression::Create({.dense_dimension = d, .l1 = 0.01, .l2 = 0.1}).value();
  size_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(lr.Update(rows.Row(i), rows.label[i % kRows] != 0));
    ++i;
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_LogisticRegressionUpdate)->Arg(16)->Arg(50);

void BM_BayesianLogisticRegressionUpdate(benchmark::State& state) {
  const int d = static_cast<int>(state.range(0));
  const Rows rows = MakeRows(d);
  auto lr = BayesianLogisticRegression::Create({.dimension = d}).value();
  size_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(lr.Update(rows.Row(i), rows.label[i % kRows] != 0));
    ++i;
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_BayesianLogisticRegressionUpdate)->Arg(16)->Arg(50);

// The moderated prediction (a quadratic form in the covariance): what the
// churn model pays per scored customer; 41 is its input's dimension.
void BM_BayesianLogisticRegressionPredict(benchmark::State& state) {
  const int d = static_cast<int>(state.range(0));
  const Rows rows = MakeRows(d);
  auto lr = BayesianLogisticRegression::Create({.dimension = d}).value();
  for (size_t i = 0; i < kRows; ++i) (void)lr.Update(rows.Row(i), rows.label[i] != 0);
  size_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(lr.PredictLogit(rows.Row(i)));
    ++i;
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_BayesianLogisticRegressionPredict)->Arg(16)->Arg(41);

void BM_StandardizerUpdate(benchmark::State& state) {
  const int d = static_cast<int>(state.range(0));
  const Rows rows = MakeRows(d);
  auto s = Standardizer::Create(d).value();
  size_t i = 0;
  for (auto _ : state) {
    s.Update(rows.Row(i));
    benchmark::ClobberMemory();
    ++i;
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_StandardizerUpdate)->Arg(16)->Arg(50);

void BM_StandardizerTransform(benchmark::State& state) {
  const int d = static_cast<int>(state.range(0));
  const Rows rows = MakeRows(d);
  auto s = Standardizer::Create(d).value();
  for (size_t i = 0; i < kRows; ++i) s.Update(rows.Row(i));
  std::vector<double> out(d);
  size_t i = 0;
  for (auto _ : state) {
    s.Transform(rows.Row(i), out);
    benchmark::DoNotOptimize(out.data());
    ++i;
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_StandardizerTransform)->Arg(50);

}  // namespace
}  // namespace crmstream::models

BENCHMARK_MAIN();
