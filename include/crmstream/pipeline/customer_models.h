// The online models of one input partition, fed event by event after the
// feature store: churn probability (Bayesian logistic regression on the
// standardised feature snapshot, trained on labels that mature late), the
// customer's predicted spend over the churn horizon (recursive least
// squares), a behavioural segment (mini-batch k-means), a per-customer
// behaviour anomaly score, and global per-minute metrics (revenue, tickets,
// logins) with their anomaly scores and rolling correlation.
//
// Labels arrive late. When a customer is scored and has no pending example,
// its feature snapshot (and the predictions made from it) is stored with its
// time. An account_closed within churn_horizon_days of that time makes it a
// label-1 example, otherwise it is a label-0 example; either way it is
// trained once the partition's watermark (the largest event time seen) passes
// snapshot time + horizon (see train_churn_at_deadline for why positives
// wait too). The models never learn from features taken after the prediction,
// and the prequential churn AUC / log loss and value RMSE compare the
// prediction made at snapshot time with the label once it resolves.
//
// Scoring is lazy. OnEvent keeps the models learning (labels, pending
// examples, segments, behaviour) but computes a churn probability and a
// predicted value only when it stores a pending example (the prediction the
// example is judged by). Every other customer with events is scored once per
// output flush by Refresh(), with the models as they stand then and the
// customer's features as of its latest event; Refresh() also runs the churn
// alert policy (alerts/churn_alert_policy.h) and reports segment changes and
// customer anomalies. Closed minutes whose metric anomaly score reaches
// minute_anomaly_level are queued for the processor (minute_anomalies()).
//
// Checkpoints: EncodeCustomer / EncodeGlobal write the whole state as sealed
// blobs (one per customer, one for the partition-wide models), and a fresh
// instance restored with DecodeCustomer for every customer then DecodeGlobal
// behaves bit-identically from then on (same refreshes, alerts, scores,
// model updates, quality figures and blobs), whatever the order the
// customers are decoded in. ForEachUnsaved lists the customers whose blob
// changed since ClearUnsaved(), for incremental checkpoints.
//
// Thread-safety: none. One instance per partition task, single-threaded, no
// locks. Steady-state OnEvent and Refresh do not allocate; a new customer
// grows the per-customer arrays, the first event of a customer since the
// last flush its trigger log, and the first change of a customer since the
// last ClearUnsaved() the unsaved list (all amortised).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "crmstream/alerts/churn_alert_policy.h"
#include "crmstream/common/json_writer.h"
#include "crmstream/common/status.h"
#include "crmstream/features/feature_spec.h"
#include "crmstream/features/feature_store.h"
#include "crmstream/ingest/event.h"
#include "crmstream/models/logistic_regression.h"
#include "crmstream/models/mini_batch_kmeans.h"
#include "crmstream/models/multivariate_anomaly.h"
#include "crmstream/models/prequential_metrics.h"
#include "crmstream/models/recursive_least_squares.h"
#include "crmstream/models/rolling_correlation.h"
#include "crmstream/models/standardizer.h"
#include "crmstream/models/univariate_anomaly.h"

