#include "http/hostile_clients.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <fstream>

namespace crmstream::http::testing {
namespace {

using Clock = std::chrono::steady_clock;

int Connect(int port, bool blocking) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | (blocking ? 0 : SOCK_NONBLOCK), 0);
  if (fd < 0) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 &&
      errno != EINPROGRESS) {
    ::close(fd);
    return -1;
  }
  return fd;
}

}  // namespace

bool RaiseOpenFileLimit(size_t wanted) {
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) != 0) return false;
  if (lim.rlim_cur >= wanted) return true;
  if (lim.rlim_max != RLIM_INFINITY && lim.rlim_max < wanted) return false;
  lim.rlim_cur = wanted;
  return setrlimit(RLIMIT_NOFILE, &lim) == 0;
}

size_t ResidentBytes() {
  std::ifstream in("/proc/self/statm");
  size_t pages = 0, resident = 0;
  in >> pages >> resident;
  return resident * static_cast<size_t>(sysconf(_SC_PAGESIZE));
}

IdleConnections::IdleConnections(int port, size_t n) {
  fds_.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    const int fd = Connect(port, false);
    if (fd < 0) break;
    fds_.push_back(fd);
  }
}

IdleConnections::~IdleConnections() {
  for (int fd : fds_) ::close(fd);
}

size_t IdleConnections::ClosedByServer() const {
  size_t closed = 0;
  char byte;
  for (int fd : fds_) {
    const ssize_t n = ::recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    // 0: end of stream; an error other than "nothing yet": reset or refused.
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINPROGRESS &&
                   errno != ENOTCONN)) {
      ++closed;
    } else if (n > 0) {
      ++closed;  // an answer (503) to a request never sent: refused
    }
  }
  return closed;
}

std::string RawExchange(int port, const std::string& request, std::chrono::milliseconds timeout) {
  const int fd = Connect(port, true);
  if (fd < 0) return {};
  const auto deadline = Clock::now() + timeout;
  timeval tv{0, 100 * 1000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  size_t off = 0;
  while (off < request.size() && Clock::now() < deadline) {
    const ssize_t n = ::send(fd, request.data() + off, request.size() - off, MSG_NOSIGNAL);
    if (n > 0) {
      off += static_cast<size_t>(n);
    } else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
      break;  // the server may answer before taking everything (413, 431)
    }
  }
  std::string answer;
  char buf[4096];
  while (Clock::now() < deadline) {
    const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n > 0) {
      answer.append(buf, static_cast<size_t>(n));
    } else if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
      break;
    }
  }
  ::close(fd);
  return answer;
}

int StatusOf(const std::string& answer) {
  int status = 0;
  if (std::sscanf(answer.c_str(), "HTTP/1.%*d %d", &status) != 1) return 0;
  return status;
}

SlowClient::SlowClient(int port, std::chrono::milliseconds pause) {
  thread_ = std::thread([this, port, pause] {
    const int fd = Connect(port, true);
    if (fd < 0) {
      cut_off_.store(true);
      return;
    }
    std::string request = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n";
    while (request.size() < 4000) request += "X-Padding: slowly-sent-header-line\r\n";
    request += "\r\n";
    for (size_t i = 0; i < request.size() && !stop_.load(); ++i) {
      if (::send(fd, &request[i], 1, MSG_NOSIGNAL) != 1) {
        cut_off_.store(true);
        break;
      }
      sent_.fetch_add(1);
      // Closed or answered by the server before the request is complete.
      pollfd p{fd, POLLIN | POLLRDHUP, 0};
      if (::poll(&p, 1, static_cast<int>(pause.count())) > 0) {
        cut_off_.store(true);
        break;
      }
    }
    ::close(fd);
  });
}

SlowClient::~SlowClient() {
  stop_.store(true);
  if (thread_.joinable()) thread_.join();
}

bool SlowClient::WaitCutOff(std::chrono::seconds bound) {
  const auto deadline = Clock::now() + bound;
  while (!cut_off_.load() && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return cut_off_.load();
}

}  // namespace crmstream::http::testing
