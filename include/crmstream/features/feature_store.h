// Per-customer features kept up to date event by event for the customers of
// one input partition: RFM, counts and sums over sliding windows of event time,
// ticket/complaint rates, login recency, tenure, plan, lifetime event counts.
// Definitions, units and the model-input vector are in docs/features.md.
//
// One FeatureStore per partition task. Not thread-safe: single-threaded by
// design, no locks. A CustomerFeatures view reads the store's current state:
// a copy of one stays valid while its customer stays in memory (customers
// never move; with a capacity, an evicted customer's slot is reused) and
// always shows the customer's latest features; the references returned
// by Update() and Find() are rebound by the next call of the same function.
//
// Every customer in memory has a slot number in [0, size() +
// vacant_slots()), fixed while it stays (CustomerFeatures::slot()). Other per-customer state of the
// partition (the scoring models) is kept in arrays indexed by it, so that an
// event hashes its customer id once, here. Slot numbers are not persisted.
//
// A bounded cache (SetCapacity): with a capacity, a new customer beyond it
// takes the slot of a customer whose state is saved elsewhere (CLOCK: a
// customer touched since the hand last passed gets a second chance; one
// with unsaved changes or owed outputs is never taken, nor one pinned (Pin,
// or the hooks), nor one in a checkpoint staged but not yet committed: StageUnsaved,
// nor one loaded ahead of its event and not yet touched: LoadHeldCustomer).
// The slot's views then show the new customer. When no candidate is found
// (a sweep of a bounded number of slots, or of every slot while the counts
// of customers that stay promise one) the store grows past the capacity
// (counted), so an event is never refused; the next checkpoint makes the
// cache evictable. With a byte budget too, customers holding heap bytes
// leave while it is exceeded, and their slots wait vacant for new ones.
// UnderPressure() tells the caller to checkpoint before that happens.
//
// Memory: a customer is one fixed-size slot (a 100-byte record, then a
// 4-byte cursor per window but the longest) in blocks of slots, plus a
// compact varint encoding of its per-day aggregates, only for days that had
// windowed events and only as far back as the longest window (up to 8 bytes
// inside the record, beyond that a small heap buffer), and its id when
// longer than 16 bytes. Window totals are summed from the per-day history
// when read, not kept per customer. Steady-state updates do not allocate; a
// new customer, a new active day, a late event or more customers changed
// between two clears than ever before (the tracking lists) may (amortised).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "crmstream/common/json_writer.h"
#include "crmstream/common/packed_ms.h"
#include "crmstream/common/status.h"
#include "crmstream/features/feature_spec.h"
#include "crmstream/ingest/event.h"

namespace crmstream::features {

namespace internal {
struct DayAggregate;
}  // namespace internal

// Counted metrics of the sliding windows, in the order of their storage.
enum class WindowMetric : uint8_t {
  kPurchases = 0,
  kLogins,
  kPageViews,
  kSupportTickets,
  kComplaints,
  kRefunds,
};
inline constexpr int kWindowMetricCount = 6;

// Totals of one sliding window as of some time.
struct WindowAggregates {
  int days = 0;  // the window's length
  uint32_t purchases = 0;
  uint32_t logins = 0;
  uint32_t page_views = 0;
  uint32_t support_tickets = 0;
  uint32_t complaints = 0;
  uint32_t refunds = 0;
  double purchase_amount = 0;  // currency units, each event rounded to 0.01
  double refund_amount = 0;
};

// Model inputs, in the order of FeatureStore::FeatureNames(spec).
using FeatureVector = std::vector<double>;

class FeatureStore;

// A read-only view of one customer's features, as of the customer's clock
// (its latest event time) unless a function takes a time. Cheap to copy.
class CustomerFeatures {
 public:
  std::string_view customer_id() const;
  // The customer's clock: the largest event timestamp seen (ms). Late events
  // never move it back.
  int64_t as_of_ms() const;
  int64_t first_seen_ms() const;  // smallest event timestamp seen
  std::optional<int64_t> last_purchase_ms() const;
  std::optional<int64_t> last_login_ms() const;

