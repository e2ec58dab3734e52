// The churn probability (Bayesian logistic regression on the standardised
// feature snapshot) and the predicted spend over the churn horizon
// (recursive least squares) of every customer of one partition, both trained
// on labels that mature late, and the churn alert policy run on the
// probability (alerts/churn_alert_policy.h).
//
// Labels arrive late. When a customer is scored and has no pending example,
// its feature snapshot (and the predictions made from it) is stored with its
// time. An account_closed within horizon_days of that time makes it a
// label-1 example, otherwise it is a label-0 example; either way it is
// trained once the partition's watermark (the largest event time seen)
// passes snapshot time + horizon (see train_at_deadline for why positives
// wait too). The models never learn from features taken after the
// prediction, and the prequential churn AUC / log loss and value RMSE
// compare the prediction made at snapshot time with the label once it
// resolves.
//
// Scoring is lazy. OnEvent keeps the models learning but computes a churn
// probability and a predicted value only when it stores a pending example
// (the prediction the example is judged by). Every other customer with
// events is scored once per output flush by Refresh(), with the models as
// they stand then and the customer's features as of its latest event;
// Refresh() also runs the alert policy, once the gate is open.
//
// Calibration and the gate. The churn probability published is the
// logistic model's, mapped through online Platt scaling fitted on the
// recent warm labels (models/platt_calibrator.h); the raw prediction is
// what a pending example keeps, since the calibration learns from it.
// Alerts, and "at risk" scores for anyone, wait for the gate
// (alerts/churn_gate.h): enough recent closings and non-closings, and a
// recent prequential AUC above a floor. The calibrator's window is part of
// the partition checkpoint, so the gate's state survives a restart.
//
// Customers are the feature store's slots (CustomerFeatures::slot()): the
// per-customer arrays are indexed by them and grow with the largest slot
// seen. Checkpoints are a section of each customer's record (AppendCustomer)
// and a sealed blob for the partition (EncodePartition: models, quality
// figures, watermark, alert counters).
//
// Label deadlines and snapshots: a pending example taken since the last
// checkpoint has its feature snapshot in a buffer and its deadline in a
// heap; once checkpointed (ReleaseSavedSnapshots) both are only in the state
// store's deadline index, read through a SavedLabelSource when the label
// matures, whether or not the customer is in memory. Labels mature in
// (deadline, hash of the customer id) order over both, one at a time, so the
// models learn in the same order whichever customers happen to be in memory
// (and a restart decodes no customer up front). A checkpoint keeps the index
// in step: IndexChange() per saved customer. Without a source every
// snapshot stays in the buffer.
//
// Global models (model sync, UseGlobalModels): the probability and the
// spend can be computed from models merged over every partition, each task
// holding its own copy, while this model keeps learning, checkpointing and
// publishing its own statistics. What scores with the merged models: the
// churn features' standardisation, the spend regression and its terms'
// standardisation, and (logistic kind) the churn model; a tree churn model
// does not merge and keeps scoring the own standardised snapshot. What
// stays per partition: the Platt calibration and the gate (they judge the
// predictions this partition publishes, merged or not), the alert policy,
// the prequential figures, and the training (own standardisation, own
// models), so what a partition publishes counts its own rows only.
//
// Thread-safety: none. One instance per partition task. Steady-state OnEvent
// and Refresh do not allocate; a new slot grows the arrays and the first
// event of a customer since the last flush its trigger log (amortised).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "crmstream/alerts/churn_alert_policy.h"
#include "crmstream/alerts/churn_gate.h"
#include "crmstream/common/binary_io.h"
#include "crmstream/common/packed_ms.h"
#include "crmstream/common/status.h"
#include "crmstream/features/feature_spec.h"
#include "crmstream/features/feature_store.h"
#include "crmstream/ingest/event.h"
#include "crmstream/models/adaptive_random_forest.h"
#include "crmstream/models/hoeffding_tree.h"
#include "crmstream/models/logistic_regression.h"
#include "crmstream/models/platt_calibrator.h"
#include "crmstream/models/prequential_metrics.h"
#include "crmstream/models/recursive_least_squares.h"
#include "crmstream/models/standardizer.h"
#include "crmstream/scoring/unsaved_slots.h"
#include "crmstream/scoring/value_spend_terms.h"

