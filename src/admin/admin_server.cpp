#include "crmstream/admin/admin_server.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <thread>

#include "crmstream/common/json_writer.h"

namespace crmstream::admin {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

// An idle keep-alive connection is closed after this long.
constexpr auto kIdleTimeout = std::chrono::seconds(60);
// How often a waiting customer read checks for the engine's answer.
constexpr auto kQueryPoll = std::chrono::milliseconds(1);
constexpr size_t kMaxCustomerIdBytes = 256;

constexpr std::string_view kJson = "application/json";
constexpr std::string_view kPrometheusText = "text/plain; version=0.0.4; charset=utf-8";

// Percent-decodes a path segment; nullopt when malformed.
std::optional<std::string> PercentDecode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out.push_back(s[i]);
      continue;
    }
    if (i + 2 >= s.size()) return std::nullopt;
    const int hi = hex(s[i + 1]), lo = hex(s[i + 2]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out.push_back(static_cast<char>(hi * 16 + lo));
    i += 2;
  }
  return out;
}

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

}  // namespace

struct AdminServer::Impl {
  Impl(runtime::StreamEngine* e, const config::EngineConfig& config, const AdminServerOptions& o)
      : engine(e), options(o), metrics(e, config.outputs, o.stall_after), acceptor(ioc) {}

  void Accept();

  runtime::StreamEngine* engine;
  AdminServerOptions options;
  EngineMetrics metrics;
  // Declared before everything that uses it: destroyed last.
  asio::io_context ioc{1};
  tcp::acceptor acceptor;
  std::thread thread;
  int port = 0;
  bool stopped = false;
};

namespace {

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, AdminServer::Impl* server)
      : stream_(std::move(socket)), server_(server), poll_timer_(server->ioc) {}

  void Read() {
    request_ = {};
    stream_.expires_after(kIdleTimeout);
    http::async_read(
        stream_, buffer_, request_,
        [self = shared_from_this()](beast::error_code ec, size_t) { self->OnRead(ec); });
  }

 private:
  void OnRead(beast::error_code ec) {
    if (ec) {
      Close();  // end of stream, timeout, bad request: nothing more to say
      return;
    }
    const std::string_view target(request_.target().data(), request_.target().size());
    const std::string_view path = target.substr(0, target.find('?'));
    if (request_.method() != http::verb::get) {
      Respond("other", http::status::method_not_allowed, kJson, ErrorJson("only GET is supported"));
      return;
    }
    if (path == "/metrics") {
      Respond("/metrics", http::status::ok, kPrometheusText, server_->metrics.Scrape());
    } else if (path == "/healthz" || path == "/readyz") {
      const runtime::EngineHealth h = server_->engine->probe().Health(server_->options.stall_after);
      const bool ok = path == "/healthz" ? h.live : h.ready;
      // A live engine that is not ready yet still answers healthz without a
      // reason: the reason concerns readiness.
      const std::string_view reason = (path == "/healthz" && ok) ? std::string_view() : h.reason;
      Respond(path, ok ? http::status::ok : http::status::service_unavailable, kJson,
              ProbeJson(ok, reason));
    } else if (constexpr std::string_view kPrefix = "/api/customers/"; path.starts_with(kPrefix)) {
      QueryCustomer(path.substr(kPrefix.size()));
    } else if (constexpr std::string_view kRecommendations = "/api/recommendations/";
               path.starts_with(kRecommendations)) {
      QueryCustomer(path.substr(kRecommendations.size()), runtime::QueryKind::kRecommendations);
    } else if (path == "/api/associations") {
      QueryItem(target.substr(path.size()));
    } else {
      Respond("other", http::status::not_found, kJson, ErrorJson("no such path"));
    }
  }

  void QueryCustomer(std::string_view encoded_id,
                     runtime::QueryKind kind = runtime::QueryKind::kCustomer) {
    query_label_ =
        kind == runtime::QueryKind::kCustomer ? "/api/customers" : "/api/recommendations";
    id_field_ = "customer_id";
    std::optional<std::string> id = PercentDecode(encoded_id);
    if (!id || id->empty() || id->size() > kMaxCustomerIdBytes ||
        id->find('/') != std::string::npos) {
      Respond(query_label_, http::status::bad_request, kJson, ErrorJson("invalid customer id"));
      return;
    }
    Submit(std::move(*id), kind);
  }

  // GET /api/associations?item=X: `query` is the target from its '?'.
  void QueryItem(std::string_view query) {
    query_label_ = "/api/associations";
    id_field_ = "item";
    std::optional<std::string> item;
    constexpr std::string_view kParam = "item=";
    if (!query.empty()) query.remove_prefix(1);  // '?'
    while (!query.empty() && !item) {
      const std::string_view param = query.substr(0, query.find('&'));
      if (param.starts_with(kParam)) item = PercentDecode(param.substr(kParam.size()));
      query.remove_prefix(std::min(query.size(), param.size() + 1));
    }
    if (!item || item->empty() || item->size() > kMaxCustomerIdBytes) {
      Respond(query_label_, http::status::bad_request, kJson,
              ErrorJson("an item is needed: /api/associations?item=<item_id>"));
      return;
    }
    Submit(std::move(*item), runtime::QueryKind::kAssociations);
  }

  void Submit(std::string id, runtime::QueryKind kind) {
    auto query = server_->engine->queries().Submit(id, kind);
    if (!query.ok()) {
      Respond(query_label_, http::status::service_unavailable, kJson,
              ErrorJson(query.status().message(), id, id_field_));
      return;
    }
    query_ = std::move(query).value();
    query_deadline_ = Clock::now() + server_->options.query_timeout;
    PollQuery();
  }

  void PollQuery() {
    if (query_->done()) {
      auto query = std::move(query_);
      if (query->status().ok()) {
        Respond(query_label_, http::status::ok, kJson, query->json());
      } else if (query->status().code() == StatusCode::kNotFound) {
        Respond(query_label_, http::status::not_found, kJson,
                ErrorJson(query->status().message(), query->customer_id(), id_field_));
      } else {
        Respond(query_label_, http::status::service_unavailable, kJson,
                ErrorJson(query->status().message(), query->customer_id(), id_field_));
      }
      return;
    }
    if (Clock::now() >= query_deadline_) {
      // The engine answers it later into a query nobody reads: harmless.
      auto id = query_->customer_id();
      query_.reset();
      Respond(query_label_, http::status::service_unavailable, kJson,
              ErrorJson("the engine did not answer in time", id, id_field_));
      return;
    }
    poll_timer_.expires_after(kQueryPoll);
    poll_timer_.async_wait([self = shared_from_this()](beast::error_code ec) {
      if (!ec) self->PollQuery();
    });
  }

  void Respond(std::string_view path_label, http::status status, std::string_view content_type,
               std::string body) {
    server_->metrics.CountRequest(path_label, static_cast<int>(status));
    response_ = {};
    response_.version(request_.version());
    response_.result(status);
    response_.set(http::field::server, "crmstream");
    response_.set(http::field::content_type,
                  beast::string_view(content_type.data(), content_type.size()));
    response_.set(http::field::cache_control, "no-store");
    if (status == http::status::method_not_allowed) response_.set(http::field::allow, "GET");
    response_.keep_alive(request_.keep_alive());
    response_.body() = std::move(body);
    response_.prepare_payload();
    http::async_write(stream_, response_,
                      [self = shared_from_this()](beast::error_code ec, size_t) {
                        if (ec) return;
                        if (self->response_.need_eof()) {
                          self->Close();
                        } else {
                          self->Read();
                        }
                      });
  }

  void Close() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
  }

  beast::tcp_stream stream_;
  AdminServer::Impl* server_;
  beast::flat_buffer buffer_;
  http::request<http::string_body> request_;
  http::response<http::string_body> response_;
  asio::steady_timer poll_timer_;
  std::shared_ptr<const runtime::CustomerQuery> query_;
  std::string_view query_label_;  // the metrics' path label of the query
  std::string_view id_field_;     // the error JSON's name for the id
  Clock::time_point query_deadline_;
};

}  // namespace

