#include "crmstream/models/item_recommender.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "support/require_ok.h"

namespace crmstream::models {
namespace {

constexpr int64_t kDay = 86'400'000;

struct Purchase {
  std::string customer;
  std::string item;
  int64_t t;
};

// Customers with tastes: each prefers one of four groups of items.
std::vector<Purchase> RandomPurchases(uint64_t seed, int customers, int lines) {
  std::mt19937_64 rng(seed);
  std::vector<Purchase> out;
  int64_t t = 1000 * kDay;
  for (int i = 0; i < lines; ++i) {
    const int c = static_cast<int>(rng() % customers);
    const int group = c % 4;
    const int item =
        rng() % 3 == 0 ? static_cast<int>(rng() % 40) : group * 10 + static_cast<int>(rng() % 10);
    t += static_cast<int64_t>(rng() % (kDay / 4));
    out.push_back({"c" + std::to_string(c), "i" + std::to_string(item), t});
  }
  return out;
}

// Independent reference: batch item-kNN on the (decayed) customer x item
// matrix. A customer's first purchase of an item at t weighs 2^(t / half
// life); a pair weighs by the later of its two first purchases.
struct BatchKnn {
  std::map<std::string, std::map<std::string, int64_t>> first;  // customer -> item -> t
  double half_life_ms = 0.0;                                    // of the co-occurrences
  double popularity_ms = 0.0;                                   // of the customer counts
  int64_t now = 0;