namespace crmstream::scoring {

// Which model predicts churn (pipelines/*.yaml: models.churn_model). Each
// learns the same late-labelled examples, on the standardised snapshot.
enum class ChurnModelKind : uint8_t {
  kLogistic = 0,       // Bayesian logistic regression (the default)
  kHoeffdingTree = 1,  // VFDT, naive Bayes adaptive leaves (models/hoeffding_tree.h)
  kModelTree = 2,      // a Hoeffding tree with Bayesian logistic leaves
  kRandomForest = 3,   // adaptive random forest, 10 trees, ADWIN drift detection
  kModelForest = 4,    // the same forest of model trees (Bayesian logistic leaves)
};
inline constexpr std::array<std::string_view, 5> kChurnModelKindNames = {
    "logistic", "hoeffding_tree", "model_tree", "random_forest", "model_forest"};

struct ChurnValueOptions {
  // The churn model. Default logistic: on IBM Telco (README, models table)
  // it scores 0.846 prequential AUC against 0.845 / 0.842 / 0.829 / 0.785
  // for the model tree, the forest of model trees, the forest and the VFDT
  // tree; on a generated world 0.744 against 0.734 / 0.730 / 0.736.
  ChurnModelKind churn_model = ChurnModelKind::kLogistic;
  // A closing within this many days of a snapshot makes it a churn example;
  // also the horizon of the predicted spend. In [1, 365]. Default 30.
  int horizon_days = 30;
  // When true (default), a snapshot whose customer closed within the horizon
  // is still trained (label 1) only once its deadline passes, like the label
  // 0 examples. Training positives at the closing instead feeds the model the
  // positives of a period about one horizon before its negatives, which
  // skews its base rate upwards (measured: log loss 1.45 vs 0.3 on the
  // generated world). The prequential metrics follow the training.
  bool train_at_deadline = true;
  // Labels whose prediction came from a churn model trained on at least this
  // many examples also enter the "warm" prequential figures (the first
  // horizon's predictions are all the untrained 0.5), and alerts start then.
  // >= 0. Default 500.
  int warm_after_examples = 500;
  // Prior variance of the churn weights (ridge strength on standardised
  // features), > 0. Default 0.1.
  double churn_prior_variance = 0.1;
  // Ridge penalty of the spend regression, > 0, in standardised inputs (so
  // worth that many average rows). Default 100: chosen, with the spend terms
  // (value_spend_terms.h), on the first half of `crmstream eval value`'s
  // predictions (RMSE 2146 there against 2380 at 1; naive 2690).
  double value_ridge = 100.0;
  // Forgetting factor of the spend regression, in (0, 1]. Default 1 (none).
  double value_forgetting_factor = 1.0;
  // The churn alert policy run by Refresh().
  alerts::ChurnAlertPolicyOptions alerts;
  // When the model may alert and publish probabilities at all: judged on
  // the calibration window (the recent warm labels).
  alerts::ChurnGateOptions gate;
  // Platt scaling of the churn probability on the recent warm labels.
  models::PlattCalibratorOptions calibration;

