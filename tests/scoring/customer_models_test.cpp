#include "crmstream/scoring/customer_models.h"

#include <catch2/catch.hpp>
#include <cmath>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <unordered_set>
#include <vector>

#include "crmstream/features/feature_store.h"
#include "crmstream/generator/world_generator.h"
#include "crmstream/ingest/json_decoder.h"
#include "crmstream/models/logistic_regression.h"
#include "crmstream/models/standardizer.h"
#include "crmstream/scoring/minute_metrics_monitor.h"
#include "scoring/scoring_test_support.h"
#include "support/require_ok.h"

namespace crmstream::scoring {
namespace {

using ingest::EventType;

constexpr int64_t kMinute = 60'000;
constexpr int64_t kDay = 86'400'000;
constexpr int64_t kStart = 1'767'225'600'000;  // 2026-01-01T00:00:00Z

// Feeds hand-written events through a feature store, the models and the
// minute metrics, the way the event processor does.
class ScriptedStream {
 public:
  explicit ScriptedStream(CustomerModelsOptions options = {},
                          const MinuteMetricsOptions& minute_options = {})
      : store_(std::move(features::FeatureStore::Create(features::FeatureSpec{})).value()),
        models_(std::move(CustomerModels::Create(options, store_.get())).value()),
        minutes_(std::move(MinuteMetricsMonitor::Create(minute_options)).value()) {}

  const features::CustomerFeatures& Send(const std::string& customer, int64_t ts, EventType type,
                                         double amount = 0.0) {
    event_id_ = "e" + std::to_string(++count_);
    customer_ = customer;
    const ingest::Event e = testing::HandEvent(event_id_, customer_, ts, type, amount);
    const features::CustomerFeatures& f = store_->Update(e);
    minutes_.OnEvent(e);
    models_.OnEvent(e, f);
    return f;
  }

  features::FeatureStore& store() { return *store_; }
  CustomerModels& models() { return models_; }
  const MinuteMetricsMonitor& minutes() const { return minutes_; }
  // The models' view of a customer the store knows.
  std::optional<CustomerScores> Scores(std::string_view id) const {
    return models_.Scores(*store_->Find(id));
  }
  std::optional<int64_t> PendingSnapshotMs(std::string_view id) const {
    return models_.churn().PendingSnapshotMs(store_->Find(id)->slot());
  }
  std::span<const float> PendingSnapshot(std::string_view id) const {
    return models_.churn().PendingSnapshot(store_->Find(id)->slot());
  }

 private:
  std::unique_ptr<features::FeatureStore> store_;
  CustomerModels models_;
  MinuteMetricsMonitor minutes_;
  std::string event_id_;
  std::string customer_;
  int count_ = 0;
};

double Pearson(const std::vector<double>& x, const std::vector<double>& y) {
  const double n = static_cast<double>(x.size());
  double mx = 0, my = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    mx += x[i] / n;
    my += y[i] / n;
  }
  double sxy = 0, sxx = 0, syy = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    sxy += (x[i] - mx) * (y[i] - my);
    sxx += (x[i] - mx) * (x[i] - mx);
    syy += (y[i] - my) * (y[i] - my);
  }
  return sxy / std::sqrt(sxx * syy);
}

TEST_CASE("CustomerModelsOptions validation names the field", "[scoring][models]") {
  CustomerModelsOptions o;
  REQUIRE_OK(o.Validate());
  o.churn.horizon_days = 0;
  CHECK(o.Validate().message().find("ChurnValueOptions.horizon_days") != std::string::npos);
  o = {};
  o.segments.k = 0;
  CHECK(o.Validate().message().find("SegmenterOptions.k") != std::string::npos);
  o = {};
  o.churn.value_forgetting_factor = 1.5;
  CHECK(o.Validate().message().find("value_forgetting_factor") != std::string::npos);
  o = {};
  o.behaviour.alert_level = 0;
  CHECK(o.Validate().message().find("BehaviourOptions.alert_level") != std::string::npos);
  // The factories refuse what Validate() refuses.
  auto store = std::move(features::FeatureStore::Create(features::FeatureSpec{})).value();
  o = {};
  o.segments.k = 65;
  const auto models = CustomerModels::Create(o, store.get());
  REQUIRE_FALSE(models.ok());
  CHECK(models.status().code() == StatusCode::kInvalidArgument);
  CHECK(models.status().message().find("SegmenterOptions.k") != std::string::npos);
  MinuteMetricsOptions m;
  m.correlation_window_minutes = 1;
  const auto minutes = MinuteMetricsMonitor::Create(m);
  REQUIRE_FALSE(minutes.ok());
  CHECK(minutes.status().message().find("correlation_window_minutes") != std::string::npos);
}

