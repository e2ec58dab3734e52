#include "crmstream/models/association_rules.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "crmstream/common/binary_io.h"
#include "crmstream/common/hash.h"

namespace crmstream::models {
namespace {

constexpr size_t kInitialLog = 64;

uint64_t PairKey(uint32_t a, uint32_t b) {
  if (a > b) std::swap(a, b);
  return (uint64_t{a} << 32) | b;
}
uint32_t KeyLow(uint64_t key) { return static_cast<uint32_t>(key >> 32); }
uint32_t KeyHigh(uint64_t key) { return static_cast<uint32_t>(key); }

}  // namespace

Status AssociationRulesOptions::Validate() const {
  if (window_ms <= 0) return Status::InvalidArgument("window_ms must be > 0");
  if (max_pairs < 16 || max_pairs > (1u << 28)) {
    return Status::InvalidArgument("max_pairs must be in [16, 2^28]");
  }
  if (max_items < 2 || max_items > (1u << 24)) {
    return Status::InvalidArgument("max_items must be in [2, 2^24]");
  }
  if (max_basket_items < 2 || max_basket_items > 65536) {
    return Status::InvalidArgument("max_basket_items must be in [2, 65536]");
  }
  if (max_window_items < 1 || max_window_items >= (uint64_t{1} << 32)) {
    return Status::InvalidArgument("max_window_items must be in [1, 2^32)");
  }
  return Status::OK();
}

Status RuleFloors::Validate() const {
  if (!(min_support >= 0.0 && min_support <= 1.0)) {
    return Status::InvalidArgument("min_support must be in [0, 1]");
  }
  if (!(min_confidence >= 0.0 && min_confidence <= 1.0)) {
    return Status::InvalidArgument("min_confidence must be in [0, 1]");
  }
  if (!(min_lift >= 0.0) || !std::isfinite(min_lift)) {
    return Status::InvalidArgument("min_lift must be finite and >= 0");
  }
  if (min_pair_count < 1) return Status::InvalidArgument("min_pair_count must be >= 1");
  return Status::OK();
}

AssociationRuleMiner::AssociationRuleMiner(const AssociationRulesOptions& options)
    : options_(options), log_(kInitialLog) {}

Result<AssociationRuleMiner> AssociationRuleMiner::Create(const AssociationRulesOptions& options) {
  CRM_RETURN_NOT_OK(options.Validate());
  return AssociationRuleMiner(options);
}

int64_t AssociationRuleMiner::FindItem(std::string_view item) const { return items_.Find(item); }

uint32_t AssociationRuleMiner::InternItem(std::string_view item) {
  bool added = false;
  const uint32_t i = items_.Intern(item, options_.max_items, &added);
  if (added) item_counts_.push_back(0);
  return i;
}

void AssociationRuleMiner::AdvanceTo(int64_t timestamp_ms) {
  if (timestamp_ms <= now_ms_) return;
  now_ms_ = timestamp_ms;
  Expire();
}

int64_t AssociationRuleMiner::Cutoff() const {
  // now - window, saturated (timestamps are any int64 here).
  return now_ms_ < INT64_MIN + options_.window_ms ? INT64_MIN : now_ms_ - options_.window_ms;
}

void AssociationRuleMiner::Expire() {
  while (basket_count_ > 0 && log_[log_head_].timestamp_ms <= Cutoff()) {
    ExpireFront();
  }
}

LineOutcome AssociationRuleMiner::AddLine(std::string_view order_id, std::string_view item_id,
                                          int64_t timestamp_ms) {
  ++counters_.lines;
  AdvanceTo(timestamp_ms);
  if (timestamp_ms <= Cutoff()) {
    ++counters_.late;
    return LineOutcome::kLate;
  }
  const uint32_t item = InternItem(item_id);
  if (item == internal::FlatIndex::kMissing) {
    ++counters_.untracked_items;
    return LineOutcome::kUntrackedItem;
  }
  const LineOutcome outcome = AddToOrder(Hash64(order_id), item, timestamp_ms);
  switch (outcome) {
    case LineOutcome::kCounted:
      ++counters_.counted;
      break;
    case LineOutcome::kRepeat:
      ++counters_.repeats;
      break;
    default:
      ++counters_.basket_overflow;
      break;
  }
  return outcome;
}

LineOutcome AssociationRuleMiner::AddToOrder(uint64_t order_key, uint32_t item,
                                             int64_t timestamp_ms) {
  const uint32_t low = order_index_.Find(order_key);
  Basket* basket = nullptr;
  if (low != internal::FlatIndex::kMissing) {
    // The index keeps the low 32 bits of the seq; fewer than 2^32 baskets
    // are live, so they identify it.
    const uint64_t seq =
        first_seq_ + static_cast<uint32_t>(low - static_cast<uint32_t>(first_seq_));
    if (seq < first_seq_ + basket_count_ && BasketAt(seq).order_key == order_key) {
      basket = &BasketAt(seq);
    }
  }
  if (basket == nullptr) basket = &StartBasket(timestamp_ms, order_key);
  if (std::find(basket->items.begin(), basket->items.end(), item) != basket->items.end()) {
    return LineOutcome::kRepeat;
  }
  // Make room in the log: the oldest baskets leave early (never this one).
  while (window_items_ >= options_.max_window_items && log_[log_head_].seq != basket->seq) {
    ExpireFront();
    ++counters_.baskets_expired_early;
  }
  if (basket->items.size() >= options_.max_basket_items ||
      window_items_ >= options_.max_window_items) {
    return LineOutcome::kBasketOverflow;
  }
  AddToBasket(*basket, item);
  return LineOutcome::kCounted;
}

AssociationRuleMiner::Basket& AssociationRuleMiner::StartBasket(int64_t timestamp_ms,
                                                                uint64_t order_key) {
  if (basket_count_ == log_.size()) {
    // Grow the ring, oldest first; the baskets' item buffers move along.
    std::vector<Basket> grown(log_.size() * 2);
    for (size_t i = 0; i < basket_count_; ++i) {
      grown[i] = std::move(log_[(log_head_ + i) % log_.size()]);
    }
    log_.swap(grown);
    log_head_ = 0;
  }
  const uint64_t seq = first_seq_ + basket_count_;
  Basket& b = log_[(log_head_ + basket_count_) % log_.size()];
  ++basket_count_;
  b.timestamp_ms = timestamp_ms;
  b.order_key = order_key;
  b.seq = seq;
  b.items.clear();  // keeps its capacity from an expired basket
  order_index_.Insert(order_key, static_cast<uint32_t>(seq));
  ++counters_.baskets_started;
  return b;
}

void AssociationRuleMiner::AddToBasket(Basket& basket, uint32_t item) {
  for (uint32_t other : basket.items) IncrementPair(item, other, basket.seq);
  basket.items.push_back(item);
  ++item_counts_[item];
  ++window_items_;
}

void AssociationRuleMiner::ExpireFront() {
  Basket& b = log_[log_head_];
  const std::vector<uint32_t>& items = b.items;
  for (size_t i = 0; i < items.size(); ++i) {
    --item_counts_[items[i]];
    for (size_t j = i + 1; j < items.size(); ++j) DecrementPair(items[i], items[j], b.seq);
  }
  window_items_ -= items.size();
  if (order_index_.Find(b.order_key) == static_cast<uint32_t>(b.seq))
    order_index_.Erase(b.order_key);
  b.items.clear();
  log_head_ = (log_head_ + 1) % log_.size();
  ++first_seq_;
  --basket_count_;
  ApplyDueFixes();
  while (bounds_head_ < bounds_.size() && bounds_[bounds_head_].until_seq <= first_seq_) {
    ++bounds_head_;
  }
  if (bounds_head_ == bounds_.size()) {
    bounds_.clear();
    bounds_head_ = 0;
  }
}

uint32_t AssociationRuleMiner::CurrentBound() const {
  return bounds_head_ < bounds_.size() ? bounds_[bounds_head_].value : 0;
}

uint32_t AssociationRuleMiner::unmonitored_bound() const { return CurrentBound(); }

bool AssociationRuleMiner::exact() const { return inexact_entries_ == 0 && CurrentBound() == 0; }

void AssociationRuleMiner::IncrementPair(uint32_t a, uint32_t b, uint64_t basket_seq) {
  const uint64_t key = PairKey(a, b);
  const uint32_t e = pair_index_.Find(key);
  if (e != internal::FlatIndex::kMissing) {
    PairEntry& entry = entries_[e];
    ++entry.count;
    if (entry.error > 0 && basket_seq < entry.insert_seq) ++entry.old_exact;
    if (heap_active_) HeapDown(entry.heap_pos);
    return;
  }
  if (live_entries_ >= options_.max_pairs) {
    // Space-Saving: the smallest count makes room; while the baskets it was
    // counted from are live, it bounds every pair outside the table.
    if (!heap_active_) ActivateHeap();
    const uint32_t victim = heap_.front();
    const Bound bound{entries_[victim].count, first_seq_ + basket_count_};
    while (bounds_.size() > bounds_head_ && bounds_.back().value <= bound.value) bounds_.pop_back();
    bounds_.push_back(bound);
    FreeEntry(victim);
    ++counters_.pairs_evicted;
  }
  const uint32_t inherited = CurrentBound();
  const uint32_t added = NewEntry(key, inherited + 1, inherited);
  // This increment comes from a basket older than the insertion.
  if (inherited > 0) entries_[added].old_exact = 1;
}

void AssociationRuleMiner::DecrementPair(uint32_t a, uint32_t b, uint64_t basket_seq) {
  const uint32_t e = pair_index_.Find(PairKey(a, b));
  if (e == internal::FlatIndex::kMissing) return;  // evicted: the bound covers it
  PairEntry& entry = entries_[e];
  // Inherited entries drop their older increments all at once (ApplyDueFixes).
  if (entry.error > 0 && basket_seq < entry.insert_seq) return;
  if (entry.count == 0) return;  // unreachable for a consistent state
  if (--entry.count == 0) {
    FreeEntry(e);
  } else if (heap_active_) {
    HeapUp(entry.heap_pos);
  }
}

uint32_t AssociationRuleMiner::NewEntry(uint64_t key, uint32_t count, uint32_t error) {
  uint32_t e;
  if (!free_entries_.empty()) {
    e = free_entries_.back();
    free_entries_.pop_back();
  } else {
    e = static_cast<uint32_t>(entries_.size());
    entries_.emplace_back();
  }
  PairEntry& entry = entries_[e];
  entry.key = key;
  entry.count = count;
  entry.error = error;
  entry.old_exact = 0;
  entry.insert_seq = first_seq_ + basket_count_;
  entry.live = true;
  pair_index_.Insert(key, e);
  ++live_entries_;
  if (heap_active_) {
    entry.heap_pos = static_cast<uint32_t>(heap_.size());
    heap_.push_back(e);
    HeapUp(entry.heap_pos);
  }
  if (error > 0) {
    ++inexact_entries_;
    if (fixes_.size() - fixes_head_ > 2 * static_cast<size_t>(options_.max_pairs) + 1024) {
      // Drop the records of entries evicted since (bounded memory).
      size_t kept = 0;
      for (size_t i = fixes_head_; i < fixes_.size(); ++i) {
        const PendingFix& f = fixes_[i];
        if (entries_[f.entry].live && entries_[f.entry].generation == f.generation &&
            entries_[f.entry].error > 0) {
          fixes_[kept++] = f;
        }
      }
      fixes_.resize(kept);
      fixes_head_ = 0;
    }
    fixes_.push_back({e, entry.generation, entry.insert_seq});
  }
  return e;
}

void AssociationRuleMiner::FreeEntry(uint32_t e) {
  PairEntry& entry = entries_[e];
  pair_index_.Erase(entry.key);
  if (heap_active_) HeapRemove(entry.heap_pos);
  if (entry.error > 0) --inexact_entries_;
  entry.live = false;
  entry.count = 0;
  entry.error = 0;
  entry.old_exact = 0;
  ++entry.generation;
  free_entries_.push_back(e);
  --live_entries_;
}

void AssociationRuleMiner::ApplyDueFixes() {
  while (fixes_head_ < fixes_.size() && fixes_[fixes_head_].insert_seq <= first_seq_) {
    const PendingFix f = fixes_[fixes_head_++];
    PairEntry& entry = entries_[f.entry];
    if (!entry.live || entry.generation != f.generation || entry.error == 0) continue;
    // Every basket older than the insertion has left: what the entry counted
    // from them (the inherited error and the exact increments) goes too.
    const uint32_t drop = std::min(entry.count, entry.error + entry.old_exact);
    entry.count -= drop;
    entry.error = 0;
    entry.old_exact = 0;
    --inexact_entries_;
    if (entry.count == 0) {
      FreeEntry(f.entry);
    } else if (heap_active_) {
      HeapUp(entry.heap_pos);
    }
  }
  if (fixes_head_ == fixes_.size()) {
    fixes_.clear();
    fixes_head_ = 0;
  }
}

void AssociationRuleMiner::ActivateHeap() {
  heap_.clear();
  heap_.reserve(options_.max_pairs);
  for (uint32_t e = 0; e < entries_.size(); ++e) {
    if (!entries_[e].live) continue;
    entries_[e].heap_pos = static_cast<uint32_t>(heap_.size());
    heap_.push_back(e);
  }
  for (size_t i = heap_.size() / 2; i-- > 0;) HeapDown(static_cast<uint32_t>(i));
  heap_active_ = true;
}

void AssociationRuleMiner::HeapUp(uint32_t pos) {
  const uint32_t e = heap_[pos];
  const uint32_t c = entries_[e].count;
  while (pos > 0) {
    const uint32_t parent = (pos - 1) / 2;
    if (entries_[heap_[parent]].count <= c) break;
    heap_[pos] = heap_[parent];
    entries_[heap_[pos]].heap_pos = pos;
    pos = parent;
  }
  heap_[pos] = e;
  entries_[e].heap_pos = pos;
}

void AssociationRuleMiner::HeapDown(uint32_t pos) {
  const uint32_t e = heap_[pos];
  const uint32_t c = entries_[e].count;
  const auto n = static_cast<uint32_t>(heap_.size());
  while (true) {
    uint32_t child = 2 * pos + 1;
    if (child >= n) break;
    if (child + 1 < n && entries_[heap_[child + 1]].count < entries_[heap_[child]].count) ++child;
    if (entries_[heap_[child]].count >= c) break;
    heap_[pos] = heap_[child];
    entries_[heap_[pos]].heap_pos = pos;
    pos = child;
  }
  heap_[pos] = e;
  entries_[e].heap_pos = pos;
}

void AssociationRuleMiner::HeapRemove(uint32_t pos) {
  const uint32_t last = heap_.back();
  heap_.pop_back();
  if (pos == heap_.size()) return;
  heap_[pos] = last;
  entries_[last].heap_pos = pos;
  HeapUp(pos);
  HeapDown(entries_[last].heap_pos);
}

PairCount AssociationRuleMiner::Pair(uint32_t a, uint32_t b) const {
  PairCount p;
  if (a == b || a >= items_.size() || b >= items_.size()) return p;
  const uint32_t cap = std::min(item_counts_[a], item_counts_[b]);
  const uint32_t e = pair_index_.Find(PairKey(a, b));
  if (e == internal::FlatIndex::kMissing) {
    p.upper = std::min(cap, CurrentBound());
    return p;
  }
  const PairEntry& entry = entries_[e];
  p.monitored = true;
  p.upper = std::min(cap, entry.count);
  const uint32_t uncertain = entry.error + entry.old_exact;
  p.lower = std::min(p.upper, entry.count > uncertain ? entry.count - uncertain : 0);
  if (entry.error == 0) p.lower = p.upper;
  return p;
}

uint32_t AssociationRuleMiner::MinCount(const RuleFloors& floors) const {
  const double by_support = std::ceil(floors.min_support * static_cast<double>(basket_count_));
  return std::max<uint32_t>(floors.min_pair_count,
                            static_cast<uint32_t>(std::clamp(by_support - 1.0, 0.0, 4e9)));
}

bool AssociationRuleMiner::CollectRule(uint32_t a, uint32_t b, const PairEntry& e,
                                       const RuleFloors& floors, uint32_t min_count,
                                       std::vector<AssociationRule>* out) const {
  const uint32_t na = item_counts_[a];
  const uint32_t nb = item_counts_[b];
  if (na == 0 || nb == 0) return false;
  const uint32_t upper = std::min({e.count, na, nb});
  // An inexact count enters the rule by its guaranteed part only, so every
  // reported rule truly clears the floors.
  const uint32_t uncertain = e.error == 0 ? 0 : e.error + e.old_exact;
  const uint32_t lower = std::min(upper, e.count > uncertain ? e.count - uncertain : 0);
  const double baskets = static_cast<double>(basket_count_);
  const auto passes = [&](uint32_t count) {
    if (count < min_count) return false;
    const double support = static_cast<double>(count) / baskets;
    const double confidence = static_cast<double>(count) / static_cast<double>(na);
    const double lift = confidence * baskets / static_cast<double>(nb);
    return support >= floors.min_support && confidence >= floors.min_confidence &&
           lift >= floors.min_lift;
  };
  if (!passes(lower)) return passes(upper);  // true: a rule that may be missing
  AssociationRule r;
  r.antecedent = a;
  r.consequent = b;
  r.pair_count = lower;
  r.pair_count_upper = upper;
  r.antecedent_count = na;
  r.consequent_count = nb;
  r.support = static_cast<double>(lower) / baskets;
  r.confidence = static_cast<double>(lower) / static_cast<double>(na);
  r.lift = r.confidence * baskets / static_cast<double>(nb);
  r.exact = lower == upper;
  out->push_back(r);
  return false;
}

RuleSummary AssociationRuleMiner::Rules(const RuleFloors& floors,
                                        std::vector<AssociationRule>* out) const {
  out->clear();
  RuleSummary s;
  s.baskets = basket_count_;
  s.pairs = live_entries_;
  if (basket_count_ == 0) return s;
  const uint32_t min_count = MinCount(floors);
  for (const PairEntry& e : entries_) {
    if (!e.live || e.count < min_count) continue;
    ++s.candidates;
    bool maybe_missing = CollectRule(KeyLow(e.key), KeyHigh(e.key), e, floors, min_count, out);
    maybe_missing |= CollectRule(KeyHigh(e.key), KeyLow(e.key), e, floors, min_count, out);
    if (maybe_missing) s.complete = false;
  }
  std::sort(out->begin(), out->end(), [](const AssociationRule& x, const AssociationRule& y) {
    if (x.lift != y.lift) return x.lift > y.lift;
    if (x.support != y.support) return x.support > y.support;
    if (x.antecedent != y.antecedent) return x.antecedent < y.antecedent;
    return x.consequent < y.consequent;
  });
  s.complete = s.complete && CurrentBound() < min_count;
  s.exact = std::all_of(out->begin(), out->end(), [](const AssociationRule& r) { return r.exact; });
  return s;
}

RuleSummary AssociationRuleMiner::RulesFor(std::string_view item, const RuleFloors& floors,
                                           size_t k, std::vector<AssociationRule>* out) const {
  out->clear();
  RuleSummary s;
  s.baskets = basket_count_;
  s.pairs = live_entries_;
  const int64_t found = FindItem(item);
  if (found < 0 || basket_count_ == 0) return s;
  const auto a = static_cast<uint32_t>(found);
  const uint32_t min_count = MinCount(floors);
  for (const PairEntry& e : entries_) {
    if (!e.live || e.count < min_count) continue;
    const uint32_t lo = KeyLow(e.key);
    const uint32_t hi = KeyHigh(e.key);
    if (lo != a && hi != a) continue;
    ++s.candidates;
    if (CollectRule(a, lo == a ? hi : lo, e, floors, min_count, out)) s.complete = false;
  }
  std::sort(out->begin(), out->end(), [](const AssociationRule& x, const AssociationRule& y) {
    if (x.confidence != y.confidence) return x.confidence > y.confidence;
    if (x.lift != y.lift) return x.lift > y.lift;
    return x.consequent < y.consequent;
  });
  if (k > 0 && out->size() > k) out->resize(k);
  s.complete = s.complete && CurrentBound() < min_count;
  s.exact = std::all_of(out->begin(), out->end(), [](const AssociationRule& r) { return r.exact; });
  return s;
}

size_t AssociationRuleMiner::memory_bytes() const {
  size_t bytes = sizeof(*this) + items_.memory_bytes() + order_index_.memory_bytes() +
                 pair_index_.memory_bytes() + entries_.capacity() * sizeof(PairEntry) +
                 free_entries_.capacity() * sizeof(uint32_t) + heap_.capacity() * sizeof(uint32_t) +
                 bounds_.capacity() * sizeof(Bound) + fixes_.capacity() * sizeof(PendingFix) +
                 log_.capacity() * sizeof(Basket) + item_counts_.capacity() * sizeof(uint32_t);
  for (const Basket& b : log_) bytes += b.items.capacity() * sizeof(uint32_t);
  return bytes;
}

Status AssociationRuleMiner::Merge(const AssociationRuleMiner& other) {
  if (&other == this) return Status::InvalidArgument("AssociationRuleMiner: cannot merge itself");
  if (other.options_.window_ms != options_.window_ms) {
    return Status::InvalidArgument("AssociationRuleMiner::Merge: window_ms differs");
  }
  CRM_ASSIGN_OR_RETURN(AssociationRuleMiner merged, Create(options_));
  // Both logs are in arrival order; interleave them by basket time. An
  // order present on both sides becomes one basket.
  size_t i = 0, j = 0;
  const auto replay = [&merged](const AssociationRuleMiner& from, size_t index) {
    const Basket& b = from.BasketAt(from.first_seq_ + index);
    merged.AdvanceTo(b.timestamp_ms);
    if (b.timestamp_ms <= merged.Cutoff()) return;
    for (uint32_t item : b.items) {
      const uint32_t mapped = merged.InternItem(from.items_.name(item));
      if (mapped != internal::FlatIndex::kMissing) {
        (void)merged.AddToOrder(b.order_key, mapped, b.timestamp_ms);
      }
    }
  };
  while (i < basket_count_ || j < other.basket_count_) {
    const bool take_this =
        j == other.basket_count_ ||
        (i < basket_count_ && BasketAt(first_seq_ + i).timestamp_ms <=
                                  other.BasketAt(other.first_seq_ + j).timestamp_ms);
    if (take_this) {
      replay(*this, i++);
    } else {
      replay(other, j++);
    }
  }
  merged.AdvanceTo(std::max(now_ms_, other.now_ms_));
  // Items known to either side stay known, even without baskets in the window.
  for (uint32_t i = 0; i < items_.size(); ++i) (void)merged.InternItem(items_.name(i));
  for (uint32_t i = 0; i < other.items_.size(); ++i) (void)merged.InternItem(other.items_.name(i));
  AssociationRulesCounters c = counters_;
  const AssociationRulesCounters& o = other.counters_;
  c.lines += o.lines;
  c.counted += o.counted;
  c.repeats += o.repeats;
  c.late += o.late;
  c.untracked_items += o.untracked_items;
  c.basket_overflow += o.basket_overflow;
  c.baskets_started += o.baskets_started;
  c.baskets_expired_early += o.baskets_expired_early + merged.counters_.baskets_expired_early;
  c.pairs_evicted += o.pairs_evicted + merged.counters_.pairs_evicted;
  merged.counters_ = c;
  *this = std::move(merged);
  return Status::OK();
}

// ------------------------------------------------------------------ blob

std::string AssociationRuleMiner::Serialize() const {
  std::string payload;
  BinaryWriter w(&payload);
  w.Put<int64_t>(options_.window_ms);
  w.Put<uint32_t>(options_.max_pairs);
  w.Put<uint32_t>(options_.max_items);
  w.Put<uint32_t>(options_.max_basket_items);
  w.Put<uint64_t>(options_.max_window_items);
  w.Put<int64_t>(now_ms_);
  const AssociationRulesCounters& c = counters_;
  for (uint64_t v : {c.lines, c.counted, c.repeats, c.late, c.untracked_items, c.basket_overflow,
                     c.baskets_started, c.baskets_expired_early, c.pairs_evicted}) {
    w.Put<uint64_t>(v);
  }
  w.Put<uint32_t>(static_cast<uint32_t>(items_.size()));
  for (uint32_t i = 0; i < items_.size(); ++i) w.PutBytes(items_.name(i));
  w.Put<uint64_t>(first_seq_);
  w.Put<uint64_t>(basket_count_);
  for (uint64_t i = 0; i < basket_count_; ++i) {
    const Basket& b = BasketAt(first_seq_ + i);
    w.Put<int64_t>(b.timestamp_ms);
    w.Put<uint64_t>(b.order_key);
    w.PutArray<uint32_t>(b.items);
  }
  w.Put<uint32_t>(static_cast<uint32_t>(entries_.size()));
  for (const PairEntry& e : entries_) {
    w.Put<uint8_t>(e.live ? 1 : 0);
    w.Put<uint32_t>(e.generation);
    if (!e.live) continue;
    w.Put<uint64_t>(e.key);
    w.Put<uint32_t>(e.count);
    w.Put<uint32_t>(e.error);
    w.Put<uint32_t>(e.old_exact);
    w.Put<uint64_t>(e.insert_seq);
  }
  w.PutArray<uint32_t>(free_entries_);
  w.Put<uint8_t>(heap_active_ ? 1 : 0);
  if (heap_active_) w.PutArray<uint32_t>(heap_);
  w.Put<uint32_t>(static_cast<uint32_t>(bounds_.size() - bounds_head_));
  for (size_t i = bounds_head_; i < bounds_.size(); ++i) {
    w.Put<uint32_t>(bounds_[i].value);
    w.Put<uint64_t>(bounds_[i].until_seq);
  }
  w.Put<uint32_t>(static_cast<uint32_t>(fixes_.size() - fixes_head_));
  for (size_t i = fixes_head_; i < fixes_.size(); ++i) {
    w.Put<uint32_t>(fixes_[i].entry);
    w.Put<uint32_t>(fixes_[i].generation);
    w.Put<uint64_t>(fixes_[i].insert_seq);
  }
  return SealBlob(BlobKind::kAssociationRules, kBlobVersion, payload);
}

Result<AssociationRuleMiner> AssociationRuleMiner::Deserialize(std::string_view blob) {
  CRM_ASSIGN_OR_RETURN(const std::string_view payload,
                       OpenBlobPayload(blob, BlobKind::kAssociationRules, kBlobVersion));
  BinaryReader r(payload);
  const auto corrupt = [](const char* what) {
    return Status::Corruption(std::string("AssociationRuleMiner blob: ") + what);
  };
  AssociationRulesOptions o;
  CRM_RETURN_NOT_OK(r.Get(&o.window_ms));
  CRM_RETURN_NOT_OK(r.Get(&o.max_pairs));
  CRM_RETURN_NOT_OK(r.Get(&o.max_items));
  CRM_RETURN_NOT_OK(r.Get(&o.max_basket_items));
  CRM_RETURN_NOT_OK(r.Get(&o.max_window_items));
  if (Status st = o.Validate(); !st.ok()) return corrupt(st.message().c_str());
  AssociationRuleMiner m(o);
  CRM_RETURN_NOT_OK(r.Get(&m.now_ms_));
  AssociationRulesCounters& c = m.counters_;
  for (uint64_t* v :
       {&c.lines, &c.counted, &c.repeats, &c.late, &c.untracked_items, &c.basket_overflow,
        &c.baskets_started, &c.baskets_expired_early, &c.pairs_evicted}) {
    CRM_RETURN_NOT_OK(r.Get(v));
  }
  uint32_t items = 0;
  CRM_RETURN_NOT_OK(r.Get(&items));
  if (items > o.max_items || items > r.remaining() / 4) return corrupt("bad item count");
  m.item_counts_.assign(items, 0);
  for (uint32_t i = 0; i < items; ++i) {
    std::string name;
    CRM_RETURN_NOT_OK(r.GetBytes(&name));
    if (!m.items_.Restore(std::move(name))) return corrupt("item name too long or repeated");
  }

  uint64_t first_seq = 0, baskets = 0;
  CRM_RETURN_NOT_OK(r.Get(&first_seq));
  CRM_RETURN_NOT_OK(r.Get(&baskets));
  // A basket takes at least 20 bytes in the blob.
  if (baskets > r.remaining() / 20 || first_seq > (uint64_t{1} << 62)) {
    return corrupt("bad basket count");
  }
  m.first_seq_ = first_seq;
  size_t capacity = kInitialLog;
  while (capacity < baskets) capacity *= 2;
  m.log_.assign(capacity, Basket{});
  std::vector<uint32_t> sorted;
  for (uint64_t i = 0; i < baskets; ++i) {
    Basket& b = m.log_[i];
    CRM_RETURN_NOT_OK(r.Get(&b.timestamp_ms));
    CRM_RETURN_NOT_OK(r.Get(&b.order_key));
    b.items.reserve(1);
    CRM_RETURN_NOT_OK(r.GetArray(&b.items, o.max_basket_items));
    b.seq = first_seq + i;
    if (b.timestamp_ms <= m.Cutoff() || b.timestamp_ms > m.now_ms_) {
      return corrupt("basket outside the window");
    }
    sorted.assign(b.items.begin(), b.items.end());
    std::sort(sorted.begin(), sorted.end());
    if (std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end()) {
      return corrupt("repeated item in a basket");
    }
    for (uint32_t item : b.items) {
      if (item >= items) return corrupt("bad item index");
      ++m.item_counts_[item];
    }
    m.window_items_ += b.items.size();
    m.order_index_.Insert(b.order_key, static_cast<uint32_t>(b.seq));
  }
  if (m.window_items_ > o.max_window_items) return corrupt("too many basket items");
  m.basket_count_ = baskets;

  uint32_t entries = 0;
  CRM_RETURN_NOT_OK(r.Get(&entries));
  if (entries > o.max_pairs + uint64_t{1} || entries > r.remaining() / 5) {
    return corrupt("bad entry count");
  }
  m.entries_.resize(entries);
  const uint64_t next_seq = first_seq + baskets;
  for (uint32_t i = 0; i < entries; ++i) {
    PairEntry& e = m.entries_[i];
    uint8_t live = 0;
    CRM_RETURN_NOT_OK(r.Get(&live));
    CRM_RETURN_NOT_OK(r.Get(&e.generation));
    if (live > 1) return corrupt("bad entry flag");
    e.live = live == 1;
    if (!e.live) continue;
    CRM_RETURN_NOT_OK(r.Get(&e.key));
    CRM_RETURN_NOT_OK(r.Get(&e.count));
    CRM_RETURN_NOT_OK(r.Get(&e.error));
    CRM_RETURN_NOT_OK(r.Get(&e.old_exact));
    CRM_RETURN_NOT_OK(r.Get(&e.insert_seq));
    if (KeyLow(e.key) >= KeyHigh(e.key) || KeyHigh(e.key) >= items) return corrupt("bad pair");
    if (e.count == 0 || e.insert_seq > next_seq || uint64_t{e.error} + e.old_exact > e.count ||
        (e.error == 0 && e.old_exact != 0)) {
      return corrupt("bad pair count");
    }
    if (m.pair_index_.Find(e.key) != internal::FlatIndex::kMissing) return corrupt("repeated pair");
    m.pair_index_.Insert(e.key, i);
    ++m.live_entries_;
    if (e.error > 0) ++m.inexact_entries_;
  }
  if (m.live_entries_ > o.max_pairs) return corrupt("too many pairs");
  m.free_entries_.reserve(1);
  CRM_RETURN_NOT_OK(r.GetArray(&m.free_entries_, entries));
  if (m.free_entries_.size() + m.live_entries_ != entries) return corrupt("bad free list");
  {
    std::vector<uint8_t> seen(entries, 0);
    for (uint32_t e : m.free_entries_) {
      if (e >= entries || m.entries_[e].live || seen[e]) return corrupt("bad free list");
      seen[e] = 1;
    }
  }
  uint8_t heap_active = 0;
  CRM_RETURN_NOT_OK(r.Get(&heap_active));
  if (heap_active > 1) return corrupt("bad heap flag");
  m.heap_active_ = heap_active == 1;
  if (m.heap_active_) {
    m.heap_.reserve(1);
    CRM_RETURN_NOT_OK(r.GetArray(&m.heap_, entries));
    if (m.heap_.size() != m.live_entries_) return corrupt("bad heap size");
    std::vector<uint8_t> seen(entries, 0);
    for (uint32_t pos = 0; pos < m.heap_.size(); ++pos) {
      const uint32_t e = m.heap_[pos];
      if (e >= entries || !m.entries_[e].live || seen[e]) return corrupt("bad heap entry");
      seen[e] = 1;
      m.entries_[e].heap_pos = pos;
      if (pos > 0 && m.entries_[m.heap_[(pos - 1) / 2]].count > m.entries_[e].count) {
        return corrupt("heap order");
      }
    }
  }
  uint32_t bounds = 0;
  CRM_RETURN_NOT_OK(r.Get(&bounds));
  if (bounds > r.remaining() / 12) return corrupt("bad bound count");
  m.bounds_.resize(bounds);
  for (uint32_t i = 0; i < bounds; ++i) {
    CRM_RETURN_NOT_OK(r.Get(&m.bounds_[i].value));
    CRM_RETURN_NOT_OK(r.Get(&m.bounds_[i].until_seq));
    if (m.bounds_[i].until_seq <= first_seq || m.bounds_[i].until_seq > next_seq ||
        (i > 0 && (m.bounds_[i].value >= m.bounds_[i - 1].value ||
                   m.bounds_[i].until_seq <= m.bounds_[i - 1].until_seq))) {
      return corrupt("bad bound");
    }
  }
  uint32_t fixes = 0;
  CRM_RETURN_NOT_OK(r.Get(&fixes));
  if (fixes > r.remaining() / 16) return corrupt("bad fix count");
  m.fixes_.resize(fixes);
  for (uint32_t i = 0; i < fixes; ++i) {
    PendingFix& f = m.fixes_[i];
    CRM_RETURN_NOT_OK(r.Get(&f.entry));
    CRM_RETURN_NOT_OK(r.Get(&f.generation));
    CRM_RETURN_NOT_OK(r.Get(&f.insert_seq));
    if (f.entry >= entries || f.insert_seq <= first_seq || f.insert_seq > next_seq ||
        (i > 0 && f.insert_seq < m.fixes_[i - 1].insert_seq)) {
      return corrupt("bad pending fix");
    }
  }
  CRM_RETURN_NOT_OK(r.ExpectEnd());
  return m;
}

// ------------------------------------------------------------------ JSON

void WriteAssociationRulesJson(const AssociationRuleMiner& miner, const RuleSummary& summary,
                               std::span<const AssociationRule> rules, JsonWriter* out) {
  out->BeginObject();
  out->Field("as_of_ms", miner.now_ms());
  out->Field("window_ms", miner.options().window_ms);
  out->Field("baskets", summary.baskets);
  out->Field("complete", summary.complete);
  out->Field("exact", summary.exact);
  out->Key("rules");
  out->BeginArray();
  for (const AssociationRule& r : rules) {
    out->BeginObject();
    out->Field("antecedent", miner.item_name(r.antecedent));
    out->Field("consequent", miner.item_name(r.consequent));
    out->Field("support", r.support);
    out->Field("confidence", r.confidence);
    out->Field("lift", r.lift);
    out->Field("pair_count", r.pair_count);
    out->Field("pair_count_upper", r.pair_count_upper);
    out->Field("antecedent_count", r.antecedent_count);
    out->Field("consequent_count", r.consequent_count);
    out->Field("exact", r.exact);
    out->EndObject();
  }
  out->EndArray();
  out->EndObject();
}

}  // namespace crmstream::models
