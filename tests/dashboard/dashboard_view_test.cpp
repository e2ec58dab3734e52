// DashboardView: what the page is shown must match the records it was fed,
// computed independently here (latest value per customer, newest-first feed).
#include "crmstream/dashboard/dashboard_view.h"

#include <simdjson.h>

#include <catch2/catch.hpp>
#include <map>
#include <random>
#include <string>
#include <vector>

namespace crmstream::dashboard {
namespace {

std::string Score(const std::string& id, double p, int segment) {
  return R"({"customer_id":")" + id +
         R"(","as_of_ms":1700000000000,"events":3,"features":{"x":1},)" +
         R"("churn_probability":)" + std::to_string(p) +
         R"(,"predicted_value_30d":12.5,"segment":)" +
         (segment < 0 ? std::string("null") : std::to_string(segment)) +
         R"(,"anomaly_score":0.1,"added_later":[1,2]})";
}

std::string Alert(const std::string& alert_id, const std::string& customer, double p,
                  const std::string& severity) {
  return R"({"alert_id":")" + alert_id + R"(","customer_id":")" + customer +
         R"(","as_of_ms":1700000000000,"severity":")" + severity + R"(","churn_probability":)" +
         std::to_string(p) +
         R"(,"threshold":0.6,"contributions":[)"
         R"({"feature":"days_since_last_login","value":41,"contribution":1.25},)"
         R"({"feature":"tickets_30d","value":4,"contribution":0.5},)"
         R"({"feature":"spend_30d","value":3.5,"contribution":-0.25}],)"
         R"("trigger":{"event_id":"e1","type":"support_ticket","timestamp_ms":1700000000000}})";
}

// The snapshot, parsed back for checking.
struct Parsed {
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  explicit Parsed(const std::string& json) {
    REQUIRE(parser.parse(json).get(doc) == simdjson::SUCCESS);
  }
};

std::vector<int64_t> Histogram(simdjson::dom::element doc) {
  std::vector<int64_t> bins;
  for (auto b : doc["risk"]["histogram"].get_array()) bins.push_back(b.get_int64());
  return bins;
}

TEST_CASE("churn-risk histogram keeps the latest probability of each customer", "[dashboard]") {
  DashboardViewOptions options;
  options.histogram_bins = 10;
  DashboardView view(options);
  std::mt19937 rng(7);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  std::map<std::string, double> latest;  // the reference: last probability per customer
  std::map<int, int64_t> segment_reference;
  std::map<std::string, int> latest_segment;
  for (int i = 0; i < 5000; ++i) {
    const std::string id = "C" + std::to_string(rng() % 700);
    // Mostly low risk, a tail of high risk, like a real customer base.
    const double p = u(rng) < 0.8 ? u(rng) * 0.3 : 0.5 + u(rng) * 0.5;
    const int segment = static_cast<int>(rng() % 4);
    latest[id] = p;
    latest_segment[id] = segment;
    REQUIRE(view.Apply(OutputKind::kCustomerScores, Score(id, p, segment)));
  }
  std::vector<int64_t> expected(10, 0);
  for (const auto& [id, p] : latest) {
    // std::to_string prints 6 decimals: bin the value the view actually received.
    const double sent = std::stod(std::to_string(p));
    ++expected[std::min<size_t>(9, static_cast<size_t>(sent * 10))];
  }
  for (const auto& [id, s] : latest_segment) ++segment_reference[s];

  Parsed snap(view.Snapshot(1));
  CHECK(Histogram(snap.doc) == expected);
  CHECK(int64_t(snap.doc["risk"]["customers"]) == static_cast<int64_t>(latest.size()));
  CHECK(int64_t(snap.doc["feed"]["records"]["customer_scores"]) == 5000);
  std::map<int, int64_t> sizes;
  for (auto s : snap.doc["segments"]["sizes_from_scores"].get_array()) {
    sizes[static_cast<int>(int64_t(s["segment"]))] = s["size"].get_int64();
  }
  CHECK(sizes == segment_reference);
}

// A customer-scores record of a churn model whose gate is `state`: null
// probability unless open.
std::string GatedScore(const std::string& id, const std::string& state, double p, int labels,
                       double auc) {
  return R"({"customer_id":")" + id + R"(","as_of_ms":1700000000000,"events":3,"features":{},)" +
         R"("churn_probability":)" + (state == "open" ? std::to_string(p) : std::string("null")) +
         R"(,"churn_model":{"state":")" + state + R"(","labels":)" + std::to_string(labels) +
         R"(,"closings":3,"auc":)" + std::to_string(auc) +
         R"(},"predicted_value_30d":1,"segment":1,"anomaly_score":0.1})";
}

