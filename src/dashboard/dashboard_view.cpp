#include "crmstream/dashboard/dashboard_view.h"

#include <simdjson.h>

#include <algorithm>
#include <cmath>
#include <initializer_list>

#include "crmstream/common/json_writer.h"

namespace crmstream::dashboard {

namespace {

using simdjson::dom::element;

// Values are read leniently: a missing or mistyped field yields the fallback,
// so producers may add fields and consumers keep working.
double NumberOr(element e, std::string_view key, double fallback) {
  double v;
  if (e[key].get_double().get(v) != simdjson::SUCCESS) return fallback;
  return v;
}
int64_t IntOr(element e, std::string_view key, int64_t fallback) {
  int64_t v;
  if (e[key].get_int64().get(v) == simdjson::SUCCESS) return v;
  double d;
  if (e[key].get_double().get(d) == simdjson::SUCCESS && std::isfinite(d)) {
    return static_cast<int64_t>(d);
  }
  return fallback;
}
std::string StringOr(element e, std::string_view key, std::string_view fallback = {}) {
  std::string_view v;
  if (e[key].get_string().get(v) != simdjson::SUCCESS) return std::string(fallback);
  return std::string(v);
}
// An int field that may be null ("segment", "from"): nullopt when absent or null.
std::optional<int64_t> OptionalInt(element e, std::string_view key) {
  int64_t v;
  if (e[key].get_int64().get(v) != simdjson::SUCCESS) return std::nullopt;
  return v;
}

struct Contribution {
  std::string feature;
  double value = 0;
  double contribution = 0;
};

struct Alert {
  std::string alert_id;
  std::string customer_id;
  int64_t as_of_ms = 0;
  std::string severity;
  double churn_probability = 0;
  double threshold = 0;
  std::vector<Contribution> contributions;  // at most 3
  std::string trigger_type;
};

// One observed/expected pair of an anomaly.
struct Deviation {
  std::string name;
  double observed = 0;
  double expected = 0;
};

struct Anomaly {
  bool is_metric = false;
  std::string subject;  // customer id or metric name
  int64_t as_of_ms = 0;
  double score = 0;
  std::vector<Deviation> deviations;  // at most 3, largest relative deviation first
  // A customer anomaly's severity ("warning", "high", "critical"; "" when
  // absent or unknown). A global anomaly has none: its shift's direction
  // ("up", "down", ""), length in minutes and whether it is sustained say
  // how serious it is.
  std::string_view severity;
  std::string_view direction;
  int64_t minutes = 0;
  bool sustained = false;
};

// One of `known`, or "" (a label from a hostile or newer record is not kept).
std::string_view KnownLabel(element e, std::string_view key,
                            std::initializer_list<std::string_view> known) {
  std::string_view v;
  if (e[key].get_string().get(v) != simdjson::SUCCESS) return {};
  for (std::string_view k : known) {
    if (v == k) return k;
  }
  return {};
}

struct Centroid {
  int64_t segment = 0;
  int64_t size = 0;
  std::vector<double> center;
};

// Latest known state of one customer: two bytes beside the id, so a
// million customers cost about 70 MB with the map's overhead.
struct CustomerEntry {
  static constexpr uint8_t kUnscored = 255;  // no probability published (model warming up)
  uint8_t risk_bin = kUnscored;
  int8_t segment = -1;  // -1: none
};

constexpr size_t kMaxSegments = 64;

}  // namespace

struct DashboardView::State {
  DashboardViewOptions options;
  simdjson::dom::parser parser;

  std::array<uint64_t, kOutputKindCount> records{};
  std::array<uint64_t, kOutputKindCount> malformed{};

  // Churn risk: one bin per customer, histogram maintained on replacement.
  std::unordered_map<std::string, CustomerEntry> customers;
  uint64_t customers_untracked = 0;  // distinct ids beyond max_customers (approximate)
  std::vector<uint64_t> histogram;
  std::array<uint64_t, kMaxSegments> segment_tally{};
  int64_t scores_as_of_ms = 0;
  uint64_t unscored = 0;  // customers whose latest record has no probability
  // The churn model's gate as the latest customer-scores record states it.
  std::string model_state;  // empty until a record says
  int64_t model_labels = 0;
  int64_t model_closings = 0;
  double model_auc = 0.5;

