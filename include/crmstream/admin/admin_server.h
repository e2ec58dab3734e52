// The engine's admin HTTP server, on loopback by default:
//   GET /metrics              Prometheus text format 0.0.4 (EngineMetrics)
//   GET /healthz              200 while the engine loop runs and is not stalled,
//                             else 503; JSON {"status", "reason"}
//   GET /readyz               200 once partitions are assigned and state is
//                             restored, else 503; same JSON
//   GET /api/customers/{id}   the customer's current features and scores as
//                             JSON (the crm.customer-scores record); 404 with
//                             a JSON error for an unknown id
//   GET /api/customers/{id}/recommendations  the customer's top items not
//                             yet bought, with the items that explain each
//                             (the crm.recommendations record layout); 404
//                             likewise. /api/recommendations/{id} answers
//                             the same (the earlier path).
//   GET /api/associations?item=X   the co-purchase rules X -> Y of the
//                             window (up to 20, by confidence) as a
//                             crm.associations record with "item" and
//                             "partitions"; 404 for an item of no basket
//
// Why not prometheus-cpp's pull Exposer: its civetweb server serves only
// the registered metrics paths, and the probes and the customer API must
// live on the same port. Boost.Beast (header-only, Boost 1.74) serves all
// four; prometheus-cpp's core still builds and serialises the metrics.
//
// Threading: the shared HTTP core (http/server.h) runs every connection on
// one server thread, with its defences (connection cap, timeouts, Host
// allowlist, a token beyond loopback); nothing it does waits for the engine
// thread. A customer read is queued to the engine
// (runtime::CustomerQueries::Submit) and polled on a timer, answering 503 if
// the engine does not reply within query_timeout. Start/Stop/port are called
// from the owning thread.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "crmstream/admin/engine_metrics.h"
#include "crmstream/common/status.h"
#include "crmstream/config/engine_config.h"
#include "crmstream/http/server.h"
#include "crmstream/runtime/stream_engine.h"

namespace crmstream::admin {

struct AdminServerOptions {
  // The listener: loopback, port 9464 (EngineConfig::metrics_port's
  // default; 0 picks a free one), config section "admin", /healthz and
  // /readyz served without the token; the other defaults are the core's.
  http::ServerOptions http = DefaultHttpOptions();
  // The engine counts as stalled (healthz 503) after this long without a
  // loop iteration. A flush may legitimately wait 30 s for the brokers.
  // Default 60 s.
  std::chrono::milliseconds stall_after{60000};
  // How long a customer read waits for the engine thread. Default 2 s.
  std::chrono::milliseconds query_timeout{2000};

  static http::ServerOptions DefaultHttpOptions();
};

class AdminServer {
 public:
  // Binds and starts serving. `engine` must outlive the server. IOError
  // naming the address when the port cannot be bound; InvalidArgument
  // naming the admin.* field for a bad address or a missing token.
  static Result<std::unique_ptr<AdminServer>> Start(runtime::StreamEngine* engine,
                                                    const config::EngineConfig& config,
                                                    const AdminServerOptions& options);
  ~AdminServer();  // Stop()
  AdminServer(const AdminServer&) = delete;
  AdminServer& operator=(const AdminServer&) = delete;

  // Closes the listener and every connection, joins the server thread.
  // Idempotent.
  void Stop();
  // The bound port (the actual one when options.port was 0).
  int port() const;
  // "http://<address>:<port>".
  std::string url() const;
  const EngineMetrics& metrics() const;
  http::ServerStats connection_stats() const;

  struct Impl;  // the server's state, shared with its connections (admin_server.cpp)

 private:
  explicit AdminServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace crmstream::admin
