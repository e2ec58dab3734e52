// The HTTP/1.1 server core shared by the admin server and the dashboard
// (Boost.Beast on Asio, one I/O thread running C++20 coroutines). Each
// server brings its routes as a Handler; the core owns the listener, the
// connections and every defence against hostile clients, once:
//
//   - a connection cap: at the cap, the connection that has waited longest
//     for its next request (idle keep-alive, or a request still trickling
//     in) is closed to admit the new one; when every connection is busy the
//     new one gets 503 and is closed;
//   - timeouts: a request must arrive whole within header_timeout of its
//     first byte (or of the accept), a keep-alive connection may idle for
//     idle_timeout, a response must be taken within write_timeout;
//   - bounded request sizes (431 for headers, 413 for bodies), 400 for
//     malformed requests, 405 for methods other than GET;
//   - a Host allowlist against DNS rebinding (421): loopback names, IP
//     literals, the bind address and the configured names;
//   - a bearer token, required whenever the bind address is beyond
//     loopback (Start refuses to serve without it, naming the config field);
//   - accept errors (EMFILE, ENFILE, ...) retried with exponential backoff
//     and logged at most once per interval;
//   - `X-Content-Type-Options: nosniff`, `Cache-Control: no-store` and the
//     server's extra headers (a CSP) on every response.
//
// Thread-safety: Start, Stop, port and url are called from the owning
// thread; stats() from any thread. The handler, the event sources and the
// response observer run on the server's thread only.
#pragma once

#include <utility>  // first: Boost 1.74's awaitable.hpp uses std::exchange without it

// The rest, in order.
#include <atomic>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "crmstream/common/status.h"

namespace crmstream::http {

using Request = boost::beast::http::request<boost::beast::http::string_body>;
using Response = boost::beast::http::response<boost::beast::http::string_body>;

// A long-lived server-sent-events answer (text/event-stream). Every
// `period` the core calls `next` on the server thread and writes what it
// returns; an empty string writes nothing that round.
struct EventStream {
  std::chrono::milliseconds period{1000};
  std::function<std::string()> next;
  std::string preamble;  // written right after the headers (e.g. "retry: 2000\n\n")
};

using Reply = std::variant<Response, EventStream>;
// Answers one request that passed the core's checks (Host, token, method,
// sizes). It may suspend (timers, calls to other servers) on the server
// thread; other connections are served meanwhile.
using Handler = std::function<boost::asio::awaitable<Reply>(const Request&)>;

struct ServerOptions {
  // Names the server in logs and its config section in errors
  // ("admin" -> "admin.auth_token_file"). Default "http".
  std::string name = "http";
  // Listening address (an IP literal). Default loopback.
  std::string bind_address = "127.0.0.1";
  // Listening port; 0 picks a free one (Server::port()). Default 0.
  int port = 0;
  // Host header values served besides loopback names, IP literals and the
  // bind address; ports are ignored; "*" serves any. Default none.
  std::vector<std::string> allowed_hosts;
  // A file holding the bearer token (owner-only mode, at least 16
  // characters). Required when bind_address is not loopback. Clients send
  // `Authorization: Bearer <token>` or Basic credentials with the token as
  // the password (what a browser asks for). Default none.
  std::string auth_token_file;
  // Paths served without the token (health probes). Default none.
  std::vector<std::string> public_paths;
  // Open connections at most, event streams included. Default 256.
  size_t max_connections = 256;
  // Event streams at most (more get 503). Default 32.
  size_t max_streams = 32;
  // A request must arrive whole this long after its first byte (for a new
  // connection: after the accept). Default 10 s.
  std::chrono::milliseconds header_timeout{10000};
  // A keep-alive connection waits this long for the next request. Default 60 s.
  std::chrono::milliseconds idle_timeout{60000};
  // Each response (and each event) must be taken within this long. Default 10 s.
  std::chrono::milliseconds write_timeout{10000};
  size_t max_header_bytes = 8192;  // request line and headers; default 8 KiB
  size_t max_body_bytes = 4096;    // request body; default 4 KiB (the routes are GET)
  // Accept errors: retried after 5 ms, doubling up to this. Default 1 s.
  std::chrono::milliseconds accept_backoff_max{1000};
  // Accept errors are logged at most once per this interval. Default 10 s.
  std::chrono::milliseconds accept_error_log_interval{10000};
  // Added to every response (e.g. Content-Security-Policy).
  std::vector<std::pair<std::string, std::string>> extra_headers;
  // Called for every response the server sends, with the request's path
  // (without the query; empty when no request could be read) and status.
  std::function<void(std::string_view path, unsigned status)> on_response;
};

// Counters since Start; each a snapshot of its own atomic.
struct ServerStats {
  uint64_t open_connections = 0;
  uint64_t accepted = 0;
  uint64_t evicted = 0;       // idle connections closed to admit a new one
  uint64_t refused_busy = 0;  // 503 at the cap
  uint64_t timed_out = 0;     // header or idle timeouts
  uint64_t malformed = 0;     // 400, 413, 431
  uint64_t wrong_host = 0;    // 421
  uint64_t unauthorized = 0;  // 401
  uint64_t accept_errors = 0;
};

class Server {
 public:
  // Validates the options, reads the token, binds and starts serving on a
  // thread of its own. InvalidArgument naming the config field for a bad
  // address or a missing token; IOError when the port cannot be bound.
  static crmstream::Result<std::unique_ptr<Server>> Start(ServerOptions options, Handler handler);
  ~Server();  // Stop()
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Closes the listener and every connection, joins the thread. Idempotent.
  void Stop();
  int port() const;
  // "http://<bind_address>:<port>".
  std::string url() const;
  // The server thread's executor, for the owner's background tasks; they
  // end when the server stops.
  boost::asio::any_io_executor executor();
  ServerStats stats() const;

  struct Impl;

 private:
  explicit Server(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// A response with the given status, content type and body.
Response MakeResponse(boost::beast::http::status status, std::string_view content_type,
                      std::string body);
// {"error": message} as application/json.
Response JsonError(boost::beast::http::status status, std::string_view message);

}  // namespace crmstream::http
