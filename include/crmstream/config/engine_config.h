// The engine's configuration (config/*.yaml) and pipeline definitions
// (pipelines/*.yaml): plain structs whose fields state their defaults and
// units, loaded and validated once at start-up. Every error names the file,
// the line and the field.
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

// What one pipeline computes.
struct PipelineSpec {
  std::string file;
  std::string name = "crm";
  // Input validation.
  double max_amount = 1e9;                   // largest accepted amount
  int64_t min_timestamp_ms = 946684800000;   // 2000-01-01T00:00:00Z
  int64_t max_timestamp_ms = 4102444800000;  // 2100-01-01T00:00:00Z
  int max_message_bytes = 65536;
  int dedup_window =
      1000000;  // event ids remembered for duplicate detection, split across input partitions
  // Features.
  std::vector<int> window_days = {7, 30, 90};
  // Online models (churn, value, segment, anomaly, global metrics).
  bool models_enabled = true;
  int churn_horizon_days = 30;  // a customer still active this long after a prediction is a 0
  int segments = 5;             // k of the k-means segmentation
  // Churn alerts (crm.churn-alerts), docs/outputs.md. An episode opens at a
  // churn probability >= enter and ends below exit (hysteresis); severity
  // bands warning [enter, high), high [high, critical), critical >= critical;
  // at most one alert per customer per cool-down (event time).
  // 0 < enter <= 1, 0 <= exit <= enter <= high <= critical <= 1.
  double alert_enter_probability = 0.4;
  double alert_exit_probability = 0.3;
  double alert_high_probability = 0.55;
  double alert_critical_probability = 0.7;
  int alert_cooldown_hours = 168;  // >= 0
  // Outputs.
  bool emit_customer_scores = true;       // crm.customer-scores, coalesced per flush
  bool emit_churn_alerts = true;          // crm.churn-alerts
  bool emit_segments = true;              // crm.segments: changes and centroid snapshots
  bool emit_anomalies = true;             // crm.anomalies: customers and minute metrics
  bool emit_correlations = true;          // crm.correlations snapshots
  int centroid_interval_minutes = 15;     // centroid snapshot period, event time, >= 1
  int correlation_interval_minutes = 15;  // correlation snapshot period, event time, >= 1
  double customer_anomaly_level = 0.99;   // customer anomaly score published at >= this, (0, 1]
  double metric_anomaly_level = 0.99;     // minute metric score published at >= this, (0, 1]
};

// Loads config/*.yaml; fields absent from the file keep their defaults.
Result<EngineConfig> LoadEngineConfig(const std::string& path);
// Loads pipelines/*.yaml.
Result<PipelineSpec> LoadPipelineSpec(const std::string& path);

}  // namespace crmstream::config
