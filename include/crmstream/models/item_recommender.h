// Product recommendations by incremental item-item collaborative filtering:
// "customers who bought what you bought also bought ...".
//
// Learning, one purchase line at a time: when a customer buys an item they
// have not bought before (within the history kept for them), the item's
// customer count n(i) grows by one and so does its co-occurrence C(i, j)
// with every item j of the customer's history. Without decay these are the
// counts of the binary customer x item matrix, so the similarity
//     sim(i, j) = C(i, j) / (n(i)^alpha * n(j)^(1 - alpha))
// is the cosine of batch item-kNN at alpha = 1/2 (asymmetric cosine
// otherwise). With half-lives, C and n are exponentially decayed sums, each
// with its own half-life (forward decay: increments are stored scaled by
// 2^(t / half_life), so no count is touched as time passes; at any moment
// the true decayed similarities are the stored ones times one common factor,
// so rankings and explanations are exact).
//
// Recommending, for one customer: each item j not in the customer's history
// scores sum over history items h of w(h) * sim(h, j), where w(h) halves
// every `history_half_life_days` since the customer last bought h (1 when
// 0). The top N are returned with the (up to three) history items that
// contribute most to each: the explanation. A customer with no history gets
// the most popular items (by decayed customer count).
//
// Bounded memory, by this policy:
// - items: up to `max_items` (a catalogue); lines of further items are
//   counted as untracked.
// - neighbours: each item keeps at most `neighbours` co-occurring items, a
//   Space-Saving summary per row (Metwally et al., ICDT 2005): a new
//   neighbour replaces the one with the smallest count and inherits it, so a
//   kept count overestimates by at most (row total) / neighbours, and every
//   neighbour with more than that share of the row is kept. Below the cap the
//   counts are exact.
// - customers: up to `max_customers`, the least recently active forgotten
//   beyond; per customer the `history_size` most recently bought distinct
//   items (so "not yet bought" means not among those).
//
// Merge adds the counts (exact where no row was truncated and the two
// instances saw different customers, e.g. two partitions keyed by customer);
// customers are united.
//
// Observe costs O(history) hash lookups and allocates only when a table grows (a new item or
// customer beyond the capacity so far, a row growing towards `neighbours`); Recommend allocates
// nothing once its scratch space has grown to the catalogue. Not thread-safe: one instance per
// partition, combined by Merge.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "crmstream/common/json_writer.h"
#include "crmstream/common/status.h"
#include "crmstream/models/flat_index_internal.h"

namespace crmstream::models {

struct ItemRecommenderOptions {
  // Distinct items tracked, in [2, 2^24].
  uint32_t max_items = 1u << 20;
  // Customers remembered, in [1, 2^26].
  uint32_t max_customers = 1u << 22;
  // Distinct recent items remembered per customer, in [1, 4096].
  uint32_t history_size = 64;
  // Co-occurring items kept per item, in [1, 65536].
  uint32_t neighbours = 256;
  // Half-life of the co-occurrence counts C, days; 0 = no decay (batch
  // item-kNN counts). A short one favours what is bought together lately.
  double half_life_days = 0.0;
  // Half-life of the customer counts n (the normalisation and the
  // popularity fallback), days; 0 = no decay.
  double popularity_half_life_days = 0.0;
  // Half-life of a history item's weight in recommendations, days; 0 = all equal.
  double history_half_life_days = 0.0;
  // alpha of the similarity (0.5 = cosine), in [0, 1].
  double alpha = 0.5;

  Status Validate() const;
};

inline constexpr int kMaxExplainingItems = 3;

struct Recommendation {
  uint32_t item = 0;  // index (ItemRecommender::item_name)
  double score = 0.0;
  // History items contributing most to the score, largest first; `reasons`
  // of them are set (0 for a popularity fallback).
  std::array<uint32_t, kMaxExplainingItems> because{};
  std::array<double, kMaxExplainingItems> because_score{};
  int reasons = 0;
  bool popular = false;  // a popularity fallback, not a neighbour of the history
};

struct ItemRecommenderCounters {
  uint64_t lines = 0;
  uint64_t new_for_customer = 0;  // lines that taught co-occurrences
  uint64_t untracked_items = 0;
  uint64_t customers_forgotten = 0;
  uint64_t neighbours_replaced = 0;  // Space-Saving replacements
};

class ItemRecommender {
 public:
  static constexpr uint16_t kBlobVersion = 1;
  static constexpr bool kExactMerge = true;  // below the caps, disjoint customers

  static Result<ItemRecommender> Create(const ItemRecommenderOptions& options);

  // One purchase line. True when the item was new for the customer (and so
  // taught the model something).
  bool Observe(std::string_view customer_id, std::string_view item_id, int64_t timestamp_ms);

  // The customer's top `n` items not yet bought, best first, as of
  // `timestamp_ms` (the decay and the history weights). `out` is reused.
  void Recommend(std::string_view customer_id, int64_t timestamp_ms, size_t n,
                 std::vector<Recommendation>* out);
  // Recommendations for an explicit history (items bought, with when), e.g.
  // a session's basket; unknown items are ignored.
  void RecommendFor(std::span<const uint32_t> history_items, std::span<const int64_t> history_ms,
                    int64_t timestamp_ms, size_t n, std::vector<Recommendation>* out);