TEST_CASE("while the churn model warms up nobody is binned at risk, and the page is told why",
          "[dashboard]") {
  DashboardViewOptions options;
  options.histogram_bins = 10;
  DashboardView view(options);
  for (int i = 0; i < 40; ++i) {
    REQUIRE(view.Apply(OutputKind::kCustomerScores,
                       GatedScore("C" + std::to_string(i), "warming_up", 0, 412, 0.61)));
  }
  {
    Parsed snap(view.Snapshot(1));
    for (int64_t b : Histogram(snap.doc)) CHECK(b == 0);
    CHECK(int64_t(snap.doc["risk"]["customers"]) == 40);
    CHECK(int64_t(snap.doc["risk"]["unscored"]) == 40);
    CHECK(std::string_view(snap.doc["risk"]["model"]["state"]) == "warming_up");
    CHECK(int64_t(snap.doc["risk"]["model"]["labels"]) == 412);
    CHECK(double(snap.doc["risk"]["model"]["auc"]) == Approx(0.61));
  }
  // The gate opens: the customers scored since move into their bins.
  for (int i = 0; i < 10; ++i) {
    REQUIRE(view.Apply(OutputKind::kCustomerScores,
                       GatedScore("C" + std::to_string(i), "open", 0.75, 5000, 0.83)));
  }
  Parsed snap(view.Snapshot(1));
  std::vector<int64_t> expected(10, 0);
  expected[7] = 10;
  CHECK(Histogram(snap.doc) == expected);
  CHECK(int64_t(snap.doc["risk"]["unscored"]) == 30);
  CHECK(int64_t(snap.doc["risk"]["customers"]) == 40);
  CHECK(std::string_view(snap.doc["risk"]["model"]["state"]) == "open");
  // A probability that is neither a number nor null is refused.
  CHECK_FALSE(
      view.Apply(OutputKind::kCustomerScores, R"({"customer_id":"X","churn_probability":"high"})"));
}

TEST_CASE("the customer map is bounded and counts the customers past its cap", "[dashboard]") {
  DashboardViewOptions options;
  options.max_customers = 100;
  DashboardView view(options);
  for (int i = 0; i < 250; ++i) {
    REQUIRE(view.Apply(OutputKind::kCustomerScores, Score("C" + std::to_string(i), 0.42, 1)));
  }
  Parsed snap(view.Snapshot(1));
  int64_t total = 0;
  for (int64_t b : Histogram(snap.doc)) total += b;
  CHECK(total == 100);
  CHECK(int64_t(snap.doc["risk"]["customers"]) == 100);
  CHECK(int64_t(snap.doc["risk"]["untracked"]) == 150);
}

TEST_CASE("alert feed: newest first, bounded, re-sent alerts replace their entry", "[dashboard]") {
  DashboardViewOptions options;
  options.max_alerts = 5;
  DashboardView view(options);
  for (int i = 0; i < 8; ++i) {
    REQUIRE(view.Apply(
        OutputKind::kChurnAlerts,
        Alert("a" + std::to_string(i), "C" + std::to_string(i), 0.7, i % 2 ? "high" : "critical")));
  }
  // a7 delivered again (at-least-once): still one entry, still 8 alerts in total.
  REQUIRE(view.Apply(OutputKind::kChurnAlerts, Alert("a7", "C7", 0.71, "high")));
  Parsed snap(view.Snapshot(1));
  auto recent = snap.doc["alerts"]["recent"].get_array();
  std::vector<std::string> ids;
  for (auto a : recent) ids.emplace_back(std::string_view(a["alert_id"]));
  CHECK(ids == std::vector<std::string>{"a7", "a6", "a5", "a4", "a3"});
  CHECK(int64_t(snap.doc["alerts"]["total"]) == 8);
  CHECK(int64_t(snap.doc["alerts"]["by_severity"]["critical"]) == 4);
  CHECK(int64_t(snap.doc["alerts"]["by_severity"]["high"]) == 4);
  auto first = *recent.begin();
  CHECK(double(first["churn_probability"]) == Approx(0.71));
  CHECK(std::string_view(first["trigger"]) == "support_ticket");
  auto contributions = first["contributions"].get_array();
  REQUIRE(contributions.size() == 3);
  CHECK(std::string_view((*contributions.begin())["feature"]) == "days_since_last_login");
  CHECK(double((*contributions.begin())["contribution"]) == Approx(1.25));
}

