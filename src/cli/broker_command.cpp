// `crmstream broker`: the embedded Kafka cluster as a process of its own, so
// engines, generators and tests can be started, killed and restarted against
// a broker that keeps running.
#include <chrono>
#include <iostream>
#include <thread>

#include "cli_support.h"
#include "commands.h"
#include "embedded_broker.h"

namespace crmstream::cli {

void AddBrokerCommand(CLI::App* app, int* exit_code) {
  auto* cmd = app->add_subcommand(
      "broker",
      "Run the embedded Kafka cluster (librdkafka's mock cluster: Kafka protocol on loopback, "
      "log in memory) until Ctrl-C");
  auto opts = std::make_shared<KafkaCliOptions>();
  opts->AddTo(cmd);
  auto brokers = std::make_shared<int>(0);
  cmd->add_option("--brokers", *brokers, "Number of brokers (default: the config's, 3)");
  auto also = std::make_shared<std::vector<std::string>>();
  cmd->add_option("--topics-from", *also,
                  "Also create the topics of this engine configuration (repeatable)");
  cmd->callback([=] {
    InstallStopHandlers();
    auto cfg = opts->Load();
    if (!cfg.ok()) {
      *exit_code = Fail("broker", cfg.status());
      return;
    }
    if (*brokers > 0) cfg->kafka.embedded_brokers = *brokers;
    std::vector<config::EngineConfig> others;
    for (const auto& file : *also) {
      auto other = config::LoadEngineConfig(file);
      if (!other.ok()) {
        *exit_code = Fail("broker", other.status());
        return;
      }
      others.push_back(std::move(other).value());
    }
    auto cluster = StartEmbeddedBroker(&cfg.value(), others);
    if (!cluster.ok()) {
      *exit_code = Fail("broker", cluster.status());
      return;
    }
    std::cout << "ready; Ctrl-C to stop" << std::endl;
    while (!StopRequested().load()) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    std::cout << "broker stopped" << std::endl;
  });
}

}  // namespace crmstream::cli
