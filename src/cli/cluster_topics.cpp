#include "cluster_topics.h"

#include "crmstream/runtime/kafka_wiring.h"

namespace crmstream::cli {

Status EnsureClusterTopics(const config::EngineConfig& config,
                           std::span<const kafka::TopicSpec> topics) {
  CRM_ASSIGN_OR_RETURN(auto admin,
                       kafka::TopicAdmin::Create(runtime::MakeClientConfig(config.kafka)));
  CRM_ASSIGN_OR_RETURN(auto described, admin->EnsureTopics(topics));
  (void)described;
  return Status::OK();
}

}  // namespace crmstream::cli
