// A real Prometheus server (Debian's `prometheus`) on loopback scrapes a
// running engine every second while the generator feeds it; the test asks
// Prometheus' HTTP API for the engine's series, as an operator's dashboard
// would, and checks their values against what the engine did.
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <simdjson.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include "admin/engine_fixture.h"
#include "crmstream/generator/world_generator.h"
#include "crmstream/kafka/producer.h"
#include "crmstream/runtime/kafka_wiring.h"

extern char** environ;

namespace crmstream::admin {
namespace {

using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

std::optional<fs::path> FindPrometheus() {
  if (const char* env = std::getenv("CRMSTREAM_PROMETHEUS")) return fs::path(env);
  const char* path = std::getenv("PATH");
  std::stringstream ss(path ? path : "");
  std::vector<std::string> dirs;
  for (std::string d; std::getline(ss, d, ':');) dirs.push_back(d);
  dirs.push_back("/usr/bin");
  for (const auto& d : dirs) {
    fs::path p = fs::path(d) / "prometheus";
    if (!d.empty() && access(p.c_str(), X_OK) == 0) return p;
  }
  return std::nullopt;
}

// A port nothing listens on right now (the kernel's pick for port 0).
int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
  socklen_t len = sizeof(addr);
  REQUIRE(getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
  close(fd);
  return ntohs(addr.sin_port);
}

// The Prometheus server: started with a temporary config and storage,
// terminated (then killed if it lingers) when the test ends, whatever way.
class PrometheusProcess {
 public:
  PrometheusProcess(const fs::path& binary, const fs::path& dir, int port, int engine_port)
      : port_(port), log_(dir / "prometheus.log") {
    const fs::path config = dir / "prometheus.yml";
    std::ofstream(config) << "global:\n"
                             "  scrape_interval: 1s\n"
                             "  evaluation_interval: 1s\n"
                             "scrape_configs:\n"
                             "  - job_name: crmstream\n"
                             "    scrape_interval: 1s\n"
                             "    scrape_timeout: 900ms\n"
                             "    static_configs:\n"
                             "      - targets: ['127.0.0.1:"
                          << engine_port << "']\n";
    std::vector<std::string> args = {binary.string(), "--config.file=" + config.string(),
                                     "--storage.tsdb.path=" + (dir / "data").string(),
                                     "--web.listen-address=127.0.0.1:" + std::to_string(port),
                                     "--log.level=warn"};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
    const int rc = posix_spawn(&pid_, binary.c_str(), &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) pid_ = -1;
  }
  ~PrometheusProcess() {
    if (pid_ <= 0) return;
    kill(pid_, SIGTERM);
    for (int i = 0; i < 100; ++i) {  // up to 10 s for a clean shutdown
      if (waitpid(pid_, nullptr, WNOHANG) == pid_) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  bool started() const { return pid_ > 0; }
  int port() const { return port_; }
  std::string log() const {
    std::ifstream in(log_);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

 private:
  pid_t pid_ = -1;
  int port_;
  fs::path log_;
};

std::string UrlEncode(std::string_view s) {
  static const char* kHex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '_' || c == '-' || c == '.') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

// An instant query: each result series' labels (as "k=v,...") and value;
// empty when the query fails or has no result.
std::map<std::string, double> Query(int port, const std::string& promql) {
  std::map<std::string, double> out;
  auto res = testing::HttpGet(port, "/api/v1/query?query=" + UrlEncode(promql));
  if (res.status != 200) return out;
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  if (parser.parse(res.body).get(doc) != simdjson::SUCCESS) return out;
  if (std::string_view(doc["status"]) != "success") return out;
  for (simdjson::dom::element r : doc["data"]["result"].get_array()) {
    std::string labels;
    for (auto [key, value] : r["metric"].get_object()) {
      labels += std::string(key) + "=" + std::string(std::string_view(value)) + ",";
    }
    out[labels] = std::stod(std::string(std::string_view(r["value"].at(1))));
  }
  return out;
}

double Single(const std::map<std::string, double>& r) {
  return r.size() == 1 ? r.begin()->second : std::nan("");
}

// Polls `promql` until `ok(result)` or the deadline; returns the last result.
template <typename Ok>
std::map<std::string, double> QueryUntil(int port, const std::string& promql, Ok ok,
                                         std::chrono::seconds deadline) {
  const auto end = Clock::now() + deadline;
  std::map<std::string, double> r = Query(port, promql);
  while (!ok(r) && Clock::now() < end) {
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
    r = Query(port, promql);
  }
  return r;
}

TEST_CASE("Prometheus scrapes the running engine and finds its series",
          "[monitoring][integration]") {
  const auto binary = FindPrometheus();
  if (!binary) {
    FAIL(
        "the prometheus server is not installed (Debian package `prometheus`, "
        "scripts/install-deps.sh); set CRMSTREAM_PROMETHEUS to its path");
  }
  crmstream::testing::ScratchDir dir;
  testing::RunningEngine e(3);
  REQUIRE(e.WaitForReady());

  // The generator feeds the input topic at a steady pace until the end.
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> produced{0};
  std::thread feeder([&] {
    generator::WorldOptions world;
    world.customers = 500;
    world.malformed_rate = 0.01;
    auto gen = generator::WorldGenerator::Create(world);
    auto producer = kafka::Producer::Create(runtime::MakeClientConfig(e.config().kafka));
    if (!gen.ok() || !producer.ok()) return;
    std::string key, value;
    const auto end = Clock::now() + std::chrono::seconds(120);
    while (!stop.load() && Clock::now() < end) {
      for (int i = 0; i < 50; ++i) {
        (*gen)->Next(&key, &value);
        if ((*producer)
                ->Produce("crm.interactions", kafka::kPartitionUnassigned, key, value)
                .ok()) {
          produced.fetch_add(1);
        }
      }
      (*producer)->Poll();
      std::this_thread::sleep_for(std::chrono::milliseconds(25));  // about 2000 events/s
    }
    (void)(*producer)->Flush(std::chrono::seconds(10));
  });
  struct StopFeeder {
    std::atomic<bool>& stop;
    std::thread& t;
    ~StopFeeder() {
      stop.store(true);
      if (t.joinable()) t.join();
    }
  } stop_feeder{stop, feeder};

  PrometheusProcess prometheus(*binary, dir.path(), FreePort(), e.port());
  REQUIRE(prometheus.started());
  const int port = prometheus.port();
  INFO("prometheus log:\n" << prometheus.log());

  // Prometheus is up and has scraped the engine successfully.
  auto up = QueryUntil(
      port, R"(up{job="crmstream"})", [](const auto& r) { return Single(r) == 1; },
      std::chrono::seconds(60));
  REQUIRE(Single(up) == 1);

  // Events consumed: positive, and increasing from one scrape to a later one.
  auto consumed = QueryUntil(
      port, R"(sum(crmstream_events_consumed_total{job="crmstream"}))",
      [](const auto& r) { return Single(r) > 0; }, std::chrono::seconds(30));
  const double first = Single(consumed);
  REQUIRE(first > 0);
  auto later = QueryUntil(
      port, R"(sum(crmstream_events_consumed_total{job="crmstream"}))",
      [&](const auto& r) { return Single(r) > first; }, std::chrono::seconds(30));
  CHECK(Single(later) > first);
  // What Prometheus saw never exceeds what the engine counted since.
  CHECK(Single(later) <= static_cast<double>(e.engine().stats().accepted.load()));

  // One lag series per assigned partition, each a sane record count.
  auto lag = QueryUntil(
      port, R"(crmstream_consumer_lag_records{job="crmstream"})",
      [](const auto& r) { return r.size() == 3; }, std::chrono::seconds(30));
  CHECK(lag.size() == 3);
  for (const auto& [labels, value] : lag) {
    INFO(labels);
    CHECK(labels.find("topic=crm.interactions") != std::string::npos);
    CHECK(value >= 0);
    CHECK(value <= static_cast<double>(produced.load()));
  }
  CHECK(Single(Query(port, R"(crmstream_assigned_partitions{job="crmstream"})")) == 3);
  CHECK(Single(Query(port, R"(crmstream_engine_ready{job="crmstream"})")) == 1);
  // The generator's malformed records were counted as dead letters.
  auto dead = QueryUntil(
      port, R"(crmstream_dead_letters_total{job="crmstream"})",
      [](const auto& r) { return Single(r) > 0; }, std::chrono::seconds(30));
  CHECK(Single(dead) > 0);
  // A rate over the histogram works as a dashboard would use it.
  auto p99 = QueryUntil(
      port,
      "histogram_quantile(0.99, sum by (le) "
      "(rate(crmstream_batch_processing_duration_seconds_bucket{job=\"crmstream\"}[5s])))",
      [](const auto& r) { return Single(r) > 0; }, std::chrono::seconds(30));
  CHECK(Single(p99) > 0);
  CHECK(Single(p99) < 5.0);
}

}  // namespace
}  // namespace crmstream::admin