namespace crmstream::pipeline {

struct CustomerModelsOptions {
  // A closing within this many days of a snapshot makes it a churn example;
  // also the horizon of the predicted spend. In [1, 365]. Default 30.
  int churn_horizon_days = 30;
  // When true (default), a snapshot whose customer closed within the horizon
  // is still trained (label 1) only once its deadline passes, like the label
  // 0 examples. Training positives at the closing instead feeds the model the
  // positives of a period about one horizon before its negatives, which
  // skews its base rate upwards (measured: log loss 1.45 vs 0.3 on the
  // generated world). The prequential metrics follow the training.
  bool train_churn_at_deadline = true;
  // Labels whose prediction came from a churn model trained on at least this
  // many examples also enter the "warm" prequential figures (the first
  // horizon's predictions are all the untrained 0.5). >= 0. Default 500.
  int warm_after_examples = 500;
  // Prior variance of the churn weights (ridge strength on standardised
  // features), > 0. Default 0.1.
  double churn_prior_variance = 0.1;
  // Ridge penalty of the spend regression, > 0. Default 1.
  double value_ridge = 1.0;
  // Forgetting factor of the spend regression, in (0, 1]. Default 1 (none).
  double value_forgetting_factor = 1.0;
  // Number of segments, in [1, 64]. Default 5.
  int kmeans_k = 5;
  // Seed of the k-means random generator. Default 1.
  uint64_t seed = 1;
  // A customer anomaly score at or above this counts as an anomaly in
  // Quality::anomaly_rate, in (0, 1]. Default 0.99.
  double anomaly_alert_level = 0.99;
  // Closed minutes in the rolling correlation window, >= 2. Default 60.
  int correlation_window_minutes = 60;
  // When event time jumps, at most this many empty minutes are fed to the
  // minute models (a longer silence is an outage of the input, not a
  // metric), >= 0. Default 1440.
  int max_empty_minutes = 1440;
  // The churn alert policy run by Refresh().
  alerts::ChurnAlertPolicyOptions churn_alerts;
  // A closed minute whose metric anomaly score reaches this is queued in
  // minute_anomalies(), in (0, 1]. Default 0.99.
  double minute_anomaly_level = 0.99;

  // InvalidArgument naming the field.
  Status Validate() const;
};

// The latest scores of one customer.
struct CustomerScores {
  // Churn probability predicted at the customer's latest event before any
  // account_closed (a closed account keeps its last pre-closing score).
  double churn_probability = 0.0;
  // Predicted spend over the next churn_horizon_days, currency units, >= 0.
  double predicted_value = 0.0;
  // Segment in [0, kmeans_k), -1 while k-means is not seeded yet.
  int segment = -1;
  // Behaviour anomaly score in [0, 1] (near 1: unusual for the population).
  double anomaly_score = 0.0;
  bool closed = false;
};

// The global metrics of one closed event-time minute.
struct MinuteMetrics {
  static constexpr int kMetrics = 3;  // revenue, tickets, logins
  int64_t minute_start_ms = 0;        // 0 before the first minute closes
  double revenue = 0.0;               // purchase amounts (currency units)
  double tickets = 0.0;               // support_ticket + complaint events
  double logins = 0.0;                // login events
  double revenue_score = 0.0;         // anomaly scores in [0, 1]
  double tickets_score = 0.0;
  double logins_score = 0.0;
  // Pearson correlation over the last correlation_window_minutes closed
  // minutes, row-major in the order revenue, tickets, logins; NaN where
  // undefined (fewer than 2 minutes or a constant metric).
  std::array<double, kMetrics * kMetrics> correlation{};
};

// One metric of a closed minute whose anomaly score reached the level.
struct MinuteAnomaly {
  int metric = 0;  // 0 revenue, 1 tickets, 2 logins (MinuteMetricName)
  int64_t minute_start_ms = 0;
  double score = 0.0;
  double observed = 0.0;
  // Exponentially weighted mean of the metric over the minutes before this
  // one (half-life 60 minutes): what the minute was expected to be.
  double expected = 0.0;
};
// "revenue_per_minute", "tickets_per_minute", "logins_per_minute".
std::string_view MinuteMetricName(int metric);

// The names of the behaviour vector of customer anomalies, as counts over the
// shortest feature window: refunds, tickets (support tickets + complaints),
// logins, purchases.
inline constexpr std::array<std::string_view, 4> kBehaviourNames = {"refunds", "tickets", "logins",
                                                                    "purchases"};
// The names of the segmentation space (k-means centres), in order.
inline constexpr std::array<std::string_view, 4> kSegmentFeatureNames = {
    "log1p_recency_days", "log1p_frequency", "log1p_monetary", "log1p_events_30d"};

// What Refresh() found for one customer at a flush.
struct CustomerRefresh {
  bool known = false;  // false: the models never saw the customer
  int64_t as_of_ms = 0;
  double churn_probability = 0.0;
  // The alert decision (raise == false when nothing is to be published).
  alerts::AlertDecision alert;
  // The customer's latest event since the previous flush (alerts need one;
  // a customer restored from a checkpoint has none).
  bool has_trigger = false;
  std::string_view trigger_event_id;  // valid until the next EndFlush()
  ingest::EventType trigger_type = ingest::EventType::kPageView;
  int64_t trigger_ms = 0;
  // A segment change since the previous published segment (-1: none yet).
  bool segment_changed = false;
  int segment_from = -1;
  int segment_to = -1;
  // The behaviour anomaly score reached anomaly_alert_level (once per
  // crossing: the customer re-arms when its score falls back below it).
  bool anomaly = false;
  double anomaly_score = 0.0;
  std::array<double, 4> anomaly_observed{};  // counts, kBehaviourNames order
  std::array<double, 4> anomaly_expected{};  // population's typical counts
};

// One term of an alert explanation: a model input, its value and its share
// of the churn log-odds (posterior mean weight x standardised value).
struct ChurnContribution {
  int feature = 0;  // index into FeatureStore::FeatureNames()
  double value = 0.0;
  double contribution = 0.0;
};

class CustomerModels {
 public:
  // The options must pass Validate() and the spec FeatureSpec::Validate();
  // throws std::invalid_argument otherwise (a start-up error).
  CustomerModels(const CustomerModelsOptions& options, const features::FeatureSpec& spec);

