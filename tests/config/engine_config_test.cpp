#include "crmstream/config/engine_config.h"

#include <catch2/catch.hpp>
#include <fstream>

#include "support/test_support.h"

namespace crmstream::config {
namespace {

std::string Write(const testing::ScratchDir& dir, const std::string& name,
                  const std::string& text) {
  auto path = (dir.path() / name).string();
  std::ofstream(path) << text;
  return path;
}

TEST_CASE("The shipped config and pipeline files load", "[config]") {
  auto cfg = LoadEngineConfig((testing::SourceDir() / "config/crmstream.yaml").string());
  REQUIRE(cfg.ok());
  CHECK(cfg->kafka.embedded());
  CHECK(cfg->inputs.at(0).name == "crm.interactions");
  CHECK(cfg->outputs.dead_letter.name == "crm.dead-letter");
  auto p = LoadPipelineSpec((testing::SourceDir() / "pipelines/crm.yaml").string());
  REQUIRE(p.ok());
  CHECK(p->window_days == std::vector<int>{7, 30, 90});
  CHECK(p->models_enabled);
  CHECK(p->segments == 5);
  CHECK(p->alert_enter_probability == 0.4);
  CHECK(p->alert_exit_probability == 0.3);
  CHECK(p->alert_cooldown_hours == 168);
  CHECK(p->emit_churn_alerts);
  CHECK(p->centroid_interval_minutes == 15);
}

TEST_CASE("Absent fields keep defaults and properties pass through", "[config]") {
  testing::ScratchDir dir;
  auto path = Write(dir, "c.yaml",
                    "kafka:\n  properties:\n    bootstrap.servers: k1:9092\n"
                    "    security.protocol: SASL_SSL\n");
  auto cfg = LoadEngineConfig(path);
  REQUIRE(cfg.ok());
  CHECK_FALSE(cfg->kafka.embedded());
  CHECK(cfg->kafka.properties.at("security.protocol") == "SASL_SSL");
  CHECK(cfg->commit_interval_ms == 1000);
  CHECK(cfg->guarantee == Guarantee::kAtLeastOnce);
  CHECK(cfg->state.memory_cap_mb == 256);
  CHECK_FALSE(cfg->state.sync);
}

TEST_CASE("Processing guarantee and state settings load", "[config]") {
  testing::ScratchDir dir;
  auto cfg = LoadEngineConfig(Write(dir, "c.yaml",
                                    "processing:\n  guarantee: exactly_once\n"
                                    "state:\n  memory_cap_mb: 64\n  sync: true\n"));
  REQUIRE(cfg.ok());
  CHECK(cfg->guarantee == Guarantee::kExactlyOnce);
  CHECK(GuaranteeName(cfg->guarantee) == "exactly_once");
  CHECK(cfg->state.memory_cap_mb == 64);
  CHECK(cfg->state.sync);
}

TEST_CASE("Config mistakes name the file, line and field", "[config]") {
  testing::ScratchDir dir;
  struct Case {
    std::string text;
    std::string expected;
  };
  std::vector<Case> cases = {
      {"metrics_port: 70000\n", "c.yaml:1:15: metrics_port: 70000 is out of range"},
      {"commit_interval_ms: soon\n", "c.yaml:1:21: commit_interval_ms: expected an integer"},
      {"inputs:\n  - name: a\n    partitons: 3\n",
       "c.yaml:3:5: inputs[0].partitons: unknown field (did you mean 'partitions'?)"},
      {"kafka:\n  group_id: ''\n", "kafka.group_id: must not be empty"},
      {"outputs:\n  dead_letter: {name: x, partitions: 0}\n",
       "c.yaml:2:38: outputs.dead_letter.partitions: 0 is out of range"},
      {"state_dir: [a\n", "c.yaml:2:1: end of sequence flow not found"},
      {"processing:\n  guarantee: twice\n",
       "processing.guarantee: must be exactly_once or at_least_once, not 'twice'"},
      {"state:\n  memory_cap_mb: 1\n", "c.yaml:2:18: state.memory_cap_mb: 1 is out of range"},
  };
  for (const auto& c : cases) {
    auto cfg = LoadEngineConfig(Write(dir, "c.yaml", c.text));
    INFO(c.text);
    REQUIRE_FALSE(cfg.ok());
    CHECK(cfg.status().code() == StatusCode::kInvalidArgument);
    CHECK_THAT(cfg.status().message(), Catch::Contains(c.expected));
  }
  CHECK(LoadEngineConfig((dir.path() / "missing.yaml").string()).status().code() ==
        StatusCode::kNotFound);
}

TEST_CASE("Pipeline mistakes name the file, line and field", "[config]") {
  testing::ScratchDir dir;
  auto p = LoadPipelineSpec(Write(dir, "p.yaml", "features:\n  windows_days: [30, 7]\n"));
  REQUIRE_FALSE(p.ok());
  CHECK_THAT(p.status().message(),
             Catch::Contains("p.yaml:2:17: features.windows_days: windows must be strictly"));
  p = LoadPipelineSpec(Write(dir, "p.yaml", "featurs:\n  windows_days: [7]\n"));
  REQUIRE_FALSE(p.ok());
  CHECK_THAT(p.status().message(),
             Catch::Contains("p.yaml:1:1: featurs: unknown field (did you mean 'features'?)"));
  p = LoadPipelineSpec(Write(dir, "p.yaml", "validation:\n  max_amount: -1\n"));
  REQUIRE_FALSE(p.ok());
  CHECK_THAT(p.status().message(), Catch::Contains("validation.max_amount: -1 is out of range"));
}

TEST_CASE("Alert and output cadence fields load and are validated", "[config]") {
  testing::ScratchDir dir;
  auto p =
      LoadPipelineSpec(Write(dir, "p.yaml",
                             "alerts:\n  churn:\n    enter_probability: 0.6\n"
                             "    exit_probability: 0.4\n    high_probability: 0.75\n"
                             "    critical_probability: 0.9\n    cooldown_hours: 24\n"
                             "outputs:\n  segments: false\n  centroid_interval_minutes: 60\n"
                             "  correlation_interval_minutes: 5\n  metric_anomaly_level: 0.95\n"));
  REQUIRE(p.ok());
  CHECK(p->alert_enter_probability == 0.6);
  CHECK(p->alert_exit_probability == 0.4);
  CHECK(p->alert_high_probability == 0.75);
  CHECK(p->alert_critical_probability == 0.9);
  CHECK(p->alert_cooldown_hours == 24);
  CHECK_FALSE(p->emit_segments);
  CHECK(p->emit_anomalies);
  CHECK(p->centroid_interval_minutes == 60);
  CHECK(p->correlation_interval_minutes == 5);
  CHECK(p->metric_anomaly_level == 0.95);

  // Hysteresis the wrong way round names the field and its line.
  p = LoadPipelineSpec(Write(dir, "p.yaml",
                             "alerts:\n  churn:\n    enter_probability: 0.5\n"
                             "    exit_probability: 0.7\n"));
  REQUIRE_FALSE(p.ok());
  CHECK_THAT(p.status().message(), Catch::Contains("alerts.churn.exit_probability"));
  CHECK_THAT(p.status().message(), Catch::Contains("p.yaml:4:"));
  p = LoadPipelineSpec(Write(dir, "p.yaml", "outputs:\n  centroid_interval_minutes: 0\n"));
  REQUIRE_FALSE(p.ok());
  CHECK_THAT(p.status().message(), Catch::Contains("outputs.centroid_interval_minutes"));
  p = LoadPipelineSpec(Write(dir, "p.yaml", "alerts:\n  churn:\n    cooldown_hour: 3\n"));
  REQUIRE_FALSE(p.ok());
  CHECK_THAT(p.status().message(), Catch::Contains("did you mean 'cooldown_hours'"));
}

}  // namespace
}  // namespace crmstream::config
