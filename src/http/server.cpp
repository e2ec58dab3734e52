#include "crmstream/http/server.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <list>
#include <optional>
#include <thread>

#include "crmstream/common/json_writer.h"
#include "crmstream/http/access_policy.h"
#include "crmstream/http/uri.h"

namespace crmstream::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using tcp = asio::ip::tcp;
using asio::awaitable;
using Clock = std::chrono::steady_clock;

namespace {

// Errors come back as values: the I/O never throws into the coroutines.
auto NoThrow(beast::error_code& ec) { return asio::redirect_error(asio::use_awaitable, ec); }

// Refusals (503 at the cap) being written at once, at most; beyond it a
// refused connection is just closed.
constexpr size_t kMaxRefusals = 32;
// After an error answer, the rest of the request is read and dropped for at
// most this long so that closing does not reset the connection before the
// client has read the answer.
constexpr auto kLingerTime = std::chrono::seconds(1);
constexpr size_t kLingerBytes = 64 * 1024;
constexpr auto kFirstAcceptBackoff = std::chrono::milliseconds(5);

enum class ConnectionState { kWaiting, kBusy };

struct Connection {
  explicit Connection(tcp::socket s) : stream(std::move(s)) {}
  beast::tcp_stream stream;
  ConnectionState state = ConnectionState::kWaiting;
  std::list<Connection*>::iterator where;
  bool closed_by_server = false;  // evicted or stopped: end without answering
};

}  // namespace

struct Server::Impl {
  ServerOptions options;
  Handler handler;
  AccessPolicy access;
  // Declared before what lives in it and destroyed explicitly in ~Impl, so
  // that coroutine frames destroyed with it still find the lists below.
  std::unique_ptr<asio::io_context> ioc = std::make_unique<asio::io_context>(1);
  std::optional<tcp::acceptor> acceptor;
  std::thread thread;
  int bound_port = 0;
  bool stop_called = false;

  // Server thread only. Waiting connections in the order they began to
  // wait: the front has waited longest and is evicted first.
  std::list<Connection*> waiting;
  std::list<Connection*> busy;
  size_t streams = 0;
  size_t refusals = 0;
  size_t starting = 0;  // admitted sessions whose coroutine has not run yet
  bool stopping = false;
  Clock::time_point next_accept_log{};
  uint64_t accept_errors_unlogged = 0;

  struct Counters {
    std::atomic<uint64_t> open{0}, accepted{0}, evicted{0}, refused_busy{0}, timed_out{0},
        malformed{0}, wrong_host{0}, unauthorized{0}, accept_errors{0};
  } counters;

  Impl(ServerOptions o, Handler h, AccessPolicy a)
      : options(std::move(o)), handler(std::move(h)), access(std::move(a)) {}

  ~Impl() {
    acceptor.reset();
    ioc.reset();  // destroys the frames of sessions still suspended
  }

  size_t open() const { return waiting.size() + busy.size(); }

  void Register(Connection* c) {
    --starting;
    c->state = ConnectionState::kWaiting;
    waiting.push_back(c);
    c->where = std::prev(waiting.end());
    counters.open.store(open(), std::memory_order_relaxed);
  }
  void Unregister(Connection* c) {
    if (c->closed_by_server) return;  // already taken off by Evict / CloseAll
    (c->state == ConnectionState::kWaiting ? waiting : busy).erase(c->where);
    counters.open.store(open(), std::memory_order_relaxed);
  }
  void SetState(Connection* c, ConnectionState s) {
    if (c->closed_by_server || c->state == s) return;
    auto& from = c->state == ConnectionState::kWaiting ? waiting : busy;
    auto& to = s == ConnectionState::kWaiting ? waiting : busy;
    to.splice(to.end(), from, c->where);
    c->state = s;
  }
  void CloseByServer(Connection* c) {
    Unregister(c);
    c->closed_by_server = true;
    beast::error_code ignored;
    c->stream.socket().close(ignored);  // its pending read ends with operation_aborted
    counters.open.store(open(), std::memory_order_relaxed);
  }
  bool EvictOldestWaiting() {
    if (waiting.empty()) return false;
    CloseByServer(waiting.front());
    counters.evicted.fetch_add(1, std::memory_order_relaxed);
    return true;
  }

