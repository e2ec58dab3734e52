// A warm feature store must not allocate per event. Allocations are counted only inside
// the measured region (support/allocation_counter.h).
#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "crmstream/features/feature_store.h"
#include "support/allocation_counter.h"
#include "support/require_ok.h"

namespace crmstream::features {
namespace {

constexpr int64_t kDay = 86'400'000;
constexpr int64_t kT0 = 1'704'067'200'000;

TEST_CASE("The allocation counter sees an allocation", "[features]") {
  // The control for the zero checks: the replaced operator new is linked in.
  testing::StartCountingAllocations();
  auto* buffer = new std::vector<int>(1000);
  const long counted = testing::StopCountingAllocations();
  delete buffer;
  CHECK(counted >= 1);
}

TEST_CASE("Warm updates, snapshots and JSON allocate nothing", "[features]") {
  REQUIRE_OK_AND_ASSIGN(auto store_owner, FeatureStore::Create(FeatureSpec{}));
  FeatureStore& store = *store_owner;
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

  testing::StartCountingAllocations();
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
  CHECK(testing::StopCountingAllocations() == 0);
  CHECK(sink >= 0);
}

}  // namespace
}  // namespace crmstream::features