  // Called after the feature store was updated with `event`; `f` is the
  // customer's features as returned by FeatureStore::Update. Advances the
  // watermark, resolves matured labels, stores a pending example (scored
  // from the features as of this event) when the customer has none, and
  // updates the segment and behaviour models; other scoring waits for
  // Refresh().
  void OnEvent(const ingest::Event& event, const features::CustomerFeatures& f);

  // Writes "churn_probability", "predicted_value_30d" (the spend predicted
  // over churn_horizon_days, whatever its value), "segment" and
  // "anomaly_score" into the currently open JSON object (segment null while
  // not seeded). Writes nothing for an unknown customer.
  void WriteCustomerScores(std::string_view customer_id, JsonWriter* w) const;

  // At an output flush, for a customer updated since the previous one:
  // scores it (when it had events since its last score), runs the alert
  // policy (once the churn model has trained on warm_after_examples
  // examples: before, it scores everyone alike), and reports a segment
  // change and an anomaly crossing. The result (and contributions()) is
  // valid until the next Refresh. Does not allocate.
  const CustomerRefresh& Refresh(const features::CustomerFeatures& f);
  // The top 3 contributions (largest |contribution| first) of the last
  // Refresh that raised an alert.
  std::span<const ChurnContribution> contributions() const {
    return std::span<const ChurnContribution>(contributions_).first(contribution_count_);
  }
  // Ends a flush: forgets the trigger events logged since the previous one.
  void EndFlush();

  // Closed minutes with an anomalous metric since the last ClearMinuteAnomalies().
  std::span<const MinuteAnomaly> minute_anomalies() const { return minute_anomalies_; }
  void ClearMinuteAnomalies() { minute_anomalies_.clear(); }

  // The churn alert policy (its counters are the global state).
  const alerts::ChurnAlertPolicy& alert_policy() const { return policy_; }
  alerts::ChurnAlertPolicy& alert_policy() { return policy_; }
  // One customer's alert state for checkpoints (ChurnAlertPolicy's format);
  // NotFound for an unknown customer.
  Status EncodeAlertState(std::string_view customer_id, std::string* out) const;
  // Restores it (the customer is created if unknown); Corruption on bad bytes.
  Status DecodeAlertState(std::string_view customer_id, std::string_view bytes);