  // Fractional days from the last purchase to the clock; NaN before any purchase.
  double recency_days() const;
  uint32_t frequency() const;  // purchases, lifetime
  // Purchase amounts minus refund amounts, lifetime (currency units).
  double monetary() const;
  double purchase_amount_total() const;
  double refund_amount_total() const;
  // Lifetime purchase amount / purchases; NaN before any purchase.
  double average_order_value() const;
  // Fractional days from the last login to the clock; NaN before any login.
  double days_since_last_login() const;
  // Fractional days from the first seen event to the clock.
  double tenure_days() const;
  // Tickets (complaints) in the longest window per 30 days of the customer's
  // exposure inside that window (docs/features.md).
  double ticket_rate_30d() const;
  double complaint_rate_30d() const;
  // The same from the longest window already summed (Windows()).
  double ticket_rate_30d(const WindowAggregates& longest) const;
  double complaint_rate_30d(const WindowAggregates& longest) const;
  // Current plan ("" when none seen) and its id in the store's plan table (0: none).
  std::string_view plan() const;
  uint16_t plan_id() const;
  uint32_t plan_changes() const;                       // plan_change events, lifetime
  bool closed() const;                                 // an account_closed event was seen
  uint32_t event_count(ingest::EventType type) const;  // lifetime

  size_t window_count() const;
  // Window `i` of the spec, as of the clock.
  WindowAggregates window(size_t i) const;
  // Every window of the spec as of the clock (window(i) in out[i]), in one
  // pass over the per-day history; `out` holds window_count() of them.
  void Windows(WindowAggregates* out) const;
  size_t longest_window_index() const;
  // Window `i` as of max(at_ms, clock): a later time slides the window
  // forward (recomputed from the per-day history).
  WindowAggregates WindowAt(size_t i, int64_t at_ms) const;

  // Fills `out` with the model inputs as of max(now_ms, clock), in the order
  // of FeatureStore::FeatureNames(). Does not allocate once `out` has its size.
  void Snapshot(int64_t now_ms, FeatureVector* out) const;

  // The customer's slot in its store, in [0, FeatureStore::size()).
  uint32_t slot() const { return index_; }

 private:
  friend class FeatureStore;
  CustomerFeatures(const FeatureStore* store, uint32_t index) : store_(store), index_(index) {}
  const FeatureStore* store_ = nullptr;
  uint32_t index_ = 0;
};

// Asked by the store before it creates a customer it does not hold: the
// customer may be saved elsewhere (the state store) and is then loaded
// (FeatureStore::LoadCustomer) instead of created empty.
class CustomerMissHandler {
 public:
  virtual ~CustomerMissHandler() = default;
  virtual void OnMiss(std::string_view customer_id) = 0;
};

// Told about the customers of a store with a capacity (SetCapacity).
class CustomerEvictionHooks {
 public:
  virtual ~CustomerEvictionHooks() = default;
  // Whether the customer in `slot` has other state not saved yet (it
  // stays). Asked when evicting only: to count toward the pressure checks,
  // such a customer must be unsaved, staged or pinned (FeatureStore::Pin).
  virtual bool Pinned(uint32_t slot) = 0;
  // The customer in `slot` is about to leave memory (still readable); the
  // slot is then reused, or left vacant for a later customer.
  virtual void Evicted(uint32_t slot) = 0;
  // Heap bytes of the customers' state kept outside the store (the models'
  // slots and buffers), counted with the store's own memory() against
  // SetCapacity's byte budget.
  virtual size_t OtherCustomerBytes() { return 0; }
  // Whether the checkpoints that staged customers (FeatureStore::Stage) are
  // committed: until then the store behind the cache has their previous
  // state, so they stay. Default: checkpoints commit before they are staged.
  virtual bool StagedCommitted() { return true; }
};

class FeatureStore {
 public:
  // InvalidArgument (FeatureSpec::Validate's message) for an invalid spec.
  // Not movable (views point at it), hence the pointer.
  static Result<std::unique_ptr<FeatureStore>> Create(FeatureSpec spec);
  ~FeatureStore();
  FeatureStore(const FeatureStore&) = delete;
  FeatureStore& operator=(const FeatureStore&) = delete;

