// The real Kafka cluster a benchmark may run against: the one named by
// CRMSTREAM_TEST_KAFKA=host:port[,...] (e.g. from `scripts/kafka.sh env`).
#pragma once

#include <cstdlib>
#include <string>
#include <vector>

#include "crmstream/kafka/topic_admin.h"

namespace crmstream::bench {

// The cluster's bootstrap servers; "" when none is named.
inline std::string RealClusterBootstrap() {
  const char* bootstrap = std::getenv("CRMSTREAM_TEST_KAFKA");
  return bootstrap != nullptr ? std::string(bootstrap) : std::string();
}

inline constexpr const char* kNoRealCluster =
    "no real cluster: set CRMSTREAM_TEST_KAFKA (scripts/kafka.sh env)";

// Creates the topics missing on the cluster at `bootstrap`.
inline Status EnsureRealTopics(const std::string& bootstrap,
                               const std::vector<kafka::TopicSpec>& topics) {
  kafka::ClientConfig client;
  client.Set("bootstrap.servers", bootstrap);
  CRM_ASSIGN_OR_RETURN(auto admin, kafka::TopicAdmin::Create(client));
  return admin->EnsureTopics(topics).status();
}

}  // namespace crmstream::bench
