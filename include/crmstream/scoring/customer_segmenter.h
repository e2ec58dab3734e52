// Behavioural segments of the customers of one partition: mini-batch
// k-means over four standardised log1p features (recency, frequency,
// monetary, events in the window closest to 30 days), learning from each
// customer at most once per day, assigning it at every event; the number of
// customers per segment; and, at a flush, the segment changes since the last
// one reported.
//
// Segments that mean something:
// - Hysteresis: a customer's segment is decided once per customer and
//   event-time day (its first event of the day, as k-means learns). A
//   customer in segment a moves to another centre b only once b has been
//   its nearest centre and clearly closer, d2(b) < (1 - move_margin) * d2(a)
//   (squared distances in the standardised space), on move_after_days
//   consecutive active days. Recency is a sawtooth (0 at every purchase),
//   so without the day count a regular buyer crosses a recency boundary
//   twice per purchase. Learning is unaffected: k-means learns from the
//   nearest centre.
// - Dead centres: a centre that wins none of reseed_after_points consecutive
//   k-means points is re-seeded on a recent point, drawn k-means++ style
//   (MiniBatchKMeans::dead_after).
// - Units: the standardisation k-means works in is a snapshot of the running
//   one, refreshed on a schedule; at each refresh the model is mapped to the
//   new snapshot (MiniBatchKMeans::Rescale), so a centre keeps its place in
//   log1p units and Centre() (the snapshot inverted, then expm1) reports it
//   in days, counts and currency.
//
// - Global centres (model sync, UseGlobalCentres): segments may be assigned
//   with centres merged over every partition instead of the own ones, each
//   merged centre taking the number of the own centre it pairs with
//   (minimum-cost assignment in log1p units), so segment numbers keep their
//   meaning within the partition (its checkpointed customers, its published
//   changes and sizes). k-means keeps learning its own centres, which are
//   what the partition publishes as statistics (CentreLog1p).
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
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "crmstream/common/binary_io.h"
#include "crmstream/common/status.h"
#include "crmstream/features/feature_spec.h"
#include "crmstream/features/feature_store.h"
#include "crmstream/models/mini_batch_kmeans.h"
#include "crmstream/models/standardizer.h"
#include "crmstream/scoring/unsaved_slots.h"

namespace crmstream::scoring {

struct SegmenterOptions {
  // Number of segments, in [1, 64]. Default 5.
  int k = 5;
  // Seed of the k-means random generator. Default 1.
  uint64_t seed = 1;
  // Hysteresis of the reported segment, in [0, 1): a customer moves only
  // when the nearest centre's squared distance is below (1 - move_margin)
  // times the current one's. 0: always the nearest centre. Default 0.2.
  double move_margin = 0.2;
  // Consecutive active days (customer-days) the challenger must win before
  // the customer moves, in [1, 365]. 1: the margin alone. Default 3.
  int move_after_days = 3;
  // A centre that wins no k-means point (customer-day) in this many is
  // re-seeded where the data are; 0 disables. Default 2000.
  uint64_t reseed_after_points = 2000;

  // InvalidArgument naming the field.
  Status Validate() const;
};

// The names of the segment centres' values as published (Centre()), in
// order: days since the latest purchase (the tenure before any), lifetime
// purchases, lifetime net spend (currency) and events in the window closest
// to 30 days. k-means works on their standardised log1p.
inline constexpr std::array<std::string_view, 4> kSegmentFeatureNames = {
    "recency_days", "frequency", "monetary", "events_30d"};

// A segment change since the previous one reported for a customer.
struct SegmentChange {
  bool changed = false;
  int from = -1;  // -1: none reported before
  int to = -1;
};

class CustomerSegmenter {
  // 8 bytes: segments in [-1, kMaxSegments) take 7 bits, the challenger's
  // days (below move_after_days <= 365) 9.
  struct Slot {
    int32_t last_kmeans_day = INT32_MIN;
    int32_t segment : 7 = -1;
    int32_t published_segment : 7 = -1;  // the segment of the latest change reported
    int32_t challenger : 7 = -1;         // the centre winning over `segment`, -1: none
    uint32_t challenger_days : 9 = 0;    // consecutive active days it has won
  };

 public:
  static constexpr int kMaxSegments = 64;

  // InvalidArgument for options or a spec that fail Validate().
  static Result<CustomerSegmenter> Create(const SegmenterOptions& options,
                                          const features::FeatureSpec& spec);

  // After the feature store applied an event of the customer: learns from
  // it (once per customer and event-time day) and assigns its segment.
  // Marks the customer in `unsaved`.
  // Fetches the slot's state into the CPU's cache (an event ahead).
  void Prefetch(uint32_t slot) const {
    if (slot < slots_.size()) __builtin_prefetch(&slots_[slot]);
  }
  void OnEvent(const features::CustomerFeatures& f, UnsavedSlots* unsaved);
  // At a flush: the customer's segment change since the last one reported,
  // if any (reported once; marks the customer in `unsaved` then).
  void Refresh(uint32_t slot, UnsavedSlots* unsaved, SegmentChange* out);

