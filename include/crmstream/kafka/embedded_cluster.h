// EmbeddedCluster: an in-process Kafka cluster (librdkafka's mock cluster)
// that speaks the real Kafka protocol over loopback TCP, so this engine and
// any other Kafka client (kcat, another process) can produce and consume.
// Used when no bootstrap.servers is configured, and by the tests.
//
// What the librdkafka 2.0.2 mock supports (checked against its sources and by
// the tests of this module): produce (idempotent producers; transactional
// producers complete the client-side protocol, but the mock keeps no
// transaction state: it writes no commit/abort markers, so read_committed
// consumers also see aborted records, a reused transactional.id does not
// fence the old producer, and SendOffsetsToTransaction stores nothing; see
// tests/kafka/transaction_test.cpp), fetch, consumer groups with offset
// commits, metadata, ListOffsets, and
// automatic topic creation on first reference with 4 partitions and
// replication factor min(3, brokers). It does NOT implement the CreateTopics
// admin request: create topics with CreateTopic() (TopicAdmin does this for
// you when given the cluster). The log is kept in memory; each partition keeps
// at most 5 MiB or 100,000 message sets (producer batches), older sets are
// dropped. For a plain idempotent producer (no transactional.id) the mock does
// not deduplicate retried batches by sequence number; only the transactional
// path is checked.
//
// Thread-safety: all methods are thread-safe (mock commands are queued to the
// mock cluster's own thread). The cluster must outlive every client that uses
// it, or those clients just see brokers go away.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "crmstream/common/status.h"
#include "crmstream/kafka/handles.h"

namespace crmstream::kafka {

struct EmbeddedClusterOptions {
  // Number of brokers, ids 1..broker_count. Default 3.
  int broker_count = 3;
};

class EmbeddedCluster {
 public:
  // The mock keeps each partition's log in memory within these bounds and
  // silently drops the oldest message sets beyond them: size benchmark
  // topics so that every partition stays below them.
  static constexpr size_t kMaxPartitionLogBytes = 5 * 1024 * 1024;
  static constexpr size_t kMaxPartitionLogMessageSets = 100000;

  static Result<std::unique_ptr<EmbeddedCluster>> Create(
      const EmbeddedClusterOptions& options = {});

  EmbeddedCluster(const EmbeddedCluster&) = delete;
  EmbeddedCluster& operator=(const EmbeddedCluster&) = delete;
  ~EmbeddedCluster() = default;

  // "127.0.0.1:port,127.0.0.1:port,..." for bootstrap.servers.
  const std::string& bootstrap_servers() const { return bootstrap_servers_; }
  int broker_count() const { return broker_count_; }

  // Creates a topic; InvalidArgument if it already exists or the counts are
  // bad. replication_factor is capped by the mock at the broker count.
  Status CreateTopic(const std::string& name, int partitions, int replication_factor = 1);

  // Writes bootstrap_servers() and a newline to `path` atomically (a
  // temporary file in the same folder, then rename), so a reader never sees
  // a partial address.
  Status WriteAddressFile(const std::filesystem::path& path) const;

  // Fault injection. A broker that is down closes its connections and
  // refuses new ones; partitions it leads are unavailable until it is up.
  Status SetBrokerDown(int32_t broker_id);
  Status SetBrokerUp(int32_t broker_id);
  // Adds round-trip latency to every response of a broker.
  Status SetBrokerRtt(int32_t broker_id, int rtt_ms);
  // The next errors.size() requests with this API key (any broker) fail with
  // these errors, in order. api_key is a Kafka protocol ApiKey (Produce = 0,
  // Fetch = 1, OffsetCommit = 8, ...).
  void PushRequestErrors(int16_t api_key, std::span<const rd_kafka_resp_err_t> errors);
  void ClearRequestErrors(int16_t api_key);
  // Moves the leadership of a partition to a broker.
  Status SetPartitionLeader(const std::string& topic, int32_t partition, int32_t broker_id);

  // The raw mock handle for fault injection beyond the wrappers above; owned
  // by this object.
  rd_kafka_mock_cluster_t* mock_handle() const { return mock_.get(); }

 private:
  EmbeddedCluster() = default;

  // Declaration order matters: the mock cluster must be destroyed before the
  // rd_kafka_t it was created on.
  KafkaHandle owner_;
  MockClusterHandle mock_;
  std::string bootstrap_servers_;
  int broker_count_ = 0;
};

}  // namespace crmstream::kafka