  // InvalidArgument naming the field.
  Status Validate() const;
};

// One term of an alert explanation: a model input, its value and its share
// of the churn log-odds (posterior mean weight x standardised value), or for
// the tree models its share of the churn probability (the path attribution,
// HoeffdingTree::Explain).
struct ChurnContribution {
  int feature = 0;  // index into FeatureStore::FeatureNames()
  double value = 0.0;
  double contribution = 0.0;
};

// What Refresh() found for one customer's churn.
struct ChurnRefresh {
  double churn_probability = 0.0;  // calibrated
  // The alert decision (raise == false when nothing is to be published).
  alerts::AlertDecision alert;
  // When the alert is raised: its top 3 contributions, largest
  // |contribution| first. Valid until the next Refresh().
  std::span<const ChurnContribution> contributions;
  // The customer's latest event since the previous flush (alerts need one;
  // a customer restored from a checkpoint has none).
  bool has_trigger = false;
  std::string_view trigger_event_id;  // valid until the next EndFlush()
  ingest::EventType trigger_type = ingest::EventType::kPageView;
  int64_t trigger_ms = 0;
};

// A label deadline of the store's index, with its example's snapshot.
struct SavedLabel {
  int64_t deadline_ms = 0;
  uint64_t id_hash = 0;  // Hash64 of the customer id
  std::string customer_id;
  std::vector<float> snapshot;  // ChurnValueModel::input_dim() model inputs
};

// The label deadlines of the partition's saved customers, and a way to
// bring one into memory (the pipeline implements it over the state store).
// A failure is kept by the source (and fails the next checkpoint); to the
// model it reads as "no more" / "not loaded".
class SavedLabelSource {
 public:
  virtual ~SavedLabelSource() = default;
  // The first saved deadline after `after` in (deadline, hash, id) order
  // (from the first when null) into *out; false when there is none.
  virtual bool NextSaved(const SavedLabel* after, SavedLabel* out) = 0;
  // The customer's slot, its features and models brought into memory first
  // if they are not there; nullopt when it cannot be loaded.
  virtual std::optional<uint32_t> SlotOf(std::string_view customer_id) = 0;
  // The snapshot of the index entry `label` names (deadline, hash, id) into
  // label->snapshot; false when there is none.
  virtual bool ReadSaved(SavedLabel* label) = 0;
};

class ChurnValueModel {
  static constexpr uint32_t kNoRow = UINT32_MAX;
  // Entries of the trigger log fit 27 bits: at most one per slot per flush,
  // and slots are below FeatureSpec::kMaxCustomers (2^26).
  static constexpr uint32_t kTriggerBits = 27;
  static constexpr uint32_t kNoTrigger = (1u << kTriggerBits) - 1;
  // One customer's state (declared first: DecodedCustomer holds one).
  // Ordered by size and the flags packed in bits: 72 bytes, where the
  // declaration order of the fields' meaning took 136. Predictions are
  // floats (7 significant digits, more than a probability or a spend
  // forecast carries); money stays double, being summed; times are 6-byte
  // PackedMs (event times, clamped by the feature store to its range). The
  // latest event since the last flush (an alert's trigger) is in the
  // per-flush log, not here: most customers in memory have none.
  struct Slot {
    double last_monetary = 0.0;  // as of the customer's previous event
    // The monetary value at the pending example's snapshot; once
    // pending_churned, the spend from then up to the closing instead (the
    // label's value, all the monetary value was kept for).
    double pending_monetary = 0.0;
    float churn_probability = 0.5f;
    float predicted_value = 0.0f;
    float pending_probability = 0.0f;  // the predictions the pending example is judged by
    float pending_value = 0.0f;
    uint32_t generation = 0;  // bumped when a pending example resolves
    uint32_t row = kNoRow;    // of buffer_: the snapshot not yet checkpointed
    // Not state: bumped when the slot is installed or forgotten, so heap
    // entries of its previous occupant read as stale.
    uint32_t epoch = 0;
    // The customer's latest event since the last flush: its entry of
    // triggers_, valid while that entry names this slot (the log is cleared
    // at every flush, so an older index names another slot or none).
    uint32_t trigger : kTriggerBits = kNoTrigger;
    bool score_stale : 1 = false;  // events since the churn probability was computed
    bool has_pending : 1 = false;
    bool pending_warm : 1 = false;     // predicted by a model past warm_after_examples
    bool pending_churned : 1 = false;  // closed within the horizon, awaiting the deadline
    bool closed : 1 = false;
    // The pending example's snapshot time (features in the buffer's `row`
    // until checkpointed, then in the store's deadline index only).
    PackedMs pending_ms = int64_t{0};
    // The snapshot time of the deadline the store's index holds for this
    // customer (INT64_MIN: none), as of its last save or load; the deadline
    // is horizon_ms_ later.
    PackedMs saved_pending_ms = INT64_MIN;
    // alerts::CustomerAlertState, packed (Alert() / SetAlert()).
    PackedMs episode_start_ms = alerts::CustomerAlertState::kNever;
    PackedMs last_alert_ms = alerts::CustomerAlertState::kNever;