  void Finish(Response& res, unsigned version, bool keep_alive) {
    res.version(version);
    res.set(bhttp::field::server, "crmstream");
    res.set("X-Content-Type-Options", "nosniff");
    if (res[bhttp::field::cache_control].empty()) {
      res.set(bhttp::field::cache_control, "no-store");
    }
    for (const auto& [name, value] : options.extra_headers) res.set(name, value);
    res.keep_alive(keep_alive);
    res.prepare_payload();
  }

  void Observe(std::string_view path, unsigned status) {
    if (options.on_response) options.on_response(path, status);
  }

  // Writes an answer the client did not earn a keep-alive for, then closes.
  awaitable<void> AnswerAndClose(beast::tcp_stream& stream, Response res, std::string_view path) {
    Observe(path, res.result_int());
    Finish(res, 11, false);
    beast::error_code ec;
    stream.expires_after(options.write_timeout);
    co_await bhttp::async_write(stream, res, NoThrow(ec));
    if (!ec) co_await Linger(stream);
  }

  // Half-closes, then drops what the client still sends until it closes
  // too, bounded in time and bytes.
  awaitable<void> Linger(beast::tcp_stream& stream) {
    beast::error_code ec;
    stream.socket().shutdown(tcp::socket::shutdown_send, ec);
    stream.expires_after(kLingerTime);
    std::array<char, 2048> sink;
    size_t dropped = 0;
    while (!ec && dropped < kLingerBytes) {
      dropped += co_await stream.async_read_some(asio::buffer(sink), NoThrow(ec));
    }
  }

  // The core's checks, then the handler.
  awaitable<Reply> Dispatch(const Request& req) {
    const std::string_view target(req.target().data(), req.target().size());
    const std::string_view path = TargetPath(target);
    const auto host = req[bhttp::field::host];
    if (req.version() >= 11 && host.empty()) {
      counters.malformed.fetch_add(1, std::memory_order_relaxed);
      co_return JsonError(bhttp::status::bad_request, "missing Host header");
    }
    if (!host.empty() && !access.HostAllowed(std::string_view(host.data(), host.size()))) {
      // DNS rebinding: a page of another site reaching this server by a
      // name that now points here.
      counters.wrong_host.fetch_add(1, std::memory_order_relaxed);
      co_return JsonError(bhttp::status::misdirected_request, "host not served here");
    }
    if (req.method() != bhttp::verb::get) {
      Response res = JsonError(bhttp::status::method_not_allowed, "only GET is supported");
      res.set(bhttp::field::allow, "GET");
      co_return res;
    }
    const auto auth = req[bhttp::field::authorization];
    if (!access.Authorized(path, std::string_view(auth.data(), auth.size()))) {
      counters.unauthorized.fetch_add(1, std::memory_order_relaxed);
      Response res = JsonError(bhttp::status::unauthorized, "a bearer token is required");
      res.set(bhttp::field::www_authenticate,
              "Bearer realm=\"crmstream\", Basic realm=\"crmstream\"");
      co_return res;
    }
    try {
      co_return co_await handler(req);
    } catch (const std::exception& e) {
      // Handlers report errors as values; a throw is a bug, answered 500
      // and logged without the request (it may carry customer ids).
      spdlog::error("{} server: handler failed: {}", options.name, e.what());
      co_return JsonError(bhttp::status::internal_server_error, "internal error");
    }
  }