TEST_CASE("The churn example is the snapshot taken at prediction time, not later features",
          "[scoring][models]") {
  ScriptedStream s;
  models::Standardizer reference_scaling = models::Standardizer::Create(41).value();
  features::FeatureVector snap;
  const int64_t t0 = kStart + kDay;
  const auto& first = s.Send("target", t0, EventType::kPurchase, 40.0);
  first.Snapshot(first.as_of_ms(), &snap);
  REQUIRE(snap.size() == 41);
  reference_scaling.Update(snap);
  std::vector<double> snapshot_t0(41);
  for (size_t i = 0; i < 41; ++i) snapshot_t0[i] = static_cast<float>(snap[i]);

  // Background customers, one varied event each, give the scaling its
  // statistics; each stores that snapshot as its pending example, maturing
  // after the target's.
  for (int i = 0; i < 20; ++i) {
    const EventType type = (i % 3 == 0)   ? EventType::kLogin
                           : (i % 3 == 1) ? EventType::kSupportTicket
                                          : EventType::kPurchase;
    const auto& f = s.Send("bg" + std::to_string(i), t0 + (i + 1) * 3'600'000, type,
                           type == EventType::kPurchase ? 10.0 * (i + 1) : 0.0);
    f.Snapshot(f.as_of_ms(), &snap);
    reference_scaling.Update(snap);
  }

  REQUIRE(s.PendingSnapshotMs("target") == t0);
  const double p_at_snapshot = s.Scores("target")->churn_probability;

  // Much later activity changes the features a lot but not the example.
  for (int k = 0; k < 60; ++k) {
    s.Send("target", t0 + kDay + k * 3'600'000, EventType::kPurchase, 25.0);
    s.Send("target", t0 + kDay + k * 3'600'000 + 1, EventType::kSupportTicket);
  }
  CHECK(s.PendingSnapshotMs("target") == t0);
  const auto stored = s.PendingSnapshot("target");
  REQUIRE(stored.size() == 41);
  for (size_t i = 0; i < 41; ++i) CHECK(stored[i] == static_cast<float>(snapshot_t0[i]));
  CHECK(stored[2] == static_cast<float>(std::log1p(1.0)));  // log1p_frequency at t0

  const auto& late = *s.store().Find("target");
  features::FeatureVector later_features;
  late.Snapshot(late.as_of_ms(), &later_features);
  CHECK(later_features[2] == Approx(std::log1p(61.0)));

  REQUIRE(s.models().quality().churn_positives == 0);
  s.Send("target", t0 + 5 * kDay, EventType::kAccountClosed);
  // The label is known, but trained only when the snapshot's horizon ends.
  CHECK(s.models().quality().churn_positives == 0);
  CHECK(s.models().churn().churn_model().count() == 0);
  s.Send("late", t0 + 30 * kDay + 1, EventType::kPageView);
  const auto q = s.models().quality();
  REQUIRE(q.churn_positives == 1);
  CHECK(q.churn_negatives == 0);
  // The prequential loss is that of the prediction made at snapshot time.
  CHECK(q.churn_log_loss == Approx(-std::log(p_at_snapshot)).epsilon(1e-12));
  CHECK_FALSE(s.PendingSnapshotMs("target").has_value());

  // An independent model trained once on the t0 snapshot (label 1) matches;
  // one trained on the features just before the closing does not.
  models::BayesianLogisticRegressionOptions lo;
  lo.dimension = 41;
  auto from_snapshot = models::BayesianLogisticRegression::Create(lo).value();
  auto from_later = models::BayesianLogisticRegression::Create(lo).value();
  std::vector<double> z(41);
  reference_scaling.Transform(snapshot_t0, z);
  from_snapshot.Update(z, true);
  reference_scaling.Transform(later_features, z);
  from_later.Update(z, true);
  const auto w = s.models().churn().churn_model().weights();
  double max_diff_snapshot = 0, max_diff_later = 0;
  for (size_t i = 0; i < 41; ++i) {
    max_diff_snapshot = std::max(max_diff_snapshot, std::abs(w[i] - from_snapshot.weights()[i]));
    max_diff_later = std::max(max_diff_later, std::abs(w[i] - from_later.weights()[i]));
  }
  CHECK(s.models().churn().churn_model().count() == 1);
  CHECK(max_diff_snapshot < 1e-9);
  CHECK(max_diff_later > 1e-3);
  // A closed account gets no new example and keeps its pre-closing score.
  s.Send("target", t0 + 6 * kDay, EventType::kLogin);
  CHECK_FALSE(s.PendingSnapshotMs("target").has_value());
  CHECK(s.Scores("target")->closed);
}