  std::deque<Alert> alerts;  // newest first
  uint64_t alerts_total = 0;
  // Per customer: (alert id, published JSON), newest first; customers in
  // first-alerted order for eviction.
  std::unordered_map<std::string, std::deque<std::pair<std::string, std::string>>> customer_alerts;
  std::deque<std::string> alerted_order;
  std::map<std::string, uint64_t> alerts_by_severity;

  int64_t centroids_as_of_ms = 0;
  int64_t centroids_k = 0;
  std::vector<std::string> centroid_features;
  std::vector<Centroid> centroids;
  uint64_t segment_changes = 0;

  std::deque<Anomaly> anomalies;  // newest first
  uint64_t anomalies_total = 0;

  bool has_correlations = false;
  int64_t correlations_as_of_ms = 0;
  int64_t correlations_window_minutes = 0;
  std::vector<std::string> correlation_metrics;
  std::vector<std::vector<std::optional<double>>> correlation_matrix;

  std::deque<EngineSample> engine_samples;  // oldest first

  bool feed_connected = false;
  std::string feed_detail = "starting";

  int Bin(double p) const {
    const int bins = static_cast<int>(histogram.size());
    if (!(p >= 0)) p = 0;  // also NaN
    int b = static_cast<int>(p * bins);
    return std::clamp(b, 0, bins - 1);
  }

  bool ApplyScore(element doc) {
    std::string_view id;
    if (doc["customer_id"].get_string().get(id) != simdjson::SUCCESS) return false;
    // A null probability is a model still warming up: the customer counts,
    // but in no risk bin.
    double p = NAN;
    const bool scored = doc["churn_probability"].get_double().get(p) == simdjson::SUCCESS;
    if (scored ? !std::isfinite(p) : !doc["churn_probability"].is_null()) return false;
    element model;
    if (doc["churn_model"].get(model) == simdjson::SUCCESS) {
      model_state = StringOr(model, "state");
      model_labels = IntOr(model, "labels", 0);
      model_closings = IntOr(model, "closings", 0);
      model_auc = NumberOr(model, "auc", 0.5);
    }
    const auto seg = OptionalInt(doc, "segment");
    const int8_t segment = seg && *seg >= 0 && *seg < static_cast<int64_t>(kMaxSegments)
                               ? static_cast<int8_t>(*seg)
                               : -1;
    scores_as_of_ms = std::max(scores_as_of_ms, IntOr(doc, "as_of_ms", 0));
    const uint8_t bin = scored ? static_cast<uint8_t>(Bin(p)) : CustomerEntry::kUnscored;
    auto it = customers.find(std::string(id));  // a lookup key; not on the engine's hot path
    if (it == customers.end()) {
      if (customers.size() >= options.max_customers) {
        ++customers_untracked;
        return true;
      }
      it = customers.emplace(std::string(id), CustomerEntry{}).first;
    } else {
      if (it->second.risk_bin == CustomerEntry::kUnscored) {
        --unscored;
      } else {
        --histogram[it->second.risk_bin];
      }
      if (it->second.segment >= 0) --segment_tally[static_cast<size_t>(it->second.segment)];
    }
    it->second.risk_bin = bin;
    it->second.segment = segment;
    if (bin == CustomerEntry::kUnscored) {
      ++unscored;
    } else {
      ++histogram[bin];
    }
    if (segment >= 0) ++segment_tally[static_cast<size_t>(segment)];
    return true;
  }

  void RememberAlert(element doc, std::string_view value) {
    const std::string customer = StringOr(doc, "customer_id");
    const std::string alert_id = StringOr(doc, "alert_id");
    auto [it, inserted] = customer_alerts.try_emplace(customer);
    if (inserted) {
      alerted_order.push_back(customer);
      while (customer_alerts.size() > options.max_alerted_customers) {
        customer_alerts.erase(alerted_order.front());
        alerted_order.pop_front();
      }
      it = customer_alerts.find(customer);
      if (it == customer_alerts.end()) return;  // a cap of 0 keeps nothing
    }
    auto& list = it->second;
    // A re-sent alert (same id) replaces its earlier copy.
    std::erase_if(list, [&](const auto& a) { return !alert_id.empty() && a.first == alert_id; });
    list.emplace_front(alert_id, std::string(value));
    while (list.size() > options.alerts_per_customer) list.pop_back();
  }

