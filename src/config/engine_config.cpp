#include "crmstream/config/engine_config.h"

#include <algorithm>
#include <limits>

#include "crmstream/config/yaml_fields.h"

namespace crmstream::config {
namespace {

constexpr int kMaxPartitions = 1024;

void ReadTopic(YamlFields& f, TopicSpec* t) {
  f.Read("name", &t->name);
  f.Read("partitions", &t->partitions, 1, kMaxPartitions);
  if (t->name.empty()) f.Fail("name", "a topic needs a name");
}

void ReadOutputTopic(YamlFields& f, const std::string& key, TopicSpec* t) {
  f.ReadObject(key, [&](YamlFields& o) { ReadTopic(o, t); });
}

}  // namespace

std::string_view GuaranteeName(Guarantee g) {
  return g == Guarantee::kExactlyOnce ? "exactly_once" : "at_least_once";
}

const TopicSpec& OutputTopics::of(schema::OutputKind kind) const {
  switch (kind) {
    case schema::OutputKind::kCustomerScores:
      return customer_scores;
    case schema::OutputKind::kChurnAlerts:
      return churn_alerts;
    case schema::OutputKind::kSegments:
      return segments;
    case schema::OutputKind::kAnomalies:
      return anomalies;
    case schema::OutputKind::kCorrelations:
      return correlations;
    case schema::OutputKind::kDeadLetter:
      break;
  }
  return dead_letter;
}

std::array<std::string, schema::kOutputKindCount> OutputTopics::Names() const {
  std::array<std::string, schema::kOutputKindCount> names;
  for (int k = 0; k < schema::kOutputKindCount; ++k) {
    names[static_cast<size_t>(k)] = of(static_cast<schema::OutputKind>(k)).name;
  }
  return names;
}

Result<EngineConfig> LoadEngineConfig(const std::string& path) {
  CRM_ASSIGN_OR_RETURN(YAML::Node root, LoadYamlFile(path));
  EngineConfig c;
  c.file = path;
  YamlFields f(path, root);
  f.ReadObject("kafka", [&](YamlFields& k) {
    k.Read("properties", &c.kafka.properties);
    k.Read("group_id", &c.kafka.group_id);
    k.Read("embedded_brokers", &c.kafka.embedded_brokers, 1, 9);
    if (c.kafka.group_id.empty()) k.Fail("group_id", "must not be empty");
  });
  if (f.Has("inputs")) c.inputs.clear();
  f.ReadObjectList("inputs", [&](YamlFields& t, size_t) {
    c.inputs.emplace_back();
    ReadTopic(t, &c.inputs.back());
  });
  if (c.inputs.empty()) f.Fail("inputs", "at least one input topic is needed");
  f.ReadObject("outputs", [&](YamlFields& o) {
    ReadOutputTopic(o, "customer_scores", &c.outputs.customer_scores);
    ReadOutputTopic(o, "churn_alerts", &c.outputs.churn_alerts);
    ReadOutputTopic(o, "segments", &c.outputs.segments);
    ReadOutputTopic(o, "anomalies", &c.outputs.anomalies);
    ReadOutputTopic(o, "correlations", &c.outputs.correlations);
    ReadOutputTopic(o, "dead_letter", &c.outputs.dead_letter);
  });
  f.Read("state_dir", &c.state_dir);
  f.Read("pipeline", &c.pipeline);
  f.Read("metrics_port", &c.metrics_port, 0, 65535);
  f.Read("dashboard_port", &c.dashboard_port, 0, 65535);
  f.Read("consume_batch_size", &c.consume_batch_size, 1, 100000);
  f.Read("poll_timeout_ms", &c.poll_timeout_ms, 1, 60000);
  f.Read("commit_interval_ms", &c.commit_interval_ms, 10, 600000);
  f.Read("producer_linger_ms", &c.producer_linger_ms, 0, 10000);
  f.Read("status_interval_ms", &c.status_interval_ms, 0, 3600000);
  f.Read("shutdown_timeout_ms", &c.shutdown_timeout_ms, 100, 3600000);
  f.ReadObject("processing", [&](YamlFields& p) {
    std::string guarantee(GuaranteeName(c.guarantee));
    p.Read("guarantee", &guarantee);
    if (guarantee == "exactly_once") {
      c.guarantee = Guarantee::kExactlyOnce;
    } else if (guarantee == "at_least_once") {
      c.guarantee = Guarantee::kAtLeastOnce;
    } else {
      p.Fail("guarantee", "must be exactly_once or at_least_once, not '" + guarantee + "'");
    }
  });
  f.ReadObject("state", [&](YamlFields& s) {
    s.Read("memory_cap_mb", &c.state.memory_cap_mb, 16, 1 << 20);
    s.Read("sync", &c.state.sync);
    s.Read("write_timeout_ms", &c.state.write_timeout_ms, 100, 3600000);
  });
  if (c.state_dir.empty()) f.Fail("state_dir", "must not be empty");
  CRM_RETURN_NOT_OK(f.Finish());
  return c;
}

Result<PipelineSpec> LoadPipelineSpec(const std::string& path) {
  CRM_ASSIGN_OR_RETURN(YAML::Node root, LoadYamlFile(path));
  PipelineSpec p;
  p.file = path;
  YamlFields f(path, root);
  f.Read("name", &p.name);
  f.ReadObject("validation", [&](YamlFields& v) {
    v.Read("max_amount", &p.max_amount, 0.0, 1e15);
    v.Read("min_timestamp_ms", &p.min_timestamp_ms, 0, std::numeric_limits<int64_t>::max());
    v.Read("max_timestamp_ms", &p.max_timestamp_ms, 0, std::numeric_limits<int64_t>::max());
    v.Read("max_message_bytes", &p.max_message_bytes, 64, 16 << 20);
    v.Read("dedup_window", &p.dedup_window, 0, 100000000);
    if (p.min_timestamp_ms >= p.max_timestamp_ms) {
      v.Fail("max_timestamp_ms", "must be greater than min_timestamp_ms");
    }
  });
  f.ReadObject("features", [&](YamlFields& ft) {
    ft.Read("windows_days", &p.window_days, 1, 3650);
    if (p.window_days.empty()) ft.Fail("windows_days", "at least one window is needed");
    if (!std::is_sorted(p.window_days.begin(), p.window_days.end()) ||
        std::adjacent_find(p.window_days.begin(), p.window_days.end()) != p.window_days.end()) {
      ft.Fail("windows_days", "windows must be strictly increasing");
    }
  });
  f.ReadObject("models", [&](YamlFields& m) {
    m.Read("enabled", &p.models_enabled);
    m.Read("churn_horizon_days", &p.churn_horizon_days, 1, 3650);
    m.Read("segments", &p.segments, 2, 64);
  });
  f.ReadObject("alerts", [&](YamlFields& a) {
    a.ReadObject("churn", [&](YamlFields& c) {
      c.Read("enter_probability", &p.alert_enter_probability, 1e-9, 1.0);
      c.Read("exit_probability", &p.alert_exit_probability, 0.0, 1.0);
      c.Read("high_probability", &p.alert_high_probability, 0.0, 1.0);
      c.Read("critical_probability", &p.alert_critical_probability, 0.0, 1.0);
      c.Read("cooldown_hours", &p.alert_cooldown_hours, 0, 24 * 3650);
      if (p.alert_exit_probability > p.alert_enter_probability) {
        c.Fail("exit_probability", "must not exceed enter_probability (hysteresis)");
      }
      if (p.alert_high_probability < p.alert_enter_probability) {
        c.Fail("high_probability", "must be at least enter_probability");
      }
      if (p.alert_critical_probability < p.alert_high_probability) {
        c.Fail("critical_probability", "must be at least high_probability");
      }
    });
  });
  f.ReadObject("outputs", [&](YamlFields& o) {
    o.Read("customer_scores", &p.emit_customer_scores);
    o.Read("churn_alerts", &p.emit_churn_alerts);
    o.Read("segments", &p.emit_segments);
    o.Read("anomalies", &p.emit_anomalies);
    o.Read("correlations", &p.emit_correlations);
    o.Read("centroid_interval_minutes", &p.centroid_interval_minutes, 1, 525600);
    o.Read("correlation_interval_minutes", &p.correlation_interval_minutes, 1, 525600);
    o.Read("customer_anomaly_level", &p.customer_anomaly_level, 1e-9, 1.0);
    o.Read("metric_anomaly_level", &p.metric_anomaly_level, 1e-9, 1.0);
  });
  CRM_RETURN_NOT_OK(f.Finish());
  return p;
}

}  // namespace crmstream::config
