#include "crmstream/models/adwin.h"

#include <cmath>

namespace crmstream::models {
namespace {

// 2^48 values is far beyond any stream; rows beyond it are corruption.
constexpr size_t kMaxRows = 48;

}  // namespace

Status AdwinOptions::Validate() const {
  if (!(delta > 0.0 && delta < 1.0)) return Status::InvalidArgument("delta must be in (0, 1)");
  if (max_buckets < 2 || max_buckets > 64) {
    return Status::InvalidArgument("max_buckets must be in [2, 64]");
  }
  if (clock < 1 || clock > (1 << 20)) return Status::InvalidArgument("clock must be in [1, 2^20]");
  if (min_window < 1 || min_window > (1 << 20)) {
    return Status::InvalidArgument("min_window must be in [1, 2^20]");
  }
  return Status::OK();
}

Result<Adwin> Adwin::Create(const AdwinOptions& options) {
  CRM_RETURN_NOT_OK(options.Validate());
  return Adwin(options);
}

void Adwin::Reset() {
  rows_.clear();
  width_ = 0;
  total_ = 0.0;
  variance_ = 0.0;
  since_check_ = 0;
}

bool Adwin::Update(double value) {
  if (!std::isfinite(value)) return false;
  InsertValue(value);
  Compress();
  if (++since_check_ < static_cast<uint64_t>(options_.clock)) return false;
  since_check_ = 0;
  return CheckForChange();
}

void Adwin::InsertValue(double value) {
  if (rows_.empty()) rows_.emplace_back();
  Row& row = rows_[0];
  if (row.totals.empty()) {
    row.totals.assign(static_cast<size_t>(options_.max_buckets) + 1, 0.0);
    row.variances.assign(static_cast<size_t>(options_.max_buckets) + 1, 0.0);
  }
  for (int i = row.count; i > 0; --i) {
    row.totals[i] = row.totals[i - 1];
    row.variances[i] = row.variances[i - 1];
  }
  row.totals[0] = value;
  row.variances[0] = 0.0;
  ++row.count;
  ++width_;
  if (width_ > 1) {
    const double w = static_cast<double>(width_);
    const double d = value - total_ / (w - 1.0);
    variance_ += (w - 1.0) * d * d / w;
  }
  total_ += value;
}

void Adwin::Compress() {
  for (size_t i = 0; i < rows_.size(); ++i) {
    Row& row = rows_[i];
    if (row.count <= options_.max_buckets) break;
    // The two oldest buckets of size 2^i become the newest of size 2^(i+1).
    const double n = std::ldexp(1.0, static_cast<int>(i));
    const int a = row.count - 1;
    const int b = row.count - 2;
    const double u1 = row.totals[a] / n;
    const double u2 = row.totals[b] / n;
    const double total = row.totals[a] + row.totals[b];
    const double var =
        row.variances[a] + row.variances[b] + n * n * (u1 - u2) * (u1 - u2) / (2 * n);
    row.count -= 2;
    if (i + 1 == rows_.size()) rows_.emplace_back();
    Row& next = rows_[i + 1];
    if (next.totals.empty()) {
      next.totals.assign(static_cast<size_t>(options_.max_buckets) + 1, 0.0);
      next.variances.assign(static_cast<size_t>(options_.max_buckets) + 1, 0.0);
    }
    for (int k = next.count; k > 0; --k) {
      next.totals[k] = next.totals[k - 1];
      next.variances[k] = next.variances[k - 1];
    }
    next.totals[0] = total;
    next.variances[0] = var;
    ++next.count;
  }
}

void Adwin::DropOldest() {
  // The oldest bucket is the last of the highest non-empty row.
  while (!rows_.empty() && rows_.back().count == 0) rows_.pop_back();
  if (rows_.empty()) return;
  const size_t i = rows_.size() - 1;
  Row& row = rows_[i];
  const double n1 = std::ldexp(1.0, static_cast<int>(i));
  const double t1 = row.totals[row.count - 1];
  const double v1 = row.variances[row.count - 1];
  --row.count;
  width_ -= static_cast<uint64_t>(n1);
  total_ -= t1;
  if (width_ == 0) {
    total_ = 0.0;
    variance_ = 0.0;
  } else {
    const double n2 = static_cast<double>(width_);
    const double u1 = t1 / n1;
    const double u2 = total_ / n2;
    variance_ -= v1 + n1 * n2 * (u1 - u2) * (u1 - u2) / (n1 + n2);
    if (variance_ < 0.0) variance_ = 0.0;
  }
  while (!rows_.empty() && rows_.back().count == 0) rows_.pop_back();
}

bool Adwin::CheckForChange() {
  bool changed = false;
  const double min_window = options_.min_window;
  bool cut = true;
  while (cut && width_ > 2 * static_cast<uint64_t>(options_.min_window)) {
    cut = false;
    const double width = static_cast<double>(width_);
    const double var = variance_ / width;
    const double log_term = std::log(2.0 * std::log(width) / options_.delta);
    double n0 = 0.0, u0 = 0.0;
    double n1 = width, u1 = total_;
    // Splits from the oldest bucket towards the newest.
    for (size_t i = rows_.size(); i-- > 0 && !cut;) {
      const Row& row = rows_[i];
      const double size = std::ldexp(1.0, static_cast<int>(i));
      for (int k = row.count - 1; k >= 0; --k) {
        n0 += size;
        n1 -= size;
        u0 += row.totals[k];
        u1 -= row.totals[k];
        if (n1 < min_window) break;
        if (n0 < min_window) continue;
        const double m = 1.0 / (1.0 / n0 + 1.0 / n1);
        const double eps = std::sqrt(2.0 / m * var * log_term) + 2.0 / (3.0 * m) * log_term;
        if (std::fabs(u0 / n0 - u1 / n1) > eps) {
          cut = true;
          break;
        }
      }
    }
    if (cut) {
      DropOldest();
      changed = true;
    }
  }
  if (changed) ++detections_;
  return changed;
}

void Adwin::AppendTo(BinaryWriter& out) const {
  out.Put<double>(options_.delta);
  out.Put<int32_t>(options_.max_buckets);
  out.Put<int32_t>(options_.clock);
  out.Put<int32_t>(options_.min_window);
  out.Put<uint64_t>(since_check_);
  out.Put<uint64_t>(detections_);
  out.Put<double>(total_);
  out.Put<double>(variance_);
  out.Put<uint32_t>(static_cast<uint32_t>(rows_.size()));
  for (const Row& row : rows_) {
    out.PutArray<double>(std::span<const double>(row.totals).first(static_cast<size_t>(row.count)));
    out.PutArray<double>(
        std::span<const double>(row.variances).first(static_cast<size_t>(row.count)));
  }
}

Result<Adwin> Adwin::ReadFrom(BinaryReader& in) {
  AdwinOptions o;
  CRM_RETURN_NOT_OK(in.Get(&o.delta));
  CRM_RETURN_NOT_OK(in.Get(&o.max_buckets));
  CRM_RETURN_NOT_OK(in.Get(&o.clock));
  CRM_RETURN_NOT_OK(in.Get(&o.min_window));
  if (Status st = o.Validate(); !st.ok()) return Status::Corruption("ADWIN: " + st.message());
  Adwin a(o);
  CRM_RETURN_NOT_OK(in.Get(&a.since_check_));
  CRM_RETURN_NOT_OK(in.Get(&a.detections_));
  CRM_RETURN_NOT_OK(in.Get(&a.total_));
  CRM_RETURN_NOT_OK(in.Get(&a.variance_));
  if (a.since_check_ >= static_cast<uint64_t>(o.clock)) return Status::Corruption("ADWIN: clock");
  if (!std::isfinite(a.total_) || !std::isfinite(a.variance_) || a.variance_ < 0.0) {
    return Status::Corruption("ADWIN: non-finite window");
  }
  uint32_t rows = 0;
  CRM_RETURN_NOT_OK(in.Get(&rows));
  if (rows > kMaxRows) return Status::Corruption("ADWIN: too many rows");
  a.rows_.resize(rows);
  std::vector<double> totals, variances;
  totals.reserve(1);
  variances.reserve(1);
  for (uint32_t i = 0; i < rows; ++i) {
    Row& row = a.rows_[i];
    CRM_RETURN_NOT_OK(in.GetArray(&totals, static_cast<size_t>(o.max_buckets)));
    CRM_RETURN_NOT_OK(in.GetArray(&variances, static_cast<size_t>(o.max_buckets)));
    if (totals.size() != variances.size()) return Status::Corruption("ADWIN: bucket arrays");
    row.count = static_cast<int>(totals.size());
    row.totals.assign(static_cast<size_t>(o.max_buckets) + 1, 0.0);
    row.variances.assign(static_cast<size_t>(o.max_buckets) + 1, 0.0);
    const double n = std::ldexp(1.0, static_cast<int>(i));
    for (int k = 0; k < row.count; ++k) {
      if (!std::isfinite(totals[k]) || !std::isfinite(variances[k]) || variances[k] < 0.0) {
        return Status::Corruption("ADWIN: non-finite bucket");
      }
      row.totals[k] = totals[k];
      row.variances[k] = variances[k];
    }
    a.width_ += static_cast<uint64_t>(n) * static_cast<uint64_t>(row.count);
  }
  if (rows > 0 && a.rows_.back().count == 0) return Status::Corruption("ADWIN: empty top row");
  return a;
}

std::string Adwin::Serialize() const { return SealAppended(BlobKind::kAdwin, kBlobVersion, *this); }

Result<Adwin> Adwin::Deserialize(std::string_view blob) {
  return OpenAndRead<Adwin>(blob, BlobKind::kAdwin, kBlobVersion);
}

}  // namespace crmstream::models