  awaitable<void> RunStream(Connection& conn, EventStream stream, unsigned version) {
    ++streams;
    beast::error_code ec;
    Response head(bhttp::status::ok, version);
    head.set(bhttp::field::content_type, "text/event-stream");
    Finish(head, version, false);
    head.content_length(boost::none);
    head.chunked(false);
    bhttp::response_serializer<bhttp::string_body> sr(head);
    conn.stream.expires_after(options.write_timeout);
    co_await bhttp::async_write_header(conn.stream, sr, NoThrow(ec));
    std::string message = std::move(stream.preamble);
    asio::steady_timer timer(conn.stream.get_executor());
    while (!ec && !stopping) {
      if (!message.empty()) {
        // A client that stops reading is dropped instead of buffered for.
        conn.stream.expires_after(options.write_timeout);
        co_await asio::async_write(conn.stream, asio::buffer(message), NoThrow(ec));
        if (ec) break;
      }
      timer.expires_after(stream.period);
      co_await timer.async_wait(NoThrow(ec));
      if (!ec && !stopping) message = stream.next();
    }
    --streams;
  }

  awaitable<void> Session(tcp::socket socket) {
    Connection conn(std::move(socket));
    Register(&conn);
    struct Unregistration {
      Impl* impl;
      Connection* c;
      ~Unregistration() { impl->Unregister(c); }
    } unregister{this, &conn};

    beast::flat_buffer buffer(options.max_header_bytes + options.max_body_bytes);
    beast::error_code ec;
    bool first = true;
    while (!stopping && !conn.closed_by_server) {
      SetState(&conn, ConnectionState::kWaiting);
      if (buffer.size() == 0) {
        // Nothing of the next request yet: the connection idles (a new one
        // gets the header timeout: a client connects to send).
        conn.stream.expires_after(first ? options.header_timeout : options.idle_timeout);
        const size_t n = co_await conn.stream.async_read_some(
            buffer.prepare(std::min<size_t>(1024, buffer.max_size())), NoThrow(ec));
        if (ec) {
          if (ec == beast::error::timeout) counters.timed_out.fetch_add(1);
          break;
        }
        buffer.commit(n);
      }
      first = false;
      bhttp::request_parser<bhttp::string_body> parser;
      parser.header_limit(static_cast<std::uint32_t>(options.max_header_bytes));
      parser.body_limit(options.max_body_bytes);
      conn.stream.expires_after(options.header_timeout);
      co_await bhttp::async_read(conn.stream, buffer, parser, NoThrow(ec));
      if (conn.closed_by_server || stopping) break;
      if (ec) {
        if (ec == beast::error::timeout) {
          // Slowloris: part of a request, never the rest.
          counters.timed_out.fetch_add(1, std::memory_order_relaxed);
          SetState(&conn, ConnectionState::kBusy);
          Response res = JsonError(bhttp::status::request_timeout, "request too slow");
          co_await AnswerAndClose(conn.stream, std::move(res), {});
          break;
        }
        if (ec == bhttp::error::end_of_stream || ec == asio::error::eof ||
            ec == asio::error::connection_reset) {
          break;
        }
        counters.malformed.fetch_add(1, std::memory_order_relaxed);
        SetState(&conn, ConnectionState::kBusy);
        // Locals, not temporaries in the co_await expression (GCC 12
        // mishandles a conditional's temporaries there).
        Response res = JsonError(bhttp::status::bad_request, "malformed request");
        if (ec == bhttp::error::header_limit) {
          res = JsonError(bhttp::status::request_header_fields_too_large,
                          "request headers too large");
        } else if (ec == bhttp::error::body_limit) {
          res = JsonError(bhttp::status::payload_too_large, "request body too large");
        }
        co_await AnswerAndClose(conn.stream, std::move(res), {});
        break;
      }
      SetState(&conn, ConnectionState::kBusy);
      const Request& req = parser.get();
      const std::string path(
          TargetPath(std::string_view(req.target().data(), req.target().size())));
      Reply reply = co_await Dispatch(req);
      if (conn.closed_by_server || stopping) break;
      if (auto* events = std::get_if<EventStream>(&reply)) {
        if (streams >= options.max_streams) {
          counters.refused_busy.fetch_add(1, std::memory_order_relaxed);
          Response res = JsonError(bhttp::status::service_unavailable, "too many event streams");
          co_await AnswerAndClose(conn.stream, std::move(res), path);
          break;
        }
        Observe(path, 200);
        co_await RunStream(conn, std::move(*events), req.version());
        break;
      }
      Response& res = std::get<Response>(reply);
      Observe(path, res.result_int());
      const bool keep_alive = req.keep_alive() && !stopping;
      Finish(res, req.version(), keep_alive);
      conn.stream.expires_after(options.write_timeout);
      co_await bhttp::async_write(conn.stream, res, NoThrow(ec));
      if (ec || !keep_alive) break;
    }
    if (!conn.closed_by_server) {
      conn.stream.socket().shutdown(tcp::socket::shutdown_send, ec);
    }
  }

