#include "crmstream/models/item_recommender.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "crmstream/common/binary_io.h"
#include "crmstream/common/hash.h"

namespace crmstream::models {
namespace {

constexpr double kMsPerDay = 86'400'000.0;
// Items kept in the exact popularity ranking (the cold-start fallback).
constexpr size_t kPopularSize = 128;
// Forward-decay scales are rebased before they leave the exponent range.
constexpr double kMaxLog2Scale = 400.0;

}  // namespace

Status ItemRecommenderOptions::Validate() const {
  if (max_items < 2 || max_items > (1u << 24)) {
    return Status::InvalidArgument("max_items must be in [2, 2^24]");
  }
  if (max_customers < 1 || max_customers > (1u << 26)) {
    return Status::InvalidArgument("max_customers must be in [1, 2^26]");
  }
  if (history_size < 1 || history_size > 4096) {
    return Status::InvalidArgument("history_size must be in [1, 4096]");
  }
  if (neighbours < 1 || neighbours > 65536) {
    return Status::InvalidArgument("neighbours must be in [1, 65536]");
  }
  if (!(half_life_days >= 0.0) || !std::isfinite(half_life_days)) {
    return Status::InvalidArgument("half_life_days must be finite and >= 0");
  }
  if (!(popularity_half_life_days >= 0.0) || !std::isfinite(popularity_half_life_days)) {
    return Status::InvalidArgument("popularity_half_life_days must be finite and >= 0");
  }
  if (!(history_half_life_days >= 0.0) || !std::isfinite(history_half_life_days)) {
    return Status::InvalidArgument("history_half_life_days must be finite and >= 0");
  }
  if (!(alpha >= 0.0 && alpha <= 1.0)) return Status::InvalidArgument("alpha must be in [0, 1]");
  return Status::OK();
}

ItemRecommender::ItemRecommender(const ItemRecommenderOptions& options)
    : options_(options),
      decay_per_ms_(options.half_life_days > 0.0 ? 1.0 / (options.half_life_days * kMsPerDay)
                                                 : 0.0),
      popularity_decay_per_ms_(options.popularity_half_life_days > 0.0
                                   ? 1.0 / (options.popularity_half_life_days * kMsPerDay)
                                   : 0.0) {
  history_scratch_.reserve(options.history_size);
  history_ms_scratch_.reserve(options.history_size);
}

Result<ItemRecommender> ItemRecommender::Create(const ItemRecommenderOptions& options) {
  CRM_RETURN_NOT_OK(options.Validate());
  return ItemRecommender(options);
}

int64_t ItemRecommender::FindItem(std::string_view item) const { return items_.Find(item); }

uint32_t ItemRecommender::InternItem(std::string_view item) {
  bool added = false;
  const uint32_t i = items_.Intern(item, options_.max_items, &added);
  if (added) {
    item_customers_.push_back(0.0);
    candidate_norm_.push_back(0.0);
    rows_.emplace_back();
  }
  return i;
}

ItemRecommender::Scales ItemRecommender::ScaleAt(int64_t timestamp_ms) {
  if (decay_per_ms_ == 0.0 && popularity_decay_per_ms_ == 0.0) return {1.0, 1.0};
  if (!has_reference_) {
    reference_ms_ = timestamp_ms;
    has_reference_ = true;
  }
  const double elapsed = static_cast<double>(timestamp_ms - reference_ms_);
  if (std::max(elapsed * decay_per_ms_, elapsed * popularity_decay_per_ms_) > kMaxLog2Scale) {
    Rebase(timestamp_ms);
    return {1.0, 1.0};
  }
  return {std::exp2(elapsed * decay_per_ms_), std::exp2(elapsed * popularity_decay_per_ms_)};
}

void ItemRecommender::Rebase(int64_t reference_ms) {
  const double elapsed = static_cast<double>(reference_ms - reference_ms_);
  const double cooccurrence = std::exp2(-elapsed * decay_per_ms_);
  const double popularity = std::exp2(-elapsed * popularity_decay_per_ms_);
  for (double& n : item_customers_) n *= popularity;
  for (size_t i = 0; i < item_customers_.size(); ++i) RefreshNorm(static_cast<uint32_t>(i));
  for (auto& row : rows_) {
    for (Neighbour& nb : row) nb.count *= cooccurrence;
  }
  reference_ms_ = reference_ms;
}

void ItemRecommender::Unlink(uint32_t c) {
  Customer& x = customers_[c];
  if (x.prev != UINT32_MAX) customers_[x.prev].next = x.next;
  if (x.next != UINT32_MAX) customers_[x.next].prev = x.prev;
  if (lru_head_ == c) lru_head_ = x.next;
  if (lru_tail_ == c) lru_tail_ = x.prev;
  x.prev = x.next = UINT32_MAX;
}

void ItemRecommender::Touch(uint32_t c) {
  if (lru_head_ == c) return;
  Unlink(c);
  Customer& x = customers_[c];
  x.next = lru_head_;
  if (lru_head_ != UINT32_MAX) customers_[lru_head_].prev = c;
  lru_head_ = c;
  if (lru_tail_ == UINT32_MAX) lru_tail_ = c;
}

uint32_t ItemRecommender::CustomerSlot(uint64_t key) {
  const uint32_t found = customer_index_.Find(key);
  if (found != internal::FlatIndex::kMissing) return found;
  uint32_t c;
  if (customer_count_ < options_.max_customers) {
    c = static_cast<uint32_t>(customers_.size());
    customers_.emplace_back();
    history_items_.resize(history_items_.size() + options_.history_size);
    history_ms_.resize(history_ms_.size() + options_.history_size);
    ++customer_count_;
  } else {
    // The least recently active customer makes room.
    c = lru_tail_;
    customer_index_.Erase(customers_[c].key);
    Unlink(c);
    ++counters_.customers_forgotten;
  }
  customers_[c].key = key;
  customers_[c].size = 0;
  customers_[c].bought = false;
  customer_index_.Insert(key, c);
  return c;
}

void ItemRecommender::AddCooccurrence(uint32_t a, uint32_t b, double w) {
  std::vector<Neighbour>& row = rows_[a];
  const uint64_t key = (uint64_t{a} << 32) | b;
  const uint32_t at = neighbour_index_.Find(key);
  if (at != internal::FlatIndex::kMissing) {
    row[at].count += w;
    return;
  }
  if (row.size() < options_.neighbours) {
    neighbour_index_.Insert(key, static_cast<uint32_t>(row.size()));
    row.push_back({b, w});
    return;
  }
  // Space-Saving: the smallest count makes room and is inherited.
  auto smallest =
      std::min_element(row.begin(), row.end(),
                       [](const Neighbour& x, const Neighbour& y) { return x.count < y.count; });
  neighbour_index_.Erase((uint64_t{a} << 32) | smallest->item);
  neighbour_index_.Insert(key, static_cast<uint32_t>(smallest - row.begin()));
  smallest->item = b;
  smallest->count += w;
  ++counters_.neighbours_replaced;
}

void ItemRecommender::UpdatePopular(uint32_t item) {
  auto it = std::find(popular_.begin(), popular_.end(), item);
  if (it == popular_.end()) {
    if (popular_.size() < kPopularSize) {
      popular_.push_back(item);
    } else if (item_customers_[item] > item_customers_[popular_.back()]) {
      popular_.back() = item;
    } else {
      return;
    }
    it = popular_.end() - 1;
  }
  // Counts only grow (decay scales them all alike): bubble towards the front.
  while (it != popular_.begin() && item_customers_[*(it - 1)] < item_customers_[*it]) {
    std::iter_swap(it - 1, it);
    --it;
  }
}

void ItemRecommender::RefreshNorm(uint32_t item) {
  const double n = item_customers_[item];
  candidate_norm_[item] = options_.alpha == 0.5 ? std::sqrt(n) : std::pow(n, 1.0 - options_.alpha);
}

bool ItemRecommender::Observe(std::string_view customer_id, std::string_view item_id,
                              int64_t timestamp_ms) {
  ++counters_.lines;
  const uint32_t item = InternItem(item_id);
  if (item == internal::FlatIndex::kMissing) {
    ++counters_.untracked_items;
    return false;
  }
  const Scales w = ScaleAt(timestamp_ms);
  latest_ms_ = std::max(latest_ms_, timestamp_ms);
  const uint32_t c = CustomerSlot(Hash64(customer_id));
  Touch(c);
  customers_[c].bought = true;
  const size_t base = static_cast<size_t>(c) * options_.history_size;
  uint32_t* items = history_items_.data() + base;
  int64_t* times = history_ms_.data() + base;
  const uint32_t size = customers_[c].size;
  for (uint32_t k = 0; k < size; ++k) {
    if (items[k] == item) {
      times[k] = std::max(times[k], timestamp_ms);
      return false;
    }
  }
  for (uint32_t k = 0; k < size; ++k) {
    AddCooccurrence(item, items[k], w.cooccurrence);
    AddCooccurrence(items[k], item, w.cooccurrence);
  }
  item_customers_[item] += w.popularity;
  RefreshNorm(item);
  UpdatePopular(item);
  if (size < options_.history_size) {
    items[size] = item;
    times[size] = timestamp_ms;
    ++customers_[c].size;
  } else {
    const auto oldest = static_cast<size_t>(std::min_element(times, times + size) - times);
    items[oldest] = item;
    times[oldest] = timestamp_ms;
  }
  ++counters_.new_for_customer;
  return true;
}

double ItemRecommender::Similarity(uint32_t a, uint32_t b) const {
  if (a >= rows_.size() || b >= rows_.size()) return 0.0;
  const uint32_t at = neighbour_index_.Find((uint64_t{a} << 32) | b);
  if (at == internal::FlatIndex::kMissing) return 0.0;
  const double na = item_customers_[a];
  const double nb = item_customers_[b];
  if (na <= 0.0 || nb <= 0.0) return 0.0;
  return DecayFactor(latest_ms_) * rows_[a][at].count /
         (std::pow(na, options_.alpha) * std::pow(nb, 1.0 - options_.alpha));
}

double ItemRecommender::DecayFactor(int64_t at_ms) const {
  if (!has_reference_) return 1.0;
  // Stored C and n carry 2^(t / half-life) from their increments; as of
  // `at_ms` the true ratio C / n is the stored one times this.
  const double elapsed = static_cast<double>(at_ms - reference_ms_);
  return std::exp2(elapsed * (popularity_decay_per_ms_ - decay_per_ms_));
}

double ItemRecommender::HistoryWeight(int64_t bought_ms, int64_t now_ms) const {
  if (options_.history_half_life_days <= 0.0 || bought_ms >= now_ms) return 1.0;
  return std::exp2(-static_cast<double>(now_ms - bought_ms) /
                   (options_.history_half_life_days * kMsPerDay));
}

void ItemRecommender::ResizeScratch() {
  const size_t n = items_.size();
  if (score_.size() >= n) return;
  score_.resize(n);
  stamp_.resize(n, 0);
  in_history_.resize(n, 0);
  best_from_.resize(n);
  best_score_.resize(n);
  touched_.reserve(n);  // at most every item, so no call grows it
}

void ItemRecommender::Recommend(std::string_view customer_id, int64_t timestamp_ms, size_t n,
                                std::vector<Recommendation>* out) {
  history_scratch_.clear();
  history_ms_scratch_.clear();
  const uint32_t c = customer_index_.Find(Hash64(customer_id));
  if (c != internal::FlatIndex::kMissing) {
    const size_t base = static_cast<size_t>(c) * options_.history_size;
    history_scratch_.assign(
        history_items_.begin() + static_cast<ptrdiff_t>(base),
        history_items_.begin() + static_cast<ptrdiff_t>(base + customers_[c].size));
    history_ms_scratch_.assign(
        history_ms_.begin() + static_cast<ptrdiff_t>(base),
        history_ms_.begin() + static_cast<ptrdiff_t>(base + customers_[c].size));
  }
  Score(history_scratch_, history_ms_scratch_, timestamp_ms, n, out);
}

void ItemRecommender::RecommendFor(std::span<const uint32_t> history_items,
                                   std::span<const int64_t> history_ms, int64_t timestamp_ms,
                                   size_t n, std::vector<Recommendation>* out) {
  Score(history_items,
        history_ms.size() == history_items.size() ? history_ms : std::span<const int64_t>(),
        timestamp_ms, n, out);
}

void ItemRecommender::Score(std::span<const uint32_t> history, std::span<const int64_t> times,
                            int64_t now_ms, size_t n, std::vector<Recommendation>* out) {
  out->clear();
  ResizeScratch();
  if (++current_stamp_ == 0) {
    std::fill(stamp_.begin(), stamp_.end(), 0);
    std::fill(in_history_.begin(), in_history_.end(), 0);
    current_stamp_ = 1;
  }
  const uint32_t stamp = current_stamp_;
  const size_t items = items_.size();
  for (uint32_t h : history) {
    if (h < items) in_history_[h] = stamp;
  }
  touched_.clear();
  for (size_t k = 0; k < history.size(); ++k) {
    const uint32_t h = history[k];
    if (h >= items || item_customers_[h] <= 0.0) continue;
    const double wh = times.empty() ? 1.0 : HistoryWeight(times[k], now_ms);
    // n(h)^alpha * n(j)^(1 - alpha), with n^(1 - alpha) cached per item.
    const double norm_h = item_customers_[h] / candidate_norm_[h];
    for (const Neighbour& nb : rows_[h]) {
      const uint32_t j = nb.item;
      if (in_history_[j] == stamp || item_customers_[j] <= 0.0) continue;
      const double s = wh * nb.count / (norm_h * candidate_norm_[j]);
      if (stamp_[j] != stamp) {
        stamp_[j] = stamp;
        score_[j] = 0.0;
        best_score_[j].fill(-1.0);
        touched_.push_back(j);
      }
      score_[j] += s;
      // Keep the three largest contributions, largest first.
      auto& bs = best_score_[j];
      auto& bf = best_from_[j];
      for (int r = 0; r < kMaxExplainingItems; ++r) {
        if (s <= bs[r]) continue;
        for (int q = kMaxExplainingItems - 1; q > r; --q) {
          bs[q] = bs[q - 1];
          bf[q] = bf[q - 1];
        }
        bs[r] = s;
        bf[r] = h;
        break;
      }
    }
  }
  const size_t take = std::min(n, touched_.size());
  const auto better = [this](uint32_t a, uint32_t b) {
    return score_[a] != score_[b] ? score_[a] > score_[b] : a < b;
  };
  std::partial_sort(touched_.begin(), touched_.begin() + static_cast<ptrdiff_t>(take),
                    touched_.end(), better);
  const double factor = DecayFactor(now_ms);
  for (size_t i = 0; i < take; ++i) {
    const uint32_t j = touched_[i];
    Recommendation r;
    r.item = j;
    r.score = factor * score_[j];
    for (int q = 0; q < kMaxExplainingItems && best_score_[j][q] >= 0.0; ++q) {
      r.because[q] = best_from_[j][q];
      r.because_score[q] = factor * best_score_[j][q];
      r.reasons = q + 1;
    }
    out->push_back(r);
  }
  // Too few neighbours (a new or unusual customer): the most popular items.
  for (uint32_t j : popular_) {
    if (out->size() >= n) break;
    if (in_history_[j] == stamp || stamp_[j] == stamp) continue;
    Recommendation r;
    r.item = j;
    r.popular = true;
    out->push_back(r);
  }
}

bool ItemRecommender::TakeBought(std::string_view customer_id) {
  const uint32_t c = customer_index_.Find(Hash64(customer_id));
  if (c == internal::FlatIndex::kMissing || !customers_[c].bought) return false;
  customers_[c].bought = false;
  return true;
}

void ItemRecommender::History(std::string_view customer_id, std::vector<uint32_t>* out) const {
  out->clear();
  const uint32_t c = customer_index_.Find(Hash64(customer_id));
  if (c == internal::FlatIndex::kMissing) return;
  const size_t base = static_cast<size_t>(c) * options_.history_size;
  out->assign(history_items_.begin() + static_cast<ptrdiff_t>(base),
              history_items_.begin() + static_cast<ptrdiff_t>(base + customers_[c].size));
}

size_t ItemRecommender::memory_bytes() const {
  size_t bytes =
      sizeof(*this) + items_.memory_bytes() + customer_index_.memory_bytes() +
      item_customers_.capacity() * sizeof(double) +
      rows_.capacity() * sizeof(std::vector<Neighbour>) + customers_.capacity() * sizeof(Customer) +
      history_items_.capacity() * sizeof(uint32_t) + history_ms_.capacity() * sizeof(int64_t) +
      score_.capacity() * (sizeof(double) + 2 * sizeof(uint32_t) +
                           kMaxExplainingItems * (sizeof(uint32_t) + sizeof(double)));
  for (const auto& row : rows_) bytes += row.capacity() * sizeof(Neighbour);
  return bytes;
}

size_t ItemRecommender::BytesPerCustomer(const ItemRecommenderOptions& options) {
  // At the worst point of the tables' doubling: the customer and history
  // arrays twice the customers, the index's 16-byte slots four times.
  constexpr size_t kIndexBytes = 4 * 16;
  return 2 * (sizeof(Customer) + options.history_size * (sizeof(uint32_t) + sizeof(int64_t))) +
         kIndexBytes;
}

Status ItemRecommender::Merge(const ItemRecommender& other) {
  if (&other == this) return Status::InvalidArgument("ItemRecommender: cannot merge itself");
  const ItemRecommenderOptions& a = options_;
  const ItemRecommenderOptions& b = other.options_;
  if (a.max_items != b.max_items || a.max_customers != b.max_customers ||
      a.history_size != b.history_size || a.neighbours != b.neighbours ||
      a.half_life_days != b.half_life_days ||
      a.history_half_life_days != b.history_half_life_days || a.alpha != b.alpha) {
    return Status::InvalidArgument("ItemRecommender::Merge: options differ");
  }
  // Bring the other's counts to this instance's decay reference (the later
  // of the two, so no factor overflows).
  double factor_c = 1.0, factor_p = 1.0;
  if ((decay_per_ms_ > 0.0 || popularity_decay_per_ms_ > 0.0) && other.has_reference_) {
    if (!has_reference_) {
      reference_ms_ = other.reference_ms_;
      has_reference_ = true;
    }
    if (other.reference_ms_ > reference_ms_) Rebase(other.reference_ms_);
    const double elapsed = static_cast<double>(other.reference_ms_ - reference_ms_);
    factor_c = std::exp2(elapsed * decay_per_ms_);
    factor_p = std::exp2(elapsed * popularity_decay_per_ms_);
  }
  std::vector<uint32_t> mapped(other.items_.size(), internal::FlatIndex::kMissing);
  for (uint32_t i = 0; i < other.items_.size(); ++i) {
    mapped[i] = InternItem(other.items_.name(i));
    if (mapped[i] != internal::FlatIndex::kMissing) {
      item_customers_[mapped[i]] += other.item_customers_[i] * factor_p;
      RefreshNorm(mapped[i]);
    }
  }
  for (size_t i = 0; i < other.rows_.size(); ++i) {
    if (mapped[i] == internal::FlatIndex::kMissing) continue;
    for (const Neighbour& nb : other.rows_[i]) {
      if (mapped[nb.item] != internal::FlatIndex::kMissing) {
        AddCooccurrence(mapped[i], mapped[nb.item], nb.count * factor_c);
      }
    }
  }
  // Customers, oldest activity first so that the LRU order interleaves.
  for (uint32_t c = other.lru_tail_; c != UINT32_MAX; c = other.customers_[c].prev) {
    const Customer& from = other.customers_[c];
    const uint32_t into = CustomerSlot(from.key);
    Touch(into);
    const size_t src = static_cast<size_t>(c) * other.options_.history_size;
    for (uint32_t k = 0; k < from.size; ++k) {
      const uint32_t item = mapped[other.history_items_[src + k]];
      if (item == internal::FlatIndex::kMissing) continue;
      const size_t base = static_cast<size_t>(into) * options_.history_size;
      uint32_t* items = history_items_.data() + base;
      int64_t* times = history_ms_.data() + base;
      uint32_t& size = customers_[into].size;
      const int64_t t = other.history_ms_[src + k];
      auto found = std::find(items, items + size, item);
      if (found != items + size) {
        times[found - items] = std::max(times[found - items], t);
      } else if (size < options_.history_size) {
        items[size] = item;
        times[size++] = t;
      } else {
        const auto oldest = std::min_element(times, times + size) - times;
        if (times[oldest] < t) {
          items[oldest] = item;
          times[oldest] = t;
        }
      }
    }
  }
  // The ranking of the merged counts.
  popular_.clear();
  std::vector<uint32_t> order(items_.size());
  for (uint32_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [this](uint32_t x, uint32_t y) {
    return item_customers_[x] > item_customers_[y];
  });
  for (uint32_t i : order) {
    if (popular_.size() == kPopularSize || item_customers_[i] <= 0.0) break;
    popular_.push_back(i);
  }
  latest_ms_ = std::max(latest_ms_, other.latest_ms_);
  ItemRecommenderCounters& c = counters_;
  c.lines += other.counters_.lines;
  c.new_for_customer += other.counters_.new_for_customer;
  c.untracked_items += other.counters_.untracked_items;
  c.customers_forgotten += other.counters_.customers_forgotten;
  c.neighbours_replaced += other.counters_.neighbours_replaced;
  return Status::OK();
}

// ------------------------------------------------------------------ blob

std::string ItemRecommender::Serialize() const {
  std::string payload;
  BinaryWriter w(&payload);
  w.Put<uint32_t>(options_.max_items);
  w.Put<uint32_t>(options_.max_customers);
  w.Put<uint32_t>(options_.history_size);
  w.Put<uint32_t>(options_.neighbours);
  w.Put<double>(options_.half_life_days);
  w.Put<double>(options_.popularity_half_life_days);
  w.Put<double>(options_.history_half_life_days);
  w.Put<double>(options_.alpha);
  w.Put<uint8_t>(has_reference_ ? 1 : 0);
  w.Put<int64_t>(reference_ms_);
  w.Put<int64_t>(latest_ms_);
  const ItemRecommenderCounters& c = counters_;
  for (uint64_t v : {c.lines, c.new_for_customer, c.untracked_items, c.customers_forgotten,
                     c.neighbours_replaced}) {
    w.Put<uint64_t>(v);
  }
  w.Put<uint32_t>(static_cast<uint32_t>(items_.size()));
  for (uint32_t i = 0; i < items_.size(); ++i) {
    w.PutBytes(items_.name(i));
    w.Put<double>(item_customers_[i]);
    w.Put<uint32_t>(static_cast<uint32_t>(rows_[i].size()));
    for (const Neighbour& nb : rows_[i]) {
      w.Put<uint32_t>(nb.item);
      w.Put<double>(nb.count);
    }
  }
  w.PutArray<uint32_t>(popular_);
  // Customers from the least to the most recently active.
  w.Put<uint32_t>(static_cast<uint32_t>(customer_count_));
  for (uint32_t k = lru_tail_; k != UINT32_MAX; k = customers_[k].prev) {
    const Customer& x = customers_[k];
    const size_t base = static_cast<size_t>(k) * options_.history_size;
    w.Put<uint64_t>(x.key);
    w.PutArray<uint32_t>(std::span<const uint32_t>(history_items_).subspan(base, x.size));
    w.PutArray<int64_t>(std::span<const int64_t>(history_ms_).subspan(base, x.size));
  }
  return SealBlob(BlobKind::kItemRecommender, kBlobVersion, payload);
}

Result<ItemRecommender> ItemRecommender::Deserialize(std::string_view blob) {
  CRM_ASSIGN_OR_RETURN(const std::string_view payload,
                       OpenBlobPayload(blob, BlobKind::kItemRecommender, kBlobVersion));
  BinaryReader r(payload);
  const auto corrupt = [](const std::string& what) {
    return Status::Corruption("ItemRecommender blob: " + what);
  };
  ItemRecommenderOptions o;
  CRM_RETURN_NOT_OK(r.Get(&o.max_items));
  CRM_RETURN_NOT_OK(r.Get(&o.max_customers));
  CRM_RETURN_NOT_OK(r.Get(&o.history_size));
  CRM_RETURN_NOT_OK(r.Get(&o.neighbours));
  CRM_RETURN_NOT_OK(r.Get(&o.half_life_days));
  CRM_RETURN_NOT_OK(r.Get(&o.popularity_half_life_days));
  CRM_RETURN_NOT_OK(r.Get(&o.history_half_life_days));
  CRM_RETURN_NOT_OK(r.Get(&o.alpha));
  if (Status st = o.Validate(); !st.ok()) return corrupt(st.message());
  ItemRecommender m(o);
  uint8_t has_reference = 0;
  CRM_RETURN_NOT_OK(r.Get(&has_reference));
  if (has_reference > 1) return corrupt("bad reference flag");
  m.has_reference_ = has_reference == 1;
  CRM_RETURN_NOT_OK(r.Get(&m.reference_ms_));
  CRM_RETURN_NOT_OK(r.Get(&m.latest_ms_));
  ItemRecommenderCounters& c = m.counters_;
  for (uint64_t* v : {&c.lines, &c.new_for_customer, &c.untracked_items, &c.customers_forgotten,
                      &c.neighbours_replaced}) {
    CRM_RETURN_NOT_OK(r.Get(v));
  }
  uint32_t items = 0;
  CRM_RETURN_NOT_OK(r.Get(&items));
  if (items > o.max_items || items > r.remaining() / 16) return corrupt("bad item count");
  m.item_customers_.resize(items);
  m.rows_.resize(items);
  const auto finite_count = [](double v) { return std::isfinite(v) && v >= 0.0; };
  for (uint32_t i = 0; i < items; ++i) {
    std::string name;
    CRM_RETURN_NOT_OK(r.GetBytes(&name));
    if (!m.items_.Restore(std::move(name))) return corrupt("item name too long or repeated");
    CRM_RETURN_NOT_OK(r.Get(&m.item_customers_[i]));
    if (!finite_count(m.item_customers_[i])) return corrupt("bad item count");
    m.candidate_norm_.push_back(0.0);
    m.RefreshNorm(i);
    uint32_t row = 0;
    CRM_RETURN_NOT_OK(r.Get(&row));
    if (row > o.neighbours || row > r.remaining() / 12) return corrupt("bad row size");
    m.rows_[i].resize(row);
    for (Neighbour& nb : m.rows_[i]) {
      CRM_RETURN_NOT_OK(r.Get(&nb.item));
      CRM_RETURN_NOT_OK(r.Get(&nb.count));
      if (!finite_count(nb.count)) return corrupt("bad co-occurrence count");
    }
  }
  for (uint32_t i = 0; i < items; ++i) {
    for (size_t k = 0; k < m.rows_[i].size(); ++k) {
      const uint32_t j = m.rows_[i][k].item;
      const uint64_t key = (uint64_t{i} << 32) | j;
      if (j >= items || j == i || m.neighbour_index_.Find(key) != internal::FlatIndex::kMissing) {
        return corrupt("bad neighbour");
      }
      m.neighbour_index_.Insert(key, static_cast<uint32_t>(k));
    }
  }
  m.popular_.reserve(1);
  CRM_RETURN_NOT_OK(r.GetArray(&m.popular_, kPopularSize));
  for (size_t k = 0; k < m.popular_.size(); ++k) {
    if (m.popular_[k] >= items ||
        std::count(m.popular_.begin(), m.popular_.end(), m.popular_[k]) != 1) {
      return corrupt("bad popularity ranking");
    }
  }
  uint32_t customers = 0;
  CRM_RETURN_NOT_OK(r.Get(&customers));
  if (customers > o.max_customers || customers > r.remaining() / 16) {
    return corrupt("bad customer count");
  }
  std::vector<uint32_t> hist_items;
  std::vector<int64_t> hist_ms;
  hist_items.reserve(1);
  hist_ms.reserve(1);
  for (uint32_t k = 0; k < customers; ++k) {
    uint64_t key = 0;
    CRM_RETURN_NOT_OK(r.Get(&key));
    CRM_RETURN_NOT_OK(r.GetArray(&hist_items, o.history_size));
    CRM_RETURN_NOT_OK(r.GetArray(&hist_ms, o.history_size));
    if (hist_items.size() != hist_ms.size()) return corrupt("bad history");
    if (m.customer_index_.Find(key) != internal::FlatIndex::kMissing) {
      return corrupt("repeated customer");
    }
    const uint32_t slot = m.CustomerSlot(key);
    m.Touch(slot);
    const size_t base = static_cast<size_t>(slot) * o.history_size;
    for (size_t q = 0; q < hist_items.size(); ++q) {
      if (hist_items[q] >= items ||
          std::find(hist_items.begin(), hist_items.begin() + static_cast<ptrdiff_t>(q),
                    hist_items[q]) != hist_items.begin() + static_cast<ptrdiff_t>(q)) {
        return corrupt("bad history item");
      }
      m.history_items_[base + q] = hist_items[q];
      m.history_ms_[base + q] = hist_ms[q];
    }
    m.customers_[slot].size = static_cast<uint32_t>(hist_items.size());
  }
  CRM_RETURN_NOT_OK(r.ExpectEnd());
  return m;
}

void WriteRecommendationsJson(const ItemRecommender& model, std::string_view customer_id,
                              int64_t as_of_ms, std::span<const Recommendation> items,
                              JsonWriter* out) {
  out->BeginObject();
  out->Field("customer_id", customer_id);
  out->Field("as_of_ms", as_of_ms);
  out->Key("items");
  out->BeginArray();
  for (const Recommendation& r : items) {
    out->BeginObject();
    out->Field("item", model.item_name(r.item));
    out->Field("score", r.score);
    out->Key("because");
    out->BeginArray();
    for (int q = 0; q < r.reasons; ++q) out->String(model.item_name(r.because[q]));
    out->EndArray();
    out->Field("popular", r.popular);
    out->EndObject();
  }
  out->EndArray();
  out->EndObject();
}

}  // namespace crmstream::models
