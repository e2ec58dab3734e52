#include "crmstream/evaluation/associations.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "support/require_ok.h"
#include "support/test_support.h"

namespace crmstream::evaluation {
namespace {

TEST_CASE("co-purchase rules on Online Retail equal a batch pair count over the same window",
          "[evaluation][associations][data]") {
  SKIP_WITHOUT_DATA(data_dir);
  auto data = LoadRetailTransactions(data_dir);
  REQUIRE_OK(data);
  auto report = EvaluateAssociations(*data);
  REQUIRE_OK(report);
  std::ostringstream printed;
  PrintAssociationReport(*report, printed);
  WARN(printed.str());

  // The report's own batch check, at every checkpoint.
  REQUIRE(report->checkpoints.size() >= 12);
  for (const RulesCheckpoint& c : report->checkpoints) {
    INFO("checkpoint at " << c.as_of_ms);
    CHECK(c.identical);
    CHECK(c.rules > 100);
    // The capped miner never reports a rule the batch does not have.
    CHECK(c.capped_extra == 0);
    CHECK(c.capped_exact <= c.capped_found);
  }
  // Before its table fills, the capped miner is exact too.
  CHECK(report->checkpoints.front().capped_found == report->checkpoints.front().rules);

  // Independently here: the final window's baskets as sets of stock codes,
  // every pair counted, the rules derived.
  const int64_t now = data->last_ms;
  const int64_t from = now - 30 * kMsPerDay;
  std::map<std::string, std::set<std::string>> baskets;
  for (const RetailLine& l : data->lines) {
    if (l.purchase() && l.timestamp_ms > from) {
      baskets[std::string(l.invoice)].insert(std::string(l.stock_code));
    }
  }
  std::map<std::string, uint32_t> items;
  std::map<std::pair<std::string, std::string>, uint32_t> pairs;
  for (const auto& [invoice, b] : baskets) {
    for (const std::string& x : b) {
      ++items[x];
      for (const std::string& y : b) {
        if (x < y) ++pairs[{x, y}];
      }
    }
  }
  CHECK(baskets.size() == report->checkpoints.back().baskets);
  CHECK(pairs.size() == report->checkpoints.back().pairs);
  const models::RuleFloors f = report->floors;
  const double n = static_cast<double>(baskets.size());
  std::map<std::pair<std::string, std::string>, std::tuple<uint32_t, double, double, double>> want;
  for (const auto& [p, count] : pairs) {
    for (int dir = 0; dir < 2; ++dir) {
      const std::string& a = dir ? p.second : p.first;
      const std::string& b = dir ? p.first : p.second;
      const double support = count / n;
      const double confidence = static_cast<double>(count) / items[a];
      const double lift = confidence / (items[b] / n);
      if (count >= f.min_pair_count && support >= f.min_support && confidence >= f.min_confidence &&
          lift >= f.min_lift) {
        want[{a, b}] = {count, support, confidence, lift};
      }
    }
  }
  REQUIRE(report->final_rules.size() == want.size());
  for (const NamedRule& r : report->final_rules) {
    INFO(r.antecedent << " -> " << r.consequent);
    auto it = want.find({r.antecedent, r.consequent});
    REQUIRE(it != want.end());
    const auto& [count, support, confidence, lift] = it->second;
    CHECK(r.exact);
    CHECK(r.pair_count == count);
    CHECK(r.support == Approx(support).epsilon(1e-12));
    CHECK(r.confidence == Approx(confidence).epsilon(1e-12));
    CHECK(r.lift == Approx(lift).epsilon(1e-12));
  }
  // By descending lift, as documented.
  CHECK(std::is_sorted(report->final_rules.begin(), report->final_rules.end(),
                       [](const NamedRule& a, const NamedRule& b) { return a.lift > b.lift; }));
}

}  // namespace
}  // namespace crmstream::evaluation
