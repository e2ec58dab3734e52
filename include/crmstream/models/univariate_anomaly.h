// Streaming anomaly detector for one metric series (revenue per minute,
// ticket rate, a NAB series). Score(timestamp, value) returns an anomaly
// score in [0, 1] computed from the past only: the point is scored first,
// then learned.
//
// How it scores, in three stages (the defaults were chosen once for the whole
// NAB corpus, one setting for all its 58 series, never per series):
// 1. Context novelty: the value is quantised on the running [min, max] seen
//    so far, and the recent sequence of levels (lengths 1..5) is looked up in
//    a fixed-size table of contexts seen before; the share of never-seen
//    contexts is the raw surprise (in the spirit of CAD OSE).
// 2. Anomaly likelihood (Ahmad et al. 2017): the short-term mean of raw
//    surprise is compared with its recent distribution (exponentially
//    weighted Gaussian) and turned into a tail probability, then log-scaled
//    so that 1e-10 tail mass maps to 1. Beside it:
//    - a value outside the past range by more than a tolerance ("spatial
//      anomaly", as Numenta's detector does) scores 1;
//    - a two-sided CUSUM of the value's z-score (against an exponentially
//      weighted mean and variance) adds what the others miss: a drift or a
//      level change that stays inside the past range. An alarm resets it.
// 3. Alarm damping: after a high score the detector stays quiet for a while,
//    because the consumer of an alarm needs the first one, not a burst. A
//    range breach is never damped.
//
// Memory is fixed at construction (a context table, 384 KiB by default, and a
// short ring); Score() never allocates. The serialised state holds only the
// occupied context slots (16 bytes each; a few thousand on NAB's series). A full table (3/4 of its
// slots) keeps what it knows and stops adding contexts. Not mergeable: the state is an ordered
// history of one series, so two instances on different slices of it do not combine. Not
// thread-safe.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "crmstream/common/status.h"

namespace crmstream::models {

class UnivariateAnomalyDetector {
 public:
  struct Options {
    // Quantisation levels across the running [min, max] for the contexts.
    uint32_t levels = 12;
    // Context table slots (power of two); memory is 12 bytes per slot.
    uint32_t table_slots = 1u << 15;
    // Points before any score above 0 (the model has no past yet).
    uint32_t warmup = 150;
    // Short-term window of the likelihood stage, in points.
    uint32_t short_window = 10;
    // Horizon of the long-term raw-surprise distribution, in points.
    uint32_t long_horizon = 200;
    // A value beyond the past range by this share of the range is a breach.
    double range_tolerance = 0.05;
    // Points damped after an alarm (the score is scaled by the share of the
    // period elapsed; range breaches are not damped), and the score counted
    // as an alarm.
    uint32_t quiet_period = 200;
    double alarm_level = 0.6;
    // Drift detection: horizon of the mean / variance the z-scores use, the
    // slack (in sd) subtracted per point, the cumulative sum (in sd) that
    // gives the full drift score, and the weight of that score.
    uint32_t drift_horizon = 2000;
    double drift_slack = 1.5;
    double drift_saturation = 50.0;
    double drift_weight = 0.8;
    Status Validate() const;
  };

  // Options must be valid (Create checks them).
  static Result<UnivariateAnomalyDetector> Create(const Options& options);
  UnivariateAnomalyDetector();  // default Options

  // Scores `value` against the past, then learns it. Non-finite values get
  // score 0 and are not learned. `timestamp` is kept for the record only
  // (rows are assumed evenly spaced).
  double Score(int64_t timestamp, double value);

  uint64_t count() const { return count_; }
  const Options& options() const { return options_; }

  std::string Serialize() const;
  static Result<UnivariateAnomalyDetector> Deserialize(std::string_view blob);

  // Version 3 stores the occupied context slots only; version 2 (the whole
  // table, same detector) is still read; version 1 (four context orders) is
  // refused.
  static constexpr uint16_t kBlobVersion = 3;
  static constexpr uint16_t kDenseTableBlobVersion = 2;
  static constexpr int kContextOrders = 5;

 private:
  explicit UnivariateAnomalyDetector(const Options& options);
  int32_t Level(double value) const;
  uint32_t Lookup(uint64_t key) const;  // count of a context, 0 if unseen
  void Insert(uint64_t key);

  Options options_;
  uint64_t count_ = 0;
  int64_t last_timestamp_ = 0;
  double min_ = 0.0, max_ = 0.0;
  // Recent levels, newest at history_[0].
  std::array<int32_t, kContextOrders> history_{};
  // Open-addressing context table: keys (0 = empty) and counts.
  std::vector<uint64_t> keys_;
  std::vector<uint32_t> counts_;
  uint32_t used_slots_ = 0;
  // Ring of recent raw surprises and its running sum.
  std::vector<double> raw_ring_;
  double raw_sum_ = 0.0;
  // Exponentially weighted mean / variance of the short-term mean.
  double long_mean_ = 0.0, long_var_ = 0.0;
  uint64_t long_count_ = 0;
  uint64_t since_alarm_ = 0;
  // Drift: weighted mean / variance of the values and the two CUSUM sums.
  double drift_mean_ = 0.0, drift_var_ = 0.0;
  double cusum_up_ = 0.0, cusum_down_ = 0.0;
};

}  // namespace crmstream::models
