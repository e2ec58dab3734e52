// Sustained shift of a seasonal metric: the persistence and magnitude test
// behind the global (minute-metric) anomalies. A single odd minute is not a
// global incident; a level that stays clearly off its usual value for that
// time of day is.
//
// Baseline: the points fall into `season_slots` slots (the minute monitor
// uses the hour of the day); each slot keeps an exponentially weighted mean
// and variance of its points (horizon `baseline_horizon` points of that
// slot), so the daily cycle is expected, not alarmed on.
// Test: two one-sided CUSUMs of the Gaussian log-likelihood ratio between
// "the level is as expected" and "the level moved by the factor `change`
// sets" (up, and down); a sum reaching `threshold` raises an alarm once the
// run behind it holds `min_points` points. The magnitude is in `change`
// (measured against the slot's long-run level; a shift smaller than about
// half of it drifts the sum down, never up) and the persistence in the
// threshold and the run's length: each point's deviation is also clipped at
// kClipSigmas standard deviations, and so is what the baselines learn.
// Episodes: after an alarm the same direction stays silent until its sum has
// returned to zero (the shift is over), so a long outage is one alarm; the
// sum is capped at twice the threshold so that the end is seen within a
// bounded time. While a sum is high the baseline learns at a quarter of its
// rate, so that the incident does not become the norm it is judged against.
//
// Fixed memory (the slots), no allocation per point. Not thread-safe.
#pragma once

#include <cstdint>
#include <vector>

#include "crmstream/common/binary_io.h"
#include "crmstream/common/status.h"

namespace crmstream::models {

struct SustainedShiftOptions {
  // Seasonal slots (e.g. 24 hours of the day), in [1, 10080].
  uint32_t season_slots = 24;
  // Horizon of each slot's mean and variance, in points of that slot, >= 1.
  // Default 420: a week of minutes for an hour-of-day slot.
  uint32_t baseline_horizon = 420;
  // Horizon of the recent level, in points of any slot, >= 1: the ratio of
  // the recent values to what their slots expected, which scales every
  // slot's expectation. It follows slower cycles (a weekly swing) and growth
  // that the slots' week-long means lag behind. Default 1440 (a day).
  uint32_t level_horizon = 1440;
  // Points a slot must have seen before its points are tested, >= 1.
  // Default 120: two days of minutes for an hour-of-day slot.
  uint32_t warmup = 120;
  // The shift looked for: down to (1 - change) times the usual level, or up
  // by the same factor (1 / (1 - change) times), in (0, 0.95]. Default 0.7:
  // to 30% of the level, or 3.3 times it.
  double change = 0.7;
  // Log-likelihood ratio that raises an alarm, in (0, 1000].
  double threshold = 16.0;
  // Points the run must hold before it can alarm, >= 1: a burst of a few
  // minutes, however strong, is not a sustained shift. Default 15.
  uint32_t min_points = 15;

  // InvalidArgument naming the field.
  Status Validate() const;
};

// What an alarm reports: the run of points since the alarming sum last left
// zero (the estimated start of the shift).
struct ShiftAlarm {
  int direction = 0;    // +1 up, -1 down
  int64_t since = 0;    // time of the run's first point
  uint64_t points = 0;  // points in the run, the alarming one included
  double observed_mean = 0.0;
  double expected_mean = 0.0;
  double statistic = 0.0;  // the log-likelihood ratio at the alarm
};

class SustainedShiftDetector {
 public:
  static constexpr double kClipSigmas = 6.0;

  static Result<SustainedShiftDetector> Create(const SustainedShiftOptions& options);
  SustainedShiftDetector();  // default options

  // Tests `value` of `slot` (taken modulo season_slots) at time `t`, then
  // learns it. True when it raises an alarm (described by last_alarm()).
  // Non-finite values are ignored.
  bool Add(int64_t t, uint32_t slot, double value);

  const ShiftAlarm& last_alarm() const { return alarm_; }
  // The larger of the two sums now (0 while nothing is off).
  double statistic() const;
  // The baseline's expected value of a slot now (0 before its first point).
  double expected(uint32_t slot) const;
  // Whether `value` is off the slot's expected value (before it is added) by
  // the change looked for and by kClipSigmas standard deviations: the
  // magnitude a single point needs. False while the slot warms up.
  bool Extreme(uint32_t slot, double value) const;
  // The recent level: recent values over their slots' means (1 at first).
  double level() const;
  const SustainedShiftOptions& options() const { return options_; }

  // The options and state, appended to `w`; Read restores them (Corruption
  // on bad or inconsistent bytes).
  void Write(BinaryWriter* w) const;
  static Result<SustainedShiftDetector> Read(BinaryReader* r);

 private:
  explicit SustainedShiftDetector(const SustainedShiftOptions& options);

  struct Slot {
    uint64_t points = 0;
    double mean = 0.0;
    double var = 0.0;
  };
  // One direction's CUSUM and the run it is accumulating.
  struct Side {
    double sum = 0.0;
    bool episode = false;  // alarmed, and the sum has not returned to zero
    int64_t since = 0;
    uint64_t points = 0;
    double observed = 0.0;
    double expected = 0.0;
  };
  // Updates one side with the point's increment; true on a new alarm.
  bool Step(Side* side, int direction, double increment, int64_t t, double value, double mean);

  SustainedShiftOptions options_;
  std::vector<Slot> slots_;
  // Recent values and their slots' means, exponentially weighted.
  double recent_observed_ = 0.0, recent_expected_ = 0.0;
  uint64_t recent_points_ = 0;
  Side up_, down_;
  ShiftAlarm alarm_;
};

}  // namespace crmstream::models