  // Grows the per-customer array to exactly `slots` customers (never shrinks).
  void GrowTo(size_t slots);
  size_t slot_count() const { return slots_.size(); }
  // Heap bytes of the per-customer array.
  size_t CustomerMemoryBytes() const { return slots_.capacity() * sizeof(Slot); }
  static constexpr size_t kSlotBytes = sizeof(Slot);

  // The customer's segment in [0, k), -1 while k-means is not seeded.
  int segment(uint32_t slot) const { return slots_[slot].segment; }
  bool seeded() const { return kmeans_.seeded(); }
  // Writes centre `c` as segments are assigned (the global one while
  // global centres are in use) into `out`: 4 values in kSegmentFeatureNames
  // units (the centre's log1p values mapped back by expm1, so a log-space
  // mean: the segment's typical customer rather than its arithmetic mean).
  void Centre(int c, std::span<double> out) const;
  // The own k-means centre `c` in the log1p units k-means standardises (the
  // snapshot inverted, not expm1'd): the space where partitions' centres
  // compare.
  void CentreLog1p(int c, std::span<double> out) const;

  // Assigns segments with `merged` centres (log1p units, k of them) from
  // now on, each paired with an own centre; nullptr, an empty `merged`, or
  // own k-means not seeded yet: the own centres. InvalidArgument for
  // another k (the assignment is then unchanged). Allocates: call it
  // between events.
  Status UseGlobalCentres(const std::vector<double>* merged, int k);
  bool uses_global_centres() const { return use_global_; }
  const models::MiniBatchKMeans& kmeans() const { return kmeans_; }
  // Customers per segment as of their latest event.
  uint64_t Size(int c) const { return segment_sizes_[static_cast<size_t>(c)]; }
  const SegmenterOptions& options() const { return options_; }

  struct Quality {
    // Prequential mean squared distance of k-means points to their centre
    // (standardised units).
    double kmeans_mean_squared_distance = 0.0;
    uint64_t kmeans_points = 0;
    uint64_t reseeded_centres = 0;
  };
  Quality quality() const;

  // Checkpoints. Appends the customer's segment state to `record` as a
  // versioned section (see ChurnValueModel::AppendCustomer); slot < slot_count().
  void AppendCustomer(uint32_t slot, std::string* record) const;
  // A customer's state read from its section, not yet installed.
  class DecodedCustomer {
   private:
    friend class CustomerSegmenter;
    Slot slot_;
  };
  // Reads the section at `record`. Corruption on bad bytes, InvalidArgument
  // for a segment outside [-1, k).
  Result<DecodedCustomer> ReadCustomer(BinaryReader* record) const;
  // Creates or replaces the customer in `slot`. Does not mark it unsaved.
  void InstallCustomer(uint32_t slot, const DecodedCustomer& decoded);
  // The slot's customer left memory: the slot reads as a new customer.
  void ForgetCustomer(uint32_t slot);
  // The scaling, k-means and segment sizes as a sealed blob
  // (BlobKind::kSegmentPartitionState), replacing `*out`.
  void EncodePartition(std::string* out) const;
  // Restores EncodePartition's blob, before or after any customer is
  // decoded (the sizes count the partition's customers, in memory or not).
  // Corruption for bad bytes; InvalidArgument if written with another k.
  // The object is unchanged on error.
  Status DecodePartition(std::string_view blob);

 private:
  CustomerSegmenter(const SegmenterOptions& options, const features::FeatureSpec& spec,
                    models::Standardizer standardizer, models::MiniBatchKMeans kmeans);

  // Takes the running standardisation as the snapshot k-means works in and
  // maps the model to it.
  void RefreshScale();
  // global_z_ from global_log1p_ in the current snapshot's units.
  void ScaleGlobalCentres();
  // Centre `c` as assigned, in the snapshot's units.
  std::span<const double> AssignedCentre(int c) const;
  bool ScaleRefreshDue() const;

  SegmenterOptions options_;
  size_t month_window_;  // the feature window closest to 30 days
  std::vector<Slot> slots_;
  models::Standardizer standardizer_;
  models::MiniBatchKMeans kmeans_;
  std::array<uint64_t, kMaxSegments> segment_sizes_{};
  // The snapshot: z = (x - scale_mean_) / scale_sd_, 0 where scale_sd_ is 0.
  std::array<double, 4> scale_mean_{};
  std::array<double, 4> scale_sd_{};
  std::array<double, 4> point_{};  // scratch
  // Global centres, row c paired with own centre c: log1p units, and in the
  // snapshot's units (what assignment compares with).
  bool use_global_ = false;
  std::vector<double> global_log1p_;
  std::vector<double> global_z_;
};

}  // namespace crmstream::scoring
