// Hostile clients for the HTTP servers' tests, on raw loopback sockets:
// thousands of idle connections, a client that sends its request a byte at
// a time, one-shot raw requests, and the process's resident memory.
//
// Thread-safety: test code; SlowClient runs on a thread of its own, the
// rest on the calling thread.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <string>
#include <thread>
#include <vector>

namespace crmstream::http::testing {

// Raises the soft RLIMIT_NOFILE to at least `wanted` (up to the hard
// limit); false when the hard limit is lower.
bool RaiseOpenFileLimit(size_t wanted);

// Resident set size of this process, bytes.
size_t ResidentBytes();

// Connections that connect and then send nothing.
class IdleConnections {
 public:
  // Opens up to `n` connections to 127.0.0.1:port; stops early when the
  // process runs out of descriptors (see opened()).
  IdleConnections(int port, size_t n);
  ~IdleConnections();
  IdleConnections(const IdleConnections&) = delete;
  IdleConnections& operator=(const IdleConnections&) = delete;

  size_t opened() const { return fds_.size(); }
  // How many the server has closed (end of stream or reset seen).
  size_t ClosedByServer() const;

 private:
  std::vector<int> fds_;
};

// Sends `request` to 127.0.0.1:port and reads the answer until the server
// closes or `timeout` passes. The raw answer ("" when none).
std::string RawExchange(int port, const std::string& request,
                        std::chrono::milliseconds timeout = std::chrono::seconds(10));
// The status code of a raw HTTP answer; 0 when it is not one.
int StatusOf(const std::string& answer);

// Sends a long request one byte every `pause` on a thread of its own until
// the server stops it (closes, or answers before the request is complete)
// or the request is all sent.
class SlowClient {
 public:
  SlowClient(int port, std::chrono::milliseconds pause);
  ~SlowClient();
  SlowClient(const SlowClient&) = delete;
  SlowClient& operator=(const SlowClient&) = delete;

  bool cut_off() const { return cut_off_.load(); }
  size_t bytes_sent() const { return sent_.load(); }
  // Waits, bounded, until the server cut the client off.
  bool WaitCutOff(std::chrono::seconds bound);

 private:
  std::atomic<bool> stop_{false};
  std::atomic<bool> cut_off_{false};
  std::atomic<size_t> sent_{0};
  std::thread thread_;
};

}  // namespace crmstream::http::testing
