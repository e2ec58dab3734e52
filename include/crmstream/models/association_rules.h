// Co-purchase association rules ("customers who buy A also buy B") over a
// sliding event-time window, learnt one purchase line at a time.
//
// A basket is the set of distinct items of one order (the `order_id` of the
// purchase events). Each line adds its item to its order's basket and, if
// the item is new to the basket, counts the item once and every pair it
// forms with the items already there. So the counts are current after every
// line, and no "order complete" signal is needed. The window holds the
// baskets whose time (that of their first line) lies in (now - window, now],
// where now is the latest event time seen; a basket leaving the window takes
// its item and pair counts with it (every basket of the window is kept, as
// item indices, for that). For a stream in event-time order (an order's
// lines arriving together, as in a shop's log) the counts equal a batch
// count over the baskets of the window; a basket that arrives out of order
// leaves the window only after the baskets that arrived before it, and a
// line older than the window is ignored (counted as late).
//
// Rules A -> B are read off the counts: support = n(AB) / baskets,
// confidence = n(AB) / n(A), lift = confidence / (n(B) / baskets), each
// above its floor (RuleFloors).
//
// Memory is bounded, by this policy:
// - pairs: up to `max_pairs` distinct pairs are counted exactly. Beyond that
//   the pair table is a Space-Saving summary (Metwally, Agrawal, El Abbadi,
//   ICDT 2005) adapted to expiry: a new pair replaces the pair with the
//   smallest count, inheriting that count as its error. Every pair's count is
//   then an interval that always holds the true window count:
//       upper = count,  lower = count - error
//   and a pair that is not in the table has a true count of at most
//   unmonitored_bound() (the largest count evicted from the baskets still in
//   the window). Without expiry this is Space-Saving's guarantee: error <=
//   N / max_pairs for N pair occurrences; with expiry the bounds above stay
//   valid and become exact again once the baskets present at the evictions
//   have left the window. A rule enters the output by its guaranteed
//   (lower) count, so every rule reported truly clears the floors; rules say
//   whether their count is exact, and RuleSummary::complete says whether a
//   rule above the floors could be missing.
// - items: up to `max_items` distinct items are tracked (the catalogue);
//   lines of further items are counted as untracked and otherwise ignored.
// - baskets: up to `max_basket_items` distinct items per basket are counted
//   (the pair count of a basket is quadratic); further lines are counted as
//   overflow. Up to `max_window_items` basket items are kept for expiry; past
//   that the oldest baskets leave the window early (counted).
//
// Merge is exact where the caps are not hit: the other miner's baskets are
// replayed into this one in event-time order (the window is the union of
// both), so two partitions' miners make the miner of the whole stream.
//
// Per line the cost is O(items already in the basket) table updates; a line
// allocates only when a table or the basket log grows (amortised), a new
// item is named, or a basket exceeds the largest earlier basket. Not
// thread-safe: one instance per partition, combined by Merge.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "crmstream/common/json_writer.h"
#include "crmstream/common/status.h"
#include "crmstream/models/flat_index_internal.h"

namespace crmstream::models {

struct AssociationRulesOptions {
  // Length of the sliding window of event time, ms (> 0). Default 30 days.
  int64_t window_ms = int64_t{30} * 86'400'000;
  // Distinct pairs counted exactly before the Space-Saving policy starts;
  // in [16, 2^28]. About 60 bytes per pair at the cap.
  uint32_t max_pairs = 1u << 21;
  // Distinct items tracked; in [2, 2^24].
  uint32_t max_items = 1u << 20;
  // Distinct items counted per basket; in [2, 65536].
  uint32_t max_basket_items = 4096;
  // Basket items kept for expiry (sum of basket sizes); in [1, 2^32).
  uint64_t max_window_items = uint64_t{1} << 26;

  Status Validate() const;
};

// What one line did.
enum class LineOutcome : uint8_t {
  kCounted = 0,     // a new item of its basket: item and pairs counted
  kRepeat,          // the item was already in the basket (counted once)
  kLate,            // older than the window: ignored
  kUntrackedItem,   // the item table is full and the item is new
  kBasketOverflow,  // the basket already has max_basket_items items
};

struct RuleFloors {
  // Share of the window's baskets holding both items, in [0, 1].
  double min_support = 0.001;
  // P(B | A), in [0, 1].
  double min_confidence = 0.1;
  // confidence / P(B), >= 0; 1 means "no better than chance".
  double min_lift = 1.0;
  // Baskets holding both items, >= 1 (a floor in counts beside the share).
  uint32_t min_pair_count = 2;

