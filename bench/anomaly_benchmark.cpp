// Update throughput of the anomaly detectors (score + learn one point).
#include <benchmark/benchmark.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "crmstream/models/multivariate_anomaly.h"
#include "crmstream/models/univariate_anomaly.h"

namespace {

using crmstream::models::MultivariateAnomalyDetector;
using crmstream::models::UnivariateAnomalyDetector;

std::vector<double> Series(size_t n) {
  std::mt19937_64 rng(1);
  std::normal_distribution<double> noise(0.0, 0.1);
  std::vector<double> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = std::sin(2.0 * M_PI * i / 288.0) + noise(rng);
  return v;
}

void BM_UnivariateScore(benchmark::State& state) {
  const std::vector<double> series = Series(1 << 16);
  UnivariateAnomalyDetector detector;
  size_t i = 0;
  double sum = 0.0;
  for (auto _ : state) {
    sum += detector.Score(static_cast<int64_t>(i), series[i & (series.size() - 1)]);
    ++i;
  }
  benchmark::DoNotOptimize(sum);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_UnivariateScore);

// Checkpoint cost of one detector after a day of minutes (1,440 points) or
// 64k points: serialise time and the blob's size (the engine stores three
// per partition).
void BM_UnivariateSerialize(benchmark::State& state) {
  const std::vector<double> series = Series(static_cast<size_t>(state.range(0)));
  UnivariateAnomalyDetector detector;
  for (size_t i = 0; i < series.size(); ++i)
    (void)detector.Score(static_cast<int64_t>(i), series[i]);
  size_t bytes = 0;
  for (auto _ : state) {
    const std::string blob = detector.Serialize();
    bytes = blob.size();
    benchmark::DoNotOptimize(blob.data());
  }
  state.counters["blob_bytes"] = static_cast<double>(bytes);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_UnivariateSerialize)->Arg(1440)->Arg(1 << 16);

void BM_MultivariateScore(benchmark::State& state) {
  const uint32_t dim = static_cast<uint32_t>(state.range(0));
  auto detector = MultivariateAnomalyDetector::Create({.dim = dim});
  std::mt19937_64 rng(2);
  std::normal_distribution<double> gauss(0.0, 1.0);
  std::vector<double> points(4096 * dim);
  for (double& p : points) p = gauss(rng);
  size_t i = 0;
  double sum = 0.0;
  for (auto _ : state) {
    sum += detector->Score(std::span<const double>(points.data() + (i & 4095) * dim, dim));
    ++i;
  }
  benchmark::DoNotOptimize(sum);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_MultivariateScore)->Arg(4)->Arg(8);

}  // namespace
BENCHMARK_MAIN();
