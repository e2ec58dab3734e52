#include "cli_support.h"

#include <unistd.h>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "crmstream/config/kafka_properties.h"

extern char** environ;

namespace crmstream::cli {

std::atomic<bool>& StopRequested() {
  static std::atomic<bool> stop{false};
  return stop;
}

namespace {
// The first signal asks for a clean stop (flush, checkpoint); a second one,
// from a user who will not wait, ends the process at once: the state resumes
// from the last checkpoint.
void OnStopSignal(int signal) {
  if (StopRequested().exchange(true)) {
    constexpr char kMessage[] = "crmstream: second stop signal: exiting at once\n";
    (void)!write(STDERR_FILENO, kMessage, sizeof(kMessage) - 1);
    _exit(128 + signal);
  }
}
}  // namespace

void InstallStopHandlers() {
  struct sigaction sa {};
  sa.sa_handler = OnStopSignal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
}

void KafkaCliOptions::AddTo(CLI::App* app) {
  app->add_option("-c,--config", config_path, "Engine configuration file")->capture_default_str();
  app->add_option("-b,--bootstrap-servers", bootstrap_servers,
                  "Kafka bootstrap servers (default: the config's, else embedded)");
  app->add_option("--broker-file", broker_file,
                  "Read bootstrap servers from this file (as written by `crmstream broker`)");
  app->add_option("-X", properties,
                  "librdkafka property key=value (repeatable; visible in `ps`: put secrets in "
                  "--kafka-properties or CRMSTREAM_KAFKA_* variables)");
  app->add_option("--kafka-properties", properties_file,
                  "File of librdkafka properties, key=value lines (must be readable by its owner "
                  "only: chmod 600)");
  app->add_option("--state-dir", state_dir, "Local state directory (default: the config's)");
}

Result<config::EngineConfig> KafkaCliOptions::Load() const {
  config::EngineConfig cfg;
  if (std::filesystem::exists(config_path)) {
    CRM_ASSIGN_OR_RETURN(cfg, config::LoadEngineConfig(config_path));
  } else if (config_path != "config/crmstream.yaml") {
    return Status::NotFound(config_path + ": no such config file");
  }
  if (!properties_file.empty()) {
    CRM_RETURN_NOT_OK(config::ReadKafkaPropertiesFile(properties_file, &cfg.kafka.properties));
  }
  config::ReadKafkaPropertiesFromEnvironment(environ, &cfg.kafka.properties);
  if (!broker_file.empty()) {
    std::ifstream in(broker_file);
    std::string addr;
    if (!in || !std::getline(in, addr) || addr.empty()) {
      return Status::NotFound(broker_file + ": no broker address in this file");
    }
    cfg.kafka.properties["bootstrap.servers"] = addr;
  }
  if (!bootstrap_servers.empty()) cfg.kafka.properties["bootstrap.servers"] = bootstrap_servers;
  for (size_t i = 0; i < properties.size(); ++i) {
    CRM_RETURN_NOT_OK(
        config::ParseKafkaPropertyArgument(properties[i], i + 1, &cfg.kafka.properties));
  }
  if (!state_dir.empty()) cfg.state_dir = state_dir;
  return cfg;
}

void ApplyHttpSettings(const config::HttpServerSettings& settings, http::ServerOptions* options) {
  options->bind_address = settings.bind_address;
  options->auth_token_file = settings.auth_token_file;
  options->allowed_hosts = settings.allowed_hosts;
  options->max_connections = static_cast<size_t>(settings.max_connections);
}

int Fail(const std::string& command, const Status& status) {
  std::cerr << "crmstream " << command << ": " << status.ToString() << "\n";
  return 1;
}

}  // namespace crmstream::cli
