// How unusual each customer's recent behaviour is for the population of one
// partition: a multivariate anomaly detector over the log1p counts of
// refunds, tickets (support tickets + complaints), logins and purchases in
// the shortest feature window, scored at every event.
//
// What is published is rationed. A customer whose score reaches the alert
// level opens an episode (closed when the score falls back below it); its
// rarity (-log10 of the population tail probability of its behaviour)
// gives a severity, and the customer is reported when its severity first
// reaches warning in the episode or rises above what was reported. Episodes
// and reports are decided at each event, in event time, so the state does
// not depend on how events are gathered into flushes; a flush publishes the
// latest report of each customer decided since the previous one.
// An episode's first report draws on a budget (its escalations, at most two
// more reports, do not: the budget is for incidents), a token bucket
// refilled in event time at `budget_per_1000_per_day` per 1,000 customers
// of the partition and holding one day of it: a critical report may take
// the last token, a high one needs a quarter of a day's budget left, a
// warning half, so that when anomalies crowd in the lowest severities are
// the ones withheld.
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

#include "crmstream/alerts/churn_alert_policy.h"
#include "crmstream/common/binary_io.h"
#include "crmstream/common/status.h"
#include "crmstream/features/feature_spec.h"
#include "crmstream/features/feature_store.h"
#include "crmstream/models/multivariate_anomaly.h"
#include "crmstream/scoring/unsaved_slots.h"

namespace crmstream::scoring {

struct BehaviourOptions {
  // A score at or above this is an anomaly: it opens the customer's episode
  // and counts in Quality::anomaly_rate, in (0, 1]. Default 0.99.
  double alert_level = 0.99;
  // Rarity (-log10 of the population tail probability of the behaviour) at
  // which an anomaly is a warning, high, critical: increasing, > 0.
  // Default 1e-6, 1e-9, 1e-12 of the population.
  std::array<double, alerts::kSeverityCount> severity_rarity = {6.0, 9.0, 12.0};
  // Customer anomaly episodes published per 1,000 customers of the
  // partition per day of event time (each with up to three records, one per
  // severity), > 0. Default 1.
  double budget_per_1000_per_day = 1.0;

  // InvalidArgument naming the field.
  Status Validate() const;
};

// The names of the behaviour vector, as counts over the shortest feature
// window: refunds, tickets (support tickets + complaints), logins, purchases.
inline constexpr std::array<std::string_view, 4> kBehaviourNames = {"refunds", "tickets", "logins",
                                                                    "purchases"};

// A customer's behaviour anomaly as a flush reports it.
struct AnomalyCrossing {
  // The latest score, in [0, 1]; for a report, the score that decided it.
  double score = 0.0;
  double rarity = 0.0;  // its rarity, -log10 of the population tail probability
  // The customer is reported: its severity reached warning in this episode
  // or rose above the one reported, at an event since the last flush (the
  // fields below are set only then; the counts are the flush's).
  bool crossed = false;
  alerts::Severity severity = alerts::Severity::kWarning;
  std::array<double, 4> observed{};  // counts, kBehaviourNames order
  std::array<double, 4> expected{};  // the population's typical counts
};

class BehaviourAnomalyDetector {
  // 12 bytes. Scores and rarities are kept as floats (7 significant
  // digits, more than a score in [0, 1] or a rarity in decades carries);
  // decisions are taken on the doubles computed, before they are stored.
  // The score and rarity of a report not yet published are in reports_:
  // few customers have one, and only until the next flush.
  struct Slot {
    float score = 0.0f;
    float rarity = 0.0f;
    bool active : 1 = false;   // in an episode: the score has not fallen back below the level
    bool seen : 1 = false;     // the slot holds a customer
    uint8_t reported : 3 = 0;  // 0, or 1 + the severity reported in this episode
    // 0, or 1 + the severity of the report decided since the last Refresh,
    // which publishes it (its score and rarity in reports_).
    uint8_t pending : 3 = 0;
    // 0, or 1 + the highest severity the budget withheld in this episode.
    uint8_t withheld = 0;
  };
  // A decided report's score and rarity, until Refresh publishes it.
  struct PendingReport {
    uint32_t slot;
    float score;
    float rarity;
  };

 public:
  // InvalidArgument for options or a spec that fail Validate().
  static Result<BehaviourAnomalyDetector> Create(const BehaviourOptions& options,
                                                 const features::FeatureSpec& spec);

  // After the feature store applied an event of the customer: scores its
  // behaviour (and the detector learns from it), opens or closes its
  // episode and decides a report. Marks it in `unsaved`.
  // Fetches the slot's state into the CPU's cache (an event ahead).
  void Prefetch(uint32_t slot) const {
    if (slot < slots_.size()) __builtin_prefetch(&slots_[slot]);
  }
  void OnEvent(const features::CustomerFeatures& f, UnsavedSlots* unsaved);
  // At a flush: the customer's score and the report decided since the last
  // flush, if any (marks the customer in `unsaved` where it changes).
  void Refresh(const features::CustomerFeatures& f, UnsavedSlots* unsaved, AnomalyCrossing* out);

  // Grows the per-customer array to exactly `slots` customers (never shrinks).
  void GrowTo(size_t slots);
  size_t slot_count() const { return slots_.size(); }
  // Heap bytes of the per-customer array.
  size_t CustomerMemoryBytes() const {
    return slots_.capacity() * sizeof(Slot) + reports_.capacity() * sizeof(PendingReport);
  }
  static constexpr size_t kSlotBytes = sizeof(Slot);

  // The customer's latest score in [0, 1] (near 1: unusual for the population).
  double score(uint32_t slot) const { return slots_[slot].score; }
  // Its rarity (0 below the alert level).
  double rarity(uint32_t slot) const { return slots_[slot].rarity; }
  const BehaviourOptions& options() const { return options_; }

  struct Quality {
    // Share of scored events whose score reached the alert level.
    double anomaly_rate = 0.0;
    uint64_t anomaly_scored = 0;
    // Customer anomalies reported, and reports the budget withheld (once
    // per customer, episode and severity).
    uint64_t anomalies_reported = 0;
    uint64_t anomalies_withheld = 0;
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
    PendingReport report_{};  // when slot_.pending
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
  // The severity of a rarity: -1 below warning, else the Severity's index.
  int SeverityOf(double rarity) const;
  // Refills the budget up to event time `now_ms` and takes a token for a
  // report of `severity` if what is left allows it.
  bool TakeBudget(int severity, int64_t now_ms);

  BehaviourOptions options_;
  size_t shortest_window_;
  // The slot's entry of reports_ (slot.pending != 0), or nullptr. Linear:
  // the list holds the reports decided since the last flush.
  PendingReport* ReportOf(uint32_t s);
  const PendingReport* ReportOf(uint32_t s) const;
  void DropReport(uint32_t s);

  std::vector<Slot> slots_;
  std::vector<PendingReport> reports_;  // unordered
  models::MultivariateAnomalyDetector detector_;
  uint64_t scored_ = 0;
  uint64_t anomalies_ = 0;
  uint64_t reported_ = 0;
  uint64_t withheld_ = 0;
  // Distinct customers the partition has seen (loaded ones were counted
  // when they were new): the base of the budget.
  uint64_t customers_ = 0;
  double tokens_ = 0.0;
  int64_t budget_clock_ms_ = INT64_MIN;  // event time of the last refill
  std::array<double, 4> point_{};        // scratch
};

}  // namespace crmstream::scoring
