// How unusual each customer's recent behaviour is for the population of one
// partition: a multivariate anomaly detector over the log1p counts of
// refunds, tickets (support tickets + complaints), logins and purchases in
// the shortest feature window, scored at every event; at a flush, a report
// when a customer's score first reaches the alert level (once per crossing:
// the customer re-arms when its score falls back below the level).
//
// Customers are the feature store's slots (CustomerFeatures::slot()). The
// checkpoint is a section of each customer's record and a sealed blob for
// the partition.
//
// Thread-safety: none. One instance per partition task. Steady-state OnEvent
// and Refresh do not allocate; a new slot grows the array (amortised).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "crmstream/common/binary_io.h"
#include "crmstream/common/status.h"
#include "crmstream/features/feature_spec.h"
#include "crmstream/features/feature_store.h"
#include "crmstream/models/multivariate_anomaly.h"
#include "crmstream/scoring/unsaved_slots.h"

namespace crmstream::scoring {

struct BehaviourOptions {
  // A score at or above this is an anomaly (reported at its crossing and
  // counted in Quality::anomaly_rate), in (0, 1]. Default 0.99.
  double alert_level = 0.99;

  // InvalidArgument naming the field.
  Status Validate() const;
};

// The names of the behaviour vector, as counts over the shortest feature
// window: refunds, tickets (support tickets + complaints), logins, purchases.
inline constexpr std::array<std::string_view, 4> kBehaviourNames = {"refunds", "tickets", "logins",
                                                                    "purchases"};

// A customer's behaviour anomaly as a flush reports it.
struct AnomalyCrossing {
  double score = 0.0;  // the latest score, in [0, 1], crossing or not
  // The score reached the alert level since the last report (the fields
  // below are set only then).
  bool crossed = false;
  std::array<double, 4> observed{};  // counts, kBehaviourNames order
  std::array<double, 4> expected{};  // the population's typical counts
};

class BehaviourAnomalyDetector {
  struct Slot {
    double score = 0.0;
    bool active = false;  // reported as anomalous, not yet back below the level
  };

 public:
  // InvalidArgument for options or a spec that fail Validate().
  static Result<BehaviourAnomalyDetector> Create(const BehaviourOptions& options,
                                                 const features::FeatureSpec& spec);

  // After the feature store applied an event of the customer: scores its
  // behaviour (and the detector learns from it). Marks it in `unsaved`.
  void OnEvent(const features::CustomerFeatures& f, UnsavedSlots* unsaved);
  // At a flush: the customer's score and whether it crossed the level since
  // the last report (marks the customer in `unsaved` where it changes).
  void Refresh(const features::CustomerFeatures& f, UnsavedSlots* unsaved, AnomalyCrossing* out);

  // Grows the per-customer array to `slots` customers (never shrinks).
  void GrowTo(size_t slots);
  size_t slot_count() const { return slots_.size(); }

  // The customer's latest score in [0, 1] (near 1: unusual for the population).
  double score(uint32_t slot) const { return slots_[slot].score; }
  const BehaviourOptions& options() const { return options_; }

  struct Quality {
    // Share of scored events whose score reached the alert level.
    double anomaly_rate = 0.0;
    uint64_t anomaly_scored = 0;
  };
  Quality quality() const;

  // Checkpoints. Appends the customer's score and crossing state to
  // `record` as a versioned section (see ChurnValueModel::AppendCustomer);
  // slot < slot_count().
  void AppendCustomer(uint32_t slot, std::string* record) const;
  // A customer's state read from its section, not yet installed.
  class DecodedCustomer {
   private:
    friend class BehaviourAnomalyDetector;
    Slot slot_;
  };
  // Reads the section at `record`; Corruption on bad bytes.
  Result<DecodedCustomer> ReadCustomer(BinaryReader* record) const;
  // Creates or replaces the customer in `slot`. Does not mark it unsaved.
  void InstallCustomer(uint32_t slot, const DecodedCustomer& decoded);
  // The slot's customer left memory: the slot reads as a new customer.
  void ForgetCustomer(uint32_t slot);
  // The detector and counters as a sealed blob
  // (BlobKind::kBehaviourPartitionState), replacing `*out`.
  void EncodePartition(std::string* out) const;
  // Restores EncodePartition's blob; Corruption on bad bytes. The object is
  // unchanged on error.
  Status DecodePartition(std::string_view blob);

 private:
  BehaviourAnomalyDetector(const BehaviourOptions& options, const features::FeatureSpec& spec,
                           models::MultivariateAnomalyDetector detector);

  BehaviourOptions options_;
  size_t shortest_window_;
  std::vector<Slot> slots_;
  models::MultivariateAnomalyDetector detector_;
  uint64_t scored_ = 0;
  uint64_t anomalies_ = 0;
  std::array<double, 4> point_{};  // scratch
};

}  // namespace crmstream::scoring
