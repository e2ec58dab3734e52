// A real Apache Kafka cluster of one test's own, for broker faults: stopped,
// killed, paused and restarted nodes. It runs beside the shared cluster that
// scripts/kafka.sh starts (other tests use that one at the same time and
// must not see its brokers go away): `scripts/kafka.sh --instance NAME`, its
// own ports, storage and certificates, from the same cached Kafka jars.
//
// Unavailable (with the reason; tests skip, or fail under
// CRMSTREAM_REQUIRE_KAFKA=1) when Java or the cached Kafka jars are missing
// (scripts/kafka.sh start fetches them once) or the cluster does not start.
// Every operation is bounded by kafka.sh's own waits (start-up 120 s, a stop
// 30 s). The destructor stops the nodes and deletes the instance's files.
//
// Thread-safety: one test thread, plus one thread that injects faults while
// the test thread runs an engine (the node operations touch no shared state).
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "crmstream/common/status.h"
#include "support/kafka_broker.h"

namespace crmstream::testing {

class PrivateKafka : public TestBroker {
 public:
  // nodes: 1 or 3 (three for leader moves: data topics get replication
  // factor 3, the internal topics min.insync.replicas 2).
  explicit PrivateKafka(int nodes);
  ~PrivateKafka() override;
  bool real() const override { return true; }

  // Node ids are 1..broker_count().
  Status StopNode(int id);   // SIGTERM: a clean shutdown, leaders handed over
  Status KillNode(int id);   // SIGKILL: a crash
  Status StartNode(int id);  // again, on its storage; until every node answers
  Status PauseNode(int id);  // SIGSTOP: the node's connections go silent
  Status ResumeNode(int id);

  // The node leading `topic`'s partition, from the cluster's metadata.
  Result<int> Leader(const std::string& topic, int32_t partition) const;

 private:
  Status Script(const std::vector<std::string>& args, std::string* output = nullptr) const;
  Status Signal(int id, int signal) const;
  void RemoveAbandoned() const;

  std::string instance_;
  std::filesystem::path log_;
};

}  // namespace crmstream::testing
