// A warm feature store must not allocate per event. This file replaces the
// global operator new for the features test binary and counts allocations
// only inside a measured region (Catch2's own allocations don't count).
#include <atomic>
#include <catch2/catch.hpp>
#include <cstdlib>
#include <new>
#include <string>
#include <vector>

#include "crmstream/features/feature_store.h"

namespace {
std::atomic<bool> g_counting{false};
std::atomic<long> g_allocations{0};
}  // namespace

// Every non-aligned form is replaced, so allocation and release always pair
// up (sanitizers check that).
namespace {
void* CountedAlloc(std::size_t n) noexcept {
  if (g_counting.load(std::memory_order_relaxed)) g_allocations.fetch_add(1);
  return std::malloc(n == 0 ? 1 : n);
}
}  // namespace

void* operator new(std::size_t n) {
  if (void* p = CountedAlloc(n)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n) {
  if (void* p = CountedAlloc(n)) return p;
  throw std::bad_alloc();
}
void* operator new(std::size_t n, const std::nothrow_t&) noexcept { return CountedAlloc(n); }
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept { return CountedAlloc(n); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }

namespace crmstream::features {
namespace {

constexpr int64_t kDay = 86'400'000;
constexpr int64_t kT0 = 1'704'067'200'000;

TEST_CASE("Warm updates, snapshots and JSON allocate nothing", "[features]") {
  FeatureStore store{FeatureSpec{}};
  std::vector<std::string> ids;
  for (int i = 0; i < 300; ++i) ids.push_back("customer-" + std::to_string(i));
  const ingest::EventType kMix[] = {
      ingest::EventType::kPageView,  ingest::EventType::kLogin,
      ingest::EventType::kPurchase,  ingest::EventType::kPageView,
      ingest::EventType::kRefund,    ingest::EventType::kSupportTicket,
      ingest::EventType::kComplaint, ingest::EventType::kPlanChange};
  auto make = [&](size_t customer, int64_t ts, int k) {
    ingest::Event e;
    e.event_id = "e";
    e.customer_id = ids[customer];
    e.timestamp_ms = ts;
    e.type = kMix[k % 8];
    e.has_amount = ingest::EventTypeHasAmount(e.type);
    e.amount = 12.5;
    if (e.type == ingest::EventType::kPlanChange) e.plan = (k % 16 == 7) ? "pro" : "basic";
    return e;
  };
  // 100 days of history, then the first events of day 100.
  for (int d = 0; d <= 100; ++d) {
    for (size_t c = 0; c < ids.size(); ++c) {
      for (int k = 0; k < 3; ++k) store.Update(make(c, kT0 + d * kDay + k * 1000, k + d));
    }
  }
  FeatureVector v;
  store.Find(ids[0])->Snapshot(kT0 + 100 * kDay, &v);
  std::string json;
  json.reserve(4096);
  store.ClearDirty();
  store.Update(make(0, kT0 + 100 * kDay + 50'000, 0));  // the dirty list has its room

  g_allocations = 0;
  g_counting = true;
  double sink = 0;
  // More events of the same day (every type, late ones of earlier days
  // excluded), snapshots, lookups and JSON.
  for (int round = 0; round < 20; ++round) {
    for (size_t c = 0; c < ids.size(); ++c) {
      const CustomerFeatures& f = store.Update(make(c, kT0 + 100 * kDay + 60'000 + round, round));
      f.Snapshot(kT0 + 100 * kDay + 60'000 + round, &v);
      sink += v[0];
      json.clear();
      JsonWriter w(&json);
      w.BeginObject();
      WriteFeaturesJson(*store.Find(ids[c]), &w);
      w.EndObject();
    }
  }
  g_counting = false;
  CHECK(g_allocations.load() == 0);
  CHECK(sink >= 0);
}

}  // namespace
}  // namespace crmstream::features