  // Checkpoints. Encode only at a refresh boundary: right after EndFlush(),
  // once every customer with events since the previous flush went through
  // Refresh(). The trigger log (the latest event of each customer since the
  // last flush) is then empty by definition and is not persisted; a restored
  // customer has no trigger until its next event, exactly like the original.
  //
  // One customer's state (scores, pending example with its feature
  // snapshot, segment, anomaly and alert state) as a sealed blob
  // (BlobKind::kCustomerModelState, version 1), replacing `*out`. NotFound
  // for an unknown customer.
  Status EncodeCustomer(std::string_view customer_id, std::string* out) const;
  // Creates or replaces the customer's state from EncodeCustomer's blob.
  // Corruption on bad bytes, InvalidArgument if written with another
  // feature dimension or k; the object is unchanged on error. Does not mark
  // the customer unsaved. Meant for a fresh object followed by DecodeGlobal
  // (the partition-wide state, such as segment sizes and the label
  // deadlines, comes from there).
  Status DecodeCustomer(std::string_view customer_id, std::string_view blob);
  // Everything that is not per customer (scaling, churn and spend models
  // and their prequential figures, k-means, behaviour and minute detectors,
  // open minute, watermark, alert counters, the queued minute anomalies and
  // the label deadlines in their heap order, by customer id) as a sealed
  // blob (BlobKind::kPartitionModelState, version 1), replacing `*out`.
  // The label deadlines make it grow with the pending examples (about the
  // customer id + 16 bytes each); the three minute detectors' context tables
  // are a fixed ~1.2 MB.
  Status EncodeGlobal(std::string* out) const;
  // Restores EncodeGlobal's blob. Precondition: every customer of the
  // partition was decoded first (DecodeCustomer), since the label deadlines
  // name customers (mapped to the new slot numbers, the heap kept in its
  // array order); a deadline of an unknown customer, or decoded customers
  // whose pending examples or segments do not add up to the blob's counts,
  // is Corruption, as are bad bytes. InvalidArgument if written under other
  // options (dimension, k, horizon, windows, alert thresholds). The object
  // is unchanged on error. The restored customers had no event since the
  // checkpoint's flush: a Refresh of one reports nothing and changes
  // nothing (it is not marked unsaved).
  Status DecodeGlobal(std::string_view blob);

  // Calls f(std::string_view customer_id) for every customer whose state
  // changed since the last ClearUnsaved() (OnEvent, a Refresh that scored
  // it, evaluated its alert policy or published a segment or anomaly
  // change, a label resolved at its deadline), in first-changed order.
  // DecodeCustomer does not mark. The global blob changes with nearly every
  // event: save it always.
  template <class F>
  void ForEachUnsaved(F&& f) const {
    for (uint32_t s : unsaved_) f(std::string_view(*slot_ids_[s]));
  }
  size_t unsaved_count() const { return unsaved_.size(); }
  void ClearUnsaved();

  // The k-means segmentation: seeded, k, centres in kSegmentFeatureNames
  // space (log1p units, de-standardised), customers per segment as of their
  // latest event.
  bool segments_seeded() const { return kmeans_.seeded(); }
  // Writes centre `c` into `out` (4 values).
  void SegmentCentre(int c, std::span<double> out) const;
  uint64_t SegmentSize(int c) const { return segment_sizes_[static_cast<size_t>(c)]; }
  // The largest event time seen (0 before any event). Cheap.
  int64_t watermark_ms() const { return watermark_ms_ == INT64_MIN ? 0 : watermark_ms_; }

  // The customer's latest scores; nullopt if unknown. Does not allocate.
  // The churn probability and predicted value are those of the customer's
  // latest Refresh (or of its pending example, if taken later).
  std::optional<CustomerScores> Scores(std::string_view customer_id) const;