  // Applies the event to its customer (created on first sight) and returns
  // the customer's features (the reference is rebound by the next Update).
  // Throws std::length_error for a new customer beyond spec().max_customers
  // held in memory (a bounded cache evicts first) and std::bad_alloc when
  // memory for a new customer or plan runs out, in both cases with the store
  // unchanged but for a saved customer it may have evicted; PartialUpdateError (common) when
  // the customer's per-day history cannot grow after its counters changed.
  const CustomerFeatures& Update(const ingest::Event& e);

  // nullptr if the customer is unknown. Does not allocate. The pointer is
  // rebound by the next Find; copy the view to keep it.
  const CustomerFeatures* Find(std::string_view customer_id) const;
  // Fetches the customer's table slot, and its record when the slot's tag
  // matches, into the CPU's cache: called an event ahead of its Update.
  // Returns that record's slot (the customer's, unless another id shares the
  // tag), UINT32_MAX when there is none.
  uint32_t Prefetch(std::string_view customer_id) const;
  // The customer in `slot`, which must be below size(). No lookup.
  CustomerFeatures At(uint32_t slot) const { return CustomerFeatures(this, slot); }

  size_t size() const { return size_ - vacant_.size(); }  // customers in memory
  // Heap and inline bytes held by the store (records, window totals, per-day
  // buffers with the allocator's per-chunk header, ids, hash table, plans).
  size_t MemoryUsageBytes() const { return memory().total(); }
  // The same, by part.
  struct Memory {
    size_t slots = 0;        // blocks of fixed-size slots, allocated whole
    size_t day_history = 0;  // per-day buffers, with the allocator's chunk headers
    size_t long_ids = 0;     // ids over 16 bytes
    size_t index = 0;        // the id hash table
    size_t tracking = 0;     // the dirty, pending, unsaved, staged, held and pinned lists
    size_t other = 0;        // the store itself, plans, scratch
    size_t total() const { return slots + day_history + long_ids + index + tracking + other; }
  };
  Memory memory() const;
  // Bytes of a customer's fixed-size slot (its record), excluding its
  // per-day buffer.
  size_t SlotBytes() const { return slot_bytes_; }

  const FeatureSpec& spec() const { return spec_; }
  // Names of the Snapshot() vector, in order (docs/features.md).
  static std::vector<std::string> FeatureNames(const FeatureSpec& spec);
  std::span<const std::string> feature_names() const { return feature_names_; }

  // Checkpoints: a customer's state as a sealed blob (BlobKind::kCustomerFeatures).
  // NotFound if the customer is unknown.
  Status EncodeCustomer(std::string_view customer_id, std::string* out) const;
  // Replaces (or creates) the customer's state from EncodeCustomer's bytes.
  // Corruption on bad bytes, InvalidArgument if it was written with other windows;
  // the store is unchanged on error. Marks the customer dirty.
  Status DecodeCustomer(std::string_view customer_id, std::string_view bytes);
  // The same for a customer brought back from where it was saved: marks
  // nothing (it is saved state and owes no output). Never asks the miss handler.
  Status LoadCustomer(std::string_view customer_id, std::string_view bytes);
  // The same for a customer whose event is to come (a batch's misses read
  // ahead): with a capacity, held in memory until an Update touches it or
  // ReleaseHeld(), so that loading the rest of the batch cannot evict it.
  // Never grows the store past its capacity: false, with nothing loaded,
  // when every customer in memory must stay (the event loads it then).
  Result<bool> LoadHeldCustomer(std::string_view customer_id, std::string_view bytes);
  // Holds the customer in `slot` (below size()) the same way: one in memory
  // whose event is to come. Amortised growth of the list of holds.
  void Hold(uint32_t slot);
  // Every hold ends (those of customers whose event never came: a
  // duplicate, a rejected record).
  void ReleaseHeld();
  // Customers loaded by LoadHeldCustomer whose event then came (the others
  // were read for nothing), since creation.
  uint64_t loads_ahead_used() const { return loads_ahead_used_; }
  // Whether one more customer fits without growing the store past its
  // capacity (a customer to evict is found; the next one evicted is it).
  bool HasRoom();

