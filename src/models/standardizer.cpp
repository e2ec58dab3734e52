#include "crmstream/models/standardizer.h"

#include <cassert>
#include <cmath>

#include "crmstream/common/binary_io.h"

namespace crmstream::models {

Result<Standardizer> Standardizer::Create(int dimension) {
  if (dimension < 1 || dimension > kMaxDimension) {
    return Status::InvalidArgument("Standardizer dimension must be in [1, " +
                                   std::to_string(kMaxDimension) + "], got " +
                                   std::to_string(dimension));
  }
  return Standardizer(dimension);
}

Standardizer::Standardizer(int dimension)
    : count_(dimension, 0),
      shift_(dimension, 0.0),
      mean_(dimension, 0.0),
      m2_(dimension, 0.0),
      scale_(dimension, 0.0) {}

void Standardizer::RefreshScale(int j) {
  const double sd = std::sqrt(variance(j));
  // A constant column still accumulates rounding noise in M2; treat a
  // standard deviation that small relative to the mean as zero.
  scale_[j] = (!(sd > 0.0) || sd <= 1e-12 * std::fabs(mean(j))) ? 0.0 : sd;
}

void Standardizer::Update(std::span<const double> x) {
  assert(static_cast<int>(x.size()) == dimension());
  const int d = dimension();
  for (int j = 0; j < d; ++j) {
    if (std::isnan(x[j])) continue;
    if (count_[j] == 0) shift_[j] = x[j];
    const double v = x[j] - shift_[j];
    const uint64_t n = ++count_[j];
    const double delta = v - mean_[j];
    mean_[j] += delta / static_cast<double>(n);
    m2_[j] += delta * (v - mean_[j]);
    RefreshScale(j);
  }
}

double Standardizer::TransformOne(int j, double value) const {
  if (std::isnan(value)) return 0.0;
  const double sd = scale_[j];
  if (sd == 0.0) return 0.0;
  return ((value - shift_[j]) - mean_[j]) / sd;
}

void Standardizer::Transform(std::span<const double> x, std::span<double> out) const {
  assert(x.size() == out.size() && static_cast<int>(x.size()) == dimension());
  const int d = dimension();
  for (int j = 0; j < d; ++j) out[j] = TransformOne(j, x[j]);
}

double Standardizer::variance(int j) const {
  return count_[j] < 2 ? 0.0 : m2_[j] / static_cast<double>(count_[j]);
}

double Standardizer::sample_variance(int j) const {
  return count_[j] < 2 ? 0.0 : m2_[j] / static_cast<double>(count_[j] - 1);
}

Status Standardizer::Merge(const Standardizer& other) {
  if (other.dimension() != dimension()) {
    return Status::InvalidArgument("Standardizer::Merge: dimensions differ");
  }
  for (int j = 0; j < dimension(); ++j) {
    const uint64_t nb = other.count_[j];
    if (nb == 0) continue;
    const uint64_t na = count_[j];
    if (na == 0) {
      shift_[j] = other.shift_[j];
      mean_[j] = other.mean_[j];
      m2_[j] = other.m2_[j];
      count_[j] = nb;
      RefreshScale(j);
      continue;
    }
    const double n = static_cast<double>(na + nb);
    // The other's mean relative to this column's shift.
    const double other_mean = (other.shift_[j] - shift_[j]) + other.mean_[j];
    const double delta = other_mean - mean_[j];
    const double wa = static_cast<double>(na), wb = static_cast<double>(nb);
    mean_[j] += delta * (wb / n);
    m2_[j] += other.m2_[j] + delta * delta * (wa * wb / n);
    count_[j] = na + nb;
    RefreshScale(j);
  }
  return Status::OK();
}

std::string Standardizer::Serialize() const {
  std::string payload;
  BinaryWriter w(&payload);
  w.PutArray<uint64_t>(count_);
  w.PutArray<double>(shift_);
  w.PutArray<double>(mean_);
  w.PutArray<double>(m2_);
  return SealBlob(BlobKind::kStandardizer, kBlobVersion, payload);
}

Result<Standardizer> Standardizer::Deserialize(std::string_view blob) {
  CRM_ASSIGN_OR_RETURN(const std::string_view opened_payload,
                       OpenBlobPayload(blob, BlobKind::kStandardizer, kBlobVersion));
  BinaryReader in(opened_payload);
  std::vector<uint64_t> count;
  std::vector<double> shift, mean, m2;
  CRM_RETURN_NOT_OK(in.GetArray(&count, kMaxDimension));
  CRM_RETURN_NOT_OK(in.GetArray(&shift, kMaxDimension));
  CRM_RETURN_NOT_OK(in.GetArray(&mean, kMaxDimension));
  CRM_RETURN_NOT_OK(in.GetArray(&m2, kMaxDimension));
  CRM_RETURN_NOT_OK(in.ExpectEnd());
  if (count.empty() || shift.size() != count.size() || mean.size() != count.size() ||
      m2.size() != count.size()) {
    return Status::Corruption("Standardizer blob has inconsistent column counts");
  }
  Standardizer s(static_cast<int>(count.size()));
  for (size_t j = 0; j < count.size(); ++j) {
    if (!std::isfinite(shift[j]) || !std::isfinite(mean[j]) || !std::isfinite(m2[j]) ||
        m2[j] < 0.0 || (count[j] == 0 && (shift[j] != 0.0 || mean[j] != 0.0 || m2[j] != 0.0))) {
      return Status::Corruption("Standardizer blob has an invalid column");
    }
  }
  s.count_ = std::move(count);
  s.shift_ = std::move(shift);
  s.mean_ = std::move(mean);
  s.m2_ = std::move(m2);
  for (int j = 0; j < s.dimension(); ++j) s.RefreshScale(j);
  return s;
}

}  // namespace crmstream::models