  // The similarity of two items as defined above, as of the latest purchase
  // seen (0 when not neighbours).
  double Similarity(uint32_t a, uint32_t b) const;
  int64_t FindItem(std::string_view item) const;
  std::string_view item_name(uint32_t item) const { return items_.name(item); }
  size_t items() const { return items_.size(); }
  size_t customers() const { return customer_count_; }
  // Whether the customer bought anything (Observe) since the last call for
  // them, clearing the mark: the purchases a crm.recommendations record
  // answers. Not serialised (a checkpoint follows the records' emission).
  bool TakeBought(std::string_view customer_id);
  // The customer's remembered items (unordered); empty when unknown.
  void History(std::string_view customer_id, std::vector<uint32_t>* out) const;
  const ItemRecommenderCounters& counters() const { return counters_; }
  const ItemRecommenderOptions& options() const { return options_; }
  size_t memory_bytes() const;
  // Heap bytes one remembered customer costs under `options` (its history
  // slots, LRU links and index entry) at most, the tables' growth included.
  static size_t BytesPerCustomer(const ItemRecommenderOptions& options);

  // InvalidArgument when the options differ.
  Status Merge(const ItemRecommender& other);

  // Versioned blob (BlobKind::kItemRecommender).
  std::string Serialize() const;
  static Result<ItemRecommender> Deserialize(std::string_view blob);

 private:
  struct Neighbour {
    uint32_t item;
    double count;
  };
  struct Customer {
    uint64_t key = 0;
    uint32_t prev = UINT32_MAX;  // LRU list, most recent at head_
    uint32_t next = UINT32_MAX;
    uint32_t size = 0;    // history entries used
    bool bought = false;  // since the last TakeBought
  };

  explicit ItemRecommender(const ItemRecommenderOptions& options);

  uint32_t InternItem(std::string_view item);
  uint32_t CustomerSlot(uint64_t key);
  void Touch(uint32_t c);
  void Unlink(uint32_t c);
  void AddCooccurrence(uint32_t a, uint32_t b, double w);
  void UpdatePopular(uint32_t item);
  void RefreshNorm(uint32_t item);
  struct Scales {
    double cooccurrence;
    double popularity;
  };
  // The forward-decay weights of an increment at `timestamp_ms`.
  Scales ScaleAt(int64_t timestamp_ms);
  // Moves the decay reference, rescaling every stored count.
  void Rebase(int64_t reference_ms);
  // The factor from stored to true similarities as of `at_ms`.
  double DecayFactor(int64_t at_ms) const;
  double HistoryWeight(int64_t bought_ms, int64_t now_ms) const;
  void Score(std::span<const uint32_t> items, std::span<const int64_t> times, int64_t now_ms,
             size_t n, std::vector<Recommendation>* out);
  void ResizeScratch();

  ItemRecommenderOptions options_;
  double decay_per_ms_ = 0.0;             // log2 scale per ms of C (0 without decay)
  double popularity_decay_per_ms_ = 0.0;  // of n
  int64_t reference_ms_ = 0;              // counts are scaled by 2^((t - reference) * decay)
  bool has_reference_ = false;
  int64_t latest_ms_ = INT64_MIN;  // the latest purchase time seen
  ItemRecommenderCounters counters_;

  internal::ItemDictionary items_;
  std::vector<double> item_customers_;  // n(i), scaled
  std::vector<double> candidate_norm_;  // n(i)^(1 - alpha), cached
  std::vector<std::vector<Neighbour>> rows_;
  internal::FlatIndex neighbour_index_;  // (item << 32 | neighbour) -> position in its row

  std::vector<Customer> customers_;
  std::vector<uint32_t> history_items_;  // history_size per customer
  std::vector<int64_t> history_ms_;
  internal::FlatIndex customer_index_;
  size_t customer_count_ = 0;
  uint32_t lru_head_ = UINT32_MAX;
  uint32_t lru_tail_ = UINT32_MAX;

  // Recommend's scratch, one entry per item; `stamp_` marks the entries of
  // the current call so nothing needs clearing.
  std::vector<double> score_;
  std::vector<uint32_t> stamp_;
  std::vector<uint32_t> in_history_;
  std::vector<std::array<uint32_t, kMaxExplainingItems>> best_from_;
  std::vector<std::array<double, kMaxExplainingItems>> best_score_;
  std::vector<uint32_t> touched_;
  uint32_t current_stamp_ = 0;
  // The most popular items (by customer count), best first: the fallback.
  std::vector<uint32_t> popular_;
  std::vector<uint32_t> history_scratch_;
  std::vector<int64_t> history_ms_scratch_;
};

// Writes one customer's recommendations as a JSON object:
//   {"customer_id":"..","as_of_ms":..,"items":[{"item":"B","score":..,
//     "because":["A",..],"popular":false},...]}
void WriteRecommendationsJson(const ItemRecommender& model, std::string_view customer_id,
                              int64_t as_of_ms, std::span<const Recommendation> items,
                              JsonWriter* out);

}  // namespace crmstream::models