  // Update() of a customer the store does not hold asks `handler` first
  // (nullptr: nobody). Must outlive the store's use.
  void set_miss_handler(CustomerMissHandler* handler) { miss_handler_ = handler; }

  // Calls f(std::string_view customer_id, const CustomerFeatures&) for every
  // customer updated or decoded since the last ClearDirty(), in first-dirtied
  // order. ClearDirty() also clears the pending set below.
  template <typename F>
  void ForEachDirty(F&& f) const {
    for (uint32_t index : dirty_) {
      const CustomerFeatures view(this, index);
      f(view.customer_id(), view);
    }
  }
  size_t dirty_count() const { return dirty_.size(); }
  void ClearDirty();

  // A second, shorter cycle over the same updates: every customer updated or
  // decoded since the last ClearPending(), in first-updated order. The engine
  // refreshes scores and alerts over it after every consumed batch (so an
  // alert waits for one batch, not one commit interval), while the dirty set
  // above coalesces the customer-scores records of a whole commit interval.
  template <typename F>
  void ForEachPending(F&& f) const {
    for (uint32_t index : pending_) {
      const CustomerFeatures view(this, index);
      f(view.customer_id(), view);
    }
  }
  size_t pending_count() const { return pending_.size(); }
  void ClearPending();

  // A third cycle for checkpoints: every customer updated or decoded since
  // the last ClearUnsaved(), in first-updated order. The state store writes
  // these at each checkpoint; outputs (dirty, pending) are flushed more often.
  template <typename F>
  void ForEachUnsaved(F&& f) const {
    for (uint32_t index : unsaved_) {
      const CustomerFeatures view(this, index);
      f(view.customer_id(), view);
    }
  }
  size_t unsaved_count() const { return unsaved_.size(); }
  // Clears the unsaved marks and the pins (Pin).
  void ClearUnsaved();
  // For a checkpoint staged now and committed later: clears the unsaved
  // marks and the pins as ClearUnsaved does, but those customers (and any
  // other staged with Stage) stay in memory until the hooks say their checkpoint is
  // committed: an evicted one would be loaded back from a store that does
  // not have its staged state yet.
  void StageUnsaved();
  void Stage(uint32_t slot);
  // The staged checkpoints are committed: their customers may go.
  void ReleaseStaged();
  size_t staged_count() const { return staged_.size(); }
  // The customer in `slot` (below size()) has other state changed since the
  // last checkpoint (the models'): it stays, and counts toward
  // UnderPressure() and Full() as an unsaved one does (once, whichever
  // marks it has), until ClearUnsaved() or StageUnsaved(), which stages it
  // with the unsaved. Without a capacity, nothing. Amortised growth of the
  // list of pins.
  void Pin(uint32_t slot);
  // Customers pinned (Pin) since the last checkpoint while not unsaved.
  size_t pinned_count() const { return pinned_.size(); }

