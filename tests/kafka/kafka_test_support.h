// Fixtures for the kafka module's tests: the broker under test
// (support/kafka_broker.h: an embedded cluster per test, or the real cluster
// of scripts/kafka.sh), and bounded loops that wait for a condition instead
// of sleeping.
//
// Thread-safety: test code, single-threaded.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "crmstream/kafka/client_config.h"
#include "crmstream/kafka/consumer.h"
#include "crmstream/kafka/embedded_cluster.h"
#include "crmstream/kafka/producer.h"
#include "support/kafka_broker.h"

namespace crmstream::kafka::testing {

// Every wait in these tests is bounded by this.
inline constexpr std::chrono::seconds kTestDeadline{30};

// A message as the test saw it (copied out of the batch for checking).
struct Received {
  std::string topic;
  int32_t partition = 0;
  int64_t offset = 0;
  std::string key;
  std::string value;
};

using crmstream::testing::EmbeddedBroker;
using crmstream::testing::RealBroker;
// An embedded 3-broker cluster (`cluster`) plus client configs pointing at
// it, for the tests of what only the mock can do (fault injection).
using ClusterFixture = EmbeddedBroker;

// Polls `consumer` until `want` messages in total have been received or the
// deadline passes; returns what arrived (the caller checks the count).
std::vector<Received> ConsumeUntil(Consumer& consumer, size_t want,
                                   std::chrono::milliseconds deadline = kTestDeadline);

// Polls until `done()` holds or the deadline passes; returns done().
bool PollUntil(const std::function<bool()>& poll_once_and_check,
               std::chrono::milliseconds deadline = kTestDeadline);

// Produces `count` messages with keys "customer-<i % keys>" and values
// "<first_seq + i>" to `topic`, partitioned by key.
void ProduceKeyed(Producer& producer, const std::string& topic, int first_seq, int count, int keys);

void AppendBatch(const MessageBatch& batch, std::vector<Received>* out);

}  // namespace crmstream::kafka::testing
