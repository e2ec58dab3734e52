// Mini-batch k-means update rate (per point, k = 8, d = 3..8): assignment to
// the nearest of k centres plus the 1/count move of the winner.
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "crmstream/models/mini_batch_kmeans.h"

namespace {

using crmstream::models::MiniBatchKMeans;
using crmstream::models::MiniBatchKMeansOptions;

std::vector<double> MakePoints(int dim, int n) {
  std::mt19937_64 rng(1);
  std::normal_distribution<double> noise(0.0, 1.0);
  std::vector<double> points(static_cast<size_t>(n) * dim);
  for (int i = 0; i < n; ++i) {
    const int blob = static_cast<int>(rng() % 8);
    for (int j = 0; j < dim; ++j)
      points[static_cast<size_t>(i) * dim + j] = 4.0 * ((blob >> (j % 3)) & 1) + noise(rng);
  }
  return points;
}

void BM_KMeansUpdate(benchmark::State& state) {
  const int dim = static_cast<int>(state.range(0));
  const int batch = static_cast<int>(state.range(1));
  const bool decay = state.range(2) != 0;
  constexpr int kPoints = 1 << 16;
  const std::vector<double> points = MakePoints(dim, kPoints);
  MiniBatchKMeansOptions o;
  o.k = 8;
  o.dim = dim;
  o.mini_batch_size = batch;
  o.half_life = decay ? 10'000.0 : 0.0;
  o.dead_after = decay ? 100'000 : 0;
  auto model = MiniBatchKMeans::Create(o);
  if (!model.ok()) {
    state.SkipWithError("create failed");
    return;
  }
  size_t i = 0;
  for (int s = 0; s < o.seed_buffer_size; ++s, i = (i + 1) % kPoints) {
    (void)model->Update(std::span<const double>(points.data() + i * dim, dim));
  }
  for (auto _ : state) {
    auto a = model->Update(std::span<const double>(points.data() + i * dim, dim));
    benchmark::DoNotOptimize(a);
    i = i + 1 == kPoints ? 0 : i + 1;
  }
  state.SetItemsProcessed(state.iterations());
}
// Args: dim, mini-batch size, decay + dead-centre re-seeding on/off.
BENCHMARK(BM_KMeansUpdate)
    ->Args({3, 1, 0})
    ->Args({5, 1, 0})
    ->Args({8, 1, 0})
    ->Args({8, 256, 0})
    ->Args({3, 1, 1})
    ->Args({8, 1, 1});

}  // namespace

BENCHMARK_MAIN();
