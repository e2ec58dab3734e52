#include "crmstream/dashboard/dashboard_server.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cctype>
#include <chrono>

#include "crmstream/common/clock.h"
#include "crmstream/common/json_writer.h"
#include "crmstream/common/private_file.h"
#include "crmstream/http/uri.h"

namespace crmstream::dashboard {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using tcp = asio::ip::tcp;
using asio::awaitable;

namespace {

// Errors are reported to the caller as values (no exceptions from the I/O).
auto NoThrow(beast::error_code& ec) { return asio::redirect_error(asio::use_awaitable, ec); }

using Response = crmstream::http::Response;
using crmstream::http::MakeResponse;

// The page loads only its own script, style sheet and API; inline scripts,
// other origins and framing are refused by the browser.
constexpr std::string_view kContentSecurityPolicy =
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'";

Response JsonError(
    bhttp::status status, std::string_view error,
    std::initializer_list<std::pair<std::string_view, std::string_view>> extra = {}) {
  std::string body;
  JsonWriter w(&body);
  w.BeginObject();
  w.Field("error", error);
  for (const auto& [k, v] : extra) w.Field(k, v);
  w.EndObject();
  return MakeResponse(status, "application/json", std::move(body));
}

constexpr size_t kMaxCustomerIdBytes = 256;

struct EngineReply {
  bool reached = false;  // a complete HTTP answer came back
  unsigned status = 0;
  std::string body;
  std::string error;  // why it was not reached
};

}  // namespace

struct DashboardServer::Impl {
  DashboardServerOptions options;
  DashboardView* view = nullptr;
  tcp::endpoint engine_endpoint;
  std::string engine_authorization;  // "Bearer <token>" or empty

  // Touched on the server thread only.
  std::shared_ptr<const std::string> snapshot;
  uint64_t snapshot_version = 0;
  EngineRateTracker tracker;
  std::array<uint64_t, kOutputKindCount> last_counts{};
  int64_t last_counts_ms = -1;

  // Last: stopped and destroyed (with the background tasks' frames) before
  // everything above, which they use.
  std::unique_ptr<http::Server> server;

  const WebAsset* FindAsset(std::string_view path) const {
    if (path == "/") path = "/index.html";
    for (const WebAsset& a : options.assets) {
      if (a.path == path) return &a;
    }
    return nullptr;
  }

  awaitable<EngineReply> FetchFromEngine(std::string target) {
    EngineReply reply;
    beast::error_code ec;
    beast::tcp_stream stream(co_await asio::this_coro::executor);
    stream.expires_after(std::chrono::milliseconds(options.engine_timeout_ms));
    co_await stream.async_connect(engine_endpoint, NoThrow(ec));
    if (ec) {
      reply.error = "connect: " + ec.message();
      co_return reply;
    }
    bhttp::request<bhttp::empty_body> req{bhttp::verb::get, target, 11};
    req.set(bhttp::field::host, options.engine_host);
    req.set(bhttp::field::user_agent, "crmstream-dashboard");
    req.set(bhttp::field::accept, "application/json, text/plain");
    if (!engine_authorization.empty()) req.set(bhttp::field::authorization, engine_authorization);
    co_await bhttp::async_write(stream, req, NoThrow(ec));
    if (ec) {
      reply.error = "write: " + ec.message();
      co_return reply;
    }
    beast::flat_buffer buffer;
    bhttp::response_parser<bhttp::string_body> parser;
    parser.body_limit(16u << 20);
    co_await bhttp::async_read(stream, buffer, parser, NoThrow(ec));
    if (ec) {
      reply.error = "read: " + ec.message();
      co_return reply;
    }
    stream.socket().shutdown(tcp::socket::shutdown_both, ec);
    reply.reached = true;
    reply.status = parser.get().result_int();
    reply.body = std::move(parser.get().body());
    co_return reply;
  }

