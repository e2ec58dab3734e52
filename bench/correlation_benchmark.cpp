// Rolling correlation update rate (m = 8 metrics): one row in, the oldest
// row out, with the periodic exact recomputation amortised in.
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "crmstream/models/rolling_correlation.h"

namespace {

using crmstream::models::CorrelationWindowKind;
using crmstream::models::RollingCorrelation;
using crmstream::models::RollingCorrelationOptions;

void BM_CorrelationAdd(benchmark::State& state) {
  const int m = static_cast<int>(state.range(0));
  const bool time_window = state.range(1) != 0;
  const int64_t window = state.range(2);
  constexpr int kRows = 1 << 14;
  std::mt19937_64 rng(2);
  std::normal_distribution<double> noise(0.0, 1.0);
  std::vector<double> rows(static_cast<size_t>(kRows) * m);
  for (double& v : rows) v = 1e9 + noise(rng);

  RollingCorrelationOptions o;
  o.metrics = m;
  o.window = time_window ? CorrelationWindowKind::kTime : CorrelationWindowKind::kCount;
  o.window_rows = window;
  o.window_duration = window;  // one row per tick: the same number of rows
  o.initial_capacity = window + 1;
  auto rc = RollingCorrelation::Create(o);
  if (!rc.ok()) {
    state.SkipWithError("create failed");
    return;
  }
  int64_t t = 0;
  size_t i = 0;
  for (int64_t w = 0; w < 2 * window; ++w, ++t, i = (i + 1) % kRows) {
    (void)rc->Add(std::span<const double>(rows.data() + i * m, m), t);
  }
  for (auto _ : state) {
    auto st = rc->Add(std::span<const double>(rows.data() + i * m, m), t++);
    benchmark::DoNotOptimize(st);
    i = i + 1 == kRows ? 0 : i + 1;
  }
  state.SetItemsProcessed(state.iterations());
}
// Args: metrics, time window (0 = count window), rows in the window.
BENCHMARK(BM_CorrelationAdd)
    ->Args({8, 0, 1000})
    ->Args({8, 0, 100'000})
    ->Args({8, 1, 1000})
    ->Args({4, 0, 1000})
    ->Args({3, 1, 1000});

}  // namespace

BENCHMARK_MAIN();
