// The HTTP core against hostile clients on loopback: the connection cap
// (the idlest connection makes room, 503 when all are busy), slow and idle
// clients cut off at their timeouts, 4xx for malformed and oversized
// requests, the Host allowlist, the bearer token, and accept errors (out
// of descriptors) retried with backoff and logged once per interval.
#include "crmstream/http/server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/spdlog.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

#include "http/hostile_clients.h"
#include "support/require_ok.h"
#include "support/test_support.h"

namespace crmstream::http {
namespace {

namespace asio = boost::asio;
namespace bhttp = boost::beast::http;
using namespace std::chrono_literals;
using testing::IdleConnections;
using testing::RawExchange;
using testing::StatusOf;
using Clock = std::chrono::steady_clock;

std::string Get(std::string_view path, std::string_view host = "127.0.0.1",
                std::string_view extra = {}) {
  return "GET " + std::string(path) + " HTTP/1.1\r\nHost: " + std::string(host) +
         "\r\nConnection: close\r\n" + std::string(extra) + "\r\n";
}

// "/" answers "ok"; "/slow" answers once `release` is set (checked every
// 10 ms, at most 20 s).
struct TestRoutes {
  std::atomic<bool> release{false};
  std::atomic<int> slow_started{0};

  Handler handler() {
    return [this](const Request& req) -> asio::awaitable<Reply> {
      if (req.target() == "/slow") {
        slow_started.fetch_add(1);
        asio::steady_timer timer(co_await asio::this_coro::executor);
        for (int i = 0; i < 2000 && !release.load(); ++i) {
          timer.expires_after(10ms);
          co_await timer.async_wait(asio::use_awaitable);
        }
      }
      if (req.target() == "/" || req.target() == "/slow" || req.target() == "/public") {
        co_return MakeResponse(bhttp::status::ok, "text/plain", "ok\n");
      }
      co_return JsonError(bhttp::status::not_found, "not found");
    };
  }
};

ServerOptions TestOptions() {
  ServerOptions o;
  o.name = "test";
  o.port = 0;
  return o;
}

template <typename Pred>
bool WaitFor(Pred pred, std::chrono::seconds bound = 20s) {
  const auto deadline = Clock::now() + bound;
  while (!pred() && Clock::now() < deadline) std::this_thread::sleep_for(20ms);
  return pred();
}

TEST_CASE("at the cap the idlest connection makes room, and when all are busy a new one gets 503",
          "[http]") {
  TestRoutes routes;
  ServerOptions o = TestOptions();
  o.max_connections = 4;
  auto server = Server::Start(o, routes.handler());
  REQUIRE_OK(server);
  const int port = (*server)->port();

  // Ten clients that connect and say nothing: the server keeps at most four.
  IdleConnections idle(port, 10);
  REQUIRE(idle.opened() == 10);
  CHECK(WaitFor([&] { return idle.ClosedByServer() >= 6; }));
  CHECK((*server)->stats().open_connections <= 4);
  // A real request still gets through, taking an idle one's place.
  CHECK(StatusOf(RawExchange(port, Get("/"))) == 200);
  CHECK((*server)->stats().evicted >= 6);

  // Four requests in progress hold every slot: a fifth client is told so.
  std::vector<std::thread> slow;
  std::vector<int> slow_status(4, 0);
  for (size_t i = 0; i < 4; ++i) {
    slow.emplace_back([&, i] { slow_status[i] = StatusOf(RawExchange(port, Get("/slow"), 30s)); });
  }
  REQUIRE(WaitFor([&] { return routes.slow_started.load() == 4; }));
  const std::string refused = RawExchange(port, Get("/"));
  CHECK(StatusOf(refused) == 503);
  CHECK(refused.find("too many connections") != std::string::npos);
  CHECK((*server)->stats().refused_busy >= 1);
  routes.release.store(true);
  for (auto& t : slow) t.join();
  for (int s : slow_status) CHECK(s == 200);
  CHECK(StatusOf(RawExchange(port, Get("/"))) == 200);
}

TEST_CASE("slow and idle clients are cut off at their timeouts", "[http]") {
  TestRoutes routes;
  ServerOptions o = TestOptions();
  o.header_timeout = 500ms;
  o.idle_timeout = 700ms;
  auto server = Server::Start(o, routes.handler());
  REQUIRE_OK(server);
  const int port = (*server)->port();

  // A request sent a byte every 50 ms would take over 3 minutes.
  testing::SlowClient slow(port, 50ms);
  IdleConnections silent(port, 1);
  REQUIRE(silent.opened() == 1);
  CHECK(slow.WaitCutOff(20s));
  CHECK(slow.bytes_sent() < 1000);
  CHECK(WaitFor([&] { return silent.ClosedByServer() == 1; }));
  CHECK((*server)->stats().timed_out >= 2);
  // Meanwhile, and after, requests are served.
  CHECK(StatusOf(RawExchange(port, Get("/"))) == 200);
}

TEST_CASE("malformed, oversized and non-GET requests get a 4xx answer", "[http]") {
  TestRoutes routes;
  ServerOptions o = TestOptions();
  o.max_header_bytes = 2048;
  o.max_body_bytes = 256;
  auto server = Server::Start(o, routes.handler());
  REQUIRE_OK(server);
  const int port = (*server)->port();

  CHECK(StatusOf(RawExchange(port, "THIS IS NOT HTTP\r\n\r\n")) == 400);
  CHECK(StatusOf(RawExchange(port, "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nBad Header\r\n\r\n")) ==
        400);
  const std::string big_header = "X-Big: " + std::string(4000, 'a') + "\r\n";
  CHECK(StatusOf(RawExchange(port, Get("/", "127.0.0.1", big_header))) == 431);
  const std::string body(1000, 'b');
  CHECK(StatusOf(RawExchange(port,
                             "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n"
                             "\r\n" +
                                 body)) == 413);
  const std::string post = RawExchange(
      port,
      "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}");
  CHECK(StatusOf(post) == 405);
  CHECK(post.find("Allow: GET") != std::string::npos);
  CHECK(StatusOf(RawExchange(port, "GET / HTTP/1.1\r\nConnection: close\r\n\r\n")) == 400);
  CHECK((*server)->stats().malformed >= 4);

  // Every answer tells browsers not to guess content types.
  const std::string ok = RawExchange(port, Get("/"));
  CHECK(StatusOf(ok) == 200);
  CHECK(ok.find("X-Content-Type-Options: nosniff") != std::string::npos);
}

TEST_CASE("a Host header the server does not answer to is refused (DNS rebinding)", "[http]") {
  TestRoutes routes;
  ServerOptions o = TestOptions();
  o.allowed_hosts = {"crm.example.com"};
  auto server = Server::Start(o, routes.handler());
  REQUIRE_OK(server);
  const int port = (*server)->port();
  const std::string p = std::to_string(port);

  // A page on attacker.example whose name now resolves to 127.0.0.1.
  const std::string rebound = RawExchange(port, Get("/", "attacker.example:" + p));
  CHECK(StatusOf(rebound) == 421);
  CHECK(rebound.find("ok\n") == std::string::npos);
  CHECK(StatusOf(RawExchange(port, Get("/", "localhost.attacker.example"))) == 421);
  CHECK((*server)->stats().wrong_host == 2);
  for (const std::string& host :
       std::vector<std::string>{"localhost:" + p, "127.0.0.1:" + p, "[::1]:" + p, "crm.example.com",
                                "CRM.Example.COM:" + p, std::string("10.1.2.3")}) {
    INFO(host);
    CHECK(StatusOf(RawExchange(port, Get("/", host))) == 200);
  }
}

TEST_CASE("beyond loopback a token is required, and with one every request must carry it",
          "[http]") {
  TestRoutes routes;
  crmstream::testing::ScratchDir dir;
  const auto token_file = dir.path() / "token";
  const std::string token = "s3cr3t-token-0123456789";
  {
    std::ofstream f(token_file);
    f << token << "\n";
  }

  // Bound to every interface without a token: refused before binding, and
  // the message names the config field.
  ServerOptions open = TestOptions();
  open.bind_address = "0.0.0.0";
  auto refused = Server::Start(open, routes.handler());
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.status().message().find("test.auth_token_file") != std::string::npos);
  CHECK(refused.status().message().find("0.0.0.0") != std::string::npos);