  // 503 to a connection over the cap, written without taking a slot.
  awaitable<void> Refuse(tcp::socket socket) {
    ++refusals;
    beast::tcp_stream stream(std::move(socket));
    Response res =
        JsonError(bhttp::status::service_unavailable, "server busy: too many connections");
    co_await AnswerAndClose(stream, std::move(res), {});
    --refusals;
  }

  void Admit(tcp::socket socket) {
    counters.accepted.fetch_add(1, std::memory_order_relaxed);
    if (open() + starting >= options.max_connections && !EvictOldestWaiting()) {
      counters.refused_busy.fetch_add(1, std::memory_order_relaxed);
      if (refusals < kMaxRefusals) {
        asio::co_spawn(*ioc, Refuse(std::move(socket)), asio::detached);
      }
      return;  // else closed by the socket's destructor
    }
    ++starting;
    asio::co_spawn(*ioc, Session(std::move(socket)), asio::detached);
  }

  void NoteAcceptError(const beast::error_code& ec) {
    counters.accept_errors.fetch_add(1, std::memory_order_relaxed);
    const auto now = Clock::now();
    if (now < next_accept_log) {
      ++accept_errors_unlogged;
      return;
    }
    spdlog::warn(
        "{} server: accepting a connection failed: {} ({} more failures since the last "
        "report); retrying with backoff",
        options.name, ec.message(), accept_errors_unlogged);
    accept_errors_unlogged = 0;
    next_accept_log = now + options.accept_error_log_interval;
  }

  awaitable<void> Listen() {
    asio::steady_timer backoff_timer(*ioc);
    std::chrono::milliseconds backoff{0};
    while (!stopping) {
      beast::error_code ec;
      tcp::socket socket = co_await acceptor->async_accept(NoThrow(ec));
      if (stopping || !acceptor->is_open()) co_return;
      if (ec) {
        // Out of descriptors (EMFILE, ENFILE) or memory: retrying at once
        // would spin; the descriptors free up as connections end.
        NoteAcceptError(ec);
        backoff = std::min(std::max(backoff * 2, std::chrono::milliseconds(kFirstAcceptBackoff)),
                           options.accept_backoff_max);
        backoff_timer.expires_after(backoff);
        co_await backoff_timer.async_wait(NoThrow(ec));
        continue;
      }
      backoff = std::chrono::milliseconds(0);
      Admit(std::move(socket));
    }
  }

  void CloseAll() {
    stopping = true;
    beast::error_code ignored;
    if (acceptor) acceptor->close(ignored);
    while (!waiting.empty()) CloseByServer(waiting.front());
    while (!busy.empty()) CloseByServer(busy.front());
  }
};

Response MakeResponse(bhttp::status status, std::string_view content_type, std::string body) {
  Response res{status, 11};
  res.set(bhttp::field::content_type, beast::string_view(content_type.data(), content_type.size()));
  res.body() = std::move(body);
  return res;
}

