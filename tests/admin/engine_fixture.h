// Test fixtures for the admin server and the monitoring tests: a blocking
// HTTP GET on loopback, and a running engine (embedded cluster, engine
// thread, admin server on a free port) that tests feed with records.
//
// Thread-safety: test code; the fixture's engine runs on its own thread.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "crmstream/admin/admin_server.h"
#include "crmstream/config/engine_config.h"
#include "crmstream/kafka/embedded_cluster.h"
#include "crmstream/kafka/producer.h"
#include "crmstream/pipeline/pipeline_spec.h"
#include "crmstream/runtime/stream_engine.h"
#include "support/test_support.h"

namespace crmstream::admin::testing {

struct HttpResponse {
  int status = 0;  // 0: no response (connection failed)
  std::string content_type;
  std::string body;
};

// GET http://127.0.0.1:<port><target>, one connection, bounded by `timeout`.
HttpResponse HttpGet(int port, const std::string& target,
                     std::chrono::milliseconds timeout = std::chrono::seconds(10));

// The value of the sample `series` (e.g. `crmstream_dead_letters_total` or
// `crmstream_events_consumed_total{type="purchase"}`, exactly as exposed) in
// a Prometheus text exposition; NaN when absent.
double SampleValue(const std::string& exposition, const std::string& series);

// Runs a command through /bin/sh with `input` on its stdin; returns its exit
// status and, in *output, its stdout and stderr.
int RunWithInput(const std::string& command, const std::string& input, std::string* output);

class RunningEngine {
 public:
  // Starts the embedded cluster (input topic with `input_partitions`), the
  // engine on its own thread and the admin server on a free port, with
  // `tweak` applied to its options.
  // `pipeline_tweak` changes the pipeline (default: the built-in defaults).
  explicit RunningEngine(int input_partitions = 2,
                         const std::function<void(AdminServerOptions*)>& tweak = {},
                         const std::function<void(pipeline::PipelineSpec*)>& pipeline_tweak = {});
  ~RunningEngine();  // Stop()

  // Produces one record to the input topic, keyed by `key`, and flushes.
  void Produce(const std::string& key, const std::string& value);
  void Flush();
  // Waits (bounded) until the engine has received `n` records in total.
  bool WaitForReceived(uint64_t n, std::chrono::seconds deadline = std::chrono::seconds(60));
  // Waits (bounded) until the engine has partitions and its loop runs.
  bool WaitForReady(std::chrono::seconds deadline = std::chrono::seconds(60));
  // Stops the engine loop (the admin server keeps serving).
  Status StopEngine();

  runtime::StreamEngine& engine() { return *engine_; }
  AdminServer& server() { return *server_; }
  const config::EngineConfig& config() const { return config_; }
  int port() const { return server_->port(); }

 private:
  crmstream::testing::ScratchDir dir_;
  std::unique_ptr<kafka::EmbeddedCluster> cluster_;
  config::EngineConfig config_;
  std::unique_ptr<kafka::Producer> producer_;
  std::unique_ptr<runtime::StreamEngine> engine_;
  std::unique_ptr<AdminServer> server_;
  std::atomic<bool> stop_{false};
  Status run_status_;
  std::thread runner_;
};

}  // namespace crmstream::admin::testing