  // A token file others can read is refused, without showing the token.
  ::chmod(token_file.c_str(), 0644);
  open.auth_token_file = token_file.string();
  auto readable = Server::Start(open, routes.handler());
  REQUIRE_FALSE(readable.ok());
  CHECK(readable.status().message().find("chmod 600") != std::string::npos);
  CHECK(readable.status().message().find(token) == std::string::npos);
  ::chmod(token_file.c_str(), 0600);

  // The token is enforced wherever it is configured (tests listen on
  // loopback only).
  ServerOptions o = TestOptions();
  o.auth_token_file = token_file.string();
  o.public_paths = {"/public"};
  auto server = Server::Start(o, routes.handler());
  REQUIRE_OK(server);
  const int port = (*server)->port();
  const std::string none = RawExchange(port, Get("/"));
  CHECK(StatusOf(none) == 401);
  CHECK(none.find("WWW-Authenticate: Bearer") != std::string::npos);
  CHECK(StatusOf(RawExchange(
            port, Get("/", "127.0.0.1", "Authorization: Bearer wrong-token\r\n"))) == 401);
  CHECK(StatusOf(RawExchange(
            port, Get("/", "127.0.0.1", "Authorization: Bearer " + token + "x\r\n"))) == 401);
  CHECK(StatusOf(RawExchange(
            port, Get("/", "127.0.0.1", "Authorization: Bearer " + token + "\r\n"))) == 200);
  // What a browser sends after asking the user: Basic, any user, the token
  // as password ("u:s3cr3t-token-0123456789").
  CHECK(StatusOf(RawExchange(
            port, Get("/", "127.0.0.1",
                      "Authorization: Basic dTpzM2NyM3QtdG9rZW4tMDEyMzQ1Njc4OQ==\r\n"))) == 200);
  CHECK(StatusOf(RawExchange(port, Get("/public"))) == 200);
  CHECK((*server)->stats().unauthorized == 3);
}

// Counts the warnings about failed accepts.
class AcceptWarningCounter : public spdlog::sinks::base_sink<std::mutex> {
 public:
  int count() {
    std::lock_guard<std::mutex> lock(mutex_);
    return count_;
  }

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    const std::string_view text(msg.payload.data(), msg.payload.size());
    if (text.find("accepting a connection failed") != std::string_view::npos) ++count_;
  }
  void flush_() override {}

