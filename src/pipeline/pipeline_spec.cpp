#include "crmstream/pipeline/pipeline_spec.h"

#include <algorithm>
#include <array>
#include <limits>

#include "crmstream/config/yaml_fields.h"

namespace crmstream::pipeline {
namespace {

constexpr int64_t kMillisPerMinute = 60'000;
constexpr int64_t kMillisPerHour = 3'600'000;
constexpr int64_t kMillisPerDay = 86'400'000;

// Reads a count of `unit_ms` (minutes, hours) into a millisecond field,
// keeping its default when the key is absent.
void ReadDuration(config::YamlFields& f, const std::string& key, int64_t unit_ms, int min, int max,
                  int64_t* ms) {
  int units = static_cast<int>(*ms / unit_ms);
  f.Read(key, &units, min, max);
  *ms = int64_t{units} * unit_ms;
}

void ReadSize(config::YamlFields& f, const std::string& key, int min, int max, size_t* out) {
  int value = static_cast<int>(std::min<size_t>(*out, static_cast<size_t>(max)));
  f.Read(key, &value, min, max);
  *out = static_cast<size_t>(value);
}

void ReadCount(config::YamlFields& f, const std::string& key, int min, int max, uint32_t* out) {
  int value = static_cast<int>(std::min<uint32_t>(*out, static_cast<uint32_t>(max)));
  f.Read(key, &value, min, max);
  *out = static_cast<uint32_t>(value);
}

// Reads one of `names` into an enum whose values index them.
template <typename Enum, size_t N>
void ReadEnum(config::YamlFields& f, const std::string& key,
              const std::array<std::string_view, N>& names, Enum* out) {
  std::string name(names[static_cast<size_t>(*out)]);
  f.ReadChoice(key, &name, {names.begin(), names.end()});
  const auto it = std::find(names.begin(), names.end(), name);
  if (it != names.end()) *out = static_cast<Enum>(it - names.begin());
}

constexpr std::array<std::string_view, 3> kScoresCadenceNames = {"commit", "batch", "event"};

}  // namespace

Result<PipelineSpec> LoadPipelineSpec(const std::string& path) {
  CRM_ASSIGN_OR_RETURN(YAML::Node root, config::LoadYamlFile(path));
  PipelineSpec p;
  p.file = path;
  ProcessorOptions& o = p.processor;
  config::YamlFields f(path, root);
  f.Read("name", &p.name);
  f.ReadObject("validation", [&](config::YamlFields& v) {
    v.Read("max_amount", &o.decoder.max_amount, 0.0, 1e15);
    v.Read("min_timestamp_ms", &o.decoder.min_timestamp_ms, 0, std::numeric_limits<int64_t>::max());
    v.Read("max_timestamp_ms", &o.decoder.max_timestamp_ms, 0, std::numeric_limits<int64_t>::max());
    // <= 0 disables the check (docs/events.md warns against it).
    v.Read("max_future_skew_ms", &o.decoder.max_future_skew_ms, std::numeric_limits<int64_t>::min(),
           std::numeric_limits<int64_t>::max());
    ReadSize(v, "max_message_bytes", 64, 16 << 20, &o.decoder.max_message_bytes);
    ReadSize(v, "dedup_window", 0, 100000000, &o.dedup_capacity);
    if (o.decoder.min_timestamp_ms >= o.decoder.max_timestamp_ms) {
      v.Fail("max_timestamp_ms", "must be greater than min_timestamp_ms");
    }
  });
  f.ReadObject("features", [&](config::YamlFields& ft) {
    std::vector<int>& days = o.features.window_days;
    ft.Read("windows_days", &days, 1, 3650);
    if (days.empty()) ft.Fail("windows_days", "at least one window is needed");
    if (!std::is_sorted(days.begin(), days.end()) ||
        std::adjacent_find(days.begin(), days.end()) != days.end()) {
      ft.Fail("windows_days", "windows must be strictly increasing");
    }
  });
  f.ReadObject("models", [&](config::YamlFields& m) {
    m.Read("enabled", &o.models_enabled);
    m.Read("churn_horizon_days", &o.models.churn.horizon_days, 1, 3650);
    m.Read("segments", &o.models.segments.k, 2, 64);
    m.ReadObject("segmentation", [&](config::YamlFields& s) {
      scoring::SegmenterOptions& segments = o.models.segments;
      s.Read("enabled", &o.models.segments_enabled);
      s.Read("move_margin", &segments.move_margin, 0.0, 0.99);
      s.Read("move_after_days", &segments.move_after_days, 1, 365);
      int64_t reseed = static_cast<int64_t>(segments.reseed_after_points);
      s.Read("reseed_after_points", &reseed, 0, int64_t{1} << 40);
      segments.reseed_after_points = static_cast<uint64_t>(reseed);
    });
    m.ReadObject("behaviour",
                 [&](config::YamlFields& b) { b.Read("enabled", &o.models.behaviour_enabled); });
    ReadEnum(m, "churn_model", scoring::kChurnModelKindNames, &o.models.churn.churn_model);
    m.ReadObject("associations", [&](config::YamlFields& a) {
      a.Read("enabled", &o.associations_enabled);
      ReadDuration(a, "window_days", kMillisPerDay, 1, 3650, &o.associations.window_ms);
      ReadCount(a, "max_pairs", 16, 1 << 28, &o.associations.max_pairs);
      ReadCount(a, "max_items", 2, 1 << 24, &o.associations.max_items);
      ReadCount(a, "max_basket_items", 2, 65536, &o.associations.max_basket_items);
      models::RuleFloors& floors = o.association_floors;
      a.Read("min_support", &floors.min_support, 0.0, 1.0);
      a.Read("min_confidence", &floors.min_confidence, 0.0, 1.0);
      a.Read("min_lift", &floors.min_lift, 0.0, 1e9);
      ReadCount(a, "min_pair_count", 1, 1 << 30, &floors.min_pair_count);
    });
    m.ReadObject("recommendations", [&](config::YamlFields& r) {
      models::ItemRecommenderOptions& rec = o.recommender;
      r.Read("enabled", &o.recommendations_enabled);
      ReadSize(r, "top_n", 1, 100, &o.recommendations_top_n);
      r.Read("half_life_days", &rec.half_life_days, 0.0, 36500.0);
      ReadCount(r, "history_size", 1, 4096, &rec.history_size);
      ReadCount(r, "neighbours", 1, 65536, &rec.neighbours);
      ReadCount(r, "max_items", 2, 1 << 24, &rec.max_items);
      ReadCount(r, "max_customers", 1, 1 << 26, &rec.max_customers);
    });
  });
  f.ReadObject("alerts", [&](config::YamlFields& a) {
    a.ReadObject("churn", [&](config::YamlFields& c) {
      alerts::ChurnAlertPolicyOptions& policy = o.models.churn.alerts;
      c.Read("enter_probability", &policy.enter_probability, 1e-9, 1.0);
      c.Read("exit_probability", &policy.exit_probability, 0.0, 1.0);
      c.Read("high_probability", &policy.high_probability, 0.0, 1.0);
      c.Read("critical_probability", &policy.critical_probability, 0.0, 1.0);
      ReadDuration(c, "cooldown_hours", kMillisPerHour, 0, 24 * 3650, &policy.cooldown_ms);
      c.ReadObject("gate", [&](config::YamlFields& g) {
        alerts::ChurnGateOptions& gate = o.models.churn.gate;
        g.Read("min_positive_labels", &gate.min_positive_labels, 1, 1 << 20);
        g.Read("min_negative_labels", &gate.min_negative_labels, 1, 1 << 20);
        g.Read("auc_floor", &gate.auc_floor, 0.5, 1.0);
      });
      if (policy.exit_probability > policy.enter_probability) {
        c.Fail("exit_probability", "must not exceed enter_probability (hysteresis)");
      }
      if (policy.high_probability < policy.enter_probability) {
        c.Fail("high_probability", "must be at least enter_probability");
      }
      if (policy.critical_probability < policy.high_probability) {
        c.Fail("critical_probability", "must be at least high_probability");
      }
    });
  });
  f.ReadObject("outputs", [&](config::YamlFields& out) {
    out.Read("customer_scores", &o.emit_customer_scores);
    ReadEnum(out, "customer_scores_every", kScoresCadenceNames, &o.customer_scores_cadence);
    out.Read("churn_alerts", &o.emit_churn_alerts);
    out.Read("segments", &o.emit_segments);
    out.Read("anomalies", &o.emit_anomalies);
    out.Read("correlations", &o.emit_correlations);
    ReadDuration(out, "centroid_interval_minutes", kMillisPerMinute, 1, 525600,
                 &o.centroid_interval_ms);
    ReadDuration(out, "correlation_interval_minutes", kMillisPerMinute, 1, 525600,
                 &o.correlation_interval_ms);
    out.Read("associations", &o.emit_associations);
    out.Read("recommendations", &o.emit_recommendations);
    ReadDuration(out, "association_interval_minutes", kMillisPerMinute, 1, 525600,
                 &o.association_interval_ms);
    // About 350 bytes a rule: 2,000 stay below Kafka's default 1 MB message.
    ReadSize(out, "association_max_rules", 1, 2000, &o.association_max_rules);
    out.Read("customer_anomaly_level", &o.models.behaviour.alert_level, 1e-9, 1.0);
    out.ReadObject("customer_anomaly_severity_rarity", [&](config::YamlFields& r) {
      scoring::BehaviourOptions& b = o.models.behaviour;
      r.Read("warning", &b.severity_rarity[0], 0.1, 300.0);
      r.Read("high", &b.severity_rarity[1], 0.1, 300.0);
      r.Read("critical", &b.severity_rarity[2], 0.1, 300.0);
      if (!(b.severity_rarity[0] < b.severity_rarity[1] &&
            b.severity_rarity[1] < b.severity_rarity[2])) {
        r.Fail("critical", "levels must increase: warning < high < critical");
      }
    });
    out.Read("customer_anomalies_per_1000_per_day", &o.models.behaviour.budget_per_1000_per_day,
             1e-6, 1000.0);
    out.Read("metric_anomaly_level", &o.minute_metrics.anomaly_level, 1e-9, 1.0);
    out.Read("metric_point_anomalies", &o.minute_metrics.point_anomalies);
    out.Read("metric_shift_change", &o.minute_metrics.shift.change, 1e-6, 0.95);
    out.Read("metric_shift_evidence", &o.minute_metrics.shift.threshold, 1e-6, 1000.0);
  });
  CRM_RETURN_NOT_OK(f.Finish());
  CRM_RETURN_NOT_OK(o.Validate().WithContext(path));
  return p;
}

}  // namespace crmstream::pipeline
