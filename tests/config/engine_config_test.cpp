#include "crmstream/config/engine_config.h"

#include <catch2/catch.hpp>
#include <fstream>

#include "support/require_ok.h"
#include "support/test_support.h"

namespace crmstream::config {
namespace {

std::string Write(const testing::ScratchDir& dir, const std::string& name,
                  const std::string& text) {
  auto path = (dir.path() / name).string();
  std::ofstream(path) << text;
  return path;
}

TEST_CASE("The shipped config file loads", "[config]") {
  auto cfg = LoadEngineConfig((testing::SourceDir() / "config/crmstream.yaml").string());
  REQUIRE_OK(cfg);
  CHECK(cfg->kafka.embedded());
  CHECK(cfg->inputs.at(0).name == "crm.interactions");
  CHECK(cfg->outputs.dead_letter.name == "crm.dead-letter");
  CHECK(cfg->outputs.associations.name == "crm.associations");
  CHECK(cfg->outputs.of(schema::OutputKind::kAssociations).partitions == 1);
  CHECK(cfg->outputs.recommendations.name == "crm.recommendations");
  CHECK(cfg->outputs.of(schema::OutputKind::kRecommendations).partitions == 3);
  CHECK(cfg->outputs.Names().back() == "crm.recommendations");
  CHECK(cfg->worker_threads == 0);  // one per core
}

TEST_CASE("Absent fields keep defaults and properties pass through", "[config]") {
  testing::ScratchDir dir;
  auto path = Write(dir, "c.yaml",
                    "kafka:\n  properties:\n    bootstrap.servers: k1:9092\n"
                    "    security.protocol: SASL_SSL\n");
  auto cfg = LoadEngineConfig(path);
  REQUIRE_OK(cfg);
  CHECK_FALSE(cfg->kafka.embedded());
  CHECK(cfg->kafka.properties.at("security.protocol") == "SASL_SSL");
  CHECK(cfg->commit_interval_ms == 1000);
  CHECK(cfg->guarantee == Guarantee::kAtLeastOnce);
  CHECK(cfg->state.memory_cap_mb == 256);
  CHECK_FALSE(cfg->state.sync);
  CHECK(cfg->worker_threads == 0);
  CHECK_FALSE(cfg->producer_linger_ms.has_value());  // chosen by the cluster
  auto threads = LoadEngineConfig(Write(dir, "t.yaml", "worker_threads: 3\n"));
  REQUIRE_OK(threads);
  CHECK(threads->worker_threads == 3);
  auto linger = LoadEngineConfig(Write(dir, "l.yaml", "producer_linger_ms: 0\n"));
  REQUIRE_OK(linger);
  CHECK(linger->producer_linger_ms == 0);
}

TEST_CASE("Processing guarantee and state settings load", "[config]") {
  testing::ScratchDir dir;
  auto cfg = LoadEngineConfig(Write(dir, "c.yaml",
                                    "processing:\n  guarantee: exactly_once\n"
                                    "state:\n  memory_cap_mb: 64\n  sync: true\n"));
  REQUIRE_OK(cfg);
  CHECK(cfg->guarantee == Guarantee::kExactlyOnce);
  CHECK(GuaranteeName(cfg->guarantee) == "exactly_once");
  CHECK(cfg->state.memory_cap_mb == 64);
  CHECK(cfg->state.sync);
  // Every name reads back as the mode it names.
  for (const char* name :
       {"at_least_once", "exactly_once", "exactly_once_transactions", "exactly_once_stamped"}) {
    auto mode = LoadEngineConfig(
        Write(dir, "m.yaml", std::string("processing:\n  guarantee: ") + name + "\n"));
    REQUIRE_OK(mode);
    CHECK(GuaranteeName(mode->guarantee) == name);
  }
  CHECK(LoadEngineConfig(Write(dir, "m.yaml", "processing:\n  guarantee: exactly_once_stamped\n"))
            ->guarantee == Guarantee::kExactlyOnceStamped);
}

TEST_CASE("Model sync is off unless models.sync_interval_ms is set", "[config]") {
  testing::ScratchDir dir;
  auto off = LoadEngineConfig(Write(dir, "c.yaml", "state:\n  sync: true\n"));
  REQUIRE_OK(off);
  CHECK(off->models.sync_interval_ms == 0);
  auto on = LoadEngineConfig(Write(dir, "c.yaml", "models:\n  sync_interval_ms: 2500\n"));
  REQUIRE_OK(on);
  CHECK(on->models.sync_interval_ms == 2500);
}

TEST_CASE("The HTTP servers' listeners load, loopback without a token by default", "[config]") {
  testing::ScratchDir dir;
  auto defaults = LoadEngineConfig(Write(dir, "d.yaml", "metrics_port: 9464\n"));
  REQUIRE_OK(defaults);
  CHECK(defaults->admin.bind_address == "127.0.0.1");
  CHECK(defaults->admin.auth_token_file.empty());
  CHECK(defaults->dashboard.bind_address == "127.0.0.1");
  CHECK(defaults->dashboard.max_connections == 256);
  auto cfg = LoadEngineConfig(Write(dir, "c.yaml",
                                    "admin:\n  bind_address: 0.0.0.0\n"
                                    "  auth_token_file: /etc/crmstream/admin.token\n"
                                    "  allowed_hosts: [engine-1.internal, engine-1]\n"
                                    "  max_connections: 64\n"
                                    "dashboard:\n  bind_address: 10.0.0.5\n"));
  REQUIRE_OK(cfg);
  CHECK(cfg->admin.bind_address == "0.0.0.0");
  CHECK(cfg->admin.auth_token_file == "/etc/crmstream/admin.token");
  CHECK(cfg->admin.allowed_hosts == std::vector<std::string>{"engine-1.internal", "engine-1"});
  CHECK(cfg->admin.max_connections == 64);
  CHECK(cfg->dashboard.bind_address == "10.0.0.5");
  auto bad = LoadEngineConfig(Write(dir, "b.yaml", "admin:\n  max_connections: 0\n"));
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.status().message().find("admin.max_connections") != std::string::npos);
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
       "processing.guarantee: must be at_least_once, exactly_once, exactly_once_transactions or "
       "exactly_once_stamped, not 'twice'"},
      {"state:\n  memory_cap_mb: 1\n", "c.yaml:2:18: state.memory_cap_mb: 1 is out of range"},
      {"worker_threads: -2\n", "c.yaml:1:17: worker_threads: -2 is out of range"},
      {"producer_linger_ms: -1\n", "c.yaml:1:21: producer_linger_ms: -1 is out of range"},
      {"models:\n  sync_interval_ms: -1\n",
       "c.yaml:2:21: models.sync_interval_ms: -1 is out of range"},
      {"models:\n  sync_interval_ms: 5\n",
       "models.sync_interval_ms: must be 0 (off) or at least 100, not 5"},
      {"models:\n  sync_intervl_ms: 500\n", "models.sync_intervl_ms: unknown field"},
      {"processing:\n  guarantee: exactly_once\nmodels:\n  sync_interval_ms: 500\n",
       "models.sync_interval_ms: needs processing.guarantee: at_least_once"},
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

}  // namespace
}  // namespace crmstream::config
