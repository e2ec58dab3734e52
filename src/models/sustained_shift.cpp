#include "crmstream/models/sustained_shift.h"

#include <algorithm>
#include <cmath>
#include <string>

namespace crmstream::models {
namespace {

// A slot whose points never vary still has a variance: a share of its
// squared level (and an absolute floor for a slot at zero).
constexpr double kRelativeVarianceFloor = 1e-4;
constexpr double kAbsoluteVarianceFloor = 1e-12;
// Rate of the baseline while a sum is at least half the threshold.
constexpr double kSlowLearning = 0.25;

Status Bad(std::string_view field, std::string_view rule, double value) {
  return Status::InvalidArgument("SustainedShiftOptions." + std::string(field) + " must be " +
                                 std::string(rule) + ", got " + std::to_string(value));
}

}  // namespace

Status SustainedShiftOptions::Validate() const {
  if (season_slots < 1 || season_slots > 10080) {
    return Bad("season_slots", "in [1, 10080]", season_slots);
  }
  if (baseline_horizon < 1) return Bad("baseline_horizon", ">= 1", baseline_horizon);
  if (warmup < 1) return Bad("warmup", ">= 1", warmup);
  if (level_horizon < 1) return Bad("level_horizon", ">= 1", level_horizon);
  if (!(change > 0.0 && change <= 0.95)) return Bad("change", "in (0, 0.95]", change);
  if (!(threshold > 0.0 && threshold <= 1000.0)) {
    return Bad("threshold", "in (0, 1000]", threshold);
  }
  if (min_points < 1) return Bad("min_points", ">= 1", min_points);
  return Status::OK();
}

SustainedShiftDetector::SustainedShiftDetector()
    : SustainedShiftDetector(SustainedShiftOptions{}) {}

SustainedShiftDetector::SustainedShiftDetector(const SustainedShiftOptions& options)
    : options_(options), slots_(options.season_slots) {}

Result<SustainedShiftDetector> SustainedShiftDetector::Create(
    const SustainedShiftOptions& options) {
  CRM_RETURN_NOT_OK(options.Validate());
  return SustainedShiftDetector(options);
}

double SustainedShiftDetector::statistic() const { return std::max(up_.sum, down_.sum); }

double SustainedShiftDetector::level() const {
  return recent_expected_ > 0.0 ? recent_observed_ / recent_expected_ : 1.0;
}

double SustainedShiftDetector::expected(uint32_t slot) const {
  return slots_[slot % options_.season_slots].mean * level();
}

bool SustainedShiftDetector::Extreme(uint32_t slot_index, double value) const {
  const Slot& slot = slots_[slot_index % options_.season_slots];
  if (slot.points < options_.warmup || !std::isfinite(value)) return false;
  const double level = this->level();
  const double mean = slot.mean * level;
  const double var =
      std::max({slot.var * level, kRelativeVarianceFloor * mean * mean, kAbsoluteVarianceFloor});
  const double off = std::abs(value - mean);
  return off >= kClipSigmas * std::sqrt(var) && off >= options_.change * std::abs(slot.mean);
}

bool SustainedShiftDetector::Step(Side* side, int direction, double increment, int64_t t,
                                  double value, double mean) {
  if (side->sum == 0.0 && increment > 0.0) {
    side->since = t;
    side->points = 0;
    side->observed = 0.0;
    side->expected = 0.0;
  }
  side->sum = std::min(std::max(0.0, side->sum + increment), 2.0 * options_.threshold);
  if (side->sum == 0.0) {
    side->episode = false;
    side->points = 0;
    return false;
  }
  ++side->points;
  side->observed += value;
  side->expected += mean;
  if (side->episode || side->sum < options_.threshold || side->points < options_.min_points) {
    return false;
  }
  side->episode = true;
  const double n = static_cast<double>(side->points);
  alarm_ = {direction,          side->since,        side->points,
            side->observed / n, side->expected / n, side->sum};
  return true;
}

bool SustainedShiftDetector::Add(int64_t t, uint32_t slot_index, double value) {
  if (!std::isfinite(value)) return false;
  Slot& slot = slots_[slot_index % options_.season_slots];
  bool alarmed = false;
  const double level = this->level();
  // What the baselines learn: the value, clipped as the test clips it once
  // the slot is warm, so that one extreme point does not move them.
  double learned = value;
  if (slot.points >= options_.warmup) {
    // Count-like metrics: the variance scales with the level as the mean does.
    const double mean = slot.mean * level;
    const double var =
        std::max({slot.var * level, kRelativeVarianceFloor * mean * mean, kAbsoluteVarianceFloor});
    const double sd = std::sqrt(var);
    // The magnitude is relative to the slot's long-run level, not the recent one:
    // the return from a dip the level followed is not a rise.
    // Down to (1 - change) times the level, or up by the same factor.
    const double base = std::abs(slot.mean);
    const double delta_down = options_.change * base;
    const double delta_up = options_.change / (1.0 - options_.change) * base;
    // Clipped deviation: one point alone cannot carry the whole alarm.
    const double dev = std::clamp(value - mean, -kClipSigmas * sd, kClipSigmas * sd);
    learned = mean + dev;
    alarmed = Step(&up_, +1, delta_up / var * (dev - delta_up / 2), t, value, mean);
    alarmed =
        Step(&down_, -1, delta_down / var * (-dev - delta_down / 2), t, value, mean) || alarmed;
  }
  // Learn the point, slower while an incident may be under way. The recent
  // level compares the point with its slot's mean (once the slot has one).
  const double slow = statistic() >= options_.threshold / 2 ? kSlowLearning : 1.0;
  if (slot.points > 0) {
    const double beta =
        slow / static_cast<double>(std::min<uint64_t>(recent_points_ + 1, options_.level_horizon));
    recent_observed_ += beta * (learned - recent_observed_);
    recent_expected_ += beta * (slot.mean - recent_expected_);
    if (recent_points_ != UINT64_MAX) ++recent_points_;
  }
  double alpha =
      slow / static_cast<double>(std::min<uint64_t>(slot.points + 1, options_.baseline_horizon));
  if (slot.points == 0) alpha = 1.0;
  const double d = learned - slot.mean;
  slot.mean += alpha * d;
  slot.var = (1.0 - alpha) * (slot.var + alpha * d * d);
  if (slot.points != UINT64_MAX) ++slot.points;
  return alarmed;
}

void SustainedShiftDetector::Write(BinaryWriter* w) const {
  w->Put<uint32_t>(options_.season_slots);
  w->Put<uint32_t>(options_.baseline_horizon);
  w->Put<uint32_t>(options_.warmup);
  w->Put<double>(options_.change);
  w->Put<double>(options_.threshold);
  w->Put<uint32_t>(options_.min_points);
  w->Put<uint32_t>(options_.level_horizon);
  w->Put<double>(recent_observed_);
  w->Put<double>(recent_expected_);
  w->Put<uint64_t>(recent_points_);
  for (const Slot& s : slots_) {
    w->Put<uint64_t>(s.points);
    w->Put<double>(s.mean);
    w->Put<double>(s.var);
  }
  for (const Side* side : {&up_, &down_}) {
    w->Put<double>(side->sum);
    w->Put<uint8_t>(side->episode ? 1 : 0);
    w->Put<int64_t>(side->since);
    w->Put<uint64_t>(side->points);
    w->Put<double>(side->observed);
    w->Put<double>(side->expected);
  }
}

Result<SustainedShiftDetector> SustainedShiftDetector::Read(BinaryReader* r) {
  SustainedShiftOptions o;
  CRM_RETURN_NOT_OK(r->Get(&o.season_slots));
  CRM_RETURN_NOT_OK(r->Get(&o.baseline_horizon));
  CRM_RETURN_NOT_OK(r->Get(&o.warmup));
  CRM_RETURN_NOT_OK(r->Get(&o.change));
  CRM_RETURN_NOT_OK(r->Get(&o.threshold));
  CRM_RETURN_NOT_OK(r->Get(&o.min_points));
  CRM_RETURN_NOT_OK(r->Get(&o.level_horizon));
  if (Status st = o.Validate(); !st.ok()) {
    return Status::Corruption("sustained shift state: " + st.message());
  }
  double recent_observed = 0, recent_expected = 0;
  uint64_t recent_points = 0;
  CRM_RETURN_NOT_OK(r->Get(&recent_observed));
  CRM_RETURN_NOT_OK(r->Get(&recent_expected));
  CRM_RETURN_NOT_OK(r->Get(&recent_points));
  if (!std::isfinite(recent_observed) || !std::isfinite(recent_expected)) {
    return Status::Corruption("sustained shift state: bad recent level");
  }
  // Each slot takes 24 bytes: refuse a slot count the bytes cannot hold
  // before allocating for it.
  if (r->remaining() / 24 < o.season_slots) {
    return Status::Corruption("sustained shift state: truncated slots");
  }
  SustainedShiftDetector d(o);
  d.recent_observed_ = recent_observed;
  d.recent_expected_ = recent_expected;
  d.recent_points_ = recent_points;
  const auto finite = [](double v) { return std::isfinite(v); };
  for (Slot& s : d.slots_) {
    CRM_RETURN_NOT_OK(r->Get(&s.points));
    CRM_RETURN_NOT_OK(r->Get(&s.mean));
    CRM_RETURN_NOT_OK(r->Get(&s.var));
    if (!finite(s.mean) || !finite(s.var) || s.var < 0.0) {
      return Status::Corruption("sustained shift state: bad slot statistics");
    }
  }
  for (Side* side : {&d.up_, &d.down_}) {
    uint8_t episode = 0;
    CRM_RETURN_NOT_OK(r->Get(&side->sum));
    CRM_RETURN_NOT_OK(r->Get(&episode));
    CRM_RETURN_NOT_OK(r->Get(&side->since));
    CRM_RETURN_NOT_OK(r->Get(&side->points));
    CRM_RETURN_NOT_OK(r->Get(&side->observed));
    CRM_RETURN_NOT_OK(r->Get(&side->expected));
    if (episode > 1 || !(side->sum >= 0.0 && side->sum <= 2.0 * o.threshold) ||
        !finite(side->observed) || !finite(side->expected)) {
      return Status::Corruption("sustained shift state: bad sums");
    }
    side->episode = episode == 1;
  }
  return d;
}

}  // namespace crmstream::models
