// Update and query throughput of the co-purchase models, one core:
//   bench_copurchase --benchmark_min_time=1
// items_per_second is purchase lines (or recommendations) per second. The
// stream: orders of 1..19 lines from a Zipf-like catalogue of 4,000 items,
// one line per simulated second, so the 1-day window of the rules holds
// about 86,400 lines (8,600 baskets, a few hundred thousand pairs) in steady
// state.
#include <benchmark/benchmark.h>

#include <charconv>
#include <random>
#include <string>
#include <vector>

#include "crmstream/models/association_rules.h"
#include "crmstream/models/item_recommender.h"

namespace crmstream::models {
namespace {

constexpr size_t kPool = 1 << 16;  // pre-drawn lines, cycled
constexpr int kItems = 4000;
constexpr int kCustomers = 10000;

struct Lines {
  std::vector<std::string> items;  // the catalogue
  std::vector<uint32_t> item;      // per pooled line
  std::vector<uint8_t> starts_order;
  std::vector<uint32_t> customer;
};

const Lines& Pool() {
  static const Lines lines = [] {
    Lines l;
    for (int i = 0; i < kItems; ++i) l.items.push_back("sku-" + std::to_string(i));
    std::mt19937_64 rng(7);
    std::uniform_real_distribution<double> u(0.0, 1.0);
    int left = 0;
    uint32_t customer = 0;
    for (size_t i = 0; i < kPool; ++i) {
      const bool start = left == 0;
      if (start) {
        left = 1 + static_cast<int>(rng() % 19);
        customer = static_cast<uint32_t>(rng() % kCustomers);
      }
      --left;
      const double x = u(rng);
      l.item.push_back(static_cast<uint32_t>(x * x * x * kItems));  // skewed towards low numbers
      l.starts_order.push_back(start ? 1 : 0);
      l.customer.push_back(customer);
    }
    return l;
  }();
  return lines;
}

// Writes the decimal of n into buf; no allocation.
std::string_view Decimal(uint64_t n, char* buf) {
  const auto r = std::to_chars(buf, buf + 24, n);
  return std::string_view(buf, static_cast<size_t>(r.ptr - buf));
}

void BM_AssociationRulesAddLine(benchmark::State& state) {
  const Lines& lines = Pool();
  AssociationRulesOptions o;
  o.window_ms = 86'400'000;  // one day
  o.max_pairs = static_cast<uint32_t>(state.range(0));
  auto miner = AssociationRuleMiner::Create(o).value();
  char buf[24];
  uint64_t order = 0;
  int64_t t = 0;
  const auto feed = [&](size_t i) {
    if (lines.starts_order[i % kPool]) ++order;
    t += 1000;
    return miner.AddLine(Decimal(order, buf), lines.items[lines.item[i % kPool]], t);
  };
  // Fill the window (and, with a small cap, the Space-Saving regime).
  for (size_t i = 0; i < 200'000; ++i) (void)feed(i);
  size_t i = 200'000;
  for (auto _ : state) benchmark::DoNotOptimize(feed(i++));
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
  state.counters["pairs"] = static_cast<double>(miner.pairs());
  state.counters["MiB"] = static_cast<double>(miner.memory_bytes()) / 1048576.0;
}
// Uncapped (exact), and capped well below the window's pairs.
BENCHMARK(BM_AssociationRulesAddLine)->Arg(1 << 21)->Arg(1 << 16);

void BM_AssociationRulesSnapshot(benchmark::State& state) {
  const Lines& lines = Pool();
  AssociationRulesOptions o;
  o.window_ms = 86'400'000;
  auto miner = AssociationRuleMiner::Create(o).value();
  char buf[24];
  uint64_t order = 0;
  for (size_t i = 0; i < 200'000; ++i) {
    if (lines.starts_order[i % kPool]) ++order;
    (void)miner.AddLine(Decimal(order, buf), lines.items[lines.item[i % kPool]],
                        static_cast<int64_t>(i) * 1000);
  }
  RuleFloors floors;
  floors.min_support = 0.001;
  floors.min_confidence = 0.1;
  std::vector<AssociationRule> rules;
  for (auto _ : state) benchmark::DoNotOptimize(miner.Rules(floors, &rules));
  state.counters["rules"] = static_cast<double>(rules.size());
  state.counters["pairs"] = static_cast<double>(miner.pairs());
}
BENCHMARK(BM_AssociationRulesSnapshot)->Unit(benchmark::kMillisecond);

ItemRecommender WarmRecommender(size_t lines_seen) {
  const Lines& lines = Pool();
  ItemRecommenderOptions o;
  o.history_size = 128;
  o.neighbours = 256;
  o.half_life_days = 30;
  auto model = ItemRecommender::Create(o).value();
  char buf[24];
  for (size_t i = 0; i < lines_seen; ++i) {
    (void)model.Observe(Decimal(lines.customer[i % kPool], buf), lines.items[lines.item[i % kPool]],
                        static_cast<int64_t>(i) * 1000);
  }
  return model;
}

void BM_ItemRecommenderObserve(benchmark::State& state) {
  const Lines& lines = Pool();
  ItemRecommender model = WarmRecommender(300'000);
  char buf[24];
  size_t i = 300'000;
  for (auto _ : state) {
    benchmark::DoNotOptimize(model.Observe(Decimal(lines.customer[i % kPool], buf),
                                           lines.items[lines.item[i % kPool]],
                                           static_cast<int64_t>(i) * 1000));
    ++i;
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
  state.counters["MiB"] = static_cast<double>(model.memory_bytes()) / 1048576.0;
}
BENCHMARK(BM_ItemRecommenderObserve);

void BM_ItemRecommenderRecommend(benchmark::State& state) {
  ItemRecommender model = WarmRecommender(300'000);
  std::vector<Recommendation> out;
  char buf[24];
  uint64_t c = 0;
  for (auto _ : state) {
    model.Recommend(Decimal(c++ % kCustomers, buf), 300'000'000, 10, &out);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_ItemRecommenderRecommend);

}  // namespace
}  // namespace crmstream::models

BENCHMARK_MAIN();