  awaitable<Response> LookupCustomer(std::string_view encoded_id) {
    // Any id the engine can hold travels: decoded here (the alerts are
    // keyed by the plain id), encoded again for the engine.
    const std::optional<std::string> id = http::PercentDecode(encoded_id);
    if (!id || id->empty() || id->size() > kMaxCustomerIdBytes ||
        id->find('/') != std::string::npos) {
      co_return JsonError(bhttp::status::bad_request, "invalid customer id");
    }
    const std::string& customer = *id;
    EngineReply reply =
        co_await FetchFromEngine("/api/customers/" + http::PercentEncodeSegment(customer));
    if (!reply.reached) {
      co_return JsonError(bhttp::status::service_unavailable, "engine unreachable",
                          {{"customer_id", customer}, {"detail", reply.error}});
    }
    const bool json_object =
        !reply.body.empty() && reply.body.front() == '{' && reply.body.back() == '}';
    if (reply.status == 200 && json_object) {
      // The engine's current state of the customer, plus the customer's
      // recent alerts as this dashboard saw them on crm.churn-alerts.
      reply.body.pop_back();
      reply.body += ",\"recent_alerts\":" + view->CustomerAlertsJson(customer) + "}";
      co_return MakeResponse(bhttp::status::ok, "application/json", std::move(reply.body));
    }
    if (reply.status == 404) {
      if (json_object) {
        co_return MakeResponse(bhttp::status::not_found, "application/json", std::move(reply.body));
      }
      co_return JsonError(bhttp::status::not_found, "unknown customer",
                          {{"customer_id", customer}});
    }
    co_return JsonError(
        bhttp::status::bad_gateway, "unexpected answer from the engine",
        {{"customer_id", customer}, {"engine_status", std::to_string(reply.status)}});
  }

  awaitable<http::Reply> Route(const http::Request& req) {
    const std::string_view path =
        http::TargetPath(std::string_view(req.target().data(), req.target().size()));
    if (path == "/api/state") {
      co_return MakeResponse(bhttp::status::ok, "application/json", view->Snapshot(WallMs()));
    }
    if (path == "/api/events") co_return Events();
    constexpr std::string_view kCustomers = "/api/customers/";
    if (path.starts_with(kCustomers)) {
      co_return co_await LookupCustomer(path.substr(kCustomers.size()));
    }
    if (path == "/healthz") co_return MakeResponse(bhttp::status::ok, "text/plain", "ok\n");
    if (const WebAsset* asset = FindAsset(path)) {
      co_return MakeResponse(bhttp::status::ok, asset->content_type, std::string(asset->body));
    }
    // The path is not echoed: an error page must not reflect what a client sent.
    co_return JsonError(bhttp::status::not_found, "not found");
  }

  // Server-sent events: the newest snapshot whenever it changes (~1 Hz).
  http::EventStream Events() {
    http::EventStream events;
    events.period = std::chrono::milliseconds(std::max(50, options.push_interval_ms / 4));
    // retry: the browser reconnects 2 s after losing the dashboard (restart).
    events.preamble = "retry: 2000\n\n";
    events.next = [this, sent_version = uint64_t{0}]() mutable -> std::string {
      if (!snapshot || snapshot_version == sent_version) return {};
      sent_version = snapshot_version;
      std::string message = "event: state\ndata: ";
      message.append(*snapshot);
      message.append("\n\n");
      return message;
    };
    return events;
  }

  awaitable<void> Publish() {
    asio::steady_timer timer(co_await asio::this_coro::executor);
    beast::error_code ec;
    for (;;) {  // until the server stops
      snapshot = std::make_shared<const std::string>(view->Snapshot(WallMs()));
      ++snapshot_version;
      timer.expires_after(std::chrono::milliseconds(options.push_interval_ms));
      co_await timer.async_wait(NoThrow(ec));
    }
  }

