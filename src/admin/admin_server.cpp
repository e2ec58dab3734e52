#include "crmstream/admin/admin_server.h"

#include <algorithm>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "crmstream/common/json_writer.h"
#include "crmstream/http/uri.h"

namespace crmstream::admin {
namespace {

namespace asio = boost::asio;
namespace bhttp = boost::beast::http;
using asio::awaitable;
using Clock = std::chrono::steady_clock;

// How often a waiting customer read checks for the engine's answer.
constexpr auto kQueryPoll = std::chrono::milliseconds(1);
constexpr size_t kMaxCustomerIdBytes = 256;

constexpr std::string_view kJson = "application/json";
constexpr std::string_view kPrometheusText = "text/plain; version=0.0.4; charset=utf-8";

std::string ErrorJson(std::string_view error, std::string_view customer_id = {},
                      std::string_view id_field = "customer_id") {
  std::string body;
  JsonWriter w(&body);
  w.BeginObject();
  w.Field("error", error);
  if (!customer_id.empty()) w.Field(id_field, customer_id);
  w.EndObject();
  return body;
}

std::string ProbeJson(bool ok, std::string_view reason) {
  std::string body;
  JsonWriter w(&body);
  w.BeginObject();
  w.Field("status", std::string_view(ok ? "ok" : "unavailable"));
  if (!reason.empty()) w.Field("reason", reason);
  w.EndObject();
  return body;
}

http::Response Json(bhttp::status status, std::string body) {
  return http::MakeResponse(status, kJson, std::move(body));
}

// GET /api/customers/{id}/recommendations.
constexpr std::string_view kRecommendationsSuffix = "/recommendations";

// The request-count label of a path: the routes, or "other" (unbounded
// paths must not become unbounded label values).
std::string_view PathLabel(std::string_view path) {
  for (std::string_view route : {"/metrics", "/healthz", "/readyz"}) {
    if (path == route) return route;
  }
  if (path.starts_with("/api/customers/") && path.ends_with(kRecommendationsSuffix)) {
    return "/api/recommendations";
  }
  if (path.starts_with("/api/customers/")) return "/api/customers";
  if (path.starts_with("/api/recommendations/")) return "/api/recommendations";
  if (path == "/api/associations") return "/api/associations";
  return "other";
}

}  // namespace

http::ServerOptions AdminServerOptions::DefaultHttpOptions() {
  http::ServerOptions o;
  o.name = "admin";
  o.port = 9464;
  o.public_paths = {"/healthz", "/readyz"};
  return o;
}

struct AdminServer::Impl {
  Impl(runtime::StreamEngine* e, const config::EngineConfig& config, const AdminServerOptions& o)
      : engine(e), options(o), metrics(e, config.outputs, o.stall_after) {}

  awaitable<http::Reply> Handle(const http::Request& req) {
    const std::string_view path =
        http::TargetPath(std::string_view(req.target().data(), req.target().size()));
    if (path == "/metrics") {
      co_return http::MakeResponse(bhttp::status::ok, kPrometheusText, metrics.Scrape());
    }
    if (path == "/healthz" || path == "/readyz") {
      const runtime::EngineHealth h = engine->probe().Health(options.stall_after);
      const bool ok = path == "/healthz" ? h.live : h.ready;
      // A live engine that is not ready yet still answers healthz without a
      // reason: the reason concerns readiness.
      const std::string_view reason = (path == "/healthz" && ok) ? std::string_view() : h.reason;
      co_return Json(ok ? bhttp::status::ok : bhttp::status::service_unavailable,
                     ProbeJson(ok, reason));
    }
    if (constexpr std::string_view kPrefix = "/api/customers/"; path.starts_with(kPrefix)) {
      std::string_view id = path.substr(kPrefix.size());
      if (id.ends_with(kRecommendationsSuffix)) {
        id.remove_suffix(kRecommendationsSuffix.size());
        co_return co_await QueryCustomer(id, runtime::QueryKind::kRecommendations);
      }
      co_return co_await QueryCustomer(id, runtime::QueryKind::kCustomer);
    }
    if (constexpr std::string_view kPrefix = "/api/recommendations/"; path.starts_with(kPrefix)) {
      co_return co_await QueryCustomer(path.substr(kPrefix.size()),
                                       runtime::QueryKind::kRecommendations);
    }
    if (path == "/api/associations") {
      const std::string_view target(req.target().data(), req.target().size());
      co_return co_await QueryItem(target.substr(path.size()));
    }
    // The path is not echoed: an error page must not reflect what a client sent.
    co_return Json(bhttp::status::not_found, ErrorJson("no such path"));
  }