  // The time (ms) of the customer's pending, unlabelled snapshot; nullopt
  // when the customer has none (or is unknown).
  std::optional<int64_t> PendingSnapshotMs(std::string_view customer_id) const;
  // The pending snapshot itself (model inputs in FeatureStore::FeatureNames
  // order, as floats); empty when there is none.
  std::span<const float> PendingSnapshot(std::string_view customer_id) const;

  struct Quality {
    // Prequential churn figures over resolved labels only: the prediction
    // made when the snapshot was taken against the label that matured.
    double churn_auc = 0.5;
    double churn_log_loss = 0.0;
    uint64_t churn_positives = 0;
    uint64_t churn_negatives = 0;
    // The same over labels predicted by a model trained on at least
    // warm_after_examples examples.
    double warm_churn_auc = 0.5;
    double warm_churn_log_loss = 0.0;
    uint64_t warm_churn_labels = 0;
    uint64_t pending_examples = 0;
    // Prequential RMSE of the predicted spend (currency units).
    double value_rmse = 0.0;
    uint64_t value_labels = 0;
    // Prequential mean squared distance of k-means points to their centre
    // (standardised units).
    double kmeans_mean_squared_distance = 0.0;
    uint64_t kmeans_points = 0;
    // Share of scored events whose anomaly score reached the alert level.
    double anomaly_rate = 0.0;
    uint64_t anomaly_scored = 0;
    // Events older than the open minute, left out of the minute metrics.
    uint64_t late_minute_events = 0;
    int64_t watermark_ms = 0;
  };
  Quality quality() const;

  // The latest closed minute (minute_start_ms == 0 before the first).
  const MinuteMetrics& latest_minute() const { return latest_minute_; }
  size_t customer_count() const { return slots_.size(); }
  const models::BayesianLogisticRegression& churn_model() const { return churn_; }
  const models::Standardizer& churn_standardizer() const { return standardizer_; }
  const CustomerModelsOptions& options() const { return options_; }

 private:
  struct Slot {
    double churn_probability = 0.5;
    double predicted_value = 0.0;
    double anomaly_score = 0.0;
    double last_monetary = 0.0;  // as of the customer's previous event
    // The pending example: snapshot time, the predictions made from it and
    // the monetary value then (features in pending_features_).
    int64_t pending_ms = 0;
    double pending_probability = 0.0;
    double pending_value = 0.0;
    double pending_monetary = 0.0;
    double pending_spend = 0.0;  // spend up to the closing, when pending_churned
    uint32_t generation = 0;     // bumped when a pending example resolves
    int32_t last_kmeans_day = INT32_MIN;
    int16_t segment = -1;
    int16_t published_segment = -1;  // the segment of the latest change reported
    // The customer's latest event, valid when trigger_flush == flushes_
    // (an event since the last flush); its id is in trigger_ids_.
    int64_t trigger_ms = 0;
    uint32_t trigger_flush = UINT32_MAX;
    uint32_t trigger_offset = 0;
    uint16_t trigger_length = 0;
    uint16_t trigger_capacity = 0;
    ingest::EventType trigger_type = ingest::EventType::kPageView;
    alerts::CustomerAlertState alert;
    bool score_stale = false;     // events since the churn probability was computed
    bool anomaly_active = false;  // reported as anomalous, not yet back below the level
    bool has_pending = false;
    bool pending_warm = false;     // predicted by a model past warm_after_examples
    bool pending_churned = false;  // closed within the horizon, awaiting the deadline
    bool closed = false;
    bool unsaved = false;  // in unsaved_
  };
  struct Deadline {
    int64_t deadline_ms;
    uint32_t slot;
    uint32_t generation;
  };
  // The deadline heap's order: a min-heap on deadline_ms.
  static bool LaterDeadline(const Deadline& a, const Deadline& b) {
    return a.deadline_ms > b.deadline_ms;
  }
  struct IdHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const;
  };