TEST_CASE("Label 0 resolves when the watermark passes the horizon", "[scoring][models]") {
  CustomerModelsOptions o;
  o.churn.horizon_days = 30;
  ScriptedStream s(o);
  const int64_t t0 = kStart;
  s.Send("a", t0, EventType::kPurchase, 10.0);
  REQUIRE(s.PendingSnapshotMs("a") == t0);
  const double value_at_snapshot = s.Scores("a")->predicted_value;
  s.Send("a", t0 + 2 * kDay, EventType::kPurchase, 20.0);
  s.Send("a", t0 + 3 * kDay, EventType::kRefund, 5.0);
  s.Send("a", t0 + 4 * kDay, EventType::kPurchase, 7.5);
  // Another customer moves the watermark up to exactly the deadline.
  s.Send("b", t0 + 30 * kDay, EventType::kLogin);
  CHECK(s.PendingSnapshotMs("a") == t0);
  CHECK(s.models().quality().churn_negatives == 0);
  CHECK(s.models().quality().value_labels == 0);
  // One millisecond later the example matures without a closing.
  s.Send("b", t0 + 30 * kDay + 1, EventType::kLogin);
  auto q = s.models().quality();
  CHECK(q.churn_negatives == 1);
  CHECK(q.churn_positives == 0);
  CHECK_FALSE(s.PendingSnapshotMs("a").has_value());
  // Spend label: 20 - 5 + 7.5 = 22.5 over the horizon, against the
  // prediction made at the snapshot.
  REQUIRE(q.value_labels == 1);
  CHECK(q.value_rmse == Approx(std::abs(22.5 - value_at_snapshot)).epsilon(1e-12));
  // A closing after the horizon is not a churn label for the old snapshot;
  // the next event stores a new example instead.
  s.Send("a", t0 + 31 * kDay, EventType::kLogin);
  CHECK(s.PendingSnapshotMs("a") == t0 + 31 * kDay);
  s.Send("a", t0 + 70 * kDay, EventType::kAccountClosed);
  q = s.models().quality();
  CHECK(q.churn_positives == 0);
  CHECK(q.churn_negatives == 3);  // a's second example and b's first, both matured
}

