// Small blocking HTTP pieces for the dashboard's tests: a GET client and a
// stand-in for the engine's admin server with canned answers.
//
// Thread-safety: test code. FakeEngineAdmin serves on its own thread; its
// counters are atomics.
#pragma once

#include <sys/socket.h>
#include <sys/time.h>

#include <atomic>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace crmstream::dashboard::testing {

struct HttpAnswer {
  int status = 0;  // 0: no answer
  std::string content_type;
  std::string body;
};

// GET http://127.0.0.1:<port><target>.
inline HttpAnswer HttpGet(int port, const std::string& target) {
  namespace beast = boost::beast;
  namespace http = beast::http;
  boost::asio::io_context ioc;
  beast::tcp_stream stream(ioc);
  stream.expires_after(std::chrono::seconds(10));
  beast::error_code ec;
  stream.connect(boost::asio::ip::tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"),
                                                static_cast<unsigned short>(port)),
                 ec);
  if (ec) return {};
  // Blocking reads ignore the stream's expiry: bound them at the socket.
  const timeval limit{10, 0};
  setsockopt(stream.socket().native_handle(), SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof(limit));
  http::request<http::empty_body> req{http::verb::get, target, 11};
  req.set(http::field::host, "127.0.0.1");
  http::write(stream, req, ec);
  if (ec) return {};
  beast::flat_buffer buffer;
  http::response<http::string_body> res;
  http::read(stream, buffer, res, ec);
  if (ec) return {};
  return {static_cast<int>(res.result_int()), std::string(res[http::field::content_type]),
          res.body()};
}

// Answers GET requests with `handler(target)` -> (status, body).
class FakeEngineAdmin {
 public:
  using Handler = std::function<std::pair<int, std::string>(const std::string& target)>;
  explicit FakeEngineAdmin(Handler handler)
      : handler_(std::move(handler)),
        acceptor_(ioc_, {boost::asio::ip::make_address("127.0.0.1"), 0}) {
    port_ = acceptor_.local_endpoint().port();
    thread_ = std::thread([this] { Serve(); });
  }
  ~FakeEngineAdmin() { Stop(); }
  int port() const { return port_; }
  int requests() const { return requests_.load(); }
  // Requests whose target starts with `prefix` (the dashboard also scrapes
  // /metrics on its own schedule).
  int requests(std::string_view prefix) const {
    std::lock_guard<std::mutex> lock(targets_mu_);
    int n = 0;
    for (const std::string& t : targets_) n += t.rfind(prefix, 0) == 0 ? 1 : 0;
    return n;
  }
  void Stop() {
    if (!thread_.joinable()) return;
    stop_.store(true);
    // A bare connection unblocks accept(); nothing is read from it.
    boost::asio::io_context ioc;
    boost::asio::ip::tcp::socket wake(ioc);
    boost::beast::error_code ec;
    wake.connect({boost::asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(port_)},
                 ec);
    thread_.join();
    acceptor_.close(ec);
  }

 private:
  void Serve() {
    namespace beast = boost::beast;
    namespace http = beast::http;
    while (!stop_.load()) {
      beast::error_code ec;
      boost::asio::ip::tcp::socket socket(ioc_);
      acceptor_.accept(socket, ec);
      if (ec || stop_.load()) continue;
      beast::flat_buffer buffer;
      http::request<http::string_body> req;
      http::read(socket, buffer, req, ec);
      if (ec) continue;
      ++requests_;
      {
        std::lock_guard<std::mutex> lock(targets_mu_);
        targets_.emplace_back(req.target());
      }
      auto [status, body] = handler_(std::string(req.target()));
      http::response<http::string_body> res{static_cast<http::status>(status), 11};
      res.set(http::field::content_type,
              body.rfind('{', 0) == 0 ? "application/json" : "text/plain");
      res.body() = body;
      res.keep_alive(false);
      res.prepare_payload();
      http::write(socket, res, ec);
      socket.shutdown(boost::asio::ip::tcp::socket::shutdown_both, ec);
    }
  }

  Handler handler_;
  boost::asio::io_context ioc_;
  boost::asio::ip::tcp::acceptor acceptor_;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> requests_{0};
  mutable std::mutex targets_mu_;
  std::vector<std::string> targets_;
  std::thread thread_;
};

}  // namespace crmstream::dashboard::testing
