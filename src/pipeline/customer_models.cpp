#include "crmstream/pipeline/customer_models.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <stdexcept>
#include <utility>

#include "crmstream/common/hash.h"

namespace crmstream::pipeline {
namespace {

constexpr int64_t kMillisPerMinute = 60'000;
constexpr int64_t kMillisPerDay = 86'400'000;

// Floor division, so that times before the epoch fall in the right bucket.
int64_t FloorDiv(int64_t a, int64_t b) {
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}

template <typename T>
T OrThrow(Result<T> result, const char* what) {
  if (!result.ok()) {
    throw std::invalid_argument(std::string(what) + ": " + result.status().ToString());
  }
  return std::move(result).value();
}

const CustomerModelsOptions& ValidatedOptions(const CustomerModelsOptions& options) {
  Status st = options.Validate();
  if (!st.ok()) throw std::invalid_argument(st.ToString());
  return options;
}

const features::FeatureSpec& ValidatedSpec(const features::FeatureSpec& spec) {
  Status st = spec.Validate();
  if (!st.ok()) throw std::invalid_argument(st.ToString());
  return spec;
}

models::BayesianLogisticRegressionOptions ChurnOptions(const CustomerModelsOptions& o, int dim) {
  models::BayesianLogisticRegressionOptions c;
  c.dimension = dim;
  c.prior_variance = o.churn_prior_variance;
  return c;
}

models::RecursiveLeastSquaresOptions ValueOptions(const CustomerModelsOptions& o, int dim) {
  models::RecursiveLeastSquaresOptions v;
  v.dimension = dim + 1;  // the snapshot plus a constant for the intercept
  v.ridge = o.value_ridge;
  v.forgetting_factor = o.value_forgetting_factor;
  return v;
}

models::MiniBatchKMeansOptions SegmentOptions(const CustomerModelsOptions& o) {
  models::MiniBatchKMeansOptions k;
  k.k = o.kmeans_k;
  k.dim = 4;
  k.seed_buffer_size = std::max(256, 20 * o.kmeans_k);
  k.random_seed = o.seed;
  return k;
}

models::MultivariateAnomalyDetector::Options BehaviourOptions() {
  models::MultivariateAnomalyDetector::Options b;
  b.dim = 4;
  return b;
}

models::RollingCorrelationOptions CorrelationOptions(const CustomerModelsOptions& o) {
  models::RollingCorrelationOptions c;
  c.metrics = MinuteMetrics::kMetrics;
  c.window = models::CorrelationWindowKind::kCount;
  c.window_rows = o.correlation_window_minutes;
  c.metric_names = {"revenue", "tickets", "logins"};
  return c;
}

size_t ClosestWindow(const features::FeatureSpec& spec, int days) {
  size_t best = 0;
  for (size_t i = 1; i < spec.window_days.size(); ++i) {
    if (std::abs(spec.window_days[i] - days) < std::abs(spec.window_days[best] - days)) best = i;
  }
  return best;
}

size_t ShortestWindow(const features::FeatureSpec& spec) {
  return static_cast<size_t>(std::min_element(spec.window_days.begin(), spec.window_days.end()) -
                             spec.window_days.begin());
}

// Checkpoint formats (BlobKind::kCustomerModelState, kPartitionModelState).
constexpr uint16_t kCustomerStateVersion = 1;
constexpr uint16_t kPartitionStateVersion = 1;

// Slot booleans of the customer blob, one bit each.
constexpr uint8_t kScoreStaleBit = 1;
constexpr uint8_t kAnomalyActiveBit = 2;
constexpr uint8_t kHasPendingBit = 4;
constexpr uint8_t kPendingWarmBit = 8;
constexpr uint8_t kPendingChurnedBit = 16;
constexpr uint8_t kClosedBit = 32;
constexpr uint8_t kAllSlotBits = 63;

// Reads a length-prefixed nested blob and deserialises it with `T`.
template <typename T>
Result<T> ReadNested(BinaryReader& in, std::string* scratch) {
  CRM_RETURN_NOT_OK(in.GetBytes(scratch));
  return T::Deserialize(*scratch);
}

Status Mismatch(std::string_view what) {
  return Status::Corruption("partition model state: " + std::string(what));
}

}  // namespace

Status CustomerModelsOptions::Validate() const {
  auto bad = [](std::string_view field, std::string_view rule, auto value) {
    return Status::InvalidArgument("CustomerModelsOptions." + std::string(field) + " must be " +
                                   std::string(rule) + ", got " + std::to_string(value));
  };
  if (churn_horizon_days < 1 || churn_horizon_days > 365) {
    return bad("churn_horizon_days", "in [1, 365]", churn_horizon_days);
  }
  if (!(churn_prior_variance > 0) || !std::isfinite(churn_prior_variance)) {
    return bad("churn_prior_variance", "finite and > 0", churn_prior_variance);
  }
  if (!(value_ridge > 0) || !std::isfinite(value_ridge)) {
    return bad("value_ridge", "finite and > 0", value_ridge);
  }
  if (!(value_forgetting_factor > 0 && value_forgetting_factor <= 1)) {
    return bad("value_forgetting_factor", "in (0, 1]", value_forgetting_factor);
  }
  if (kmeans_k < 1 || kmeans_k > 64) return bad("kmeans_k", "in [1, 64]", kmeans_k);
  if (!(anomaly_alert_level > 0 && anomaly_alert_level <= 1)) {
    return bad("anomaly_alert_level", "in (0, 1]", anomaly_alert_level);
  }
  if (correlation_window_minutes < 2) {
    return bad("correlation_window_minutes", ">= 2", correlation_window_minutes);
  }
  if (warm_after_examples < 0) return bad("warm_after_examples", ">= 0", warm_after_examples);
  if (max_empty_minutes < 0) return bad("max_empty_minutes", ">= 0", max_empty_minutes);
  if (!(minute_anomaly_level > 0 && minute_anomaly_level <= 1)) {
    return bad("minute_anomaly_level", "in (0, 1]", minute_anomaly_level);
  }
  return churn_alerts.Validate();
}

std::string_view MinuteMetricName(int metric) {
  static constexpr std::array<std::string_view, MinuteMetrics::kMetrics> kNames = {
      "revenue_per_minute", "tickets_per_minute", "logins_per_minute"};
  return kNames[static_cast<size_t>(metric)];
}

size_t CustomerModels::IdHash::operator()(std::string_view s) const {
  return static_cast<size_t>(Hash64(s));
}

CustomerModels::CustomerModels(const CustomerModelsOptions& options,
                               const features::FeatureSpec& spec)
    : options_(ValidatedOptions(options)),
      horizon_ms_(int64_t{options.churn_horizon_days} * kMillisPerDay),
      dim_(static_cast<int>(features::FeatureStore::FeatureNames(ValidatedSpec(spec)).size())),
      shortest_window_(ShortestWindow(spec)),
      month_window_(ClosestWindow(spec, 30)),
      standardizer_(OrThrow(models::Standardizer::Create(dim_), "churn standardizer")),
      churn_(OrThrow(models::BayesianLogisticRegression::Create(ChurnOptions(options, dim_)),
                     "churn model")),
      value_(OrThrow(models::RecursiveLeastSquares::Create(ValueOptions(options, dim_)),
                     "value model")),
      segment_standardizer_(OrThrow(models::Standardizer::Create(4), "segment standardizer")),
      kmeans_(OrThrow(models::MiniBatchKMeans::Create(SegmentOptions(options)), "k-means")),
      behaviour_(OrThrow(models::MultivariateAnomalyDetector::Create(BehaviourOptions()),
                         "behaviour anomaly")),
      correlation_(OrThrow(models::RollingCorrelation::Create(CorrelationOptions(options)),
                           "minute correlation")),
      policy_(OrThrow(alerts::ChurnAlertPolicy::Create(options.churn_alerts), "churn alerts")) {
  snapshot_.resize(static_cast<size_t>(dim_));
  // A jump in event time closes at most max_empty_minutes + 1 minutes, each
  // with up to three anomalous metrics: the queue never grows past that
  // between two drains.
  minute_anomalies_.reserve(static_cast<size_t>(options.max_empty_minutes + 2) *
                            MinuteMetrics::kMetrics);
  top_.reserve(static_cast<size_t>(dim_));
  standardised_.resize(static_cast<size_t>(dim_) + 1);
  latest_minute_.correlation.fill(std::numeric_limits<double>::quiet_NaN());
}

uint32_t CustomerModels::SlotOf(std::string_view customer_id) {
  auto it = slot_of_.find(customer_id);
  if (it != slot_of_.end()) return it->second;
  const auto slot = static_cast<uint32_t>(slots_.size());
  const auto inserted = slot_of_.emplace(std::string(customer_id), slot).first;
  slot_ids_.push_back(&inserted->first);
  slots_.emplace_back();
  pending_features_.resize(pending_features_.size() + static_cast<size_t>(dim_));
  return slot;
}

const CustomerModels::Slot* CustomerModels::FindSlot(std::string_view customer_id) const {
  auto it = slot_of_.find(customer_id);
  return it == slot_of_.end() ? nullptr : &slots_[it->second];
}

void CustomerModels::OnEvent(const ingest::Event& event, const features::CustomerFeatures& f) {
  watermark_ms_ = std::max(watermark_ms_, event.timestamp_ms);
  // Labels first: an example that matured before this event must be trained
  // with what was known up to its deadline.
  ResolveMatured();
  UpdateMinutes(event);

  const uint32_t s = SlotOf(event.customer_id);
  MarkUnsaved(s);
  LogTrigger(s, event);
  Slot* slot = &slots_[s];
  const double monetary = f.monetary();

  if (event.type == ingest::EventType::kAccountClosed) {
    if (slot->has_pending && event.timestamp_ms <= slot->pending_ms + horizon_ms_) {
      if (options_.train_churn_at_deadline) {
        slot->pending_churned = true;
        slot->pending_spend = monetary - slot->pending_monetary;
      } else {
        Resolve(s, /*churned=*/true, monetary - slot->pending_monetary);
      }
    }
    // A closed account keeps its last score: the one scored at or before
    // the closing (here, from the features as of the closing, when the
    // customer had unscored events since its last flush).
    if (!slot->closed && slot->score_stale) Score(f, slot);
    slot->closed = true;
    slot->last_monetary = monetary;
    return;
  }

  if (!slot->has_pending && !slot->closed) {
    // The example's prediction is made now, from the features as of this
    // event: that is what the label will judge.
    const int64_t now = f.as_of_ms();
    Score(f, slot);
    float* stored = pending_features_.data() + static_cast<size_t>(s) * dim_;
    for (int i = 0; i < dim_; ++i)
      stored[i] = static_cast<float>(snapshot_[static_cast<size_t>(i)]);
    slot->has_pending = true;
    slot->pending_ms = now;
    slot->pending_probability = slot->churn_probability;
    slot->pending_value = slot->predicted_value;
    slot->pending_warm = churn_.count() >= static_cast<uint64_t>(options_.warm_after_examples);
    slot->pending_monetary = monetary;
    deadlines_.push_back({now + horizon_ms_, s, slot->generation});
    std::push_heap(deadlines_.begin(), deadlines_.end(), LaterDeadline);
    ++pending_count_;
    // The scaling learns from example snapshots only, after they were scored,
    // so a prediction never uses its own row's statistics.
    standardizer_.Update(snapshot_);
  } else {
    slot->score_stale = true;
  }

  UpdateSegment(f, slot, static_cast<int32_t>(FloorDiv(f.as_of_ms(), kMillisPerDay)));
  ScoreBehaviour(f, slot);
  slot->last_monetary = monetary;
}

void CustomerModels::Score(const features::CustomerFeatures& f, Slot* slot) {
  f.Snapshot(f.as_of_ms(), &snapshot_);
  const std::span<double> z = std::span<double>(standardised_).first(static_cast<size_t>(dim_));
  standardizer_.Transform(snapshot_, z);
  standardised_[static_cast<size_t>(dim_)] = 1.0;
  slot->churn_probability = churn_.PredictProbability(z);
  slot->predicted_value = std::max(0.0, value_.Predict(standardised_));
  slot->score_stale = false;
}

void CustomerModels::LogTrigger(uint32_t s, const ingest::Event& event) {
  // Kept in the slot, which the event touches anyway; only the id goes to
  // the shared buffer, overwritten in place while it fits.
  Slot& slot = slots_[s];
  const size_t length = std::min<size_t>(event.event_id.size(), UINT16_MAX);
  if (slot.trigger_flush != flushes_ || length > slot.trigger_capacity) {
    slot.trigger_flush = flushes_;
    slot.trigger_offset = static_cast<uint32_t>(trigger_ids_.size());
    slot.trigger_capacity = static_cast<uint16_t>(length);
    trigger_ids_.append(event.event_id.data(), length);
  } else {
    trigger_ids_.replace(slot.trigger_offset, length, event.event_id.data(), length);
  }
  slot.trigger_length = static_cast<uint16_t>(length);
  slot.trigger_type = event.type;
  slot.trigger_ms = event.timestamp_ms;
}

const CustomerRefresh& CustomerModels::Refresh(const features::CustomerFeatures& f) {
  CustomerRefresh& r = refresh_;
  r = CustomerRefresh{};
  contribution_count_ = 0;
  auto it = slot_of_.find(f.customer_id());
  if (it == slot_of_.end()) return r;
  const uint32_t s = it->second;
  Slot& slot = slots_[s];
  r.known = true;
  r.as_of_ms = f.as_of_ms();
  // The slot is marked unsaved only where it changes: a customer refreshed
  // with nothing new (one just restored, say) is no checkpoint write.
  bool scored_now = false;
  if (slot.score_stale && !slot.closed) {
    Score(f, &slot);
    scored_now = true;
    MarkUnsaved(s);
  }
  r.churn_probability = slot.churn_probability;
  if (slot.trigger_flush == flushes_) {
    r.has_trigger = true;
    r.trigger_event_id =
        std::string_view(trigger_ids_).substr(slot.trigger_offset, slot.trigger_length);
    r.trigger_type = slot.trigger_type;
    r.trigger_ms = slot.trigger_ms;
  }
  // An untrained churn model scores everyone alike (0.5): alerting on it
  // would page the whole customer base. Alerts start once the model is warm.
  if (!slot.closed && r.has_trigger &&
      churn_.count() >= static_cast<uint64_t>(options_.warm_after_examples)) {
    r.alert = policy_.Evaluate(f.customer_id(), slot.churn_probability, r.as_of_ms, &slot.alert);
    MarkUnsaved(s);
    if (r.alert.raise) {
      if (!scored_now) Score(f, &slot);  // the explanation needs this customer's inputs
      Explain();
    }
  }
  if (slot.segment >= 0 && slot.segment != slot.published_segment) {
    r.segment_changed = true;
    r.segment_from = slot.published_segment;
    r.segment_to = slot.segment;
    slot.published_segment = slot.segment;
    MarkUnsaved(s);
  }
  r.anomaly_score = slot.anomaly_score;
  if (slot.anomaly_score >= options_.anomaly_alert_level) {
    if (!slot.anomaly_active) {
      slot.anomaly_active = true;
      MarkUnsaved(s);
      r.anomaly = true;
      const features::WindowAggregates w = f.window(shortest_window_);
      r.anomaly_observed = {static_cast<double>(w.refunds),
                            static_cast<double>(w.support_tickets) + w.complaints,
                            static_cast<double>(w.logins), static_cast<double>(w.purchases)};
      // The detector learns log1p counts: its mean maps back to the
      // population's typical (geometric-mean-like) counts.
      const auto mean = behaviour_.mean();
      for (size_t i = 0; i < 4; ++i) r.anomaly_expected[i] = std::expm1(mean[i]);
    }
  } else if (slot.anomaly_active) {
    slot.anomaly_active = false;
    MarkUnsaved(s);
  }
  return r;
}

void CustomerModels::Explain() {
  const std::span<const double> z =
      std::span<const double>(standardised_).first(static_cast<size_t>(dim_));
  churn_.TopContributions(z, contributions_.size(), &top_);
  contribution_count_ = std::min(top_.size(), contributions_.size());
  for (size_t i = 0; i < contribution_count_; ++i) {
    const uint32_t j = top_[i].feature;
    contributions_[i] = {static_cast<int>(j), snapshot_[j], top_[i].contribution};
  }
}

void CustomerModels::EndFlush() {
  // A new generation: every slot's trigger is now stale (a slot never seen
  // again for 2^32 flushes would read as current; UINT32_MAX is skipped so
  // a new slot never does).
  if (++flushes_ == UINT32_MAX) flushes_ = 0;
  trigger_ids_.clear();
}

void CustomerModels::SegmentCentre(int c, std::span<double> out) const {
  const std::span<const double> centre = kmeans_.centroid(c);
  for (int j = 0; j < 4; ++j) {
    const double sd = std::sqrt(segment_standardizer_.variance(j));
    out[static_cast<size_t>(j)] =
        segment_standardizer_.mean(j) + centre[static_cast<size_t>(j)] * sd;
  }
}

Status CustomerModels::EncodeAlertState(std::string_view customer_id, std::string* out) const {
  const Slot* slot = FindSlot(customer_id);
  if (slot == nullptr) return Status::NotFound("unknown customer " + std::string(customer_id));
  alerts::ChurnAlertPolicy::EncodeCustomerState(slot->alert, out);
  return Status::OK();
}

Status CustomerModels::DecodeAlertState(std::string_view customer_id, std::string_view bytes) {
  alerts::CustomerAlertState state;
  CRM_RETURN_NOT_OK(alerts::ChurnAlertPolicy::DecodeCustomerState(bytes, &state));
  slots_[SlotOf(customer_id)].alert = state;
  return Status::OK();
}

void CustomerModels::ResolveMatured() {
  while (!deadlines_.empty() && deadlines_.front().deadline_ms < watermark_ms_) {
    std::pop_heap(deadlines_.begin(), deadlines_.end(), LaterDeadline);
    const Deadline d = deadlines_.back();
    deadlines_.pop_back();
    const Slot& slot = slots_[d.slot];
    // A stale entry: that example already resolved with a closing.
    if (!slot.has_pending || slot.generation != d.generation) continue;
    if (slot.pending_churned) {
      Resolve(d.slot, /*churned=*/true, slot.pending_spend);
      continue;
    }
    // No event of this customer is past the deadline yet (the watermark only
    // just passed it), so its latest monetary is the value at the deadline.
    Resolve(d.slot, /*churned=*/false, slot.last_monetary - slot.pending_monetary);
  }
}

void CustomerModels::Resolve(uint32_t s, bool churned, double spend) {
  MarkUnsaved(s);
  Slot& slot = slots_[s];
  const float* stored = pending_features_.data() + static_cast<size_t>(s) * dim_;
  for (int i = 0; i < dim_; ++i) snapshot_[static_cast<size_t>(i)] = stored[i];
  const std::span<double> z = std::span<double>(standardised_).first(static_cast<size_t>(dim_));
  standardizer_.Transform(snapshot_, z);
  standardised_[static_cast<size_t>(dim_)] = 1.0;

  churn_auc_.Add(slot.pending_probability, churned);
  churn_log_loss_.Add(slot.pending_probability, churned);
  if (slot.pending_warm) {
    warm_churn_auc_.Add(slot.pending_probability, churned);
    warm_churn_log_loss_.Add(slot.pending_probability, churned);
  }
  value_rmse_.Add(slot.pending_value, spend);
  churn_.Update(z, churned);
  value_.Update(standardised_, spend);

  slot.has_pending = false;
  slot.pending_churned = false;
  ++slot.generation;
  --pending_count_;
}

void CustomerModels::UpdateSegment(const features::CustomerFeatures& f, Slot* slot, int32_t day) {
  const double recency = f.recency_days();
  // Never purchased: at least as long ago as the customer has been known.
  small_[0] = std::log1p(std::max(0.0, std::isnan(recency) ? f.tenure_days() : recency));
  small_[1] = std::log1p(static_cast<double>(f.frequency()));
  small_[2] = std::log1p(std::max(0.0, f.monetary()));
  const features::WindowAggregates w = f.window(month_window_);
  small_[3] = std::log1p(static_cast<double>(w.purchases) + w.logins + w.page_views +
                         w.support_tickets + w.complaints + w.refunds);
  std::array<double, 4> z{};
  segment_standardizer_.Transform(small_, z);
  if (day != slot->last_kmeans_day) {
    // Once per customer and day: a busy customer must not outweigh the rest.
    slot->last_kmeans_day = day;
    segment_standardizer_.Update(small_);
    static_cast<void>(kmeans_.Update(z));  // fails only on non-finite input
  }
  const int segment = kmeans_.Assign(z).cluster;
  if (segment != slot->segment) {
    if (slot->segment >= 0) --segment_sizes_[static_cast<size_t>(slot->segment)];
    if (segment >= 0) ++segment_sizes_[static_cast<size_t>(segment)];
    slot->segment = static_cast<int16_t>(segment);
  }
}

void CustomerModels::ScoreBehaviour(const features::CustomerFeatures& f, Slot* slot) {
  const features::WindowAggregates w = f.window(shortest_window_);
  small_[0] = std::log1p(static_cast<double>(w.refunds));
  small_[1] = std::log1p(static_cast<double>(w.support_tickets) + w.complaints);
  small_[2] = std::log1p(static_cast<double>(w.logins));
  small_[3] = std::log1p(static_cast<double>(w.purchases));
  slot->anomaly_score = behaviour_.Score(small_);
  ++anomaly_scored_;
  if (slot->anomaly_score >= options_.anomaly_alert_level) ++anomalies_;
}

void CustomerModels::UpdateMinutes(const ingest::Event& event) {
  const int64_t minute = FloorDiv(event.timestamp_ms, kMillisPerMinute);
  if (open_minute_ == INT64_MIN) open_minute_ = minute;
  if (minute < open_minute_) {
    ++late_minute_events_;
    return;
  }
  if (minute > open_minute_) {
    CloseMinute();
    const int64_t empty = std::min<int64_t>(minute - open_minute_ - 1, options_.max_empty_minutes);
    for (int64_t k = empty; k >= 1; --k) {
      open_minute_ = minute - k;
      CloseMinute();
    }
    open_minute_ = minute;
  }
  switch (event.type) {
    case ingest::EventType::kPurchase:
      minute_revenue_ += event.amount;
      break;
    case ingest::EventType::kSupportTicket:
    case ingest::EventType::kComplaint:
      minute_tickets_ += 1.0;
      break;
    case ingest::EventType::kLogin:
      minute_logins_ += 1.0;
      break;
    default:
      break;
  }
}

void CustomerModels::CloseMinute() {
  const int64_t t = open_minute_ * kMillisPerMinute;
  const std::array<double, MinuteMetrics::kMetrics> values = {minute_revenue_, minute_tickets_,
                                                              minute_logins_};
  MinuteMetrics& m = latest_minute_;
  m.minute_start_ms = t;
  m.revenue = values[0];
  m.tickets = values[1];
  m.logins = values[2];
  m.revenue_score = minute_detectors_[0].Score(t, values[0]);
  m.tickets_score = minute_detectors_[1].Score(t, values[1]);
  m.logins_score = minute_detectors_[2].Score(t, values[2]);
  const std::array<double, MinuteMetrics::kMetrics> scores = {m.revenue_score, m.tickets_score,
                                                              m.logins_score};
  // Half-life of 60 minutes: alpha = 1 - 2^(-1/60).
  constexpr double kAlpha = 0.011486983549970351;
  for (int i = 0; i < MinuteMetrics::kMetrics; ++i) {
    const auto k = static_cast<size_t>(i);
    if (minutes_closed_ > 0 && scores[k] >= options_.minute_anomaly_level &&
        minute_anomalies_.size() < minute_anomalies_.capacity()) {
      minute_anomalies_.push_back({i, t, scores[k], values[k], minute_expected_[k]});
    }
    minute_expected_[k] = minutes_closed_ == 0
                              ? values[k]
                              : minute_expected_[k] + kAlpha * (values[k] - minute_expected_[k]);
  }
  ++minutes_closed_;
  // Minutes close in increasing order, so Add cannot refuse the timestamp.
  static_cast<void>(correlation_.Add(values, t));
  for (int i = 0; i < MinuteMetrics::kMetrics; ++i) {
    for (int j = 0; j < MinuteMetrics::kMetrics; ++j) {
      m.correlation[static_cast<size_t>(i * MinuteMetrics::kMetrics + j)] =
          correlation_.Correlation(i, j);
    }
  }
  minute_revenue_ = 0.0;
  minute_tickets_ = 0.0;
  minute_logins_ = 0.0;
}

void CustomerModels::WriteCustomerScores(std::string_view customer_id, JsonWriter* w) const {
  const Slot* slot = FindSlot(customer_id);
  if (slot == nullptr) return;
  w->Field("churn_probability", slot->churn_probability);
  w->Field("predicted_value_30d", slot->predicted_value);
  w->Key("segment");
  if (slot->segment < 0) {
    w->Null();
  } else {
    w->Int(slot->segment);
  }
  w->Field("anomaly_score", slot->anomaly_score);
}

std::optional<CustomerScores> CustomerModels::Scores(std::string_view customer_id) const {
  const Slot* slot = FindSlot(customer_id);
  if (slot == nullptr) return std::nullopt;
  CustomerScores out;
  out.churn_probability = slot->churn_probability;
  out.predicted_value = slot->predicted_value;
  out.segment = slot->segment;
  out.anomaly_score = slot->anomaly_score;
  out.closed = slot->closed;
  return out;
}

std::optional<int64_t> CustomerModels::PendingSnapshotMs(std::string_view customer_id) const {
  const Slot* slot = FindSlot(customer_id);
  if (slot == nullptr || !slot->has_pending) return std::nullopt;
  return slot->pending_ms;
}

std::span<const float> CustomerModels::PendingSnapshot(std::string_view customer_id) const {
  auto it = slot_of_.find(customer_id);
  if (it == slot_of_.end() || !slots_[it->second].has_pending) return {};
  return std::span<const float>(pending_features_)
      .subspan(static_cast<size_t>(it->second) * dim_, static_cast<size_t>(dim_));
}

CustomerModels::Quality CustomerModels::quality() const {
  Quality q;
  q.churn_auc = churn_auc_.Value();
  q.churn_log_loss = churn_log_loss_.Value();
  q.churn_positives = churn_auc_.positives();
  q.churn_negatives = churn_auc_.negatives();
  q.warm_churn_auc = warm_churn_auc_.Value();
  q.warm_churn_log_loss = warm_churn_log_loss_.Value();
  q.warm_churn_labels = warm_churn_log_loss_.count();
  q.pending_examples = pending_count_;
  q.value_rmse = value_rmse_.Value();
  q.value_labels = value_rmse_.count();
  q.kmeans_mean_squared_distance = kmeans_.quality().mean_squared_distance();
  q.kmeans_points = kmeans_.quality().scored_points;
  q.anomaly_rate = anomaly_scored_ == 0
                       ? 0.0
                       : static_cast<double>(anomalies_) / static_cast<double>(anomaly_scored_);
  q.anomaly_scored = anomaly_scored_;
  q.late_minute_events = late_minute_events_;
  q.watermark_ms = watermark_ms_ == INT64_MIN ? 0 : watermark_ms_;
  return q;
}

void CustomerModels::ClearUnsaved() {
  for (uint32_t s : unsaved_) slots_[s].unsaved = false;
  unsaved_.clear();
}

Status CustomerModels::EncodeCustomer(std::string_view customer_id, std::string* out) const {
  auto it = slot_of_.find(customer_id);
  if (it == slot_of_.end()) return Status::NotFound("unknown customer " + std::string(customer_id));
  const Slot& slot = slots_[it->second];
  std::string payload;
  BinaryWriter w(&payload);
  const uint8_t bits =
      (slot.score_stale ? kScoreStaleBit : 0) | (slot.anomaly_active ? kAnomalyActiveBit : 0) |
      (slot.has_pending ? kHasPendingBit : 0) | (slot.pending_warm ? kPendingWarmBit : 0) |
      (slot.pending_churned ? kPendingChurnedBit : 0) | (slot.closed ? kClosedBit : 0);
  w.Put<uint8_t>(bits);
  w.Put<double>(slot.churn_probability);
  w.Put<double>(slot.predicted_value);
  w.Put<double>(slot.anomaly_score);
  w.Put<double>(slot.last_monetary);
  w.Put<int64_t>(slot.pending_ms);
  w.Put<double>(slot.pending_probability);
  w.Put<double>(slot.pending_value);
  w.Put<double>(slot.pending_monetary);
  w.Put<double>(slot.pending_spend);
  w.Put<uint32_t>(slot.generation);
  w.Put<int32_t>(slot.last_kmeans_day);
  w.Put<int16_t>(slot.segment);
  w.Put<int16_t>(slot.published_segment);
  alerts::ChurnAlertPolicy::EncodeCustomerState(slot.alert, &payload);
  // The snapshot row is read only while an example is pending: a resolved
  // example's leftover row is not state.
  if (slot.has_pending) {
    w.PutArray<float>(
        std::span<const float>(pending_features_)
            .subspan(static_cast<size_t>(it->second) * dim_, static_cast<size_t>(dim_)));
  }
  *out = SealBlob(BlobKind::kCustomerModelState, kCustomerStateVersion, payload);
  return Status::OK();
}

Status CustomerModels::DecodeCustomer(std::string_view customer_id, std::string_view blob) {
  CRM_ASSIGN_OR_RETURN(const std::string_view payload,
                       OpenBlobPayload(blob, BlobKind::kCustomerModelState, kCustomerStateVersion));
  BinaryReader in(payload);
  Slot d;  // trigger fields stay "none": a restored customer has no event since the flush
  uint8_t bits = 0;
  CRM_RETURN_NOT_OK(in.Get(&bits));
  if ((bits & ~kAllSlotBits) != 0) return Status::Corruption("customer model state: bad flags");
  d.score_stale = (bits & kScoreStaleBit) != 0;
  d.anomaly_active = (bits & kAnomalyActiveBit) != 0;
  d.has_pending = (bits & kHasPendingBit) != 0;
  d.pending_warm = (bits & kPendingWarmBit) != 0;
  d.pending_churned = (bits & kPendingChurnedBit) != 0;
  d.closed = (bits & kClosedBit) != 0;
  if (d.pending_churned && !d.has_pending) {
    return Status::Corruption("customer model state: churned label without a pending example");
  }
  CRM_RETURN_NOT_OK(in.Get(&d.churn_probability));
  CRM_RETURN_NOT_OK(in.Get(&d.predicted_value));
  CRM_RETURN_NOT_OK(in.Get(&d.anomaly_score));
  CRM_RETURN_NOT_OK(in.Get(&d.last_monetary));
  CRM_RETURN_NOT_OK(in.Get(&d.pending_ms));
  CRM_RETURN_NOT_OK(in.Get(&d.pending_probability));
  CRM_RETURN_NOT_OK(in.Get(&d.pending_value));
  CRM_RETURN_NOT_OK(in.Get(&d.pending_monetary));
  CRM_RETURN_NOT_OK(in.Get(&d.pending_spend));
  CRM_RETURN_NOT_OK(in.Get(&d.generation));
  CRM_RETURN_NOT_OK(in.Get(&d.last_kmeans_day));
  CRM_RETURN_NOT_OK(in.Get(&d.segment));
  CRM_RETURN_NOT_OK(in.Get(&d.published_segment));
  if (d.segment < -1 || d.segment >= options_.kmeans_k || d.published_segment < -1 ||
      d.published_segment >= options_.kmeans_k) {
    return Status::InvalidArgument("customer model state: segment outside [-1, kmeans_k)");
  }
  const size_t at = payload.size() - in.remaining();
  constexpr size_t kAlertBytes = alerts::ChurnAlertPolicy::kEncodedCustomerStateBytes;
  if (payload.size() - at < kAlertBytes) {
    return Status::Corruption("customer model state: truncated alert state");
  }
  CRM_RETURN_NOT_OK(
      alerts::ChurnAlertPolicy::DecodeCustomerState(payload.substr(at, kAlertBytes), &d.alert));
  BinaryReader rest(payload.substr(at + kAlertBytes));
  std::vector<float> row;
  if (d.has_pending) {
    CRM_RETURN_NOT_OK(rest.GetArray(&row, static_cast<size_t>(dim_)));
    if (row.size() != static_cast<size_t>(dim_)) {
      return Status::InvalidArgument("customer model state: the snapshot has " +
                                     std::to_string(row.size()) + " features, expected " +
                                     std::to_string(dim_));
    }
  }
  CRM_RETURN_NOT_OK(rest.ExpectEnd());

  const uint32_t s = SlotOf(customer_id);
  d.unsaved = slots_[s].unsaved;  // still listed in unsaved_ if it was
  slots_[s] = d;
  float* stored = pending_features_.data() + static_cast<size_t>(s) * dim_;
  if (d.has_pending) {
    std::copy(row.begin(), row.end(), stored);
  } else {
    std::fill(stored, stored + dim_, 0.0f);
  }
  return Status::OK();
}

Status CustomerModels::EncodeGlobal(std::string* out) const {
  std::string payload;
  BinaryWriter w(&payload);
  w.Put<int32_t>(dim_);
  w.Put<int32_t>(options_.churn_horizon_days);
  w.Put<int32_t>(options_.kmeans_k);
  w.Put<int64_t>(watermark_ms_);
  w.Put<uint64_t>(pending_count_);

  w.PutBytes(standardizer_.Serialize());
  w.PutBytes(churn_.Serialize());
  w.PutBytes(value_.Serialize());
  churn_auc_.AppendTo(w);
  churn_log_loss_.AppendTo(w);
  warm_churn_auc_.AppendTo(w);
  warm_churn_log_loss_.AppendTo(w);
  value_rmse_.AppendTo(w);

  w.PutBytes(segment_standardizer_.Serialize());
  w.PutBytes(kmeans_.Serialize());
  for (int c = 0; c < options_.kmeans_k; ++c)
    w.Put<uint64_t>(segment_sizes_[static_cast<size_t>(c)]);
  w.PutBytes(behaviour_.Serialize());
  w.Put<uint64_t>(anomaly_scored_);
  w.Put<uint64_t>(anomalies_);

  w.Put<int64_t>(open_minute_);
  w.Put<double>(minute_revenue_);
  w.Put<double>(minute_tickets_);
  w.Put<double>(minute_logins_);
  w.Put<uint64_t>(late_minute_events_);
  for (const auto& detector : minute_detectors_) w.PutBytes(detector.Serialize());
  w.PutBytes(correlation_.Serialize());
  const MinuteMetrics& m = latest_minute_;
  w.Put<int64_t>(m.minute_start_ms);
  for (double v :
       {m.revenue, m.tickets, m.logins, m.revenue_score, m.tickets_score, m.logins_score}) {
    w.Put<double>(v);
  }
  for (double v : m.correlation) w.Put<double>(v);
  for (double v : minute_expected_) w.Put<double>(v);
  w.Put<uint64_t>(minutes_closed_);
  // Not yet drained by the processor: they would be lost otherwise.
  w.Put<uint32_t>(static_cast<uint32_t>(minute_anomalies_.size()));
  for (const MinuteAnomaly& a : minute_anomalies_) {
    w.Put<int32_t>(a.metric);
    w.Put<int64_t>(a.minute_start_ms);
    w.Put<double>(a.score);
    w.Put<double>(a.observed);
    w.Put<double>(a.expected);
  }

  std::string policy_state;
  policy_.EncodeGlobalState(&policy_state);
  w.PutBytes(policy_state);

  // In array order: equal deadlines resolve in the order the heap pops
  // them, and the models' updates depend on that order. Slots are named by
  // customer id, as slot numbers differ after a restore.
  w.Put<uint32_t>(static_cast<uint32_t>(deadlines_.size()));
  for (const Deadline& d : deadlines_) {
    w.PutBytes(*slot_ids_[d.slot]);
    w.Put<int64_t>(d.deadline_ms);
    w.Put<uint32_t>(d.generation);
  }
  *out = SealBlob(BlobKind::kPartitionModelState, kPartitionStateVersion, payload);
  return Status::OK();
}

Status CustomerModels::DecodeGlobal(std::string_view blob) {
  CRM_ASSIGN_OR_RETURN(
      const std::string_view payload,
      OpenBlobPayload(blob, BlobKind::kPartitionModelState, kPartitionStateVersion));
  BinaryReader in(payload);
  int32_t dim = 0, horizon_days = 0, k = 0;
  CRM_RETURN_NOT_OK(in.Get(&dim));
  CRM_RETURN_NOT_OK(in.Get(&horizon_days));
  CRM_RETURN_NOT_OK(in.Get(&k));
  if (dim != dim_ || horizon_days != options_.churn_horizon_days || k != options_.kmeans_k) {
    return Status::InvalidArgument(
        "partition model state written with " + std::to_string(dim) + " features, horizon " +
        std::to_string(horizon_days) + " days, k " + std::to_string(k) + "; configured " +
        std::to_string(dim_) + ", " + std::to_string(options_.churn_horizon_days) + ", " +
        std::to_string(options_.kmeans_k));
  }
  int64_t watermark = 0;
  uint64_t pending_count = 0;
  CRM_RETURN_NOT_OK(in.Get(&watermark));
  CRM_RETURN_NOT_OK(in.Get(&pending_count));

  std::string scratch;
  CRM_ASSIGN_OR_RETURN(models::Standardizer standardizer,
                       ReadNested<models::Standardizer>(in, &scratch));
  CRM_ASSIGN_OR_RETURN(models::BayesianLogisticRegression churn,
                       ReadNested<models::BayesianLogisticRegression>(in, &scratch));
  CRM_ASSIGN_OR_RETURN(models::RecursiveLeastSquares value,
                       ReadNested<models::RecursiveLeastSquares>(in, &scratch));
  if (standardizer.dimension() != dim_ || churn.dimension() != dim_ ||
      value.dimension() != dim_ + 1) {
    return Mismatch("model dimensions differ from the feature snapshot's");
  }
  CRM_ASSIGN_OR_RETURN(models::StreamingAuc churn_auc, models::StreamingAuc::ReadFrom(in));
  CRM_ASSIGN_OR_RETURN(models::LogLoss churn_log_loss, models::LogLoss::ReadFrom(in));
  CRM_ASSIGN_OR_RETURN(models::StreamingAuc warm_churn_auc, models::StreamingAuc::ReadFrom(in));
  CRM_ASSIGN_OR_RETURN(models::LogLoss warm_churn_log_loss, models::LogLoss::ReadFrom(in));
  CRM_ASSIGN_OR_RETURN(models::Rmse value_rmse, models::Rmse::ReadFrom(in));

  CRM_ASSIGN_OR_RETURN(models::Standardizer segment_standardizer,
                       ReadNested<models::Standardizer>(in, &scratch));
  CRM_ASSIGN_OR_RETURN(models::MiniBatchKMeans kmeans,
                       ReadNested<models::MiniBatchKMeans>(in, &scratch));
  if (segment_standardizer.dimension() != 4 || kmeans.k() != options_.kmeans_k ||
      kmeans.dim() != 4) {
    return Mismatch("segmentation dimensions differ");
  }
  std::array<uint64_t, 64> segment_sizes{};
  for (int c = 0; c < k; ++c) CRM_RETURN_NOT_OK(in.Get(&segment_sizes[static_cast<size_t>(c)]));
  CRM_ASSIGN_OR_RETURN(models::MultivariateAnomalyDetector behaviour,
                       ReadNested<models::MultivariateAnomalyDetector>(in, &scratch));
  if (behaviour.options().dim != 4) return Mismatch("behaviour dimension differs");
  uint64_t anomaly_scored = 0, anomalies = 0;
  CRM_RETURN_NOT_OK(in.Get(&anomaly_scored));
  CRM_RETURN_NOT_OK(in.Get(&anomalies));

  int64_t open_minute = 0;
  double minute_revenue = 0, minute_tickets = 0, minute_logins = 0;
  uint64_t late_minute_events = 0;
  CRM_RETURN_NOT_OK(in.Get(&open_minute));
  CRM_RETURN_NOT_OK(in.Get(&minute_revenue));
  CRM_RETURN_NOT_OK(in.Get(&minute_tickets));
  CRM_RETURN_NOT_OK(in.Get(&minute_logins));
  CRM_RETURN_NOT_OK(in.Get(&late_minute_events));
  std::array<models::UnivariateAnomalyDetector, MinuteMetrics::kMetrics> minute_detectors;
  for (auto& detector : minute_detectors) {
    CRM_ASSIGN_OR_RETURN(detector, ReadNested<models::UnivariateAnomalyDetector>(in, &scratch));
  }
  CRM_ASSIGN_OR_RETURN(models::RollingCorrelation correlation,
                       ReadNested<models::RollingCorrelation>(in, &scratch));
  if (correlation.metrics() != MinuteMetrics::kMetrics ||
      correlation.options().window != models::CorrelationWindowKind::kCount ||
      correlation.options().window_rows != options_.correlation_window_minutes) {
    return Status::InvalidArgument("partition model state: another correlation window");
  }
  MinuteMetrics latest;
  CRM_RETURN_NOT_OK(in.Get(&latest.minute_start_ms));
  for (double* v : {&latest.revenue, &latest.tickets, &latest.logins, &latest.revenue_score,
                    &latest.tickets_score, &latest.logins_score}) {
    CRM_RETURN_NOT_OK(in.Get(v));
  }
  for (double& v : latest.correlation) CRM_RETURN_NOT_OK(in.Get(&v));
  std::array<double, MinuteMetrics::kMetrics> minute_expected{};
  for (double& v : minute_expected) CRM_RETURN_NOT_OK(in.Get(&v));
  uint64_t minutes_closed = 0;
  CRM_RETURN_NOT_OK(in.Get(&minutes_closed));
  uint32_t queued = 0;
  CRM_RETURN_NOT_OK(in.Get(&queued));
  if (queued > minute_anomalies_.capacity()) return Mismatch("too many queued minute anomalies");
  std::vector<MinuteAnomaly> minute_anomalies(queued);
  for (MinuteAnomaly& a : minute_anomalies) {
    CRM_RETURN_NOT_OK(in.Get(&a.metric));
    CRM_RETURN_NOT_OK(in.Get(&a.minute_start_ms));
    CRM_RETURN_NOT_OK(in.Get(&a.score));
    CRM_RETURN_NOT_OK(in.Get(&a.observed));
    CRM_RETURN_NOT_OK(in.Get(&a.expected));
    if (a.metric < 0 || a.metric >= MinuteMetrics::kMetrics) return Mismatch("bad metric");
  }

  CRM_RETURN_NOT_OK(in.GetBytes(&scratch));
  alerts::ChurnAlertPolicy policy = policy_;
  CRM_RETURN_NOT_OK(policy.DecodeGlobalState(scratch));

  uint32_t deadline_count = 0;
  CRM_RETURN_NOT_OK(in.Get(&deadline_count));
  // Each entry takes at least 16 bytes: a corrupt count cannot reserve much.
  if (in.remaining() / 16 < deadline_count) return Mismatch("truncated label deadlines");
  std::vector<Deadline> deadlines;
  deadlines.reserve(deadline_count);
  for (uint32_t i = 0; i < deadline_count; ++i) {
    CRM_RETURN_NOT_OK(in.GetBytes(&scratch));
    Deadline d{};
    CRM_RETURN_NOT_OK(in.Get(&d.deadline_ms));
    CRM_RETURN_NOT_OK(in.Get(&d.generation));
    auto it = slot_of_.find(std::string_view(scratch));
    if (it == slot_of_.end()) {
      return Mismatch("a label deadline names customer " + scratch +
                      ", which was not decoded first");
    }
    d.slot = it->second;
    deadlines.push_back(d);
  }
  CRM_RETURN_NOT_OK(in.ExpectEnd());
  if (!std::is_heap(deadlines.begin(), deadlines.end(), LaterDeadline)) {
    return Mismatch("label deadlines out of heap order");
  }
  // The customers decoded must be those this state was written with.
  uint64_t slots_pending = 0;
  std::array<uint64_t, 64> slots_per_segment{};
  for (const Slot& slot : slots_) {
    if (slot.has_pending) ++slots_pending;
    if (slot.segment >= 0) ++slots_per_segment[static_cast<size_t>(slot.segment)];
  }
  if (slots_pending != pending_count || slots_per_segment != segment_sizes) {
    return Mismatch("the decoded customers do not match it (pending examples or segment sizes)");
  }

  watermark_ms_ = watermark;
  pending_count_ = pending_count;
  // The flush count is not state: it only tells this flush's triggers from
  // older ones, and every restored slot has none (trigger_flush UINT32_MAX,
  // a value flushes_ never takes). Not persisting it keeps the blob the
  // same whatever no-op flushes a restored partition runs.
  trigger_ids_.clear();
  standardizer_ = std::move(standardizer);
  churn_ = std::move(churn);
  value_ = std::move(value);
  churn_auc_ = std::move(churn_auc);
  churn_log_loss_ = churn_log_loss;
  warm_churn_auc_ = std::move(warm_churn_auc);
  warm_churn_log_loss_ = warm_churn_log_loss;
  value_rmse_ = value_rmse;
  segment_standardizer_ = std::move(segment_standardizer);
  kmeans_ = std::move(kmeans);
  segment_sizes_ = segment_sizes;
  behaviour_ = std::move(behaviour);
  anomaly_scored_ = anomaly_scored;
  anomalies_ = anomalies;
  open_minute_ = open_minute;
  minute_revenue_ = minute_revenue;
  minute_tickets_ = minute_tickets;
  minute_logins_ = minute_logins;
  late_minute_events_ = late_minute_events;
  minute_detectors_ = std::move(minute_detectors);
  correlation_ = std::move(correlation);
  latest_minute_ = latest;
  minute_expected_ = minute_expected;
  minutes_closed_ = minutes_closed;
  minute_anomalies_.assign(minute_anomalies.begin(), minute_anomalies.end());  // keeps capacity
  policy_ = std::move(policy);
  deadlines_ = std::move(deadlines);
  return Status::OK();
}

}  // namespace crmstream::pipeline
