#include "admin/engine_fixture.h"

#include <sys/wait.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <sstream>

#include "crmstream/pipeline/pipeline_spec.h"
#include "crmstream/runtime/kafka_wiring.h"
#include "support/require_ok.h"

namespace crmstream::admin::testing {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

HttpResponse HttpGet(int port, const std::string& target, std::chrono::milliseconds timeout) {
  HttpResponse out;
  asio::io_context ioc;
  beast::tcp_stream stream(ioc);
  beast::error_code ec;
  stream.expires_after(timeout);
  stream.async_connect(
      tcp::endpoint(asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(port)),
      [&](beast::error_code e) { ec = e; });
  ioc.run();
  if (ec) return out;
  ioc.restart();
  http::request<http::empty_body> req{http::verb::get, target, 11};
  req.set(http::field::host, "127.0.0.1");
  req.keep_alive(false);
  http::response<http::string_body> res;
  beast::flat_buffer buffer;
  http::async_write(stream, req, [&](beast::error_code e, size_t) {
    ec = e;
    if (!e) http::async_read(stream, buffer, res, [&](beast::error_code e2, size_t) { ec = e2; });
  });
  ioc.run();
  if (ec) return out;
  out.status = static_cast<int>(res.result_int());
  out.content_type = std::string(res[http::field::content_type]);
  out.body = res.body();
  return out;
}

double SampleValue(const std::string& exposition, const std::string& series) {
  std::istringstream in(exposition);
  std::string line;
  while (std::getline(in, line)) {
    if (line.size() > series.size() && line.compare(0, series.size(), series) == 0 &&
        line[series.size()] == ' ') {
      return std::stod(line.substr(series.size() + 1));
    }
  }
  return std::numeric_limits<double>::quiet_NaN();
}

int RunWithInput(const std::string& command, const std::string& input, std::string* output) {
  crmstream::testing::ScratchDir dir;
  const auto in_path = dir.path() / "stdin";
  const auto out_path = dir.path() / "stdout";
  {
    std::ofstream f(in_path);
    f << input;
  }
  const std::string full =
      command + " < '" + in_path.string() + "' > '" + out_path.string() + "' 2>&1";
  const int rc = std::system(full.c_str());
  std::ifstream f(out_path);
  std::stringstream ss;
  ss << f.rdbuf();
  *output = ss.str();
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

RunningEngine::RunningEngine(int input_partitions,
                             const std::function<void(AdminServerOptions*)>& tweak,
                             const std::function<void(pipeline::PipelineSpec*)>& pipeline_tweak) {
  auto cluster = kafka::EmbeddedCluster::Create({});
  REQUIRE_OK(cluster);
  cluster_ = std::move(cluster).value();
  config_.state_dir = dir_.path().string();
  config_.inputs = {{"crm.interactions", input_partitions}};
  config_.kafka.properties["bootstrap.servers"] = cluster_->bootstrap_servers();
  config_.commit_interval_ms = 200;
  config_.metrics_port = 0;
  for (const auto& t : runtime::AllTopics(config_)) {
    REQUIRE_OK(cluster_->CreateTopic(t.name, t.partitions));
  }
  auto producer = kafka::Producer::Create(runtime::MakeClientConfig(config_.kafka));
  REQUIRE_OK(producer);
  producer_ = std::move(producer).value();
  pipeline::PipelineSpec spec;
  if (pipeline_tweak) pipeline_tweak(&spec);
  auto engine = runtime::StreamEngine::Create(config_, spec);
  REQUIRE_OK(engine);
  engine_ = std::move(engine).value();
  AdminServerOptions options;
  options.http.port = 0;
  if (tweak) tweak(&options);
  auto server = AdminServer::Start(engine_.get(), config_, options);
  REQUIRE_OK(server);
  server_ = std::move(server).value();
  runner_ = std::thread([this] { run_status_ = engine_->Run(stop_); });
}

RunningEngine::~RunningEngine() {
  (void)StopEngine();
  if (server_) server_->Stop();
}

void RunningEngine::Produce(const std::string& key, const std::string& value) {
  REQUIRE(producer_->Produce(config_.inputs.front().name, kafka::kPartitionUnassigned, key, value)
              .ok());
}

void RunningEngine::Flush() {
  REQUIRE_OK(producer_->Flush(std::chrono::seconds(30)));
  REQUIRE(producer_->failed_count() == 0);
}

bool RunningEngine::WaitForReceived(uint64_t n, std::chrono::seconds deadline) {
  const auto end = Clock::now() + deadline;
  while (engine_->stats().received.load() < n && Clock::now() < end) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return engine_->stats().received.load() >= n;
}

bool RunningEngine::WaitForReady(std::chrono::seconds deadline) {
  const auto end = Clock::now() + deadline;
  while (!engine_->probe().Health(std::chrono::seconds(60)).ready && Clock::now() < end) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return engine_->probe().Health(std::chrono::seconds(60)).ready;
}

Status RunningEngine::StopEngine() {
  stop_.store(true);
  if (runner_.joinable()) runner_.join();
  return run_status_;
}

}  // namespace crmstream::admin::testing
