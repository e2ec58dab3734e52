// Churners as the stream shows them: one account_closed at the stated time,
// silence afterwards, and a fade before it that a model can learn from —
// measured from the emitted records only, against the ground truth.
#include <simdjson.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "crmstream/generator/world_generator.h"
#include "generator/parsed_record.h"
#include "support/require_ok.h"

namespace crmstream::generator {
namespace {

struct CustomerHistory {
  int64_t first_ms = -1;
  int64_t last_ms = -1;
  std::string last_type;
  std::vector<int64_t> logins;
  std::vector<int64_t> troubles;  // support tickets and complaints
  std::vector<int64_t> closes;
};

int64_t CountIn(const std::vector<int64_t>& times, int64_t from, int64_t to) {
  return std::lower_bound(times.begin(), times.end(), to) -
         std::lower_bound(times.begin(), times.end(), from);
}

TEST_CASE("Churners fade, close once at the stated time, and fall silent", "[generator]") {
  WorldOptions o;
  o.seed = 5;
  o.customers = 800;
  o.churn_rate = 0.1;
  REQUIRE_OK_AND_ASSIGN(auto g_owner, WorldGenerator::Create(o));
  WorldGenerator& g = *g_owner;
  const int64_t end = o.start_ms + 200 * kMillisPerDay;

  simdjson::ondemand::parser parser;
  std::unordered_map<std::string, CustomerHistory> history;
  std::string key;
  std::string value;
  int unreadable = 0;
  for (int i = 0; i < 5'000'000 && g.now_ms() < end; ++i) {
    const int64_t t = g.Next(&key, &value);
    const testing::ParsedRecord p = testing::ParseRecord(parser, value);
    if (!p.type || !p.customer_id) {
      ++unreadable;
      continue;
    }
    CustomerHistory& h = history[*p.customer_id];
    if (h.first_ms < 0) h.first_ms = t;
    h.last_ms = t;
    h.last_type = *p.type;
    if (*p.type == "login") h.logins.push_back(t);
    if (*p.type == "support_ticket" || *p.type == "complaint") h.troubles.push_back(t);
    if (*p.type == "account_closed") h.closes.push_back(t);
  }
  REQUIRE(g.now_ms() >= end);
  REQUIRE(unreadable == 0);
  const GroundTruth& truth = g.ground_truth();
  // 10% a month for over six months of a population of 800.
  REQUIRE(truth.churners.size() > 350);

  // The ground truth and the stream name the same churners.
  std::unordered_map<std::string, int64_t> joined;
  for (const CustomerTruth& c : g.Customers()) joined[c.customer_id] = c.joined_ms;
  std::set<std::string> churner_ids;
  for (const ChurnerTruth& c : truth.churners) {
    INFO(c.customer_id);
    REQUIRE(churner_ids.insert(c.customer_id).second);
    const CustomerHistory& h = history.at(c.customer_id);
    REQUIRE(h.closes.size() == 1);
    CHECK(h.closes[0] == c.closed_ms);
    // account_closed is its last record: nothing after it.
    CHECK(h.last_type == "account_closed");
    CHECK(h.last_ms == c.closed_ms);
    // The fade lasts at least fade_min_days, unless the customer joined
    // later than that before closing: then it fades from its first day.
    CHECK((c.fade_start_ms <= c.closed_ms - static_cast<int64_t>(o.fade_min_days * kMillisPerDay) ||
           c.fade_start_ms == joined.at(c.customer_id)));
    CHECK(c.fade_start_ms >= c.closed_ms - static_cast<int64_t>(o.fade_max_days * kMillisPerDay));
  }
  for (const auto& [id, h] : history) {
    if (!h.closes.empty()) CHECK(churner_ids.count(id) == 1);
  }

  // The signal: over churners whose active period before the fade is seen
  // for at least three weeks, logins in the last 14 days before closing
  // are far rarer and tickets + complaints far more frequent.
  constexpr int64_t kFortnight = 14 * kMillisPerDay;
  double early_days = 0;
  double early_logins = 0;
  double early_troubles = 0;
  double late_days = 0;
  double late_logins = 0;
  double late_troubles = 0;
  int measured = 0;
  int individually_lower = 0;
  for (const ChurnerTruth& c : truth.churners) {
    const CustomerHistory& h = history.at(c.customer_id);
    const int64_t active_from = std::max(h.first_ms, o.start_ms);
    if (c.fade_start_ms - active_from < 21 * kMillisPerDay) continue;
    const double days = static_cast<double>(c.fade_start_ms - active_from) / kMillisPerDay;
    const int64_t e_logins = CountIn(h.logins, active_from, c.fade_start_ms);
    const int64_t l_logins = CountIn(h.logins, c.closed_ms - kFortnight, c.closed_ms);
    early_days += days;
    early_logins += static_cast<double>(e_logins);
    early_troubles += static_cast<double>(CountIn(h.troubles, active_from, c.fade_start_ms));
    late_days += 14;
    late_logins += static_cast<double>(l_logins);
    late_troubles +=
        static_cast<double>(CountIn(h.troubles, c.closed_ms - kFortnight, c.closed_ms));
    ++measured;
    individually_lower += static_cast<double>(l_logins) / 14 < static_cast<double>(e_logins) / days;
  }
  REQUIRE(measured > 150);
  const double login_ratio = (late_logins / late_days) / (early_logins / early_days);
  const double trouble_ratio = (late_troubles / late_days) / (early_troubles / early_days);
  INFO("churners measured " << measured << ", login rate ratio " << login_ratio
                            << ", ticket+complaint rate ratio " << trouble_ratio);
  CHECK(login_ratio < 0.5);
  CHECK(trouble_ratio > 2.0);
  CHECK(individually_lower > 0.8 * measured);

  // Not trivial: customers who stay also have fortnights with less than
  // half their usual logins.
  std::set<std::string> fading;
  for (const ChurnerTruth& c : g.FadingCustomers()) fading.insert(c.customer_id);
  int stayers = 0;
  int stayers_with_bad_fortnight = 0;
  for (const auto& [id, h] : history) {
    if (!h.closes.empty() || fading.count(id) || h.first_ms > o.start_ms + kMillisPerDay) continue;
    if (h.logins.size() < 60) continue;
    const double per_fortnight =
        static_cast<double>(h.logins.size()) * kFortnight / static_cast<double>(end - o.start_ms);
    ++stayers;
    for (int64_t from = o.start_ms; from + kFortnight <= end; from += kFortnight) {
      if (static_cast<double>(CountIn(h.logins, from, from + kFortnight)) < 0.5 * per_fortnight) {
        ++stayers_with_bad_fortnight;
        break;
      }
    }
  }
  REQUIRE(stayers > 100);
  INFO("stayers " << stayers << ", with a bad fortnight " << stayers_with_bad_fortnight);
  CHECK(stayers_with_bad_fortnight > stayers / 10);

  // New customers replace the churners: the active population stays near
  // its size.
  int active_first_month = 0;
  int active_last_month = 0;
  for (const auto& [id, h] : history) {
    active_first_month += h.first_ms < o.start_ms + 30 * kMillisPerDay;
    active_last_month += h.last_ms >= end - 30 * kMillisPerDay;
  }
  CHECK(active_last_month > 0.8 * active_first_month);
  CHECK(active_last_month < 1.2 * active_first_month);
}

}  // namespace
}  // namespace crmstream::generator