  awaitable<void> Scrape() {
    asio::steady_timer timer(co_await asio::this_coro::executor);
    beast::error_code ec;
    for (;;) {  // until the server stops
      const auto started = std::chrono::steady_clock::now();
      EngineReply reply = co_await FetchFromEngine("/metrics");
      const int64_t now = WallMs();
      EngineSample sample;
      sample.wall_ms = now;
      if (reply.reached && reply.status == 200) {
        sample.engine_reachable = true;
        EngineReading r = tracker.Update(now, ParsePrometheusText(reply.body));
        sample.events_per_second = r.events_per_second.value_or(-1);
        sample.lag = r.lag.value_or(-1);
      } else {
        tracker.Reset();
      }
      // Records per second arriving on the output topics: known even when
      // the engine's admin port is not reachable.
      const auto counts = view->RecordCounts();
      if (last_counts_ms >= 0 && now > last_counts_ms) {
        uint64_t delta = 0;
        for (int t = 0; t < kOutputKindCount; ++t) {
          delta += counts[static_cast<size_t>(t)] - last_counts[static_cast<size_t>(t)];
        }
        sample.outputs_per_second =
            static_cast<double>(delta) * 1000.0 / static_cast<double>(now - last_counts_ms);
      }
      last_counts = counts;
      last_counts_ms = now;
      view->AddEngineSample(sample);
      timer.expires_at(started + std::chrono::milliseconds(options.scrape_interval_ms));
      co_await timer.async_wait(NoThrow(ec));
    }
  }
};

http::ServerOptions DashboardServerOptions::DefaultHttpOptions() {
  http::ServerOptions o;
  o.name = "dashboard";
  o.port = 8080;
  o.public_paths = {"/healthz"};
  o.extra_headers = {{"Content-Security-Policy", std::string(kContentSecurityPolicy)},
                     {"Referrer-Policy", "no-referrer"}};
  return o;
}

DashboardServer::DashboardServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

DashboardServer::~DashboardServer() { Stop(); }

Result<std::unique_ptr<DashboardServer>> DashboardServer::Start(
    const DashboardServerOptions& options, DashboardView* view) {
  if (options.push_interval_ms <= 0 || options.scrape_interval_ms <= 0 ||
      options.engine_timeout_ms <= 0) {
    return Status::InvalidArgument("dashboard intervals and timeouts must be positive");
  }
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  impl->view = view;
  impl->tracker = EngineRateTracker(options.metric_names);
  if (!options.engine_auth_token_file.empty()) {
    CRM_ASSIGN_OR_RETURN(std::string token,
                         ReadPrivateFile(options.engine_auth_token_file, "admin.auth_token_file"));
    while (!token.empty() && std::isspace(static_cast<unsigned char>(token.back()))) {
      token.pop_back();
    }
    impl->engine_authorization = "Bearer " + token;
  }
  {
    asio::io_context ioc;
    tcp::resolver resolver(ioc);
    beast::error_code ec;
    auto found = resolver.resolve(options.engine_host, std::to_string(options.engine_port), ec);
    if (ec || found.empty()) {
      return Status::InvalidArgument("engine admin host " + options.engine_host + ": " +
                                     ec.message());
    }
    impl->engine_endpoint = found.begin()->endpoint();
  }
  Impl* i = impl.get();
  CRM_ASSIGN_OR_RETURN(
      impl->server,
      http::Server::Start(options.http, [i](const http::Request& req) { return i->Route(req); }));
  asio::co_spawn(i->server->executor(), i->Publish(), asio::detached);
  asio::co_spawn(i->server->executor(), i->Scrape(), asio::detached);
  return std::unique_ptr<DashboardServer>(new DashboardServer(std::move(impl)));
}

int DashboardServer::port() const { return impl_->server->port(); }

http::ServerStats DashboardServer::connection_stats() const { return impl_->server->stats(); }

void DashboardServer::Stop() {
  if (impl_ && impl_->server) impl_->server->Stop();
}

}  // namespace crmstream::dashboard