  bool ApplyAlert(element doc) {
    Alert a;
    a.customer_id = StringOr(doc, "customer_id");
    a.alert_id = StringOr(doc, "alert_id");
    if (a.customer_id.empty()) return false;
    a.as_of_ms = IntOr(doc, "as_of_ms", 0);
    a.severity = StringOr(doc, "severity", "warning");
    a.churn_probability = NumberOr(doc, "churn_probability", NAN);
    a.threshold = NumberOr(doc, "threshold", NAN);
    simdjson::dom::array contributions;
    if (doc["contributions"].get_array().get(contributions) == simdjson::SUCCESS) {
      for (element c : contributions) {
        if (a.contributions.size() >= 3) break;
        Contribution x;
        x.feature = StringOr(c, "feature");
        x.value = NumberOr(c, "value", NAN);
        x.contribution = NumberOr(c, "contribution", NAN);
        if (!x.feature.empty()) a.contributions.push_back(std::move(x));
      }
    }
    element trigger;
    if (doc["trigger"].get(trigger) == simdjson::SUCCESS)
      a.trigger_type = StringOr(trigger, "type");
    // The same episode re-sent (at-least-once delivery, engine restart)
    // replaces its earlier entry rather than appearing twice.
    if (!a.alert_id.empty()) {
      auto same = std::find_if(alerts.begin(), alerts.end(),
                               [&](const Alert& x) { return x.alert_id == a.alert_id; });
      if (same != alerts.end()) {
        *same = std::move(a);
        return true;
      }
    }
    ++alerts_total;
    ++alerts_by_severity[a.severity];
    if (alerts_by_severity.size() > 8) alerts_by_severity.erase(a.severity);  // bound odd labels
    alerts.push_front(std::move(a));
    while (alerts.size() > options.max_alerts) alerts.pop_back();
    return true;
  }

  bool ApplySegments(element doc) {
    std::string_view kind;
    if (doc["kind"].get_string().get(kind) != simdjson::SUCCESS) return false;
    if (kind == "segment_change") {
      ++segment_changes;
      return true;
    }
    if (kind != "centroids") return true;  // a kind added later: ignored
    const int64_t as_of = IntOr(doc, "as_of_ms", 0);
    if (as_of < centroids_as_of_ms) return true;  // an older snapshot arriving late
    std::vector<std::string> features;
    simdjson::dom::array names;
    if (doc["features"].get_array().get(names) == simdjson::SUCCESS) {
      for (element n : names) {
        std::string_view s;
        if (n.get_string().get(s) == simdjson::SUCCESS && features.size() < 64) {
          features.emplace_back(s);
        }
      }
    }
    std::vector<Centroid> parsed;
    simdjson::dom::array list;
    if (doc["centroids"].get_array().get(list) != simdjson::SUCCESS) return false;
    for (element c : list) {
      if (parsed.size() >= kMaxSegments) break;
      Centroid x;
      x.segment = IntOr(c, "segment", static_cast<int64_t>(parsed.size()));
      x.size = IntOr(c, "size", 0);
      simdjson::dom::array center;
      if (c["center"].get_array().get(center) == simdjson::SUCCESS) {
        for (element v : center) {
          double d;
          x.center.push_back(v.get_double().get(d) == simdjson::SUCCESS ? d : NAN);
          if (x.center.size() >= features.size()) break;
        }
      }
      parsed.push_back(std::move(x));
    }
    centroids_as_of_ms = as_of;
    centroids_k = IntOr(doc, "k", static_cast<int64_t>(parsed.size()));
    centroid_features = std::move(features);
    centroids = std::move(parsed);
    return true;
  }

  static void ReadDeviations(element doc, std::vector<Deviation>* out) {
    element observed, expected;
    if (doc["observed"].get(observed) != simdjson::SUCCESS) return;
    if (doc["expected"].get(expected) != simdjson::SUCCESS) return;
    double o, e;
    if (observed.get_double().get(o) == simdjson::SUCCESS &&
        expected.get_double().get(e) == simdjson::SUCCESS) {
      out->push_back({"", o, e});
      return;
    }
    simdjson::dom::object obs;
    if (observed.get_object().get(obs) != simdjson::SUCCESS) return;
    std::vector<Deviation> all;
    for (auto field : obs) {
      if (all.size() >= 64) break;
      if (field.value.get_double().get(o) != simdjson::SUCCESS) continue;
      if (expected[field.key].get_double().get(e) != simdjson::SUCCESS) continue;
      all.push_back({std::string(field.key), o, e});
    }
    auto relative = [](const Deviation& d) {
      return std::abs(d.observed - d.expected) / std::max(1e-9, std::abs(d.expected) + 1.0);
    };
    std::sort(all.begin(), all.end(),
              [&](const Deviation& a, const Deviation& b) { return relative(a) > relative(b); });
    if (all.size() > 3) all.resize(3);
    *out = std::move(all);
  }