void AdminServer::Impl::Accept() {
  acceptor.async_accept([this](beast::error_code ec, tcp::socket socket) {
    if (ec) {
      if (ec == asio::error::operation_aborted) return;  // Stop()
      spdlog::warn("admin server accept: {}", ec.message());
    } else {
      std::make_shared<Session>(std::move(socket), this)->Read();
    }
    Accept();
  });
}

AdminServer::AdminServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

AdminServer::~AdminServer() { Stop(); }

Result<std::unique_ptr<AdminServer>> AdminServer::Start(runtime::StreamEngine* engine,
                                                        const config::EngineConfig& config,
                                                        const AdminServerOptions& options) {
  if (options.port < 0 || options.port > 65535) {
    return Status::InvalidArgument("metrics_port must be in [0, 65535], got " +
                                   std::to_string(options.port));
  }
  auto impl = std::make_unique<Impl>(engine, config, options);
  beast::error_code ec;
  const auto address = asio::ip::make_address(options.address, ec);
  if (ec)
    return Status::InvalidArgument("admin server address '" + options.address +
                                   "': " + ec.message());
  const tcp::endpoint endpoint(address, static_cast<unsigned short>(options.port));
  const std::string where = options.address + ":" + std::to_string(options.port);
  impl->acceptor.open(endpoint.protocol(), ec);
  if (!ec) impl->acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) impl->acceptor.bind(endpoint, ec);
  if (!ec) impl->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return Status::IOError("admin server cannot listen on " + where + ": " + ec.message());
  impl->port = impl->acceptor.local_endpoint().port();
  impl->Accept();
  Impl* raw = impl.get();
  impl->thread = std::thread([raw] { raw->ioc.run(); });
  return std::unique_ptr<AdminServer>(new AdminServer(std::move(impl)));
}

void AdminServer::Stop() {
  if (!impl_ || impl_->stopped) return;
  impl_->stopped = true;
  // Closing the acceptor and stopping the context ends every session: their
  // pending handlers are dropped, which releases them.
  asio::post(impl_->ioc, [impl = impl_.get()] {
    beast::error_code ignored;
    impl->acceptor.close(ignored);
    impl->ioc.stop();
  });
  if (impl_->thread.joinable()) impl_->thread.join();
}

int AdminServer::port() const { return impl_->port; }

std::string AdminServer::url() const {
  return "http://" + impl_->options.address + ":" + std::to_string(impl_->port);
}

const EngineMetrics& AdminServer::metrics() const { return impl_->metrics; }

}  // namespace crmstream::admin
