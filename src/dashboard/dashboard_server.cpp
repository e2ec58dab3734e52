#include "crmstream/dashboard/dashboard_server.h"

#include <spdlog/spdlog.h>

#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <thread>

#include "crmstream/common/clock.h"
#include "crmstream/common/json_writer.h"

namespace crmstream::dashboard {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using asio::awaitable;

namespace {

// Errors are reported to the caller as values (no exceptions from the I/O).
auto NoThrow(beast::error_code& ec) { return asio::redirect_error(asio::use_awaitable, ec); }

using Response = http::response<http::string_body>;

Response MakeResponse(http::status status, std::string_view content_type, std::string body) {
  Response res{status, 11};
  res.set(http::field::server, "crmstream-dashboard");
  res.set(http::field::content_type, beast::string_view(content_type.data(), content_type.size()));
  res.set(http::field::cache_control, "no-store");
  res.body() = std::move(body);
  return res;
}

Response JsonError(
    http::status status, std::string_view error,
    std::initializer_list<std::pair<std::string_view, std::string_view>> extra = {}) {
  std::string body;
  JsonWriter w(&body);
  w.BeginObject();
  w.Field("error", error);
  for (const auto& [k, v] : extra) w.Field(k, v);
  w.EndObject();
  return MakeResponse(status, "application/json", std::move(body));
}

// Customer ids travel as one URL path segment: unreserved characters and
// percent escapes only, so the id can be forwarded to the engine verbatim.
bool IsSafePathSegment(std::string_view s) {
  if (s.empty() || s.size() > 256) return false;
  for (char c : s) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '_' || c == '.' || c == '~' || c == '%' || c == ':' ||
                    c == '@';
    if (!ok) return false;
  }
  return s != "." && s != "..";
}

struct EngineReply {
  bool reached = false;  // a complete HTTP answer came back
  unsigned status = 0;
  std::string body;
  std::string error;  // why it was not reached
};

// Decrements the live-connection count when a session ends, however it ends.
class ConnectionSlot {
 public:
  explicit ConnectionSlot(std::atomic<size_t>* count) : count_(count) { count_->fetch_add(1); }
  ~ConnectionSlot() { count_->fetch_sub(1); }
  ConnectionSlot(const ConnectionSlot&) = delete;
  ConnectionSlot& operator=(const ConnectionSlot&) = delete;

 private:
  std::atomic<size_t>* count_;
};

}  // namespace

struct DashboardServer::Impl {
  DashboardServerOptions options;
  DashboardView* view = nullptr;
  asio::io_context ioc{1};
  tcp::acceptor acceptor{ioc};
  tcp::endpoint engine_endpoint;
  std::thread thread;
  std::atomic<size_t> connections{0};
  int bound_port = 0;
  bool stopped = false;

  // Touched on the I/O thread only.
  std::shared_ptr<const std::string> snapshot;
  uint64_t snapshot_version = 0;
  EngineRateTracker tracker;
  std::array<uint64_t, kOutputKindCount> last_counts{};
  int64_t last_counts_ms = -1;

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
    http::request<http::empty_body> req{http::verb::get, target, 11};
    req.set(http::field::host, options.engine_host);
    req.set(http::field::user_agent, "crmstream-dashboard");
    req.set(http::field::accept, "application/json, text/plain");
    co_await http::async_write(stream, req, NoThrow(ec));
    if (ec) {
      reply.error = "write: " + ec.message();
      co_return reply;
    }
    beast::flat_buffer buffer;
    http::response_parser<http::string_body> parser;
    parser.body_limit(16u << 20);
    co_await http::async_read(stream, buffer, parser, NoThrow(ec));
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