TEST_CASE("segments, anomalies and correlations show the latest snapshots", "[dashboard]") {
  DashboardViewOptions options;
  options.max_anomalies = 3;
  DashboardView view(options);
  REQUIRE(view.Apply(OutputKind::kSegments,
                     R"({"kind":"centroids","as_of_ms":2000,"k":2,"features":["recency","spend"],)"
                     R"("centroids":[{"segment":0,"size":70,"center":[1.5,200]},)"
                     R"({"segment":1,"size":30,"center":[40,5]}]})"));
  // An older snapshot delivered late does not replace the newer one.
  REQUIRE(view.Apply(OutputKind::kSegments,
                     R"({"kind":"centroids","as_of_ms":1000,"k":1,"features":["recency"],)"
                     R"("centroids":[{"segment":0,"size":1,"center":[9]}]})"));
  REQUIRE(view.Apply(
      OutputKind::kSegments,
      R"({"kind":"segment_change","customer_id":"C1","as_of_ms":2100,"from":null,"to":1})"));
  for (int i = 0; i < 5; ++i) {
    REQUIRE(view.Apply(OutputKind::kAnomalies,
                       R"({"kind":"metric","metric":"revenue_per_minute","as_of_ms":)" +
                           std::to_string(60000 * i) + R"(,"score":)" + std::to_string(i + 3) +
                           R"(,"observed":950,"expected":400,"direction":"up","minutes":)" +
                           std::to_string(10 + i) + R"(,"sustained":true})"));
  }
  REQUIRE(view.Apply(
      OutputKind::kAnomalies,
      R"({"kind":"customer","customer_id":"C9","as_of_ms":400000,"score":8.5,"severity":"high",)"
      R"("observed":{"spend_7d":900,"logins_7d":3},"expected":{"spend_7d":50,"logins_7d":3}})"));
  REQUIRE(view.Apply(OutputKind::kCorrelations,
                     R"({"as_of_ms":5000,"window_minutes":60,"metrics":["a","b"],)"
                     R"("matrix":[[1,-0.5],[-0.5,null]]})"));

  Parsed snap(view.Snapshot(1));
  auto seg = snap.doc["segments"];
  CHECK(int64_t(seg["as_of_ms"]) == 2000);
  CHECK(int64_t(seg["changes"]) == 1);
  auto centroids = seg["centroids"].get_array();
  REQUIRE(centroids.size() == 2);
  CHECK(int64_t((*centroids.begin())["size"]) == 70);
  CHECK(double((*centroids.begin())["center"].at(1)) == Approx(200));

  auto anomalies = snap.doc["anomalies"];
  CHECK(int64_t(anomalies["total"]) == 6);
  auto recent = anomalies["recent"].get_array();
  REQUIRE(recent.size() == 3);
  auto newest = *recent.begin();
  CHECK(std::string_view(newest["subject"]) == "C9");
  // The customer's largest deviation comes first; unchanged features follow.
  CHECK(std::string_view(newest["deviations"].at(0)["name"]) == "spend_7d");
  CHECK(double(newest["deviations"].at(0)["observed"]) == Approx(900));
  CHECK(double(recent.at(1)["deviations"].at(0)["expected"]) == Approx(400));
  // Severity of a customer anomaly; persistence and direction of a global one.
  CHECK(std::string_view(newest["severity"]) == "high");
  CHECK(std::string_view(recent.at(1)["direction"]) == "up");
  CHECK(int64_t(recent.at(1)["minutes"]) == 14);
  CHECK(bool(recent.at(1)["sustained"]));
  // An unknown severity is not shown as one.
  REQUIRE(view.Apply(OutputKind::kAnomalies,
                     R"({"kind":"customer","customer_id":"C8","as_of_ms":500000,"score":1,)"
                     R"("severity":"<script>","observed":{},"expected":{}})"));
  Parsed later(view.Snapshot(2));
  CHECK(later.doc["anomalies"]["recent"].at(0)["severity"].is_null());

  auto corr = snap.doc["correlations"];
  CHECK(int64_t(corr["window_minutes"]) == 60);
  CHECK(double(corr["matrix"].at(0).at(1)) == Approx(-0.5));
  CHECK(corr["matrix"].at(1).at(1).is_null());
}

