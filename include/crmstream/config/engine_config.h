// The engine's configuration (config/*.yaml): plain structs whose fields
// state their defaults and units, loaded and validated once at start-up.
// Every error names the file, the line and the field. Pipeline definitions
// (pipelines/*.yaml) are the pipeline module's (pipeline/pipeline_spec.h).
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "crmstream/common/status.h"
#include "crmstream/schema/output_kind.h"

namespace crmstream::config {

struct TopicSpec {
  std::string name;
  int partitions = 6;
};

// Where the engine talks to Kafka. With no `bootstrap.servers` in
// `properties`, the engine starts the embedded cluster in-process.
struct KafkaSettings {
  // librdkafka properties passed through as they are (bootstrap.servers,
  // security.protocol, sasl.*, ssl.*, ...).
  std::map<std::string, std::string> properties;
  std::string group_id = "crmstream";
  int embedded_brokers = 3;  // brokers of the embedded cluster
  bool embedded() const { return !properties.count("bootstrap.servers"); }
};

// The output topics, defaults from schema/output_kind.h.
struct OutputTopics {
  TopicSpec customer_scores = Default(schema::OutputKind::kCustomerScores);
  TopicSpec churn_alerts = Default(schema::OutputKind::kChurnAlerts);
  TopicSpec segments = Default(schema::OutputKind::kSegments);
  TopicSpec anomalies = Default(schema::OutputKind::kAnomalies);
  TopicSpec correlations = Default(schema::OutputKind::kCorrelations);
  TopicSpec dead_letter = Default(schema::OutputKind::kDeadLetter);
  TopicSpec associations = Default(schema::OutputKind::kAssociations);

  const TopicSpec& of(schema::OutputKind kind) const;
  // Topic names in OutputKind order.
  std::array<std::string, schema::kOutputKindCount> Names() const;

 private:
  static TopicSpec Default(schema::OutputKind kind) {
    const auto k = static_cast<size_t>(kind);
    return {std::string(schema::kDefaultOutputTopics[k]), schema::kDefaultOutputPartitions[k]};
  }
};

// Delivery semantics of the engine (README "Delivery semantics").
enum class Guarantee : uint8_t {
  // Outputs flushed and state checkpointed every commit interval; after a
  // crash the records since the last checkpoint are processed again, so
  // their outputs may appear twice.
  kAtLeastOnce,
  // Deterministic processing from the checkpointed state and input offsets,
  // every output stamped with its source, and a restarted engine suppresses
  // outputs its predecessor already delivered: each output exactly once.
  kExactlyOnce,
};
std::string_view GuaranteeName(Guarantee g);

// The local state store (state/README.md).
struct StateSettings {
  int memory_cap_mb = 256;  // RocksDB block cache + memtables
  bool sync = false;        // fsync the WAL at every checkpoint
  // Longest a checkpoint write may wait for RocksDB to free memory (a write
  // stall) before it fails and is retried at the next commit, ms.
  int write_timeout_ms = 30000;
};

struct EngineConfig {
  std::string file;  // the file it was loaded from ("" for defaults)
  KafkaSettings kafka;
  std::vector<TopicSpec> inputs = {{"crm.interactions", 6}};
  OutputTopics outputs;
  std::string state_dir = "state";              // local state and broker.addr
  std::string pipeline = "pipelines/crm.yaml";  // relative to the working directory
  int metrics_port = 9464;                      // Prometheus /metrics, loopback
  int dashboard_port = 8080;                    // web dashboard, loopback
  int consume_batch_size = 2048;                // messages per consumer poll
  int poll_timeout_ms = 100;                    // consumer poll wait, ms
  int commit_interval_ms = 1000;                // offsets committed at most this often, ms
  int producer_linger_ms = 5;                   // output batching delay, ms
  int status_interval_ms = 1000;                // live status line period, ms (0: off)
  // After a stop (SIGTERM, Ctrl-C, --duration): how long the final flush and
  // checkpoint may take, ms. Past it the engine stops without them and says
  // so; the state resumes from the last checkpoint.
  int shutdown_timeout_ms = 30000;
  Guarantee guarantee = Guarantee::kAtLeastOnce;  // processing.guarantee
  StateSettings state;
};

// Loads config/*.yaml; fields absent from the file keep their defaults.
Result<EngineConfig> LoadEngineConfig(const std::string& path);

}  // namespace crmstream::config
