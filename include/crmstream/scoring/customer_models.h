// The per-customer models of one input partition, fed event by event after
// the feature store: churn probability and predicted spend with late labels
// and the churn alerts (ChurnValueModel), behavioural segments
// (CustomerSegmenter) and behaviour anomalies (BehaviourAnomalyDetector).
// This class only composes them: it keeps which customers they know and
// which changed since the last checkpoint, and packs the parts' customer
// sections into one sealed record per customer.
//
// Customers are the feature store's slots: the models find a customer's
// state by CustomerFeatures::slot(), never by hashing its id again, so an
// event costs one id lookup (FeatureStore::Update). The store must outlive
// the models, and every view passed in must come from it.
//
// Flow, as the event processor drives it: OnEvent() after every
// FeatureStore::Update(); at every output flush, Refresh() for each
// customer updated since the previous one (FeatureStore::ForEachPending)
// then EndFlush(). See the parts' headers for what each does.
//
// Checkpoints (taken at a refresh boundary, right after EndFlush()): one
// record per customer changed since ClearUnsaved() (EncodeCustomer), and the
// parts' partition-wide blobs, one per name in kPartitionStateNames. A
// fresh instance over a store restored with the customers' features, then
// DecodeCustomer for each customer and DecodePartition for each name,
// behaves bit-identically from then on (same refreshes, alerts, scores,
// model updates, quality figures and blobs), whatever order the customers
// were decoded in.
//
// Thread-safety: none. One instance per partition task, single-threaded, no
// locks. Steady-state OnEvent and Refresh do not allocate; a new customer
// grows the per-customer arrays, the first event of a customer since the
// last flush the trigger log, the first change of a customer since the
// last ClearUnsaved() the unsaved list, and an anomaly report decided the
// list of reports waiting for the flush (all amortised).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "crmstream/common/json_writer.h"
#include "crmstream/common/status.h"
#include "crmstream/features/feature_store.h"
#include "crmstream/ingest/event.h"
#include "crmstream/scoring/behaviour_anomaly_detector.h"
#include "crmstream/scoring/churn_value_model.h"
#include "crmstream/scoring/customer_segmenter.h"
#include "crmstream/scoring/model_statistics.h"
#include "crmstream/scoring/unsaved_slots.h"

namespace crmstream::scoring {

struct CustomerModelsOptions {
  ChurnValueOptions churn;
  SegmenterOptions segments;
  BehaviourOptions behaviour;
  // The parts a pipeline may leave out (churn and value are the core): an
  // off part does no work per event or at a flush and publishes nothing
  // ("segment" and "anomaly_score" are null, no segment change, centroid
  // snapshot or customer anomaly). Its per-customer and partition state
  // stays in memory and in checkpoints as it was, so the state's format is
  // the same either way. Default on.
  bool segments_enabled = true;
  bool behaviour_enabled = true;

  // The first invalid field of the parts' options.
  Status Validate() const;
};

// The latest scores of one customer.
struct CustomerScores {
  // Churn probability predicted at the customer's latest event before any
  // account_closed (a closed account keeps its last pre-closing score).
  double churn_probability = 0.0;
  // Whether the churn alert gate is open (ChurnValueModel::gate_open): the
  // probability is published (and means "at risk" at all) only then.
  bool churn_gate_open = false;
  // Predicted spend over the next churn horizon, currency units, >= 0.
  double predicted_value = 0.0;
  // Segment in [0, k), -1 while k-means is not seeded yet.
  int segment = -1;
  // Behaviour anomaly score in [0, 1] (near 1: unusual for the population).
  double anomaly_score = 0.0;
  bool closed = false;
};

// What Refresh() found for one customer at a flush.
struct CustomerRefresh {
  bool known = false;  // false: the models never saw the customer
  int64_t as_of_ms = 0;
  ChurnRefresh churn;       // probability, alert decision, trigger event
  SegmentChange segment;    // a change since the previous one reported
  AnomalyCrossing anomaly;  // the score, and a crossing of the alert level
};

class CustomerModels {
 public:
  // The names of the parts' partition-wide blobs (EncodePartition).
  static constexpr std::array<std::string_view, 3> kPartitionStateNames = {"churn", "segments",
                                                                           "behaviour"};

  // Models over the customers of `store` (its spec sets the inputs).
  // InvalidArgument naming the field for invalid options.
  static Result<CustomerModels> Create(const CustomerModelsOptions& options,
                                       const features::FeatureStore* store);

