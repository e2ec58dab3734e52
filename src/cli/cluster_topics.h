// Topics on a cluster of the user's (-b, --broker-file, or the config's
// bootstrap.servers), as `run` and `generate` find it at start-up.
#pragma once

#include <span>

#include "crmstream/common/status.h"
#include "crmstream/config/engine_config.h"
#include "crmstream/kafka/topic_admin.h"

namespace crmstream::cli {

// Creates each of `topics` that is missing (its partition count, the
// cluster's default replication factor); existing topics are left as they
// are. This is also the command's first contact with the cluster, so a
// refused login or TLS handshake stops it here with librdkafka's reason,
// instead of clients retrying in the background.
Status EnsureClusterTopics(const config::EngineConfig& config,
                           std::span<const kafka::TopicSpec> topics);

}  // namespace crmstream::cli
