// Fixtures for the kafka module's tests: an embedded cluster per test, and
// bounded loops that wait for a condition instead of sleeping.
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

// An embedded 3-broker cluster plus a client config pointing at it.
struct ClusterFixture {
  ClusterFixture();
  std::unique_ptr<EmbeddedCluster> cluster;
  ClientConfig config() const;
  // config() plus a short group session (6 s). The mock coordinator recovers
  // from some join/sync interleavings, and admits a member into a group that
  // its last member left, only after a whole session timeout (librdkafka's
  // default is 45 s, longer than any test's deadline).
  ClientConfig consumer_config() const;
};

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
