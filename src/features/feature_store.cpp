#include "crmstream/features/feature_store.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <stdexcept>

#include "crmstream/common/binary_io.h"
#include "crmstream/common/hash.h"
#include "crmstream/common/partial_update_error.h"
#include "features/day_ring.h"

namespace crmstream::features {

using internal::DayAggregate;
using internal::kMaxDayRecordBytes;

namespace {

constexpr int64_t kNoTime = std::numeric_limits<int64_t>::min();
constexpr int64_t kMsPerDay = 86'400'000;
constexpr double kMsPerDayF = 86'400'000.0;
constexpr uint8_t kClosedFlag = 1;
constexpr uint8_t kDirtyFlag = 2;
constexpr uint8_t kPendingFlag = 4;
constexpr uint8_t kUnsavedFlag = 8;
constexpr uint8_t kTrackedFlags = kDirtyFlag | kPendingFlag | kUnsavedFlag;
// Touched since the CLOCK hand last passed (a second chance).
constexpr uint8_t kReferencedFlag = 16;
// In a staged checkpoint not yet committed (FeatureStore::StageUnsaved).
constexpr uint8_t kStagedFlag = 32;
// Loaded ahead of its event (FeatureStore::LoadHeldCustomer): not evicted
// until the event touches it, or ReleaseHeld().
constexpr uint8_t kHeldFlag = 64;
// Loaded by LoadHeldCustomer, its event still to come (counted when it does).
constexpr uint8_t kLoadedAheadFlag = 128;
// How many slots one eviction looks at before growing the store instead,
// when the counts do not promise a victim: bounds the cost of a miss when
// the cache is full of customers that stay.
constexpr uint32_t kMaxEvictionSweep = 1024;
// Saved customers that may leave per new customer while the store is over
// its byte budget: more than one, so that the store shrinks back under it.
constexpr size_t kShedPerNewCustomer = 4;
constexpr uint16_t kFeatureBlobVersion = 1;
// glibc's malloc puts an 8-byte header before each chunk and rounds chunks to
// 16 bytes; ring capacities are chosen as 16k + 8 so a chunk has no slack,
// and memory accounting charges capacity + 8.
constexpr size_t kMallocHeader = 8;
// Amounts above this (currency units) are clamped, so cents fit comfortably.
constexpr double kMaxAmount = 1e15;
// Plan names (id 0 is "", no plan) in one store; FeatureStore::CanTakePlan
// refuses more, so a plan is never mislabelled.
constexpr size_t kPlanTableSize = FeatureStore::kMaxPlans + 1;

// UTC day of an epoch-ms timestamp (floor division, so negative times work),
// clamped to a range that keeps day arithmetic far from int32 overflow.
int32_t DayOf(int64_t ms) {
  int64_t d = ms / kMsPerDay;
  if (ms % kMsPerDay < 0) --d;
  return static_cast<int32_t>(std::clamp<int64_t>(d, -(int64_t{1} << 30), int64_t{1} << 30));
}

// Amounts enter every sum rounded to cents, so window sums are exact integer
// arithmetic and expire without drift. Negative or NaN amounts count as 0
// (ingest rejects them; this only guards the arithmetic).
uint64_t ToCents(const ingest::Event& e) {
  if (!e.has_amount || !(e.amount > 0)) return 0;
  return static_cast<uint64_t>(std::llround(std::min(e.amount, kMaxAmount) * 100.0));
}

// The window metric an event type counts in, or -1.
int WindowMetricOf(ingest::EventType t) {
  switch (t) {
    case ingest::EventType::kPurchase:
      return static_cast<int>(WindowMetric::kPurchases);
    case ingest::EventType::kLogin:
      return static_cast<int>(WindowMetric::kLogins);
    case ingest::EventType::kPageView:
      return static_cast<int>(WindowMetric::kPageViews);
    case ingest::EventType::kSupportTicket:
      return static_cast<int>(WindowMetric::kSupportTickets);
    case ingest::EventType::kComplaint:
      return static_cast<int>(WindowMetric::kComplaints);
    case ingest::EventType::kRefund:
      return static_cast<int>(WindowMetric::kRefunds);
    case ingest::EventType::kPlanChange:
    case ingest::EventType::kAccountClosed:
      return -1;
  }
  return -1;
}

// The cents slot a metric carries (purchases, refunds), or -1.
int CentsSlotOf(int metric) {
  if (metric == static_cast<int>(WindowMetric::kPurchases)) return 0;
  if (metric == static_cast<int>(WindowMetric::kRefunds)) return 1;
  return -1;
}

// Event times beyond what a record holds (PackedMs) count as its limits.
constexpr int64_t kMaxTime = (int64_t{1} << 47) - 1;
int64_t ClampTime(int64_t ms) { return std::clamp(ms, -kMaxTime, kMaxTime); }

double DaysBetween(int64_t from_ms, int64_t to_ms) {
  return static_cast<double>(to_ms - from_ms) / kMsPerDayF;
}

double SignedLog1p(double x) { return x < 0 ? -std::log1p(-x) : std::log1p(x); }

// log1p of a count: most model inputs are small counts, so their log1p is
// read from a table of libm's results (the same bits as a call), computed
// once, instead of called ~30 times per snapshot.
constexpr uint32_t kLog1pTable = 1024;

// Not constexpr, and each count read through a volatile: evaluated at
// compile time, GCC's log1p is correctly rounded, which differs from libm's
// in the last bit for some counts (log1p(2)), and the table must hold what
// libm returns, as a count past the table gets.
std::array<double, kLog1pTable> ComputeLog1pTable() {
  std::array<double, kLog1pTable> t{};
  for (uint32_t k = 0; k < kLog1pTable; ++k) {
    volatile double x = k;
    t[k] = std::log1p(x);
  }
  return t;
}

double Log1pCount(uint32_t n) {
  static const std::array<double, kLog1pTable> table = ComputeLog1pTable();
  return n < kLog1pTable ? table[n] : std::log1p(static_cast<double>(n));
}

size_t ChunkCapacity(size_t needed) {
  // Smallest 16k + 8 >= needed; glibc's smallest chunk holds 24 bytes.
  const size_t cap = std::max<size_t>(24, ((needed + 7) / 16) * 16 + 8);
  return std::min<size_t>(cap, std::numeric_limits<uint16_t>::max());
}

}  // namespace

size_t FeatureStore::PlanHash::operator()(std::string_view s) const {
  return static_cast<size_t>(Hash64(s));
}

// ---------------------------------------------------------------------------
// CustomerFeatures

#define CRM_RECORD (store_->Record(index_))

std::string_view CustomerFeatures::customer_id() const { return store_->IdOf(index_); }
int64_t CustomerFeatures::as_of_ms() const { return CRM_RECORD.latest_ms; }
int64_t CustomerFeatures::first_seen_ms() const { return CRM_RECORD.first_seen_ms; }
std::optional<int64_t> CustomerFeatures::last_purchase_ms() const {
  const int64_t t = CRM_RECORD.last_purchase_ms;
  return t == kNoTime ? std::nullopt : std::optional<int64_t>(t);
}
std::optional<int64_t> CustomerFeatures::last_login_ms() const {
  const int64_t t = CRM_RECORD.last_login_ms;
  return t == kNoTime ? std::nullopt : std::optional<int64_t>(t);
}
double CustomerFeatures::recency_days() const {
  const auto& r = CRM_RECORD;
  return r.last_purchase_ms == kNoTime ? std::nan("")
                                       : DaysBetween(r.last_purchase_ms, r.latest_ms);
}
uint32_t CustomerFeatures::frequency() const {
  return CRM_RECORD.type_counts.Get(static_cast<int>(ingest::EventType::kPurchase));
}
double CustomerFeatures::monetary() const {
  const auto& r = CRM_RECORD;
  return static_cast<double>(r.purchase_cents - r.refund_cents) / 100.0;
}
double CustomerFeatures::purchase_amount_total() const {
  return static_cast<double>(CRM_RECORD.purchase_cents) / 100.0;
}
double CustomerFeatures::refund_amount_total() const {
  return static_cast<double>(CRM_RECORD.refund_cents) / 100.0;
}
double CustomerFeatures::average_order_value() const {
  const uint32_t n = frequency();
  return n == 0 ? std::nan("") : purchase_amount_total() / n;
}
double CustomerFeatures::days_since_last_login() const {
  const auto& r = CRM_RECORD;
  return r.last_login_ms == kNoTime ? std::nan("") : DaysBetween(r.last_login_ms, r.latest_ms);
}
double CustomerFeatures::tenure_days() const {
  const auto& r = CRM_RECORD;
  return DaysBetween(r.first_seen_ms, r.latest_ms);
}

namespace {
// Days of the longest window during which the customer existed, >= 1.
double ExposureDays(int64_t first_seen_ms, int64_t at_ms, int longest) {
  const int64_t days = int64_t{DayOf(at_ms)} - DayOf(first_seen_ms) + 1;
  return static_cast<double>(std::clamp<int64_t>(days, 1, longest));
}
}  // namespace

double CustomerFeatures::ticket_rate_30d() const {
  return ticket_rate_30d(window(store_->longest_window_index_));
}
double CustomerFeatures::complaint_rate_30d() const {
  return complaint_rate_30d(window(store_->longest_window_index_));
}
double CustomerFeatures::ticket_rate_30d(const WindowAggregates& longest) const {
  const auto& r = CRM_RECORD;
  return 30.0 * longest.support_tickets / ExposureDays(r.first_seen_ms, r.latest_ms, longest.days);
}
double CustomerFeatures::complaint_rate_30d(const WindowAggregates& longest) const {
  const auto& r = CRM_RECORD;
  return 30.0 * longest.complaints / ExposureDays(r.first_seen_ms, r.latest_ms, longest.days);
}
std::string_view CustomerFeatures::plan() const { return store_->PlanName(CRM_RECORD.plan_id); }
uint16_t CustomerFeatures::plan_id() const { return CRM_RECORD.plan_id; }
uint32_t CustomerFeatures::plan_changes() const {
  return CRM_RECORD.type_counts.Get(static_cast<int>(ingest::EventType::kPlanChange));
}
bool CustomerFeatures::closed() const { return (CRM_RECORD.flags & kClosedFlag) != 0; }
uint32_t CustomerFeatures::event_count(ingest::EventType type) const {
  return CRM_RECORD.type_counts.Get(static_cast<int>(type));
}
size_t CustomerFeatures::window_count() const { return store_->window_count_; }

WindowAggregates CustomerFeatures::window(size_t i) const {
  WindowAggregates a;
  store_->SumWindows(index_, CRM_RECORD.latest_ms, i, 1, &a);
  return a;
}

void CustomerFeatures::Windows(WindowAggregates* out) const {
  store_->SumWindows(index_, CRM_RECORD.latest_ms, 0, store_->window_count_, out);
}

size_t CustomerFeatures::longest_window_index() const { return store_->longest_window_index_; }

WindowAggregates CustomerFeatures::WindowAt(size_t i, int64_t at_ms) const {
  WindowAggregates a;
  store_->SumWindows(index_, at_ms, i, 1, &a);
  return a;
}

void CustomerFeatures::Snapshot(int64_t now_ms, FeatureVector* out) const {
  const auto& r = CRM_RECORD;
  const size_t w_count = store_->window_count_;
  out->resize(store_->feature_names_.size());
  double* v = out->data();
  const int64_t t = std::max<int64_t>(now_ms, r.latest_ms);
  const int64_t last_purchase_ms = r.last_purchase_ms;
  const int64_t last_login_ms = r.last_login_ms;
  const int64_t first_seen_ms = r.first_seen_ms;
  const bool has_purchase = last_purchase_ms != kNoTime;
  const bool has_login = last_login_ms != kNoTime;
  const uint32_t purchases = frequency();
  *v++ = has_purchase ? std::log1p(DaysBetween(last_purchase_ms, t)) : 0.0;
  *v++ = has_purchase ? 1.0 : 0.0;
  *v++ = Log1pCount(purchases);
  *v++ = SignedLog1p(monetary());
  *v++ = purchases == 0 ? 0.0 : std::log1p(purchase_amount_total() / purchases);
  *v++ = has_login ? std::log1p(DaysBetween(last_login_ms, t)) : 0.0;
  *v++ = has_login ? 1.0 : 0.0;
  *v++ = std::log1p(DaysBetween(first_seen_ms, t));
  // Every window in one pass over the per-day history.
  WindowAggregates windows[FeatureSpec::kMaxWindows];
  store_->SumWindows(index_, t, 0, w_count, windows);
  const WindowAggregates& longest = windows[store_->longest_window_index_];
  const double exposure = ExposureDays(first_seen_ms, t, longest.days);
  *v++ = std::log1p(30.0 * longest.support_tickets / exposure);
  *v++ = std::log1p(30.0 * longest.complaints / exposure);
  *v++ = Log1pCount(plan_changes());
  *v++ = closed() ? 1.0 : 0.0;
  for (ingest::EventType type :
       {ingest::EventType::kLogin, ingest::EventType::kPageView, ingest::EventType::kSupportTicket,
        ingest::EventType::kComplaint, ingest::EventType::kRefund}) {
    *v++ = Log1pCount(event_count(type));
  }
  for (size_t i = 0; i < w_count; ++i) {
    const WindowAggregates& a = windows[i];
    *v++ = Log1pCount(a.purchases);
    *v++ = std::log1p(a.purchase_amount);
    *v++ = Log1pCount(a.logins);
    *v++ = Log1pCount(a.page_views);
    *v++ = Log1pCount(a.support_tickets);
    *v++ = Log1pCount(a.complaints);
    *v++ = Log1pCount(a.refunds);
    *v++ = std::log1p(a.refund_amount);
  }
}

#undef CRM_RECORD

std::vector<std::string> FeatureStore::FeatureNames(const FeatureSpec& spec) {
  std::vector<std::string> names = {"log1p_recency_days",
                                    "has_purchase",
                                    "log1p_frequency",
                                    "slog1p_monetary",
                                    "log1p_avg_order_value",
                                    "log1p_days_since_login",
                                    "has_login",
                                    "log1p_tenure_days",
                                    "log1p_ticket_rate_30d",
                                    "log1p_complaint_rate_30d",
                                    "log1p_plan_changes",
                                    "closed",
                                    "log1p_lifetime_logins",
                                    "log1p_lifetime_page_views",
                                    "log1p_lifetime_support_tickets",
                                    "log1p_lifetime_complaints",
                                    "log1p_lifetime_refunds"};
  for (int days : spec.window_days) {
    const std::string suffix = "_" + std::to_string(days) + "d";
    names.push_back("log1p_purchases" + suffix);
    names.push_back("log1p_purchase_amount" + suffix);
    names.push_back("log1p_logins" + suffix);
    names.push_back("log1p_page_views" + suffix);
    names.push_back("log1p_support_tickets" + suffix);
    names.push_back("log1p_complaints" + suffix);
    names.push_back("log1p_refunds" + suffix);
    names.push_back("log1p_refund_amount" + suffix);
  }
  return names;
}

// ---------------------------------------------------------------------------
// FeatureStore

void FeatureStore::FreeBlock::operator()(std::byte* p) const { std::free(p); }

Result<std::unique_ptr<FeatureStore>> FeatureStore::Create(FeatureSpec spec) {
  CRM_RETURN_NOT_OK(spec.Validate().WithContext("FeatureSpec"));
  return std::unique_ptr<FeatureStore>(new FeatureStore(std::move(spec)));
}

FeatureStore::FeatureStore(FeatureSpec spec)
    : spec_(std::move(spec)), scratch_days_(std::make_unique<std::vector<DayAggregate>>()) {
  feature_names_ = FeatureNames(spec_);
  window_count_ = spec_.window_days.size();
  longest_window_ = spec_.LongestWindowDays();
  longest_window_index_ =
      static_cast<size_t>(std::max_element(spec_.window_days.begin(), spec_.window_days.end()) -
                          spec_.window_days.begin());
  static_assert(sizeof(CustomerRecord) == 100 && alignof(CustomerRecord) == 4);
  static_assert(PackedMs::kMax == kMaxTime && PackedMs::kMin == -kMaxTime);
  slot_bytes_ = sizeof(CustomerRecord) + (window_count_ - 1) * sizeof(WindowCursor);
  slot_bytes_ = (slot_bytes_ + alignof(CustomerRecord) - 1) / alignof(CustomerRecord) *
                alignof(CustomerRecord);
  plan_names_.emplace_back();
  table_.assign(16, 0);
}

FeatureStore::~FeatureStore() {
  for (uint32_t i = 0; i < size_; ++i) {
    ReleaseRing(&Record(i));
    ReleaseId(&Record(i));
  }
}

void FeatureStore::ReleaseId(CustomerRecord* r) {
  if (r->id_length <= sizeof(r->id.chars)) return;
  long_id_bytes_ -= ChunkCapacity(r->id_length) + kMallocHeader;
  std::free(r->id.heap);
  r->id_length = 0;
}

void FeatureStore::SetCapacity(size_t customers, CustomerEvictionHooks* hooks,
                               size_t budget_bytes) {
  capacity_ = customers;
  hooks_ = hooks;
  budget_bytes_ = customers == 0 ? 0 : budget_bytes;
  // 3/4 rounded down, as c - ceil(c/4): no overflow near SIZE_MAX.
  const size_t quarter_up = customers / 4 + (customers % 4 != 0);
  pressure_mark_ = customers == 0 ? SIZE_MAX : std::max<size_t>(1, customers - quarter_up);
}

FeatureStore::Memory FeatureStore::memory() const {
  Memory m;
  m.slots = blocks_.capacity() * sizeof(blocks_[0]) + blocks_.size() * kBlockSlots * slot_bytes_;
  m.day_history = ring_heap_bytes_;
  m.long_ids = long_id_bytes_;
  m.index = table_.capacity() * sizeof(uint32_t);
  m.tracking = (dirty_.capacity() + pending_.capacity() + unsaved_.capacity() + staged_.capacity() +
                held_.capacity() + pinned_.capacity() + vacant_.capacity()) *
                   sizeof(uint32_t) +
               (pinned_bits_.capacity() + vacant_bits_.capacity()) / 8;
  m.other = sizeof(*this);
  for (const auto& p : plan_names_) m.other += sizeof(p) + p.capacity();
  // Node-based map: a node per plan (key, value, next pointer, cached hash) plus buckets.
  m.other += plan_ids_.size() * (sizeof(std::string) + 3 * sizeof(void*)) +
             plan_ids_.bucket_count() * sizeof(void*);
  m.other += scratch_days_->capacity() * sizeof(DayAggregate) + scratch_ring_.capacity();
  return m;
}

std::string_view FeatureStore::IdOf(uint32_t index) const {
  const CustomerRecord& r = Record(index);
  if (r.id_length <= sizeof(r.id.chars)) return std::string_view(r.id.chars, r.id_length);
  return std::string_view(r.id.heap, r.id_length);
}

std::string_view FeatureStore::PlanName(uint16_t plan_id) const {
  return plan_id < plan_names_.size() ? std::string_view(plan_names_[plan_id]) : std::string_view();
}

bool FeatureStore::CanTakePlan(std::string_view plan) const {
  return plan.empty() || plan_names_.size() < kPlanTableSize || plan_ids_.contains(plan);
}

uint16_t FeatureStore::InternPlan(std::string_view plan) {
  if (auto it = plan_ids_.find(plan); it != plan_ids_.end()) return it->second;
  if (plan_names_.size() >= kPlanTableSize) return static_cast<uint16_t>(kPlanTableSize - 1);
  const auto id = static_cast<uint16_t>(plan_names_.size());
  // Strong guarantee: what can throw comes before the tables change.
  std::string name(plan);
  plan_names_.reserve(plan_names_.size() + 1);
  plan_ids_.emplace(name, id);
  plan_names_.push_back(std::move(name));  // no-throw: reserved
  return id;
}

namespace {
// A table entry packs the customer index + 1 (low bits, 0 = empty) with a few
// bits of the id's hash, so a probe rarely touches a customer that is not
// the one sought.
constexpr int kIndexBits = 26;
constexpr uint32_t kIndexMask = (1u << kIndexBits) - 1;
static_assert(FeatureSpec::kMaxCustomers == kIndexMask - 1);
inline uint32_t TagOf(uint64_t hash) { return static_cast<uint32_t>(hash >> 58) << kIndexBits; }

// Capacity for `needed` elements, grown geometrically (a reserve of the exact
// size would reallocate on every new customer).
template <typename Container>
void ReserveGeometric(Container* c, size_t needed, size_t limit = SIZE_MAX) {
  if (c->capacity() < needed) {
    c->reserve(needed <= limit ? std::min(std::max(needed, c->capacity() * 2), limit) : needed);
  }
}
}  // namespace

uint32_t FeatureStore::FindIndex(std::string_view id, uint64_t hash) const {
  const size_t mask = table_.size() - 1;
  const uint32_t tag = TagOf(hash);
  for (size_t slot = hash & mask;; slot = (slot + 1) & mask) {
    const uint32_t entry = table_[slot];
    if (entry == 0) return UINT32_MAX;
    if ((entry & ~kIndexMask) != tag) continue;
    const uint32_t index = (entry & kIndexMask) - 1;
    if (Record(index).id_length == id.size() && IdOf(index) == id) return index;
  }
}

void FeatureStore::GrowTable() {
  std::vector<uint32_t> next(table_.size() * 2, 0);
  const size_t mask = next.size() - 1;
  for (uint32_t i = 0; i < size_; ++i) {
    if (IsVacant(i)) continue;
    const uint64_t hash = Hash64(IdOf(i));
    size_t slot = hash & mask;
    while (next[slot] != 0) slot = (slot + 1) & mask;
    next[slot] = TagOf(hash) | (i + 1);
  }
  table_.swap(next);
}

uint32_t FeatureStore::FindOrCreate(std::string_view id, bool ask_handler, bool may_grow) {
  // Ids longer than a record can describe are cut: ingest caps them at 128 bytes.
  if (id.size() > std::numeric_limits<uint8_t>::max()) id = id.substr(0, 255);
  const uint64_t hash = Hash64(id);
  if (const uint32_t found = FindIndex(id, hash); found != UINT32_MAX) return found;
  if (ask_handler && miss_handler_ != nullptr) {
    // The handler may load the customer (LoadCustomer): look again.
    miss_handler_->OnMiss(id);
    if (const uint32_t found = FindIndex(id, hash); found != UINT32_MAX) return found;
  }
  // A new customer. Everything that can throw comes first, so that a throw
  // leaves the store as it was (only with more capacity, or with a saved
  // customer evicted, which a later touch reloads): the caller may go on
  // without this event.
  char* heap_id = nullptr;
  if (id.size() > sizeof(CustomerRecord{}.id.chars)) {
    heap_id = static_cast<char*>(std::malloc(ChunkCapacity(id.size())));
    if (heap_id == nullptr) throw std::bad_alloc();
  }
  // Over the byte budget, a few saved customers with heap bytes leave
  // first: the store shrinks back under it as new customers come.
  try {
    ShedOverBudget(kShedPerNewCustomer);
  } catch (...) {
    std::free(heap_id);
    throw;
  }
  uint32_t index = UINT32_MAX;
  const bool full = capacity_ != 0 && size() >= capacity_;
  if (!vacant_.empty()) {
    index = vacant_.back();
    vacant_.pop_back();
    vacant_bits_[index] = false;
  } else if (full) {
    index = EvictOne();
  }
  if (index == UINT32_MAX && full && !may_grow) {
    std::free(heap_id);
    return UINT32_MAX;
  }
  if (index == UINT32_MAX) {
    if (full) ++over_capacity_;
    try {
      GrowForNewCustomer();
    } catch (...) {
      std::free(heap_id);
      throw;
    }
    // From here on nothing allocates.
    index = size_;
    ++size_;
  }
  std::byte* slot = Slot(index);
  auto* r = new (slot) CustomerRecord{};
  for (size_t w = 0; w + 1 < window_count_; ++w) {
    new (slot + sizeof(CustomerRecord) + w * sizeof(WindowCursor)) WindowCursor{};
  }
  r->first_seen_ms = r->latest_ms = r->last_purchase_ms = r->last_login_ms = kNoTime;
  r->id_length = static_cast<uint8_t>(id.size());
  if (id.size() <= sizeof(r->id.chars)) {
    std::memcpy(r->id.chars, id.data(), id.size());
  } else {
    r->id.heap = heap_id;
    std::memcpy(r->id.heap, id.data(), id.size());
    long_id_bytes_ += ChunkCapacity(id.size()) + kMallocHeader;
  }
  const size_t mask = table_.size() - 1;
  size_t pos = hash & mask;
  while (table_[pos] != 0) pos = (pos + 1) & mask;
  table_[pos] = TagOf(hash) | (index + 1);
  return index;
}

void FeatureStore::GrowForNewCustomer() {
  if (size_ >= spec_.max_customers) {
    throw std::length_error("features: more than features.max_customers (" +
                            std::to_string(spec_.max_customers) +
                            ") customers in one feature store");
  }
  // Load factor <= 0.75: linear probing stays short and the table costs
  // 5.3-10.7 bytes per customer.
  if ((size_t{size_} + 1) * 4 > table_.size() * 3) GrowTable();
  if (size_ % kBlockSlots == 0) {
    ReserveGeometric(&blocks_, blocks_.size() + 1);
    // 64-byte aligned: a 108-byte slot spans at most three cache lines.
    auto* block = static_cast<std::byte*>(std::aligned_alloc(64, kBlockSlots * slot_bytes_));
    if (block == nullptr) throw std::bad_alloc();
    blocks_.emplace_back(block);  // no-throw: reserved above
  }
}

uint32_t FeatureStore::NextVictim(bool heap_holders) {
  // The first saved customer whose second chance this sweep took: where a
  // sweep finds nothing else, the hand would come back to it first, so it
  // is the victim rather than the store growing past its capacity.
  uint32_t second_chance_taken = UINT32_MAX;
  // The counts say whether a sweep can find anyone. Every customer kept
  // (unsaved, pinned or staged) leaves none, unless the staged checkpoint
  // committed since: then no slot is looked at. With customers neither
  // kept nor held, the sweep goes on past the bound, once round at most,
  // rather than grow the store while they sit beyond it.
  if (kept_count_ >= size()) {
    if (staged_.empty() || (hooks_ != nullptr && !hooks_->StagedCommitted())) return UINT32_MAX;
    ReleaseStaged();
  }
  // The counts promise nothing about customers with heap bytes.
  const uint32_t sweep = kept_count_ + held_.size() < size() && !heap_holders
                             ? std::max(size_, kMaxEvictionSweep)
                             : kMaxEvictionSweep;
  for (uint32_t step = 0; step < sweep; ++step) {
    const uint32_t i = clock_hand_;
    if (IsVacant(i)) {
      clock_hand_ = clock_hand_ + 1 >= size_ ? 0 : clock_hand_ + 1;
      continue;
    }
    CustomerRecord& r = Record(i);
    // Unsaved, outputs owed, held, pinned.
    bool stays = (r.flags & (kTrackedFlags | kHeldFlag)) != 0 || IsPinned(i) ||
                 (heap_holders && !HoldsHeap(r));
    if (!stays && (r.flags & kStagedFlag)) {
      stays = hooks_ != nullptr && !hooks_->StagedCommitted();
      if (!stays) ReleaseStaged();
    }
    const bool referenced = !stays && (r.flags & kReferencedFlag) != 0;
    if (referenced) r.flags &= static_cast<uint8_t>(~kReferencedFlag);
    if (!stays && hooks_ != nullptr) stays = hooks_->Pinned(i);
    if (!stays && !referenced) return i;  // the hand stays on it
    if (!stays && second_chance_taken == UINT32_MAX) second_chance_taken = i;
    clock_hand_ = clock_hand_ + 1 >= size_ ? 0 : clock_hand_ + 1;
  }
  if (second_chance_taken != UINT32_MAX) clock_hand_ = second_chance_taken;
  return second_chance_taken;
}

uint32_t FeatureStore::EvictOne(bool heap_holders) {
  const uint32_t i = NextVictim(heap_holders);
  if (i == UINT32_MAX) return i;
  clock_hand_ = clock_hand_ + 1 >= size_ ? 0 : clock_hand_ + 1;
  CustomerRecord& r = Record(i);
  if (hooks_ != nullptr) hooks_->Evicted(i);
  EraseFromTable(i);
  ReleaseRing(&r);
  ReleaseId(&r);
  ++evictions_;
  return i;
}

bool FeatureStore::HasRoom() {
  return capacity_ == 0 || !vacant_.empty() || size() < capacity_ || NextVictim() != UINT32_MAX;
}

bool FeatureStore::OverBudget() const {
  if (budget_bytes_ == 0 || heap_bytes() == 0) return false;
  const size_t other = hooks_ != nullptr ? hooks_->OtherCustomerBytes() : 0;
  return memory().total() + other > budget_bytes_;
}

size_t FeatureStore::ShedOverBudget(size_t most) {
  size_t shed = 0;
  while (shed < most && OverBudget()) {
    // Room first (amortised), so that an evicted customer's slot is always
    // listed as vacant.
    ReserveGeometric(&vacant_, vacant_.size() + 1);
    vacant_bits_.resize(size_);
    const uint32_t i = EvictOne(/*heap_holders=*/true);
    if (i == UINT32_MAX) break;    // every customer left has unsaved state
    Record(i) = CustomerRecord{};  // its ring and id were released
    vacant_.push_back(i);
    vacant_bits_[i] = true;
    ++shed;
  }
  shed_ += shed;
  return shed;
}

void FeatureStore::EraseFromTable(uint32_t index) {
  const size_t mask = table_.size() - 1;
  size_t hole = Hash64(IdOf(index)) & mask;
  while ((table_[hole] & kIndexMask) != index + 1) hole = (hole + 1) & mask;
  // Backward-shift deletion: later entries of the probe run move into the
  // hole unless their home position lies cyclically in (hole, j].
  for (size_t j = (hole + 1) & mask; table_[j] != 0; j = (j + 1) & mask) {
    const size_t home = Hash64(IdOf((table_[j] & kIndexMask) - 1)) & mask;
    const bool stays = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
    if (!stays) {
      table_[hole] = table_[j];
      hole = j;
    }
  }
  table_[hole] = 0;
}

void FeatureStore::ReserveTracking() {
  // The lists grow with the customers changed between two clears (a few
  // thousand between checkpoints), not with the customers in memory: room
  // for 24,000 in each of three lists cost 12 bytes per cached customer.
  for (std::vector<uint32_t>* list : {&dirty_, &pending_, &unsaved_}) {
    if (list->size() == list->capacity()) ReserveGeometric(list, list->size() + 1);
  }
}

void FeatureStore::MarkDirty(uint32_t index) {
  CustomerRecord& r = Record(index);
  if ((r.flags & kTrackedFlags) == kTrackedFlags) return;
  if (!(r.flags & kDirtyFlag)) dirty_.push_back(index);
  if (!(r.flags & kPendingFlag)) pending_.push_back(index);
  if (!(r.flags & kUnsavedFlag)) {
    unsaved_.push_back(index);
    if (!IsPinned(index)) {
      ++changed_count_;
      if (!(r.flags & kStagedFlag)) ++kept_count_;
    }
  }
  r.flags |= kTrackedFlags;
}

void FeatureStore::ClearDirty() {
  for (uint32_t index : dirty_) Record(index).flags &= static_cast<uint8_t>(~kDirtyFlag);
  dirty_.clear();
  ClearPending();  // every pending customer is dirty too: a flush covers both
}

void FeatureStore::ClearPending() {
  for (uint32_t index : pending_) Record(index).flags &= static_cast<uint8_t>(~kPendingFlag);
  pending_.clear();
}

void FeatureStore::ClearUnsaved() {
  // The unsaved first, while the pinned still have their mark: a customer
  // with both is counted once, and leaves the counts with its pin.
  for (uint32_t index : unsaved_) {
    CustomerRecord& r = Record(index);
    r.flags &= static_cast<uint8_t>(~kUnsavedFlag);
    if (!IsPinned(index)) {
      --changed_count_;
      if (!(r.flags & kStagedFlag)) --kept_count_;
    }
  }
  unsaved_.clear();
  for (uint32_t index : pinned_) {
    pinned_bits_[index] = false;
    --changed_count_;
    if (!(Record(index).flags & kStagedFlag)) --kept_count_;
  }
  pinned_.clear();
}

void FeatureStore::StageUnsaved() {
  for (uint32_t index : unsaved_) Stage(index);
  for (uint32_t index : pinned_) Stage(index);
  ClearUnsaved();
}

void FeatureStore::Stage(uint32_t slot) {
  CustomerRecord& r = Record(slot);
  // Without a capacity nothing is evicted, so nothing needs holding.
  if (capacity_ == 0 || (r.flags & kStagedFlag)) return;
  // Not on the event path: a checkpoint's, once per customer it holds.
  staged_.push_back(slot);
  r.flags |= kStagedFlag;
  if (!(r.flags & kUnsavedFlag) && !IsPinned(slot)) ++kept_count_;
}

void FeatureStore::ReleaseStaged() {
  for (uint32_t index : staged_) {
    CustomerRecord& r = Record(index);
    r.flags &= static_cast<uint8_t>(~kStagedFlag);
    if (!(r.flags & kUnsavedFlag) && !IsPinned(index)) --kept_count_;
  }
  staged_.clear();
}

void FeatureStore::Pin(uint32_t slot) {
  const uint8_t flags = Record(slot).flags;
  // An unsaved customer's mark goes with the pin's (ClearUnsaved, StageUnsaved):
  // it needs none. Without a capacity nothing is evicted.
  if (capacity_ == 0 || (flags & kUnsavedFlag) || IsPinned(slot)) return;
  // Amortised, like the unsaved list: growth with the customers pinned
  // between two checkpoints, and the bits with the slots.
  if (pinned_.size() == pinned_.capacity()) ReserveGeometric(&pinned_, pinned_.size() + 1);
  if (slot >= pinned_bits_.size()) pinned_bits_.resize(std::max<size_t>(slot + 1, size_));
  pinned_.push_back(slot);
  pinned_bits_[slot] = true;
  ++changed_count_;
  if (!(flags & kStagedFlag)) ++kept_count_;
}

void FeatureStore::Hold(uint32_t slot) {
  CustomerRecord& r = Record(slot);
  if (capacity_ == 0 || (r.flags & kHeldFlag)) return;
  if (held_.size() == held_.capacity()) ReserveGeometric(&held_, held_.size() + 1);
  held_.push_back(slot);
  r.flags |= kHeldFlag;
}

void FeatureStore::ReleaseHeld() {
  // A held slot cannot be evicted, so each entry still names its customer
  // (or one its event touched: clearing an absent mark changes nothing).
  for (uint32_t index : held_) {
    Record(index).flags &= static_cast<uint8_t>(~(kHeldFlag | kLoadedAheadFlag));
  }
  held_.clear();
}

uint32_t FeatureStore::Prefetch(std::string_view customer_id) const {
  const uint64_t hash = Hash64(customer_id);
  const uint32_t entry = table_[hash & (table_.size() - 1)];
  if (entry == 0 || (entry & ~kIndexMask) != TagOf(hash)) return UINT32_MAX;
  const uint32_t index = (entry & kIndexMask) - 1;
  const auto* record = reinterpret_cast<const char*>(&Record(index));
  // A slot spans up to three cache lines.
  __builtin_prefetch(record);
  __builtin_prefetch(record + 64);
  __builtin_prefetch(record + slot_bytes_ - 1);
  return index;
}

const CustomerFeatures* FeatureStore::Find(std::string_view customer_id) const {
  if (customer_id.size() > std::numeric_limits<uint8_t>::max()) {
    customer_id = customer_id.substr(0, 255);
  }
  const uint32_t index = FindIndex(customer_id, Hash64(customer_id));
  if (index == UINT32_MAX) return nullptr;
  found_.index_ = index;
  return &found_;
}

void FeatureStore::ReserveRing(CustomerRecord* r, size_t bytes) {
  if (bytes <= (r->ring_capacity != 0 ? r->ring_capacity : kInlineRingBytes)) return;
  // Grow by a quarter: a steadily active customer reallocates O(log n) times
  // while its history fills, with little slack once it is full.
  const size_t cap = ChunkCapacity(std::max<size_t>(bytes, r->ring_capacity * 5 / 4));
  if (r->ring_capacity == 0) {
    auto* p = static_cast<uint8_t*>(std::malloc(cap));
    if (p == nullptr) throw std::bad_alloc();
    std::memcpy(p, r->ring.bytes, r->ring_size);
    r->ring.heap = p;
  } else {
    auto* p = static_cast<uint8_t*>(std::realloc(r->ring.heap, cap));
    if (p == nullptr) throw std::bad_alloc();
    ring_heap_bytes_ -= r->ring_capacity + kMallocHeader;
    r->ring.heap = p;
  }
  ring_heap_bytes_ += cap + kMallocHeader;
  r->ring_capacity = static_cast<uint16_t>(cap);
}

void FeatureStore::ReleaseRing(CustomerRecord* r) {
  if (r->ring_capacity != 0) {
    ring_heap_bytes_ -= r->ring_capacity + kMallocHeader;
    std::free(r->ring.heap);
  }
  r->ring.heap = nullptr;
  r->ring_capacity = 0;
  r->ring_size = 0;
}

void FeatureStore::ShrinkRing(CustomerRecord* r) {
  if (r->ring_capacity == 0) return;
  if (r->ring_size == 0) {
    ReleaseRing(r);
  } else if (r->ring_size <= kInlineRingBytes) {
    uint8_t* heap = r->ring.heap;
    std::memcpy(r->ring.bytes, heap, r->ring_size);
    ring_heap_bytes_ -= r->ring_capacity + kMallocHeader;
    std::free(heap);
    r->ring_capacity = 0;
  } else if (r->ring_capacity > 64 && r->ring_size < r->ring_capacity / 4) {
    const size_t cap = ChunkCapacity(static_cast<size_t>(r->ring_size) * 2);
    if (auto* p = static_cast<uint8_t*>(std::realloc(r->ring.heap, cap)); p != nullptr) {
      ring_heap_bytes_ -= r->ring_capacity + kMallocHeader;
      ring_heap_bytes_ += cap + kMallocHeader;
      r->ring.heap = p;
      r->ring_capacity = static_cast<uint16_t>(cap);
    }
  }
}

const CustomerFeatures& FeatureStore::Update(const ingest::Event& e) {
  // What may throw without having changed anything: a new plan name, then a
  // new customer (over max_customers, or memory for it). A plan named by an
  // event that then fails stays in the (bounded) plan table, unused. Room in
  // the tracking lists first: MarkDirty then never allocates mid-update.
  ReserveTracking();
  const uint16_t named_plan = e.plan.empty() ? 0 : InternPlan(e.plan);
  const uint32_t index = FindOrCreate(e.customer_id, /*ask_handler=*/true);
  CustomerRecord* r = &Record(index);
  // Its event came: a customer loaded ahead of it is held no longer.
  if (r->flags & kLoadedAheadFlag) ++loads_ahead_used_;
  r->flags = static_cast<uint8_t>((r->flags | kReferencedFlag) & ~(kHeldFlag | kLoadedAheadFlag));
  const int64_t ts = ClampTime(e.timestamp_ms);
  const bool fresh = r->latest_ms == kNoTime;
  const bool late = !fresh && ts < r->latest_ms;
  // A late event never changes the current plan: the plan is the one most
  // recently named by an event that was not older than the clock.
  const uint16_t plan_id = !late && !e.plan.empty() ? named_plan : r->plan_id;
  try {
    ApplyEvent(index, e, fresh, late, plan_id);
  } catch (const std::exception& error) {
    // Only the per-day history can still grow (bad_alloc), after the
    // customer's counters changed.
    throw PartialUpdateError(std::string("features: a customer's update failed half-way: ") +
                             error.what());
  }
  MarkDirty(index);
  current_.index_ = index;
  return current_;
}

void FeatureStore::ApplyEvent(uint32_t index, const ingest::Event& e, bool fresh, bool late,
                              uint16_t plan_id) {
  CustomerRecord* r = &Record(index);
  const int64_t ts = ClampTime(e.timestamp_ms);
  const int type = static_cast<int>(e.type);
  r->type_counts.Increment(type);
  if (fresh || ts < r->first_seen_ms) r->first_seen_ms = ts;

  const uint64_t cents = ToCents(e);
  switch (e.type) {
    case ingest::EventType::kPurchase:
      r->purchase_cents += static_cast<int64_t>(cents);
      r->last_purchase_ms = std::max<int64_t>(r->last_purchase_ms, ts);
      break;
    case ingest::EventType::kRefund:
      r->refund_cents += static_cast<int64_t>(cents);
      break;
    case ingest::EventType::kLogin:
      r->last_login_ms = std::max<int64_t>(r->last_login_ms, ts);
      break;
    case ingest::EventType::kAccountClosed:
      r->flags |= kClosedFlag;
      break;
    default:
      break;
  }
  r->plan_id = plan_id;

  const int32_t day = DayOf(ts);
  if (!late) {
    if (fresh || day > DayOf(r->latest_ms)) AdvanceDay(index, day);
    r->latest_ms = ts;
  }
  const int metric = WindowMetricOf(e.type);
  if (metric >= 0) {
    const int32_t clock_day = DayOf(r->latest_ms);
    if (day == clock_day) {
      ApplyInOrderWindowed(index, day, metric, cents);
    } else if (day > clock_day - longest_window_) {
      ApplyLateWindowed(index, day, metric, cents);
    }
  }
}

void FeatureStore::AdvanceDay(uint32_t index, int32_t new_day) {
  CustomerRecord* r = &Record(index);
  WindowCursor* cursors = Cursors(index);
  const size_t cursor_count = window_count_ - 1;
  if (r->ring_size == 0) {
    for (size_t c = 0; c < cursor_count; ++c) cursors[c] = WindowCursor{};
    return;
  }
  uint8_t* ring = RingData(r);
  const uint8_t* end = ring + r->ring_size;
  // Moves past the records on or before `cutoff` from (offset, prev).
  const auto skip = [&](size_t* offset, int32_t* prev, int32_t cutoff) {
    DayAggregate d;
    uint32_t gap = 0;
    while (*offset < r->ring_size) {
      // The ring is only written by this class; a bad record is a bug.
      const uint32_t next_gap = internal::PeekDayGap(ring + *offset, end);
      if (next_gap == 0) throw std::logic_error("features: corrupt day ring");
      if (*prev + static_cast<int32_t>(next_gap) > cutoff) break;
      const size_t len = internal::DecodeDayRecord(ring + *offset, end, &gap, &d);
      if (len == 0) throw std::logic_error("features: corrupt day ring");
      *prev += static_cast<int32_t>(gap);
      *offset += len;
    }
  };
  for (size_t w = 0, c = 0; w < window_count_; ++w) {
    if (w == longest_window_index_) continue;
    size_t offset = cursors[c].offset;
    int32_t prev = r->base_day + cursors[c].prev_delta;
    skip(&offset, &prev, new_day - spec_.window_days[w]);
    cursors[c].offset = static_cast<uint16_t>(offset);
    cursors[c].prev_delta = static_cast<uint16_t>(prev - r->base_day);
    ++c;
  }
  // Records on or before the longest window's cutoff are outside every
  // window: drop them.
  size_t drop = 0;
  int32_t prev = r->base_day;
  skip(&drop, &prev, new_day - longest_window_);
  if (drop == 0) return;
  const auto shift = static_cast<uint16_t>(prev - r->base_day);
  std::memmove(ring, ring + drop, r->ring_size - drop);
  r->ring_size = static_cast<uint16_t>(r->ring_size - drop);
  r->tail_offset = r->ring_size == 0 ? 0 : static_cast<uint16_t>(r->tail_offset - drop);
  for (size_t c = 0; c < cursor_count; ++c) {
    cursors[c].offset = static_cast<uint16_t>(cursors[c].offset - drop);
    cursors[c].prev_delta = static_cast<uint16_t>(cursors[c].prev_delta - shift);
  }
  r->base_day += shift;
  r->tail_day_delta = static_cast<uint16_t>(r->tail_day_delta - shift);
  // Give memory back once a customer's activity has dropped off.
  ShrinkRing(r);
}

void FeatureStore::ApplyInOrderWindowed(uint32_t index, int32_t day, int metric, uint64_t cents) {
  CustomerRecord* r = &Record(index);
  const int slot = CentsSlotOf(metric);
  DayAggregate d;
  uint32_t gap = 0;
  size_t at = 0;
  if (r->ring_size != 0 && r->base_day + r->tail_day_delta == day) {
    at = r->tail_offset;
    const uint8_t* ring = RingData(r);
    if (internal::DecodeDayRecord(ring + at, ring + r->ring_size, &gap, &d) == 0) {
      throw std::logic_error("features: corrupt day ring");
    }
  } else {
    if (r->ring_size == 0) {
      // An empty ring starts over from the day before this one.
      r->base_day = day - 1;
      r->tail_day_delta = 0;
    }
    gap = static_cast<uint32_t>(day - (r->base_day + r->tail_day_delta));
    at = r->ring_size;
    r->tail_offset = static_cast<uint16_t>(at);
    r->tail_day_delta = static_cast<uint16_t>(day - r->base_day);
  }
  ++d.counts[metric];
  if (slot >= 0) d.cents[slot] += cents;
  uint8_t encoded[kMaxDayRecordBytes];
  const size_t len = internal::EncodeDayRecord(d, gap, encoded);
  ReserveRing(r, at + len);
  std::memcpy(RingData(r) + at, encoded, len);
  r->ring_size = static_cast<uint16_t>(at + len);
}

namespace {
// Decodes a whole ring into `days`; false if the bytes are not a valid ring.
bool DecodeRing(const uint8_t* p, size_t size, int32_t base_day, std::vector<DayAggregate>* days) {
  days->clear();
  const uint8_t* end = p + size;
  int64_t prev = base_day;
  while (p < end) {
    DayAggregate d;
    uint32_t gap = 0;
    const size_t len = internal::DecodeDayRecord(p, end, &gap, &d);
    if (len == 0 || gap == 0) return false;
    prev += gap;
    if (prev > std::numeric_limits<int32_t>::max()) return false;
    d.day = static_cast<int32_t>(prev);
    days->push_back(d);
    p += len;
  }
  return true;
}
}  // namespace

void FeatureStore::ApplyLateWindowed(uint32_t index, int32_t day, int metric, uint64_t cents) {
  // Rare: decode the customer's days, add the event to its day, re-encode.
  std::vector<DayAggregate>& days = *scratch_days_;
  const CustomerRecord& r = Record(index);
  if (!DecodeRing(RingData(r), r.ring_size, r.base_day, &days)) {
    throw std::logic_error("features: corrupt day ring");
  }
  auto it = std::lower_bound(days.begin(), days.end(), day,
                             [](const DayAggregate& d, int32_t x) { return d.day < x; });
  if (it == days.end() || it->day != day) {
    DayAggregate fresh;
    fresh.day = day;
    it = days.insert(it, fresh);
  }
  ++it->counts[metric];
  if (const int slot = CentsSlotOf(metric); slot >= 0) it->cents[slot] += cents;
  RebuildRing(index, days);
}

void FeatureStore::RebuildRing(uint32_t index, const std::vector<DayAggregate>& days) {
  CustomerRecord* r = &Record(index);
  const int32_t clock_day = DayOf(r->latest_ms);
  // Days outside the longest window are not kept.
  auto first = std::find_if(days.begin(), days.end(), [&](const DayAggregate& d) {
    return d.day > clock_day - longest_window_;
  });
  WindowCursor* cursors = Cursors(index);
  if (first == days.end()) {
    ReleaseRing(r);
    r->tail_day_delta = 0;
    r->tail_offset = 0;
    for (size_t c = 0; c + 1 < window_count_; ++c) cursors[c] = WindowCursor{};
    return;
  }
  scratch_ring_.resize(static_cast<size_t>(days.end() - first) * kMaxDayRecordBytes);
  auto* out = reinterpret_cast<uint8_t*>(scratch_ring_.data());
  const int32_t base = first->day - 1;
  int32_t prev = base;
  size_t size = 0;
  size_t tail_offset = 0;
  bool placed[FeatureSpec::kMaxWindows] = {};
  for (auto it = first; it != days.end(); ++it) {
    for (size_t w = 0, c = 0; w < window_count_; ++w) {
      if (w == longest_window_index_) continue;
      if (!placed[c] && it->day > clock_day - spec_.window_days[w]) {
        cursors[c] = {static_cast<uint16_t>(size), static_cast<uint16_t>(prev - base)};
        placed[c] = true;
      }
      ++c;
    }
    tail_offset = size;
    size += internal::EncodeDayRecord(*it, static_cast<uint32_t>(it->day - prev), out + size);
    prev = it->day;
  }
  // A window with no day inside it points past the end, after the last day.
  for (size_t c = 0; c + 1 < window_count_; ++c) {
    if (!placed[c]) cursors[c] = {static_cast<uint16_t>(size), static_cast<uint16_t>(prev - base)};
  }
  r->ring_size = 0;
  ReserveRing(r, size);
  std::memcpy(RingData(r), out, size);
  r->ring_size = static_cast<uint16_t>(size);
  r->base_day = base;
  r->tail_day_delta = static_cast<uint16_t>(prev - base);
  r->tail_offset = static_cast<uint16_t>(tail_offset);
  ShrinkRing(r);
}

void FeatureStore::SumWindows(uint32_t index, int64_t at_ms, size_t first, size_t count,
                              WindowAggregates* out) const {
  const CustomerRecord& r = Record(index);
  const int32_t day = std::max(DayOf(at_ms), DayOf(r.latest_ms));
  // Windows are nested: with their cutoffs sorted (days <= a cutoff are
  // outside its window), a day falls in the windows whose cutoff is below
  // it. Each record is added once, to the bucket of cutoffs below its day;
  // a window is the sum of the buckets past its own cutoff.
  int32_t sorted[FeatureSpec::kMaxWindows];
  size_t rank[FeatureSpec::kMaxWindows];
  // Days before a window's cursor are outside it, as of the clock and later.
  WindowCursor start{UINT16_MAX, 0};
  for (size_t i = 0; i < count; ++i) {
    const int32_t cutoff = day - spec_.window_days[first + i];
    size_t k = i;
    for (; k > 0 && sorted[k - 1] > cutoff; --k) sorted[k] = sorted[k - 1];
    sorted[k] = cutoff;
    const WindowCursor c = CursorOf(index, first + i);
    if (c.offset < start.offset) start = c;
  }
  for (size_t i = 0; i < count; ++i) {
    const int32_t cutoff = day - spec_.window_days[first + i];
    rank[i] = static_cast<size_t>(std::find(sorted, sorted + count, cutoff) - sorted);
  }
  // Sums in 64 bits: a window's totals are exact whatever the lifetime.
  struct Sums {
    uint64_t counts[kWindowMetricCount] = {};
    uint64_t cents[2] = {};
  };
  Sums buckets[FeatureSpec::kMaxWindows + 1];
  const uint8_t* p = RingData(r) + start.offset;
  const uint8_t* end = RingData(r) + r.ring_size;
  int64_t prev = r.base_day + start.prev_delta;
  size_t bucket = 0;
  // The ring is only written by this class; a bad record is a bug.
  const auto next = [&](uint64_t* v) {
    p = internal::varint::Get(p, end, v);
    if (p == nullptr) throw std::logic_error("features: corrupt day ring");
  };
  while (p < end) {
    const uint8_t header = *p++;
    const auto mask = static_cast<unsigned>(header & 0x3F);
    if (mask == 0) throw std::logic_error("features: corrupt day ring");
    uint64_t v = header >> 6;
    if (v == 0) next(&v);
    prev += static_cast<int64_t>(v);
    while (bucket < count && prev > sorted[bucket]) ++bucket;
    Sums& sums = buckets[bucket];
    for (unsigned bits = mask; bits != 0; bits &= bits - 1) {
      next(&v);
      sums.counts[std::countr_zero(bits)] += v;
    }
    if (mask & (1u << static_cast<int>(WindowMetric::kPurchases))) {
      next(&v);
      sums.cents[0] += v;
    }
    if (mask & (1u << static_cast<int>(WindowMetric::kRefunds))) {
      next(&v);
      sums.cents[1] += v;
    }
  }
  const auto clamp32 = [](uint64_t x) {
    return static_cast<uint32_t>(std::min<uint64_t>(x, UINT32_MAX));
  };
  for (size_t i = 0; i < count; ++i) {
    Sums s;
    for (size_t k = rank[i] + 1; k <= count; ++k) {
      for (int m = 0; m < kWindowMetricCount; ++m) s.counts[m] += buckets[k].counts[m];
      s.cents[0] += buckets[k].cents[0];
      s.cents[1] += buckets[k].cents[1];
    }
    WindowAggregates& a = out[i];
    a.days = spec_.window_days[first + i];
    a.purchases = clamp32(s.counts[0]);
    a.logins = clamp32(s.counts[1]);
    a.page_views = clamp32(s.counts[2]);
    a.support_tickets = clamp32(s.counts[3]);
    a.complaints = clamp32(s.counts[4]);
    a.refunds = clamp32(s.counts[5]);
    a.purchase_amount = static_cast<double>(s.cents[0]) / 100.0;
    a.refund_amount = static_cast<double>(s.cents[1]) / 100.0;
  }
}

// ---------------------------------------------------------------------------
// Checkpoint encoding. Payload (version 1):
//   u32 window count, i32 window days...
//   i64 first_seen, latest, last_purchase, last_login, purchase_cents, refund_cents
//   u32 type_counts[8], u8 flags (closed), bytes plan name
//   i32 base_day, bytes day ring
// Window totals are summed from the ring when read.

Status FeatureStore::EncodeCustomer(std::string_view customer_id, std::string* out) const {
  const uint32_t index = customer_id.size() > std::numeric_limits<uint8_t>::max()
                             ? UINT32_MAX
                             : FindIndex(customer_id, Hash64(customer_id));
  if (index == UINT32_MAX) return Status::NotFound("customer '" + std::string(customer_id) + "'");
  const CustomerRecord& r = Record(index);
  std::string payload;
  BinaryWriter w(&payload);
  w.PutArray<int>(spec_.window_days);
  for (int64_t v : {int64_t{r.first_seen_ms}, int64_t{r.latest_ms}, int64_t{r.last_purchase_ms},
                    int64_t{r.last_login_ms}, int64_t{r.purchase_cents}, int64_t{r.refund_cents}}) {
    w.Put<int64_t>(v);
  }
  for (int t = 0; t < ingest::kEventTypeCount; ++t) w.Put<uint32_t>(r.type_counts.Get(t));
  w.Put<uint8_t>(static_cast<uint8_t>(r.flags & kClosedFlag));
  w.PutBytes(PlanName(r.plan_id));
  w.Put<int32_t>(r.base_day);
  w.PutBytes(std::string_view(reinterpret_cast<const char*>(RingData(r)), r.ring_size));
  *out = SealBlob(BlobKind::kCustomerFeatures, kFeatureBlobVersion, payload);
  return Status::OK();
}

Status FeatureStore::DecodeCustomer(std::string_view customer_id, std::string_view bytes) {
  return Decode(customer_id, bytes, Installed::kMarked).status();
}

Status FeatureStore::LoadCustomer(std::string_view customer_id, std::string_view bytes) {
  return Decode(customer_id, bytes, Installed::kSaved).status();
}

Result<bool> FeatureStore::LoadHeldCustomer(std::string_view customer_id, std::string_view bytes) {
  return Decode(customer_id, bytes, capacity_ != 0 ? Installed::kHeld : Installed::kSaved);
}

Result<bool> FeatureStore::Decode(std::string_view customer_id, std::string_view bytes,
                                  Installed how) {
  const bool mark = how == Installed::kMarked;
  CRM_ASSIGN_OR_RETURN(const std::string_view blob_payload,
                       OpenBlobPayload(bytes, BlobKind::kCustomerFeatures, kFeatureBlobVersion));
  BinaryReader in(blob_payload);
  std::vector<int> windows;
  CRM_RETURN_NOT_OK(in.GetArray(&windows, FeatureSpec::kMaxWindows));
  if (windows != spec_.window_days) {
    return Status::InvalidArgument("customer features were written with other window_days");
  }
  CustomerRecord r{};
  // The record packs its times (PackedMs); the blob holds them as int64.
  // Amounts and counts beyond the record's range saturate there.
  int64_t first_seen_ms = 0, latest_ms = 0, last_purchase_ms = 0, last_login_ms = 0;
  int64_t purchase_cents = 0, refund_cents = 0;
  for (int64_t* v : {&first_seen_ms, &latest_ms, &last_purchase_ms, &last_login_ms, &purchase_cents,
                     &refund_cents}) {
    CRM_RETURN_NOT_OK(in.Get(v));
  }
  uint32_t type_counts[ingest::kEventTypeCount] = {};
  for (uint32_t& c : type_counts) CRM_RETURN_NOT_OK(in.Get(&c));
  for (int t = 0; t < ingest::kEventTypeCount; ++t) r.type_counts.Set(t, type_counts[t]);
  uint8_t flags = 0;
  CRM_RETURN_NOT_OK(in.Get(&flags));
  std::string plan;
  CRM_RETURN_NOT_OK(in.GetBytes(&plan));
  CRM_RETURN_NOT_OK(in.Get(&r.base_day));
  std::string ring;
  CRM_RETURN_NOT_OK(in.GetBytes(&ring));
  CRM_RETURN_NOT_OK(in.ExpectEnd());
  if (flags & ~kClosedFlag) return Status::Corruption("customer features: unknown flags");
  if (latest_ms == kNoTime || first_seen_ms == kNoTime || first_seen_ms > latest_ms) {
    return Status::Corruption("customer features: inconsistent first_seen/latest times");
  }
  for (int64_t t : {last_purchase_ms, last_login_ms}) {
    if (t != kNoTime && (t < first_seen_ms || t > latest_ms)) {
      return Status::Corruption(
          "customer features: last purchase/login outside first_seen..latest");
    }
  }
  r.first_seen_ms = first_seen_ms;
  r.latest_ms = latest_ms;
  r.last_purchase_ms = last_purchase_ms;
  r.last_login_ms = last_login_ms;
  std::vector<DayAggregate>& days = *scratch_days_;
  if (!DecodeRing(reinterpret_cast<const uint8_t*>(ring.data()), ring.size(), r.base_day, &days)) {
    return Status::Corruption("customer features: bad day ring");
  }
  const int32_t clock_day = DayOf(r.latest_ms);
  if (!days.empty() &&
      (days.back().day > clock_day || days.front().day <= clock_day - longest_window_)) {
    return Status::Corruption("customer features: day ring outside the windows");
  }
  // What the per-day history holds, against the lifetime figures.
  uint64_t ring_counts[kWindowMetricCount] = {};
  uint64_t ring_cents[2] = {};
  for (const DayAggregate& d : days) {
    for (int m = 0; m < kWindowMetricCount; ++m) ring_counts[m] += d.counts[m];
    ring_cents[0] += d.cents[0];
    ring_cents[1] += d.cents[1];
  }
  // A window never holds more than the lifetime, unless the lifetime
  // figure saturated (the per-day history's do not).
  for (int t = 0; t < ingest::kEventTypeCount; ++t) {
    const int m = WindowMetricOf(static_cast<ingest::EventType>(t));
    if (m >= 0 && ring_counts[m] > type_counts[t] && type_counts[t] < LifetimeCounts::kMaxCount) {
      return Status::Corruption("customer features: day ring exceeds lifetime counts");
    }
  }
  if (purchase_cents < 0 || refund_cents < 0 ||
      (ring_cents[0] > static_cast<uint64_t>(purchase_cents) &&
       purchase_cents < PackedInt48::kMax) ||
      (ring_cents[1] > static_cast<uint64_t>(refund_cents) && refund_cents < PackedInt48::kMax)) {
    return Status::Corruption("customer features: day ring exceeds lifetime amounts");
  }
  r.purchase_cents = purchase_cents;
  r.refund_cents = refund_cents;
  // Valid: install it.
  uint32_t index = 0;
  try {
    if (mark) ReserveTracking();
    if (how == Installed::kHeld && held_.size() == held_.capacity()) {
      ReserveGeometric(&held_, held_.size() + 1);
    }
    index = FindOrCreate(customer_id, /*ask_handler=*/false, /*may_grow=*/how != Installed::kHeld);
  } catch (const std::length_error&) {
    return Status::InvalidArgument(
        "customer features: more customers in memory than features.max_customers (" +
        std::to_string(spec_.max_customers) + ")");
  }
  if (index == UINT32_MAX) return false;  // kHeld: no customer to evict
  CustomerRecord* dst = &Record(index);
  ReleaseRing(dst);
  r.id = dst->id;
  r.id_length = dst->id_length;
  r.flags = static_cast<uint8_t>(flags | (dst->flags & (kTrackedFlags | kStagedFlag | kHeldFlag)) |
                                 kReferencedFlag);
  r.plan_id = plan.empty() ? 0 : InternPlan(plan);
  *dst = r;
  RebuildRing(index, days);
  if (mark) MarkDirty(index);
  if (how == Installed::kHeld) {
    Hold(index);  // room reserved above
    dst->flags |= kLoadedAheadFlag;
  }
  return true;
}

}  // namespace crmstream::features