    alerts::CustomerAlertState Alert() const { return {episode_start_ms, last_alert_ms}; }
    void SetAlert(const alerts::CustomerAlertState& a) {
      episode_start_ms = a.episode_start_ms;
      last_alert_ms = a.last_alert_ms;
    }
  };

 public:
  // InvalidArgument for options or a spec that fail Validate().
  static Result<ChurnValueModel> Create(const ChurnValueOptions& options,
                                        const features::FeatureSpec& spec);

  // Called after the feature store applied `event`; `f` is the customer's
  // features as returned by FeatureStore::Update. Advances the watermark,
  // resolves matured labels, and stores a pending example (scored from the
  // features as of this event) when the customer has none. Marks in
  // `unsaved` the customer and every customer whose label resolved.
  // Fetches the slot's state into the CPU's cache (an event ahead).
  void Prefetch(uint32_t slot) const {
    if (slot < slots_.size()) __builtin_prefetch(&slots_[slot]);
  }
  void OnEvent(const ingest::Event& event, const features::CustomerFeatures& f,
               UnsavedSlots* unsaved);

  // At an output flush, for a customer with events since the previous one
  // (one the model never saw is a precondition violation): scores it when
  // it had events since its last score, and runs the alert policy (once the
  // model has trained on warm_after_examples examples and the gate is
  // open). Writes into `*out`; marks the customer in `unsaved`
  // where its state changed. Does not allocate.
  void Refresh(const features::CustomerFeatures& f, UnsavedSlots* unsaved, ChurnRefresh* out);
  // Ends a flush: forgets the trigger events logged since the previous one.
  void EndFlush();

  // Grows the per-customer arrays to exactly `slots` customers (never shrinks).
  void GrowTo(size_t slots);
  size_t slot_count() const { return slots_.size(); }
  // Heap bytes: the slots (growing with the customers in memory), the
  // buffer of snapshots not yet checkpointed (input_dim() floats each) and
  // their deadline heap (growing with the examples taken between checkpoints).
  // The slots' bytes include the per-flush trigger log (an entry per
  // customer with events since the last flush).
  size_t SlotMemoryBytes() const {
    return slots_.capacity() * sizeof(Slot) + triggers_.capacity() * sizeof(Trigger) +
           trigger_ids_.capacity();
  }
  size_t PendingSnapshotBytes() const {
    return buffer_.capacity() * sizeof(float) + free_rows_.capacity() * sizeof(uint32_t);
  }
  size_t DeadlineMemoryBytes() const { return deadlines_.capacity() * sizeof(Deadline); }
  // Pending snapshots in memory (not yet released to the store's index).
  size_t buffered_snapshots() const { return rows_used_ - free_rows_.size(); }
  // Whether the customer's pending snapshot is in memory only or in a
  // checkpoint not yet committed (slot < slot_count()).
  bool holds_snapshot(uint32_t slot) const { return slots_[slot].row != kNoRow; }
  // Labels matured from the store's index (their snapshot read from it),
  // since creation.
  uint64_t saved_labels_resolved() const { return saved_labels_resolved_; }
  static constexpr size_t kSlotBytes = sizeof(Slot);
  static constexpr size_t kDeadlineBytes = 32;  // sizeof(Deadline), checked in the .cpp
  int input_dim() const { return dim_; }

  // The customer's latest scores (slot < slot_count()): the (calibrated)
  // churn probability predicted at its latest Refresh or pending example, before
  // any account_closed (a closed account keeps its last pre-closing score),
  // and the spend predicted over the next horizon_days, >= 0.
  double churn_probability(uint32_t slot) const { return slots_[slot].churn_probability; }
  double predicted_value(uint32_t slot) const { return slots_[slot].predicted_value; }
  bool closed(uint32_t slot) const { return slots_[slot].closed; }
  // The time (ms) of the customer's pending, unlabelled snapshot; nullopt
  // when it has none.
  std::optional<int64_t> PendingSnapshotMs(uint32_t slot) const;
  // The pending snapshot itself (model inputs in FeatureStore::FeatureNames
  // order, as floats) while it is not checkpointed; empty when there is none
  // or it is only in the store's index.
  std::span<const float> PendingSnapshot(uint32_t slot) const;