  Status Validate() const;
};

struct AssociationRule {
  uint32_t antecedent = 0;  // item index (AssociationRuleMiner::item_name)
  uint32_t consequent = 0;
  // Baskets with both: the guaranteed count (the true one when exact) and
  // an upper bound; support, confidence and lift use the guaranteed count.
  uint32_t pair_count = 0;
  uint32_t pair_count_upper = 0;
  uint32_t antecedent_count = 0;
  uint32_t consequent_count = 0;
  double support = 0.0;
  double confidence = 0.0;
  double lift = 0.0;
  bool exact = true;  // pair_count is the true count (== pair_count_upper)
};

struct RuleSummary {
  uint64_t baskets = 0;     // in the window
  uint64_t pairs = 0;       // distinct pairs in the table
  uint64_t candidates = 0;  // pairs at or above the count floors
  // No pair missing from the table can reach the support floor, so no rule
  // above the floors is missing.
  bool complete = true;
  // Every rule's counts are exact.
  bool exact = true;
};

// Counters since creation (they add up on Merge).
struct AssociationRulesCounters {
  uint64_t lines = 0;
  uint64_t counted = 0;
  uint64_t repeats = 0;
  uint64_t late = 0;
  uint64_t untracked_items = 0;
  uint64_t basket_overflow = 0;
  uint64_t baskets_started = 0;
  uint64_t baskets_expired_early = 0;  // pushed out by max_window_items
  uint64_t pairs_evicted = 0;          // Space-Saving replacements
};

// A pair's window count as an interval that holds the true count.
struct PairCount {
  uint32_t upper = 0;
  uint32_t lower = 0;
  bool monitored = false;
};

class AssociationRuleMiner {
 public:
  static constexpr uint16_t kBlobVersion = 1;
  static constexpr bool kExactMerge = true;  // below the caps

  static Result<AssociationRuleMiner> Create(const AssociationRulesOptions& options);

  // One purchase line: `item_id` bought in order `order_id` at
  // `timestamp_ms`. Also moves the window forward to the line's time.
  LineOutcome AddLine(std::string_view order_id, std::string_view item_id, int64_t timestamp_ms);
  // Moves the window forward without a line (a quiet period).
  void AdvanceTo(int64_t timestamp_ms);

  // Every rule above the floors, by descending lift, then support, then item
  // indices. `out` is reused.
  RuleSummary Rules(const RuleFloors& floors, std::vector<AssociationRule>* out) const;
  // The rules whose antecedent is `item`, by descending confidence, at most
  // `k` (0 = all). Empty when the item is unknown.
  RuleSummary RulesFor(std::string_view item, const RuleFloors& floors, size_t k,
                       std::vector<AssociationRule>* out) const;

  // Index of a named item, or -1.
  int64_t FindItem(std::string_view item) const;
  std::string_view item_name(uint32_t item) const { return items_.name(item); }
  // Baskets of the window holding the item (exact).
  uint32_t item_count(uint32_t item) const { return item_counts_[item]; }
  size_t items() const { return items_.size(); }
  // The window count of the pair {a, b}, as an interval.
  PairCount Pair(uint32_t a, uint32_t b) const;
  // Baskets in the window.
  uint64_t baskets() const { return basket_count_; }
  int64_t now_ms() const { return now_ms_; }
  // Upper bound of the window count of any pair not in the table (0 while
  // nothing evicted is still in the window).
  uint32_t unmonitored_bound() const;
  // True while every count is exact (nothing evicted affects the window).
  bool exact() const;
  size_t pairs() const { return live_entries_; }
  const AssociationRulesCounters& counters() const { return counters_; }
  const AssociationRulesOptions& options() const { return options_; }
  // Approximate bytes of state held.
  size_t memory_bytes() const;

  // Replays `other`'s window into this one (see above). InvalidArgument if
  // the window lengths differ.
  Status Merge(const AssociationRuleMiner& other);

  // Versioned blob (BlobKind::kAssociationRules). Deserialize(Serialize())
  // behaves identically from then on.
  std::string Serialize() const;
  static Result<AssociationRuleMiner> Deserialize(std::string_view blob);

