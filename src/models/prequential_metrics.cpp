#include "crmstream/models/prequential_metrics.h"

#include <cmath>
#include <string>

namespace crmstream::models {
namespace {

constexpr uint32_t kMaxBins = 1u << 24;
// Counts beyond 2^62 per class are impossible in practice; bounding them keeps
// a corrupted blob from overflowing the totals.
constexpr uint64_t kMaxCount = uint64_t{1} << 62;

// Neumaier's variant of Kahan summation: exact to a few ulps whatever the
// order of magnitude of the terms.
inline void CompensatedAdd(double v, double& sum, double& compensation) {
  const double t = sum + v;
  if (std::fabs(sum) >= std::fabs(v)) {
    compensation += (sum - t) + v;
  } else {
    compensation += (v - t) + sum;
  }
  sum = t;
}

Status ReadCompensatedSum(BinaryReader& in, uint64_t* count, double* sum, double* compensation,
                          const char* what) {
  CRM_RETURN_NOT_OK(in.Get(count));
  CRM_RETURN_NOT_OK(in.Get(sum));
  CRM_RETURN_NOT_OK(in.Get(compensation));
  if (!std::isfinite(*sum) || !std::isfinite(*compensation) || *sum + *compensation < 0.0) {
    return Status::Corruption(std::string(what) + " state holds an invalid sum");
  }
  if (*count == 0 && (*sum != 0.0 || *compensation != 0.0)) {
    return Status::Corruption(std::string(what) + " state holds a sum without observations");
  }
  return Status::OK();
}

}  // namespace

// ---------------------------------------------------------------- StreamingAuc

StreamingAuc::StreamingAuc(uint32_t bins, double lo, double hi)
    : bins_(bins == 0 ? 1 : (bins > kMaxBins ? kMaxBins : bins)),
      lo_(lo),
      hi_(std::isfinite(hi) && std::isfinite(lo) && hi > lo ? hi : lo + 1.0),
      scale_(bins_ / (hi_ - lo_)),
      pos_counts_(bins_, 0),
      neg_counts_(bins_, 0) {}

uint32_t StreamingAuc::BinOf(double score) const {
  if (!(score > lo_)) return 0;
  if (score >= hi_) return bins_ - 1;
  const auto bin = static_cast<uint32_t>((score - lo_) * scale_);
  return bin >= bins_ ? bins_ - 1 : bin;
}

void StreamingAuc::Add(double score, bool label) {
  if (std::isnan(score)) return;
  const uint32_t bin = BinOf(score);
  if (label) {
    ++pos_counts_[bin];
    ++positives_;
  } else {
    ++neg_counts_[bin];
    ++negatives_;
  }
  value_valid_ = false;
}

double StreamingAuc::Value() const {
  if (positives_ == 0 || negatives_ == 0) return 0.5;
  if (value_valid_) return value_;
  // Twice the concordant pairs plus the tied pairs, as an exact 128-bit
  // integer: no rounding accumulates and no count that fits in 64 bits
  // overflows it.
  __extension__ using Uint128 = unsigned __int128;
  Uint128 twice_concordant = 0;
  uint64_t negatives_below = 0;
  for (uint32_t b = 0; b < bins_; ++b) {
    const uint64_t pos = pos_counts_[b];
    const uint64_t neg = neg_counts_[b];
    if (pos != 0)
      twice_concordant += static_cast<Uint128>(pos) * (2 * Uint128{negatives_below} + neg);
    negatives_below += neg;
  }
  const long double pairs =
      static_cast<long double>(positives_) * static_cast<long double>(negatives_);
  value_ = static_cast<double>(static_cast<long double>(twice_concordant) / (2.0L * pairs));
  value_valid_ = true;
  return value_;
}

Status StreamingAuc::Merge(const StreamingAuc& other) {
  if (other.bins_ != bins_ || other.lo_ != lo_ || other.hi_ != hi_) {
    return Status::InvalidArgument("StreamingAuc::Merge: different bins or score range");
  }
  for (uint32_t b = 0; b < bins_; ++b) {
    pos_counts_[b] += other.pos_counts_[b];
    neg_counts_[b] += other.neg_counts_[b];
  }
  positives_ += other.positives_;
  negatives_ += other.negatives_;
  value_valid_ = false;
  return Status::OK();
}

void StreamingAuc::AppendTo(BinaryWriter& out) const {
  out.Put<uint32_t>(bins_);
  out.Put<double>(lo_);
  out.Put<double>(hi_);
  uint32_t non_empty = 0;
  for (uint32_t b = 0; b < bins_; ++b) {
    if (pos_counts_[b] != 0 || neg_counts_[b] != 0) ++non_empty;
  }
  out.Put<uint32_t>(non_empty);
  for (uint32_t b = 0; b < bins_; ++b) {
    if (pos_counts_[b] == 0 && neg_counts_[b] == 0) continue;
    out.Put<uint32_t>(b);
    out.Put<uint64_t>(pos_counts_[b]);
    out.Put<uint64_t>(neg_counts_[b]);
  }
}

Result<StreamingAuc> StreamingAuc::ReadFrom(BinaryReader& in) {
  uint32_t bins = 0;
  double lo = 0, hi = 0;
  uint32_t non_empty = 0;
  CRM_RETURN_NOT_OK(in.Get(&bins));
  CRM_RETURN_NOT_OK(in.Get(&lo));
  CRM_RETURN_NOT_OK(in.Get(&hi));
  if (bins == 0 || bins > kMaxBins || !std::isfinite(lo) || !std::isfinite(hi) || !(lo < hi)) {
    return Status::Corruption("StreamingAuc: invalid bins or score range");
  }
  CRM_RETURN_NOT_OK(in.Get(&non_empty));
  // Each bin record is 20 bytes: reject a count the input cannot hold before
  // allocating anything.
  if (non_empty > bins || in.remaining() / 20 < non_empty) {
    return Status::Corruption("StreamingAuc: invalid number of bins");
  }
  StreamingAuc auc(bins, lo, hi);
  int64_t previous = -1;
  for (uint32_t i = 0; i < non_empty; ++i) {
    uint32_t b = 0;
    uint64_t pos = 0, neg = 0;
    CRM_RETURN_NOT_OK(in.Get(&b));
    CRM_RETURN_NOT_OK(in.Get(&pos));
    CRM_RETURN_NOT_OK(in.Get(&neg));
    if (static_cast<int64_t>(b) <= previous || b >= bins || (pos == 0 && neg == 0) ||
        pos > kMaxCount - auc.positives_ || neg > kMaxCount - auc.negatives_) {
      return Status::Corruption("StreamingAuc: invalid bin record");
    }
    previous = b;
    auc.pos_counts_[b] = pos;
    auc.neg_counts_[b] = neg;
    auc.positives_ += pos;
    auc.negatives_ += neg;
  }
  return auc;
}

// --------------------------------------------------------------------- LogLoss

void LogLoss::Add(double probability, bool label) {
  if (std::isnan(probability)) return;
  double p = probability < kClip ? kClip : probability;
  if (p > 1.0 - kClip) p = 1.0 - kClip;
  CompensatedAdd(label ? -std::log(p) : -std::log1p(-p), sum_, compensation_);
  ++count_;
}

double LogLoss::Value() const { return count_ == 0 ? 0.0 : (sum_ + compensation_) / count_; }

Status LogLoss::Merge(const LogLoss& other) {
  CompensatedAdd(other.sum_, sum_, compensation_);
  CompensatedAdd(other.compensation_, sum_, compensation_);
  count_ += other.count_;
  return Status::OK();
}

void LogLoss::AppendTo(BinaryWriter& out) const {
  out.Put<uint64_t>(count_);
  out.Put<double>(sum_);
  out.Put<double>(compensation_);
}

Result<LogLoss> LogLoss::ReadFrom(BinaryReader& in) {
  LogLoss m;
  CRM_RETURN_NOT_OK(ReadCompensatedSum(in, &m.count_, &m.sum_, &m.compensation_, "LogLoss"));
  return m;
}

// ------------------------------------------------------------------------ Rmse

void Rmse::Add(double prediction, double target) {
  if (std::isnan(prediction) || std::isnan(target)) return;
  const double e = prediction - target;
  CompensatedAdd(e * e, sum_sq_, compensation_);
  ++count_;
}

double Rmse::MeanSquaredError() const {
  return count_ == 0 ? 0.0 : (sum_sq_ + compensation_) / count_;
}

double Rmse::Value() const { return std::sqrt(MeanSquaredError()); }

Status Rmse::Merge(const Rmse& other) {
  CompensatedAdd(other.sum_sq_, sum_sq_, compensation_);
  CompensatedAdd(other.compensation_, sum_sq_, compensation_);
  count_ += other.count_;
  return Status::OK();
}

void Rmse::AppendTo(BinaryWriter& out) const {
  out.Put<uint64_t>(count_);
  out.Put<double>(sum_sq_);
  out.Put<double>(compensation_);
}

Result<Rmse> Rmse::ReadFrom(BinaryReader& in) {
  Rmse m;
  CRM_RETURN_NOT_OK(ReadCompensatedSum(in, &m.count_, &m.sum_sq_, &m.compensation_, "Rmse"));
  return m;
}

}  // namespace crmstream::models