  // The largest event time seen (0 before any event).
  int64_t watermark_ms() const { return watermark_ms_ == INT64_MIN ? 0 : watermark_ms_; }

  // Models merged over every partition (scoring::ModelStatistics), to score with.
  struct GlobalModels {
    models::Standardizer features;  // the churn features' standardisation
    models::Standardizer spend_features;
    models::RecursiveLeastSquares value;
    // The logistic churn model; ignored for a tree churn model.
    std::optional<models::BayesianLogisticRegression> churn;
  };
  // From now on scores (Score: churn probability, predicted spend, alert
  // explanations) come from `global`, or from the own models again with
  // nullopt. Learning is unchanged. Call it between events (it allocates
  // and warms the regression's coefficients, so scoring does not).
  // InvalidArgument when its dimensions differ from this model's (or the
  // logistic kind gets no churn model); the scoring is then unchanged.
  Status UseGlobalModels(std::optional<GlobalModels> global);
  bool scores_with_global() const { return global_.has_value(); }
  // Examples the model that scores churn has trained on (the merged churn
  // model's, summed over the partitions, while it scores).
  uint64_t scoring_churn_examples() const;

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
    // The alert gate and the calibration, on the recent warm labels.
    alerts::ChurnGateState gate_state = alerts::ChurnGateState::kWarmingUp;
    alerts::ChurnGateInputs gate_inputs;
    bool calibrated = false;
    double calibration_slope = 1.0;
    double calibration_intercept = 0.0;
    double calibration_error = 0.0;  // expected calibration error on the window
  };
  Quality quality() const;

  const alerts::ChurnAlertPolicy& alert_policy() const { return policy_; }
  // The gate as of the latest calibration refit; open: alerts and
  // published probabilities.
  alerts::ChurnGateState gate_state() const { return gate_state_; }
  bool gate_open() const { return gate_state_ == alerts::ChurnGateState::kOpen; }
  alerts::ChurnGateInputs gate_inputs() const;
  const models::PlattCalibrator& calibrator() const { return calibrator_; }
  // The logistic churn model (trained only when it is the one chosen).
  const models::BayesianLogisticRegression& churn_model() const { return churn_; }
  // Examples the chosen churn model has trained on.
  uint64_t churn_examples() const;
  const models::Standardizer& standardizer() const { return standardizer_; }
  // The spend regression and the standardisation of its raw amounts.
  const models::RecursiveLeastSquares& value_model() const { return value_; }
  const models::Standardizer& spend_standardizer() const { return spend_standardizer_; }
  const ChurnValueOptions& options() const { return options_; }

  // Checkpoints. Encode only at a refresh boundary (right after EndFlush()):
  // the trigger log is then empty by definition and is not persisted; a
  // restored customer has no trigger until its next event, like the original.
  //
  // Appends the customer's scores, pending example (its feature snapshot
  // goes to the deadline index: PendingSnapshot, IndexChange) and alert state
  // to `record` as a versioned section (the record, sealed by
  // CustomerModels, holds every part's section).
  // slot < slot_count().
  void AppendCustomer(uint32_t slot, std::string* record) const;
  // A customer's state read from its section, not yet installed: a caller
  // restoring several parts checks every section before changing any.
  class DecodedCustomer {
   private:
    friend class ChurnValueModel;
    Slot slot_;
  };
  // Reads the section at `record`. Corruption on bad bytes, InvalidArgument
  // if written with another feature dimension.
  Result<DecodedCustomer> ReadCustomer(BinaryReader* record) const;
  // Creates or replaces the customer in `slot`; its pending example's
  // deadline and snapshot are the store index's. The decoded state is taken
  // as the saved one. Does not mark it unsaved.
  void InstallCustomer(uint32_t slot, DecodedCustomer decoded);
  // The slot's customer leaves memory (evicted, saved): the slot reads as
  // a new customer, and its heap entry and buffer row go.
  void ForgetCustomer(uint32_t slot);