  uint32_t SlotOf(std::string_view customer_id);
  const Slot* FindSlot(std::string_view customer_id) const;
  void MarkUnsaved(uint32_t s) {
    Slot& slot = slots_[s];
    if (!slot.unsaved) {
      slot.unsaved = true;
      unsaved_.push_back(s);
    }
  }
  // Trains both models on the slot's pending example and records the
  // prequential figures.
  void Resolve(uint32_t slot, bool churned, double spend);
  void ResolveMatured();
  void UpdateMinutes(const ingest::Event& event);
  void CloseMinute();
  void UpdateSegment(const features::CustomerFeatures& f, Slot* slot, int32_t day);
  void ScoreBehaviour(const features::CustomerFeatures& f, Slot* slot);
  // Snapshot + standardisation of f into snapshot_ / standardised_, then
  // the churn probability and predicted value into the slot.
  void Score(const features::CustomerFeatures& f, Slot* slot);
  void LogTrigger(uint32_t s, const ingest::Event& event);
  void Explain();  // top contributions of standardised_ into contributions_

  CustomerModelsOptions options_;
  int64_t horizon_ms_;
  int dim_;  // model inputs of the feature snapshot
  size_t shortest_window_;
  size_t month_window_;  // the window closest to 30 days

  std::unordered_map<std::string, uint32_t, IdHash, std::equal_to<>> slot_of_;
  std::vector<Slot> slots_;
  // Slot -> its key in slot_of_ (unordered_map nodes never move).
  std::vector<const std::string*> slot_ids_;
  std::vector<uint32_t> unsaved_;        // slots changed since ClearUnsaved()
  std::vector<float> pending_features_;  // dim_ per slot
  std::vector<Deadline> deadlines_;      // min-heap on deadline_ms
  uint64_t pending_count_ = 0;
  int64_t watermark_ms_ = INT64_MIN;

  models::Standardizer standardizer_;
  models::BayesianLogisticRegression churn_;
  models::RecursiveLeastSquares value_;
  models::StreamingAuc churn_auc_;
  models::LogLoss churn_log_loss_;
  models::StreamingAuc warm_churn_auc_;
  models::LogLoss warm_churn_log_loss_;
  models::Rmse value_rmse_;

  models::Standardizer segment_standardizer_;
  models::MiniBatchKMeans kmeans_;
  models::MultivariateAnomalyDetector behaviour_;
  uint64_t anomaly_scored_ = 0;
  uint64_t anomalies_ = 0;

  // The open minute's sums.
  int64_t open_minute_ = INT64_MIN;  // minute index (ms / 60000)
  double minute_revenue_ = 0.0;
  double minute_tickets_ = 0.0;
  double minute_logins_ = 0.0;
  uint64_t late_minute_events_ = 0;
  std::array<models::UnivariateAnomalyDetector, MinuteMetrics::kMetrics> minute_detectors_;
  models::RollingCorrelation correlation_;
  MinuteMetrics latest_minute_;
  std::array<double, MinuteMetrics::kMetrics> minute_expected_{};
  uint64_t minutes_closed_ = 0;
  std::vector<MinuteAnomaly> minute_anomalies_;  // capacity reserved up front

  alerts::ChurnAlertPolicy policy_;
  uint32_t flushes_ = 0;     // EndFlush() calls: the generation of the trigger log
  std::string trigger_ids_;  // ids of the triggers of this generation
  CustomerRefresh refresh_;
  std::vector<models::FeatureContribution> top_;
  std::array<ChurnContribution, 3> contributions_{};
  size_t contribution_count_ = 0;
  std::array<uint64_t, 64> segment_sizes_{};

  // Scratch, reused by every event.
  features::FeatureVector snapshot_;
  std::vector<double> standardised_;  // dim_ + 1: the spend regression's intercept last
  std::array<double, 4> small_{};
};

}  // namespace crmstream::pipeline
