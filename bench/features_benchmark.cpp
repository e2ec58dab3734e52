// Feature store throughput and memory: 100k customers with a realistic event
// mix, warmed up over 90 days of event time so every window and per-day
// history is full, then timed on the following days.
//
//   bench_features --benchmark_counters_tabular=true
//
// Args: percentage of days on which a customer is active (every customer
// averages 3 events per calendar day: 100 = 3 a day, every day; 25 = about 12
// on one day in four), and the number of customers (10 000 fit in the CPU
// cache, which separates the compute cost from memory stalls).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "crmstream/features/feature_store.h"

namespace {

using crmstream::features::FeatureSpec;
using crmstream::features::FeatureStore;
using crmstream::features::FeatureVector;
using crmstream::ingest::Event;
using crmstream::ingest::EventType;

constexpr int64_t kDay = 86'400'000;
constexpr int64_t kT0 = 1'704'067'200'000;  // 2024-01-01
constexpr int kWarmupDays = 90;
constexpr int kTimedDays = 5;
constexpr std::array<std::string_view, 4> kPlans = {"free", "basic", "pro", "enterprise"};

struct CompactEvent {
  int64_t ts;
  double amount;
  uint32_t customer;
  EventType type;
  uint8_t plan;  // index + 1 into kPlans, 0 = none
};

class EventWorld {
 public:
  EventWorld(int active_percent, int customers)
      : active_percent_(active_percent), customers_(customers), rng_(42) {
    ids_.reserve(static_cast<size_t>(customers_));
    for (int i = 0; i < customers_; ++i) ids_.push_back("cust-" + std::to_string(10'000'000 + i));
  }

  // One day of events for every customer, in time order except for ~1% that
  // arrive up to three days late.
  void MakeDay(int day, std::vector<CompactEvent>* out) {
    out->clear();
    const double per_active_day = 3.0 * 100.0 / active_percent_;
    std::poisson_distribution<int> events_per_day(per_active_day);
    std::uniform_int_distribution<int64_t> in_day(0, kDay - 1);
    std::uniform_real_distribution<double> unit(0, 1);
    std::lognormal_distribution<double> amount(3.5, 1.0);  // median ~33
    for (uint32_t c = 0; c < static_cast<uint32_t>(customers_); ++c) {
      if (static_cast<int>(rng_() % 100) >= active_percent_) continue;
      const int n = events_per_day(rng_);
      for (int k = 0; k < n; ++k) {
        CompactEvent e{};
        e.customer = c;
        e.ts = kT0 + day * kDay + in_day(rng_);
        const double u = unit(rng_);
        // page views 55%, logins 22%, purchases 10%, tickets 5%, refunds 3%,
        // plan changes 2.5%, complaints 2%, closures 0.5%.
        if (u < 0.55)
          e.type = EventType::kPageView;
        else if (u < 0.77)
          e.type = EventType::kLogin;
        else if (u < 0.87)
          e.type = EventType::kPurchase;
        else if (u < 0.92)
          e.type = EventType::kSupportTicket;
        else if (u < 0.95)
          e.type = EventType::kRefund;
        else if (u < 0.975)
          e.type = EventType::kPlanChange;
        else if (u < 0.995)
          e.type = EventType::kComplaint;
        else
          e.type = EventType::kAccountClosed;
        if (e.type == EventType::kPurchase || e.type == EventType::kRefund) {
          e.amount = static_cast<double>(static_cast<int64_t>(amount(rng_) * 100)) / 100.0;
        }
        if (e.type == EventType::kPlanChange) e.plan = static_cast<uint8_t>(1 + rng_() % 4);
        if (unit(rng_) < 0.01) e.ts -= static_cast<int64_t>(unit(rng_) * 3 * kDay);
        out->push_back(e);
      }
    }
    std::sort(out->begin(), out->end(),
              [](const CompactEvent& a, const CompactEvent& b) { return a.ts < b.ts; });
  }

  Event ToEvent(const CompactEvent& c) const {
    Event e;
    e.event_id = "bench";
    e.customer_id = ids_[c.customer];
    e.timestamp_ms = c.ts;
    e.type = c.type;
    e.amount = c.amount;
    e.has_amount = c.type == EventType::kPurchase || c.type == EventType::kRefund;
    if (c.plan != 0) e.plan = kPlans[c.plan - 1];
    return e;
  }

  const std::string& id(uint32_t i) const { return ids_[i]; }

 private:
  int active_percent_;
  int customers_;
  std::mt19937_64 rng_;
  std::vector<std::string> ids_;
};

// Fills the store with the warm-up days; returns the timed days' events.
std::vector<CompactEvent> WarmUp(EventWorld* world, FeatureStore* store) {
  std::vector<CompactEvent> day_events;
  for (int d = 0; d < kWarmupDays; ++d) {
    world->MakeDay(d, &day_events);
    for (const auto& c : day_events) store->Update(world->ToEvent(c));
  }
  std::vector<CompactEvent> timed;
  for (int d = kWarmupDays; d < kWarmupDays + kTimedDays; ++d) {
    world->MakeDay(d, &day_events);
    timed.insert(timed.end(), day_events.begin(), day_events.end());
  }
  return timed;
}

void ReportMemory(benchmark::State& state, const FeatureStore& store) {
  const double n = static_cast<double>(store.size());
  state.counters["customers"] = n;
  state.counters["bytes_per_customer"] = static_cast<double>(store.MemoryUsageBytes()) / n;
  state.counters["slot_bytes"] = static_cast<double>(store.SlotBytes());
}

void BM_FeatureUpdate(benchmark::State& state) {
  EventWorld world(static_cast<int>(state.range(0)), static_cast<int>(state.range(1)));
  auto created = FeatureStore::Create(FeatureSpec{});
  if (!created.ok()) return state.SkipWithError(created.status().ToString().c_str());
  FeatureStore& store = **created;
  const std::vector<CompactEvent> timed = WarmUp(&world, &store);
  int64_t processed = 0;
  for (auto _ : state) {
    double sink = 0;
    for (const auto& c : timed) sink += store.Update(world.ToEvent(c)).frequency();
    benchmark::DoNotOptimize(sink);
    processed += static_cast<int64_t>(timed.size());
  }
  state.SetItemsProcessed(processed);
  ReportMemory(state, store);
}
BENCHMARK(BM_FeatureUpdate)
    ->Args({100, 100'000})
    ->Args({25, 100'000})
    ->Args({100, 10'000})
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);

// Update followed by the model-input snapshot, as the scoring path does.
void BM_FeatureUpdateAndSnapshot(benchmark::State& state) {
  EventWorld world(static_cast<int>(state.range(0)), static_cast<int>(state.range(1)));
  auto created = FeatureStore::Create(FeatureSpec{});
  if (!created.ok()) return state.SkipWithError(created.status().ToString().c_str());
  FeatureStore& store = **created;
  const std::vector<CompactEvent> timed = WarmUp(&world, &store);
  FeatureVector v;
  int64_t processed = 0;
  for (auto _ : state) {
    double sink = 0;
    for (const auto& c : timed) {
      const Event e = world.ToEvent(c);
      store.Update(e).Snapshot(e.timestamp_ms, &v);
      sink += v[0];
    }
    benchmark::DoNotOptimize(sink);
    processed += static_cast<int64_t>(timed.size());
  }
  state.SetItemsProcessed(processed);
  ReportMemory(state, store);
}
BENCHMARK(BM_FeatureUpdateAndSnapshot)
    ->Args({100, 100'000})
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
