#include "crmstream/models/rolling_correlation.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>

#include "crmstream/common/binary_io.h"

namespace crmstream::models {
namespace {

constexpr uint16_t kBlobVersion = 1;
constexpr int kMaxMetrics = 256;
constexpr int64_t kMaxWindowRows = int64_t{1} << 26;
// Fewest add/remove operations between two recomputations of the sums, so a
// tiny window does not recompute on every row.
constexpr int64_t kMinOpsBetweenRebases = 64;
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// hi + lo += v, error-free (Knuth's TwoSum: no ordering assumption on |v|).
inline void TwoSumAccumulate(double& hi, double& lo, double v) {
  const double s = hi + v;
  const double bv = s - hi;
  const double av = s - bv;
  lo += (hi - av) + (v - bv);
  hi = s;
}

bool AllFinite(std::span<const double> v) {
  for (double x : v) {
    if (!std::isfinite(x)) return false;
  }
  return true;
}

double PearsonFromCoMoments(double cij, double cii, double cjj) {
  if (!(cii > 0.0) || !(cjj > 0.0)) return kNaN;
  const double r = cij / std::sqrt(cii * cjj);
  return std::clamp(r, -1.0, 1.0);
}

bool SameWindow(const RollingCorrelationOptions& a, const RollingCorrelationOptions& b) {
  if (a.metrics != b.metrics || a.window != b.window) return false;
  return a.window == CorrelationWindowKind::kCount ? a.window_rows == b.window_rows
                                                   : a.window_duration == b.window_duration;
}

}  // namespace

Status RollingCorrelationOptions::Validate() const {
  if (metrics < 1 || metrics > kMaxMetrics) {
    return Status::InvalidArgument("metrics must be in [1, 256]");
  }
  if (window != CorrelationWindowKind::kCount && window != CorrelationWindowKind::kTime) {
    return Status::InvalidArgument("window must be kCount or kTime");
  }
  if (window_rows < 1 || window_rows > kMaxWindowRows) {
    return Status::InvalidArgument("window_rows must be in [1, 2^26]");
  }
  if (window_duration < 1) return Status::InvalidArgument("window_duration must be >= 1");
  if (max_rows < 1 || max_rows > kMaxWindowRows) {
    return Status::InvalidArgument("max_rows must be in [1, 2^26]");
  }
  if (initial_capacity < 1 || initial_capacity > max_rows) {
    return Status::InvalidArgument("initial_capacity must be in [1, max_rows]");
  }
  if (!metric_names.empty() && static_cast<int>(metric_names.size()) != metrics) {
    return Status::InvalidArgument("metric_names must be empty or have one name per metric");
  }
  return Status::OK();
}

double CorrelationMoments::Correlation(int i, int j) const {
  if (count < 2) return kNaN;
  const size_t m = static_cast<size_t>(metrics);
  return PearsonFromCoMoments(comoment[i * m + j], comoment[i * m + i], comoment[j * m + j]);
}

Status CorrelationMoments::Merge(const CorrelationMoments& other) {
  if (other.metrics != metrics) {
    return Status::InvalidArgument("CorrelationMoments::Merge: metrics differ");
  }
  if (other.count == 0) return Status::OK();
  if (count == 0) {
    *this = other;
    return Status::OK();
  }
  const size_t m = static_cast<size_t>(metrics);
  const double na = static_cast<double>(count);
  const double nb = static_cast<double>(other.count);
  const double n = na + nb;
  // delta = mean_b - mean_a, formed from the small parts so that means near
  // 1e9 do not cost their last digits.
  std::vector<double> delta(m);
  for (size_t i = 0; i < m; ++i) {
    delta[i] = (other.shift[i] - shift[i]) + (other.mean_offset[i] - mean_offset[i]);
  }
  const double w = na * nb / n;
  for (size_t i = 0; i < m; ++i) {
    for (size_t j = 0; j < m; ++j) {
      comoment[i * m + j] += other.comoment[i * m + j] + delta[i] * delta[j] * w;
    }
  }
  for (size_t i = 0; i < m; ++i) mean_offset[i] += delta[i] * (nb / n);
  count += other.count;
  return Status::OK();
}

RollingCorrelation::RollingCorrelation(const RollingCorrelationOptions& options)
    : options_(options),
      pairs_(options.metrics * (options.metrics + 1) / 2),
      capacity_(options.window == CorrelationWindowKind::kCount ? options.window_rows
                                                                : options.initial_capacity),
      shift_(options.metrics, 0.0),
      sum_hi_(options.metrics, 0.0),
      sum_lo_(options.metrics, 0.0),
      prod_hi_(pairs_, 0.0),
      prod_lo_(pairs_, 0.0),
      dev_add_(options.metrics),
      dev_remove_(options.metrics),
      outer_add_(pairs_),
      outer_remove_(pairs_) {
  values_.resize(static_cast<size_t>(capacity_) * options.metrics);
  times_.resize(static_cast<size_t>(capacity_));
}

Result<RollingCorrelation> RollingCorrelation::Create(const RollingCorrelationOptions& options) {
  CRM_RETURN_NOT_OK(options.Validate());
  return RollingCorrelation(options);
}

int RollingCorrelation::PairIndex(int i, int j) const {
  if (i > j) std::swap(i, j);
  // Row i of the upper triangle starts after rows 0..i-1 of lengths m, m-1, ...
  return i * options_.metrics - i * (i - 1) / 2 + (j - i);
}

void RollingCorrelation::Accumulate(const double* row, double sign) {
  const int m = options_.metrics;
  double* d = dev_add_.data();
  for (int i = 0; i < m; ++i) d[i] = row[i] - shift_[i];
  double* outer = outer_add_.data();
  for (int i = 0, p = 0; i < m; ++i) {
    for (int j = i; j < m; ++j, ++p) outer[p] = d[i] * d[j];
  }
  for (int i = 0; i < m; ++i) TwoSumAccumulate(sum_hi_[i], sum_lo_[i], sign * d[i]);
  double* hi = prod_hi_.data();
  double* lo = prod_lo_.data();
  for (int p = 0; p < pairs_; ++p) TwoSumAccumulate(hi[p], lo[p], sign * outer[p]);
}

void RollingCorrelation::AccumulateSwap(const double* added, const double* removed) {
  const int m = options_.metrics;
  double* a = dev_add_.data();
  double* r = dev_remove_.data();
  for (int i = 0; i < m; ++i) {
    a[i] = added[i] - shift_[i];
    r[i] = removed[i] - shift_[i];
  }
  double* oa = outer_add_.data();
  double* orm = outer_remove_.data();
  for (int i = 0, p = 0; i < m; ++i) {
    for (int j = i; j < m; ++j, ++p) {
      oa[p] = a[i] * a[j];
      orm[p] = r[i] * r[j];
    }
  }
  for (int i = 0; i < m; ++i) {
    TwoSumAccumulate(sum_hi_[i], sum_lo_[i], a[i]);
    TwoSumAccumulate(sum_hi_[i], sum_lo_[i], -r[i]);
  }
  // The removed row's products are the very doubles added when it entered
  // (same shift, same arithmetic), so they cancel to double-double precision.
  double* hi = prod_hi_.data();
  double* lo = prod_lo_.data();
  for (int p = 0; p < pairs_; ++p) {
    TwoSumAccumulate(hi[p], lo[p], oa[p]);
    TwoSumAccumulate(hi[p], lo[p], -orm[p]);
  }
}

void RollingCorrelation::RemoveOldest() {
  Accumulate(RowAt(0), -1.0);
  head_ = head_ + 1 == capacity_ ? 0 : head_ + 1;
  --size_;
  ++ops_since_rebase_;
  if (size_ == 0) Rebase();  // an empty window starts afresh, exactly zero
}

void RollingCorrelation::GrowTo(int64_t capacity) {
  const int m = options_.metrics;
  std::vector<double> values(static_cast<size_t>(capacity) * m);
  std::vector<int64_t> times(static_cast<size_t>(capacity));
  for (int64_t i = 0; i < size_; ++i) {
    std::copy(RowAt(i), RowAt(i) + m, values.data() + i * m);
    times[i] = TimeAt(i);
  }
  values_ = std::move(values);
  times_ = std::move(times);
  capacity_ = capacity;
  head_ = 0;
}

void RollingCorrelation::Rebase() {
  const int m = options_.metrics;
  std::fill(sum_hi_.begin(), sum_hi_.end(), 0.0);
  std::fill(sum_lo_.begin(), sum_lo_.end(), 0.0);
  std::fill(prod_hi_.begin(), prod_hi_.end(), 0.0);
  std::fill(prod_lo_.begin(), prod_lo_.end(), 0.0);
  ops_since_rebase_ = 0;
  if (size_ == 0) return;
  // The shift becomes the window mean (long double, then rounded), so the
  // deviations are as small as they can be.
  for (int i = 0; i < m; ++i) {
    long double s = 0.0L;
    for (int64_t r = 0; r < size_; ++r) s += RowAt(r)[i];
    shift_[i] = static_cast<double>(s / static_cast<long double>(size_));
  }
  for (int64_t r = 0; r < size_; ++r) Accumulate(RowAt(r), 1.0);
}

void RollingCorrelation::MaybeRebase() {
  if (ops_since_rebase_ >= std::max(kMinOpsBetweenRebases, 2 * size_)) Rebase();
}

Status RollingCorrelation::Add(std::span<const double> values, int64_t timestamp) {
  const int m = options_.metrics;
  if (static_cast<int>(values.size()) != m) {
    return Status::InvalidArgument("row has the wrong number of metrics");
  }
  if (!AllFinite(values)) return Status::InvalidArgument("row has a non-finite value");
  if (rows_added_ > 0 && timestamp < newest_timestamp_) {
    return Status::InvalidArgument("timestamp older than the newest row");
  }

  if (options_.window == CorrelationWindowKind::kCount) {
    if (size_ == capacity_) {
      // Full: the new row takes the oldest row's slot.
      double* slot = values_.data() + head_ * m;
      AccumulateSwap(values.data(), slot);
      std::copy(values.begin(), values.end(), slot);
      times_[head_] = timestamp;
      head_ = head_ + 1 == capacity_ ? 0 : head_ + 1;
      ops_since_rebase_ += 2;
    } else {
      if (size_ == 0) std::copy(values.begin(), values.end(), shift_.begin());
      int64_t p = head_ + size_;
      if (p >= capacity_) p -= capacity_;
      std::copy(values.begin(), values.end(), values_.data() + p * m);
      times_[p] = timestamp;
      ++size_;
      Accumulate(values.data(), 1.0);
      ++ops_since_rebase_;
    }
  } else {
    AdvanceTo(timestamp);
    if (size_ == options_.max_rows) {
      RemoveOldest();
      ++capped_evictions_;
    }
    if (size_ == capacity_) GrowTo(std::min(options_.max_rows, 2 * capacity_));
    if (size_ == 0) std::copy(values.begin(), values.end(), shift_.begin());
    int64_t p = head_ + size_;
    if (p >= capacity_) p -= capacity_;
    std::copy(values.begin(), values.end(), values_.data() + p * m);
    times_[p] = timestamp;
    ++size_;
    Accumulate(values.data(), 1.0);
    ++ops_since_rebase_;
  }
  newest_timestamp_ = timestamp;
  ++rows_added_;
  MaybeRebase();
  return Status::OK();
}

void RollingCorrelation::AdvanceTo(int64_t now) {
  if (options_.window != CorrelationWindowKind::kTime) return;
  int64_t horizon = 0;  // rows at or before it leave
  if (__builtin_sub_overflow(now, options_.window_duration, &horizon)) return;
  while (size_ > 0 && TimeAt(0) <= horizon) RemoveOldest();
}

double RollingCorrelation::CoMoment(int i, int j) const {
  const int p = PairIndex(i, j);
  const double n = static_cast<double>(size_);
  const double si = sum_hi_[i] + sum_lo_[i];
  const double sj = sum_hi_[j] + sum_lo_[j];
  return (prod_hi_[p] - si * sj / n) + prod_lo_[p];
}

double RollingCorrelation::Mean(int i) const {
  if (size_ == 0) return kNaN;
  return shift_[i] + (sum_hi_[i] + sum_lo_[i]) / static_cast<double>(size_);
}

double RollingCorrelation::Correlation(int i, int j) const {
  if (size_ < 2) return kNaN;
  return PearsonFromCoMoments(CoMoment(i, j), CoMoment(i, i), CoMoment(j, j));
}

double RollingCorrelation::Covariance(int i, int j) const {
  if (size_ < 2) return kNaN;
  return CoMoment(i, j) / static_cast<double>(size_ - 1);
}

void RollingCorrelation::Snapshot(CorrelationSnapshot* out) const {
  const int m = options_.metrics;
  out->metrics = m;
  out->count = size_;
  out->newest_timestamp = newest_timestamp_;
  out->means.resize(m);
  out->correlation.resize(static_cast<size_t>(m) * m);
  for (int i = 0; i < m; ++i) out->means[i] = Mean(i);
  for (int i = 0; i < m; ++i) {
    for (int j = 0; j < m; ++j)
      out->correlation[static_cast<size_t>(i) * m + j] = Correlation(i, j);
  }
}

CorrelationSnapshot RollingCorrelation::Snapshot() const {
  CorrelationSnapshot s;
  Snapshot(&s);
  return s;
}

CorrelationMoments RollingCorrelation::Moments() const {
  const int m = options_.metrics;
  CorrelationMoments mo;
  mo.metrics = m;
  mo.count = size_;
  mo.shift = shift_;
  mo.mean_offset.assign(m, 0.0);
  mo.comoment.assign(static_cast<size_t>(m) * m, 0.0);
  if (size_ == 0) return mo;
  for (int i = 0; i < m; ++i) {
    mo.mean_offset[i] = (sum_hi_[i] + sum_lo_[i]) / static_cast<double>(size_);
    for (int j = 0; j < m; ++j) mo.comoment[static_cast<size_t>(i) * m + j] = CoMoment(i, j);
  }
  return mo;
}

Status RollingCorrelation::Merge(const RollingCorrelation& other) {
  if (!SameWindow(options_, other.options_)) {
    return Status::InvalidArgument("RollingCorrelation::Merge: metrics or window differ");
  }
  if (&other == this)
    return Status::InvalidArgument("RollingCorrelation::Merge: cannot merge into itself");
  const int m = options_.metrics;
  const int64_t total = size_ + other.size_;
  std::vector<double> values(static_cast<size_t>(total) * m);
  std::vector<int64_t> times(static_cast<size_t>(total));
  // Merge by timestamp; on ties this instance's rows come first.
  int64_t a = 0, b = 0, out = 0;
  while (a < size_ || b < other.size_) {
    const bool take_a = b == other.size_ || (a < size_ && TimeAt(a) <= other.TimeAt(b));
    const double* row = take_a ? RowAt(a) : other.RowAt(b);
    times[out] = take_a ? TimeAt(a++) : other.TimeAt(b++);
    std::copy(row, row + m, values.data() + out * m);
    ++out;
  }
  const int64_t newest = std::max(size_ > 0 ? newest_timestamp_ : other.newest_timestamp_,
                                  other.size_ > 0 ? other.newest_timestamp_ : newest_timestamp_);
  int64_t first = 0;
  if (options_.window == CorrelationWindowKind::kCount) {
    first = std::max<int64_t>(0, total - options_.window_rows);
  } else {
    int64_t horizon = 0;
    if (!__builtin_sub_overflow(newest, options_.window_duration, &horizon)) {
      while (first < total && times[first] <= horizon) ++first;
    }
    if (total - first > options_.max_rows) {
      capped_evictions_ += static_cast<uint64_t>(total - first - options_.max_rows);
      first = total - options_.max_rows;
    }
  }
  const int64_t kept = total - first;
  int64_t capacity = capacity_;
  if (options_.window == CorrelationWindowKind::kTime) {
    while (capacity < kept) capacity = std::min(options_.max_rows, 2 * capacity);
  }
  values_.assign(static_cast<size_t>(capacity) * m, 0.0);
  times_.assign(static_cast<size_t>(capacity), 0);
  std::copy(values.begin() + first * m, values.end(), values_.begin());
  std::copy(times.begin() + first, times.end(), times_.begin());
  capacity_ = capacity;
  head_ = 0;
  size_ = kept;
  if (rows_added_ + other.rows_added_ > 0) newest_timestamp_ = newest;
  rows_added_ += other.rows_added_;
  capped_evictions_ += other.capped_evictions_;
  Rebase();
  return Status::OK();
}

std::string RollingCorrelation::Serialize() const {
  const int m = options_.metrics;
  std::string payload;
  BinaryWriter w(&payload);
  w.Put<int32_t>(m);
  w.Put<uint8_t>(static_cast<uint8_t>(options_.window));
  w.Put<int64_t>(options_.window_rows);
  w.Put<int64_t>(options_.window_duration);
  w.Put<int64_t>(options_.initial_capacity);
  w.Put<int64_t>(options_.max_rows);
  w.Put<uint32_t>(static_cast<uint32_t>(options_.metric_names.size()));
  for (const std::string& name : options_.metric_names) w.PutBytes(name);

  w.Put<int64_t>(capacity_);
  w.Put<int64_t>(newest_timestamp_);
  w.Put<uint64_t>(rows_added_);
  w.Put<uint64_t>(capped_evictions_);
  w.Put<int64_t>(ops_since_rebase_);
  w.PutArray<double>(shift_);
  w.PutArray<double>(sum_hi_);
  w.PutArray<double>(sum_lo_);
  w.PutArray<double>(prod_hi_);
  w.PutArray<double>(prod_lo_);
  // Rows oldest first, unrolled from the ring.
  w.Put<int64_t>(size_);
  for (int64_t i = 0; i < size_; ++i) {
    w.Put<int64_t>(TimeAt(i));
    const double* row = RowAt(i);
    for (int j = 0; j < m; ++j) w.Put<double>(row[j]);
  }
  return SealBlob(BlobKind::kRollingCorrelation, kBlobVersion, payload);
}

Result<RollingCorrelation> RollingCorrelation::Deserialize(std::string_view blob) {
  CRM_ASSIGN_OR_RETURN(const std::string_view opened_payload,
                       OpenBlobPayload(blob, BlobKind::kRollingCorrelation, kBlobVersion));
  BinaryReader r(opened_payload);
  RollingCorrelationOptions o;
  int32_t m = 0;
  uint8_t window = 0;
  uint32_t names = 0;
  CRM_RETURN_NOT_OK(r.Get(&m));
  CRM_RETURN_NOT_OK(r.Get(&window));
  CRM_RETURN_NOT_OK(r.Get(&o.window_rows));
  CRM_RETURN_NOT_OK(r.Get(&o.window_duration));
  CRM_RETURN_NOT_OK(r.Get(&o.initial_capacity));
  CRM_RETURN_NOT_OK(r.Get(&o.max_rows));
  CRM_RETURN_NOT_OK(r.Get(&names));
  if (names > static_cast<uint32_t>(kMaxMetrics)) {
    return Status::Corruption("RollingCorrelation blob: too many metric names");
  }
  for (uint32_t i = 0; i < names; ++i) {
    std::string name;
    CRM_RETURN_NOT_OK(r.GetBytes(&name));
    o.metric_names.push_back(std::move(name));
  }
  if (window > 1) return Status::Corruption("RollingCorrelation blob: bad window kind");
  o.metrics = m;
  o.window = static_cast<CorrelationWindowKind>(window);
  if (Status st = o.Validate(); !st.ok()) {
    return Status::Corruption("RollingCorrelation blob has invalid options: " + st.message());
  }

  int64_t capacity = 0, newest = 0, ops = 0, size = 0;
  uint64_t added = 0, capped = 0;
  CRM_RETURN_NOT_OK(r.Get(&capacity));
  CRM_RETURN_NOT_OK(r.Get(&newest));
  CRM_RETURN_NOT_OK(r.Get(&added));
  CRM_RETURN_NOT_OK(r.Get(&capped));
  CRM_RETURN_NOT_OK(r.Get(&ops));
  const size_t pairs = static_cast<size_t>(m) * (m + 1) / 2;
  std::vector<double> shift, sum_hi, sum_lo, prod_hi, prod_lo;
  CRM_RETURN_NOT_OK(r.GetArray(&shift, m));
  CRM_RETURN_NOT_OK(r.GetArray(&sum_hi, m));
  CRM_RETURN_NOT_OK(r.GetArray(&sum_lo, m));
  CRM_RETURN_NOT_OK(r.GetArray(&prod_hi, pairs));
  CRM_RETURN_NOT_OK(r.GetArray(&prod_lo, pairs));
  CRM_RETURN_NOT_OK(r.Get(&size));
  const bool count_window = o.window == CorrelationWindowKind::kCount;
  const int64_t max_size = count_window ? o.window_rows : o.max_rows;
  const int64_t expected_capacity_floor = count_window ? o.window_rows : o.initial_capacity;
  if (shift.size() != static_cast<size_t>(m) || sum_hi.size() != static_cast<size_t>(m) ||
      sum_lo.size() != static_cast<size_t>(m) || prod_hi.size() != pairs ||
      prod_lo.size() != pairs) {
    return Status::Corruption("RollingCorrelation blob: inconsistent array sizes");
  }
  if (size < 0 || size > max_size || capacity < size || capacity < expected_capacity_floor ||
      capacity > max_size || (count_window && capacity != o.window_rows) || ops < 0 ||
      static_cast<uint64_t>(size) > added) {
    return Status::Corruption("RollingCorrelation blob: inconsistent window state");
  }
  // Each row is a timestamp and m doubles; reject a size the payload cannot hold
  // before allocating for it.
  if (r.remaining() / (sizeof(int64_t) + sizeof(double) * static_cast<size_t>(m)) <
      static_cast<size_t>(size)) {
    return Status::Corruption("RollingCorrelation blob: truncated rows");
  }
  if (!AllFinite(shift) || !AllFinite(sum_hi) || !AllFinite(sum_lo) || !AllFinite(prod_hi) ||
      !AllFinite(prod_lo)) {
    return Status::Corruption("RollingCorrelation blob: non-finite accumulator");
  }

  RollingCorrelation rc(o);
  rc.capacity_ = capacity;
  rc.values_.assign(static_cast<size_t>(capacity) * m, 0.0);
  rc.times_.assign(static_cast<size_t>(capacity), 0);
  int64_t previous = std::numeric_limits<int64_t>::min();
  for (int64_t i = 0; i < size; ++i) {
    int64_t t = 0;
    CRM_RETURN_NOT_OK(r.Get(&t));
    if (t < previous || t > newest)
      return Status::Corruption("RollingCorrelation blob: rows out of order");
    previous = t;
    rc.times_[i] = t;
    for (int j = 0; j < m; ++j) {
      double v = 0.0;
      CRM_RETURN_NOT_OK(r.Get(&v));
      if (!std::isfinite(v)) return Status::Corruption("RollingCorrelation blob: non-finite value");
      rc.values_[static_cast<size_t>(i) * m + j] = v;
    }
  }
  CRM_RETURN_NOT_OK(r.ExpectEnd());
  rc.size_ = size;
  rc.head_ = 0;
  rc.newest_timestamp_ = newest;
  rc.rows_added_ = added;
  rc.capped_evictions_ = capped;
  rc.ops_since_rebase_ = ops;
  rc.shift_ = std::move(shift);
  rc.sum_hi_ = std::move(sum_hi);
  rc.sum_lo_ = std::move(sum_lo);
  rc.prod_hi_ = std::move(prod_hi);
  rc.prod_lo_ = std::move(prod_lo);
  return rc;
}

}  // namespace crmstream::models
