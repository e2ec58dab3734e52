// Pipeline definitions (pipelines/*.yaml) load into the processor's own
// options, and mistakes name the file, the line and the field.
#include "crmstream/pipeline/pipeline_spec.h"

#include <catch2/catch.hpp>
#include <fstream>

#include "support/require_ok.h"
#include "support/test_support.h"

namespace crmstream::pipeline {
namespace {

std::string Write(const testing::ScratchDir& dir, const std::string& name,
                  const std::string& text) {
  auto path = (dir.path() / name).string();
  std::ofstream(path) << text;
  return path;
}

TEST_CASE("The shipped pipeline file loads into the processor's options", "[pipeline]") {
  auto p = LoadPipelineSpec((testing::SourceDir() / "pipelines/crm.yaml").string());
  REQUIRE_OK(p);
  CHECK(p->processor.features.window_days == std::vector<int>{7, 30, 90});
  CHECK(p->processor.models_enabled);
  CHECK(p->processor.models.segments.k == 5);
  // The file states the segmenter's defaults.
  const scoring::SegmenterOptions segmenter_defaults;
  CHECK(p->processor.models.segments.move_margin == segmenter_defaults.move_margin);
  CHECK(p->processor.models.segments.move_after_days == segmenter_defaults.move_after_days);
  CHECK(p->processor.models.segments.reseed_after_points == segmenter_defaults.reseed_after_points);
  CHECK(p->processor.models.churn.alerts.enter_probability == 0.4);
  CHECK(p->processor.models.churn.alerts.exit_probability == 0.3);
  CHECK(p->processor.models.churn.alerts.cooldown_ms == 168 * 3600000LL);
  CHECK(p->processor.models.churn.gate.min_positive_labels == 30);
  CHECK(p->processor.models.churn.gate.min_negative_labels == 200);
  CHECK(p->processor.models.churn.gate.auc_floor == 0.7);
  CHECK(p->processor.emit_churn_alerts);
  CHECK(p->processor.centroid_interval_ms == 15 * 60000);
  // The file states the customer-anomaly defaults (README, "Customer anomalies").
  const scoring::BehaviourOptions defaults;
  CHECK(p->processor.models.behaviour.severity_rarity == defaults.severity_rarity);
  CHECK(p->processor.models.behaviour.budget_per_1000_per_day == 1.0);
}

TEST_CASE("The basket models are switched and tuned in the pipeline file", "[pipeline]") {
  auto shipped = LoadPipelineSpec((testing::SourceDir() / "pipelines/crm.yaml").string());
  REQUIRE_OK(shipped);
  CHECK(shipped->processor.models.churn.churn_model == scoring::ChurnModelKind::kLogistic);
  CHECK(shipped->processor.associations_enabled);
  CHECK_FALSE(shipped->processor.recommendations_enabled);  // costly: opt in
  CHECK(shipped->processor.associations.window_ms == 30 * 86400000LL);
  CHECK(shipped->processor.association_interval_ms == 1440 * 60000LL);
  CHECK(shipped->processor.association_max_rules == 100);

  testing::ScratchDir dir;
  auto p = LoadPipelineSpec(
      Write(dir, "p.yaml",
            "models:\n  churn_model: random_forest\n  associations:\n    window_days: 7\n"
            "    max_pairs: 4096\n"
            "    min_support: 0.01\n    min_confidence: 0.5\n    min_lift: 2\n"
            "    min_pair_count: 5\n  recommendations:\n    enabled: true\n    top_n: 5\n"
            "outputs:\n  associations: false\n  association_interval_minutes: 60\n"
            "  association_max_rules: 50\n"));
  REQUIRE_OK(p);
  const ProcessorOptions& o = p->processor;
  CHECK(o.models.churn.churn_model == scoring::ChurnModelKind::kRandomForest);
  auto forest_of_model_trees =
      LoadPipelineSpec(Write(dir, "q.yaml", "models:\n  churn_model: model_forest\n"));
  REQUIRE_OK(forest_of_model_trees);
  CHECK(forest_of_model_trees->processor.models.churn.churn_model ==
        scoring::ChurnModelKind::kModelForest);
  CHECK(o.associations_enabled);
  CHECK(o.associations.window_ms == 7 * 86400000LL);
  CHECK(o.associations.max_pairs == 4096);
  CHECK(o.association_floors.min_support == 0.01);
  CHECK(o.association_floors.min_confidence == 0.5);
  CHECK(o.association_floors.min_lift == 2.0);
  CHECK(o.association_floors.min_pair_count == 5);
  CHECK(o.recommendations_enabled);
  CHECK(o.recommendations_top_n == 5);
  CHECK_FALSE(o.emit_associations);
  CHECK(o.association_interval_ms == 60 * 60000LL);
  CHECK(o.association_max_rules == 50);

  p = LoadPipelineSpec(Write(dir, "p.yaml", "models:\n  associations:\n    max_pairs: 8\n"));
  REQUIRE_FALSE(p.ok());
  CHECK_THAT(p.status().message(),
             Catch::Contains("p.yaml:3:16: models.associations.max_pairs: 8 is out of range"));
  p = LoadPipelineSpec(Write(dir, "p.yaml", "models:\n  churn_model: forest\n"));
  REQUIRE_FALSE(p.ok());
  CHECK_THAT(p.status().message(), Catch::Contains("models.churn_model"));
  p = LoadPipelineSpec(Write(dir, "p.yaml", "models:\n  recommendations:\n    topn: 3\n"));
  REQUIRE_FALSE(p.ok());
  CHECK_THAT(p.status().message(), Catch::Contains("p.yaml:3:5: models.recommendations.topn"));
}

TEST_CASE("The segments' hysteresis is configured under models.segmentation, with bounds",
          "[pipeline]") {
  testing::ScratchDir dir;
  auto p = LoadPipelineSpec(Write(dir, "s.yaml",
                                  "models:\n  segments: 4\n  segmentation:\n"
                                  "    move_margin: 0\n    move_after_days: 1\n"
                                  "    reseed_after_points: 0\n"));
  REQUIRE_OK(p);
  const scoring::SegmenterOptions& segments = p->processor.models.segments;
  CHECK(segments.k == 4);
  CHECK(segments.move_margin == 0.0);
  CHECK(segments.move_after_days == 1);
  CHECK(segments.reseed_after_points == 0);
  REQUIRE_OK(segments.Validate());

  p = LoadPipelineSpec(Write(dir, "s.yaml", "models:\n  segmentation:\n    move_margin: 1\n"));
  REQUIRE_FALSE(p.ok());
  CHECK_THAT(p.status().message(), Catch::Contains("s.yaml:3:18: models.segmentation.move_margin"));
  p = LoadPipelineSpec(Write(dir, "s.yaml", "models:\n  segmentation:\n    move_after_days: 0\n"));
  REQUIRE_FALSE(p.ok());
  CHECK_THAT(p.status().message(), Catch::Contains("models.segmentation.move_after_days"));
}

TEST_CASE("The segments and the behaviour anomaly score are switched in the pipeline file",
          "[pipeline]") {
  testing::ScratchDir dir;
  auto p = LoadPipelineSpec(Write(dir, "m.yaml", "name: m\n"));
  REQUIRE_OK(p);
  CHECK(p->processor.models.segments_enabled);
  CHECK(p->processor.models.behaviour_enabled);

  p = LoadPipelineSpec(Write(dir, "m.yaml",
                             "models:\n  segmentation:\n    enabled: false\n"
                             "  behaviour:\n    enabled: false\n"));
  REQUIRE_OK(p);
  CHECK_FALSE(p->processor.models.segments_enabled);
  CHECK_FALSE(p->processor.models.behaviour_enabled);
  CHECK(p->processor.models_enabled);  // the churn and value models stay on

  p = LoadPipelineSpec(Write(dir, "m.yaml", "models:\n  behaviour:\n    enabled: maybe\n"));
  REQUIRE_FALSE(p.ok());
  CHECK_THAT(p.status().message(), Catch::Contains("m.yaml:3:14: models.behaviour.enabled"));
  p = LoadPipelineSpec(Write(dir, "m.yaml", "models:\n  behaviour:\n    level: 1\n"));
  REQUIRE_FALSE(p.ok());
  CHECK_THAT(p.status().message(), Catch::Contains("models.behaviour.level: unknown field"));
}

TEST_CASE("The churn gate is configured under alerts.churn.gate, with bounds", "[pipeline]") {
  testing::ScratchDir dir;
  auto p = LoadPipelineSpec(Write(dir, "g.yaml",
                                  "alerts:\n  churn:\n    gate:\n      min_positive_labels: 5\n"
                                  "      min_negative_labels: 50\n      auc_floor: 0.8\n"));
  REQUIRE_OK(p);
  CHECK(p->processor.models.churn.gate.min_positive_labels == 5);
  CHECK(p->processor.models.churn.gate.min_negative_labels == 50);
  CHECK(p->processor.models.churn.gate.auc_floor == 0.8);
  p = LoadPipelineSpec(
      Write(dir, "h.yaml", "alerts:\n  churn:\n    gate:\n      auc_floor: 0.3\n"));
  REQUIRE_FALSE(p.ok());
  CHECK_THAT(p.status().message(), Catch::Contains("auc_floor"));
}

TEST_CASE("Pipeline mistakes name the file, line and field", "[pipeline]") {
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

TEST_CASE("Alert and output cadence fields load and are validated", "[pipeline]") {
  testing::ScratchDir dir;
  auto p =
      LoadPipelineSpec(Write(dir, "p.yaml",
                             "alerts:\n  churn:\n    enter_probability: 0.6\n"
                             "    exit_probability: 0.4\n    high_probability: 0.75\n"
                             "    critical_probability: 0.9\n    cooldown_hours: 24\n"
                             "outputs:\n  segments: false\n  centroid_interval_minutes: 60\n"
                             "  correlation_interval_minutes: 5\n  metric_anomaly_level: 0.95\n"
                             "  metric_shift_change: 0.5\n  metric_shift_evidence: 20\n"
                             "  metric_point_anomalies: true\n"));
  REQUIRE_OK(p);
  CHECK(p->processor.models.churn.alerts.enter_probability == 0.6);
  CHECK(p->processor.models.churn.alerts.exit_probability == 0.4);
  CHECK(p->processor.models.churn.alerts.high_probability == 0.75);
  CHECK(p->processor.models.churn.alerts.critical_probability == 0.9);
  CHECK(p->processor.models.churn.alerts.cooldown_ms == 24 * 3600000LL);
  CHECK_FALSE(p->processor.emit_segments);
  CHECK(p->processor.emit_anomalies);
  CHECK(p->processor.centroid_interval_ms == 60 * 60000);
  CHECK(p->processor.correlation_interval_ms == 5 * 60000);
  CHECK(p->processor.minute_metrics.anomaly_level == 0.95);
  CHECK(p->processor.minute_metrics.shift.change == 0.5);
  CHECK(p->processor.minute_metrics.shift.threshold == 20);
  CHECK(p->processor.minute_metrics.point_anomalies);

  // A shift of 100% or more down cannot be looked for.
  p = LoadPipelineSpec(Write(dir, "p.yaml", "outputs:\n  metric_shift_change: 1.0\n"));
  REQUIRE_FALSE(p.ok());
  CHECK_THAT(p.status().message(), Catch::Contains("metric_shift_change"));

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

TEST_CASE("customer_scores_every chooses when customer-scores records leave", "[pipeline]") {
  using Cadence = ProcessorOptions::ScoresCadence;
  testing::ScratchDir dir;
  auto p = LoadPipelineSpec(Write(dir, "p.yaml", "outputs:\n  customer_scores: true\n"));
  REQUIRE_OK(p);
  CHECK(p->processor.customer_scores_cadence == Cadence::kCommit);
  p = LoadPipelineSpec(Write(dir, "p.yaml", "outputs:\n  customer_scores_every: batch\n"));
  REQUIRE_OK(p);
  CHECK(p->processor.customer_scores_cadence == Cadence::kBatch);
  p = LoadPipelineSpec(Write(dir, "p.yaml", "outputs:\n  customer_scores_every: event\n"));
  REQUIRE_OK(p);
  CHECK(p->processor.customer_scores_cadence == Cadence::kEvent);
  p = LoadPipelineSpec(Write(dir, "p.yaml", "outputs:\n  customer_scores_every: second\n"));
  REQUIRE_FALSE(p.ok());
  CHECK_THAT(p.status().message(), Catch::Contains("p.yaml:2:"));
  CHECK_THAT(p.status().message(), Catch::Contains("outputs.customer_scores_every"));
}

TEST_CASE("The customer-anomaly severities and budget load and are validated", "[pipeline]") {
  testing::ScratchDir dir;
  auto p = LoadPipelineSpec(
      Write(dir, "p.yaml",
            "outputs:\n  customer_anomaly_severity_rarity:\n    warning: 4\n    high: 7\n"
            "    critical: 10\n  customer_anomalies_per_1000_per_day: 2.5\n"));
  REQUIRE_OK(p);
  const scoring::BehaviourOptions& b = p->processor.models.behaviour;
  CHECK(b.severity_rarity[0] == 4);
  CHECK(b.severity_rarity[1] == 7);
  CHECK(b.severity_rarity[2] == 10);
  CHECK(b.budget_per_1000_per_day == 2.5);
  p = LoadPipelineSpec(Write(dir, "p.yaml",
                             "outputs:\n  customer_anomaly_severity_rarity:\n    warning: 8\n"
                             "    high: 7\n"));
  REQUIRE_FALSE(p.ok());
  CHECK_THAT(p.status().message(), Catch::Contains("warning < high < critical"));
  p = LoadPipelineSpec(
      Write(dir, "p.yaml", "outputs:\n  customer_anomalies_per_1000_per_day: 0\n"));
  REQUIRE_FALSE(p.ok());
  CHECK_THAT(p.status().message(), Catch::Contains("outputs.customer_anomalies_per_1000_per_day"));
}

TEST_CASE("An absent field keeps the module option's own default", "[pipeline]") {
  testing::ScratchDir dir;
  auto p = LoadPipelineSpec(Write(dir, "p.yaml", "name: minimal\n"));
  REQUIRE_OK(p);
  const ProcessorOptions defaults;
  CHECK(p->name == "minimal");
  CHECK(p->processor.dedup_capacity == defaults.dedup_capacity);
  CHECK(p->processor.decoder.max_message_bytes == defaults.decoder.max_message_bytes);
  CHECK(p->processor.models.churn.alerts.cooldown_ms == defaults.models.churn.alerts.cooldown_ms);
  CHECK(p->processor.models.churn.horizon_days == defaults.models.churn.horizon_days);
  CHECK(p->processor.centroid_interval_ms == defaults.centroid_interval_ms);
  CHECK(p->processor.features.window_days == defaults.features.window_days);
}

}  // namespace
}  // namespace crmstream::pipeline
