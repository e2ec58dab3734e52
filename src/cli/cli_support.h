// Pieces every subcommand shares: stop signals, the wall clock, loading the
// engine config with command-line overrides, and printing errors the same
// way. Used from main threads at start-up; StopRequested() is async-signal
// safe to set and thread-safe to read.
#pragma once

#include <CLI/CLI.hpp>
#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "crmstream/common/clock.h"
#include "crmstream/common/status.h"
#include "crmstream/config/engine_config.h"
#include "crmstream/http/server.h"

namespace crmstream::cli {

// Set by SIGINT/SIGTERM once InstallStopHandlers() ran.
std::atomic<bool>& StopRequested();
void InstallStopHandlers();

// Options shared by the commands that talk to Kafka.
struct KafkaCliOptions {
  std::string config_path = "config/crmstream.yaml";
  std::string bootstrap_servers;        // overrides the config's
  std::string broker_file;              // read bootstrap.servers from this file
  std::vector<std::string> properties;  // -X key=value, passed to librdkafka
  std::string properties_file;          // --kafka-properties: key=value lines, owner-only
  std::string state_dir;                // overrides the config's

  void AddTo(CLI::App* app);
  // The config file (if it exists, else defaults) with these overrides,
  // later ones winning: the config's kafka.properties, --kafka-properties,
  // CRMSTREAM_KAFKA_* variables, -b / --broker-file, -X.
  Result<config::EngineConfig> Load() const;
};

// A server's listener from its config section (admin: or dashboard:).
void ApplyHttpSettings(const config::HttpServerSettings& settings, http::ServerOptions* options);

// Prints "crmstream <command>: <status>" to stderr and returns exit code 1.
int Fail(const std::string& command, const Status& status);

}  // namespace crmstream::cli