  // At most `customers` customers in memory (0: no bound), evicting saved
  // ones through `hooks` (see the top). `hooks` must outlive the store.
  // With a byte budget, the customers' heap bytes too (memory().total()
  // and hooks->OtherCustomerBytes()) as far as evicting can free them: a
  // customer's day history grows with the days it is active on (a slot
  // holds 8 bytes of it), so a cache of active customers would cost several
  // times the same count of quiet ones. Over the budget, saved customers
  // holding such bytes leave (ShedOverBudget), least recently used first,
  // their slots left vacant for the next new customers.
  void SetCapacity(size_t customers, CustomerEvictionHooks* hooks, size_t budget_bytes = 0);
  size_t capacity() const { return capacity_; }
  size_t budget_bytes() const { return budget_bytes_; }
  // Bytes beyond the customers' slots (day histories, long ids): what
  // eviction frees.
  size_t heap_bytes() const { return ring_heap_bytes_ + long_id_bytes_; }
  // Over the byte budget with heap bytes to free.
  bool OverBudget() const;
  // Evicts saved customers with heap bytes, up to `most`, while the store is
  // over its budget; returns how many left. Called for each new customer (a
  // few) and at each checkpoint (the customers it saved).
  size_t ShedOverBudget(size_t most);
  // Slots left vacant by ShedOverBudget, taken by the next new customers.
  size_t vacant_slots() const { return vacant_.size(); }
  uint64_t evictions() const { return evictions_; }
  // New customers that found no slot to take and grew the store past its
  // capacity (every candidate had unsaved changes).
  uint64_t over_capacity() const { return over_capacity_; }
  // Customers evicted for the byte budget (ShedOverBudget), also counted in
  // evictions().
  uint64_t shed() const { return shed_; }
  // Whether the customers changed since the last checkpoint (unsaved or
  // pinned, each counted once: they may not be evicted) fill 3/4 of the
  // capacity (rounded down, at least one): only a checkpoint makes them
  // evictable, so the caller should begin one now, before the store has to
  // grow past its capacity. The rest of the cache is left for the customers
  // touched while that checkpoint is written (they stay until it commits)
  // and for a batch read ahead (LoadHeldCustomer). Never with no capacity.
  // A compare: cheap per event.
  bool UnderPressure() const { return changed_count_ >= pressure_mark_; }
  // Those customers, unsaved or pinned, each counted once: what the next
  // checkpoint saves.
  size_t changed_count() const { return changed_count_; }
  // Whether nothing is left to evict but customers a checkpoint still has
  // to save or commit (unsaved, pinned, or staged in one not yet committed;
  // each counted once): the next new customer would grow the store past
  // its capacity.
  bool Full() const { return capacity_ != 0 && kept_count_ >= capacity_; }

  // Distinct plan names one store keeps (ingest bounds each to 64 bytes).
  static constexpr size_t kMaxPlans = 1024;
  // Whether an event naming `plan` can be applied: the plan is known, or the
  // table has room. The caller dead-letters the event otherwise (Update
  // would keep the plan of the last table entry).
  bool CanTakePlan(std::string_view plan) const;

  // The plan table: id -> name (id 0 is "", no plan).
  std::string_view PlanName(uint16_t plan_id) const;

 private:
  friend class CustomerFeatures;
  explicit FeatureStore(FeatureSpec spec);

  // Times in 6 bytes (common/packed_ms.h); Update clamps times to its range.
  using PackedMs = crmstream::PackedMs;

  // Lifetime counts by event type, 24 bits each: they saturate at
  // kMaxCount (16.7 million events of one type), as the 32-bit counts did
  // at UINT32_MAX; 8 bytes less per customer.
  struct LifetimeCounts {
    static constexpr uint32_t kMaxCount = (1u << 24) - 1;
    uint16_t low[ingest::kEventTypeCount];
    uint8_t high[ingest::kEventTypeCount];
    uint32_t Get(int type) const { return low[type] | uint32_t{high[type]} << 16; }
    void Set(int type, uint32_t count) {
      count = std::min(count, kMaxCount);
      low[type] = static_cast<uint16_t>(count);
      high[type] = static_cast<uint8_t>(count >> 16);
    }
    void Increment(int type) {
      if (const uint32_t c = Get(type); c != kMaxCount) Set(type, c + 1);
    }
  };

  // The fixed-size part of a customer, 100 bytes, 4-byte aligned (packed
  // to 4: its two 8-byte unions would otherwise round it up to 104, and the
  // slot with its cursors to 112). Timestamps are event-time ms; kNoTime
  // marks "never". Lifetime amounts saturate at PackedInt48's range.
#pragma pack(push, 4)
  struct CustomerRecord {
    // Varint per-day records, oldest first: up to kInlineRingBytes in the
    // record itself (ring_capacity 0), beyond that in a malloc'd buffer. A
    // quiet customer's few days then cost no heap chunk (32 bytes at least).
    union {
      uint8_t* heap;
      uint8_t bytes[8];
    } ring;
    // Ids of up to 16 bytes live here; longer ones in a malloc'd buffer.
    union {
      char chars[16];
      char* heap;
    } id;
    PackedMs first_seen_ms;
    PackedMs latest_ms;
    PackedMs last_purchase_ms;
    PackedMs last_login_ms;
    PackedInt48 purchase_cents;  // lifetime, each amount rounded to cents
    PackedInt48 refund_cents;
    LifetimeCounts type_counts;
    int32_t base_day;         // day before the first ring record (its gap is from here)
    uint16_t tail_day_delta;  // day of the last ring record - base_day
    uint16_t ring_size;
    uint16_t ring_capacity;
    uint16_t tail_offset;  // offset of the last ring record
    uint16_t plan_id;
    uint8_t id_length;
    uint8_t flags;  // kClosedFlag and the dirty / pending / unsaved marks
  };
#pragma pack(pop)
  // Where a window's first day starts in the ring as of the clock, with the
  // day of the record before it (relative to base_day), so that a window is
  // summed from there and expiry decodes forward from there. The longest
  // window has none: the ring holds exactly its days, from offset 0.
  struct WindowCursor {
    uint16_t offset;
    uint16_t prev_delta;
  };