  // Called after the feature store was updated with `event`; `f` is the
  // customer's features as returned by FeatureStore::Update. The closing
  // event itself (account_closed) moves neither segment nor behaviour.
  // Fetches the slot's state of each model into the CPU's cache (an event
  // ahead of its OnEvent).
  void Prefetch(uint32_t slot) const {
    churn_.Prefetch(slot);
    if (options_.segments_enabled) segmenter_.Prefetch(slot);
    if (options_.behaviour_enabled) behaviour_.Prefetch(slot);
  }
  void OnEvent(const ingest::Event& event, const features::CustomerFeatures& f);
  // Room for customers in slots below `slots`, so that OnEvent for them does
  // not grow the per-customer arrays. Strong guarantee: on a throw
  // (bad_alloc) the models are unchanged. The pipeline calls it before the
  // feature store takes an event, so a failure changes nothing at all.
  void Reserve(size_t slots);
  // The feature store's capacity (0: none): Reserve grows the arrays to it
  // exactly rather than past it.
  void set_slot_limit(size_t slots) { slot_limit_ = slots; }

  // At an output flush, for a customer updated since the previous one: the
  // parts' refreshes (see ChurnValueModel::Refresh, CustomerSegmenter::Refresh,
  // BehaviourAnomalyDetector::Refresh). Valid until the next Refresh. Does
  // not allocate.
  const CustomerRefresh& Refresh(const features::CustomerFeatures& f);
  // Ends a flush: forgets the trigger events logged since the previous one.
  void EndFlush() { churn_.EndFlush(); }

  // Writes "churn_probability", "predicted_value_30d" (the spend predicted
  // over the churn horizon, whatever its length), "segment" and
  // "anomaly_score" into the currently open JSON object (segment null while
  // not seeded or switched off, anomaly_score null while switched off).
  // Writes nothing for a customer the models never saw.
  void WriteCustomerScores(const features::CustomerFeatures& f, JsonWriter* w) const;
  // The customer's latest scores; nullopt if the models never saw it. The
  // churn probability and predicted value are those of its latest Refresh
  // (or of its pending example, if taken later). Does not allocate.
  std::optional<CustomerScores> Scores(const features::CustomerFeatures& f) const;
  bool knows(const features::CustomerFeatures& f) const { return Knows(f.slot()); }

  // Checkpoints. One customer's record (BlobKind::kCustomerModelState: the
  // parts' sections under one checksum), replacing `*out`; NotFound for a
  // customer the models never saw.
  Status EncodeCustomer(const features::CustomerFeatures& f, std::string* out) const;
  // Creates or replaces the customer's state from EncodeCustomer's record.
  // Corruption on bad bytes, InvalidArgument if written with another
  // feature dimension or k; the object is unchanged on error. Does not mark
  // the customer unsaved.
  Status DecodeCustomer(const features::CustomerFeatures& f, std::string_view record);
  // The partition-wide blob of part `name` (one of kPartitionStateNames),
  // replacing `*out`; InvalidArgument for another name.
  Status EncodePartition(std::string_view name, std::string* out) const;
  // Restores it, after every customer was decoded (see the parts'
  // DecodePartition). InvalidArgument for an unknown name.
  Status DecodePartition(std::string_view name, std::string_view blob);

  // Calls f(const features::CustomerFeatures&) for every customer whose
  // state changed since the last ClearUnsaved() (an event, a Refresh that
  // scored it, evaluated its alert policy or reported a segment or anomaly
  // change, a label resolved at its deadline), in first-changed order.
  // DecodeCustomer does not mark. The partition-wide blobs change with
  // nearly every event: save them always.
  template <class F>
  void ForEachUnsaved(F&& f) const {
    for (uint32_t s : unsaved_.slots()) f(store_->At(s));
  }
  size_t unsaved_count() const { return unsaved_.size(); }
  // The customers that became unsaved since the previous call (or since
  // ClearUnsaved()), in first-changed order: the caller pins them in the
  // feature store's cache (FeatureStore::Pin). Does not allocate.
  std::span<const uint32_t> TakeNewlyUnsaved() {
    const std::span<const uint32_t> fresh = unsaved_.slots().subspan(unsaved_taken_);
    unsaved_taken_ = unsaved_.size();
    return fresh;
  }
  // The unsaved state was saved (checkpoint committed): clears the list and
  // records the label deadlines the store's index now holds.
  void ClearUnsaved();
  bool unsaved(const features::CustomerFeatures& f) const { return unsaved_.contains(f.slot()); }
  // For a customer being checkpointed: its label deadline index change.
  ChurnValueModel::LabelIndexChange LabelIndexChange(const features::CustomerFeatures& f) const {
    return churn_.IndexChange(f.slot());
  }
  // Its pending example's snapshot, to write with a LabelIndexChange whose
  // write_snapshot is set (ChurnValueModel::PendingSnapshot).
  std::span<const float> PendingSnapshot(const features::CustomerFeatures& f) const {
    return churn_.PendingSnapshot(f.slot());
  }
  // See ChurnValueModel::SealSnapshots and ReleaseSnapshots.
  uint32_t SealSnapshots() { return churn_.SealSnapshots(); }
  void ReleaseSnapshots(uint32_t seal) { churn_.ReleaseSnapshots(seal); }