  bool ApplyAnomaly(element doc) {
    std::string_view kind;
    if (doc["kind"].get_string().get(kind) != simdjson::SUCCESS) return false;
    Anomaly a;
    if (kind == "metric") {
      a.is_metric = true;
      a.subject = StringOr(doc, "metric");
      a.direction = KnownLabel(doc, "direction", {"up", "down"});
      a.minutes = std::max<int64_t>(0, IntOr(doc, "minutes", 0));
      bool sustained = false;
      a.sustained = doc["sustained"].get_bool().get(sustained) == simdjson::SUCCESS && sustained;
    } else if (kind == "customer") {
      a.subject = StringOr(doc, "customer_id");
      a.severity = KnownLabel(doc, "severity", {"warning", "high", "critical"});
    } else {
      return true;  // a kind added later: ignored
    }
    a.as_of_ms = IntOr(doc, "as_of_ms", 0);
    a.score = NumberOr(doc, "score", NAN);
    ReadDeviations(doc, &a.deviations);
    ++anomalies_total;
    anomalies.push_front(std::move(a));
    while (anomalies.size() > options.max_anomalies) anomalies.pop_back();
    return true;
  }

  bool ApplyCorrelations(element doc) {
    simdjson::dom::array metrics, matrix;
    if (doc["metrics"].get_array().get(metrics) != simdjson::SUCCESS) return false;
    if (doc["matrix"].get_array().get(matrix) != simdjson::SUCCESS) return false;
    std::vector<std::string> names;
    for (element m : metrics) {
      std::string_view s;
      if (m.get_string().get(s) != simdjson::SUCCESS || names.size() >= 16) return false;
      names.emplace_back(s);
    }
    std::vector<std::vector<std::optional<double>>> rows;
    for (element row : matrix) {
      simdjson::dom::array cells;
      if (row.get_array().get(cells) != simdjson::SUCCESS || rows.size() >= names.size()) {
        return false;
      }
      std::vector<std::optional<double>> r;
      for (element cell : cells) {
        double v;
        if (cell.get_double().get(v) == simdjson::SUCCESS && std::isfinite(v)) {
          r.push_back(v);
        } else {
          r.push_back(std::nullopt);
        }
        if (r.size() >= names.size()) break;
      }
      rows.push_back(std::move(r));
    }
    has_correlations = true;
    correlations_as_of_ms = IntOr(doc, "as_of_ms", 0);
    correlations_window_minutes = IntOr(doc, "window_minutes", 0);
    correlation_metrics = std::move(names);
    correlation_matrix = std::move(rows);
    return true;
  }
};

DashboardView::DashboardView(DashboardViewOptions options) : state_(std::make_unique<State>()) {
  options.histogram_bins = std::clamp(options.histogram_bins, 1, 200);
  options.max_alerts = std::max<size_t>(options.max_alerts, 1);
  options.max_anomalies = std::max<size_t>(options.max_anomalies, 1);
  state_->options = options;
  state_->histogram.assign(static_cast<size_t>(options.histogram_bins), 0);
}

DashboardView::~DashboardView() = default;

bool DashboardView::Apply(OutputKind topic, std::string_view value) {
  std::lock_guard<std::mutex> lock(mu_);
  State& s = *state_;
  const auto t = static_cast<size_t>(topic);
  ++s.records[t];
  if (topic == OutputKind::kDeadLetter) return true;  // counted only
  element doc;
  bool ok =
      s.parser.parse(value.data(), value.size()).get(doc) == simdjson::SUCCESS && doc.is_object();
  if (ok) {
    switch (topic) {
      case OutputKind::kCustomerScores:
        ok = s.ApplyScore(doc);
        break;
      case OutputKind::kChurnAlerts:
        ok = s.ApplyAlert(doc);
        if (ok) s.RememberAlert(doc, value);
        break;
      case OutputKind::kSegments:
        ok = s.ApplySegments(doc);
        break;
      case OutputKind::kAnomalies:
        ok = s.ApplyAnomaly(doc);
        break;
      case OutputKind::kCorrelations:
        ok = s.ApplyCorrelations(doc);
        break;
      case OutputKind::kDeadLetter:
      case OutputKind::kAssociations:  // counted only
      case OutputKind::kRecommendations:
        break;
    }
  }
  if (!ok) ++s.malformed[t];
  return ok;
}

void DashboardView::AddEngineSample(const EngineSample& sample) {
  std::lock_guard<std::mutex> lock(mu_);
  state_->engine_samples.push_back(sample);
  while (state_->engine_samples.size() > state_->options.max_engine_samples) {
    state_->engine_samples.pop_front();
  }
}

void DashboardView::SetFeedStatus(bool connected, std::string_view detail) {
  std::lock_guard<std::mutex> lock(mu_);
  state_->feed_connected = connected;
  state_->feed_detail.assign(detail);
}

std::array<uint64_t, kOutputKindCount> DashboardView::RecordCounts() const {
  std::lock_guard<std::mutex> lock(mu_);
  return state_->records;
}

namespace {
void OptionalNumber(JsonWriter& w, double v) {
  if (v < 0 || !std::isfinite(v)) {
    w.Null();
  } else {
    w.Double(v);
  }
}
// Three significant digits are plenty for a page and keep the JSON small.
double Round3(double v) {
  if (!std::isfinite(v) || v == 0) return v;
  const double scale = std::pow(10.0, 2 - static_cast<int>(std::floor(std::log10(std::abs(v)))));
  return std::round(v * scale) / scale;
}
}  // namespace

std::string DashboardView::CustomerAlertsJson(std::string_view customer_id) const {
  std::lock_guard<std::mutex> lock(mu_);
  const State& s = *state_;
  std::string out = "[";
  auto it = s.customer_alerts.find(std::string(customer_id));
  if (it != s.customer_alerts.end()) {
    for (const auto& [id, json] : it->second) {
      if (out.size() > 1) out.push_back(',');
      out += json;
    }
  }
  out.push_back(']');
  return out;
}

std::string DashboardView::Snapshot(int64_t now_ms) const {
  std::lock_guard<std::mutex> lock(mu_);
  const State& s = *state_;
  std::string out;
  out.reserve(16384);
  JsonWriter w(&out);
  w.BeginObject();
  w.Field("now_ms", now_ms);

  w.Key("feed");
  w.BeginObject();
  w.Field("connected", s.feed_connected);
  w.Field("detail", std::string_view(s.feed_detail));
  w.Key("records");
  w.BeginObject();
  for (int t = 0; t < kOutputKindCount; ++t) {
    w.Field(schema::kOutputKindNames[static_cast<size_t>(t)], s.records[static_cast<size_t>(t)]);
  }
  w.EndObject();
  uint64_t malformed = 0;
  for (uint64_t m : s.malformed) malformed += m;
  w.Field("malformed", malformed);
  w.EndObject();

  w.Key("risk");
  w.BeginObject();
  w.Field("customers", static_cast<uint64_t>(s.customers.size()));
  w.Field("untracked", s.customers_untracked);
  w.Field("as_of_ms", s.scores_as_of_ms);
  w.Field("unscored", s.unscored);
  // The churn model's alert gate: "warming_up" / "below_floor" / "open"
  // (empty before any record), with its recent labels and AUC.
  w.Key("model");
  w.BeginObject();
  w.Field("state", std::string_view(s.model_state));
  w.Field("labels", s.model_labels);
  w.Field("closings", s.model_closings);
  w.Field("auc", Round3(s.model_auc));
  w.EndObject();
  w.Key("histogram");
  w.BeginArray();
  for (uint64_t c : s.histogram) w.Int(static_cast<int64_t>(c));
  w.EndArray();
  w.EndObject();

  w.Key("alerts");
  w.BeginObject();
  w.Field("total", s.alerts_total);
  w.Key("by_severity");
  w.BeginObject();
  for (const auto& [severity, n] : s.alerts_by_severity) w.Field(severity, n);
  w.EndObject();
  w.Key("recent");
  w.BeginArray();
  for (const Alert& a : s.alerts) {
    w.BeginObject();
    w.Field("alert_id", std::string_view(a.alert_id));
    w.Field("customer_id", std::string_view(a.customer_id));
    w.Field("as_of_ms", a.as_of_ms);
    w.Field("severity", std::string_view(a.severity));
    w.Field("churn_probability", Round3(a.churn_probability));
    w.Field("threshold", Round3(a.threshold));
    w.Field("trigger", std::string_view(a.trigger_type));
    w.Key("contributions");
    w.BeginArray();
    for (const Contribution& c : a.contributions) {
      w.BeginObject();
      w.Field("feature", std::string_view(c.feature));
      w.Field("value", Round3(c.value));
      w.Field("contribution", Round3(c.contribution));
      w.EndObject();
    }
    w.EndArray();
    w.EndObject();
  }
  w.EndArray();
  w.EndObject();

  w.Key("segments");
  w.BeginObject();
  w.Field("as_of_ms", s.centroids_as_of_ms);
  w.Field("k", s.centroids_k);
  w.Field("changes", s.segment_changes);
  w.Key("features");
  w.BeginArray();
  for (const auto& f : s.centroid_features) w.String(f);
  w.EndArray();
  w.Key("centroids");
  w.BeginArray();
  for (const Centroid& c : s.centroids) {
    w.BeginObject();
    w.Field("segment", c.segment);
    w.Field("size", c.size);
    w.Key("center");
    w.BeginArray();
    for (double v : c.center) w.Double(Round3(v));
    w.EndArray();
    w.EndObject();
  }
  w.EndArray();
  // Sizes from the customers' latest scores: available before the first
  // centroid snapshot arrives.
  w.Key("sizes_from_scores");
  w.BeginArray();
  for (size_t i = 0; i < kMaxSegments; ++i) {
    if (s.segment_tally[i] == 0) continue;
    w.BeginObject();
    w.Field("segment", static_cast<int64_t>(i));
    w.Field("size", s.segment_tally[i]);
    w.EndObject();
  }
  w.EndArray();
  w.EndObject();

  w.Key("anomalies");
  w.BeginObject();
  w.Field("total", s.anomalies_total);
  w.Key("recent");
  w.BeginArray();
  for (const Anomaly& a : s.anomalies) {
    w.BeginObject();
    w.Field("kind", a.is_metric ? std::string_view("metric") : std::string_view("customer"));
    w.Field("subject", std::string_view(a.subject));
    w.Field("as_of_ms", a.as_of_ms);
    w.Field("score", Round3(a.score));
    // Absent labels are null.
    auto label = [&](std::string_view key, std::string_view v) {
      w.Key(key);
      if (v.empty()) {
        w.Null();
      } else {
        w.String(v);
      }
    };
    if (a.is_metric) {
      label("direction", a.direction);
      w.Field("minutes", a.minutes);
      w.Field("sustained", a.sustained);
    } else {
      label("severity", a.severity);
    }
    w.Key("deviations");
    w.BeginArray();
    for (const Deviation& d : a.deviations) {
      w.BeginObject();
      w.Field("name", std::string_view(d.name));
      w.Field("observed", Round3(d.observed));
      w.Field("expected", Round3(d.expected));
      w.EndObject();
    }
    w.EndArray();
    w.EndObject();
  }
  w.EndArray();
  w.EndObject();

  w.Key("correlations");
  if (!s.has_correlations) {
    w.Null();
  } else {
    w.BeginObject();
    w.Field("as_of_ms", s.correlations_as_of_ms);
    w.Field("window_minutes", s.correlations_window_minutes);
    w.Key("metrics");
    w.BeginArray();
    for (const auto& m : s.correlation_metrics) w.String(m);
    w.EndArray();
    w.Key("matrix");
    w.BeginArray();
    for (const auto& row : s.correlation_matrix) {
      w.BeginArray();
      for (const auto& cell : row) {
        if (cell) {
          w.Double(Round3(*cell));
        } else {
          w.Null();
        }
      }
      w.EndArray();
    }
    w.EndArray();
    w.EndObject();
  }

  w.Key("engine");
  w.BeginObject();
  const bool reachable = !s.engine_samples.empty() && s.engine_samples.back().engine_reachable;
  w.Field("reachable", reachable);
  w.Key("samples");
  w.BeginArray();
  for (const EngineSample& e : s.engine_samples) {
    w.BeginArray();
    w.Int(e.wall_ms);
    OptionalNumber(w, Round3(e.events_per_second));
    OptionalNumber(w, Round3(e.lag));
    OptionalNumber(w, Round3(e.outputs_per_second));
    w.EndArray();
  }
  w.EndArray();
  w.EndObject();

  w.EndObject();
  return out;
}

}  // namespace crmstream::dashboard
