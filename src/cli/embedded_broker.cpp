#include "embedded_broker.h"

#include <spdlog/spdlog.h>

#include <filesystem>
#include <iostream>
#include <set>

#include "crmstream/runtime/kafka_wiring.h"

namespace crmstream::cli {

Result<std::unique_ptr<kafka::EmbeddedCluster>> StartEmbeddedBroker(
    config::EngineConfig* config, std::span<const config::EngineConfig> also) {
  kafka::EmbeddedClusterOptions options;
  options.broker_count = config->kafka.embedded_brokers;
  CRM_ASSIGN_OR_RETURN(auto cluster, kafka::EmbeddedCluster::Create(options));
  std::set<std::string> created;
  auto create = [&](const config::EngineConfig& c) -> Status {
    for (const auto& t : runtime::AllTopics(c)) {
      if (!created.insert(t.name).second) continue;  // shared with an earlier config
      CRM_RETURN_NOT_OK(cluster->CreateTopic(t.name, t.partitions, cluster->broker_count())
                            .WithContext("creating topic " + t.name));
    }
    return Status::OK();
  };
  CRM_RETURN_NOT_OK(create(*config));
  for (const auto& c : also) CRM_RETURN_NOT_OK(create(c).WithContext(c.file));
  std::error_code ec;
  std::filesystem::create_directories(config->state_dir, ec);
  if (ec) return Status::IOError(config->state_dir + ": " + ec.message());
  auto addr_file = std::filesystem::path(config->state_dir) / "broker.addr";
  CRM_RETURN_NOT_OK(cluster->WriteAddressFile(addr_file));
  std::cout << "embedded Kafka (" << cluster->broker_count() << " brokers) at "
            << cluster->bootstrap_servers() << "  (address in " << addr_file.string() << ")"
            << std::endl;
  config->kafka.properties["bootstrap.servers"] = cluster->bootstrap_servers();
  return cluster;
}

}  // namespace crmstream::cli
