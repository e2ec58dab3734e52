// The model-sync topic among the topics the engine needs: only with
// models.sync_interval_ms > 0, compacted, tied to the application.
#include <algorithm>
#include <catch2/catch.hpp>
#include <string>
#include <utility>
#include <vector>

#include "crmstream/config/engine_config.h"
#include "crmstream/runtime/kafka_wiring.h"

namespace crmstream::runtime {
namespace {

std::vector<kafka::TopicSpec> Named(const std::vector<kafka::TopicSpec>& topics,
                                    const std::string& name) {
  std::vector<kafka::TopicSpec> out;
  for (const kafka::TopicSpec& t : topics) {
    if (t.name == name) out.push_back(t);
  }
  return out;
}

TEST_CASE("The model-sync topic is created only when model sync is on", "[runtime]") {
  config::EngineConfig cfg;
  cfg.kafka.group_id = "crm-app";
  CHECK(ModelSyncTopicName(cfg) == "crm-app.model-sync");
  const size_t off_count = AllTopics(cfg).size();
  CHECK(Named(AllTopics(cfg), "crm-app.model-sync").empty());

  cfg.models.sync_interval_ms = 1000;
  const std::vector<kafka::TopicSpec> on = AllTopics(cfg);
  CHECK(on.size() == off_count + 1);
  const std::vector<kafka::TopicSpec> sync = Named(on, "crm-app.model-sync");
  REQUIRE(sync.size() == 1);
  // Every instance reads the whole topic: one partition is enough, and
  // compaction keeps each partition task's latest chunks without a time limit.
  CHECK(sync[0].partitions == 1);
  const std::pair<std::string, std::string> compact{"cleanup.policy", "compact"};
  const std::pair<std::string, std::string> forever{"retention.ms", "-1"};
  CHECK(std::find(sync[0].configs.begin(), sync[0].configs.end(), compact) !=
        sync[0].configs.end());
  CHECK(std::find(sync[0].configs.begin(), sync[0].configs.end(), forever) !=
        sync[0].configs.end());
}

TEST_CASE("Two applications never share a model-sync topic, and odd group ids stay legal",
          "[runtime]") {
  config::EngineConfig a;
  a.kafka.group_id = "shop/eu";
  config::EngineConfig b;
  b.kafka.group_id = "shop-us";
  CHECK(ModelSyncTopicName(a) == "shop_eu.model-sync");
  CHECK(ModelSyncTopicName(a) != ModelSyncTopicName(b));
}

}  // namespace
}  // namespace crmstream::runtime
