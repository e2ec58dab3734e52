// Starting the embedded Kafka cluster the way `run` and `broker` both do:
// create it, create every configured topic, print and write its address.
#pragma once

#include <memory>
#include <span>

#include "crmstream/config/engine_config.h"
#include "crmstream/kafka/embedded_cluster.h"

namespace crmstream::cli {

// Starts the cluster, creates the topics of `config`, writes
// `<state_dir>/broker.addr` and points config->kafka at the cluster.
// `also`: other configurations whose topics the cluster creates too (engines
// with other output topics sharing this cluster and its input).
Result<std::unique_ptr<kafka::EmbeddedCluster>> StartEmbeddedBroker(
    config::EngineConfig* config, std::span<const config::EngineConfig> also = {});

}  // namespace crmstream::cli