TEST_CASE("malformed records are counted and do not disturb the view", "[dashboard]") {
  DashboardView view;
  CHECK_FALSE(view.Apply(OutputKind::kCustomerScores, "not json"));
  CHECK_FALSE(view.Apply(OutputKind::kCustomerScores, R"({"customer_id":"C1"})"));
  CHECK_FALSE(view.Apply(OutputKind::kChurnAlerts, R"([1,2,3])"));
  CHECK_FALSE(view.Apply(OutputKind::kCorrelations, R"({"metrics":"x"})"));
  CHECK(view.Apply(OutputKind::kCustomerScores, Score("C1", 0.95, -1)));
  CHECK(view.Apply(OutputKind::kDeadLetter, "anything: dead letters are only counted"));
  Parsed snap(view.Snapshot(1));
  CHECK(int64_t(snap.doc["feed"]["malformed"]) == 4);
  CHECK(int64_t(snap.doc["risk"]["customers"]) == 1);
  CHECK(Histogram(snap.doc).back() == 1);
  CHECK(int64_t(snap.doc["feed"]["records"]["dead_letter"]) == 1);
  CHECK(snap.doc["correlations"].is_null());
}

TEST_CASE("engine samples are kept for a bounded window", "[dashboard]") {
  DashboardViewOptions options;
  options.max_engine_samples = 4;
  DashboardView view(options);
  for (int i = 0; i < 10; ++i) {
    EngineSample s;
    s.wall_ms = 1000 * i;
    s.engine_reachable = i != 9;
    s.events_per_second = i < 9 ? 100.0 * i : -1;
    view.AddEngineSample(s);
  }
  Parsed snap(view.Snapshot(1));
  auto samples = snap.doc["engine"]["samples"].get_array();
  REQUIRE(samples.size() == 4);
  CHECK(int64_t(samples.at(0).at(0)) == 6000);
  CHECK(double(samples.at(2).at(1)) == Approx(800));
  CHECK(samples.at(3).at(1).is_null());  // unknown is null, not a fake zero
  CHECK_FALSE(bool(snap.doc["engine"]["reachable"]));
}

}  // namespace
}  // namespace crmstream::dashboard

namespace crmstream::dashboard {

TEST_CASE("a customer's recent alerts: newest first, bounded, re-sent ones replace",
          "[dashboard]") {
  DashboardViewOptions options;
  options.alerts_per_customer = 2;
  options.max_alerted_customers = 2;
  DashboardView view(options);
  REQUIRE(view.Apply(OutputKind::kChurnAlerts, Alert("a1", "C1", 0.61, "warning")));
  REQUIRE(view.Apply(OutputKind::kChurnAlerts, Alert("a2", "C1", 0.72, "critical")));
  REQUIRE(view.Apply(OutputKind::kChurnAlerts, Alert("a3", "C1", 0.65, "high")));
  REQUIRE(view.Apply(OutputKind::kChurnAlerts, Alert("a2", "C1", 0.72, "critical")));  // re-sent
  REQUIRE(view.Apply(OutputKind::kChurnAlerts, Alert("b1", "C2", 0.66, "high")));

  simdjson::dom::parser parser;
  auto ids = [&](const std::string& customer) {
    std::vector<std::string> out;
    simdjson::dom::element doc = parser.parse(view.CustomerAlertsJson(customer));
    for (simdjson::dom::element a : doc.get_array()) {
      out.emplace_back(std::string_view(a["alert_id"]));
      CHECK(std::string_view(a["customer_id"]) == customer);
    }
    return out;
  };
  using V = std::vector<std::string>;
  CHECK(ids("C1") == V{"a2", "a3"});  // a2 re-sent last; a1 dropped by the per-customer cap
  CHECK(ids("C2") == V{"b1"});
  CHECK(view.CustomerAlertsJson("nobody") == "[]");
  // A third alerted customer evicts the first one alerted.
  REQUIRE(view.Apply(OutputKind::kChurnAlerts, Alert("c1", "C3", 0.7, "high")));
  CHECK(view.CustomerAlertsJson("C1") == "[]");
  CHECK(ids("C3") == V{"c1"});
}

}  // namespace crmstream::dashboard