 private:
  struct Basket {
    int64_t timestamp_ms = 0;
    uint64_t order_key = 0;
    uint64_t seq = 0;
    std::vector<uint32_t> items;
  };
  struct PairEntry {
    uint64_t key = 0;         // (low item << 32) | high item
    uint32_t count = 0;       // upper bound of the window count
    uint32_t error = 0;       // inherited at insertion (0: exact entry)
    uint32_t old_exact = 0;   // exact increments from baskets older than insertion
    uint32_t heap_pos = 0;    // position in heap_ while it is active
    uint64_t insert_seq = 0;  // next basket seq when inserted
    uint32_t generation = 0;  // bumped when the slot is reused
    bool live = false;
  };
  struct Bound {  // a count evicted while baskets up to `until_seq` were live
    uint32_t value;
    uint64_t until_seq;
  };
  struct PendingFix {
    uint32_t entry;
    uint32_t generation;
    uint64_t insert_seq;
  };

  explicit AssociationRuleMiner(const AssociationRulesOptions& options);

  uint32_t InternItem(std::string_view item);
  Basket& BasketAt(uint64_t seq) { return log_[(log_head_ + (seq - first_seq_)) % log_.size()]; }
  const Basket& BasketAt(uint64_t seq) const {
    return log_[(log_head_ + (seq - first_seq_)) % log_.size()];
  }
  int64_t Cutoff() const;
  LineOutcome AddToOrder(uint64_t order_key, uint32_t item, int64_t timestamp_ms);
  Basket& StartBasket(int64_t timestamp_ms, uint64_t order_key);
  void AddToBasket(Basket& basket, uint32_t item);
  void ExpireFront();
  void Expire();
  void IncrementPair(uint32_t a, uint32_t b, uint64_t basket_seq);
  void DecrementPair(uint32_t a, uint32_t b, uint64_t basket_seq);
  uint32_t NewEntry(uint64_t key, uint32_t count, uint32_t error);
  void FreeEntry(uint32_t e);
  void ApplyDueFixes();
  uint32_t CurrentBound() const;
  void HeapUp(uint32_t pos);
  void HeapDown(uint32_t pos);
  void HeapRemove(uint32_t pos);
  void ActivateHeap();
  // Appends the rule a -> b if its guaranteed count clears the floors;
  // true when only its upper bound does (the rule may be missing).
  bool CollectRule(uint32_t a, uint32_t b, const PairEntry& e, const RuleFloors& floors,
                   uint32_t min_count, std::vector<AssociationRule>* out) const;
  uint32_t MinCount(const RuleFloors& floors) const;

  AssociationRulesOptions options_;
  int64_t now_ms_ = INT64_MIN;
  AssociationRulesCounters counters_;

  // Items: names and exact window counts.
  internal::ItemDictionary items_;
  std::vector<uint32_t> item_counts_;

  // Baskets of the window, a ring in arrival order; seq numbers are
  // consecutive from first_seq_.
  std::vector<Basket> log_;
  size_t log_head_ = 0;
  uint64_t first_seq_ = 0;
  uint64_t basket_count_ = 0;
  uint64_t window_items_ = 0;
  internal::FlatIndex order_index_;  // order key -> basket seq (low 32 bits)

  // Pairs: entries with stable indices, their index by key, a free list, and
  // (once the table has been full) a min-heap by count.
  std::vector<PairEntry> entries_;
  std::vector<uint32_t> free_entries_;
  internal::FlatIndex pair_index_;  // pair key -> entry
  size_t live_entries_ = 0;
  bool heap_active_ = false;
  std::vector<uint32_t> heap_;
  // Evicted counts still bounding unmonitored pairs (values decreasing from
  // front to back, so the front is the bound), and inherited entries waiting
  // for the baskets before their insertion to leave.
  std::vector<Bound> bounds_;
  size_t bounds_head_ = 0;
  std::vector<PendingFix> fixes_;
  size_t fixes_head_ = 0;
  size_t inexact_entries_ = 0;
};

// Writes one rules snapshot as a JSON object:
//   {"as_of_ms":..,"window_ms":..,"baskets":..,"complete":..,"exact":..,
//    "rules":[{"antecedent":"A","consequent":"B","support":..,"confidence":..,
//              "lift":..,"pair_count":..,"pair_count_upper":..,"antecedent_count":..,
//              "consequent_count":..,"exact":true},...]}
void WriteAssociationRulesJson(const AssociationRuleMiner& miner, const RuleSummary& summary,
                               std::span<const AssociationRule> rules, JsonWriter* out);

}  // namespace crmstream::models