  CustomerRecord& Record(uint32_t index) const {
    return *reinterpret_cast<CustomerRecord*>(Slot(index));
  }
  // The cursors of the windows but the longest, in spec order.
  WindowCursor* Cursors(uint32_t index) const {
    return reinterpret_cast<WindowCursor*>(Slot(index) + sizeof(CustomerRecord));
  }
  WindowCursor CursorOf(uint32_t index, size_t w) const {
    if (w == longest_window_index_) return {0, 0};
    return Cursors(index)[w < longest_window_index_ ? w : w - 1];
  }
  static constexpr size_t kInlineRingBytes = sizeof(CustomerRecord{}.ring.bytes);
  static uint8_t* RingData(CustomerRecord* r) {
    return r->ring_capacity != 0 ? r->ring.heap : r->ring.bytes;
  }
  static const uint8_t* RingData(const CustomerRecord& r) {
    return r.ring_capacity != 0 ? r.ring.heap : r.ring.bytes;
  }
  std::byte* Slot(uint32_t index) const {
    return blocks_[index / kBlockSlots].get() + (index % kBlockSlots) * slot_bytes_;
  }
  uint32_t FindIndex(std::string_view id, uint64_t hash) const;
  // UINT32_MAX when the store is full, no customer can be evicted and
  // !may_grow.
  uint32_t FindOrCreate(std::string_view id, bool ask_handler, bool may_grow = true);
  // Room for one more slot (max_customers, table, block);
  // changes nothing a reader sees, throws before anything else does.
  void GrowForNewCustomer();
  // A slot to reuse (its customer evicted), or UINT32_MAX if none was found.
  uint32_t EvictOne(bool heap_holders = false);
  // The slot EvictOne would take, the hand left on it (CLOCK's sweep: clears
  // the reference marks it passes); UINT32_MAX if none within a sweep. With
  // `heap_holders`, only a customer with heap bytes beyond its slot.
  uint32_t NextVictim(bool heap_holders = false);
  static bool HoldsHeap(const CustomerRecord& r) {
    return r.ring_capacity != 0 || r.id_length > sizeof(r.id.chars);
  }
  void EraseFromTable(uint32_t index);
  void ReleaseId(CustomerRecord* r);
  // How Decode installs a customer: marked dirty (DecodeCustomer), as saved
  // state (LoadCustomer), or held (LoadHeldCustomer; false: no room).
  enum class Installed { kMarked, kSaved, kHeld };
  Result<bool> Decode(std::string_view customer_id, std::string_view bytes, Installed how);
  // Update's changes to an existing record (after FindOrCreate / InternPlan).
  void ApplyEvent(uint32_t index, const ingest::Event& e, bool fresh, bool late, uint16_t plan_id);
  void GrowTable();
  // Room for one more entry in each tracking list (amortised growth); may
  // throw bad_alloc, before anything changed.
  void ReserveTracking();
  void MarkDirty(uint32_t index);
  bool IsPinned(uint32_t index) const { return index < pinned_bits_.size() && pinned_bits_[index]; }
  bool IsVacant(uint32_t index) const { return index < vacant_bits_.size() && vacant_bits_[index]; }
  uint16_t InternPlan(std::string_view plan);
  std::string_view IdOf(uint32_t index) const;

