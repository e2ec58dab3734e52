// DashboardServer: the dashboard's HTTP server (Boost.Beast on Asio, one I/O
// thread running C++20 coroutines), on loopback by default.
//
//   GET /, /index.html, /app.js, /app.css   the bundled page (WebAsset table)
//   GET /api/state                          the DashboardView snapshot (JSON)
//   GET /api/events                         server-sent events: the snapshot, ~1 Hz
//   GET /api/customers/{id}                 forwarded to the engine's admin server;
//                                           its answer, 404 JSON for unknown ids,
//                                           503 JSON when the engine does not answer
//   GET /healthz                            "ok"
//
// It also scrapes the engine's /metrics once a second for throughput and lag
// (tolerating its absence) and records an EngineSample in the view.
//
// Thread-safety: Start and Stop are called from one owning thread; requests
// are served on the server's own thread, which only touches the view through
// its thread-safe methods, so the Kafka reader and the server never wait on
// each other beyond the view's short critical sections.
#pragma once

#include <cstddef>
#include <memory>
#include <span>
#include <string>

#include "crmstream/common/status.h"
#include "crmstream/dashboard/dashboard_view.h"
#include "crmstream/dashboard/engine_metrics.h"
#include "crmstream/dashboard/web_assets.h"

namespace crmstream::dashboard {

struct DashboardServerOptions {
  std::string bind_address = "127.0.0.1";  // loopback: the page has no authentication
  int port = 8080;                         // 0: any free port (see DashboardServer::port())
  std::string engine_host = "127.0.0.1";   // the engine's admin server (/metrics, /api/customers)
  int engine_port = 9464;
  int engine_timeout_ms = 2000;   // connect + answer, per request to the engine
  int push_interval_ms = 1000;    // snapshot period of /api/events, ms
  int scrape_interval_ms = 1000;  // /metrics period, ms
  size_t max_connections = 64;    // concurrent HTTP connections; more are refused
  EngineMetricNames metric_names;
  // The page; defaults to the bundle compiled into the binary.
  std::span<const WebAsset> assets = BundledWebAssets();
};

class DashboardServer {
 public:
  // Binds and starts serving on a thread of its own. `view` must outlive the server.
  static Result<std::unique_ptr<DashboardServer>> Start(const DashboardServerOptions& options,
                                                        DashboardView* view);
  ~DashboardServer();
  DashboardServer(const DashboardServer&) = delete;
  DashboardServer& operator=(const DashboardServer&) = delete;

  // The bound port (useful with options.port = 0).
  int port() const;
  // Stops serving and joins the thread. Idempotent.
  void Stop();

  struct Impl;

 private:
  explicit DashboardServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace crmstream::dashboard