  awaitable<Response> LookupCustomer(std::string_view id) {
    if (!IsSafePathSegment(id)) {
      co_return JsonError(http::status::bad_request, "invalid customer id");
    }
    const std::string customer(id);
    EngineReply reply = co_await FetchFromEngine("/api/customers/" + customer);
    if (!reply.reached) {
      co_return JsonError(http::status::service_unavailable, "engine unreachable",
                          {{"customer_id", customer}, {"detail", reply.error}});
    }
    const bool json_object =
        !reply.body.empty() && reply.body.front() == '{' && reply.body.back() == '}';
    if (reply.status == 200 && json_object) {
      // The engine's current state of the customer, plus the customer's
      // recent alerts as this dashboard saw them on crm.churn-alerts.
      reply.body.pop_back();
      reply.body += ",\"recent_alerts\":" + view->CustomerAlertsJson(customer) + "}";
      co_return MakeResponse(http::status::ok, "application/json", std::move(reply.body));
    }
    if (reply.status == 404) {
      if (json_object) {
        co_return MakeResponse(http::status::not_found, "application/json", std::move(reply.body));
      }
      co_return JsonError(http::status::not_found, "unknown customer", {{"customer_id", customer}});
    }
    co_return JsonError(
        http::status::bad_gateway, "unexpected answer from the engine",
        {{"customer_id", customer}, {"engine_status", std::to_string(reply.status)}});
  }

  awaitable<Response> Route(const http::request<http::string_body>& req) {
    if (req.method() != http::verb::get) {
      co_return JsonError(http::status::method_not_allowed, "only GET is supported");
    }
    std::string_view path(req.target().data(), req.target().size());
    path = path.substr(0, path.find('?'));
    if (path == "/api/state") {
      co_return MakeResponse(http::status::ok, "application/json", view->Snapshot(WallMs()));
    }
    constexpr std::string_view kCustomers = "/api/customers/";
    if (path.substr(0, kCustomers.size()) == kCustomers) {
      co_return co_await LookupCustomer(path.substr(kCustomers.size()));
    }
    if (path == "/healthz") co_return MakeResponse(http::status::ok, "text/plain", "ok\n");
    if (const WebAsset* asset = FindAsset(path)) {
      co_return MakeResponse(http::status::ok, asset->content_type, std::string(asset->body));
    }
    co_return JsonError(http::status::not_found, "not found", {{"path", path}});
  }

  // Server-sent events: the newest snapshot whenever it changes (~1 Hz).
  awaitable<void> StreamEvents(beast::tcp_stream& stream) {
    beast::error_code ec;
    // retry: the browser reconnects 2 s after losing the dashboard (restart).
    static constexpr std::string_view kHeader =
        "HTTP/1.1 200 OK\r\nServer: crmstream-dashboard\r\nContent-Type: text/event-stream\r\n"
        "Cache-Control: no-store\r\nConnection: close\r\n\r\nretry: 2000\n\n";
    stream.expires_after(std::chrono::seconds(10));
    co_await asio::async_write(stream, asio::buffer(kHeader.data(), kHeader.size()), NoThrow(ec));
    asio::steady_timer timer(co_await asio::this_coro::executor);
    uint64_t sent_version = 0;
    std::string message;
    while (!ec && !stopped) {
      if (snapshot && snapshot_version != sent_version) {
        message.assign("event: state\ndata: ");
        message.append(*snapshot);
        message.append("\n\n");
        sent_version = snapshot_version;
        // A client that stops reading is dropped instead of buffering forever.
        stream.expires_after(std::chrono::seconds(10));
        co_await asio::async_write(stream, asio::buffer(message), NoThrow(ec));
        if (ec) break;
      }
      timer.expires_after(std::chrono::milliseconds(std::max(50, options.push_interval_ms / 4)));
      co_await timer.async_wait(NoThrow(ec));
    }
  }

  awaitable<void> Session(tcp::socket socket) {
    ConnectionSlot slot(&connections);
    beast::tcp_stream stream(std::move(socket));
    beast::flat_buffer buffer;
    beast::error_code ec;
    while (!stopped) {
      http::request<http::string_body> req;
      stream.expires_after(std::chrono::seconds(30));
      co_await http::async_read(stream, buffer, req, NoThrow(ec));
      if (ec) break;
      if (req.target() == "/api/events" && req.method() == http::verb::get) {
        co_await StreamEvents(stream);
        break;
      }
      Response res = co_await Route(req);
      res.keep_alive(req.keep_alive());
      res.prepare_payload();
      stream.expires_after(std::chrono::seconds(30));
      co_await http::async_write(stream, res, NoThrow(ec));
      if (ec || !res.keep_alive()) break;
    }
    stream.socket().shutdown(tcp::socket::shutdown_send, ec);
  }

