// Injected anomalies as the stream shows them, measured from the records
// against the windows the ground truth states.
#include <simdjson.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <string>
#include <unordered_map>
#include <vector>

#include "crmstream/generator/world_generator.h"
#include "generator/parsed_record.h"
#include "support/require_ok.h"

namespace crmstream::generator {
namespace {

int64_t CountIn(const std::vector<int64_t>& times, int64_t from, int64_t to) {
  return std::lower_bound(times.begin(), times.end(), to) -
         std::lower_bound(times.begin(), times.end(), from);
}

TEST_CASE("Injected refund bursts, outages and revenue drops show in the stream", "[generator]") {
  WorldOptions o;
  o.seed = 9;
  o.customers = 3000;
  o.anomalies.enabled = true;
  o.anomalies.refund_bursts_per_day = 3;
  o.anomalies.outages_per_day = 0.5;
  o.anomalies.revenue_drops_per_day = 0.5;
  REQUIRE_OK_AND_ASSIGN(auto g_owner, WorldGenerator::Create(o));
  WorldGenerator& g = *g_owner;
  const int64_t end = o.start_ms + 40 * kMillisPerDay;

  simdjson::ondemand::parser parser;
  std::unordered_map<std::string, std::vector<int64_t>> refunds_by_customer;
  std::vector<int64_t> logins;
  std::vector<int64_t> troubles;
  std::vector<int64_t> purchases;
  std::string key;
  std::string value;
  int unreadable = 0;
  for (int i = 0; i < 3'000'000 && g.now_ms() < end; ++i) {
    const int64_t t = g.Next(&key, &value);
    const testing::ParsedRecord p = testing::ParseRecord(parser, value);
    if (!p.type || !p.customer_id) {
      ++unreadable;
      continue;
    }
    const std::string& type = *p.type;
    if (type == "refund") refunds_by_customer[*p.customer_id].push_back(t);
    if (type == "login") logins.push_back(t);
    if (type == "purchase") purchases.push_back(t);
    if (type == "support_ticket" || type == "complaint") troubles.push_back(t);
  }
  REQUIRE(g.now_ms() >= end);
  REQUIRE(unreadable == 0);

  int bursts = 0;
  int outages = 0;
  int drops = 0;
  int64_t outage_logins = 0;
  int64_t before_outage_logins = 0;
  int64_t outage_troubles = 0;
  int64_t before_outage_troubles = 0;
  int64_t drop_purchases = 0;
  int64_t before_drop_purchases = 0;
  int64_t previous_end[3] = {o.start_ms, o.start_ms, o.start_ms};
  for (const AnomalyTruth& a : g.ground_truth().anomalies) {
    INFO(AnomalyKindName(a.kind) << " " << a.customer_id << " " << a.start_ms << ".." << a.end_ms);
    REQUIRE(a.start_ms < a.end_ms);
    if (a.end_ms > end) continue;
    const int64_t length = a.end_ms - a.start_ms;
    if (a.kind == AnomalyKind::kRefundBurst) {
      ++bursts;
      REQUIRE_FALSE(a.customer_id.empty());
      const auto& r = refunds_by_customer[a.customer_id];
      // The burst: at least the configured minimum within hours ...
      CHECK(CountIn(r, a.start_ms, a.end_ms + 1) >= o.anomalies.refund_burst_min_refunds);
      // ... where the same customer's week before has at most a couple.
      CHECK(CountIn(r, a.start_ms - 7 * kMillisPerDay, a.start_ms) <= 2);
      continue;
    }
    REQUIRE(a.customer_id.empty());
    const int kind = static_cast<int>(a.kind);
    // Windows of one kind never overlap.
    CHECK(a.start_ms >= previous_end[kind]);
    const bool clean_before = a.start_ms - length >= previous_end[kind];
    previous_end[kind] = a.end_ms;
    if (!clean_before) continue;
    if (a.kind == AnomalyKind::kOutage) {
      ++outages;
      const int64_t during = CountIn(logins, a.start_ms, a.end_ms);
      const int64_t before = CountIn(logins, a.start_ms - length, a.start_ms);
      // Each outage on its own: logins collapse against the same length just before.
      CHECK(during * 2 < before);
      outage_logins += during;
      before_outage_logins += before;
      outage_troubles += CountIn(troubles, a.start_ms, a.end_ms);
      before_outage_troubles += CountIn(troubles, a.start_ms - length, a.start_ms);
    } else {
      ++drops;
      drop_purchases += CountIn(purchases, a.start_ms, a.end_ms);
      before_drop_purchases += CountIn(purchases, a.start_ms - length, a.start_ms);
    }
  }
  INFO("bursts " << bursts << ", outages " << outages << ", revenue drops " << drops);
  CHECK(bursts > 60);  // 3 a day for 40 days
  REQUIRE(outages >= 5);
  REQUIRE(drops >= 5);
  CHECK(outage_logins * 4 < before_outage_logins);
  CHECK(outage_troubles > 2 * before_outage_troubles);
  CHECK(drop_purchases * 10 < before_drop_purchases * 6);
}

TEST_CASE("With anomalies disabled none is injected or recorded", "[generator]") {
  WorldOptions o;
  o.customers = 500;
  o.anomalies.refund_bursts_per_day = 100;  // ignored while disabled
  REQUIRE_OK_AND_ASSIGN(auto g_owner, WorldGenerator::Create(o));
  WorldGenerator& g = *g_owner;
  std::string key;
  std::string value;
  for (int i = 0; i < 100'000; ++i) g.Next(&key, &value);
  CHECK(g.ground_truth().anomalies.empty());
}

}  // namespace
}  // namespace crmstream::generator
