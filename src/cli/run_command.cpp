// `crmstream run`: the engine. With no bootstrap.servers it starts the
// embedded Kafka cluster in-process. With --demo it is the main job: the
// embedded broker, the generator feeding the input topic, the engine, an
// independent reader of the output topics with a live status line, and the
// web dashboard (its own consumer group on the output topics).
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <thread>

#include "cli_support.h"
#include "cluster_topics.h"
#include "commands.h"
#include "crmstream/admin/admin_server.h"
#include "crmstream/common/process_memory.h"
#include "crmstream/dashboard/dashboard_server.h"
#include "crmstream/dashboard/output_feed.h"
#include "crmstream/http/access_policy.h"
#include "crmstream/kafka/producer.h"
#include "crmstream/runtime/kafka_wiring.h"
#include "crmstream/runtime/stream_engine.h"
#include "crmstream/state/state_store.h"
#include "embedded_broker.h"
#include "generator_runner.h"

namespace crmstream::cli {
namespace {

struct RunOptions {
  KafkaCliOptions kafka;
  std::string pipeline;  // overrides the config's
  bool demo = false;
  double demo_rate = 5000;
  // Simulated days the generator produces at full speed before running
  // live, so that the churn model has matured labels (and its alert gate can
  // open) within seconds of the start.
  double backfill_days = 200;
  int demo_customers =
      2000;  // small enough that 30 simulated days (the churn horizon) pass in about a minute
  double duration = 0;    // seconds; 0: until Ctrl-C
  int metrics_port = -1;  // overrides the config's metrics_port when >= 0
  bool until_caught_up = false;
  std::string guarantee;  // overrides the config's processing.guarantee
  bool accept_config_change = false;
  int threads = -1;  // overrides the config's worker_threads when >= 0
};

using pipeline::OutputKind;

// One status line: what came in, what went out, how far behind; with the
// main job's dashboard, also what its feed read back from the output topics
// (what really arrived there, not what the engine believes it sent).
void PrintStatus(const runtime::EngineStats& s, uint64_t* last_received, double seconds,
                 const dashboard::DashboardView* view, uint64_t generated) {
  const uint64_t received = s.received.load();
  const double rate = seconds > 0 ? static_cast<double>(received - *last_received) / seconds : 0;
  *last_received = received;
  char line[512];
  int n = std::snprintf(line, sizeof(line),
                        "%9.0f ev/s | in %llu (dup %llu, dead-letter %llu) | lag %lld | "
                        "partitions %d | out %llu",
                        rate, static_cast<unsigned long long>(received),
                        static_cast<unsigned long long>(s.duplicates.load()),
                        static_cast<unsigned long long>(s.rejected.load()),
                        static_cast<long long>(s.lag.load()), s.partitions.load(),
                        static_cast<unsigned long long>(s.delivered.load()));
  if (view) {
    const auto read_back = view->RecordCounts();
    auto count = [&read_back](OutputKind kind) {
      return static_cast<unsigned long long>(read_back[static_cast<size_t>(kind)]);
    };
    std::snprintf(line + n, sizeof(line) - static_cast<size_t>(n),
                  " | generated %llu | on topics: scores %llu, dead-letter %llu",
                  static_cast<unsigned long long>(generated), count(OutputKind::kCustomerScores),
                  count(OutputKind::kDeadLetter));
  }
  std::fprintf(stderr, "%s\n", line);
}

int RunEngine(const RunOptions& o) {
  InstallStopHandlers();
  auto cfg = o.kafka.Load();
  if (!cfg.ok()) return Fail("run", cfg.status());
  if (!o.pipeline.empty()) cfg->pipeline = o.pipeline;
  if (!o.guarantee.empty()) {
    cfg->guarantee = *config::ParseGuarantee(o.guarantee);  // checked by the option
  }
  cfg->accept_config_change = o.accept_config_change;
  if (o.threads >= 0) cfg->worker_threads = o.threads;
  auto spec = pipeline::LoadPipelineSpec(cfg->pipeline);
  if (!spec.ok()) return Fail("run", spec.status());
  if (o.demo) {
    // The generator's world runs its own clock, many times faster than real
    // time (months of customer life in minutes): against the wall clock its
    // events soon lie "in the future". Real inputs keep the check.
    spec->processor.decoder.max_future_skew_ms = 0;
  }
  if (o.metrics_port >= 0) cfg->metrics_port = o.metrics_port;
  admin::AdminServerOptions admin_options;
  ApplyHttpSettings(cfg->admin, &admin_options.http);
  admin_options.http.port = cfg->metrics_port;
  // A listener the servers would refuse (no token beyond loopback, a bad
  // address) is refused before anything starts or is cleaned up.
  if (auto access = http::AccessPolicy::Create(admin_options.http); !access.ok()) {
    return Fail("run", access.status());
  }
  if (o.demo) {
    http::ServerOptions dashboard_http = dashboard::DashboardServerOptions::DefaultHttpOptions();
    ApplyHttpSettings(cfg->dashboard, &dashboard_http);
    if (auto access = http::AccessPolicy::Create(dashboard_http); !access.ok()) {
      return Fail("run", access.status());
    }
  }

  std::unique_ptr<kafka::EmbeddedCluster> cluster;
  if (cfg->kafka.embedded()) {
    auto started = StartEmbeddedBroker(&cfg.value());
    if (!started.ok()) return Fail("run", started.status());
    cluster = std::move(started).value();
    // This cluster's topics are new and empty: a store checkpointed against
    // an earlier process's cluster holds offsets and state of records that
    // no longer exist. (With `crmstream broker` or a real cluster the state
    // is kept and resumed.)
    const auto store = std::filesystem::path(cfg->state_dir) / state::kStoreSubdirectory;
    std::error_code ec;
    if (std::filesystem::exists(store, ec)) {
      std::cerr << "embedded cluster: starting with empty state (removing " << store.string()
                << ", which belonged to an earlier cluster)" << std::endl;
      std::filesystem::remove_all(store, ec);
      if (ec) return Fail("run", Status::IOError(store.string() + ": " + ec.message()));
    }
  } else if (Status st = EnsureClusterTopics(*cfg, runtime::AllTopics(*cfg)); !st.ok()) {
    return Fail("run", st.WithContext("creating the configured topics"));
  }
  auto engine = runtime::StreamEngine::Create(*cfg, *spec);
  if (!engine.ok()) return Fail("run", engine.status());
  // /metrics, /healthz, /readyz and the customer API, for as long as the
  // engine lives (declared after it: stopped before it is destroyed).
  auto admin = admin::AdminServer::Start(engine->get(), *cfg, admin_options);
  if (!admin.ok()) return Fail("run", admin.status());
  std::cerr << "admin server on " << (*admin)->url()
            << " (/metrics, /healthz, /readyz, /api/customers/{id})" << std::endl;

  std::atomic<bool> stop{false};
  std::atomic<uint64_t> generated{0};
  std::thread generator_thread;
  std::unique_ptr<dashboard::DashboardView> dash_view;
  std::unique_ptr<dashboard::DashboardServer> dash_server;
  std::unique_ptr<dashboard::OutputFeed> dash_feed;
  Status generator_status;
  if (o.demo) {
    dash_view = std::make_unique<dashboard::DashboardView>();
    dashboard::DashboardServerOptions so;
    ApplyHttpSettings(cfg->dashboard, &so.http);
    so.http.port = cfg->dashboard_port;
    so.engine_port = (*admin)->port();
    so.engine_auth_token_file = cfg->admin.auth_token_file;
    auto dash = dashboard::DashboardServer::Start(so, dash_view.get());
    if (!dash.ok() && dash.status().code() == StatusCode::kIOError && so.http.port != 0) {
      // A busy port must not stop the main job: any free port will do.
      std::cerr << "dashboard: port " << so.http.port << " unavailable ("
                << dash.status().ToString() << "); using a free port" << std::endl;
      so.http.port = 0;
      dash = dashboard::DashboardServer::Start(so, dash_view.get());
    }
    if (!dash.ok()) return Fail("run", dash.status().WithContext("dashboard"));
    dash_server = std::move(dash).value();
    dashboard::OutputFeedOptions fo;
    fo.group_id = cfg->kafka.group_id + "-dashboard-" + std::to_string(getpid());
    fo.topics = cfg->outputs.Names();
    const kafka::ClientConfig dash_client = runtime::MakeClientConfig(cfg->kafka);
    dash_feed = std::make_unique<dashboard::OutputFeed>(
        [dash_client]() -> Result<kafka::ClientConfig> { return dash_client; }, fo,
        dash_view.get());
    dash_feed->Start();
    std::cerr << "dashboard: http://" << so.http.bind_address << ":" << dash_server->port() << "/"
              << std::endl;
    generator_thread = std::thread([&] {
      generator::WorldOptions world;
      world.customers = o.demo_customers;
      // 5% a month: each of the engine's partitions (a few hundred demo
      // customers) sees enough closings for its churn gate within the
      // backfill.
      world.churn_rate = 0.05;
      world.anomalies.enabled = true;
      world.malformed_rate = 0.001;
      world.duplicate_rate = 0.001;
      auto gen = generator::WorldGenerator::Create(world);
      if (!gen.ok()) {
        generator_status = gen.status();
        return;
      }
      auto producer = kafka::Producer::Create(runtime::MakeClientConfig(cfg->kafka));
      if (!producer.ok()) {
        generator_status = producer.status();
        return;
      }
      kafka::Producer* p = producer->get();
      const std::string topic = cfg->inputs.front().name;
      auto produce = [&](std::string_view key, std::string_view value) {
        Status st = p->Produce(topic, kafka::kPartitionUnassigned, key, value);
        p->Poll();
        return st;
      };
      // The backfill runs as fast as the engine consumes, no faster: the
      // embedded cluster keeps a bounded log per partition and drops the
      // oldest records beyond it (the consumer's offset then resets past
      // them), so the history would be lost rather than learned from.
      constexpr uint64_t kMaxBackfillAhead = 120'000;
      const runtime::EngineStats& engine_stats = (*engine)->stats();
      auto produce_backfill = [&](std::string_view key, std::string_view value) {
        while (generated.load(std::memory_order_relaxed) >
                   engine_stats.received.load(std::memory_order_relaxed) + kMaxBackfillAhead &&
               !stop.load(std::memory_order_relaxed)) {
          p->Poll();
          std::this_thread::sleep_for(std::chrono::milliseconds(2));
        }
        return produce(key, value);
      };
      GeneratorPace backfill;
      backfill.until_event_ms =
          world.start_ms + static_cast<int64_t>(o.backfill_days * generator::kMillisPerDay);
      Result<uint64_t> n = o.backfill_days > 0 ? RunGenerator(gen->get(), backfill,
                                                              produce_backfill, stop, &generated)
                                               : Result<uint64_t>(uint64_t{0});
      if (n.ok()) {
        GeneratorPace pace;
        pace.events_per_second = o.demo_rate;
        n = RunGenerator(gen->get(), pace, produce, stop, &generated);
      }
      if (!n.ok()) generator_status = n.status();
      (void)p->Flush(std::chrono::seconds(10));
    });
    std::cerr << "main job: " << o.backfill_days
              << " simulated days of history at full speed, then " << o.demo_rate
              << " events/s for " << o.demo_customers << " customers into "
              << cfg->inputs.front().name << "; Ctrl-C to stop" << std::endl;
  }

  // The supervisor thread: status line, sample outputs, Ctrl-C and --duration;
  // then the stop's watchdog.
  std::atomic<bool> engine_returned{false};
  std::thread supervisor([&] {
    using Clock = std::chrono::steady_clock;
    const auto start = Clock::now();
    auto last = start;
    uint64_t last_received = 0;
    int ticks = 0;
    while (!StopRequested().load()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      const auto now = Clock::now();
      if (o.duration > 0 && std::chrono::duration<double>(now - start).count() >= o.duration) break;
      if (cfg->status_interval_ms > 0 &&
          now - last >= std::chrono::milliseconds(cfg->status_interval_ms)) {
        PrintStatus((*engine)->stats(), &last_received,
                    std::chrono::duration<double>(now - last).count(), dash_view.get(),
                    generated.load());
        last = now;
        if (dash_feed && ++ticks % 5 == 1) {
          for (auto kind : {OutputKind::kCustomerScores, OutputKind::kDeadLetter}) {
            std::string sample = dash_feed->latest(kind);
            if (sample.size() > 400) sample = sample.substr(0, 400) + "...";
            if (!sample.empty()) {
              std::fprintf(stderr, "  latest on %s: %s\n",
                           std::string(pipeline::OutputKindName(kind)).c_str(), sample.c_str());
            }
          }
        }
      }
    }
    stop.store(true);
    // The engine bounds its own drain (shutdown_timeout_ms); this bounds the
    // rest (a disk or broker call that never returns), so a stop always stops.
    const auto stop_requested = Clock::now();
    const auto bound =
        std::chrono::milliseconds(cfg->shutdown_timeout_ms) + std::chrono::seconds(15);
    while (!engine_returned.load()) {
      if (Clock::now() - stop_requested > bound) {
        std::fprintf(stderr,
                     "crmstream: the engine did not stop within %lld ms of the stop request; "
                     "exiting without a final checkpoint (the state resumes from the last "
                     "checkpoint)\n",
                     static_cast<long long>(
                         std::chrono::duration_cast<std::chrono::milliseconds>(bound).count()));
        std::fflush(stderr);
        std::_Exit(3);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  });

  runtime::RunOptions run_options;
  run_options.until_caught_up = o.until_caught_up;
  // The C library's free pages go back to the kernel as the resident set
  // nears the cap (the plan's parts count what is in use, not what malloc
  // holds free between them).
  const auto cap_bytes = static_cast<int64_t>((*engine)->memory_plan().cap_bytes);
  const ResidentTrimmer trimmer(cap_bytes - cap_bytes / 8);
  Status st = (*engine)->Run(stop, run_options);
  engine_returned.store(true);
  stop.store(true);
  StopRequested().store(true);
  supervisor.join();
  if (generator_thread.joinable()) generator_thread.join();
  if (dash_server) dash_server->Stop();
  if (dash_feed) dash_feed->Stop();
  const auto& s = (*engine)->stats();
  std::fprintf(
      stderr,
      "stopped: %llu records in, %llu duplicates, %llu dead letters, %llu outputs "
      "delivered, %llu already delivered before a restart; peak resident set %lld KiB "
      "(state.memory_cap_mb %zu MiB; %llu trims of the heap gave %llu MiB back); %llu "
      "checkpoints, %llu of them early for memory (the customer cache or the checkpoint budget)\n",
      static_cast<unsigned long long>(s.received.load()),
      static_cast<unsigned long long>(s.duplicates.load()),
      static_cast<unsigned long long>(s.rejected.load()),
      static_cast<unsigned long long>(s.delivered.load()),
      static_cast<unsigned long long>(s.suppressed_outputs.load()),
      static_cast<long long>(PeakResidentBytes() / 1024), (*engine)->memory_plan().cap_bytes >> 20,
      static_cast<unsigned long long>(ResidentTrimmer::trims()),
      static_cast<unsigned long long>(ResidentTrimmer::trimmed_bytes() >> 20),
      static_cast<unsigned long long>(s.checkpoints.load()),
      static_cast<unsigned long long>(s.memory_checkpoints.load()));
  if (!generator_status.ok()) return Fail("run", generator_status.WithContext("generator"));
  if (!st.ok()) return Fail("run", st);
  return 0;
}

}  // namespace

void AddRunCommand(CLI::App* app, int* exit_code) {
  auto* cmd = app->add_subcommand(
      "run", "Run the engine (starts an embedded Kafka when no bootstrap.servers is configured)");
  auto o = std::make_shared<RunOptions>();
  o->kafka.AddTo(cmd);
  cmd->add_option("-p,--pipeline", o->pipeline, "Pipeline definition (default: the config's)");
  cmd->add_flag("--demo", o->demo,
                "The main job: also run the generator into the input topic, read the "
                "output topics back and serve the web dashboard");
  cmd->add_option("--rate", o->demo_rate, "With --demo: events per second")->capture_default_str();
  cmd->add_option("--customers", o->demo_customers, "With --demo: customers")
      ->capture_default_str();
  cmd->add_option("--backfill-days", o->backfill_days,
                  "With --demo: simulated days generated at full speed before the live rate, so "
                  "the churn model has validated itself when the dashboard opens")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 3650.0));
  cmd->add_option("--duration", o->duration, "Stop after this many seconds (0: until Ctrl-C)");
  cmd->add_option("--metrics-port", o->metrics_port,
                  "Port of the admin server (/metrics, /healthz, ...) on admin.bind_address; 0 "
                  "picks a free one (default: the config's metrics_port)");
  cmd->add_flag("--until-caught-up", o->until_caught_up,
                "Stop once every input partition is processed to its end and checkpointed");
  cmd->add_option("--guarantee", o->guarantee,
                  "at_least_once, exactly_once (transactions where the cluster has them), "
                  "exactly_once_transactions or exactly_once_stamped (default: the config's "
                  "processing.guarantee)")
      ->check(CLI::IsMember(
          {"at_least_once", "exactly_once", "exactly_once_transactions", "exactly_once_stamped"}));
  cmd->add_option("--threads", o->threads,
                  "Threads processing the partitions (at_least_once; 0: one per core, at most "
                  "one per partition; default: the config's worker_threads)")
      ->check(CLI::Range(0, 1024));
  cmd->add_flag("--accept-config-change", o->accept_config_change,
                "exactly_once: start although what shapes the outputs (thresholds, emit flags, "
                "commit_interval_ms, the pipeline) changed since the state was written");
  cmd->callback([=] { *exit_code = RunEngine(*o); });
}

}  // namespace crmstream::cli