  void ApplyInOrderWindowed(uint32_t index, int32_t day, int metric, uint64_t cents);
  void AdvanceDay(uint32_t index, int32_t new_day);
  void ApplyLateWindowed(uint32_t index, int32_t day, int metric, uint64_t cents);
  // Re-encodes the ring from decoded days, keeping those inside the longest
  // window as of the clock, and places the cursors (late events, decode).
  void RebuildRing(uint32_t index, const std::vector<internal::DayAggregate>& days);
  void ReserveRing(CustomerRecord* r, size_t bytes);
  void ReleaseRing(CustomerRecord* r);
  // Back into the record, or a smaller buffer, once the ring has shrunk.
  void ShrinkRing(CustomerRecord* r);
  // Windows [first, first + count) of the spec as of max(at_ms, clock), summed
  // from the per-day history in one pass: exact for every customer.
  void SumWindows(uint32_t index, int64_t at_ms, size_t first, size_t count,
                  WindowAggregates* out) const;

  // Customers live in blocks of kBlockSlots fixed-size slots (a record, then
  // the windows' cursors): no reallocation as the store grows, little slack.
  static constexpr size_t kBlockSlots = 1024;
  struct FreeBlock {
    void operator()(std::byte* p) const;
  };

  FeatureSpec spec_;
  std::vector<std::string> feature_names_;
  int longest_window_ = 0;
  size_t longest_window_index_ = 0;
  size_t window_count_ = 0;
  size_t slot_bytes_ = 0;

  std::vector<std::unique_ptr<std::byte[], FreeBlock>> blocks_;
  uint32_t size_ = 0;                // slots in use or vacant
  size_t long_id_bytes_ = 0;         // heap chunks of ids over 16 bytes
  size_t capacity_ = 0;              // 0: unbounded
  size_t budget_bytes_ = 0;          // 0: unbounded
  std::vector<uint32_t> vacant_;     // slots below size_ with no customer
  std::vector<bool> vacant_bits_;    // by slot
  size_t pressure_mark_ = SIZE_MAX;  // UnderPressure's count of unsaved customers
  CustomerEvictionHooks* hooks_ = nullptr;
  uint32_t clock_hand_ = 0;
  uint64_t evictions_ = 0;
  uint64_t over_capacity_ = 0;
  uint64_t shed_ = 0;
  uint64_t loads_ahead_used_ = 0;
  std::vector<uint32_t> table_;  // open addressing: index + 1, 0 = empty
  size_t ring_heap_bytes_ = 0;   // sum of ring chunks (capacity + malloc header)
  std::vector<uint32_t> dirty_;
  std::vector<uint32_t> pending_;
  std::vector<uint32_t> unsaved_;  // updated since the last checkpoint
  std::vector<uint32_t> staged_;   // in checkpoints not known to be committed
  std::vector<uint32_t> held_;     // loaded ahead of their events (LoadHeldCustomer)
  std::vector<uint32_t> pinned_;   // Pin()ned, not unsaved when pinned
  std::vector<bool> pinned_bits_;  // per slot, a bit each: in pinned_
  // Distinct customers unsaved or pinned (UnderPressure), and those or
  // staged (Full): kept up as their marks change, so the checks are O(1).
  size_t changed_count_ = 0;
  size_t kept_count_ = 0;

  std::vector<std::string> plan_names_;  // [0] = ""
  struct PlanHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const;
  };
  std::unordered_map<std::string, uint16_t, PlanHash, std::equal_to<>> plan_ids_;

  CustomerMissHandler* miss_handler_ = nullptr;
  CustomerFeatures current_{this, 0};
  mutable CustomerFeatures found_{this, 0};
  // Scratch for the rare paths (late events, decode), reused to avoid
  // allocating each time.
  std::unique_ptr<std::vector<internal::DayAggregate>> scratch_days_;
  std::string scratch_ring_;
};

// Writes the customer's features as fields of the currently open JSON object
// (for crm.customer-scores); names and units in docs/features.md.
void WriteFeaturesJson(const CustomerFeatures& features, JsonWriter* w);

}  // namespace crmstream::features