  explicit BatchKnn(const std::vector<Purchase>& ps, double half_life_days = 0.0,
                    double popularity_half_life_days = 0.0)
      : half_life_ms(half_life_days * kDay), popularity_ms(popularity_half_life_days * kDay) {
    for (const Purchase& p : ps) {
      first[p.customer].emplace(p.item, p.t);
      now = std::max(now, p.t);
    }
  }
  // A weight of 1 today, halving every half-life into the past.
  static double Decay(int64_t t, int64_t now, double half_life) {
    return half_life > 0 ? std::exp2(-static_cast<double>(now - t) / half_life) : 1.0;
  }
  double W(int64_t t) const { return Decay(t, now, half_life_ms); }
  double N(const std::string& i) const {
    double n = 0;
    for (const auto& [c, items] : first) {
      if (auto it = items.find(i); it != items.end()) n += Decay(it->second, now, popularity_ms);
    }
    return n;
  }
  double Cosine(const std::string& i, const std::string& j) const {
    double co = 0;
    for (const auto& [c, items] : first) {
      auto a = items.find(i);
      auto b = items.find(j);
      if (a != items.end() && b != items.end()) co += W(std::max(a->second, b->second));
    }
    const double d = std::sqrt(N(i) * N(j));
    return d > 0 ? co / d : 0.0;
  }
  std::vector<std::pair<std::string, double>> Recommend(const std::string& customer,
                                                        size_t n) const {
    std::set<std::string> all;
    for (const auto& [c, items] : first)
      for (const auto& [i, t] : items) all.insert(i);
    const auto& mine = first.at(customer);
    std::vector<std::pair<std::string, double>> scored;
    for (const std::string& j : all) {
      if (mine.count(j)) continue;
      double s = 0;
      for (const auto& [h, t] : mine) s += Cosine(h, j);
      if (s > 0) scored.emplace_back(j, s);
    }
    std::sort(scored.begin(), scored.end(), [](const auto& a, const auto& b) {
      return a.second != b.second ? a.second > b.second : a.first < b.first;
    });
    if (scored.size() > n) scored.resize(n);
    return scored;
  }
};

ItemRecommenderOptions Uncapped() {
  ItemRecommenderOptions o;
  o.history_size = 256;
  o.neighbours = 1024;
  return o;
}

TEST_CASE("item recommender: similarities and recommendations equal batch item-kNN",
          "[models][recommender]") {
  const auto purchases = RandomPurchases(5, 60, 1500);
  auto model = ItemRecommender::Create(Uncapped()).value();
  for (const Purchase& p : purchases) (void)model.Observe(p.customer, p.item, p.t);
  const BatchKnn batch(purchases);
  for (const char* a : {"i0", "i3", "i17", "i25"}) {
    for (const char* b : {"i1", "i12", "i33", "i39"}) {
      INFO(a << " ~ " << b);
      CHECK(model.Similarity(static_cast<uint32_t>(model.FindItem(a)),
                             static_cast<uint32_t>(model.FindItem(b))) ==
            Approx(batch.Cosine(a, b)).epsilon(1e-12));
    }
  }
  std::vector<Recommendation> recs;
  for (const char* customer : {"c0", "c1", "c7", "c42"}) {
    model.Recommend(customer, purchases.back().t, 5, &recs);
    const auto want = batch.Recommend(customer, 5);
    REQUIRE(recs.size() == want.size());
    for (size_t k = 0; k < recs.size(); ++k) {
      INFO(customer << " #" << k);
      CHECK(model.item_name(recs[k].item) == want[k].first);
      CHECK(recs[k].score == Approx(want[k].second).epsilon(1e-9));
      CHECK_FALSE(recs[k].popular);
      // Explanations: history items, largest first, adding up to at most the score.
      REQUIRE(recs[k].reasons >= 1);
      double sum = 0;
      for (int q = 0; q < recs[k].reasons; ++q) {
        CHECK(batch.first.at(customer).count(std::string(model.item_name(recs[k].because[q]))));
        if (q > 0) CHECK(recs[k].because_score[q] <= recs[k].because_score[q - 1]);
        sum += recs[k].because_score[q];
        CHECK(recs[k].because_score[q] ==
              Approx(batch.Cosine(std::string(model.item_name(recs[k].because[q])), want[k].first))
                  .epsilon(1e-9));
      }
      CHECK(sum <= recs[k].score * (1 + 1e-12));
    }
  }
  // The taste groups come out: a basket of group-1 items is completed with
  // more group-1 items.
  const std::vector<uint32_t> basket = {static_cast<uint32_t>(model.FindItem("i10")),
                                        static_cast<uint32_t>(model.FindItem("i11")),
                                        static_cast<uint32_t>(model.FindItem("i12"))};
  model.RecommendFor(basket, {}, purchases.back().t, 3, &recs);
  REQUIRE(recs.size() == 3);
  for (const Recommendation& r : recs) {
    const int item = std::stoi(std::string(model.item_name(r.item)).substr(1));
    CHECK(item / 10 == 1);
  }
  // The crm.recommendations record names the items and their reasons.
  std::string json;
  JsonWriter w(&json);
  WriteRecommendationsJson(model, "c1", 123, std::span<const Recommendation>(recs).first(1), &w);
  const std::string first(model.item_name(recs[0].item));
  const std::string reason(model.item_name(recs[0].because[0]));
  CHECK(json.rfind(
            "{\"customer_id\":\"c1\",\"as_of_ms\":123,\"items\":[{\"item\":\"" + first + "\"", 0) ==
        0);
  CHECK(json.find("\"because\":[\"" + reason + "\"") != std::string::npos);
  CHECK(json.find("\"popular\":false}]}") != std::string::npos);
}

TEST_CASE("item recommender: decayed counts equal the decayed batch cosine",
          "[models][recommender]") {
  const auto purchases = RandomPurchases(9, 40, 1200);
  // Co-occurrences only (the evaluation's setting), then both counts.
  for (double popularity : {0.0, 50.0}) {
    ItemRecommenderOptions o = Uncapped();
    o.half_life_days = 20;
    o.popularity_half_life_days = popularity;
    auto model = ItemRecommender::Create(o).value();
    for (const Purchase& p : purchases) (void)model.Observe(p.customer, p.item, p.t);
    const BatchKnn batch(purchases, 20, popularity);
    for (const char* a : {"i2", "i11", "i30"}) {
      for (const char* b : {"i5", "i19", "i38"}) {
        INFO(a << " ~ " << b << ", popularity half-life " << popularity);
        CHECK(model.Similarity(static_cast<uint32_t>(model.FindItem(a)),
                               static_cast<uint32_t>(model.FindItem(b))) ==
              Approx(batch.Cosine(a, b)).epsilon(1e-9));
      }
    }
  }
}

TEST_CASE("item recommender: cold customers get the most popular items", "[models][recommender]") {
  auto model = ItemRecommender::Create(Uncapped()).value();
  const auto purchases = RandomPurchases(2, 50, 800);
  for (const Purchase& p : purchases) (void)model.Observe(p.customer, p.item, p.t);
  std::map<std::string, std::set<std::string>> buyers;
  for (const Purchase& p : purchases) buyers[p.item].insert(p.customer);
  std::vector<std::pair<size_t, std::string>> ranked;
  for (const auto& [item, who] : buyers) ranked.emplace_back(who.size(), item);
  std::sort(ranked.begin(), ranked.end(),
            [](const auto& a, const auto& b) { return a.first > b.first; });
  std::vector<Recommendation> recs;
  model.Recommend("nobody", purchases.back().t, 4, &recs);
  REQUIRE(recs.size() == 4);
  for (size_t k = 0; k < 4; ++k) {
    CHECK(recs[k].popular);
    CHECK(buyers[std::string(model.item_name(recs[k].item))].size() == ranked[k].first);
  }
}

TEST_CASE("item recommender: caps bound memory and keep the strongest neighbours",
          "[models][recommender]") {
  ItemRecommenderOptions o;
  o.history_size = 8;
  o.neighbours = 6;
  o.max_customers = 20;
  auto model = ItemRecommender::Create(o).value();
  const auto purchases = RandomPurchases(4, 60, 3000);
  for (const Purchase& p : purchases) (void)model.Observe(p.customer, p.item, p.t);
  CHECK(model.customers() == 20);
  CHECK(model.counters().customers_forgotten > 0);
  CHECK(model.counters().neighbours_replaced > 0);
  std::vector<uint32_t> history;
  model.History(purchases.back().customer, &history);
  CHECK(history.size() <= 8);
  // Group structure survives the summaries: an item's strongest neighbour is
  // in its own group.
  for (const char* item : {"i1", "i14", "i23"}) {
    const auto i = static_cast<uint32_t>(model.FindItem(item));
    double best = -1;
    int best_item = -1;
    for (uint32_t j = 0; j < model.items(); ++j) {
      const double s = model.Similarity(i, j);
      if (s > best) {
        best = s;
        best_item = std::stoi(std::string(model.item_name(j)).substr(1));
      }
    }
    CHECK(best_item / 10 == std::stoi(std::string(item).substr(1)) / 10);
  }
}

TEST_CASE("item recommender: blob round trip, and merging customer partitions",
          "[models][recommender]") {
  const auto purchases = RandomPurchases(13, 50, 2000);
  ItemRecommenderOptions o = Uncapped();
  o.half_life_days = 30;
  o.history_half_life_days = 10;
  auto model = ItemRecommender::Create(o).value();
  const size_t half = purchases.size() / 2;
  for (size_t i = 0; i < half; ++i)
    (void)model.Observe(purchases[i].customer, purchases[i].item, purchases[i].t);
  auto copy = ItemRecommender::Deserialize(model.Serialize());
  REQUIRE_OK(copy);
  CHECK(copy->Serialize() == model.Serialize());
  for (size_t i = half; i < purchases.size(); ++i) {
    (void)model.Observe(purchases[i].customer, purchases[i].item, purchases[i].t);
    (void)copy->Observe(purchases[i].customer, purchases[i].item, purchases[i].t);
  }
  CHECK(copy->Serialize() == model.Serialize());

  auto a = ItemRecommender::Create(o).value();
  auto b = ItemRecommender::Create(o).value();
  for (const Purchase& p : purchases) {
    (std::stoi(p.customer.substr(1)) % 2 == 0 ? a : b).Observe(p.customer, p.item, p.t);
  }
  REQUIRE_OK(a.Merge(b));
  CHECK(a.customers() == model.customers());
  for (const char* x : {"i0", "i9", "i21"}) {
    for (const char* y : {"i4", "i30"}) {
      CHECK(a.Similarity(static_cast<uint32_t>(a.FindItem(x)),
                         static_cast<uint32_t>(a.FindItem(y))) ==
            Approx(model.Similarity(static_cast<uint32_t>(model.FindItem(x)),
                                    static_cast<uint32_t>(model.FindItem(y))))
                .epsilon(1e-9));
    }
  }
  std::vector<Recommendation> ra, rm;
  a.Recommend("c3", purchases.back().t, 5, &ra);
  model.Recommend("c3", purchases.back().t, 5, &rm);
  REQUIRE(ra.size() == rm.size());
  for (size_t k = 0; k < ra.size(); ++k) {
    CHECK(a.item_name(ra[k].item) == model.item_name(rm[k].item));
    CHECK(ra[k].score == Approx(rm[k].score).epsilon(1e-9));
  }
  ItemRecommenderOptions different = o;
  different.alpha = 0.3;
  CHECK_FALSE(a.Merge(ItemRecommender::Create(different).value()).ok());
}

TEST_CASE("item recommender: bad options and corrupt blobs", "[models][recommender]") {
  ItemRecommenderOptions o;
  o.alpha = 1.5;
  CHECK(ItemRecommender::Create(o).status().code() == StatusCode::kInvalidArgument);
  o = {};
  o.history_size = 0;
  CHECK_FALSE(ItemRecommender::Create(o).ok());
  auto m = ItemRecommender::Create({}).value();
  (void)m.Observe("c", "a", 1);
  (void)m.Observe("c", "b", 2);
  std::string blob = m.Serialize();
  for (size_t cut : {size_t{0}, size_t{7}, blob.size() / 2, blob.size() - 1}) {
    CHECK(ItemRecommender::Deserialize(blob.substr(0, cut)).status().code() ==
          StatusCode::kCorruption);
  }
  blob[blob.size() / 3] ^= 0x10;
  CHECK(ItemRecommender::Deserialize(blob).status().code() == StatusCode::kCorruption);
}

}  // namespace
}  // namespace crmstream::models
