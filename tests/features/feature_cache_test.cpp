// The feature store as a bounded cache: customers evicted to a backing map
// and loaded again on a miss give the same features as a store that keeps
// everyone, and the hash table stays consistent through many evictions.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdint>
#include <map>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "crmstream/features/feature_store.h"
#include "support/require_ok.h"

namespace crmstream::features {
namespace {

using ingest::Event;
using ingest::EventType;

constexpr int64_t kDay = 86'400'000;
constexpr int64_t kT0 = 1'704'067'200'000;

// What the state store is to the engine: evicted customers' blobs.
class MapBacking final : public CustomerMissHandler, public CustomerEvictionHooks {
 public:
  explicit MapBacking(FeatureStore* store) : store_(store) {}
  void OnMiss(std::string_view id) override {
    ++misses;
    auto it = saved.find(std::string(id));
    if (it == saved.end()) return;
    ++loads;
    REQUIRE_OK(store_->LoadCustomer(id, it->second));
  }
  bool Pinned(uint32_t slot) override { return pinned.count(slot) != 0; }
  void Evicted(uint32_t slot) override {
    const std::string id(store_->At(slot).customer_id());
    REQUIRE(pinned.count(slot) == 0);
    REQUIRE_OK(store_->EncodeCustomer(id, &saved[id]));
  }
  std::map<std::string, std::string> saved;
  std::map<uint32_t, int> pinned;
  int misses = 0;
  int loads = 0;

 private:
  FeatureStore* store_;
};

std::string IdOf(int n) {
  // Short ids live inline, long ones on the heap: both are evicted.
  return n % 3 == 0 ? "customer-with-a-long-identifier-" + std::to_string(n)
                    : "c" + std::to_string(n);
}

// touch(c): a login of customer IdOf(c) into the store, 1 ms after the
// previous one.
class LoginOf {
 public:
  explicit LoginOf(FeatureStore* store) : store_(store) {
    event_.event_id = "e";
    event_.type = EventType::kLogin;
  }
  void operator()(int customer) {
    id_ = IdOf(customer);
    event_.customer_id = id_;
    event_.timestamp_ms = kT0 + n_++;
    store_->Update(event_);
  }

