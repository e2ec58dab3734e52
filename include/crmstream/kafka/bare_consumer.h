// The baseline for end-to-end throughput: a bare librdkafka consumer that
// reads a topic and does nothing with the messages. The pipeline benchmark
// reports its own rate as a ratio of this one, measured in the same run on
// the same data.
//
// Thread-safety: a free function; each call owns its own client.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "crmstream/common/status.h"
#include "crmstream/kafka/client_config.h"

namespace crmstream::kafka {

struct BareConsumerRate {
  uint64_t messages = 0;
  uint64_t bytes = 0;    // payload bytes
  double seconds = 0.0;  // from the first message to the last
  double messages_per_second = 0.0;
};

// Consumes `expected_messages` from the beginning of `topic` with a fresh
// consumer group and the same batch-consume call the engine uses, and reports
// the rate. The clock starts at the first message, so group join time is not
// counted. Unavailable if fewer arrive within `timeout`.
Result<BareConsumerRate> MeasureBareConsumerRate(
    const ClientConfig& config, const std::string& topic, uint64_t expected_messages,
    std::chrono::milliseconds timeout = std::chrono::seconds(120));

}  // namespace crmstream::kafka
