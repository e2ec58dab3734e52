// `crmstream dashboard`: the live web dashboard. Reads the engine's output
// topics in a consumer group of its own and serves the page, its live stream
// and the customer lookup on loopback (docs/dashboard.md).
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <iostream>
#include <thread>

#include "cli_support.h"
#include "commands.h"
#include "crmstream/dashboard/dashboard_server.h"
#include "crmstream/dashboard/output_feed.h"
#include "crmstream/runtime/kafka_wiring.h"

namespace crmstream::cli {
namespace {

struct DashboardOptions {
  KafkaCliOptions kafka;
  int port = -1;       // -1: the config's dashboard_port
  std::string bind;    // overrides the config's dashboard.bind_address
  std::string engine;  // host:port of the engine's admin server; default 127.0.0.1:<metrics_port>
  std::string offset_reset = "earliest";
  size_t max_alerts = 50;
  size_t max_customers = 1'000'000;
  double duration = 0;  // seconds; 0: until Ctrl-C
};

// The broker address, looked up again on every reconnect: a restarted
// `crmstream broker` writes a new address into its file.
Result<kafka::ClientConfig> ConnectTo(const KafkaCliOptions& options) {
  CRM_ASSIGN_OR_RETURN(config::EngineConfig cfg, options.Load());
  if (cfg.kafka.embedded()) {
    const auto addr_file = std::filesystem::path(cfg.state_dir) / "broker.addr";
    KafkaCliOptions with_file = options;
    with_file.broker_file = addr_file.string();
    if (!std::filesystem::exists(addr_file)) {
      return Status::NotFound(
          "no broker: give -b/--broker-file, or start `crmstream broker` or "
          "`crmstream run` (which write " +
          addr_file.string() + ")");
    }
    CRM_ASSIGN_OR_RETURN(cfg, with_file.Load());
  }
  return runtime::MakeClientConfig(cfg.kafka);
}

int RunDashboard(const DashboardOptions& o) {
  InstallStopHandlers();
  auto cfg = o.kafka.Load();
  if (!cfg.ok()) return Fail("dashboard", cfg.status());

  dashboard::DashboardViewOptions view_options;
  view_options.max_alerts = o.max_alerts;
  view_options.max_customers = o.max_customers;
  dashboard::DashboardView view(view_options);

  dashboard::DashboardServerOptions server_options;
  ApplyHttpSettings(cfg->dashboard, &server_options.http);
  if (!o.bind.empty()) server_options.http.bind_address = o.bind;
  server_options.http.port = o.port >= 0 ? o.port : cfg->dashboard_port;
  server_options.engine_port = cfg->metrics_port;
  server_options.engine_auth_token_file = cfg->admin.auth_token_file;
  if (!o.engine.empty()) {
    const auto colon = o.engine.rfind(':');
    if (colon == std::string::npos || colon == 0) {
      return Fail("dashboard",
                  Status::InvalidArgument("--engine " + o.engine + ": expected host:port"));
    }
    server_options.engine_host = o.engine.substr(0, colon);
    try {
      server_options.engine_port = std::stoi(o.engine.substr(colon + 1));
    } catch (const std::exception&) {
      return Fail("dashboard", Status::InvalidArgument("--engine " + o.engine + ": bad port"));
    }
  }
  auto server = dashboard::DashboardServer::Start(server_options, &view);
  if (!server.ok()) return Fail("dashboard", server.status());

  dashboard::OutputFeedOptions feed_options;
  feed_options.group_id = cfg->kafka.group_id + "-dashboard-" + std::to_string(getpid());
  feed_options.topics = cfg->outputs.Names();
  feed_options.offset_reset = o.offset_reset;
  const KafkaCliOptions kafka_options = o.kafka;
  dashboard::OutputFeed feed([kafka_options] { return ConnectTo(kafka_options); }, feed_options,
                             &view);
  feed.Start();

  std::cout << "dashboard on http://" << server_options.http.bind_address << ":"
            << (*server)->port() << "/  (engine admin " << server_options.engine_host << ":"
            << server_options.engine_port << "); Ctrl-C to stop" << std::endl;
  const auto start = std::chrono::steady_clock::now();
  while (!StopRequested().load()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (o.duration > 0 &&
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() >=
            o.duration) {
      break;
    }
  }
  (*server)->Stop();
  feed.Stop();
  std::cout << "dashboard stopped after " << feed.records() << " records" << std::endl;
  return 0;
}

}  // namespace

void AddDashboardCommand(CLI::App* app, int* exit_code) {
  auto* cmd = app->add_subcommand(
      "dashboard", "Serve the live web dashboard of the output topics (loopback by default)");
  auto o = std::make_shared<DashboardOptions>();
  o->kafka.AddTo(cmd);
  cmd->add_option("--port", o->port, "HTTP port (default: the config's dashboard_port, 8080)");
  cmd->add_option("--bind", o->bind,
                  "Address to listen on (default: the config's dashboard.bind_address, 127.0.0.1; "
                  "beyond loopback dashboard.auth_token_file is required)");
  cmd->add_option("--engine", o->engine,
                  "host:port of the engine's admin server (default: 127.0.0.1:<metrics_port>)");
  cmd->add_option("--offset-reset", o->offset_reset,
                  "Where to start reading the output topics: earliest (rebuild from what the "
                  "topics retain) or latest")
      ->check(CLI::IsMember({"earliest", "latest"}))
      ->capture_default_str();
  cmd->add_option("--max-alerts", o->max_alerts, "Alerts kept for the feed")->capture_default_str();
  cmd->add_option("--max-customers", o->max_customers, "Customers whose latest churn risk is kept")
      ->capture_default_str();
  cmd->add_option("--duration", o->duration, "Stop after this many seconds (0: until Ctrl-C)");
  cmd->callback([=] { *exit_code = RunDashboard(*o); });
}

}  // namespace crmstream::cli