TEST_CASE("Global minute buckets match hand-computed sums", "[scoring][models]") {
  MinuteMetricsOptions minute_options;
  minute_options.correlation_min_minutes = 4;  // coefficients from the fourth closed minute
  ScriptedStream s({}, minute_options);
  const int64_t m0 = kStart + 10 * kMinute;
  // Minute 0: revenue 10.5 + 4.5, tickets 2 (ticket + complaint), logins 1.
  s.Send("a", m0 + 1'000, EventType::kPurchase, 10.5);
  s.Send("b", m0 + 2'000, EventType::kPurchase, 4.5);
  s.Send("a", m0 + 3'000, EventType::kLogin);
  s.Send("c", m0 + 4'000, EventType::kSupportTicket);
  s.Send("c", m0 + 59'999, EventType::kComplaint);
  s.Send("c", m0 + 5'000, EventType::kPageView);
  CHECK(s.minutes().latest_minute().minute_start_ms == 0);
  // Minute 1: a refund (not revenue), two logins, revenue 3.
  s.Send("a", m0 + kMinute, EventType::kRefund, 3.0);
  const auto& m = s.minutes().latest_minute();
  CHECK(m.minute_start_ms == m0);
  CHECK(m.revenue == Approx(15.0));
  CHECK(m.tickets == 2.0);
  CHECK(m.logins == 1.0);
  s.Send("b", m0 + kMinute + 10, EventType::kLogin);
  s.Send("c", m0 + kMinute + 20, EventType::kLogin);
  s.Send("c", m0 + kMinute + 30, EventType::kPurchase, 3.0);
  // Minute 3 closes minute 1 and the empty minute 2.
  s.Send("a", m0 + 3 * kMinute + 5, EventType::kPurchase, 8.0);
  CHECK(m.minute_start_ms == m0 + 2 * kMinute);
  // Three minutes in the window: too few for a coefficient.
  CHECK(std::isnan(m.correlation[0 * 3 + 1]));
  CHECK(m.revenue == 0.0);
  CHECK(m.tickets == 0.0);
  CHECK(m.logins == 0.0);
  s.Send("b", m0 + 3 * kMinute + 6, EventType::kComplaint);
  // A late event of minute 1 is counted apart, not added to a closed minute.
  s.Send("b", m0 + kMinute + 50, EventType::kPurchase, 100.0);
  CHECK(s.minutes().late_events() == 1);
  s.Send("a", m0 + 4 * kMinute, EventType::kLogin);
  CHECK(m.minute_start_ms == m0 + 3 * kMinute);
  CHECK(m.revenue == Approx(8.0));
  CHECK(m.tickets == 1.0);
  CHECK(m.logins == 0.0);
  for (double score : {m.revenue_score, m.tickets_score, m.logins_score}) {
    CHECK(score >= 0.0);
    CHECK(score <= 1.0);
  }
  // The correlation over the four closed minutes, computed by hand.
  const std::vector<double> revenue = {15, 3, 0, 8}, tickets = {2, 0, 0, 1}, logins = {1, 2, 0, 0};
  CHECK(m.correlation[0 * 3 + 1] == Approx(Pearson(revenue, tickets)).margin(1e-12));
  CHECK(m.correlation[0 * 3 + 2] == Approx(Pearson(revenue, logins)).margin(1e-12));
  CHECK(m.correlation[1 * 3 + 2] == Approx(Pearson(tickets, logins)).margin(1e-12));
  CHECK(m.correlation[2 * 3 + 1] == Approx(Pearson(tickets, logins)).margin(1e-12));
}

TEST_CASE("Customer scores are written as JSON fields", "[scoring][models]") {
  ScriptedStream s;
  s.Send("a", kStart, EventType::kPurchase, 10.0);
  std::string out;
  JsonWriter w(&out);
  w.BeginObject();
  s.models().WriteCustomerScores(*s.store().Find("a"), &w);
  w.EndObject();
  // No label has matured: the gate is closed, so no probability is
  // published and the record says why.
  CHECK(out.find("\"churn_probability\":null") != std::string::npos);
  CHECK(out.find("\"churn_model\":{\"state\":\"warming_up\",\"labels\":0,\"closings\":0,"
                 "\"auc\":0.5}") != std::string::npos);
  CHECK(out.find("\"predicted_value_30d\":") != std::string::npos);
  CHECK(out.find("\"segment\":null") != std::string::npos);  // k-means not seeded yet
  CHECK(out.find("\"anomaly_score\":") != std::string::npos);

  // A customer of the store the models never saw gets no fields.
  ingest::Event e;
  e.event_id = "only-features";
  e.customer_id = "unknown";
  e.timestamp_ms = kStart;
  e.type = EventType::kLogin;
  const features::CustomerFeatures& unknown = s.store().Update(e);
  CHECK_FALSE(s.models().knows(unknown));
  CHECK_FALSE(s.models().Scores(unknown).has_value());
  out.clear();
  JsonWriter empty(&out);
  empty.BeginObject();
  s.models().WriteCustomerScores(unknown, &empty);
  empty.EndObject();
  CHECK(out == "{}");
}

// A generated world: 2,000 customers, 10% churn per 30 days, 2M records.
TEST_CASE("Churn model learns from late labels on a generated stream", "[scoring][models]") {
  generator::WorldOptions wo;
  wo.customers = 2000;
  wo.churn_rate = 0.1;
  wo.seed = 11;
  REQUIRE_OK_AND_ASSIGN(auto gen_owner, generator::WorldGenerator::Create(wo));
  generator::WorldGenerator& gen = *gen_owner;
  ingest::EventDecoder decoder;
  REQUIRE_OK_AND_ASSIGN(auto store_owner, features::FeatureStore::Create(features::FeatureSpec{}));
  features::FeatureStore& store = *store_owner;
  CustomerModelsOptions mo;
  REQUIRE_OK_AND_ASSIGN(CustomerModels models, CustomerModels::Create(mo, &store));

  std::string key, value;
  ingest::Event e;
  int64_t closings = 0;
  // Customers whose first event was not a closing: each stores an example.
  std::unordered_set<std::string> seen;
  int64_t examples = 0;
  bool checked_before_horizon = false;
  // About 217 days of event time: seven horizons of labels. Debug and
  // sanitizer builds run tens of times slower, so there the stream is
  // shortened to about 45 days and only the label bookkeeping and score
  // ranges are checked, not the learning figures.
#ifdef NDEBUG
  constexpr int kRecords = 2'000'000;
  constexpr bool kLongStream = true;
#else
  constexpr int kRecords = 400'000;
  constexpr bool kLongStream = false;
#endif
  for (int i = 0; i < kRecords; ++i) {
    gen.Next(&key, &value);
    if (decoder.Decode(value, &e).rejected()) continue;
    // Before the first deadline passed no label can have resolved: every
    // example is still pending.
    if (!checked_before_horizon && e.timestamp_ms > wo.start_ms + 29 * kDay) {
      const auto q = models.quality();
      CHECK(q.churn_negatives == 0);
      CHECK(q.churn_positives == 0);
      CHECK(static_cast<int64_t>(q.pending_examples) == examples);
      CHECK(closings > 20);
      checked_before_horizon = true;
    }
    if (seen.emplace(e.customer_id).second && e.type != EventType::kAccountClosed) ++examples;
    if (e.type == EventType::kAccountClosed) ++closings;
    const auto& f = store.Update(e);
    models.OnEvent(e, f);
  }
  REQUIRE(checked_before_horizon);
  const auto q = models.quality();
  const double days = static_cast<double>(q.watermark_ms - wo.start_ms) / kDay;
  INFO("days " << days << " closings " << closings << " auc " << q.churn_auc << " log loss "
               << q.churn_log_loss << " positives " << q.churn_positives << " negatives "
               << q.churn_negatives << " pending " << q.pending_examples << " value rmse "
               << q.value_rmse << " kmeans msd " << q.kmeans_mean_squared_distance
               << " anomaly rate " << q.anomaly_rate);
  REQUIRE(days > (kLongStream ? 200 : 40));
  // Every label is resolved from a closing (positives) or a passed deadline.
  CHECK(static_cast<int64_t>(q.churn_positives) <= closings);
  CHECK(q.churn_negatives > 1000);
  CHECK(q.value_labels == q.churn_positives + q.churn_negatives);
  CHECK(q.kmeans_points > 1000);
  CHECK(q.anomaly_rate < 0.1);
  if (kLongStream) {
    CHECK(q.churn_positives > 100);
    // Measured (seed 11): AUC 0.696 over all labels (the first horizon's
    // predictions are the untrained 0.5), 0.758 once warm; log loss 0.303 and
    // 0.227 (the base-rate-only loss at this churn rate is about 0.25-0.3).
    CHECK(q.churn_auc > 0.65);
    CHECK(q.warm_churn_auc > 0.72);
    CHECK(q.warm_churn_labels > 5000);
    CHECK(q.churn_log_loss < 0.35);
    CHECK(q.warm_churn_log_loss < 0.26);
  }

  // Churners were scored higher before they closed than the others now, in
  // the scores a flush publishes (scoring is lazy: per flush, not per event).
  store.ForEachDirty([&](std::string_view, const features::CustomerFeatures& f) {
    static_cast<void>(models.Refresh(f));
  });
  models.EndFlush();
  store.ClearDirty();
  const auto& churners = gen.ground_truth().churners;
  std::unordered_set<std::string> churned;
  double churner_sum = 0;
  int churner_n = 0;
  for (const auto& c : churners) {
    churned.insert(c.customer_id);
    const features::CustomerFeatures* f = store.Find(c.customer_id);
    if (f == nullptr) continue;
    if (auto sc = models.Scores(*f)) {
      churner_sum += sc->churn_probability;
      ++churner_n;
    }
  }
  double other_sum = 0;
  int other_n = 0;
  for (const auto& c : gen.Customers()) {
    if (churned.count(c.customer_id) != 0) continue;
    const features::CustomerFeatures* f = store.Find(c.customer_id);
    if (f == nullptr) continue;
    auto sc = models.Scores(*f);
    if (!sc) continue;
    other_sum += sc->churn_probability;
    ++other_n;
    CHECK(sc->segment >= 0);
    CHECK(sc->segment < mo.segments.k);
    CHECK(sc->anomaly_score >= 0.0);
    CHECK(sc->anomaly_score <= 1.0);
  }
  REQUIRE(churner_n > 50);
  REQUIRE(other_n > 1000);
  const double churner_mean = churner_sum / churner_n;
  const double other_mean = other_sum / other_n;
  INFO("mean churn probability: churners " << churner_mean << " others " << other_mean);
  // Measured: 0.37 against 0.07.
  if (kLongStream) CHECK(churner_mean > other_mean + 0.2);
  WARN("days " << days << " auc " << q.churn_auc << " warm auc " << q.warm_churn_auc
               << " warm log loss " << q.warm_churn_log_loss << " warm labels "
               << q.warm_churn_labels << " log loss " << q.churn_log_loss << " +"
               << q.churn_positives << " -" << q.churn_negatives << " value rmse " << q.value_rmse
               << " kmeans msd " << q.kmeans_mean_squared_distance << " anomaly rate "
               << q.anomaly_rate << " churners " << churner_mean << " others " << other_mean);
}

}  // namespace
}  // namespace crmstream::scoring