  // The customer in `slot` leaves memory (saved, evicted by the feature
  // store): the models forget it; a later DecodeCustomer brings it back.
  // Precondition: not unsaved.
  void Forget(uint32_t slot);
  bool unsaved_slot(uint32_t slot) const { return unsaved_.contains(slot); }
  // Where the label deadlines of customers not in memory are (see
  // ChurnValueModel::SetSavedLabels).
  void SetSavedLabels(SavedLabelSource* source) { churn_.SetSavedLabels(source); }
  void SavedLabelsChanged() { churn_.SavedLabelsChanged(); }

  // Scores with global models merged over every partition (model sync):
  // from now on the churn probability, the predicted spend and the segment
  // assignment come from `merged` (see ChurnValueModel::UseGlobalModels and
  // CustomerSegmenter::UseGlobalCentres for what merges into what), copied
  // into this object; nullptr: the own models again. The behaviour anomaly
  // detector stays per partition (it is not part of the statistics). The
  // models keep learning their own statistics, which are what
  // ModelStatistics::Collect takes, never the merged ones, so no partition
  // is counted twice. Scoring with global models depends on when they were
  // handed over, so a restore is bit-identical only without them.
  // Allocates (the copies): call it between batches. InvalidArgument when
  // `merged` does not fit this partition's models (another pipeline shape,
  // or none of its exact parts); the scoring is then unchanged.
  Status UseGlobalModels(const ModelStatistics* merged);
  // Partitions in the global models scored with; 0: the own models.
  uint32_t global_model_parts() const { return global_parts_; }

  // Customers the models know (saw an event of, or decoded).
  size_t customer_count() const { return customer_count_; }

  // Heap bytes that grow with the customers in memory, by part (the
  // customer cache's accounting; partition-wide model state is not in it).
  struct CustomerMemory {
    size_t churn_slots = 0;        // ChurnValueModel's per-customer state
    size_t pending_snapshots = 0;  // the features of churn examples not yet checkpointed
    size_t deadlines = 0;          // their label deadlines' heap
    size_t segments = 0;
    size_t behaviour = 0;
    size_t tracking = 0;  // known and unsaved flags, the unsaved list
    size_t total() const {
      return churn_slots + pending_snapshots + deadlines + segments + behaviour + tracking;
    }
  };
  CustomerMemory customer_memory() const;
  // Bytes one more customer slot costs in each part's arrays (their layout),
  // beyond what the arrays' growth leaves spare.
  size_t BytesPerSlot() const;
  // The largest event time seen (0 before any event). Cheap.
  int64_t watermark_ms() const { return churn_.watermark_ms(); }

  // The parts' quality figures, together (flat: q.churn_auc, q.kmeans_points...).
  struct Quality : ChurnValueModel::Quality,
                   CustomerSegmenter::Quality,
                   BehaviourAnomalyDetector::Quality {
    int64_t watermark_ms = 0;
  };
  Quality quality() const;

  const ChurnValueModel& churn() const { return churn_; }
  const CustomerSegmenter& segmenter() const { return segmenter_; }
  const BehaviourAnomalyDetector& behaviour() const { return behaviour_; }
  const CustomerModelsOptions& options() const { return options_; }

 private:
  CustomerModels(const CustomerModelsOptions& options, const features::FeatureStore* store,
                 ChurnValueModel churn, CustomerSegmenter segmenter,
                 BehaviourAnomalyDetector behaviour);
  bool Knows(uint32_t slot) const { return slot < known_.size() && known_[slot]; }
  // Makes `slot` known, growing every part's arrays to it.
  void Know(uint32_t slot);

  CustomerModelsOptions options_;
  const features::FeatureStore* store_;
  ChurnValueModel churn_;
  CustomerSegmenter segmenter_;
  BehaviourAnomalyDetector behaviour_;
  std::vector<bool> known_;  // per slot, a bit each
  size_t customer_count_ = 0;
  size_t slot_limit_ = 0;
  uint32_t global_parts_ = 0;
  UnsavedSlots unsaved_;
  size_t unsaved_taken_ = 0;  // TakeNewlyUnsaved's position in unsaved_
  CustomerRefresh refresh_;
  mutable std::string record_scratch_;  // EncodeCustomer's payload, reused
};

}  // namespace crmstream::scoring
