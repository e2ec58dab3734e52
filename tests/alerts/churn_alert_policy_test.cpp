#include "crmstream/alerts/churn_alert_policy.h"

#include <catch2/catch.hpp>
#include <cstring>
#include <set>
#include <string>
#include <vector>

#include "crmstream/common/hash.h"
#include "support/require_ok.h"

namespace crmstream::alerts {
namespace {

constexpr int64_t kHour = 3'600'000;
constexpr int64_t kDay = 24 * kHour;
constexpr int64_t kT0 = 1'767'225'600'000;

ChurnAlertPolicy Policy(ChurnAlertPolicyOptions o = {}) {
  return ChurnAlertPolicy::Create(o).value();
}

TEST_CASE("Alert policy options name the bad field", "[alerts]") {
  ChurnAlertPolicyOptions o;
  REQUIRE_OK(o.Validate());
  o.exit_probability = 0.6;  // above enter
  CHECK(o.Validate().message().find("exit_probability") != std::string::npos);
  o = {};
  o.high_probability = 0.3;  // below enter
  CHECK(o.Validate().message().find("high_probability") != std::string::npos);
  o = {};
  o.critical_probability = 0.5;  // below high
  CHECK(o.Validate().message().find("critical_probability") != std::string::npos);
  o = {};
  o.enter_probability = 0.0;
  CHECK(o.Validate().message().find("enter_probability") != std::string::npos);
  o = {};
  o.cooldown_ms = -1;
  CHECK_FALSE(ChurnAlertPolicy::Create(o).ok());
}

TEST_CASE("Hysteresis: one alert per episode, re-armed only below the exit level", "[alerts]") {
  ChurnAlertPolicyOptions o;
  o.enter_probability = 0.5;
  o.exit_probability = 0.3;
  o.cooldown_ms = 0;
  ChurnAlertPolicy p = Policy(o);
  CustomerAlertState s;
  // A score that hovers around the threshold: 0.49 0.51 0.45 0.55 0.31 0.6
  // 0.29 0.5. Only the first crossing, and the crossing after the fall below
  // 0.3, alert.
  const std::vector<double> scores = {0.49, 0.51, 0.45, 0.55, 0.31, 0.6, 0.29, 0.5};
  std::vector<int> raised;
  for (size_t i = 0; i < scores.size(); ++i) {
    if (p.Evaluate("c1", scores[i], kT0 + static_cast<int64_t>(i) * kHour, &s).raise) {
      raised.push_back(static_cast<int>(i));
    }
  }
  CHECK(raised == std::vector<int>{1, 7});
  CHECK(p.counters().alerts == 2);
  CHECK(p.counters().rearms == 1);
  CHECK(s.episode_start_ms == kT0 + 7 * kHour);
  // NaN changes nothing.
  const CustomerAlertState before = s;
  CHECK_FALSE(p.Evaluate("c1", std::nan(""), kT0 + 9 * kHour, &s).raise);
  CHECK(s == before);
}

TEST_CASE("Cool-down in event time holds a new episode back, then lets it through", "[alerts]") {
  ChurnAlertPolicyOptions o;
  o.cooldown_ms = 7 * kDay;
  ChurnAlertPolicy p = Policy(o);
  CustomerAlertState s;
  REQUIRE(p.Evaluate("c", 0.6, kT0, &s).raise);
  CHECK_FALSE(p.Evaluate("c", 0.1, kT0 + kDay, &s).raise);  // re-armed
  CHECK(s.armed());
  // High again after 2 days: inside the cool-down, no alert, still armed.
  CHECK_FALSE(p.Evaluate("c", 0.9, kT0 + 2 * kDay, &s).raise);
  CHECK(s.armed());
  CHECK(p.counters().suppressed_by_cooldown == 1);
  CHECK_FALSE(p.Evaluate("c", 0.9, kT0 + 7 * kDay - 1, &s).raise);
  // Exactly the cool-down later: the alert comes.
  const AlertDecision d = p.Evaluate("c", 0.9, kT0 + 7 * kDay, &s);
  CHECK(d.raise);
  CHECK(d.severity == Severity::kCritical);  // 0.9 >= the default critical level
  // Another customer is independent.
  CustomerAlertState other;
  CHECK(p.Evaluate("d", 0.6, kT0 + kDay, &other).raise);
}

TEST_CASE("Severity follows the probability bands", "[alerts]") {
  ChurnAlertPolicyOptions o;
  o.enter_probability = 0.5;
  o.high_probability = 0.7;
  o.critical_probability = 0.85;
  ChurnAlertPolicy p = Policy(o);
  CHECK(p.SeverityOf(0.5) == Severity::kWarning);
  CHECK(p.SeverityOf(0.6999) == Severity::kWarning);
  CHECK(p.SeverityOf(0.7) == Severity::kHigh);
  CHECK(p.SeverityOf(0.85) == Severity::kCritical);
  CHECK(SeverityName(Severity::kHigh) == "high");
  CustomerAlertState a, b, c;
  CHECK(p.Evaluate("a", 0.55, kT0, &a).severity == Severity::kWarning);
  CHECK(p.Evaluate("b", 0.75, kT0, &b).severity == Severity::kHigh);
  CHECK(p.Evaluate("c", 0.95, kT0, &c).severity == Severity::kCritical);
  CHECK(p.counters().by_severity == std::array<uint64_t, 3>{1, 1, 1});
}

TEST_CASE("Alert ids are stable per customer and episode and differ otherwise", "[alerts]") {
  ChurnAlertPolicy p1 = Policy(), p2 = Policy();
  CustomerAlertState s1, s2;
  const AlertDecision d1 = p1.Evaluate("cust-42", 0.8, kT0 + 5, &s1);
  const AlertDecision d2 = p2.Evaluate("cust-42", 0.8, kT0 + 5, &s2);
  REQUIRE(d1.raise);
  CHECK(d1.alert_id == d2.alert_id);  // a re-processed input: the same id
  CHECK(d1.alert_id == ChurnAlertPolicy::AlertId("cust-42", kT0 + 5));
  // Independent reference: the id seeds nothing but the customer id hash
  // with the hash of the 8 little-endian bytes of the start time.
  char bytes[8];
  const int64_t t = kT0 + 5;
  std::memcpy(bytes, &t, 8);
  CHECK(d1.alert_id == Hash64("cust-42", Hash64(std::string_view(bytes, 8))));
  std::set<uint64_t> ids;
  for (int c = 0; c < 100; ++c) {
    for (int e = 0; e < 10; ++e) {
      ids.insert(ChurnAlertPolicy::AlertId("c" + std::to_string(c), kT0 + e * kDay));
    }
  }
  CHECK(ids.size() == 1000);
  char hex[16];
  ChurnAlertPolicy::AlertIdHex(0x0123456789abcdefULL, hex);
  CHECK(std::string(hex, 16) == "0123456789abcdef");
}

TEST_CASE("Customer alert state round-trips and rejects corrupt bytes", "[alerts]") {
  ChurnAlertPolicy p = Policy();
  CustomerAlertState s;
  std::string bytes;
  ChurnAlertPolicy::EncodeCustomerState(s, &bytes);  // armed, never alerted
  REQUIRE(bytes.size() == ChurnAlertPolicy::kEncodedCustomerStateBytes);
  CustomerAlertState back;
  back.last_alert_ms = 1;
  REQUIRE_OK(ChurnAlertPolicy::DecodeCustomerState(bytes, &back));
  CHECK(back == s);

  REQUIRE(p.Evaluate("c", 0.9, kT0, &s).raise);
  bytes.clear();
  ChurnAlertPolicy::EncodeCustomerState(s, &bytes);
  REQUIRE_OK(ChurnAlertPolicy::DecodeCustomerState(bytes, &back));
  CHECK(back == s);
  // The restored state behaves as the original: no second alert in the
  // episode, and the same re-arm.
  ChurnAlertPolicy q = Policy();
  CHECK_FALSE(q.Evaluate("c", 0.95, kT0 + kDay, &back).raise);
  CHECK_FALSE(q.Evaluate("c", 0.1, kT0 + 2 * kDay, &back).raise);
  CHECK(back.armed());

  const CustomerAlertState unchanged = back;
  CHECK(ChurnAlertPolicy::DecodeCustomerState(bytes.substr(0, 16), &back).code() ==
        StatusCode::kCorruption);
  std::string wrong_version = bytes;
  wrong_version[0] = 9;
  CHECK_FALSE(ChurnAlertPolicy::DecodeCustomerState(wrong_version, &back).ok());
  // An open episode with no alert cannot happen.
  std::string inconsistent;
  CustomerAlertState bad;
  bad.episode_start_ms = kT0;
  ChurnAlertPolicy::EncodeCustomerState(bad, &inconsistent);
  CHECK_FALSE(ChurnAlertPolicy::DecodeCustomerState(inconsistent, &back).ok());
  CHECK(back == unchanged);
}

TEST_CASE("Global policy state round-trips and rejects other rules or corruption", "[alerts]") {
  ChurnAlertPolicy p = Policy();
  std::vector<CustomerAlertState> states(50);
  for (int i = 0; i < 50; ++i) {
    for (int k = 0; k < 4; ++k) {
      p.Evaluate("c" + std::to_string(i), (i * 7 + k * 13) % 100 / 100.0, kT0 + k * kDay,
                 &states[static_cast<size_t>(i)]);
    }
  }
  REQUIRE(p.counters().alerts > 0);
  std::string bytes;
  p.EncodeGlobalState(&bytes);
  ChurnAlertPolicy q = Policy();
  REQUIRE_OK(q.DecodeGlobalState(bytes));
  CHECK(q.counters() == p.counters());
  CHECK(q.counters().evaluations == 200);

  for (size_t cut = 0; cut < bytes.size(); cut += 7) {
    CHECK_FALSE(q.DecodeGlobalState(std::string_view(bytes).substr(0, cut)).ok());
  }
  for (size_t i = 0; i < bytes.size(); ++i) {
    std::string flipped = bytes;
    flipped[i] = static_cast<char>(flipped[i] ^ 0x10);
    CHECK_FALSE(q.DecodeGlobalState(flipped).ok());
  }
  CHECK(q.counters() == p.counters());
  ChurnAlertPolicyOptions other;
  other.cooldown_ms = kDay;
  ChurnAlertPolicy r = Policy(other);
  CHECK(r.DecodeGlobalState(bytes).code() == StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace crmstream::alerts
