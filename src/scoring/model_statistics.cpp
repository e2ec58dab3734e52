#include "crmstream/scoring/model_statistics.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <utility>

#include "crmstream/common/binary_io.h"
#include "crmstream/models/mini_batch_kmeans.h"
#include "crmstream/scoring/customer_models.h"
#include "crmstream/scoring/minute_metrics_monitor.h"

namespace crmstream::scoring {
namespace {

constexpr int kMetrics = MinuteMetrics::kMetrics;
constexpr int64_t kMillisPerMinute = 60'000;

double MinuteValue(const MinuteSums& m, int metric) {
  return metric == 0 ? m.revenue : metric == 1 ? m.tickets : m.logins;
}

// The minutes of `a` and `b` (each increasing) within [from, through], summed
// where both hold the minute.
std::vector<MinuteSums> SumMinutes(const std::vector<MinuteSums>& a,
                                   const std::vector<MinuteSums>& b, int64_t from,
                                   int64_t through) {
  std::vector<MinuteSums> out;
  out.reserve(std::max(a.size(), b.size()));
  size_t i = 0;
  size_t j = 0;
  while (i < a.size() || j < b.size()) {
    MinuteSums m;
    if (j == b.size() || (i < a.size() && a[i].minute_start_ms < b[j].minute_start_ms)) {
      m = a[i++];
    } else if (i == a.size() || b[j].minute_start_ms < a[i].minute_start_ms) {
      m = b[j++];
    } else {
      m = a[i++];
      m.revenue += b[j].revenue;
      m.tickets += b[j].tickets;
      m.logins += b[j++].logins;
    }
    if (m.minute_start_ms >= from && m.minute_start_ms <= through) out.push_back(m);
  }
  return out;
}

// Pairs b's centres with a's (minimum squared distance) and averages each
// pair by counts; sizes add up.
void MergeCentres(SegmentCentres* a, const SegmentCentres& b) {
  if (b.k == 0) return;
  if (a->k == 0) {
    *a = b;
    return;
  }
  const int k = a->k;
  const int dim = SegmentCentres::kDim;
  std::vector<double> cost(static_cast<size_t>(k) * k);
  for (int r = 0; r < k; ++r) {
    for (int c = 0; c < k; ++c) {
      double d2 = 0.0;
      for (int j = 0; j < dim; ++j) {
        const double d = a->centres[static_cast<size_t>(r * dim + j)] -
                         b.centres[static_cast<size_t>(c * dim + j)];
        d2 += d * d;
      }
      cost[static_cast<size_t>(r) * k + c] = d2;
    }
  }
  const std::vector<int> match = models::MinCostAssignment(cost, k);
  for (int r = 0; r < k; ++r) {
    const auto ra = static_cast<size_t>(r);
    const auto rb = static_cast<size_t>(match[ra]);
    const double na = a->counts[ra];
    const double nb = b.counts[rb];
    const double wa = na + nb > 0.0 ? na / (na + nb) : 0.5;
    for (int j = 0; j < dim; ++j) {
      double& ca = a->centres[ra * dim + static_cast<size_t>(j)];
      ca = wa * ca + (1.0 - wa) * b.centres[rb * dim + static_cast<size_t>(j)];
    }
    a->counts[ra] = na + nb;
    a->sizes[ra] += b.sizes[rb];
  }
}

template <typename T>
void PutOptional(BinaryWriter& w, const std::optional<T>& model) {
  w.PutBytes(model ? model->Serialize() : std::string());
}

template <typename T>
Status GetOptional(BinaryReader& r, std::optional<T>* model) {
  std::string blob;
  CRM_RETURN_NOT_OK(r.GetBytes(&blob));
  if (blob.empty()) {
    model->reset();
    return Status::OK();
  }
  CRM_ASSIGN_OR_RETURN(T decoded, T::Deserialize(blob));
  model->emplace(std::move(decoded));
  return Status::OK();
}

template <typename T>
Status MergeOptional(std::optional<T>* into, const std::optional<T>& other) {
  if (!other) return Status::OK();
  if (!*into) {
    into->emplace(*other);
    return Status::OK();
  }
  return (*into)->Merge(*other);
}

}  // namespace

ModelStatistics ModelStatistics::Collect(const CustomerModels& models,
                                         const MinuteMetricsMonitor& minutes) {
  ModelStatistics s;
  s.parts = 1;
  s.minutes_closed = minutes.minutes_closed();
  const models::RollingCorrelation& window = minutes.correlation();
  s.minutes.reserve(static_cast<size_t>(window.count()));
  for (int64_t i = 0; i < window.count(); ++i) {
    const std::span<const double> row = window.Row(i);
    s.minutes.push_back({window.RowTimestamp(i), row[0], row[1], row[2]});
  }
  if (!s.minutes.empty()) {
    s.covered_from_ms = s.minutes.front().minute_start_ms;
    s.complete_through_ms = s.minutes.back().minute_start_ms;
  }
  s.minute_moments = window.Moments();

  const ChurnValueModel& churn = models.churn();
  s.churn_features.emplace(churn.standardizer());
  s.spend_features.emplace(churn.spend_standardizer());
  s.value.emplace(churn.value_model());
  s.churn.emplace(churn.churn_model());

  const CustomerSegmenter& segmenter = models.segmenter();
  if (segmenter.seeded()) {
    SegmentCentres& c = s.segments;
    c.k = segmenter.options().k;
    c.centres.resize(static_cast<size_t>(c.k) * SegmentCentres::kDim);
    const std::span<const double> counts = segmenter.kmeans().counts();
    c.counts.assign(counts.begin(), counts.end());
    for (int i = 0; i < c.k; ++i) {
      segmenter.CentreLog1p(
          i, std::span<double>(c.centres).subspan(static_cast<size_t>(i) * SegmentCentres::kDim,
                                                  SegmentCentres::kDim));
      c.sizes.push_back(segmenter.Size(i));
    }
  }
  return s;
}

Status ModelStatistics::Merge(const ModelStatistics& other) {
  if (other.parts == 0) return Status::OK();
  if (parts == 0) {
    *this = other;
    return Status::OK();
  }
  if (segments.k != 0 && other.segments.k != 0 && segments.k != other.segments.k) {
    return Status::InvalidArgument("ModelStatistics::Merge: segment counts k differ");
  }
  // Merged into a copy, so that a refusal half-way leaves this unchanged.
  ModelStatistics merged = *this;
  merged.parts += other.parts;
  merged.minutes_closed += other.minutes_closed;
  // A partition that closed no minute holds none and constrains nothing.
  if (other.complete_through_ms != INT64_MIN) {
    if (merged.complete_through_ms == INT64_MIN) {
      merged.covered_from_ms = other.covered_from_ms;
      merged.complete_through_ms = other.complete_through_ms;
    } else {
      merged.covered_from_ms = std::max(merged.covered_from_ms, other.covered_from_ms);
      merged.complete_through_ms = std::min(merged.complete_through_ms, other.complete_through_ms);
    }
    merged.minutes = SumMinutes(merged.minutes, other.minutes, merged.covered_from_ms,
                                merged.complete_through_ms);
  }
  if (other.minute_moments.metrics != 0) {
    if (merged.minute_moments.metrics == 0) {
      merged.minute_moments = other.minute_moments;
    } else {
      CRM_RETURN_NOT_OK(merged.minute_moments.Merge(other.minute_moments));
    }
  }
  CRM_RETURN_NOT_OK(MergeOptional(&merged.churn_features, other.churn_features));
  CRM_RETURN_NOT_OK(MergeOptional(&merged.spend_features, other.spend_features));
  CRM_RETURN_NOT_OK(MergeOptional(&merged.value, other.value));
  CRM_RETURN_NOT_OK(MergeOptional(&merged.churn, other.churn));
  MergeCentres(&merged.segments, other.segments);
  *this = std::move(merged);
  return Status::OK();
}

double ModelStatistics::MinuteCorrelation(int i, int j) const {
  const size_t n = minutes.size();
  if (n < 2) return std::numeric_limits<double>::quiet_NaN();
  double mi = 0.0;
  double mj = 0.0;
  for (const MinuteSums& m : minutes) {
    mi += MinuteValue(m, i);
    mj += MinuteValue(m, j);
  }
  mi /= static_cast<double>(n);
  mj /= static_cast<double>(n);
  double sij = 0.0;
  double sii = 0.0;
  double sjj = 0.0;
  for (const MinuteSums& m : minutes) {
    const double di = MinuteValue(m, i) - mi;
    const double dj = MinuteValue(m, j) - mj;
    sij += di * dj;
    sii += di * di;
    sjj += dj * dj;
  }
  if (!(sii > 0.0) || !(sjj > 0.0)) return std::numeric_limits<double>::quiet_NaN();
  return sij / std::sqrt(sii * sjj);
}

void ModelStatistics::Encode(std::string* out) const {
  std::string payload;
  BinaryWriter w(&payload);
  w.Put<uint32_t>(parts);
  w.Put<uint64_t>(minutes_closed);
  w.Put<int64_t>(covered_from_ms);
  w.Put<int64_t>(complete_through_ms);
  w.Put<uint32_t>(static_cast<uint32_t>(minutes.size()));
  for (const MinuteSums& m : minutes) {
    w.Put<int64_t>(m.minute_start_ms);
    w.Put<double>(m.revenue);
    w.Put<double>(m.tickets);
    w.Put<double>(m.logins);
  }
  w.Put<int32_t>(minute_moments.metrics);
  w.Put<int64_t>(minute_moments.count);
  w.PutArray<double>(minute_moments.shift);
  w.PutArray<double>(minute_moments.mean_offset);
  w.PutArray<double>(minute_moments.comoment);
  PutOptional(w, churn_features);
  PutOptional(w, spend_features);
  PutOptional(w, value);
  PutOptional(w, churn);
  w.Put<int32_t>(segments.k);
  w.PutArray<double>(segments.centres);
  w.PutArray<double>(segments.counts);
  w.PutArray<uint64_t>(segments.sizes);
  *out = SealBlob(BlobKind::kModelStatistics, kVersion, payload);
}

Result<ModelStatistics> ModelStatistics::Decode(std::string_view blob) {
  CRM_ASSIGN_OR_RETURN(const std::string_view payload,
                       OpenBlobPayload(blob, BlobKind::kModelStatistics, kVersion));
  BinaryReader r(payload);
  ModelStatistics s;
  uint32_t minute_count = 0;
  CRM_RETURN_NOT_OK(r.Get(&s.parts));
  CRM_RETURN_NOT_OK(r.Get(&s.minutes_closed));
  CRM_RETURN_NOT_OK(r.Get(&s.covered_from_ms));
  CRM_RETURN_NOT_OK(r.Get(&s.complete_through_ms));
  CRM_RETURN_NOT_OK(r.Get(&minute_count));
  // Each minute takes 32 bytes: a count beyond the payload is corrupt, and
  // is refused before it sizes an allocation.
  if (minute_count > r.remaining() / 32) {
    return Status::Corruption("model statistics: minute count exceeds the blob");
  }
  s.minutes.resize(minute_count);
  int64_t previous = INT64_MIN;
  for (MinuteSums& m : s.minutes) {
    CRM_RETURN_NOT_OK(r.Get(&m.minute_start_ms));
    CRM_RETURN_NOT_OK(r.Get(&m.revenue));
    CRM_RETURN_NOT_OK(r.Get(&m.tickets));
    CRM_RETURN_NOT_OK(r.Get(&m.logins));
    if (m.minute_start_ms <= previous || m.minute_start_ms < s.covered_from_ms ||
        m.minute_start_ms > s.complete_through_ms || m.minute_start_ms % kMillisPerMinute != 0) {
      return Status::Corruption("model statistics: minutes out of order or out of range");
    }
    previous = m.minute_start_ms;
  }
  models::CorrelationMoments& mo = s.minute_moments;
  CRM_RETURN_NOT_OK(r.Get(&mo.metrics));
  CRM_RETURN_NOT_OK(r.Get(&mo.count));
  CRM_RETURN_NOT_OK(r.GetArray(&mo.shift, 256));
  CRM_RETURN_NOT_OK(r.GetArray(&mo.mean_offset, 256));
  CRM_RETURN_NOT_OK(r.GetArray(&mo.comoment, 256 * 256));
  const auto m = static_cast<size_t>(mo.metrics);
  if (mo.metrics < 0 || mo.count < 0 || mo.shift.size() != m || mo.mean_offset.size() != m ||
      mo.comoment.size() != m * m || (mo.metrics != 0 && mo.metrics != kMetrics)) {
    return Status::Corruption("model statistics: inconsistent correlation moments");
  }
  CRM_RETURN_NOT_OK(GetOptional(r, &s.churn_features));
  CRM_RETURN_NOT_OK(GetOptional(r, &s.spend_features));
  CRM_RETURN_NOT_OK(GetOptional(r, &s.value));
  CRM_RETURN_NOT_OK(GetOptional(r, &s.churn));
  SegmentCentres& c = s.segments;
  CRM_RETURN_NOT_OK(r.Get(&c.k));
  CRM_RETURN_NOT_OK(r.GetArray(&c.centres, 64 * SegmentCentres::kDim));
  CRM_RETURN_NOT_OK(r.GetArray(&c.counts, 64));
  CRM_RETURN_NOT_OK(r.GetArray(&c.sizes, 64));
  const auto k = static_cast<size_t>(c.k);
  if (c.k < 0 || c.k > 64 || c.centres.size() != k * SegmentCentres::kDim || c.counts.size() != k ||
      c.sizes.size() != k) {
    return Status::Corruption("model statistics: inconsistent segment centres");
  }
  // The centres' pairing (a minimum-cost assignment) needs finite costs.
  // Log1p units of any double stay below 710; 1e6 leaves squared distances
  // far from overflow.
  for (double v : c.centres) {
    if (!(std::abs(v) <= 1e6)) {
      return Status::Corruption("model statistics: a centre is not finite or beyond 1e6");
    }
  }
  for (double n : c.counts) {
    if (!(n >= 0.0) || !std::isfinite(n)) {
      return Status::Corruption("model statistics: a centre's count is not finite and >= 0");
    }
  }
  CRM_RETURN_NOT_OK(r.ExpectEnd());
  return s;
}

}  // namespace crmstream::scoring