Response JsonError(bhttp::status status, std::string_view message) {
  std::string body;
  JsonWriter w(&body);
  w.BeginObject();
  w.Field("error", message);
  w.EndObject();
  return MakeResponse(status, "application/json", std::move(body));
}

Server::Server(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Server::~Server() { Stop(); }

Result<std::unique_ptr<Server>> Server::Start(ServerOptions options, Handler handler) {
  if (options.port < 0 || options.port > 65535) {
    return Status::InvalidArgument(options.name + " port must be in [0, 65535], got " +
                                   std::to_string(options.port));
  }
  if (options.max_connections == 0) {
    return Status::InvalidArgument(options.name + ".max_connections must be positive");
  }
  if (options.header_timeout.count() <= 0 || options.idle_timeout.count() <= 0 ||
      options.write_timeout.count() <= 0 || options.accept_backoff_max.count() <= 0) {
    return Status::InvalidArgument(options.name + " server timeouts must be positive");
  }
  CRM_ASSIGN_OR_RETURN(AccessPolicy access, AccessPolicy::Create(options));
  auto impl = std::make_unique<Impl>(std::move(options), std::move(handler), std::move(access));
  const ServerOptions& o = impl->options;
  beast::error_code ec;
  const auto address = asio::ip::make_address(o.bind_address, ec);  // checked by AccessPolicy
  const tcp::endpoint endpoint(address, static_cast<unsigned short>(o.port));
  impl->acceptor.emplace(*impl->ioc);
  tcp::acceptor& acceptor = *impl->acceptor;
  acceptor.open(endpoint.protocol(), ec);
  if (!ec) acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor.bind(endpoint, ec);
  if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return Status::IOError(o.name + " server cannot listen on " + o.bind_address + ":" +
                           std::to_string(o.port) + ": " + ec.message());
  }
  impl->bound_port = acceptor.local_endpoint().port();
  Impl* i = impl.get();
  asio::co_spawn(*i->ioc, i->Listen(), asio::detached);
  i->thread = std::thread([i] {
    try {
      i->ioc->run();
    } catch (const std::exception& e) {
      // Nothing here throws by design; a throw is a bug worth a loud log
      // rather than a silently dead server.
      spdlog::error("{} server stopped: {}", i->options.name, e.what());
    }
  });
  return std::unique_ptr<Server>(new Server(std::move(impl)));
}

void Server::Stop() {
  if (!impl_ || impl_->stop_called) return;
  impl_->stop_called = true;
  asio::post(*impl_->ioc, [i = impl_.get()] {
    i->CloseAll();
    i->ioc->stop();
  });
  if (impl_->thread.joinable()) impl_->thread.join();
}

int Server::port() const { return impl_->bound_port; }

std::string Server::url() const {
  return "http://" + impl_->options.bind_address + ":" + std::to_string(impl_->bound_port);
}

asio::any_io_executor Server::executor() { return impl_->ioc->get_executor(); }

ServerStats Server::stats() const {
  const auto& c = impl_->counters;
  ServerStats s;
  s.open_connections = c.open.load(std::memory_order_relaxed);
  s.accepted = c.accepted.load(std::memory_order_relaxed);
  s.evicted = c.evicted.load(std::memory_order_relaxed);
  s.refused_busy = c.refused_busy.load(std::memory_order_relaxed);
  s.timed_out = c.timed_out.load(std::memory_order_relaxed);
  s.malformed = c.malformed.load(std::memory_order_relaxed);
  s.wrong_host = c.wrong_host.load(std::memory_order_relaxed);
  s.unauthorized = c.unauthorized.load(std::memory_order_relaxed);
  s.accept_errors = c.accept_errors.load(std::memory_order_relaxed);
  return s;
}

}  // namespace crmstream::http