 private:
  FeatureStore* store_;
  Event event_;
  std::string id_;
  int n_ = 0;
};

// Also with a byte budget that the customers' day histories outgrow: saved
// customers holding them are evicted at checkpoints and their slots left
// vacant, then taken by new customers.
TEST_CASE("An evicting feature store matches one that keeps every customer", "[features]") {
  constexpr int kCustomers = 2000;
  constexpr size_t kCapacity = 150;
  const bool budget = GENERATE(false, true);
  CAPTURE(budget);
  REQUIRE_OK_AND_ASSIGN(auto bounded, FeatureStore::Create(FeatureSpec{}));
  REQUIRE_OK_AND_ASSIGN(auto reference, FeatureStore::Create(FeatureSpec{}));
  MapBacking backing(bounded.get());
  bounded->set_miss_handler(&backing);
  bounded->SetCapacity(kCapacity, &backing);
  size_t most_vacant = 0;
  size_t shed = 0;
  int over_budget = 0;

  std::mt19937_64 rng(11);
  // A skewed population: a few hot customers, a long tail.
  std::geometric_distribution<int> pick(0.004);
  std::uniform_int_distribution<int> type(0, ingest::kEventTypeCount - 1);
  std::uniform_int_distribution<int64_t> jitter(0, kDay);
  std::vector<std::string> plans = {"basic", "pro", "team"};
  int64_t t = kT0;
  for (int i = 0; i < 60'000; ++i) {
    const std::string id = IdOf(pick(rng) % kCustomers);
    t += 60'000;
    Event e;
    e.event_id = "e";
    e.customer_id = id;
    // Some events arrive up to a day late.
    e.timestamp_ms = t - (i % 7 == 0 ? jitter(rng) : 0);
    e.type = static_cast<EventType>(type(rng));
    e.has_amount = ingest::EventTypeHasAmount(e.type);
    e.amount = e.has_amount ? 1.0 + static_cast<double>(i % 500) : 0.0;
    if (e.type == EventType::kPlanChange) e.plan = plans[static_cast<size_t>(i) % plans.size()];
    bounded->Update(e);
    reference->Update(e);
    if (budget && i == 2000) {
      // 8 KiB more than now: the histories grow past it with the days to
      // come (to 10 KiB; the store's scratch buffers also grow by 6).
      bounded->SetCapacity(kCapacity, &backing, bounded->MemoryUsageBytes() + 8192);
    }
    if (i % 50 == 49) {
      // A checkpoint: everything saved, nothing owed.
      bounded->ClearDirty();
      bounded->ClearUnsaved();
      shed += bounded->ShedOverBudget(bounded->size());
      if (bounded->OverBudget()) ++over_budget;
      most_vacant = std::max(most_vacant, bounded->vacant_slots());
      // Pin a few slots as another module's unsaved state would.
      backing.pinned.clear();
      for (uint32_t s = 0; s < 5 && s < bounded->size(); ++s)
        backing.pinned[s * 7 % bounded->size()] = 1;
    }
  }
  CHECK(bounded->evictions() > 1000);
  CHECK(backing.loads > 1000);
  CHECK(bounded->size() <= kCapacity);
  CHECK(bounded->over_capacity() == 0);
  if (budget) {
    // Histories were shed, the slots they left reused, and the budget held
    // after each checkpoint.
    CHECK(shed > 100);
    CHECK(most_vacant > 0);
    CHECK(bounded->size() + bounded->vacant_slots() <= kCapacity);
    CHECK(over_budget == 0);
    CHECK(bounded->MemoryUsageBytes() <= bounded->budget_bytes());
  } else {
    CHECK(shed == 0);
    CHECK(bounded->vacant_slots() == 0);
  }
  // Every customer, in memory or saved, has the reference's exact state.
  int compared = 0;
  for (int n = 0; n < kCustomers; ++n) {
    const std::string id = IdOf(n);
    std::string want, got;
    if (!reference->EncodeCustomer(id, &want).ok()) continue;
    if (bounded->Find(id) != nullptr) {
      REQUIRE_OK(bounded->EncodeCustomer(id, &got));
    } else {
      REQUIRE(backing.saved.count(id) == 1);
      got = backing.saved[id];
    }
    CHECK(got == want);
    ++compared;
  }
  CHECK(compared > 500);
  CHECK(bounded->MemoryUsageBytes() < reference->MemoryUsageBytes() / 2);
}

TEST_CASE("A store whose customers are all unsaved grows past its capacity", "[features]") {
  REQUIRE_OK_AND_ASSIGN(auto store, FeatureStore::Create(FeatureSpec{}));
  MapBacking backing(store.get());
  store->SetCapacity(10, &backing);
  Event e;
  e.event_id = "e";
  e.type = EventType::kLogin;
  for (int n = 0; n < 30; ++n) {
    const std::string id = IdOf(n);
    e.customer_id = id;
    e.timestamp_ms = kT0 + n;
    store->Update(e);  // never refused
  }
  // Nothing was saved between the events: nothing could be evicted.
  CHECK(store->size() == 30);
  CHECK(store->over_capacity() == 20);
  CHECK(store->evictions() == 0);
  for (int n = 0; n < 30; ++n) CHECK(store->Find(IdOf(n)) != nullptr);
}

TEST_CASE("A store asks for a checkpoint when 3/4 of its capacity is unsaved", "[features]") {
  REQUIRE_OK_AND_ASSIGN(auto store, FeatureStore::Create(FeatureSpec{}));
  MapBacking backing(store.get());
  CHECK_FALSE(store->UnderPressure());  // no capacity: never
  store->SetCapacity(10, &backing);
  LoginOf touch(store.get());
  // 10 * 3 / 4 rounded down: the 7th unsaved customer raises it.
  for (int c = 0; c < 6; ++c) touch(c);
  CHECK_FALSE(store->UnderPressure());
  touch(0);  // again: still six unsaved customers
  CHECK_FALSE(store->UnderPressure());
  touch(6);
  CHECK(store->UnderPressure());
  // A checkpoint staged (its customers stay until it commits) ends it.
  store->ClearDirty();
  store->StageUnsaved();
  CHECK_FALSE(store->UnderPressure());
  // Checkpointed each time it asks, the store never grows past its
  // capacity over many more customers than it holds.
  for (int c = 7; c < 200; ++c) {
    touch(c);
    if (store->UnderPressure()) {
      store->ClearDirty();
      store->StageUnsaved();
      store->ReleaseStaged();
    }
  }
  CHECK(store->size() == 10);
  CHECK(store->over_capacity() == 0);
  CHECK(store->evictions() == 200 - 10);
}

TEST_CASE("Customers pinned by other state count toward the pressure and fullness once each",
          "[features]") {
  REQUIRE_OK_AND_ASSIGN(auto store, FeatureStore::Create(FeatureSpec{}));
  MapBacking backing(store.get());
  store->set_miss_handler(&backing);
  store->SetCapacity(8, &backing);  // asks for a checkpoint at 6
  LoginOf touch(store.get());
  const auto slot_of = [&](int customer) { return store->Find(IdOf(customer))->slot(); };
  for (int c = 0; c < 8; ++c) touch(c);
  store->ClearDirty();
  store->ClearUnsaved();
  REQUIRE_FALSE(store->UnderPressure());
  // Five saved customers whose other state changed (the hooks do not pin
  // them: the store's pins alone keep them).
  for (int c = 0; c < 5; ++c) store->Pin(slot_of(c));
  CHECK(store->pinned_count() == 5);
  CHECK_FALSE(store->UnderPressure());
  // Touched too, or pinned twice: still five customers.
  touch(0);
  touch(1);
  store->Pin(slot_of(0));
  store->Pin(slot_of(4));
  CHECK_FALSE(store->UnderPressure());
  // An unsaved customer's pin adds nothing either.
  touch(5);
  store->Pin(slot_of(5));
  CHECK(store->pinned_count() == 5);
  CHECK(store->UnderPressure());  // six
  CHECK_FALSE(store->Full());
  // A new customer takes the slot of one neither unsaved nor pinned.
  touch(8);
  CHECK(store->size() == 8);
  for (int c = 0; c < 6; ++c) CHECK(store->Find(IdOf(c)) != nullptr);
  // Seven changed, the eighth pinned: full, and the next new customer grows
  // the store.
  store->Pin(store->Find(IdOf(6)) != nullptr ? slot_of(6) : slot_of(7));
  CHECK(store->Full());
  touch(9);
  CHECK(store->size() == 9);
  CHECK(store->over_capacity() == 1);
  // A checkpoint stages the pinned with the unsaved: they no longer ask for
  // one, and stay until it commits.
  store->ClearDirty();
  store->StageUnsaved();
  CHECK(store->pinned_count() == 0);
  CHECK(store->unsaved_count() == 0);
  CHECK(store->staged_count() == 9);
  CHECK_FALSE(store->UnderPressure());
  CHECK(store->Full());
  store->ReleaseStaged();
  CHECK_FALSE(store->Full());
  touch(10);
  CHECK(store->size() == 9);
  CHECK(store->evictions() == 2);
}

TEST_CASE("An eviction looks past its bounded sweep while the counts promise a customer to evict",
          "[features]") {
  // More unsaved customers in a row than one bounded sweep looks at
  // (1,024), and saved ones after them.
  constexpr int kCapacity = 2'000;
  constexpr int kUnsavedRun = 1'500;
  REQUIRE_OK_AND_ASSIGN(auto store, FeatureStore::Create(FeatureSpec{}));
  MapBacking backing(store.get());
  store->set_miss_handler(&backing);
  store->SetCapacity(kCapacity, &backing);
  LoginOf touch(store.get());
  for (int c = 0; c < kCapacity; ++c) touch(c);
  store->ClearDirty();
  store->ClearUnsaved();
  for (int c = 0; c < kUnsavedRun; ++c) touch(c);  // slots 0-1499, where the hand starts
  store->ClearDirty();
  CHECK_FALSE(store->Full());
  for (int c = kCapacity; c < kCapacity + 100; ++c) touch(c);
  CHECK(store->size() == static_cast<size_t>(kCapacity));
  CHECK(store->over_capacity() == 0);
  CHECK(store->evictions() == 100);
  for (int c = 0; c < kUnsavedRun; ++c) CHECK(store->Find(IdOf(c)) != nullptr);
}

TEST_CASE("A store's checkpoint mark is 3/4 of its capacity rounded down, and at least one",
          "[features]") {
  Event e;
  e.event_id = "e";
  e.type = EventType::kLogin;
  for (size_t capacity = 1; capacity <= 17; ++capacity) {
    CAPTURE(capacity);
    REQUIRE_OK_AND_ASSIGN(auto store, FeatureStore::Create(FeatureSpec{}));
    MapBacking backing(store.get());
    store->SetCapacity(capacity, &backing);
    // New unsaved customers until the store asks: as many as the mark.
    size_t unsaved = 0;
    while (!store->UnderPressure() && unsaved <= capacity) {
      const std::string id = IdOf(static_cast<int>(unsaved));
      e.customer_id = id;
      e.timestamp_ms = kT0 + static_cast<int64_t>(unsaved);
      store->Update(e);
      ++unsaved;
    }
    CHECK(unsaved == std::max<size_t>(1, capacity * 3 / 4));
  }
}

TEST_CASE("Customers held for their events are not evicted, and a held load never grows the store",
          "[features]") {
  REQUIRE_OK_AND_ASSIGN(auto store, FeatureStore::Create(FeatureSpec{}));
  MapBacking backing(store.get());
  store->set_miss_handler(&backing);
  store->SetCapacity(10, &backing);
  Event e;
  e.event_id = "e";
  e.type = EventType::kLogin;
  std::string id;
  const auto touch = [&](int n) {
    id = IdOf(n);
    e.customer_id = id;
    e.timestamp_ms = kT0 + n;
    store->Update(e);
  };
  // 20 customers saved (their blobs in the backing), 10 of them in memory.
  for (int n = 0; n < 20; ++n) {
    touch(n);
    store->ClearDirty();
    store->ClearUnsaved();
  }
  REQUIRE(store->size() == 10);
  for (int n = 0; n < 10; ++n) REQUIRE(store->Find(IdOf(n)) == nullptr);
  // Customers 18 and 19 are in memory and held; 0-7 are loaded held: the
  // cache has room for 8 (the ten in memory but the two held).
  store->Hold(store->Find(IdOf(18))->slot());
  store->Hold(store->Find(IdOf(19))->slot());
  for (int n = 0; n < 8; ++n) {
    REQUIRE_OK_AND_ASSIGN(const bool loaded,
                          store->LoadHeldCustomer(IdOf(n), backing.saved[IdOf(n)]));
    CHECK(loaded);
  }
  CHECK_FALSE(store->HasRoom());
  REQUIRE_OK_AND_ASSIGN(const bool ninth, store->LoadHeldCustomer(IdOf(8), backing.saved[IdOf(8)]));
  CHECK_FALSE(ninth);
  CHECK(store->Find(IdOf(8)) == nullptr);
  CHECK(store->size() == 10);
  CHECK(store->over_capacity() == 0);
  for (int n : {0, 1, 2, 3, 4, 5, 6, 7, 18, 19}) CHECK(store->Find(IdOf(n)) != nullptr);
  // An event ends its customer's hold; once saved, it may go.
  touch(0);
  store->ClearDirty();
  store->ClearUnsaved();
  CHECK(store->HasRoom());
  REQUIRE_OK_AND_ASSIGN(const bool after, store->LoadHeldCustomer(IdOf(8), backing.saved[IdOf(8)]));
  CHECK(after);
  CHECK(store->Find(IdOf(0)) == nullptr);
  CHECK_FALSE(store->HasRoom());
  // The holds whose events never came end together.
  store->ReleaseHeld();
  CHECK(store->HasRoom());
  touch(9);  // a miss: loaded, evicting one of the customers held before
  CHECK(store->size() == 10);
  CHECK(store->over_capacity() == 0);
  CHECK(backing.loads == 1);
}

TEST_CASE("max_customers counts the customers in memory, not those evicted", "[features]") {
  FeatureSpec spec;
  spec.max_customers = 12;
  REQUIRE_OK_AND_ASSIGN(auto store, FeatureStore::Create(spec));
  MapBacking backing(store.get());
  store->SetCapacity(10, &backing);
  Event e;
  e.event_id = "e";
  e.type = EventType::kLogin;
  // Saved after each event: a slot can always be taken, 100 customers pass
  // through a store that may hold 12.
  for (int n = 0; n < 100; ++n) {
    const std::string id = IdOf(n);  // the event only views its id
    e.customer_id = id;
    e.timestamp_ms = kT0 + n;
    REQUIRE_NOTHROW(store->Update(e));
    store->ClearDirty();
    store->ClearUnsaved();
  }
  CHECK(store->size() <= 10);
  CHECK(store->evictions() >= 90);
  CHECK(backing.saved.size() >= 90);

  // Nothing saved: the store grows past its capacity up to max_customers,
  // then refuses a new customer (long id too) and stays as it was.
  for (int n = 100; store->size() < 12; ++n) {
    const std::string id = IdOf(n);  // the event only views its id
    e.customer_id = id;
    e.timestamp_ms = kT0 + n;
    store->Update(e);
    REQUIRE(n < 200);
  }
  const uint64_t evictions = store->evictions();
  const std::string refused = IdOf(300);  // a long identifier: 300 % 3 == 0
  e.customer_id = refused;
  CHECK_THROWS_AS(store->Update(e), std::length_error);
  CHECK(store->size() == 12);
  CHECK(store->Find(refused) == nullptr);
  // A saved customer loads again only if there is room: none is, so the
  // load is refused with a clear error rather than a throw.
  const std::string& saved_id = backing.saved.begin()->first;
  REQUIRE(store->Find(saved_id) == nullptr);
  const Status load = store->LoadCustomer(saved_id, backing.saved.begin()->second);
  CHECK(load.code() == StatusCode::kInvalidArgument);
  CHECK(load.ToString().find("max_customers") != std::string::npos);
  CHECK(store->evictions() == evictions);
}

}  // namespace
}  // namespace crmstream::features