  awaitable<http::Reply> QueryCustomer(std::string_view encoded_id, runtime::QueryKind kind) {
    std::optional<std::string> id = http::PercentDecode(encoded_id);
    if (!id || id->empty() || id->size() > kMaxCustomerIdBytes ||
        id->find('/') != std::string::npos) {
      co_return Json(bhttp::status::bad_request, ErrorJson("invalid customer id"));
    }
    co_return co_await Answer(std::move(*id), kind, "customer_id");
  }

  // GET /api/associations?item=X: `query` is the target from its '?'.
  awaitable<http::Reply> QueryItem(std::string_view query) {
    std::optional<std::string> item;
    constexpr std::string_view kParam = "item=";
    if (!query.empty()) query.remove_prefix(1);  // '?'
    while (!query.empty() && !item) {
      const std::string_view param = query.substr(0, query.find('&'));
      if (param.starts_with(kParam)) item = http::PercentDecode(param.substr(kParam.size()));
      query.remove_prefix(std::min(query.size(), param.size() + 1));
    }
    if (!item || item->empty() || item->size() > kMaxCustomerIdBytes) {
      co_return Json(bhttp::status::bad_request,
                     ErrorJson("an item is needed: /api/associations?item=<item_id>"));
    }
    co_return co_await Answer(std::move(*item), runtime::QueryKind::kAssociations, "item");
  }

  // Submits the query to the engine and waits (bounded) for its answer; the
  // error JSON names the id as `id_field`.
  awaitable<http::Reply> Answer(std::string id, runtime::QueryKind kind,
                                std::string_view id_field) {
    auto submitted = engine->queries().Submit(id, kind);
    if (!submitted.ok()) {
      co_return Json(bhttp::status::service_unavailable,
                     ErrorJson(submitted.status().message(), id, id_field));
    }
    std::shared_ptr<const runtime::CustomerQuery> query = std::move(submitted).value();
    const auto deadline = Clock::now() + options.query_timeout;
    asio::steady_timer timer(co_await asio::this_coro::executor);
    while (!query->done()) {
      if (Clock::now() >= deadline) {
        // The engine answers it later into a query nobody reads: harmless.
        co_return Json(bhttp::status::service_unavailable,
                       ErrorJson("the engine did not answer in time", id, id_field));
      }
      boost::system::error_code ec;
      timer.expires_after(kQueryPoll);
      co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }
    if (query->status().ok()) co_return Json(bhttp::status::ok, query->json());
    if (query->status().code() == StatusCode::kNotFound) {
      // "unknown customer", "unknown item", or the model being off.
      co_return Json(bhttp::status::not_found, ErrorJson(query->status().message(), id, id_field));
    }
    co_return Json(bhttp::status::service_unavailable,
                   ErrorJson(query->status().message(), id, id_field));
  }

  runtime::StreamEngine* engine;
  AdminServerOptions options;
  EngineMetrics metrics;
  // Last: stopped and destroyed before what its handler uses.
  std::unique_ptr<http::Server> server;
};

AdminServer::AdminServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

AdminServer::~AdminServer() { Stop(); }

Result<std::unique_ptr<AdminServer>> AdminServer::Start(runtime::StreamEngine* engine,
                                                        const config::EngineConfig& config,
                                                        const AdminServerOptions& options) {
  auto impl = std::make_unique<Impl>(engine, config, options);
  Impl* raw = impl.get();
  http::ServerOptions http_options = options.http;
  http_options.on_response = [raw](std::string_view path, unsigned status) {
    raw->metrics.CountRequest(PathLabel(path), static_cast<int>(status));
  };
  CRM_ASSIGN_OR_RETURN(
      impl->server, http::Server::Start(std::move(http_options), [raw](const http::Request& req) {
        return raw->Handle(req);
      }));
  return std::unique_ptr<AdminServer>(new AdminServer(std::move(impl)));
}

void AdminServer::Stop() {
  if (impl_ && impl_->server) impl_->server->Stop();
}

int AdminServer::port() const { return impl_->server->port(); }

std::string AdminServer::url() const { return impl_->server->url(); }

const EngineMetrics& AdminServer::metrics() const { return impl_->metrics; }

http::ServerStats AdminServer::connection_stats() const { return impl_->server->stats(); }

}  // namespace crmstream::admin
