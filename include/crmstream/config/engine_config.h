// The engine's configuration (config/*.yaml): plain structs whose fields
// state their defaults and units, loaded and validated once at start-up.
// Every error names the file, the line and the field. Pipeline definitions
// (pipelines/*.yaml) are the pipeline module's (pipeline/pipeline_spec.h).
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <optional>
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
  TopicSpec recommendations = Default(schema::OutputKind::kRecommendations);

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
  // Exactly-once, the way the cluster allows: Kafka transactions where the
  // brokers support them, stamped outputs on the embedded cluster.
  kExactlyOnce,
  // Exactly-once with Kafka transactions (exactly-once v2, KIP-447): outputs
  // and input offsets committed in one transaction per commit interval;
  // read_committed consumers see each output once.
  kExactlyOnceTransactions,
  // Exactly-once without transactions: deterministic processing, every
  // output stamped with its source, and a restart drops what its predecessor
  // delivered (for clusters without transactions, e.g. the embedded one).
  kExactlyOnceStamped,
};
// "at_least_once", "exactly_once", "exactly_once_transactions",
// "exactly_once_stamped".
std::string_view GuaranteeName(Guarantee g);
std::optional<Guarantee> ParseGuarantee(std::string_view name);

// The local state store (state/README.md).
struct StateSettings {
  // The engine's memory: RocksDB block cache + memtables, the customer
  // caches and the dedup windows, split by pipeline/memory_plan.h.
  int memory_cap_mb = 256;
  bool sync = false;  // fsync the WAL at every checkpoint
  // Longest a checkpoint write may wait for RocksDB to free memory (a write
  // stall) before it fails and is retried at the next commit, ms.
  int write_timeout_ms = 30000;
  // Mirror every checkpoint to a compacted changelog topic per input topic
  // (runtime::ChangelogTopicName), so a partition's state can move to
  // another instance or come back after the local store is lost. Default true.
  bool changelog = true;
};

// The global models across instances (models:, README "Global models across
// instances").
struct ModelSettings {
  // How often each partition task publishes its models' sufficient
  // statistics to `<group_id>.model-sync` (pipeline/model_sync.h), ms;
  // every instance merges what it reads. 0 (default): off, no topic and
  // nothing published. Otherwise 100 .. 3600000.
  int sync_interval_ms = 0;
};

// One of the HTTP servers (the engine's admin server, the dashboard): who
// may reach it. The core's defences and their defaults: http/server.h.
struct HttpServerSettings {
  // Listening address (an IP literal). Beyond loopback, auth_token_file is
  // required. Default loopback.
  std::string bind_address = "127.0.0.1";
  // File holding the bearer token (owner-only mode, at least 16
  // characters); clients send `Authorization: Bearer <token>`. Default none.
  std::string auth_token_file;
  // Host header values served besides loopback names and IP literals (the
  // names clients use to reach the server; "*" any). Default none.
  std::vector<std::string> allowed_hosts;
  int max_connections = 256;  // open connections at most; the idlest is closed for a new one
};

struct EngineConfig {
  std::string file;  // the file it was loaded from ("" for defaults)
  KafkaSettings kafka;
  std::vector<TopicSpec> inputs = {{"crm.interactions", 6}};
  OutputTopics outputs;
  std::string state_dir = "state";              // local state and broker.addr
  std::string pipeline = "pipelines/crm.yaml";  // relative to the working directory
  int metrics_port = 9464;                      // the admin server (Prometheus /metrics, ...)
  int dashboard_port = 8080;                    // web dashboard
  HttpServerSettings admin;                     // the admin server's listener (admin:)
  HttpServerSettings dashboard;                 // the dashboard's listener (dashboard:)
  int consume_batch_size = 2048;                // messages per consumer poll
  // Threads processing the partitions (at_least_once; the exactly-once modes
  // use one). 0: one per core, at most one per input partition.
  int worker_threads = 0;
  int poll_timeout_ms = 100;      // consumer poll wait, ms
  int commit_interval_ms = 1000;  // offsets committed at most this often, ms
  // Output batching delay, ms (librdkafka's linger.ms). Absent: 0 at least
  // once on a Kafka cluster, else 5 (runtime::OutputLingerMs).
  std::optional<int> producer_linger_ms;
  int status_interval_ms = 1000;  // live status line period, ms (0: off)
  // After a stop (SIGTERM, Ctrl-C, --duration): how long the final flush and
  // checkpoint may take, ms. Past it the engine stops without them and says
  // so; the state resumes from the last checkpoint.
  int shutdown_timeout_ms = 30000;
  Guarantee guarantee = Guarantee::kAtLeastOnce;  // processing.guarantee
  // `run --accept-config-change` (not in the file): start although what
  // shapes the outputs changed since the state was written (exactly_once
  // refuses that otherwise: runtime/output_fingerprint.h).
  bool accept_config_change = false;
  StateSettings state;
  ModelSettings models;
};

// Loads config/*.yaml; fields absent from the file keep their defaults.
Result<EngineConfig> LoadEngineConfig(const std::string& path);

}  // namespace crmstream::config
