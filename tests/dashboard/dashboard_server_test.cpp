// The dashboard's HTTP surface, against a stand-in engine admin server: the
// page, the snapshot, the live stream, and the customer lookup's answers
// (forwarded, 404 for unknown ids, 503 when the engine is gone).
#include "crmstream/dashboard/dashboard_server.h"

#include <simdjson.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <thread>

#include "dashboard/http_test_client.h"
#include "http/hostile_clients.h"
#include "support/require_ok.h"
#include "support/test_support.h"

namespace crmstream::dashboard {
namespace {

using testing::FakeEngineAdmin;
using testing::HttpGet;

constexpr auto kDeadline = std::chrono::seconds(20);

FakeEngineAdmin::Handler EngineAnswers() {
  return [](const std::string& target) -> std::pair<int, std::string> {
    if (target == "/api/customers/C000042") {
      return {200, R"({"customer_id":"C000042","churn_probability":0.83,"segment":2})"};
    }
    // "o'brien (x)!*", as the dashboard encodes it.
    if (target == "/api/customers/o%27brien%20%28x%29%21%2A") {
      return {200, R"({"customer_id":"o'brien (x)!*","churn_probability":0.5,"segment":1})"};
    }
    if (target.rfind("/api/customers/", 0) == 0) {
      return {404, R"({"error":"unknown customer"})"};
    }
    if (target == "/metrics") {
      return {200,
              "crmstream_input_records_total 5000\n"
              "crmstream_consumer_lag_records{topic=\"t\",partition=\"0\"} 30\n"
              "crmstream_consumer_lag_records{topic=\"t\",partition=\"1\"} 12\n"};
    }
    return {404, "no such page"};
  };
}

struct Served {
  DashboardView view;
  std::unique_ptr<DashboardServer> server;
  explicit Served(int engine_port) {
    DashboardServerOptions options;
    options.http.port = 0;
    options.engine_port = engine_port;
    options.push_interval_ms = 200;
    options.scrape_interval_ms = 200;
    options.engine_timeout_ms = 1000;
    auto started = DashboardServer::Start(options, &view);
    REQUIRE_OK(started);
    server = std::move(started).value();
  }
};

TEST_CASE("customer lookup forwards to the engine: found, unknown, engine down", "[dashboard]") {
  FakeEngineAdmin engine(EngineAnswers());
  Served dash(engine.port());
  const int port = dash.server->port();

  auto found = HttpGet(port, "/api/customers/C000042");
  CHECK(found.status == 200);
  CHECK(found.content_type == "application/json");
  CHECK(found.body ==
        R"({"customer_id":"C000042","churn_probability":0.83,"segment":2,"recent_alerts":[]})");

  // The customer's alerts seen on crm.churn-alerts join the engine's answer.
  const std::string alert =
      R"({"alert_id":"00000000000000a1","customer_id":"C000042","as_of_ms":1,"severity":"high",)"
      R"("churn_probability":0.83,"threshold":0.4,"contributions":[],)"
      R"("trigger":{"event_id":"e1","type":"login","timestamp_ms":1}})";
  REQUIRE(dash.view.Apply(OutputKind::kChurnAlerts, alert));
  found = HttpGet(port, "/api/customers/C000042");
  CHECK(found.status == 200);
  CHECK(found.body == R"({"customer_id":"C000042","churn_probability":0.83,"segment":2,)"
                      R"("recent_alerts":[)" +
                          alert + "]}");

  auto unknown = HttpGet(port, "/api/customers/NO-SUCH-CUSTOMER");
  CHECK(unknown.status == 404);
  CHECK(unknown.content_type == "application/json");
  CHECK(unknown.body.find("\"error\"") != std::string::npos);

  // Not an id: refused here, never sent to the engine. (The three lookups
  // above were: the count sees forwarded ones.)
  const int before = engine.requests("/api/customers/");
  CHECK(before == 3);
  CHECK(HttpGet(port, "/api/customers/%zz").status == 400);
  CHECK(HttpGet(port, "/api/customers/").status == 400);
  CHECK(HttpGet(port, "/api/customers/a%2Fb").status == 400);
  CHECK(engine.requests("/api/customers/") == before);

  engine.Stop();
  auto down = HttpGet(port, "/api/customers/C000042");
  CHECK(down.status == 503);
  CHECK(down.content_type == "application/json");
  CHECK(down.body.find("engine unreachable") != std::string::npos);
}

TEST_CASE("ids with reserved characters are looked up decoded, alerts included", "[dashboard]") {
  FakeEngineAdmin engine(EngineAnswers());
  Served dash(engine.port());
  const int port = dash.server->port();
  const std::string alert =
      R"({"alert_id":"00000000000000b2","customer_id":"o'brien (x)!*","as_of_ms":1,)"
      R"("severity":"high","churn_probability":0.5,"threshold":0.4,"contributions":[],)"
      R"("trigger":{"event_id":"e1","type":"login","timestamp_ms":1}})";
  REQUIRE(dash.view.Apply(OutputKind::kChurnAlerts, alert));
  // The browser's encodeURIComponent leaves !'()* as they are; other
  // clients escape them: both reach the same customer.
  for (const std::string target :
       {"/api/customers/o'brien%20(x)!*", "/api/customers/o%27brien%20%28x%29%21%2A"}) {
    INFO(target);
    auto found = HttpGet(port, target);
    CHECK(found.status == 200);
    CHECK(found.body.find(R"("recent_alerts":[)" + alert + "]") != std::string::npos);
  }
  CHECK(engine.requests("/api/customers/o%27brien%20%28x%29%21%2A") == 2);
}

TEST_CASE("the dashboard's answers: CSP and nosniff, a 404 that echoes nothing, no rebinding",
          "[dashboard]") {
  namespace hostile = http::testing;
  FakeEngineAdmin engine(EngineAnswers());
  Served dash(engine.port());
  const int port = dash.server->port();
  const std::string page =
      hostile::RawExchange(port, "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
  CHECK(hostile::StatusOf(page) == 200);
  CHECK(page.find("Content-Security-Policy: default-src 'self'") != std::string::npos);
  CHECK(page.find("frame-ancestors 'none'") != std::string::npos);
  CHECK(page.find("X-Content-Type-Options: nosniff") != std::string::npos);
  const std::string missing = hostile::RawExchange(
      port, "GET /%3Cimg%20src=x%3E HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
  CHECK(hostile::StatusOf(missing) == 404);
  CHECK(missing.find("src=x") == std::string::npos);  // the CSP header says img-src
  const std::string rebound = hostile::RawExchange(
      port, "GET /api/state HTTP/1.1\r\nHost: attacker.example\r\nConnection: close\r\n\r\n");
  CHECK(hostile::StatusOf(rebound) == 421);
  CHECK(rebound.find("risk") == std::string::npos);

  DashboardView view;
  DashboardServerOptions open;
  open.http.bind_address = "0.0.0.0";
  open.http.port = 0;
  auto refused = DashboardServer::Start(open, &view);
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.status().message().find("dashboard.auth_token_file") != std::string::npos);
}

TEST_CASE("2,000 idle connections and a slow client leave the snapshot and lookups working",
          "[dashboard]") {
  using namespace std::chrono_literals;
  namespace hostile = http::testing;
  if (!hostile::RaiseOpenFileLimit(6000)) {
    CRMSTREAM_SKIP("the hard RLIMIT_NOFILE is below 6000: cannot hold 2,000 connections");
  }
  FakeEngineAdmin engine(EngineAnswers());
  DashboardView view;
  DashboardServerOptions options;
  options.http.port = 0;
  options.http.header_timeout = 2s;
  options.engine_port = engine.port();
  auto started = DashboardServer::Start(options, &view);
  REQUIRE_OK(started);
  DashboardServer& server = **started;
  const int port = server.port();
  const size_t cap = options.http.max_connections;
  const size_t rss_before = hostile::ResidentBytes();

  hostile::SlowClient slow(port, 100ms);
  hostile::IdleConnections idle(port, 2000);
  REQUIRE(idle.opened() == 2000);
  auto state = HttpGet(port, "/api/state");
  CHECK(state.status == 200);
  CHECK(state.body.find("\"risk\"") != std::string::npos);
  auto found = HttpGet(port, "/api/customers/C000042");
  CHECK(found.status == 200);
  CHECK(found.body.find("\"churn_probability\":0.83") != std::string::npos);
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  while (idle.ClosedByServer() < 2000 - cap && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(50ms);
  }
  CHECK(idle.ClosedByServer() >= 2000 - cap);
  CHECK(server.connection_stats().open_connections <= cap);
  CHECK(slow.WaitCutOff(std::chrono::seconds(20)));
  CHECK(hostile::ResidentBytes() < rss_before + (64u << 20));
  CHECK(HttpGet(port, "/api/state").status == 200);
}

TEST_CASE("the page, the snapshot and the live event stream are served", "[dashboard]") {
  FakeEngineAdmin engine(EngineAnswers());
  Served dash(engine.port());
  const int port = dash.server->port();
  REQUIRE(
      dash.view.Apply(OutputKind::kCustomerScores,
                      R"({"customer_id":"C1","as_of_ms":1,"churn_probability":0.97,"segment":0})"));

  auto index = HttpGet(port, "/");
  CHECK(index.status == 200);
  CHECK(index.content_type.rfind("text/html", 0) == 0);
  CHECK(index.body.find("app.js") != std::string::npos);
  auto js = HttpGet(port, "/app.js");
  CHECK(js.status == 200);
  CHECK(js.body.size() > 100);
  CHECK(js.content_type == "text/javascript; charset=utf-8");
  auto css = HttpGet(port, "/app.css");
  CHECK(css.status == 200);
  CHECK(css.content_type == "text/css; charset=utf-8");
  CHECK(index.content_type == "text/html; charset=utf-8");
  CHECK(HttpGet(port, "/no/such/file").status == 404);
  CHECK(HttpGet(port, "/healthz").body == "ok\n");

  // The engine's lag (30 + 12) appears in the snapshot once it was scraped.
  simdjson::dom::parser parser;
  bool reachable = false;
  double lag = -1;
  const auto until = std::chrono::steady_clock::now() + kDeadline;
  while (std::chrono::steady_clock::now() < until && !(reachable && lag >= 0)) {
    auto state = HttpGet(port, "/api/state");
    REQUIRE(state.status == 200);
    simdjson::dom::element doc;
    REQUIRE(parser.parse(state.body).get(doc) == simdjson::SUCCESS);
    CHECK(int64_t(doc["risk"]["customers"]) == 1);
    reachable = bool(doc["engine"]["reachable"]);
    auto samples = doc["engine"]["samples"].get_array();
    if (samples.size() > 0) {
      auto last = samples.at(samples.size() - 1);
      if (!last.at(2).is_null()) lag = double(last.at(2));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  CHECK(reachable);
  CHECK(lag == 42.0);

  // Server-sent events: read the stream's first event off a raw socket.
  namespace beast = boost::beast;
  boost::asio::io_context ioc;
  beast::tcp_stream stream(ioc);
  stream.expires_after(kDeadline);
  stream.connect({boost::asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(port)});
  const std::string request =
      "GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n";
  boost::asio::write(stream, boost::asio::buffer(request));
  // The stream pushes the newest snapshot about every 200 ms here: read
  // events until one shows the customer applied above.
  std::string received;
  char chunk[4096];
  beast::error_code ec;
  int64_t streamed_customers = -1;
  bool event_stream_header = false;
  while (streamed_customers != 1 && !ec && std::chrono::steady_clock::now() < until + kDeadline) {
    size_t n = stream.read_some(boost::asio::buffer(chunk), ec);
    received.append(chunk, n);
    if (received.find("Content-Type: text/event-stream") != std::string::npos) {
      event_stream_header = true;
    }
    size_t event;
    while ((event = received.find("event: state\ndata: ")) != std::string::npos) {
      const size_t end = received.find("\n\n", event);
      if (end == std::string::npos) break;
      const size_t data = event + std::string_view("event: state\ndata: ").size();
      simdjson::dom::element doc;
      REQUIRE(parser.parse(received.substr(data, end - data)).get(doc) == simdjson::SUCCESS);
      streamed_customers = doc["risk"]["customers"].get_int64();
      received.erase(0, end + 2);
    }
  }
  CHECK(event_stream_header);
  CHECK(streamed_customers == 1);
}

TEST_CASE("the dashboard runs without an engine and reports it unreachable", "[dashboard]") {
  // A port nothing listens on: take a free one and release it.
  int dead_port;
  {
    FakeEngineAdmin probe(EngineAnswers());
    dead_port = probe.port();
  }
  Served dash(dead_port);
  std::this_thread::sleep_for(std::chrono::milliseconds(600));
  auto state = HttpGet(dash.server->port(), "/api/state");
  REQUIRE(state.status == 200);
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  REQUIRE(parser.parse(state.body).get(doc) == simdjson::SUCCESS);
  CHECK_FALSE(bool(doc["engine"]["reachable"]));
  CHECK(HttpGet(dash.server->port(), "/api/customers/C1").status == 503);
}

TEST_CASE("a port already in use is reported, not thrown", "[dashboard]") {
  DashboardView view;
  DashboardServerOptions options;
  options.http.port = 0;
  auto first = DashboardServer::Start(options, &view);
  REQUIRE_OK(first);
  options.http.port = (*first)->port();
  auto second = DashboardServer::Start(options, &view);
  REQUIRE_FALSE(second.ok());
  CHECK(second.status().ToString().find(std::to_string(options.http.port)) != std::string::npos);
}

}  // namespace
}  // namespace crmstream::dashboard
