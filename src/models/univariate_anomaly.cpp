#include "crmstream/models/univariate_anomaly.h"

#include <algorithm>
#include <bit>
#include <cmath>

#include "crmstream/common/binary_io.h"

namespace crmstream::models {
namespace {

uint64_t Mix64(uint64_t x) {
  // splitmix64 finaliser: cheap and spreads neighbouring level tuples.
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

// Tail mass of the standard normal above z.
double UpperTail(double z) { return 0.5 * std::erfc(z / std::sqrt(2.0)); }

// HTM's floors on the likelihood distribution, so that a perfectly quiet
// series does not turn the slightest blip into an alarm.
constexpr double kMinLongMean = 0.03;
constexpr double kMinLongVariance = 0.0003;
// Tail mass mapped to score 1 by the log scaling.
constexpr double kLogFloor = 1e-10;

}  // namespace

Status UnivariateAnomalyDetector::Options::Validate() const {
  if (levels < 2 || levels > 1024) return Status::InvalidArgument("levels must be in [2, 1024]");
  if (table_slots < 64 || table_slots > (1u << 24) || !std::has_single_bit(table_slots)) {
    return Status::InvalidArgument("table_slots must be a power of two in [64, 2^24]");
  }
  if (short_window < 1 || short_window > 10000) {
    return Status::InvalidArgument("short_window must be in [1, 10000]");
  }
  if (long_horizon < 1) return Status::InvalidArgument("long_horizon must be >= 1");
  if (!(range_tolerance >= 0.0) || !std::isfinite(range_tolerance)) {
    return Status::InvalidArgument("range_tolerance must be finite and >= 0");
  }
  if (drift_horizon < 1) return Status::InvalidArgument("drift_horizon must be >= 1");
  if (!(drift_slack >= 0.0) || !std::isfinite(drift_slack)) {
    return Status::InvalidArgument("drift_slack must be finite and >= 0");
  }
  if (!(drift_saturation > 0.0) || !std::isfinite(drift_saturation)) {
    return Status::InvalidArgument("drift_saturation must be finite and > 0");
  }
  if (!(drift_weight >= 0.0 && drift_weight <= 1.0)) {
    return Status::InvalidArgument("drift_weight must be in [0, 1]");
  }
  if (!(alarm_level >= 0.0 && alarm_level <= 1.0)) {
    return Status::InvalidArgument("alarm_level must be in [0, 1]");
  }
  return Status::OK();
}

UnivariateAnomalyDetector::UnivariateAnomalyDetector() : UnivariateAnomalyDetector(Options{}) {}

UnivariateAnomalyDetector::UnivariateAnomalyDetector(const Options& options)
    : options_(options),
      keys_(options.table_slots, 0),
      counts_(options.table_slots, 0),
      raw_ring_(options.short_window, 0.0) {
  history_.fill(0);
}

Result<UnivariateAnomalyDetector> UnivariateAnomalyDetector::Create(const Options& options) {
  CRM_RETURN_NOT_OK(options.Validate());
  return UnivariateAnomalyDetector(options);
}

int32_t UnivariateAnomalyDetector::Level(double value) const {
  const int32_t levels = static_cast<int32_t>(options_.levels);
  if (value < min_) return -1;
  if (value > max_) return levels;
  const double range = max_ - min_;
  if (range <= 0.0) return 0;
  const int32_t level = static_cast<int32_t>((value - min_) / range * levels);
  return std::min(level, levels - 1);
}

uint32_t UnivariateAnomalyDetector::Lookup(uint64_t key) const {
  const uint32_t mask = options_.table_slots - 1;
  for (uint32_t slot = static_cast<uint32_t>(key) & mask;; slot = (slot + 1) & mask) {
    if (keys_[slot] == key) return counts_[slot];
    if (keys_[slot] == 0) return 0;
  }
}

void UnivariateAnomalyDetector::Insert(uint64_t key) {
  const uint32_t mask = options_.table_slots - 1;
  for (uint32_t slot = static_cast<uint32_t>(key) & mask;; slot = (slot + 1) & mask) {
    if (keys_[slot] == key) {
      if (counts_[slot] != UINT32_MAX) ++counts_[slot];
      return;
    }
    if (keys_[slot] == 0) {
      // A full table keeps its contexts and stops learning new ones; 3/4
      // keeps probe chains short.
      if (used_slots_ >= options_.table_slots / 4 * 3) return;
      keys_[slot] = key;
      counts_[slot] = 1;
      ++used_slots_;
      return;
    }
  }
}

double UnivariateAnomalyDetector::Score(int64_t timestamp, double value) {
  if (!std::isfinite(value)) return 0.0;
  last_timestamp_ = timestamp;
  if (count_ == 0) {
    min_ = max_ = value;
    drift_mean_ = value;
  }
  const double range = max_ - min_;

  // Stage 1: raw surprise.
  const int32_t level = Level(value);
  uint64_t keys[kContextOrders];
  uint64_t acc = 0x9e3779b97f4a7c15ULL;
  int unseen = 0;
  for (int k = 0; k < kContextOrders; ++k) {
    const int32_t l = k == 0 ? level : history_[k - 1];
    acc = Mix64(acc ^ (static_cast<uint64_t>(static_cast<uint32_t>(l + 2)) +
                       (static_cast<uint64_t>(k) << 32)));
    keys[k] = acc | 1;  // 0 marks an empty slot
    if (Lookup(keys[k]) == 0) ++unseen;
  }
  const double novelty = static_cast<double>(unseen) / kContextOrders;
  const bool breach =
      count_ >= options_.warmup && (value > max_ + options_.range_tolerance * range ||
                                    value < min_ - options_.range_tolerance * range);

  // Stage 2: likelihood of the short-term mean under the long-term one.
  const uint32_t slot = static_cast<uint32_t>(count_ % options_.short_window);
  raw_sum_ += novelty - raw_ring_[slot];
  raw_ring_[slot] = novelty;
  const double short_mean =
      raw_sum_ / static_cast<double>(std::min<uint64_t>(count_ + 1, options_.short_window));
  double score = 0.0;
  if (count_ >= options_.warmup) {
    const double mean = std::max(long_mean_, kMinLongMean);
    const double sd = std::sqrt(std::max(long_var_, kMinLongVariance));
    const double tail = UpperTail((short_mean - mean) / sd);
    score = std::clamp(std::log(tail + kLogFloor) / std::log(kLogFloor), 0.0, 1.0);
  }
  // Drift: CUSUM of z-scores against the past mean and variance.
  const double drift_sd = std::sqrt(drift_var_);
  if (count_ >= options_.warmup && drift_sd > 0.0) {
    const double z = (value - drift_mean_) / drift_sd;
    cusum_up_ = std::max(0.0, cusum_up_ + z - options_.drift_slack);
    cusum_down_ = std::max(0.0, cusum_down_ - z - options_.drift_slack);
    const double drift =
        std::min(1.0, std::max(cusum_up_, cusum_down_) / options_.drift_saturation);
    score = std::max(score, options_.drift_weight * drift);
  }
  if (breach) score = 1.0;

  // Stage 3: damping after an alarm. A breach of the past range is exempt:
  // it is the most specific of the three signals, and a new extreme shortly
  // after a false alarm is often the anomaly the false alarm preceded.
  if (!breach && since_alarm_ < options_.quiet_period) {
    score *= static_cast<double>(since_alarm_) / options_.quiet_period;
  }
  if (score >= options_.alarm_level) {
    since_alarm_ = 0;
    cusum_up_ = cusum_down_ = 0.0;  // the drift has been reported
  } else if (since_alarm_ < UINT32_MAX) {
    ++since_alarm_;
  }

  // Learn the point.
  ++long_count_;
  const double alpha =
      1.0 / static_cast<double>(std::min<uint64_t>(long_count_, options_.long_horizon));
  const double delta = short_mean - long_mean_;
  long_mean_ += alpha * delta;
  long_var_ = (1.0 - alpha) * (long_var_ + alpha * delta * delta);
  const double drift_alpha =
      1.0 / static_cast<double>(std::min<uint64_t>(count_ + 1, options_.drift_horizon));
  const double drift_delta = value - drift_mean_;
  drift_mean_ += drift_alpha * drift_delta;
  drift_var_ = (1.0 - drift_alpha) * (drift_var_ + drift_alpha * drift_delta * drift_delta);
  for (int k = 0; k < kContextOrders; ++k) Insert(keys[k]);
  for (int k = kContextOrders - 1; k > 0; --k) history_[k] = history_[k - 1];
  history_[0] = level;
  min_ = std::min(min_, value);
  max_ = std::max(max_, value);
  ++count_;
  return score;
}

std::string UnivariateAnomalyDetector::Serialize() const {
  std::string payload;
  BinaryWriter w(&payload);
  w.Put<uint32_t>(options_.levels);
  w.Put<uint32_t>(options_.table_slots);
  w.Put<uint32_t>(options_.warmup);
  w.Put<uint32_t>(options_.short_window);
  w.Put<uint32_t>(options_.long_horizon);
  w.Put<double>(options_.range_tolerance);
  w.Put<uint32_t>(options_.quiet_period);
  w.Put<double>(options_.alarm_level);
  w.Put<uint32_t>(options_.drift_horizon);
  w.Put<double>(options_.drift_slack);
  w.Put<double>(options_.drift_saturation);
  w.Put<double>(options_.drift_weight);
  w.Put<uint64_t>(count_);
  w.Put<int64_t>(last_timestamp_);
  w.Put<double>(min_);
  w.Put<double>(max_);
  for (int32_t l : history_) w.Put<int32_t>(l);
  // Only the occupied slots, each with its index: the table is sparse for
  // most series, and the engine checkpoints several detectors per partition.
  w.Put<uint32_t>(used_slots_);
  for (uint32_t slot = 0; slot < options_.table_slots; ++slot) {
    if (keys_[slot] == 0) continue;
    w.Put<uint32_t>(slot);
    w.Put<uint64_t>(keys_[slot]);
    w.Put<uint32_t>(counts_[slot]);
  }
  w.PutArray<double>(raw_ring_);
  w.Put<double>(raw_sum_);
  w.Put<double>(long_mean_);
  w.Put<double>(long_var_);
  w.Put<uint64_t>(long_count_);
  w.Put<uint64_t>(since_alarm_);
  w.Put<double>(drift_mean_);
  w.Put<double>(drift_var_);
  w.Put<double>(cusum_up_);
  w.Put<double>(cusum_down_);
  return SealBlob(BlobKind::kUnivariateAnomaly, kBlobVersion, payload);
}

Result<UnivariateAnomalyDetector> UnivariateAnomalyDetector::Deserialize(std::string_view blob) {
  CRM_ASSIGN_OR_RETURN(const OpenedBlob opened, OpenBlob(blob, BlobKind::kUnivariateAnomaly));
  // Version 2 stored the whole context table; 3 stores its occupied slots.
  // The detector itself is the same in both.
  if (opened.version != kBlobVersion && opened.version != kDenseTableBlobVersion) {
    return Status::Corruption("univariate anomaly blob: unsupported version " +
                              std::to_string(opened.version));
  }
  BinaryReader r(opened.payload);
  Options o;
  CRM_RETURN_NOT_OK(r.Get(&o.levels));
  CRM_RETURN_NOT_OK(r.Get(&o.table_slots));
  CRM_RETURN_NOT_OK(r.Get(&o.warmup));
  CRM_RETURN_NOT_OK(r.Get(&o.short_window));
  CRM_RETURN_NOT_OK(r.Get(&o.long_horizon));
  CRM_RETURN_NOT_OK(r.Get(&o.range_tolerance));
  CRM_RETURN_NOT_OK(r.Get(&o.quiet_period));
  CRM_RETURN_NOT_OK(r.Get(&o.alarm_level));
  CRM_RETURN_NOT_OK(r.Get(&o.drift_horizon));
  CRM_RETURN_NOT_OK(r.Get(&o.drift_slack));
  CRM_RETURN_NOT_OK(r.Get(&o.drift_saturation));
  CRM_RETURN_NOT_OK(r.Get(&o.drift_weight));
  if (Status st = o.Validate(); !st.ok()) {
    return Status::Corruption("univariate anomaly blob: " + st.message());
  }
  UnivariateAnomalyDetector d(o);
  CRM_RETURN_NOT_OK(r.Get(&d.count_));
  CRM_RETURN_NOT_OK(r.Get(&d.last_timestamp_));
  CRM_RETURN_NOT_OK(r.Get(&d.min_));
  CRM_RETURN_NOT_OK(r.Get(&d.max_));
  for (int32_t& l : d.history_) CRM_RETURN_NOT_OK(r.Get(&l));
  if (opened.version == kDenseTableBlobVersion) {
    CRM_RETURN_NOT_OK(r.GetArray(&d.keys_, o.table_slots));
    CRM_RETURN_NOT_OK(r.GetArray(&d.counts_, o.table_slots));
    CRM_RETURN_NOT_OK(r.Get(&d.used_slots_));
  } else {
    CRM_RETURN_NOT_OK(r.Get(&d.used_slots_));
    if (d.used_slots_ > o.table_slots / 4 * 3) {
      return Status::Corruption("univariate anomaly blob: context table is inconsistent");
    }
    int64_t previous = -1;
    for (uint32_t i = 0; i < d.used_slots_; ++i) {
      uint32_t slot = 0;
      uint64_t key = 0;
      uint32_t count = 0;
      CRM_RETURN_NOT_OK(r.Get(&slot));
      CRM_RETURN_NOT_OK(r.Get(&key));
      CRM_RETURN_NOT_OK(r.Get(&count));
      // Increasing slots (so each once), inside the table, non-empty keys.
      if (static_cast<int64_t>(slot) <= previous || slot >= o.table_slots || key == 0) {
        return Status::Corruption("univariate anomaly blob: bad context slot");
      }
      previous = slot;
      d.keys_[slot] = key;
      d.counts_[slot] = count;
    }
  }
  CRM_RETURN_NOT_OK(r.GetArray(&d.raw_ring_, o.short_window));
  CRM_RETURN_NOT_OK(r.Get(&d.raw_sum_));
  CRM_RETURN_NOT_OK(r.Get(&d.long_mean_));
  CRM_RETURN_NOT_OK(r.Get(&d.long_var_));
  CRM_RETURN_NOT_OK(r.Get(&d.long_count_));
  CRM_RETURN_NOT_OK(r.Get(&d.since_alarm_));
  CRM_RETURN_NOT_OK(r.Get(&d.drift_mean_));
  CRM_RETURN_NOT_OK(r.Get(&d.drift_var_));
  CRM_RETURN_NOT_OK(r.Get(&d.cusum_up_));
  CRM_RETURN_NOT_OK(r.Get(&d.cusum_down_));
  CRM_RETURN_NOT_OK(r.ExpectEnd());
  // Sizes and invariants a hand-made blob could break; the probe loops rely
  // on the table never being full.
  if (d.keys_.size() != o.table_slots || d.counts_.size() != o.table_slots ||
      d.raw_ring_.size() != o.short_window) {
    return Status::Corruption("univariate anomaly blob: array sizes do not match its options");
  }
  uint32_t used = 0;
  for (uint64_t k : d.keys_) used += k != 0;
  if (used != d.used_slots_ || used > o.table_slots / 4 * 3) {
    return Status::Corruption("univariate anomaly blob: context table is inconsistent");
  }
  if (!std::isfinite(d.min_) || !std::isfinite(d.max_) || d.min_ > d.max_ ||
      !std::isfinite(d.raw_sum_) || !std::isfinite(d.long_mean_) || !std::isfinite(d.long_var_) ||
      d.long_var_ < 0.0 || !std::isfinite(d.drift_mean_) || !std::isfinite(d.drift_var_) ||
      d.drift_var_ < 0.0 || !(d.cusum_up_ >= 0.0) || !(d.cusum_down_ >= 0.0) ||
      !std::isfinite(d.cusum_up_) || !std::isfinite(d.cusum_down_)) {
    return Status::Corruption("univariate anomaly blob: non-finite or inconsistent statistics");
  }
  for (double v : d.raw_ring_) {
    if (!std::isfinite(v)) return Status::Corruption("univariate anomaly blob: non-finite ring");
  }
  return d;
}

}  // namespace crmstream::models