  // Where the deadlines of customers not in memory are (nullptr: none; every
  // customer is in memory). Must outlive the model.
  void SetSavedLabels(SavedLabelSource* source) {
    saved_ = source;
    saved_next_state_ = kNextUnknown;
  }
  // After a checkpoint wrote deadline index entries: the next saved
  // deadline is looked up again.
  void SavedLabelsChanged() { saved_next_state_ = kNextUnknown; }
  // For a customer being checkpointed: the deadline its index entry has
  // (INT64_MIN: none) and the one it must have now; `write_snapshot`: the
  // entry for current_ms is to be written with PendingSnapshot().
  struct LabelIndexChange {
    int64_t saved_ms = INT64_MIN;
    int64_t current_ms = INT64_MIN;
    bool write_snapshot = false;
  };
  LabelIndexChange IndexChange(uint32_t slot) const;
  // After the checkpoint holding IndexChange(slot) was committed.
  void MarkIndexSaved(uint32_t slot);
  // After a checkpoint holding every unsaved customer was staged: the
  // buffered snapshots so far are in it. Returns the seal's number.
  uint32_t SealSnapshots();
  // Once the checkpoints holding seals up to `seal` are committed: those
  // snapshots and their deadlines leave memory, read from the store's
  // index from now on (nothing happens without a SavedLabelSource).
  void ReleaseSnapshots(uint32_t seal);

  // The partition-wide state as a sealed blob
  // (BlobKind::kChurnPartitionState), replacing `*out`. Its size does not
  // depend on the customers (their deadlines are in their own records and
  // the store's index).
  void EncodePartition(std::string* out) const;
  // Restores EncodePartition's blob, before or after any customer is
  // installed. Corruption on bad bytes (version 1, of state format 2, held
  // the deadlines: refused); InvalidArgument if written under other
  // options (dimension, horizon). The object is unchanged on error.
  Status DecodePartition(std::string_view blob);

 private:
  struct Deadline {
    int64_t deadline_ms;
    uint64_t id_hash;
    uint32_t slot;
    uint32_t generation;
    uint32_t epoch;
    uint32_t sealed;  // SealSnapshots' number, 0 before
  };
  // The deadline heap's order: a min-heap on (deadline_ms, id_hash), the
  // order of the store's index.
  static bool LaterDeadline(const Deadline& a, const Deadline& b) {
    return a.deadline_ms != b.deadline_ms ? a.deadline_ms > b.deadline_ms : a.id_hash > b.id_hash;
  }
  bool Stale(const Deadline& d) const {
    const Slot& slot = slots_[d.slot];
    return !slot.has_pending || slot.row == kNoRow || slot.generation != d.generation ||
           slot.epoch != d.epoch;
  }
  void PushDeadline(uint32_t s, uint64_t id_hash);
  uint32_t NewRow();         // a buffer row (amortised growth)
  void FreeRow(Slot* slot);  // the slot's row, if any, back to the free list
  float* Row(uint32_t row) { return buffer_.data() + static_cast<size_t>(row) * dim_; }
  // The next saved deadline past the cursor, looked up when unknown.
  const SavedLabel* PeekSaved();

  ChurnValueModel(const ChurnValueOptions& options, const features::FeatureSpec& spec, int dim,
                  models::Standardizer standardizer, models::BayesianLogisticRegression churn,
                  models::RecursiveLeastSquares value, models::Standardizer spend_standardizer,
                  alerts::ChurnAlertPolicy policy, models::PlattCalibrator calibrator);

  // Trains both models on the slot's pending example (its snapshot: dim_
  // floats) and records the prequential figures.
  void Resolve(uint32_t slot, const float* snapshot, bool churned, double spend,
               UnsavedSlots* unsaved);
  // Resolves the slot's pending example, at its deadline or closing.
  void ResolveDue(uint32_t slot, const float* snapshot, UnsavedSlots* unsaved);
  // Resolves it now (at a closing, train_at_deadline false), its snapshot
  // from the buffer or the store's index.
  void ResolveNow(const features::CustomerFeatures& f, UnsavedSlots* unsaved);
  SavedLabel lookup_;  // ResolveNow's index read
  void ResolveMatured(UnsavedSlots* unsaved);
  // Snapshot + standardisation of f into snapshot_ / standardised_, then
  // the churn probability and predicted value into the slot.
  void Score(const features::CustomerFeatures& f, Slot* slot);
  // The spend regression's input of snapshot_ (standardised_ done) into
  // value_x_, its spend terms standardised by `spend`.
  void ValueInput(const models::Standardizer& spend);
  // The churn model's input of the latest Score(): standardised_, or for a
  // tree model scoring beside global models, the own standardisation.
  std::span<const double> ChurnInput() const;
  void LogTrigger(uint32_t s, const ingest::Event& event);
  void Explain();     // top contributions of standardised_ into contributions_
  void UpdateGate();  // gate_state_ from the calibrator's latest fit
  // The chosen churn model's raw P(churn) of standardised inputs, and its training.
  double PredictChurn(std::span<const double> z) const;
  void TrainChurn(std::span<const double> z, bool churned);

