#include "crmstream/config/engine_config.h"

#include <algorithm>
#include <limits>
#include <string>

#include "crmstream/config/yaml_fields.h"

namespace crmstream::config {
namespace {

constexpr int kMaxPartitions = 1024;

void ReadTopic(YamlFields& f, TopicSpec* t) {
  f.Read("name", &t->name);
  f.Read("partitions", &t->partitions, 1, kMaxPartitions);
  if (t->name.empty()) f.Fail("name", "a topic needs a name");
}

void ReadHttpServer(YamlFields& f, const std::string& key, HttpServerSettings* s) {
  f.ReadObject(key, [&](YamlFields& h) {
    h.Read("bind_address", &s->bind_address);
    h.Read("auth_token_file", &s->auth_token_file);
    h.Read("allowed_hosts", &s->allowed_hosts);
    h.Read("max_connections", &s->max_connections, 1, 100000);
    if (s->bind_address.empty()) h.Fail("bind_address", "must not be empty");
  });
}

void ReadOutputTopic(YamlFields& f, const std::string& key, TopicSpec* t) {
  f.ReadObject(key, [&](YamlFields& o) { ReadTopic(o, t); });
}

}  // namespace

namespace {
constexpr std::array<std::string_view, 4> kGuaranteeNames = {
    "at_least_once", "exactly_once", "exactly_once_transactions", "exactly_once_stamped"};
}  // namespace

std::string_view GuaranteeName(Guarantee g) { return kGuaranteeNames[static_cast<size_t>(g)]; }

std::optional<Guarantee> ParseGuarantee(std::string_view name) {
  for (size_t i = 0; i < kGuaranteeNames.size(); ++i) {
    if (kGuaranteeNames[i] == name) return static_cast<Guarantee>(i);
  }
  return std::nullopt;
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
    case schema::OutputKind::kAssociations:
      return associations;
    case schema::OutputKind::kRecommendations:
      return recommendations;
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
    ReadOutputTopic(o, "associations", &c.outputs.associations);
    ReadOutputTopic(o, "recommendations", &c.outputs.recommendations);
  });
  f.Read("state_dir", &c.state_dir);
  f.Read("pipeline", &c.pipeline);
  f.Read("metrics_port", &c.metrics_port, 0, 65535);
  f.Read("dashboard_port", &c.dashboard_port, 0, 65535);
  ReadHttpServer(f, "admin", &c.admin);
  ReadHttpServer(f, "dashboard", &c.dashboard);
  f.Read("consume_batch_size", &c.consume_batch_size, 1, 100000);
  f.Read("worker_threads", &c.worker_threads, 0, 1024);
  f.Read("poll_timeout_ms", &c.poll_timeout_ms, 1, 60000);
  f.Read("commit_interval_ms", &c.commit_interval_ms, 10, 600000);
  if (f.Has("producer_linger_ms")) {
    int linger_ms = 0;
    f.Read("producer_linger_ms", &linger_ms, 0, 10000);
    c.producer_linger_ms = linger_ms;
  }
  f.Read("status_interval_ms", &c.status_interval_ms, 0, 3600000);
  f.Read("shutdown_timeout_ms", &c.shutdown_timeout_ms, 100, 3600000);
  f.ReadObject("processing", [&](YamlFields& p) {
    std::string guarantee(GuaranteeName(c.guarantee));
    p.Read("guarantee", &guarantee);
    if (auto parsed = ParseGuarantee(guarantee)) {
      c.guarantee = *parsed;
    } else {
      p.Fail("guarantee",
             "must be at_least_once, exactly_once, exactly_once_transactions or "
             "exactly_once_stamped, not '" +
                 guarantee + "'");
    }
  });
  f.ReadObject("state", [&](YamlFields& s) {
    s.Read("memory_cap_mb", &c.state.memory_cap_mb, 16, 1 << 20);
    s.Read("sync", &c.state.sync);
    s.Read("write_timeout_ms", &c.state.write_timeout_ms, 100, 3600000);
    s.Read("changelog", &c.state.changelog);
  });
  f.ReadObject("models", [&](YamlFields& m) {
    m.Read("sync_interval_ms", &c.models.sync_interval_ms, 0, 3600000);
    // A publish collects and encodes every task's models: not per batch.
    if (c.models.sync_interval_ms > 0 && c.models.sync_interval_ms < 100) {
      m.Fail("sync_interval_ms",
             "must be 0 (off) or at least 100, not " + std::to_string(c.models.sync_interval_ms));
    } else if (c.models.sync_interval_ms > 0 && c.guarantee != Guarantee::kAtLeastOnce) {
      // The exactly-once modes' producer only produces in their blocks.
      m.Fail("sync_interval_ms", "needs processing.guarantee: at_least_once");
    }
  });
  if (c.state_dir.empty()) f.Fail("state_dir", "must not be empty");
  CRM_RETURN_NOT_OK(f.Finish());
  return c;
}

}  // namespace crmstream::config
