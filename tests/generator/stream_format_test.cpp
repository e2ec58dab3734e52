// The generated stream as a consumer sees it: deterministic, ordered in
// time, well-formed events with unique ids, and injected faults exactly as
// the ground truth states them.
#include <simdjson.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <ctime>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <unordered_map>
#include <vector>

#include "crmstream/generator/world_generator.h"
#include "generator/parsed_record.h"
#include "support/require_ok.h"
#include "support/test_support.h"

namespace crmstream::generator {
namespace {

using testing::ParsedRecord;
using testing::ParseRecord;

struct Record {
  std::string key;
  std::string value;
  int64_t time_ms;
};

std::vector<Record> Generate(WorldGenerator& g, size_t n) {
  std::vector<Record> out(n);
  for (auto& r : out) r.time_ms = g.Next(&r.key, &r.value);
  return out;
}

WorldOptions FaultyWorld(uint64_t seed) {
  WorldOptions o;
  o.seed = seed;
  o.customers = 3000;
  o.anomalies.enabled = true;
  o.malformed_rate = 0.01;
  o.duplicate_rate = 0.01;
  return o;
}

const std::set<std::string> kTypes = {"purchase",  "login",  "page_view",   "support_ticket",
                                      "complaint", "refund", "plan_change", "account_closed"};
const std::set<std::string> kChannels = {"web", "app", "store", "phone", "email"};
const std::set<std::string> kPlans = {"basic", "plus", "premium"};

bool IsCustomerId(const std::string& s) {
  if (s.size() < 9 || s[0] != 'C') return false;
  return std::all_of(s.begin() + 1, s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// Structural ISO-8601 shape check (YYYY-MM-DDThh:mm:ss...), independent of
// the generator's formatter.
bool LooksIso8601(const std::string& s) {
  if (s.size() < 19) return false;
  const char* digits = "0123-56-89T12:45:78";
  for (size_t i = 0; i < 19; ++i) {
    const char want = digits[i];
    if (want == '-' || want == ':' || want == 'T') {
      if (s[i] != want && !(want == 'T' && s[i] == ' ')) return false;
    } else if (s[i] < '0' || s[i] > '9') {
      return false;
    }
  }
  return true;
}

// What is wrong with a record that should be a well-formed event ("" if
// nothing). Collected rather than asserted field by field: a Catch assertion
// per field of 200,000 records would dominate the test's run time.
std::string EventProblem(const ParsedRecord& p, const Record& r) {
  if (!p.valid_json) return "not valid JSON";
  if (!p.event_id || p.event_id->rfind("e-42-", 0) != 0) return "bad event_id";
  if (!p.customer_id || !IsCustomerId(*p.customer_id)) return "bad customer_id";
  if (r.key != *p.customer_id) return "key is not the customer_id";
  if (!p.timestamp_ms || *p.timestamp_ms != r.time_ms) return "timestamp differs from Next()";
  if (!p.type || kTypes.count(*p.type) == 0) return "bad type";
  if (!p.channel || kChannels.count(*p.channel) == 0) return "bad channel";
  const bool money = *p.type == "purchase" || *p.type == "refund";
  if (p.amount.has_value() != money || p.currency.has_value() != money) {
    return "amount/currency on the wrong type";
  }
  if (money) {
    if (!(*p.amount > 0) || !std::isfinite(*p.amount)) return "amount not positive";
    // Amounts are in cents.
    if (std::abs(*p.amount * 100 - std::round(*p.amount * 100)) > 1e-6) return "not in cents";
  }
  if (p.plan.has_value() != (*p.type == "plan_change")) return "plan on the wrong type";
  if (p.plan && kPlans.count(*p.plan) == 0) return "unknown plan";
  // Nothing else: in particular no hint of the latent segment or churn.
  if (p.other_fields != 0) return "extra fields";
  return "";
}

// Whether a malformed record has the defect its ground truth states, as far
// as its structure shows ("" if so).
std::string MalformedProblem(MalformedReason reason, const ParsedRecord& p) {
  const bool known_type = p.type && kTypes.count(*p.type) == 1;
  switch (reason) {
    case MalformedReason::kNotJson:
      return p.valid_json ? "parses as JSON" : "";
    case MalformedReason::kMissingCustomerId:
      return p.valid_json && !p.customer_id && p.event_id && p.timestamp_ms && known_type
                 ? ""
                 : "not just a missing customer_id";
    case MalformedReason::kAmountAsString:
      return p.valid_json && p.type == "purchase" && p.amount_string && !p.amount && p.customer_id
                 ? ""
                 : "not a purchase with a string amount";
    case MalformedReason::kUnknownType:
      return p.valid_json && p.type && !known_type && p.customer_id ? "" : "type is known";
    case MalformedReason::kBadTimestamp:
      return p.valid_json && p.timestamp_string && !LooksIso8601(*p.timestamp_string) && known_type
                 ? ""
                 : "not a bad timestamp string";
    case MalformedReason::kNegativeAmount:
      return p.valid_json && p.type == "purchase" && p.amount && *p.amount < 0
                 ? ""
                 : "not a negative purchase amount";
  }
  return "unknown reason";
}

TEST_CASE("Same seed gives a byte-identical stream, another seed another", "[generator]") {
  constexpr size_t kRecords = 100'000;
  REQUIRE_OK_AND_ASSIGN(auto a_owner, WorldGenerator::Create(FaultyWorld(7)));
  WorldGenerator& a = *a_owner;
  REQUIRE_OK_AND_ASSIGN(auto b_owner, WorldGenerator::Create(FaultyWorld(7)));
  WorldGenerator& b = *b_owner;
  REQUIRE_OK_AND_ASSIGN(auto c_owner, WorldGenerator::Create(FaultyWorld(8)));
  WorldGenerator& c = *c_owner;
  const auto ra = Generate(a, kRecords);
  const auto rb = Generate(b, kRecords);
  const auto rc = Generate(c, kRecords);
  size_t same_ab = 0;
  size_t same_ac = 0;
  for (size_t i = 0; i < kRecords; ++i) {
    same_ab +=
        ra[i].key == rb[i].key && ra[i].value == rb[i].value && ra[i].time_ms == rb[i].time_ms;
    same_ac += ra[i].value == rc[i].value;
  }
  CHECK(same_ab == kRecords);
  CHECK(same_ac == 0);  // event ids carry the seed
  // Not only the ids: the other world's customers behave differently.
  CHECK(a.ground_truth().churners.size() + a.ground_truth().events !=
        c.ground_truth().churners.size() + c.ground_truth().events);
}

TEST_CASE("first_customer_number: another range is the same world with other customers",
          "[generator]") {
  // A population larger than one world is several worlds one after another;
  // their customers must not meet.
  constexpr size_t kRecords = 50'000;
  WorldOptions o = FaultyWorld(9);
  o.customers = 500;
  o.churn_rate = 0.5;  // replacements within the records
  REQUIRE_OK_AND_ASSIGN(auto a, WorldGenerator::Create(o));
  o.first_customer_number = 1'000'001;
  REQUIRE_OK_AND_ASSIGN(auto b, WorldGenerator::Create(o));
  const auto ra = Generate(*a, kRecords);
  const auto rb = Generate(*b, kRecords);
  // The ids are zero-padded to the same width: the second stream is the first
  // with each id's number raised by 1,000,000, byte for byte.
  auto raise = [](std::string text) {
    for (size_t at = text.find("\"C"); at != std::string::npos; at = text.find("\"C", at + 1)) {
      const size_t end = text.find('"', at + 1);
      const std::string digits = text.substr(at + 2, end - at - 2);
      if (!IsCustomerId("C" + digits)) continue;  // e.g. a currency
      const std::string raised = std::to_string(1'000'000 + std::stoull(digits));
      text.replace(at + 2, digits.size(), std::string(8 - raised.size(), '0') + raised);
    }
    return text;
  };
  size_t same = 0;
  std::set<std::string> ids_a, ids_b;
  for (size_t i = 0; i < kRecords; ++i) {
    same += raise(ra[i].value) == rb[i].value && ra[i].time_ms == rb[i].time_ms;
    ids_a.insert(ra[i].key);
    ids_b.insert(rb[i].key);
  }
  CHECK(same == kRecords);
  const auto customers = b->Customers();
  REQUIRE(customers.size() > static_cast<size_t>(o.customers));  // replacements numbered after
  CHECK(customers.front().customer_id == "C01000001");
  CHECK(customers.back().customer_id == "C0" + std::to_string(1'000'000 + customers.size()));
  for (const auto& id : ids_b) CHECK(ids_a.count(id) == 0);

  o.first_customer_number = 0;
  CHECK_FALSE(o.Validate().ok());
}

TEST_CASE("Every record is an ordered, well-formed event or a malformed one of the stated reason",
          "[generator]") {
  constexpr size_t kRecords = 200'000;
  REQUIRE_OK_AND_ASSIGN(auto g_owner, WorldGenerator::Create(FaultyWorld(42)));
  WorldGenerator& g = *g_owner;
  const auto records = Generate(g, kRecords);
  const GroundTruth& truth = g.ground_truth();
  REQUIRE(truth.records == static_cast<int64_t>(kRecords));

  std::map<int64_t, MalformedReason> malformed;
  for (const MalformedTruth& m : truth.malformed) malformed[m.record_index] = m.reason;
  REQUIRE(malformed.size() == truth.malformed.size());
  // About 1% of events are followed by a malformed record.
  CHECK(truth.malformed.size() > kRecords / 200);
  CHECK(truth.malformed.size() < kRecords / 50);
  int64_t by_reason_sum = 0;
  for (int r = 0; r < kMalformedReasonCount; ++r) {
    CHECK(truth.malformed_by_reason[r] > 0);
    by_reason_sum += truth.malformed_by_reason[r];
  }
  CHECK(by_reason_sum == static_cast<int64_t>(truth.malformed.size()));

  simdjson::ondemand::parser parser;
  std::map<std::string, int> type_counts;
  std::set<std::string> currencies;
  int64_t previous = FaultyWorld(42).start_ms;
  size_t good = 0;
  size_t bad_checked = 0;
  size_t problems = 0;
  std::string first_problem;
  for (size_t i = 0; i < records.size(); ++i) {
    const Record& r = records[i];
    const ParsedRecord p = ParseRecord(parser, r.value);
    const auto bad = malformed.find(static_cast<int64_t>(i));
    std::string problem = r.time_ms < previous ? "time goes back" : "";
    previous = r.time_ms;
    if (bad == malformed.end()) {
      if (problem.empty()) problem = EventProblem(p, r);
      if (problem.empty()) {
        ++type_counts[*p.type];
        if (p.currency) currencies.insert(*p.currency);
        ++good;
      }
    } else {
      if (problem.empty()) problem = MalformedProblem(bad->second, p);
      // Whatever the defect, a malformed record never carries an event id
      // of the well-formed stream.
      if (problem.empty() && r.value.find("\"event_id\":\"e-") != std::string::npos) {
        problem = "malformed record with an e- id";
      }
      if (problem.empty()) ++bad_checked;
    }
    if (!problem.empty() && problems++ == 0) {
      first_problem = "record " + std::to_string(i) + " " + r.value + ": " + problem;
    }
  }
  INFO(first_problem);
  CHECK(problems == 0);
  CHECK(bad_checked == truth.malformed.size());
  CHECK(good + bad_checked == kRecords);
  CHECK(type_counts.size() == kTypes.size());
  CHECK(currencies == std::set<std::string>{"EUR"});
}

TEST_CASE("Event ids are unique except the injected duplicates, which the truth counts",
          "[generator]") {
  constexpr size_t kRecords = 200'000;
  REQUIRE_OK_AND_ASSIGN(auto g_owner, WorldGenerator::Create(FaultyWorld(3)));
  WorldGenerator& g = *g_owner;
  const auto records = Generate(g, kRecords);
  simdjson::ondemand::parser parser;
  std::unordered_map<std::string, size_t> first_seen;
  int64_t repeats = 0;
  int64_t distinct_events = 0;
  for (size_t i = 0; i < records.size(); ++i) {
    const ParsedRecord p = ParseRecord(parser, records[i].value);
    if (!p.event_id || p.event_id->rfind("e-", 0) != 0) continue;
    const auto [it, inserted] = first_seen.emplace(*p.event_id, i);
    if (inserted) {
      ++distinct_events;
    } else {
      ++repeats;
      // A duplicate is the same record, byte for byte, with the same key.
      CHECK(records[it->second].value == records[i].value);
      CHECK(records[it->second].key == records[i].key);
    }
  }
  const GroundTruth& truth = g.ground_truth();
  CHECK(repeats == truth.duplicates);
  CHECK(distinct_events == truth.events);
  // About 1% of events are duplicated.
  CHECK(repeats > static_cast<int64_t>(kRecords / 200));
  CHECK(repeats < static_cast<int64_t>(kRecords / 50));
}

TEST_CASE("Without faults configured every record is a distinct well-formed event", "[generator]") {
  WorldOptions o;
  o.customers = 500;
  REQUIRE_OK_AND_ASSIGN(auto g_owner, WorldGenerator::Create(o));
  WorldGenerator& g = *g_owner;
  simdjson::ondemand::parser parser;
  std::string key;
  std::string value;
  std::set<std::string> ids;
  for (int i = 0; i < 20'000; ++i) {
    g.Next(&key, &value);
    const ParsedRecord p = ParseRecord(parser, value);
    REQUIRE(p.valid_json);
    REQUIRE(p.event_id);
    REQUIRE(ids.insert(*p.event_id).second);
  }
  CHECK(g.ground_truth().malformed.empty());
  CHECK(g.ground_truth().duplicates == 0);
}

TEST_CASE("ISO-8601 timestamps name the same instants as epoch milliseconds", "[generator]") {
  WorldOptions o;
  o.customers = 1000;
  WorldOptions iso = o;
  iso.iso_timestamps = true;
  REQUIRE_OK_AND_ASSIGN(auto g_ms_owner, WorldGenerator::Create(o));
  WorldGenerator& g_ms = *g_ms_owner;
  REQUIRE_OK_AND_ASSIGN(auto g_iso_owner, WorldGenerator::Create(iso));
  WorldGenerator& g_iso = *g_iso_owner;
  simdjson::ondemand::parser parser;
  std::string key;
  std::string v_ms;
  std::string v_iso;
  for (int i = 0; i < 20'000; ++i) {
    const int64_t t_ms = g_ms.Next(&key, &v_ms);
    const int64_t t_iso = g_iso.Next(&key, &v_iso);
    REQUIRE(t_ms == t_iso);
    const ParsedRecord p = ParseRecord(parser, v_iso);
    REQUIRE(p.timestamp_string);
    const std::string& s = *p.timestamp_string;
    INFO(s);
    REQUIRE(s.size() == 24);
    REQUIRE(LooksIso8601(s));
    REQUIRE(s.substr(19) == "." + s.substr(20, 3) + "Z");
    // Independent conversion through the C library.
    std::tm tm{};
    tm.tm_year = std::stoi(s.substr(0, 4)) - 1900;
    tm.tm_mon = std::stoi(s.substr(5, 2)) - 1;
    tm.tm_mday = std::stoi(s.substr(8, 2));
    tm.tm_hour = std::stoi(s.substr(11, 2));
    tm.tm_min = std::stoi(s.substr(14, 2));
    tm.tm_sec = std::stoi(s.substr(17, 2));
    const int64_t parsed = static_cast<int64_t>(timegm(&tm)) * 1000 + std::stoi(s.substr(20, 3));
    REQUIRE(parsed == t_ms);
  }
  // 2026-01-01T00:00:00Z is 1767225600 s after the epoch.
  CHECK(o.start_ms == 1'767'225'600'000);
}

TEST_CASE("The ground truth document and stream agree with the generator's record", "[generator]") {
  WorldOptions o = FaultyWorld(11);
  o.customers = 1000;
  o.churn_rate = 0.2;
  REQUIRE_OK_AND_ASSIGN(auto g_owner, WorldGenerator::Create(o));
  WorldGenerator& g = *g_owner;
  std::vector<std::string> lines;
  g.SetGroundTruthSink([&lines](std::string_view line) { lines.emplace_back(line); });
  std::string key;
  std::string value;
  for (int i = 0; i < 300'000; ++i) g.Next(&key, &value);
  const GroundTruth& truth = g.ground_truth();
  REQUIRE_FALSE(truth.churners.empty());
  REQUIRE_FALSE(truth.anomalies.empty());

  // Streamed lines: one per churner, anomaly and malformed record.
  simdjson::ondemand::parser parser;
  std::map<std::string, size_t> kinds;
  for (const std::string& line : lines) {
    simdjson::padded_string padded(line);
    simdjson::ondemand::document doc = parser.iterate(padded);
    kinds[std::string(std::string_view(doc["record"]))]++;
  }
  CHECK(kinds["churner"] == truth.churners.size());
  CHECK(kinds["anomaly"] == truth.anomalies.size());
  CHECK(kinds["malformed"] == truth.malformed.size());

  crmstream::testing::ScratchDir dir;
  const std::string path = (dir.path() / "truth.json").string();
  REQUIRE_OK(g.WriteGroundTruth(path));
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  simdjson::dom::parser dom;
  simdjson::dom::element doc = dom.parse(text.str());
  CHECK(int64_t(doc["records"]) == truth.records);
  CHECK(int64_t(doc["events"]) == truth.events);
  CHECK(int64_t(doc["duplicates"]) == truth.duplicates);
  CHECK(int64_t(doc["malformed"]["total"]) == static_cast<int64_t>(truth.malformed.size()));
  CHECK(simdjson::dom::array(doc["churners"]).size() == truth.churners.size());
  CHECK(simdjson::dom::array(doc["anomalies"]).size() == truth.anomalies.size());
  CHECK(std::string_view(doc["churners"].at(0)["customer_id"]) == truth.churners[0].customer_id);
  CHECK(int64_t(doc["churners"].at(0)["closed_ms"]) == truth.churners[0].closed_ms);
  const auto customers = g.Customers();
  CHECK(simdjson::dom::array(doc["customers"]).size() == customers.size());
  // Closed accounts are replaced by new customers (some are still on their way).
  CHECK(customers.size() > static_cast<size_t>(o.customers));
  CHECK(customers.size() <= static_cast<size_t>(o.customers) + truth.churners.size());
  CHECK_FALSE(g.WriteGroundTruth((dir.path() / "missing" / "truth.json").string()).ok());
}

TEST_CASE("Customers differ in value and activity, and page views follow logins", "[generator]") {
  WorldOptions o;
  o.customers = 2000;
  REQUIRE_OK_AND_ASSIGN(auto g_owner, WorldGenerator::Create(o));
  WorldGenerator& g = *g_owner;
  simdjson::ondemand::parser parser;
  std::string key;
  std::string value;
  struct PerCustomer {
    double spend = 0;
    int purchases = 0;
    int logins = 0;
    int64_t last_login = -1;
  };
  std::unordered_map<std::string, PerCustomer> customers;
  int64_t page_views = 0;
  int64_t page_views_after_login = 0;
  std::map<std::string, std::set<std::string>> channels_by_type;
  const int64_t end = o.start_ms + 30 * kMillisPerDay;
  int unreadable = 0;
  for (int i = 0; i < 2'000'000 && g.now_ms() < end; ++i) {
    const int64_t t = g.Next(&key, &value);
    const ParsedRecord p = ParseRecord(parser, value);
    if (!p.type || !p.channel) {
      ++unreadable;
      continue;
    }
    PerCustomer& c = customers[key];
    channels_by_type[*p.type].insert(*p.channel);
    if (*p.type == "purchase") {
      c.spend += *p.amount;
      ++c.purchases;
    } else if (*p.type == "login") {
      ++c.logins;
      c.last_login = t;
    } else if (*p.type == "page_view") {
      ++page_views;
      page_views_after_login += c.last_login >= 0 && t - c.last_login < 30 * kMillisPerMinute;
    }
  }
  REQUIRE(g.now_ms() >= end);
  REQUIRE(unreadable == 0);
  std::vector<double> baskets;
  std::vector<double> logins;
  for (const auto& [id, c] : customers) {
    if (c.purchases >= 3) baskets.push_back(c.spend / c.purchases);
    logins.push_back(c.logins);
  }
  REQUIRE(baskets.size() > 200);
  std::sort(baskets.begin(), baskets.end());
  std::sort(logins.begin(), logins.end());
  const auto quantile = [](const std::vector<double>& v, double q) {
    return v[static_cast<size_t>(q * static_cast<double>(v.size() - 1))];
  };
  // Heterogeneous customers: the top decile's mean basket is several times
  // the bottom decile's, and likewise for how often they log in.
  CHECK(quantile(baskets, 0.9) > 3 * quantile(baskets, 0.1));
  CHECK(quantile(logins, 0.9) > 4 * std::max(1.0, quantile(logins, 0.1)));
  // Most page views come within half an hour of the customer's login.
  CHECK(static_cast<double>(page_views_after_login) > 0.7 * static_cast<double>(page_views));
  CHECK(channels_by_type["login"] == std::set<std::string>{"app", "web"});
  CHECK(channels_by_type["purchase"].count("store") == 1);
  CHECK(channels_by_type["complaint"].count("phone") == 1);
}

}  // namespace
}  // namespace crmstream::generator
