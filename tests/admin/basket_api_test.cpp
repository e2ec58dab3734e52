// The basket models' API on a running engine: /api/associations?item=X and
// /api/customers/{id}/recommendations (and its earlier path
// /api/recommendations/{id}), answered from hand-made baskets whose rules and
// neighbours are counted by hand below.
#include <simdjson.h>

#include <catch2/catch.hpp>
#include <set>
#include <string>

#include "admin/engine_fixture.h"
#include "support/require_ok.h"

namespace crmstream::admin {
namespace {

using testing::HttpGet;

std::string Line(int n, const std::string& customer, const std::string& order,
                 const std::string& item) {
  return R"({"event_id":"l)" + std::to_string(n) + R"(","customer_id":")" + customer +
         R"(","timestamp":)" + std::to_string(1767225600000 + n * 60'000) +
         R"(,"type":"purchase","amount":5,"order_id":")" + order + R"(","item_id":")" + item +
         R"("})";
}

TEST_CASE("Admin server: co-purchase rules and recommendations of a running engine",
          "[metrics][integration][associations][recommendations]") {
  // One input partition: the recommender learns from the customers of its
  // partition (the rules of several partitions are merged:
  // basket_state_test.cpp).
  testing::RunningEngine e(1, {}, [](pipeline::PipelineSpec* spec) {
    spec->processor.recommendations_enabled = true;  // off by default
  });
  REQUIRE(e.WaitForReady());
  // Five baskets of five customers:
  //   O1 {A, B, C}  O2 {A, B}  O3 {A, B, D}  O4 {A, C}  O5 {E}
  // n(A) = 4, n(B) = 3, n(C) = 2; n(AB) = 3, n(AC) = 2, every other pair 1.
  // At the shipped floors (2 baskets, confidence 0.1, lift 1):
  //   A -> B  confidence 3/4, lift 0.75 / (3/5) = 1.25
  //   A -> C  confidence 2/4, lift 0.5 / (2/5) = 1.25
  const std::vector<std::tuple<std::string, std::string, std::string>> lines = {
      {"K1", "O1", "A"}, {"K1", "O1", "B"}, {"K1", "O1", "C"}, {"K2", "O2", "A"},
      {"K2", "O2", "B"}, {"K3", "O3", "A"}, {"K3", "O3", "B"}, {"K3", "O3", "D"},
      {"K4", "O4", "A"}, {"K4", "O4", "C"}, {"K5", "O5", "E"}};
  int n = 0;
  for (const auto& [customer, order, item] : lines) {
    e.Produce(customer, Line(n++, customer, order, item));
  }
  e.Flush();
  REQUIRE(e.WaitForReceived(lines.size()));

  simdjson::dom::parser parser;
  auto a = HttpGet(e.port(), "/api/associations?item=A");
  REQUIRE(a.status == 200);
  CHECK(a.content_type == "application/json");
  simdjson::dom::element doc = parser.parse(a.body);
  CHECK(std::string_view(doc["item"]) == "A");
  CHECK(int64_t(doc["partitions"]) == 1);
  CHECK(uint64_t(doc["baskets"]) == 5);
  CHECK(bool(doc["exact"]));
  simdjson::dom::array rules = doc["rules"].get_array();
  REQUIRE(rules.size() == 2);
  simdjson::dom::element first = rules.at(0), second = rules.at(1);
  CHECK(std::string_view(first["antecedent"]) == "A");
  CHECK(std::string_view(first["consequent"]) == "B");
  CHECK(uint64_t(first["pair_count"]) == 3);
  CHECK(double(first["confidence"]) == Approx(0.75));
  CHECK(double(first["lift"]) == Approx(1.25));
  CHECK(double(first["support"]) == Approx(0.6));
  CHECK(std::string_view(second["consequent"]) == "C");
  CHECK(double(second["confidence"]) == Approx(0.5));
  CHECK(double(second["lift"]) == Approx(1.25));

  // A percent-encoded item, among other parameters.
  auto b = HttpGet(e.port(), "/api/associations?x=1&item=%42");
  REQUIRE(b.status == 200);
  doc = parser.parse(b.body);
  REQUIRE(doc["rules"].get_array().size() == 1);
  CHECK(std::string_view(doc["rules"].at(0)["consequent"]) == "A");
  CHECK(double(doc["rules"].at(0)["confidence"]) == Approx(1.0));
  // An item of the window without rules; an item of no basket; no item.
  auto lone = HttpGet(e.port(), "/api/associations?item=E");
  REQUIRE(lone.status == 200);
  CHECK(parser.parse(lone.body)["rules"].get_array().size() == 0);
  auto unknown = HttpGet(e.port(), "/api/associations?item=Z");
  CHECK(unknown.status == 404);
  doc = parser.parse(unknown.body);
  CHECK(std::string_view(doc["error"]) == "unknown item");
  CHECK(std::string_view(doc["item"]) == "Z");
  CHECK(HttpGet(e.port(), "/api/associations").status == 400);
  CHECK(HttpGet(e.port(), "/api/associations?item=").status == 400);
  CHECK(HttpGet(e.port(), "/api/associations?item=%zz").status == 400);

  // K4 bought A and C: B is the neighbour of A not yet bought (with A in
  // 3 of A's 4 baskets), explained by A.
  auto k4 = HttpGet(e.port(), "/api/customers/K4/recommendations");
  REQUIRE(k4.status == 200);
  CHECK(k4.content_type == "application/json");
  doc = parser.parse(k4.body);
  CHECK(std::string_view(doc["customer_id"]) == "K4");
  simdjson::dom::array items = doc["items"].get_array();
  REQUIRE(items.size() >= 1);
  CHECK(std::string_view(items.at(0)["item"]) == "B");
  CHECK_FALSE(bool(items.at(0)["popular"]));
  CHECK(std::string_view(items.at(0)["because"].at(0)) == "A");
  for (simdjson::dom::element item : items) {
    const std::string_view name(item["item"]);
    CHECK(name != "A");
    CHECK(name != "C");
  }
  // The earlier path answers the same.
  CHECK(HttpGet(e.port(), "/api/recommendations/K4").body == k4.body);
  // The customer read itself is unchanged beside it.
  auto k4_scores = HttpGet(e.port(), "/api/customers/K4");
  REQUIRE(k4_scores.status == 200);
  CHECK(std::string_view(parser.parse(k4_scores.body)["customer_id"]) == "K4");
  auto nobody = HttpGet(e.port(), "/api/customers/nobody/recommendations");
  CHECK(nobody.status == 404);
  CHECK(std::string_view(parser.parse(nobody.body)["customer_id"]) == "nobody");
  CHECK(HttpGet(e.port(), "/api/customers//recommendations").status == 400);
  CHECK(HttpGet(e.port(), "/api/customers/a/b/recommendations").status == 400);
  CHECK(HttpGet(e.port(), "/api/recommendations/").status == 400);

  const std::string metrics = HttpGet(e.port(), "/metrics").body;
  CHECK(testing::SampleValue(
            metrics,
            R"(crmstream_admin_http_requests_total{code="200",path="/api/associations"})") == 3);
  CHECK(testing::SampleValue(
            metrics,
            R"(crmstream_admin_http_requests_total{code="200",path="/api/recommendations"})") == 2);
  REQUIRE_OK(e.StopEngine());
}

}  // namespace
}  // namespace crmstream::admin