 private:
  int count_ = 0;
};

size_t OpenDescriptors() {
  size_t n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) ++n;
  return n;
}

TEST_CASE("out of descriptors, accepting backs off and logs once per interval", "[http]") {
#if defined(__SANITIZE_ADDRESS__)
  // UBSan's vptr check probes memory through a pipe: with no descriptor
  // left it reports every virtual call (here spdlog's) as a bad object.
  CRMSTREAM_SKIP("sanitizer builds need free descriptors for their own checks");
#endif
  auto counter = std::make_shared<AcceptWarningCounter>();
  auto previous = spdlog::default_logger();
  spdlog::set_default_logger(std::make_shared<spdlog::logger>("accept-test", counter));

  TestRoutes routes;
  ServerOptions o = TestOptions();
  o.accept_backoff_max = 200ms;
  o.accept_error_log_interval = 60s;
  auto server = Server::Start(o, routes.handler());
  REQUIRE_OK(server);
  const int port = (*server)->port();

  // This process may open two more descriptors; a child process (its own
  // descriptor table) queues twenty connections the server cannot accept.
  rlimit saved{};
  REQUIRE(getrlimit(RLIMIT_NOFILE, &saved) == 0);
  rlimit low = saved;
  low.rlim_cur = OpenDescriptors() + 2;
  REQUIRE(setrlimit(RLIMIT_NOFILE, &low) == 0);
  const pid_t child = fork();
  if (child == 0) {
    // Only system calls here: the parent has other threads. The child dies
    // with the parent, however the parent ends.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    setrlimit(RLIMIT_NOFILE, &saved);
    for (int i = 0; i < 20; ++i) {
      const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
      sockaddr_in addr{};
      addr.sin_family = AF_INET;
      addr.sin_port = htons(static_cast<uint16_t>(port));
      addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      if (fd >= 0) (void)::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    }
    pause();
    _exit(0);
  }
  REQUIRE(child > 0);
  // The child ends with the test case, whichever way the test case ends.
  struct Reaper {
    pid_t pid;
    ~Reaper() {
      kill(pid, SIGKILL);
      int wstatus = 0;
      waitpid(pid, &wstatus, 0);
    }
  } reaper{child};
  // 2 s of failing accepts: a retry at once would make hundreds of
  // thousands of attempts (and log lines); backoff makes a few dozen.
  std::this_thread::sleep_for(2s);
  const ServerStats during = (*server)->stats();
  const int warnings = counter->count();
  REQUIRE(setrlimit(RLIMIT_NOFILE, &saved) == 0);

  CHECK(during.accept_errors >= 3);
  CHECK(during.accept_errors <= 100);
  CHECK(warnings == 1);
  // With descriptors back, the queued connections are accepted and a
  // request is served.
  CHECK(StatusOf(RawExchange(port, Get("/"))) == 200);
  CHECK((*server)->stats().accepted >= 3);

  (*server)->Stop();
  spdlog::set_default_logger(previous);
}

}  // namespace
}  // namespace crmstream::http
