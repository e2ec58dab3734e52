// DashboardServer: the dashboard's routes on the shared HTTP core
// (http/server.h: connection cap, timeouts, Host allowlist, a token beyond
// loopback), on loopback by default. Every response carries a Content
// Security Policy that allows the page's own scripts, styles and API only.
//
//   GET /, /index.html, /app.js, /app.css   the bundled page (WebAsset table)
//   GET /api/state                          the DashboardView snapshot (JSON)
//   GET /api/events                         server-sent events: the snapshot, ~1 Hz
//   GET /api/customers/{id}                 forwarded to the engine's admin server;
//                                           its answer, 404 JSON for unknown ids,
//                                           503 JSON when the engine does not answer
//   GET /healthz                            "ok" (served without the token)
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
#include "crmstream/http/server.h"

namespace crmstream::dashboard {

struct DashboardServerOptions {
  // The listener: loopback, port 8080 (0: any free port, see
  // DashboardServer::port()), config section "dashboard", /healthz public,
  // the page's CSP; the other defaults are the core's.
  http::ServerOptions http = DefaultHttpOptions();
  std::string engine_host = "127.0.0.1";  // the engine's admin server (/metrics, /api/customers)
  int engine_port = 9464;
  // The admin server's token file (admin.auth_token_file), sent as a bearer
  // token to the engine; empty: none.
  std::string engine_auth_token_file;
  int engine_timeout_ms = 2000;   // connect + answer, per request to the engine
  int push_interval_ms = 1000;    // snapshot period of /api/events, ms
  int scrape_interval_ms = 1000;  // /metrics period, ms
  EngineMetricNames metric_names;
  // The page; defaults to the bundle compiled into the binary.
  std::span<const WebAsset> assets = BundledWebAssets();

  static http::ServerOptions DefaultHttpOptions();
};

class DashboardServer {
 public:
  // Binds and starts serving on a thread of its own. `view` must outlive the server.
  static Result<std::unique_ptr<DashboardServer>> Start(const DashboardServerOptions& options,
                                                        DashboardView* view);
  ~DashboardServer();
  DashboardServer(const DashboardServer&) = delete;
  DashboardServer& operator=(const DashboardServer&) = delete;

  // The bound port (useful with options.http.port = 0).
  int port() const;
  http::ServerStats connection_stats() const;
  // Stops serving and joins the thread. Idempotent.
  void Stop();

  struct Impl;

 private:
  explicit DashboardServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace crmstream::dashboard
