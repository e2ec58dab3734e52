// OutputFeed: the dashboard's Kafka reader. One thread consumes the engine's
// output topics in a consumer group of its own and applies every record to a
// DashboardView. It never commits offsets: each dashboard process is a fresh
// reader that rebuilds its picture from what the topics retain (or from the
// newest records, with offset_reset = "latest").
//
// It survives the broker going away: librdkafka reconnects by itself, and
// when nothing has arrived for a while the feed asks its ClientConfigSource
// again (e.g. re-reads a broker address file that a restarted
// `crmstream broker` rewrote) and recreates the consumer if the address
// changed.
//
// Thread-safety: Start/Stop from one owning thread; the work happens on the
// feed's own thread; counters and latest() may be read from any thread.
#pragma once

#include <array>
#include <atomic>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "crmstream/common/status.h"
#include "crmstream/config/engine_config.h"
#include "crmstream/dashboard/dashboard_view.h"
#include "crmstream/kafka/client_config.h"

namespace crmstream::dashboard {

// Returns the client properties to connect with (bootstrap.servers, security).
using ClientConfigSource = std::function<Result<kafka::ClientConfig>()>;

struct OutputFeedOptions {
  std::string group_id = "crmstream-dashboard";
  // Topic name per OutputKind, in enum order (config::OutputTopics::Names()).
  std::array<std::string, kOutputKindCount> topics = config::OutputTopics{}.Names();
  std::string offset_reset = "earliest";  // where a fresh reader starts: earliest | latest
  int poll_timeout_ms = 200;              // one consumer poll, ms
  int reconnect_after_ms = 5000;          // silence before re-asking the source, ms
};

class OutputFeed {
 public:
  OutputFeed(ClientConfigSource source, OutputFeedOptions options, DashboardView* view);
  ~OutputFeed();
  OutputFeed(const OutputFeed&) = delete;
  OutputFeed& operator=(const OutputFeed&) = delete;

  void Start();
  // Leaves the group and joins the thread. Idempotent.
  void Stop();

  uint64_t records() const { return records_.load(std::memory_order_relaxed); }
  uint64_t reconnects() const { return reconnects_.load(std::memory_order_relaxed); }
  // The value of the newest record read from the kind's topic ("" before
  // the first): the main job's status line samples it, so the job reads its
  // outputs back once, not once per display.
  std::string latest(OutputKind kind) const;

 private:
  void Loop();

  ClientConfigSource source_;
  OutputFeedOptions options_;
  DashboardView* view_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> records_{0};
  std::atomic<uint64_t> reconnects_{0};
  mutable std::mutex latest_mu_;  // a few reads a second
  std::array<std::string, kOutputKindCount> latest_;
  std::thread thread_;
};

}  // namespace crmstream::dashboard