  awaitable<void> Listen() {
    while (!stopped) {
      beast::error_code ec;
      tcp::socket socket = co_await acceptor.async_accept(NoThrow(ec));
      if (ec) {
        if (!acceptor.is_open()) co_return;
        continue;  // e.g. too many open files: keep serving the others
      }
      if (connections.load() >= options.max_connections) {
        socket.close(ec);
        continue;
      }
      asio::co_spawn(ioc, Session(std::move(socket)), asio::detached);
    }
  }

  awaitable<void> Publish() {
    asio::steady_timer timer(ioc);
    beast::error_code ec;
    while (!stopped) {
      snapshot = std::make_shared<const std::string>(view->Snapshot(WallMs()));
      ++snapshot_version;
      timer.expires_after(std::chrono::milliseconds(options.push_interval_ms));
      co_await timer.async_wait(NoThrow(ec));
    }
  }

  awaitable<void> Scrape() {
    asio::steady_timer timer(ioc);
    beast::error_code ec;
    while (!stopped) {
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

DashboardServer::DashboardServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

DashboardServer::~DashboardServer() { Stop(); }

Result<std::unique_ptr<DashboardServer>> DashboardServer::Start(
    const DashboardServerOptions& options, DashboardView* view) {
  if (options.port < 0 || options.port > 65535) {
    return Status::InvalidArgument("dashboard port " + std::to_string(options.port) +
                                   ": must be 0..65535");
  }
  if (options.push_interval_ms <= 0 || options.scrape_interval_ms <= 0 ||
      options.engine_timeout_ms <= 0) {
    return Status::InvalidArgument("dashboard intervals and timeouts must be positive");
  }
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  impl->view = view;
  impl->tracker = EngineRateTracker(options.metric_names);
  beast::error_code ec;
  {
    tcp::resolver resolver(impl->ioc);
    auto found = resolver.resolve(options.engine_host, std::to_string(options.engine_port), ec);
    if (ec || found.empty()) {
      return Status::InvalidArgument("engine admin host " + options.engine_host + ": " +
                                     ec.message());
    }
    impl->engine_endpoint = found.begin()->endpoint();
  }
  const auto address = asio::ip::make_address(options.bind_address, ec);
  if (ec) {
    return Status::InvalidArgument("dashboard bind address " + options.bind_address + ": " +
                                   ec.message());
  }
  const tcp::endpoint endpoint(address, static_cast<unsigned short>(options.port));
  tcp::acceptor& acceptor = impl->acceptor;
  acceptor.open(endpoint.protocol(), ec);
  if (!ec) acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor.bind(endpoint, ec);
  if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return Status::Unavailable("dashboard: cannot listen on " + options.bind_address + ":" +
                               std::to_string(options.port) + ": " + ec.message());
  }
  impl->bound_port = acceptor.local_endpoint().port();
  Impl* i = impl.get();
  asio::co_spawn(i->ioc, i->Publish(), asio::detached);
  asio::co_spawn(i->ioc, i->Scrape(), asio::detached);
  asio::co_spawn(i->ioc, i->Listen(), asio::detached);
  i->thread = std::thread([i] {
    // Handlers do not throw (errors are values); a throw here is a bug worth
    // a loud log rather than a silent dead server.
    try {
      i->ioc.run();
    } catch (const std::exception& e) {
      spdlog::error("dashboard server: {}", e.what());
    }
  });
  return std::unique_ptr<DashboardServer>(new DashboardServer(std::move(impl)));
}

int DashboardServer::port() const { return impl_->bound_port; }

void DashboardServer::Stop() {
  if (!impl_ || !impl_->thread.joinable()) return;
  asio::post(impl_->ioc, [i = impl_.get()] {
    i->stopped = true;
    beast::error_code ec;
    i->acceptor.close(ec);
  });
  // Open sessions and timers end with the loop; their frames are destroyed
  // with the io_context.
  impl_->ioc.stop();
  impl_->thread.join();
}

}  // namespace crmstream::dashboard
