#include "crmstream/scoring/churn_value_model.h"

#include <algorithm>
#include <cmath>
#include <optional>
#include <utility>

#include "crmstream/common/binary_io.h"
#include "crmstream/common/hash.h"
#include "scoring/scoring_internal.h"

namespace crmstream::scoring {
namespace {

using internal::kMillisPerDay;
using internal::ReadNested;

models::BayesianLogisticRegressionOptions ChurnOptions(const ChurnValueOptions& o, int dim) {
  models::BayesianLogisticRegressionOptions c;
  c.dimension = dim;
  c.prior_variance = o.churn_prior_variance;
  return c;
}

models::RecursiveLeastSquaresOptions ValueOptions(const ChurnValueOptions& o, int dim) {
  models::RecursiveLeastSquaresOptions v;
  v.dimension = dim + 1;  // the inputs plus a constant for the intercept
  v.ridge = o.value_ridge;
  v.forgetting_factor = o.value_forgetting_factor;
  return v;
}

// Checkpoint formats: the customer's section of its record, and the
// partition blob (BlobKind::kChurnPartitionState).
// Partition versions 1 and 2 (state format 2) held the label deadlines, 2
// also the calibrator; version 3 (state format 3) keeps the calibrator and
// leaves the deadlines to the store's index; version 4 (state format 4) adds
// the churn model kind and, for a tree or forest, its blob after the
// logistic model's; version 5 (state format 5) the spend regression's spend
// terms (their standardiser, and the regression's wider input). Only version
// 5 is read: older ones exist only in stores of older formats, which the
// state store refuses as a whole. Customer version 2 (state format 6) leaves
// the pending snapshot to the store's deadline index; version 1 held it.
constexpr uint16_t kCustomerVersion = 2;
constexpr uint16_t kPartitionVersion = 5;

// Slot booleans of the customer blob, one bit each.
constexpr uint8_t kScoreStaleBit = 1;
constexpr uint8_t kHasPendingBit = 2;
constexpr uint8_t kPendingWarmBit = 4;
constexpr uint8_t kPendingChurnedBit = 8;
constexpr uint8_t kClosedBit = 16;
constexpr uint8_t kAllSlotBits = 31;

// The tree models' settings: those `crmstream eval telco` measures.
models::HoeffdingTreeOptions TreeOptions(ChurnModelKind kind, int dim) {
  models::HoeffdingTreeOptions t;
  t.dimension = dim;
  if (kind == ChurnModelKind::kModelTree) t.leaf_prediction = models::LeafPrediction::kLogistic;
  return t;
}

Status Mismatch(std::string_view what) {
  return Status::Corruption("churn partition state: " + std::string(what));
}

}  // namespace

Status ChurnValueOptions::Validate() const {
  auto bad = [](std::string_view field, std::string_view rule, auto value) {
    return Status::InvalidArgument("ChurnValueOptions." + std::string(field) + " must be " +
                                   std::string(rule) + ", got " + std::to_string(value));
  };
  if (horizon_days < 1 || horizon_days > 365) {
    return bad("horizon_days", "in [1, 365]", horizon_days);
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
  if (warm_after_examples < 0) return bad("warm_after_examples", ">= 0", warm_after_examples);
  CRM_RETURN_NOT_OK(gate.Validate());
  CRM_RETURN_NOT_OK(calibration.Validate());
  return alerts.Validate();
}

Result<ChurnValueModel> ChurnValueModel::Create(const ChurnValueOptions& options,
                                                const features::FeatureSpec& spec) {
  CRM_RETURN_NOT_OK(options.Validate());
  CRM_RETURN_NOT_OK(spec.Validate().WithContext("FeatureSpec"));
  const int dim = static_cast<int>(features::FeatureStore::FeatureNames(spec).size());
  CRM_ASSIGN_OR_RETURN(models::Standardizer standardizer, models::Standardizer::Create(dim));
  CRM_ASSIGN_OR_RETURN(models::BayesianLogisticRegression churn,
                       models::BayesianLogisticRegression::Create(ChurnOptions(options, dim)));
  const int spend_terms = static_cast<int>(ValueSpendTerms(spec).size());
  CRM_ASSIGN_OR_RETURN(models::Standardizer spend_standardizer,
                       models::Standardizer::Create(spend_terms));
  CRM_ASSIGN_OR_RETURN(
      models::RecursiveLeastSquares value,
      models::RecursiveLeastSquares::Create(ValueOptions(options, dim + spend_terms)));
  CRM_ASSIGN_OR_RETURN(alerts::ChurnAlertPolicy policy,
                       alerts::ChurnAlertPolicy::Create(options.alerts));
  CRM_ASSIGN_OR_RETURN(models::PlattCalibrator calibrator,
                       models::PlattCalibrator::Create(options.calibration));
  ChurnValueModel model(options, spec, dim, std::move(standardizer), std::move(churn),
                        std::move(value), std::move(spend_standardizer), std::move(policy),
                        std::move(calibrator));
  switch (options.churn_model) {
    case ChurnModelKind::kLogistic:
      break;
    case ChurnModelKind::kHoeffdingTree:
    case ChurnModelKind::kModelTree: {
      CRM_ASSIGN_OR_RETURN(models::HoeffdingTree tree,
                           models::HoeffdingTree::Create(TreeOptions(options.churn_model, dim)));
      model.tree_.emplace(std::move(tree));
      break;
    }
    case ChurnModelKind::kRandomForest:
    case ChurnModelKind::kModelForest: {
      models::AdaptiveRandomForestOptions f;  // the ARF paper's defaults
      f.dimension = dim;
      if (options.churn_model == ChurnModelKind::kModelForest) {
        f.tree.leaf_prediction = models::LeafPrediction::kLogistic;
      }
      CRM_ASSIGN_OR_RETURN(models::AdaptiveRandomForest forest,
                           models::AdaptiveRandomForest::Create(f));
      model.forest_.emplace(std::move(forest));
      break;
    }
  }
  return model;
}

uint64_t ChurnValueModel::churn_examples() const {
  if (tree_) return static_cast<uint64_t>(tree_->weight_seen());
  if (forest_) return forest_->count();
  return churn_.count();
}

double ChurnValueModel::PredictChurn(std::span<const double> z) const {
  if (tree_) return tree_->PredictProbability(z);
  if (forest_) return forest_->PredictProbability(z);
  return churn_.PredictProbability(z);
}

void ChurnValueModel::TrainChurn(std::span<const double> z, bool churned) {
  if (tree_) {
    tree_->Train(z, churned, 1.0);
  } else if (forest_) {
    (void)forest_->Learn(z, churned);  // its own prequential figures are not used
  } else {
    churn_.Update(z, churned);
  }
}

ChurnValueModel::ChurnValueModel(
    const ChurnValueOptions& options, const features::FeatureSpec& spec, int dim,
    models::Standardizer standardizer, models::BayesianLogisticRegression churn,
    models::RecursiveLeastSquares value, models::Standardizer spend_standardizer,
    alerts::ChurnAlertPolicy policy, models::PlattCalibrator calibrator)
    : options_(options),
      horizon_ms_(int64_t{options.horizon_days} * kMillisPerDay),
      dim_(dim),
      standardizer_(std::move(standardizer)),
      churn_(std::move(churn)),
      spend_terms_(spec),
      spend_standardizer_(std::move(spend_standardizer)),
      value_(std::move(value)),
      policy_(std::move(policy)),
      calibrator_(std::move(calibrator)) {
  snapshot_.resize(static_cast<size_t>(dim_));
  top_.reserve(static_cast<size_t>(dim_));
  standardised_.resize(static_cast<size_t>(dim_) + 1);
  own_z_.resize(static_cast<size_t>(dim_));
  spend_raw_.resize(spend_terms_.size());
  value_x_.resize(static_cast<size_t>(dim_) + spend_terms_.size() + 1);
}

void ChurnValueModel::ValueInput(const models::Standardizer& spend) {
  const size_t d = static_cast<size_t>(dim_);
  std::copy(standardised_.begin(), standardised_.begin() + dim_, value_x_.begin());
  spend_terms_.Compute(snapshot_, spend_raw_);
  spend.Transform(spend_raw_, std::span<double>(value_x_).subspan(d, spend_raw_.size()));
  value_x_.back() = 1.0;
}

std::span<const double> ChurnValueModel::ChurnInput() const {
  if (global_ && !global_->churn) return own_z_;
  return std::span<const double>(standardised_).first(static_cast<size_t>(dim_));
}

uint64_t ChurnValueModel::scoring_churn_examples() const {
  return global_ && global_->churn ? global_->churn->count() : churn_examples();
}

Status ChurnValueModel::UseGlobalModels(std::optional<GlobalModels> global) {
  if (global) {
    const bool logistic = options_.churn_model == ChurnModelKind::kLogistic;
    if (global->features.dimension() != dim_ ||
        global->spend_features.dimension() != static_cast<int>(spend_raw_.size()) ||
        global->value.dimension() != static_cast<int>(value_x_.size()) ||
        (logistic && (!global->churn || global->churn->dimension() != dim_))) {
      return Status::InvalidArgument(
          "global models: their dimensions differ from this partition's models");
    }
    if (!logistic) global->churn.reset();
    // The regression caches its coefficients at its first prediction: here,
    // not on the first event scored.
    std::fill(value_x_.begin(), value_x_.end(), 0.0);
    (void)global->value.Predict(value_x_);
  }
  global_ = std::move(global);
  return Status::OK();
}

void ChurnValueModel::GrowTo(size_t slots) {
  static_assert(sizeof(Deadline) == kDeadlineBytes);
  static_assert(sizeof(Slot) == 72);
  if (slots <= slots_.size()) return;
  // Exactly: CustomerModels chooses the growth.
  slots_.reserve(slots);
  slots_.resize(slots);
}

void ChurnValueModel::OnEvent(const ingest::Event& event, const features::CustomerFeatures& f,
                              UnsavedSlots* unsaved) {
  watermark_ms_ = std::max(watermark_ms_, event.timestamp_ms);
  // Labels first: an example that matured before this event must be trained
  // with what was known up to its deadline.
  ResolveMatured(unsaved);

  const uint32_t s = f.slot();
  if (s >= slots_.size()) GrowTo(std::max(size_t{s} + 1, 2 * slots_.size()));  // amortised
  unsaved->Mark(s);
  LogTrigger(s, event);
  Slot* slot = &slots_[s];
  const double monetary = f.monetary();

  if (event.type == ingest::EventType::kAccountClosed) {
    if (slot->has_pending && event.timestamp_ms <= slot->pending_ms + horizon_ms_) {
      slot->pending_churned = true;
      slot->pending_monetary = monetary - slot->pending_monetary;  // the spend, from now on
      // Trained at the closing: the snapshot is in memory (taken since the
      // last checkpoint) or read from the store's index.
      if (!options_.train_at_deadline) ResolveNow(f, unsaved);
      slot = &slots_[s];
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
    slot->row = NewRow();
    float* stored = Row(slot->row);
    for (int i = 0; i < dim_; ++i)
      stored[i] = static_cast<float>(snapshot_[static_cast<size_t>(i)]);
    slot->has_pending = true;
    slot->pending_ms = now;
    slot->pending_probability =
        static_cast<float>(last_raw_);  // the calibration learns from raw predictions
    slot->pending_value = slot->predicted_value;
    slot->pending_warm =
        scoring_churn_examples() >= static_cast<uint64_t>(options_.warm_after_examples);
    slot->pending_monetary = monetary;
    PushDeadline(s, Hash64(f.customer_id()));
    ++pending_count_;
    // The scaling learns from example snapshots only, after they were scored,
    // so a prediction never uses its own row's statistics.
    standardizer_.Update(snapshot_);
    spend_standardizer_.Update(spend_raw_);  // Score's terms of this snapshot
    slot->last_monetary = monetary;
    // A late event of a long-quiet customer can take an example whose
    // deadline already passed: it matures now, while the customer is surely
    // in memory (a checkpoint would index it behind the saved-label cursor).
    if (now + horizon_ms_ < watermark_ms_) ResolveMatured(unsaved);
    return;
  }
  slot->score_stale = true;
  slot->last_monetary = monetary;
}

void ChurnValueModel::PushDeadline(uint32_t s, uint64_t id_hash) {
  const Slot& slot = slots_[s];
  deadlines_.push_back(
      {slot.pending_ms + horizon_ms_, id_hash, s, slot.generation, slot.epoch, /*sealed=*/0});
  std::push_heap(deadlines_.begin(), deadlines_.end(), LaterDeadline);
}

uint32_t ChurnValueModel::NewRow() {
  if (!free_rows_.empty()) {
    const uint32_t row = free_rows_.back();
    free_rows_.pop_back();
    return row;
  }
  const size_t need = (size_t{rows_used_} + 1) * static_cast<size_t>(dim_);
  if (buffer_.size() < need) buffer_.resize(std::max(need, 2 * buffer_.size()));  // amortised
  return rows_used_++;
}

void ChurnValueModel::FreeRow(Slot* slot) {
  if (slot->row == kNoRow) return;
  free_rows_.push_back(slot->row);
  slot->row = kNoRow;
}

uint32_t ChurnValueModel::SealSnapshots() {
  ++seals_;
  for (Deadline& d : deadlines_) {
    if (d.sealed == 0) d.sealed = seals_;
  }
  return seals_;
}

void ChurnValueModel::ReleaseSnapshots(uint32_t seal) {
  if (saved_ == nullptr) return;
  for (const Deadline& d : deadlines_) {
    if (d.sealed != 0 && d.sealed <= seal && !Stale(d)) FreeRow(&slots_[d.slot]);
  }
  std::erase_if(deadlines_, [this](const Deadline& d) { return Stale(d); });
  std::make_heap(deadlines_.begin(), deadlines_.end(), LaterDeadline);
  // The index holds them now: its next entry is looked up again.
  saved_next_state_ = kNextUnknown;
}

void ChurnValueModel::Score(const features::CustomerFeatures& f, Slot* slot) {
  f.Snapshot(f.as_of_ms(), &snapshot_);
  const std::span<double> z = std::span<double>(standardised_).first(static_cast<size_t>(dim_));
  const GlobalModels* global = global_ ? &*global_ : nullptr;
  (global ? global->features : standardizer_).Transform(snapshot_, z);
  standardised_[static_cast<size_t>(dim_)] = 1.0;
  if (global && global->churn) {
    last_raw_ = global->churn->PredictProbability(z);
  } else {
    // A tree learns on the own standardisation: it scores on it too.
    if (global) standardizer_.Transform(snapshot_, own_z_);
    last_raw_ = PredictChurn(ChurnInput());
  }
  slot->churn_probability = static_cast<float>(calibrator_.Calibrate(last_raw_));
  ValueInput(global ? global->spend_features : spend_standardizer_);
  const models::RecursiveLeastSquares& value = global ? global->value : value_;
  slot->predicted_value = static_cast<float>(std::max(0.0, value.Predict(value_x_)));
  slot->score_stale = false;
}

void ChurnValueModel::LogTrigger(uint32_t s, const ingest::Event& event) {
  // One entry per customer per flush, its id overwritten in place while it
  // fits.
  const size_t length = std::min<size_t>(event.event_id.size(), UINT16_MAX);
  uint32_t index = TriggerIndex(s);
  if (index == kNoTrigger) {
    index = static_cast<uint32_t>(triggers_.size());
    slots_[s].trigger = index;
    triggers_.push_back(Trigger{0, s, 0, 0, 0, event.type});
  }
  Trigger* t = &triggers_[index];
  if (length > t->id_capacity) {
    t->id_offset = static_cast<uint32_t>(trigger_ids_.size());
    t->id_capacity = static_cast<uint16_t>(length);
    trigger_ids_.append(event.event_id.data(), length);
  } else {
    trigger_ids_.replace(t->id_offset, length, event.event_id.data(), length);
  }
  t->id_length = static_cast<uint16_t>(length);
  t->type = event.type;
  t->ms = event.timestamp_ms;
}

void ChurnValueModel::Refresh(const features::CustomerFeatures& f, UnsavedSlots* unsaved,
                              ChurnRefresh* out) {
  ChurnRefresh& r = *out;
  r = ChurnRefresh{};
  const uint32_t s = f.slot();
  Slot& slot = slots_[s];
  // The slot is marked unsaved only where it changes: a customer refreshed
  // with nothing new (one just restored, say) is no checkpoint write.
  bool scored_now = false;
  if (slot.score_stale && !slot.closed) {
    Score(f, &slot);
    scored_now = true;
    unsaved->Mark(s);
  }
  r.churn_probability = slot.churn_probability;
  if (const uint32_t index = TriggerIndex(s); index != kNoTrigger) {
    const Trigger* t = &triggers_[index];
    r.has_trigger = true;
    r.trigger_event_id = std::string_view(trigger_ids_).substr(t->id_offset, t->id_length);
    r.trigger_type = t->type;
    r.trigger_ms = t->ms;
  }
  // An untrained churn model scores everyone alike (0.5), and one that has
  // seen no closings yet is confidently wrong: alerts wait for the gate.
  if (!slot.closed && r.has_trigger && gate_open() &&
      scoring_churn_examples() >= static_cast<uint64_t>(options_.warm_after_examples)) {
    alerts::CustomerAlertState alert = slot.Alert();
    r.alert = policy_.Evaluate(f.customer_id(), slot.churn_probability, f.as_of_ms(), &alert);
    slot.SetAlert(alert);
    unsaved->Mark(s);
    if (r.alert.raise) {
      if (!scored_now) Score(f, &slot);  // the explanation needs this customer's inputs
      Explain();
      r.contributions = std::span<const ChurnContribution>(contributions_)
                            .first(std::min(top_.size(), contributions_.size()));
    }
  }
}

void ChurnValueModel::Explain() {
  const std::span<const double> z = ChurnInput();
  if (tree_ || forest_) {
    if (tree_) {
      tree_->Explain(z, &tree_explanation_);
    } else {
      forest_->Explain(z, &tree_explanation_);
    }
    // Largest magnitude first already.
    top_.clear();
    for (const models::FeatureContribution& c : tree_explanation_.contributions) {
      if (top_.size() == contributions_.size()) break;
      top_.push_back(c);
    }
  } else {
    const models::BayesianLogisticRegression& churn =
        global_ && global_->churn ? *global_->churn : churn_;
    churn.TopContributions(z, contributions_.size(), &top_);
  }
  const size_t n = std::min(top_.size(), contributions_.size());
  for (size_t i = 0; i < n; ++i) {
    const uint32_t j = top_[i].feature;
    contributions_[i] = {static_cast<int>(j), snapshot_[j], top_[i].contribution};
  }
}

void ChurnValueModel::EndFlush() {
  // Every slot's trigger index is now stale: past the end, or naming the
  // entry of another slot once the log refills.
  triggers_.clear();
  trigger_ids_.clear();
}

const SavedLabel* ChurnValueModel::PeekSaved() {
  if (saved_ == nullptr || saved_next_state_ == kNextNone) return nullptr;
  if (saved_next_state_ == kNextUnknown) {
    saved_next_state_ =
        saved_->NextSaved(saved_cursor_set_ ? &saved_cursor_ : nullptr, &saved_next_) ? kNextKnown
                                                                                      : kNextNone;
  }
  return saved_next_state_ == kNextKnown ? &saved_next_ : nullptr;
}

void ChurnValueModel::ResolveMatured(UnsavedSlots* unsaved) {
  for (;;) {
    // Stale entries: examples that already resolved with a closing,
    // customers that left memory, snapshots released to the index.
    while (!deadlines_.empty() && Stale(deadlines_.front())) {
      std::pop_heap(deadlines_.begin(), deadlines_.end(), LaterDeadline);
      deadlines_.pop_back();
    }
    const bool heap_due = !deadlines_.empty() && deadlines_.front().deadline_ms < watermark_ms_;
    const SavedLabel* saved = PeekSaved();
    if (saved != nullptr && saved->deadline_ms >= watermark_ms_) saved = nullptr;
    if (!heap_due && saved == nullptr) return;
    if (saved != nullptr &&
        (!heap_due || std::pair(saved->deadline_ms, saved->id_hash) <=
                          std::pair(deadlines_.front().deadline_ms, deadlines_.front().id_hash))) {
      // The next label in order is the index's: its customer is brought
      // into memory, and the entry resolves its pending example unless that
      // one is not the entry's (resolved or replaced since the checkpoint:
      // the entry is its saved past) or still buffered (its heap entry rules).
      saved_cursor_ = std::move(saved_next_);
      saved_cursor_set_ = true;
      saved_next_state_ = kNextUnknown;
      const std::optional<uint32_t> s = saved_->SlotOf(saved_cursor_.customer_id);
      if (!s || *s >= slots_.size() || saved_cursor_.snapshot.size() != static_cast<size_t>(dim_)) {
        continue;  // the source keeps the failure
      }
      const Slot& slot = slots_[*s];
      if (!slot.has_pending || slot.row != kNoRow ||
          slot.pending_ms + horizon_ms_ != saved_cursor_.deadline_ms) {
        continue;
      }
      ResolveDue(*s, saved_cursor_.snapshot.data(), unsaved);
      ++saved_labels_resolved_;
      continue;
    }
    std::pop_heap(deadlines_.begin(), deadlines_.end(), LaterDeadline);
    const Deadline d = deadlines_.back();
    deadlines_.pop_back();
    ResolveDue(d.slot, Row(slots_[d.slot].row), unsaved);
  }
}

void ChurnValueModel::ResolveDue(uint32_t s, const float* snapshot, UnsavedSlots* unsaved) {
  const Slot& slot = slots_[s];
  if (slot.pending_churned) {
    Resolve(s, snapshot, /*churned=*/true, slot.pending_monetary, unsaved);  // the spend
    return;
  }
  // No event of this customer is past the deadline yet (the watermark only
  // just passed it), so its latest monetary is the value at the deadline.
  Resolve(s, snapshot, /*churned=*/false, slot.last_monetary - slot.pending_monetary, unsaved);
}

void ChurnValueModel::ResolveNow(const features::CustomerFeatures& f, UnsavedSlots* unsaved) {
  const uint32_t s = f.slot();
  const Slot& slot = slots_[s];
  if (slot.row != kNoRow) {
    ResolveDue(s, Row(slot.row), unsaved);
    return;
  }
  lookup_.deadline_ms = slot.pending_ms + horizon_ms_;
  lookup_.id_hash = Hash64(f.customer_id());
  lookup_.customer_id.assign(f.customer_id());
  // A failed read is kept by the source; the label then waits for its deadline.
  if (saved_ == nullptr || !saved_->ReadSaved(&lookup_) ||
      lookup_.snapshot.size() != static_cast<size_t>(dim_)) {
    return;
  }
  ResolveDue(s, lookup_.snapshot.data(), unsaved);
}

void ChurnValueModel::Resolve(uint32_t s, const float* stored, bool churned, double spend,
                              UnsavedSlots* unsaved) {
  unsaved->Mark(s);
  Slot& slot = slots_[s];
  for (int i = 0; i < dim_; ++i) snapshot_[static_cast<size_t>(i)] = stored[i];
  FreeRow(&slot);
  const std::span<double> z = std::span<double>(standardised_).first(static_cast<size_t>(dim_));
  standardizer_.Transform(snapshot_, z);
  standardised_[static_cast<size_t>(dim_)] = 1.0;

  churn_auc_.Add(slot.pending_probability, churned);
  churn_log_loss_.Add(slot.pending_probability, churned);
  if (slot.pending_warm) {
    warm_churn_auc_.Add(slot.pending_probability, churned);
    warm_churn_log_loss_.Add(slot.pending_probability, churned);
    // Labels of the untrained model's predictions (all 0.5) would teach the
    // calibration and the gate nothing.
    calibrator_.Add(slot.pending_probability, churned);
    UpdateGate();
  }
  value_rmse_.Add(slot.pending_value, spend);
  TrainChurn(z, churned);
  ValueInput(spend_standardizer_);
  value_.Update(value_x_, spend);

  slot.has_pending = false;
  slot.pending_churned = false;
  ++slot.generation;
  --pending_count_;
}

void ChurnValueModel::UpdateGate() {
  gate_state_ = alerts::EvaluateChurnGate(options_.gate, gate_inputs());
}

alerts::ChurnGateInputs ChurnValueModel::gate_inputs() const {
  const models::CalibrationFit& fit = calibrator_.fit();
  return {fit.positives, fit.negatives, fit.auc};
}

std::optional<int64_t> ChurnValueModel::PendingSnapshotMs(uint32_t slot) const {
  if (!slots_[slot].has_pending) return std::nullopt;
  return slots_[slot].pending_ms;
}

std::span<const float> ChurnValueModel::PendingSnapshot(uint32_t slot) const {
  const Slot& s = slots_[slot];
  if (!s.has_pending || s.row == kNoRow) return {};
  return std::span<const float>(buffer_).subspan(static_cast<size_t>(s.row) * dim_,
                                                 static_cast<size_t>(dim_));
}

ChurnValueModel::Quality ChurnValueModel::quality() const {
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
  q.gate_state = gate_state_;
  q.gate_inputs = gate_inputs();
  const models::CalibrationFit& fit = calibrator_.fit();
  q.calibrated = fit.fitted;
  q.calibration_slope = fit.slope;
  q.calibration_intercept = fit.intercept;
  q.calibration_error = fit.expected_calibration_error;
  return q;
}

void ChurnValueModel::AppendCustomer(uint32_t s, std::string* record) const {
  const Slot& slot = slots_[s];
  internal::SectionWriter section(record, kCustomerVersion);
  BinaryWriter& w = section.writer();
  const uint8_t bits =
      (slot.score_stale ? kScoreStaleBit : 0) | (slot.has_pending ? kHasPendingBit : 0) |
      (slot.pending_warm ? kPendingWarmBit : 0) | (slot.pending_churned ? kPendingChurnedBit : 0) |
      (slot.closed ? kClosedBit : 0);
  w.Put<uint8_t>(bits);
  w.Put<double>(slot.churn_probability);
  w.Put<double>(slot.predicted_value);
  w.Put<double>(slot.last_monetary);
  w.Put<int64_t>(int64_t{slot.pending_ms});
  w.Put<double>(slot.pending_probability);
  w.Put<double>(slot.pending_value);
  // Memory keeps one of the two (Slot::pending_monetary); the record keeps
  // its layout, with 0 for the monetary value of a churned example.
  w.Put<double>(slot.pending_churned ? 0.0 : slot.pending_monetary);
  w.Put<double>(slot.pending_churned ? slot.pending_monetary : 0.0);
  w.Put<uint32_t>(slot.generation);
  alerts::ChurnAlertPolicy::EncodeCustomerState(slot.Alert(), record);
}

Result<ChurnValueModel::DecodedCustomer> ChurnValueModel::ReadCustomer(BinaryReader* record) const {
  std::string bytes;
  CRM_RETURN_NOT_OK(
      internal::ReadSection(record, kCustomerVersion, "churn customer state", &bytes));
  const std::string_view payload = bytes;
  BinaryReader in(payload);
  DecodedCustomer decoded;
  // Trigger fields stay "none": a restored customer has no event since the flush.
  Slot& d = decoded.slot_;
  uint8_t bits = 0;
  CRM_RETURN_NOT_OK(in.Get(&bits));
  if ((bits & ~kAllSlotBits) != 0) return Status::Corruption("churn customer state: bad flags");
  d.score_stale = (bits & kScoreStaleBit) != 0;
  d.has_pending = (bits & kHasPendingBit) != 0;
  d.pending_warm = (bits & kPendingWarmBit) != 0;
  d.pending_churned = (bits & kPendingChurnedBit) != 0;
  d.closed = (bits & kClosedBit) != 0;
  if (d.pending_churned && !d.has_pending) {
    return Status::Corruption("churn customer state: churned label without a pending example");
  }
  // Predictions are kept as floats; the record holds them as doubles.
  double prediction = 0.0;
  CRM_RETURN_NOT_OK(in.Get(&prediction));
  d.churn_probability = static_cast<float>(prediction);
  CRM_RETURN_NOT_OK(in.Get(&prediction));
  d.predicted_value = static_cast<float>(prediction);
  CRM_RETURN_NOT_OK(in.Get(&d.last_monetary));
  int64_t pending_ms = 0;
  CRM_RETURN_NOT_OK(in.Get(&pending_ms));
  if (pending_ms < PackedMs::kMin || pending_ms > PackedMs::kMax) {
    return Status::Corruption("churn customer state: pending example time out of range");
  }
  d.pending_ms = pending_ms;
  CRM_RETURN_NOT_OK(in.Get(&prediction));
  d.pending_probability = static_cast<float>(prediction);
  CRM_RETURN_NOT_OK(in.Get(&prediction));
  d.pending_value = static_cast<float>(prediction);
  double pending_monetary = 0.0, pending_spend = 0.0;
  CRM_RETURN_NOT_OK(in.Get(&pending_monetary));
  CRM_RETURN_NOT_OK(in.Get(&pending_spend));
  d.pending_monetary = d.pending_churned ? pending_spend : pending_monetary;
  CRM_RETURN_NOT_OK(in.Get(&d.generation));
  const size_t at = payload.size() - in.remaining();
  constexpr size_t kAlertBytes = alerts::ChurnAlertPolicy::kEncodedCustomerStateBytes;
  if (payload.size() - at < kAlertBytes) {
    return Status::Corruption("churn customer state: truncated alert state");
  }
  alerts::CustomerAlertState alert;
  CRM_RETURN_NOT_OK(
      alerts::ChurnAlertPolicy::DecodeCustomerState(payload.substr(at, kAlertBytes), &alert));
  for (int64_t t : {alert.episode_start_ms, alert.last_alert_ms}) {
    if (t != alerts::CustomerAlertState::kNever && (t < PackedMs::kMin || t > PackedMs::kMax)) {
      return Status::Corruption("churn customer state: alert time out of range");
    }
  }
  d.SetAlert(alert);
  BinaryReader rest(payload.substr(at + kAlertBytes));
  CRM_RETURN_NOT_OK(rest.ExpectEnd());
  return decoded;
}

void ChurnValueModel::InstallCustomer(uint32_t s, DecodedCustomer decoded) {
  if (s >= slots_.size()) GrowTo(std::max(size_t{s} + 1, 2 * slots_.size()));  // amortised
  FreeRow(&slots_[s]);
  const uint32_t epoch = slots_[s].epoch + 1;
  slots_[s] = decoded.slot_;
  Slot& slot = slots_[s];
  slot.epoch = epoch;
  slot.row = kNoRow;
  slot.saved_pending_ms = slot.has_pending ? int64_t{slot.pending_ms} : INT64_MIN;
}

void ChurnValueModel::ForgetCustomer(uint32_t s) {
  if (s >= slots_.size()) return;
  FreeRow(&slots_[s]);
  const uint32_t epoch = slots_[s].epoch + 1;
  slots_[s] = Slot{};
  slots_[s].epoch = epoch;
  // Entries of forgotten customers wait in the heap until their deadline;
  // a churning cache would pile them up, so drop them once they dominate.
  if (deadlines_.size() > 2 * slots_.size() + 1024) {
    std::erase_if(deadlines_, [this](const Deadline& d) { return Stale(d); });
    std::make_heap(deadlines_.begin(), deadlines_.end(), LaterDeadline);
  }
}

ChurnValueModel::LabelIndexChange ChurnValueModel::IndexChange(uint32_t s) const {
  const Slot& slot = slots_[s];
  const int64_t saved_pending_ms = slot.saved_pending_ms;
  return {saved_pending_ms == INT64_MIN ? INT64_MIN : saved_pending_ms + horizon_ms_,
          slot.has_pending ? slot.pending_ms + horizon_ms_ : INT64_MIN,
          slot.has_pending && slot.row != kNoRow};
}

void ChurnValueModel::MarkIndexSaved(uint32_t s) {
  Slot& slot = slots_[s];
  slot.saved_pending_ms = slot.has_pending ? int64_t{slot.pending_ms} : INT64_MIN;
}

void ChurnValueModel::EncodePartition(std::string* out) const {
  std::string payload;
  BinaryWriter w(&payload);
  w.Put<int32_t>(dim_);
  w.Put<int32_t>(options_.horizon_days);
  w.Put<int64_t>(watermark_ms_);
  w.Put<uint64_t>(pending_count_);
  w.PutBytes(standardizer_.Serialize());
  w.PutBytes(churn_.Serialize());
  w.Put<uint8_t>(static_cast<uint8_t>(options_.churn_model));
  if (tree_) w.PutBytes(tree_->Serialize());
  if (forest_) w.PutBytes(forest_->Serialize());
  w.PutBytes(spend_standardizer_.Serialize());
  w.PutBytes(value_.Serialize());
  churn_auc_.AppendTo(w);
  churn_log_loss_.AppendTo(w);
  warm_churn_auc_.AppendTo(w);
  warm_churn_log_loss_.AppendTo(w);
  value_rmse_.AppendTo(w);

  std::string policy_state;
  policy_.EncodeGlobalState(&policy_state);
  w.PutBytes(policy_state);
  calibrator_.AppendTo(w);
  *out = SealBlob(BlobKind::kChurnPartitionState, kPartitionVersion, payload);
}

Status ChurnValueModel::DecodePartition(std::string_view blob) {
  CRM_ASSIGN_OR_RETURN(const std::string_view payload,
                       OpenBlobPayload(blob, BlobKind::kChurnPartitionState, kPartitionVersion));
  BinaryReader in(payload);
  int32_t dim = 0, horizon_days = 0;
  CRM_RETURN_NOT_OK(in.Get(&dim));
  CRM_RETURN_NOT_OK(in.Get(&horizon_days));
  if (dim != dim_ || horizon_days != options_.horizon_days) {
    return Status::InvalidArgument("churn partition state written with " + std::to_string(dim) +
                                   " features, horizon " + std::to_string(horizon_days) +
                                   " days; configured " + std::to_string(dim_) + ", " +
                                   std::to_string(options_.horizon_days));
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
  uint8_t kind = 0;
  CRM_RETURN_NOT_OK(in.Get(&kind));
  if (kind != static_cast<uint8_t>(options_.churn_model)) {
    return Status::InvalidArgument(
        "churn partition state written with churn model " +
        (kind < kChurnModelKindNames.size() ? std::string(kChurnModelKindNames[kind])
                                            : std::to_string(kind)) +
        "; configured " +
        std::string(kChurnModelKindNames[static_cast<size_t>(options_.churn_model)]));
  }
  std::optional<models::HoeffdingTree> tree;
  std::optional<models::AdaptiveRandomForest> forest;
  if (tree_) {
    CRM_ASSIGN_OR_RETURN(tree, ReadNested<models::HoeffdingTree>(in, &scratch));
    if (tree->dimension() != dim_) return Mismatch("churn tree dimension differs");
  }
  if (forest_) {
    CRM_ASSIGN_OR_RETURN(forest, ReadNested<models::AdaptiveRandomForest>(in, &scratch));
    if (forest->dimension() != dim_) return Mismatch("churn forest dimension differs");
  }
  CRM_ASSIGN_OR_RETURN(models::Standardizer spend_standardizer,
                       ReadNested<models::Standardizer>(in, &scratch));
  CRM_ASSIGN_OR_RETURN(models::RecursiveLeastSquares value,
                       ReadNested<models::RecursiveLeastSquares>(in, &scratch));
  const int spend_terms = static_cast<int>(spend_terms_.size());
  if (standardizer.dimension() != dim_ || churn.dimension() != dim_ ||
      spend_standardizer.dimension() != spend_terms ||
      value.dimension() != dim_ + spend_terms + 1) {
    return Mismatch("model dimensions differ from the feature snapshot's");
  }
  CRM_ASSIGN_OR_RETURN(models::StreamingAuc churn_auc, models::StreamingAuc::ReadFrom(in));
  CRM_ASSIGN_OR_RETURN(models::LogLoss churn_log_loss, models::LogLoss::ReadFrom(in));
  CRM_ASSIGN_OR_RETURN(models::StreamingAuc warm_churn_auc, models::StreamingAuc::ReadFrom(in));
  CRM_ASSIGN_OR_RETURN(models::LogLoss warm_churn_log_loss, models::LogLoss::ReadFrom(in));
  CRM_ASSIGN_OR_RETURN(models::Rmse value_rmse, models::Rmse::ReadFrom(in));

  CRM_RETURN_NOT_OK(in.GetBytes(&scratch));
  alerts::ChurnAlertPolicy policy = policy_;
  CRM_RETURN_NOT_OK(policy.DecodeGlobalState(scratch));
  CRM_ASSIGN_OR_RETURN(models::PlattCalibrator calibrator,
                       models::PlattCalibrator::ReadFrom(in, options_.calibration));

  CRM_RETURN_NOT_OK(in.ExpectEnd());

  watermark_ms_ = watermark;
  pending_count_ = pending_count;
  // The trigger log is not state: every restored slot has none.
  triggers_.clear();
  trigger_ids_.clear();
  standardizer_ = std::move(standardizer);
  churn_ = std::move(churn);
  if (tree_) tree_ = std::move(tree);
  if (forest_) forest_ = std::move(forest);
  spend_standardizer_ = std::move(spend_standardizer);
  value_ = std::move(value);
  churn_auc_ = std::move(churn_auc);
  churn_log_loss_ = churn_log_loss;
  warm_churn_auc_ = std::move(warm_churn_auc);
  warm_churn_log_loss_ = warm_churn_log_loss;
  value_rmse_ = value_rmse;
  policy_ = std::move(policy);
  calibrator_ = std::move(calibrator);
  UpdateGate();
  return Status::OK();
}

}  // namespace crmstream::scoring
