// The admin server against a running engine on the embedded cluster: the
// scrape counts exactly the records the test sent (hand-counted), promtool
// accepts it, the probes follow the engine's life, and the customer API
// returns what the test sent for that customer.
#include "crmstream/admin/admin_server.h"

#include <simdjson.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cmath>
#include <thread>

#include "admin/engine_fixture.h"
#include "http/hostile_clients.h"
#include "support/require_ok.h"

namespace crmstream::admin {
namespace {

using testing::HttpGet;
using testing::SampleValue;
using Clock = std::chrono::steady_clock;

std::string Event(const std::string& id, const std::string& customer, const std::string& type,
                  double amount = -1) {
  std::string s = R"({"event_id":")" + id + R"(","customer_id":")" + customer +
                  R"(","timestamp":1767225600000,"type":")" + type + "\"";
  if (amount >= 0) s += ",\"amount\":" + std::to_string(amount);
  return s + "}";
}

TEST_CASE("Admin server: scrape, probes and customer API on a running engine",
          "[metrics][integration]") {
  testing::RunningEngine e(2);
  // Alive while it waits for its partitions.
  CHECK(HttpGet(e.port(), "/healthz").status == 200);
  REQUIRE(e.WaitForReady());
  auto ready = HttpGet(e.port(), "/readyz");
  CHECK(ready.status == 200);
  CHECK(ready.content_type == "application/json");

  // C1: 3 purchases, 2 logins and one repeat of its first purchase; C2: a
  // ticket and a complaint; 4 bad records with known reasons.
  e.Produce("C1", Event("e1", "C1", "purchase", 10));
  e.Produce("C1", Event("e2", "C1", "purchase", 20));
  e.Produce("C1", Event("e3", "C1", "purchase", 30));
  e.Produce("C1", Event("e4", "C1", "login"));
  e.Produce("C1", Event("e5", "C1", "login"));
  e.Produce("C1", Event("e1", "C1", "purchase", 10));
  e.Produce("C2", Event("e6", "C2", "support_ticket"));
  e.Produce("C2", Event("e7", "C2", "complaint"));
  e.Produce("X", "not json");
  e.Produce("X", "{\"broken\":");
  e.Produce("X", Event("e8", "C3", "teleport"));
  e.Produce("X", R"({"event_id":"e9","timestamp":1767225600000,"type":"login"})");
  e.Flush();
  REQUIRE(e.WaitForReceived(12));

  auto scrape = HttpGet(e.port(), "/metrics");
  REQUIRE(scrape.status == 200);
  CHECK(scrape.content_type == "text/plain; version=0.0.4; charset=utf-8");
  const std::string& m = scrape.body;
  CHECK(SampleValue(m, "crmstream_input_records_total") == 12);
  CHECK(SampleValue(m, R"(crmstream_events_consumed_total{type="purchase"})") == 3);
  CHECK(SampleValue(m, R"(crmstream_events_consumed_total{type="login"})") == 2);
  CHECK(SampleValue(m, R"(crmstream_events_consumed_total{type="support_ticket"})") == 1);
  CHECK(SampleValue(m, R"(crmstream_events_consumed_total{type="complaint"})") == 1);
  CHECK(SampleValue(m, R"(crmstream_events_consumed_total{type="refund"})") == 0);
  CHECK(SampleValue(m, "crmstream_duplicate_events_total") == 1);
  CHECK(SampleValue(m, R"(crmstream_rejected_events_total{reason="not_json"})") == 2);
  CHECK(SampleValue(m, R"(crmstream_rejected_events_total{reason="unknown_event_type"})") == 1);
  CHECK(SampleValue(m, R"(crmstream_rejected_events_total{reason="missing_field"})") == 1);
  CHECK(SampleValue(m, "crmstream_dead_letters_total") == 4);
  CHECK(SampleValue(
            m, R"(crmstream_output_records_total{output="dead_letter",topic="crm.dead-letter"})") ==
        4);
  CHECK(SampleValue(m, "crmstream_assigned_partitions") == 2);
  CHECK(SampleValue(m, "crmstream_engine_live") == 1);
  CHECK(SampleValue(m, "crmstream_engine_ready") == 1);
  CHECK(SampleValue(m, R"(crmstream_build_info{version="0.1.0"})") == 1);
  // At least one non-empty batch was timed, and its count is its +Inf bucket.
  const double batches = SampleValue(m, "crmstream_batch_processing_duration_seconds_count");
  CHECK(batches >= 1);
  CHECK(SampleValue(m, R"(crmstream_batch_processing_duration_seconds_bucket{le="+Inf"})") ==
        batches);

  // promtool, the reference linter, has nothing to say about a real scrape.
  std::string lint;
  const int rc = testing::RunWithInput("promtool check metrics", m, &lint);
  INFO(lint);
  CHECK(rc == 0);
  CHECK(lint.empty());

  // The lag of both partitions appears (refreshed every 500 ms) and drains to 0.
  double lag0 = NAN, lag1 = NAN;
  const auto deadline = Clock::now() + std::chrono::seconds(20);
  do {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    const std::string body = HttpGet(e.port(), "/metrics").body;
    lag0 = SampleValue(body,
                       R"(crmstream_consumer_lag_records{topic="crm.interactions",partition="0"})");
    lag1 = SampleValue(body,
                       R"(crmstream_consumer_lag_records{topic="crm.interactions",partition="1"})");
  } while (!(lag0 == 0 && lag1 == 0) && Clock::now() < deadline);
  CHECK(lag0 == 0);
  CHECK(lag1 == 0);
  // The outputs of those records were flushed at a commit (every 200 ms
  // here): one event-to-output sample per flush, bounded by how long the
  // test has run.
  const std::string flushed = HttpGet(e.port(), "/metrics").body;
  CHECK(SampleValue(flushed, "crmstream_event_to_output_latency_seconds_count") >= 1);
  CHECK(SampleValue(flushed, "crmstream_event_to_output_latency_seconds_sum") < 120.0);

  // The customer API: what the test sent for C1.
  auto c1 = HttpGet(e.port(), "/api/customers/C1");
  REQUIRE(c1.status == 200);
  CHECK(c1.content_type == "application/json");
  simdjson::dom::parser parser;
  simdjson::dom::element doc = parser.parse(c1.body);
  CHECK(std::string_view(doc["customer_id"]) == "C1");
  CHECK(uint64_t(doc["events"]) == 5);
  CHECK(uint64_t(doc["features"]["frequency"]) == 3);
  CHECK(uint64_t(doc["features"]["event_counts"]["login"]) == 2);
  // A churn model with no matured label has not earned a probability: null,
  // and the record says why.
  CHECK(doc["churn_probability"].is_null());
  CHECK(std::string_view(doc["churn_model"]["state"]) == "warming_up");
  CHECK(std::string_view(doc["topic"]) == "crm.interactions");
  // Percent-encoded ids are decoded.
  CHECK(HttpGet(e.port(), "/api/customers/%43%32").status == 200);
  auto unknown = HttpGet(e.port(), "/api/customers/nobody");
  CHECK(unknown.status == 404);
  simdjson::dom::element err = parser.parse(unknown.body);
  CHECK(std::string_view(err["error"]) == "unknown customer");
  CHECK(std::string_view(err["customer_id"]) == "nobody");
  CHECK(HttpGet(e.port(), "/api/customers/").status == 400);
  CHECK(HttpGet(e.port(), "/api/customers/%zz").status == 400);
  CHECK(HttpGet(e.port(), "/nothing-here").status == 404);

  // The state store's feeds: the engine has checkpointed for real by now
  // (sizes and RocksDB memory reported); three more checkpoints land in the
  // buckets a hand count gives.
  const std::string before = HttpGet(e.port(), "/metrics").body;
  CHECK(SampleValue(before, "crmstream_checkpoints_total") >= 1);
  CHECK(SampleValue(before, "crmstream_checkpoint_size_bytes") > 0);
  CHECK(SampleValue(before, R"(crmstream_rocksdb_memory_bytes{kind="block_cache"})") > 0);
  CHECK(SampleValue(before, R"(crmstream_rocksdb_memory_bytes{kind="memtables"})") >= 0);
  // No label has matured: every assigned partition's churn gate is warming
  // up. The model figures are refreshed on the engine's own cadence, after
  // the assignment: wait (bounded) for a refresh that covers the partitions.
  CHECK(SampleValue(before, "crmstream_assigned_partitions") > 0);
  std::string gates = before;
  for (int i = 0;
       i < 100 &&
       SampleValue(gates, R"(crmstream_model_churn_gate_partitions{state="warming_up"})") !=
           SampleValue(gates, "crmstream_assigned_partitions");
       ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    gates = HttpGet(e.port(), "/metrics").body;
  }
  CHECK(SampleValue(gates, R"(crmstream_model_churn_gate_partitions{state="warming_up"})") ==
        SampleValue(gates, "crmstream_assigned_partitions"));
  CHECK(SampleValue(gates, R"(crmstream_model_churn_gate_partitions{state="open"})") == 0);
  // The customer caches' accounting, refreshed with the model figures (wait,
  // bounded, for a refresh after the customers came in): the models'
  // per-customer state on top of the feature stores', and the per-customer
  // gauge is the ratio of the two gauges beside it.
  std::string cache = gates;
  for (int i = 0; i < 100 && SampleValue(cache, "crmstream_cached_customers") == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    cache = HttpGet(e.port(), "/metrics").body;
  }
  const double cached = SampleValue(cache, "crmstream_cached_customers");
  const double cache_bytes = SampleValue(cache, "crmstream_customer_cache_memory_bytes");
  REQUIRE(cached > 0);
  CHECK(cache_bytes > SampleValue(cache, "crmstream_feature_store_memory_bytes"));
  CHECK(SampleValue(cache, "crmstream_customer_cache_bytes_per_customer") ==
        Approx(cache_bytes / cached).epsilon(1e-3));
  // The memory plan's parts add up to the cap, and the resident set is read.
  const pipeline::MemoryPlan& plan = e.engine().memory_plan();
  double parts = 0;
  for (const char* part : {"fixed", "dedup", "kafka", "checkpoints", "rocksdb", "customer_cache"}) {
    parts += SampleValue(before,
                         std::string(R"(crmstream_memory_budget_bytes{part=")") + part + R"("})");
  }
  CHECK(parts == static_cast<double>(plan.cap_bytes));
  CHECK(SampleValue(before, R"(crmstream_memory_budget_bytes{part="kafka"})") ==
        static_cast<double>(plan.kafka_bytes));
  CHECK(SampleValue(before, "crmstream_resident_memory_bytes") > 1e6);
  e.engine().probe().RecordCheckpoint(0.003, 1000, true);
  e.engine().probe().RecordCheckpoint(0.2, 5000, true);
  e.engine().probe().RecordCheckpoint(7.0, 0, false);
  const std::string after = HttpGet(e.port(), "/metrics").body;
  auto delta = [&](const std::string& sample) {
    return SampleValue(after, sample) - SampleValue(before, sample);
  };
  // Real checkpoints may land in any bucket meanwhile: compare the buckets
  // the three fakes alone decide.
  CHECK(delta(R"(crmstream_checkpoint_duration_seconds_bucket{le="+Inf"})") -
            delta(R"(crmstream_checkpoint_duration_seconds_bucket{le="5"})") ==
        1);
  CHECK(delta(R"(crmstream_checkpoint_duration_seconds_bucket{le="0.25"})") -
            delta(R"(crmstream_checkpoint_duration_seconds_bucket{le="0.005"})") >=
        1);
  CHECK(delta("crmstream_checkpoint_failures_total") == 1);
  CHECK(delta("crmstream_checkpoints_total") >= 2);
  CHECK(SampleValue(after, "crmstream_checkpoint_size_bytes") > 0);
  CHECK(SampleValue(after,
                    R"(crmstream_admin_http_requests_total{code="404",path="/api/customers"})") ==
        1);
  CHECK(testing::RunWithInput("promtool check metrics", after, &lint) == 0);
  CHECK(lint.empty());

  // Readiness waits for the state store's restore.
  e.engine().probe().SetStateRestored(false);
  auto not_restored = HttpGet(e.port(), "/readyz");
  CHECK(not_restored.status == 503);
  CHECK(not_restored.body.find("state not restored") != std::string::npos);
  CHECK(HttpGet(e.port(), "/healthz").status == 200);
  e.engine().probe().SetStateRestored(true);
  CHECK(HttpGet(e.port(), "/readyz").status == 200);

  // A stopped engine is neither alive nor ready and answers no queries.
  REQUIRE_OK(e.StopEngine());
  auto dead = HttpGet(e.port(), "/healthz");
  CHECK(dead.status == 503);
  CHECK(dead.body.find("stopped") != std::string::npos);
  CHECK(HttpGet(e.port(), "/readyz").status == 503);
  CHECK(HttpGet(e.port(), "/api/customers/C1").status == 503);
}

TEST_CASE("Engine health reports a loop that stops iterating", "[metrics][integration]") {
  testing::RunningEngine e(1);
  REQUIRE(e.WaitForReady());
  // The loop iterates at least every poll timeout (100 ms): with a 1 ms
  // allowance it is seen as stalled between iterations, with 60 s never.
  bool stalled_seen = false;
  const auto deadline = Clock::now() + std::chrono::seconds(10);
  while (!stalled_seen && Clock::now() < deadline) {
    const runtime::EngineHealth h = e.engine().probe().Health(std::chrono::milliseconds(1));
    if (!h.live) {
      stalled_seen = true;
      CHECK(h.reason.find("stalled") != std::string::npos);
    }
    CHECK(e.engine().probe().Health(std::chrono::seconds(60)).live);
    std::this_thread::sleep_for(std::chrono::milliseconds(7));
  }
  CHECK(stalled_seen);
}

TEST_CASE("Admin server reports a port it cannot bind", "[metrics][integration]") {
  testing::RunningEngine e(1);
  AdminServerOptions options;
  options.http.port = e.port();  // taken by the fixture's server
  auto second = AdminServer::Start(&e.engine(), e.config(), options);
  REQUIRE(!second.ok());
  CHECK(second.status().message().find(std::to_string(e.port())) != std::string::npos);
}

TEST_CASE(
    "Admin server: 2,000 idle connections and a slow client leave scrapes and lookups working",
    "[metrics][integration]") {
  using namespace std::chrono_literals;
  namespace hostile = http::testing;
  // Client and server ends of 2,000 connections, plus the engine's own.
  if (!hostile::RaiseOpenFileLimit(6000)) {
    CRMSTREAM_SKIP("the hard RLIMIT_NOFILE is below 6000: cannot hold 2,000 connections");
  }
  testing::RunningEngine e(1, [](AdminServerOptions* o) { o->http.header_timeout = 2s; });
  REQUIRE(e.WaitForReady());
  e.Produce("C1", Event("e1", "C1", "purchase", 10));
  e.Flush();
  REQUIRE(e.WaitForReceived(1));
  const size_t cap = AdminServerOptions().http.max_connections;
  const size_t rss_before = hostile::ResidentBytes();

  hostile::SlowClient slow(e.port(), 100ms);
  hostile::IdleConnections idle(e.port(), 2000);
  REQUIRE(idle.opened() == 2000);
  // Prometheus and an operator still get their answers.
  auto scrape = HttpGet(e.port(), "/metrics");
  CHECK(scrape.status == 200);
  CHECK(SampleValue(scrape.body, "crmstream_input_records_total") == 1);
  auto lookup = HttpGet(e.port(), "/api/customers/C1");
  CHECK(lookup.status == 200);
  CHECK(lookup.body.find("\"customer_id\":\"C1\"") != std::string::npos);
  // The server keeps at most its cap open: the idlest were closed.
  const auto deadline = Clock::now() + 20s;
  while (idle.ClosedByServer() < 2000 - cap && Clock::now() < deadline) {
    std::this_thread::sleep_for(50ms);
  }
  CHECK(idle.ClosedByServer() >= 2000 - cap);
  CHECK(e.server().connection_stats().open_connections <= cap);
  CHECK(slow.WaitCutOff(std::chrono::seconds(20)));
  // Memory stays bounded (generous: a few KiB per connection is expected).
  CHECK(hostile::ResidentBytes() < rss_before + (64u << 20));
  CHECK(HttpGet(e.port(), "/metrics").status == 200);
}

TEST_CASE("Admin server: rebinding hosts refused, no echo, token required beyond loopback",
          "[metrics][integration]") {
  namespace hostile = http::testing;
  testing::RunningEngine e(1);
  const std::string rebound = hostile::RawExchange(
      e.port(), "GET /api/customers/C1 HTTP/1.1\r\nHost: attacker.example:" +
                    std::to_string(e.port()) + "\r\nConnection: close\r\n\r\n");
  CHECK(hostile::StatusOf(rebound) == 421);
  const std::string missing = hostile::RawExchange(
      e.port(),
      "GET /no-such-page-%3Cscript%3E HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
  CHECK(hostile::StatusOf(missing) == 404);
  CHECK(missing.find("no-such-page") == std::string::npos);
  CHECK(missing.find("script") == std::string::npos);

  AdminServerOptions open;
  open.http.bind_address = "0.0.0.0";
  open.http.port = 0;
  auto refused = AdminServer::Start(&e.engine(), e.config(), open);
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.status().message().find("admin.auth_token_file") != std::string::npos);
}

}  // namespace
}  // namespace crmstream::admin
