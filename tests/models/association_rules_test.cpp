#include "crmstream/models/association_rules.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <map>
#include <random>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "crmstream/common/binary_io.h"
#include "support/require_ok.h"

namespace crmstream::models {
namespace {

constexpr int64_t kDay = 86'400'000;

struct Line {
  std::string order;
  std::string item;
  int64_t t;
};

// Independent reference: group the lines seen so far by order (a basket's
// time is its first line's), keep the baskets in (now - window, now] and
// count items and pairs by brute force over std::set baskets.
struct BatchCount {
  uint64_t baskets = 0;
  std::map<std::string, uint32_t> items;
  std::map<std::pair<std::string, std::string>, uint32_t> pairs;  // first < second
};

BatchCount CountBatch(const std::vector<Line>& lines, int64_t window_ms) {
  std::map<std::string, std::pair<int64_t, std::set<std::string>>> orders;
  int64_t now = INT64_MIN;
  for (const Line& l : lines) {
    now = std::max(now, l.t);
    if (l.t <= now - window_ms) continue;  // late
    auto it = orders.find(l.order);
    if (it == orders.end() || it->second.first <= now - window_ms) {
      // A new basket (or the order's earlier basket has left the window).
      orders[l.order] = {l.t, {}};
      it = orders.find(l.order);
    }
    it->second.second.insert(l.item);
  }
  BatchCount c;
  for (const auto& [order, basket] : orders) {
    if (basket.first <= now - window_ms) continue;
    ++c.baskets;
    for (const std::string& a : basket.second) {
      ++c.items[a];
      for (const std::string& b : basket.second) {
        if (a < b) ++c.pairs[{a, b}];
      }
    }
  }
  return c;
}

struct RefRule {
  std::string a, b;
  uint32_t count;
  double support, confidence, lift;
};

std::vector<RefRule> BatchRules(const BatchCount& c, const RuleFloors& f) {
  std::vector<RefRule> out;
  const double n = static_cast<double>(c.baskets);
  for (const auto& [pair, count] : c.pairs) {
    if (count < f.min_pair_count) continue;
    for (int dir = 0; dir < 2; ++dir) {
      const std::string& a = dir == 0 ? pair.first : pair.second;
      const std::string& b = dir == 0 ? pair.second : pair.first;
      const double support = count / n;
      const double confidence = static_cast<double>(count) / c.items.at(a);
      const double lift = confidence / (c.items.at(b) / n);
      if (support >= f.min_support && confidence >= f.min_confidence && lift >= f.min_lift) {
        out.push_back({a, b, count, support, confidence, lift});
      }
    }
  }
  std::sort(out.begin(), out.end(), [](const RefRule& x, const RefRule& y) {
    return std::tie(x.a, x.b) < std::tie(y.a, y.b);
  });
  return out;
}

void CheckRulesEqual(const AssociationRuleMiner& m, const std::vector<Line>& lines,
                     int64_t window_ms, const RuleFloors& floors) {
  const BatchCount batch = CountBatch(lines, window_ms);
  REQUIRE(m.baskets() == batch.baskets);
  for (const auto& [item, count] : batch.items) {
    const int64_t i = m.FindItem(item);
    REQUIRE(i >= 0);
    REQUIRE(m.item_count(static_cast<uint32_t>(i)) == count);
  }
  std::vector<AssociationRule> rules;
  const RuleSummary s = m.Rules(floors, &rules);
  CHECK(s.exact);
  CHECK(s.complete);
  std::vector<RefRule> got;
  for (const AssociationRule& r : rules) {
    got.push_back({std::string(m.item_name(r.antecedent)), std::string(m.item_name(r.consequent)),
                   r.pair_count, r.support, r.confidence, r.lift});
  }
  std::sort(got.begin(), got.end(), [](const RefRule& x, const RefRule& y) {
    return std::tie(x.a, x.b) < std::tie(y.a, y.b);
  });
  const std::vector<RefRule> want = BatchRules(batch, floors);
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    INFO(want[i].a << " -> " << want[i].b);
    CHECK(got[i].a == want[i].a);
    CHECK(got[i].b == want[i].b);
    CHECK(got[i].count == want[i].count);
    CHECK(got[i].support == Approx(want[i].support).epsilon(1e-12));
    CHECK(got[i].confidence == Approx(want[i].confidence).epsilon(1e-12));
    CHECK(got[i].lift == Approx(want[i].lift).epsilon(1e-12));
  }
}

// A shop's log: orders of 1..12 lines (some repeated), items drawn from a
// skewed catalogue, several orders open at once, a few lines late.
std::vector<Line> RandomLines(uint64_t seed, int orders, int catalogue) {
  std::mt19937_64 rng(seed);
  std::vector<Line> lines;
  int64_t t = 100 * kDay;
  std::vector<std::pair<std::string, int>> open;  // order, lines left
  int next_order = 0;
  while (next_order < orders || !open.empty()) {
    if (next_order < orders && (open.size() < 3 || rng() % 4 == 0)) {
      open.emplace_back("o" + std::to_string(next_order++), 1 + static_cast<int>(rng() % 12));
    }
    const size_t k = rng() % open.size();
    // Zipf-like: the square of a uniform favours low item numbers.
    const double u = std::uniform_real_distribution<double>(0, 1)(rng);
    const int item = static_cast<int>(u * u * catalogue);
    t += static_cast<int64_t>(rng() % (kDay / 6));
    lines.push_back({open[k].first, "sku" + std::to_string(item), t});
    if (rng() % 50 == 0) lines.push_back({"late" + std::to_string(t), "sku1", t - 40 * kDay});
    if (--open[k].second == 0) open.erase(open.begin() + static_cast<ptrdiff_t>(k));
  }
  return lines;
}

TEST_CASE("association rules: a hand-checked window", "[models][rules]") {
  AssociationRulesOptions o;
  o.window_ms = 10 * kDay;
  auto m = AssociationRuleMiner::Create(o).value();
  // Baskets {bread, butter}, {bread, butter, jam}, {bread, milk}, {milk}.
  const int64_t t0 = 1000 * kDay;
  CHECK(m.AddLine("1", "bread", t0) == LineOutcome::kCounted);
  CHECK(m.AddLine("1", "butter", t0) == LineOutcome::kCounted);
  CHECK(m.AddLine("1", "bread", t0) == LineOutcome::kRepeat);
  CHECK(m.AddLine("2", "bread", t0 + 1) == LineOutcome::kCounted);
  CHECK(m.AddLine("2", "butter", t0 + 1) == LineOutcome::kCounted);
  CHECK(m.AddLine("2", "jam", t0 + 1) == LineOutcome::kCounted);
  CHECK(m.AddLine("3", "bread", t0 + kDay) == LineOutcome::kCounted);
  CHECK(m.AddLine("3", "milk", t0 + kDay) == LineOutcome::kCounted);
  CHECK(m.AddLine("4", "milk", t0 + 2 * kDay) == LineOutcome::kCounted);
  CHECK(m.baskets() == 4);

  RuleFloors f;
  f.min_support = 0.5;
  f.min_confidence = 0.5;
  f.min_lift = 1.0;
  f.min_pair_count = 1;
  std::vector<AssociationRule> rules;
  m.Rules(f, &rules);
  // Only {bread, butter} has support 2/4. butter -> bread: confidence 2/2,
  // lift 1 / (3/4) = 4/3; bread -> butter: confidence 2/3, lift (2/3)/(2/4) = 4/3.
  REQUIRE(rules.size() == 2);
  const AssociationRule& first = rules[0];  // equal lift and support: by item index
  CHECK(m.item_name(first.antecedent) == "bread");
  CHECK(first.confidence == Approx(2.0 / 3.0));
  CHECK(first.lift == Approx(4.0 / 3.0));
  CHECK(m.item_name(rules[1].antecedent) == "butter");
  CHECK(rules[1].confidence == Approx(1.0));
  CHECK(rules[1].support == Approx(0.5));

  // Ten days after basket 1 it leaves (window (now - 10d, now]); so does 2.
  m.AdvanceTo(t0 + 10 * kDay + 1);
  CHECK(m.baskets() == 2);
  CHECK(m.item_count(static_cast<uint32_t>(m.FindItem("butter"))) == 0);
  CHECK(
      m.Pair(static_cast<uint32_t>(m.FindItem("bread")), static_cast<uint32_t>(m.FindItem("milk")))
          .upper == 1);
  CHECK(m.AddLine("0", "jam", t0 - 1) == LineOutcome::kLate);
  m.Rules(f, &rules);
  CHECK(rules.size() == 2);  // bread <-> milk: support 1/2, confidences 1 and 1/2, lift 1
  std::vector<AssociationRule> for_milk;
  const RuleSummary summary = m.RulesFor("milk", f, 0, &for_milk);
  REQUIRE(for_milk.size() == 1);
  CHECK(m.item_name(for_milk[0].consequent) == "bread");
  CHECK(for_milk[0].confidence == Approx(0.5));

  // The crm.associations record (docs/schemas/crm.associations.schema.json).
  std::string json;
  JsonWriter w(&json);
  WriteAssociationRulesJson(m, summary, for_milk, &w);
  CHECK(json == "{\"as_of_ms\":" + std::to_string(t0 + 10 * kDay + 1) +
                    ",\"window_ms\":864000000,\"baskets\":2,\"complete\":true,\"exact\":true,"
                    "\"rules\":[{\"antecedent\":\"milk\",\"consequent\":\"bread\",\"support\":0.5,"
                    "\"confidence\":0.5,\"lift\":1,\"pair_count\":1,\"pair_count_upper\":1,"
                    "\"antecedent_count\":2,\"consequent_count\":1,\"exact\":true}]}");
}

TEST_CASE("association rules equal a brute-force batch count over the window", "[models][rules]") {
  AssociationRulesOptions o;
  o.window_ms = 20 * kDay;
  auto m = AssociationRuleMiner::Create(o).value();
  const std::vector<Line> lines = RandomLines(7, 1500, 60);
  RuleFloors f;
  f.min_support = 0.002;
  f.min_confidence = 0.05;
  f.min_lift = 0.0;
  f.min_pair_count = 1;
  std::vector<Line> seen;
  int checks = 0;
  for (size_t i = 0; i < lines.size(); ++i) {
    (void)m.AddLine(lines[i].order, lines[i].item, lines[i].t);
    seen.push_back(lines[i]);
    if (i % 997 == 0 || i + 1 == lines.size()) {
      CheckRulesEqual(m, seen, o.window_ms, f);
      ++checks;
    }
  }
  CHECK(checks >= 5);
  CHECK(m.counters().late > 0);
  CHECK(m.counters().repeats > 0);
  CHECK(m.exact());
  // The window really slid: far fewer baskets than orders.
  CHECK(m.baskets() < 1000);
}

TEST_CASE("association rules with a capped pair table keep valid bounds and recover exactness",
          "[models][rules]") {
  AssociationRulesOptions o;
  o.window_ms = 10 * kDay;
  o.max_pairs = 64;  // far fewer than the pairs of the window
  auto m = AssociationRuleMiner::Create(o).value();
  const std::vector<Line> lines = RandomLines(11, 800, 40);
  std::vector<Line> seen;
  bool capped = false;
  for (size_t i = 0; i < lines.size(); ++i) {
    (void)m.AddLine(lines[i].order, lines[i].item, lines[i].t);
    seen.push_back(lines[i]);
    CHECK(m.pairs() <= 64);
    if (i % 101 != 0) continue;
    const BatchCount batch = CountBatch(seen, o.window_ms);
    capped = capped || !m.exact();
    // Every pair's interval holds its true count; absent pairs stay under the bound.
    for (const auto& [pair, count] : batch.pairs) {
      const PairCount p = m.Pair(static_cast<uint32_t>(m.FindItem(pair.first)),
                                 static_cast<uint32_t>(m.FindItem(pair.second)));
      INFO(pair.first << "," << pair.second << " true " << count << " in [" << p.lower << ", "
                      << p.upper << "] monitored " << p.monitored);
      CHECK(p.lower <= count);
      CHECK(count <= p.upper);
    }
  }
  CHECK(capped);
  CHECK(m.counters().pairs_evicted > 0);
  // The heavy hitters are still there: the most frequent pair is monitored.
  const BatchCount batch = CountBatch(seen, o.window_ms);
  auto top = std::max_element(batch.pairs.begin(), batch.pairs.end(),
                              [](const auto& x, const auto& y) { return x.second < y.second; });
  CHECK(m.Pair(static_cast<uint32_t>(m.FindItem(top->first.first)),
               static_cast<uint32_t>(m.FindItem(top->first.second)))
            .monitored);

  // A quiet phase of few distinct pairs: once the baskets present at the
  // evictions have left, the counts are exact again and equal the batch.
  int64_t t = seen.back().t + 11 * kDay;
  for (int k = 0; k < 30; ++k, t += kDay / 4) {
    const std::string order = "quiet" + std::to_string(k);
    for (const char* item : {"sku1", "sku2", "sku3"}) {
      seen.push_back({order, item, t});
      (void)m.AddLine(order, item, t);
    }
  }
  CHECK(m.exact());
  RuleFloors f;
  f.min_support = 0.0;
  f.min_confidence = 0.0;
  f.min_lift = 0.0;
  f.min_pair_count = 1;
  CheckRulesEqual(m, seen, o.window_ms, f);
}

TEST_CASE("association rules: the blob round trip and merging partitions", "[models][rules]") {
  AssociationRulesOptions o;
  o.window_ms = 15 * kDay;
  o.max_pairs = 400;
  const std::vector<Line> lines = RandomLines(3, 600, 50);
  auto whole = AssociationRuleMiner::Create(o).value();
  auto copy = AssociationRuleMiner::Create(o).value();
  const size_t half = lines.size() / 2;
  for (size_t i = 0; i < half; ++i) (void)copy.AddLine(lines[i].order, lines[i].item, lines[i].t);
  auto restored = AssociationRuleMiner::Deserialize(copy.Serialize());
  REQUIRE_OK(restored);
  CHECK(restored->Serialize() == copy.Serialize());
  for (size_t i = half; i < lines.size(); ++i) {
    (void)copy.AddLine(lines[i].order, lines[i].item, lines[i].t);
    (void)restored->AddLine(lines[i].order, lines[i].item, lines[i].t);
  }
  CHECK(restored->Serialize() == copy.Serialize());

  // Two partitions by order: their merge is the miner of the whole stream
  // (exact below the cap).
  o.max_pairs = 1u << 16;
  auto a = AssociationRuleMiner::Create(o).value();
  auto b = AssociationRuleMiner::Create(o).value();
  auto all = AssociationRuleMiner::Create(o).value();
  for (const Line& l : lines) {
    if (l.order.rfind("late", 0) == 0) continue;  // late lines depend on arrival order
    (std::hash<std::string>{}(l.order) % 2 == 0 ? a : b).AddLine(l.order, l.item, l.t);
    (void)all.AddLine(l.order, l.item, l.t);
  }
  REQUIRE_OK(a.Merge(b));
  CHECK(a.baskets() == all.baskets());
  CHECK(a.counters().lines == all.counters().lines);
  RuleFloors f;
  f.min_support = 0.0;
  f.min_confidence = 0.0;
  f.min_lift = 0.0;
  f.min_pair_count = 1;
  std::vector<AssociationRule> ra, rall;
  a.Rules(f, &ra);
  all.Rules(f, &rall);
  REQUIRE(ra.size() == rall.size());
  std::set<std::tuple<std::string, std::string, uint32_t>> sa, sall;
  for (const auto& r : ra)
    sa.emplace(a.item_name(r.antecedent), a.item_name(r.consequent), r.pair_count);
  for (const auto& r : rall)
    sall.emplace(all.item_name(r.antecedent), all.item_name(r.consequent), r.pair_count);
  CHECK(sa == sall);
  AssociationRulesOptions other = o;
  other.window_ms = kDay;
  CHECK_FALSE(a.Merge(AssociationRuleMiner::Create(other).value()).ok());
}

TEST_CASE("association rules: options, floors and corrupt blobs are rejected", "[models][rules]") {
  AssociationRulesOptions o;
  o.window_ms = 0;
  CHECK(AssociationRuleMiner::Create(o).status().code() == StatusCode::kInvalidArgument);
  o = {};
  o.max_pairs = 3;
  CHECK_FALSE(AssociationRuleMiner::Create(o).ok());
  RuleFloors f;
  f.min_support = 2;
  CHECK_FALSE(f.Validate().ok());
  f = {};
  f.min_pair_count = 0;
  CHECK_FALSE(f.Validate().ok());

  auto m = AssociationRuleMiner::Create({}).value();
  (void)m.AddLine("1", "a", 1000);
  (void)m.AddLine("1", "b", 1000);
  std::string blob = m.Serialize();
  CHECK_OK(AssociationRuleMiner::Deserialize(blob));
  for (size_t cut : {size_t{0}, size_t{5}, blob.size() / 2, blob.size() - 1}) {
    CHECK(AssociationRuleMiner::Deserialize(blob.substr(0, cut)).status().code() ==
          StatusCode::kCorruption);
  }
  blob[blob.size() / 2] ^= 0x40;
  CHECK(AssociationRuleMiner::Deserialize(blob).status().code() == StatusCode::kCorruption);

  // Item and basket caps are counted, not crashes.
  o = {};
  o.max_items = 2;
  o.max_basket_items = 2;
  auto small = AssociationRuleMiner::Create(o).value();
  CHECK(small.AddLine("1", "a", 5) == LineOutcome::kCounted);
  CHECK(small.AddLine("1", "b", 5) == LineOutcome::kCounted);
  CHECK(small.AddLine("1", "c", 5) == LineOutcome::kUntrackedItem);
  CHECK(small.counters().untracked_items == 1);
}

}  // namespace
}  // namespace crmstream::models