  ChurnValueOptions options_;
  int64_t horizon_ms_;
  int dim_;  // model inputs of the feature snapshot

  std::vector<Slot> slots_;
  std::vector<float> buffer_;        // dim_ per row: snapshots not yet checkpointed
  std::vector<uint32_t> free_rows_;  // rows of buffer_ free for reuse
  uint32_t rows_used_ = 0;           // rows of buffer_ ever handed out
  uint32_t seals_ = 0;               // SealSnapshots calls
  std::vector<Deadline> deadlines_;  // min-heap, examples with a buffer row
  SavedLabelSource* saved_ = nullptr;
  SavedLabel saved_cursor_;  // the last saved deadline consumed
  bool saved_cursor_set_ = false;
  SavedLabel saved_next_;
  enum : uint8_t { kNextUnknown, kNextKnown, kNextNone } saved_next_state_ = kNextUnknown;
  uint64_t pending_count_ = 0;
  uint64_t saved_labels_resolved_ = 0;
  int64_t watermark_ms_ = INT64_MIN;

  models::Standardizer standardizer_;
  models::BayesianLogisticRegression churn_;
  std::optional<models::HoeffdingTree> tree_;           // kHoeffdingTree, kModelTree
  std::optional<models::AdaptiveRandomForest> forest_;  // kRandomForest
  // The spend regression: standardised snapshot, standardised spend terms
  // (value_spend_terms.h), constant.
  ValueSpendTerms spend_terms_;
  models::Standardizer spend_standardizer_;
  models::RecursiveLeastSquares value_;
  models::StreamingAuc churn_auc_;
  models::LogLoss churn_log_loss_;
  models::StreamingAuc warm_churn_auc_;
  models::LogLoss warm_churn_log_loss_;
  models::Rmse value_rmse_;

  alerts::ChurnAlertPolicy policy_;
  models::PlattCalibrator calibrator_;
  // What scores while set (UseGlobalModels); the own models otherwise.
  std::optional<GlobalModels> global_;
  alerts::ChurnGateState gate_state_ = alerts::ChurnGateState::kWarmingUp;  // of calibrator_
  double last_raw_ = 0.5;  // the raw churn probability of the latest Score()
  // The latest event of each customer with events since the last flush
  // (EndFlush clears it); their ids in trigger_ids_.
  struct Trigger {
    int64_t ms;
    uint32_t slot;
    uint32_t id_offset;
    uint16_t id_length;
    uint16_t id_capacity;  // bytes of trigger_ids_ the entry owns
    ingest::EventType type;
  };
  // The slot's entry of triggers_ in this flush, or kNoTrigger.
  uint32_t TriggerIndex(uint32_t s) const {
    const uint32_t t = slots_[s].trigger;
    return t < triggers_.size() && triggers_[t].slot == s ? t : kNoTrigger;
  }
  std::vector<Trigger> triggers_;
  std::string trigger_ids_;
  std::vector<models::FeatureContribution> top_;
  models::TreeExplanation tree_explanation_;  // Explain() of the tree models
  std::array<ChurnContribution, 3> contributions_{};

  // Scratch, reused by every event.
  features::FeatureVector snapshot_;
  std::vector<double> standardised_;  // dim_ + 1 (a constant last)
  std::vector<double> own_z_;         // dim_: ChurnInput() of a tree beside global models
  std::vector<double> spend_raw_;     // spend_terms_.size()
  std::vector<double> value_x_;       // dim_ + spend terms + 1
};

}  // namespace crmstream::scoring
