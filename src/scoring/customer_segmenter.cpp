#include "crmstream/scoring/customer_segmenter.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <utility>

#include "crmstream/common/binary_io.h"
#include "scoring/scoring_internal.h"

namespace crmstream::scoring {
namespace {

using internal::ReadNested;

constexpr int kDim = static_cast<int>(kSegmentFeatureNames.size());
// 2: adds the challenger and its day count (hysteresis); version 1 reads
// with none.
constexpr uint16_t kCustomerVersion = 2;
constexpr uint16_t kCustomerVersionNoChallenger = 1;
// 2: adds the standardisation snapshot k-means works in. Version 1 (no
// snapshot) is read with the running standardisation as the snapshot, which
// is what its k-means points were mapped with last.
constexpr uint16_t kPartitionVersion = 2;
constexpr uint16_t kPartitionVersionNoSnapshot = 1;
// The snapshot is refreshed at 1, 2, 4, ... 128 k-means points, then every
// 256 (and at every point while a feature is still constant).
constexpr uint64_t kScaleRefreshEvery = 256;

models::MiniBatchKMeansOptions KMeansOptions(const SegmenterOptions& o) {
  models::MiniBatchKMeansOptions k;
  k.k = o.k;
  k.dim = kDim;
  k.seed_buffer_size = std::max(256, 20 * o.k);
  k.random_seed = o.seed;
  k.dead_after = o.reseed_after_points;
  return k;
}

// The running standardisation's scale, with Standardizer::Transform's rule:
// 0 while a feature is constant (it then maps to 0).
double ScaleOf(const models::Standardizer& s, int j) {
  const double sd = std::sqrt(s.variance(j));
  return sd > 0.0 && sd > 1e-12 * std::fabs(s.mean(j)) ? sd : 0.0;
}

double SquaredDistance(std::span<const double> a, std::span<const double> b) {
  double d2 = 0.0;
  for (size_t j = 0; j < a.size(); ++j) d2 += (a[j] - b[j]) * (a[j] - b[j]);
  return d2;
}

size_t ClosestWindow(const features::FeatureSpec& spec, int days) {
  size_t best = 0;
  for (size_t i = 1; i < spec.window_days.size(); ++i) {
    if (std::abs(spec.window_days[i] - days) < std::abs(spec.window_days[best] - days)) best = i;
  }
  return best;
}

Status Mismatch(std::string_view what) {
  return Status::Corruption("segment partition state: " + std::string(what));
}

}  // namespace

Status SegmenterOptions::Validate() const {
  if (k < 1 || k > CustomerSegmenter::kMaxSegments) {
    return Status::InvalidArgument("SegmenterOptions.k must be in [1, 64], got " +
                                   std::to_string(k));
  }
  if (!(move_margin >= 0.0 && move_margin < 1.0)) {
    return Status::InvalidArgument("SegmenterOptions.move_margin must be in [0, 1)");
  }
  if (move_after_days < 1 || move_after_days > 365) {
    return Status::InvalidArgument("SegmenterOptions.move_after_days must be in [1, 365]");
  }
  return Status::OK();
}

Result<CustomerSegmenter> CustomerSegmenter::Create(const SegmenterOptions& options,
                                                    const features::FeatureSpec& spec) {
  static_assert(sizeof(Slot) == 8);
  static_assert(kMaxSegments <= 64, "a segment takes 7 signed bits");
  CRM_RETURN_NOT_OK(options.Validate());
  CRM_RETURN_NOT_OK(spec.Validate().WithContext("FeatureSpec"));
  CRM_ASSIGN_OR_RETURN(models::Standardizer standardizer, models::Standardizer::Create(kDim));
  CRM_ASSIGN_OR_RETURN(models::MiniBatchKMeans kmeans,
                       models::MiniBatchKMeans::Create(KMeansOptions(options)));
  return CustomerSegmenter(options, spec, std::move(standardizer), std::move(kmeans));
}

CustomerSegmenter::CustomerSegmenter(const SegmenterOptions& options,
                                     const features::FeatureSpec& spec,
                                     models::Standardizer standardizer,
                                     models::MiniBatchKMeans kmeans)
    : options_(options),
      month_window_(ClosestWindow(spec, 30)),
      standardizer_(std::move(standardizer)),
      kmeans_(std::move(kmeans)) {}

void CustomerSegmenter::GrowTo(size_t slots) {
  if (slots <= slots_.size()) return;
  slots_.reserve(slots);  // exactly: CustomerModels chooses the growth
  slots_.resize(slots);
}

void CustomerSegmenter::OnEvent(const features::CustomerFeatures& f, UnsavedSlots* unsaved) {
  const uint32_t s = f.slot();
  if (s >= slots_.size()) GrowTo(std::max(size_t{s} + 1, 2 * slots_.size()));  // amortised
  unsaved->Mark(s);
  Slot& slot = slots_[s];
  const auto day = static_cast<int32_t>(internal::FloorDiv(f.as_of_ms(), internal::kMillisPerDay));
  const bool learn = day != slot.last_kmeans_day;
  if (!learn && slot.segment >= 0) return;  // decided once per customer-day
  const double recency = f.recency_days();
  // Never purchased: at least as long ago as the customer has been known.
  point_[0] = std::log1p(std::max(0.0, std::isnan(recency) ? f.tenure_days() : recency));
  point_[1] = std::log1p(static_cast<double>(f.frequency()));
  point_[2] = std::log1p(std::max(0.0, f.monetary()));
  const features::WindowAggregates w = f.window(month_window_);
  point_[3] = std::log1p(static_cast<double>(w.purchases) + w.logins + w.page_views +
                         w.support_tickets + w.complaints + w.refunds);
  if (learn) {
    // Once per customer and day: a busy customer must not outweigh the rest.
    slot.last_kmeans_day = day;
    standardizer_.Update(point_);
    if (ScaleRefreshDue()) RefreshScale();
  }
  std::array<double, kDim> z{};
  for (size_t j = 0; j < z.size(); ++j) {
    z[j] = scale_sd_[j] > 0.0 ? (point_[j] - scale_mean_[j]) / scale_sd_[j] : 0.0;
  }
  if (learn) static_cast<void>(kmeans_.Update(z));  // fails only on non-finite input
  models::KMeansAssignment nearest;
  if (use_global_) {
    for (int c = 0; c < options_.k; ++c) {
      const double d2 = SquaredDistance(z, AssignedCentre(c));
      if (nearest.cluster < 0 || d2 < nearest.squared_distance) nearest = {c, d2};
    }
  } else {
    nearest = kmeans_.Assign(z);
  }
  int segment = nearest.cluster;
  if (segment >= 0 && slot.segment >= 0) {
    // Hysteresis: stay unless the nearest centre has been clearly closer on
    // move_after_days consecutive active days.
    segment = slot.segment;
    const bool clearly_closer =
        nearest.cluster != slot.segment &&
        nearest.squared_distance <
            (1.0 - options_.move_margin) * SquaredDistance(z, AssignedCentre(slot.segment));
    if (!clearly_closer) {
      slot.challenger = -1;
      slot.challenger_days = 0;
    } else {
      if (slot.challenger != nearest.cluster) {
        slot.challenger = nearest.cluster;
        slot.challenger_days = 0;
      }
      if (++slot.challenger_days >= options_.move_after_days) {
        segment = nearest.cluster;
        slot.challenger = -1;
        slot.challenger_days = 0;
      }
    }
  }
  if (segment != slot.segment) {
    if (slot.segment >= 0) --segment_sizes_[static_cast<size_t>(slot.segment)];
    if (segment >= 0) ++segment_sizes_[static_cast<size_t>(segment)];
    slot.segment = segment;
  }
}

void CustomerSegmenter::Refresh(uint32_t s, UnsavedSlots* unsaved, SegmentChange* out) {
  *out = SegmentChange{};
  Slot& slot = slots_[s];
  if (slot.segment >= 0 && slot.segment != slot.published_segment) {
    out->changed = true;
    out->from = slot.published_segment;
    out->to = slot.segment;
    slot.published_segment = slot.segment;
    unsaved->Mark(s);
  }
}

bool CustomerSegmenter::ScaleRefreshDue() const {
  const uint64_t n = standardizer_.count(0);
  if (n == 0) return false;
  if ((n & (n - 1)) == 0 || n % kScaleRefreshEvery == 0) return true;
  // A snapshot of a constant feature maps it to 0, which stands for its
  // mean: exact only while it stays constant, so follow it point by point.
  return std::find(scale_sd_.begin(), scale_sd_.end(), 0.0) != scale_sd_.end();
}

void CustomerSegmenter::RefreshScale() {
  std::array<double, kDim> mean{}, sd{}, scale{}, shift{};
  for (int j = 0; j < kDim; ++j) {
    const auto i = static_cast<size_t>(j);
    mean[i] = standardizer_.mean(j);
    sd[i] = ScaleOf(standardizer_, j);
    // old z -> log1p value -> new z; a feature still constant maps to 0.
    scale[i] = sd[i] > 0.0 ? scale_sd_[i] / sd[i] : 0.0;
    shift[i] = sd[i] > 0.0 ? (scale_mean_[i] - mean[i]) / sd[i] : 0.0;
  }
  kmeans_.Rescale(scale, shift);
  scale_mean_ = mean;
  scale_sd_ = sd;
  if (use_global_) ScaleGlobalCentres();
}

void CustomerSegmenter::ScaleGlobalCentres() {
  for (size_t i = 0; i < global_log1p_.size(); ++i) {
    const size_t j = i % kDim;
    global_z_[i] = scale_sd_[j] > 0.0 ? (global_log1p_[i] - scale_mean_[j]) / scale_sd_[j] : 0.0;
  }
}

std::span<const double> CustomerSegmenter::AssignedCentre(int c) const {
  if (!use_global_) return kmeans_.centroid(c);
  return std::span<const double>(global_z_).subspan(static_cast<size_t>(c) * kDim, kDim);
}

Status CustomerSegmenter::UseGlobalCentres(const std::vector<double>* merged, int k) {
  if (merged == nullptr || k == 0 || !kmeans_.seeded()) {
    use_global_ = false;
    return Status::OK();
  }
  if (k != options_.k || merged->size() != static_cast<size_t>(k) * kDim) {
    return Status::InvalidArgument("global segment centres: k " + std::to_string(k) +
                                   ", this partition's " + std::to_string(options_.k));
  }
  // Own centre r (row) against merged centre c (column), in log1p units.
  std::vector<double> own(static_cast<size_t>(k) * kDim);
  for (int r = 0; r < k; ++r) {
    CentreLog1p(r, std::span<double>(own).subspan(static_cast<size_t>(r) * kDim, kDim));
  }
  std::vector<double> cost(static_cast<size_t>(k) * static_cast<size_t>(k));
  for (int r = 0; r < k; ++r) {
    for (int c = 0; c < k; ++c) {
      cost[static_cast<size_t>(r * k + c)] = SquaredDistance(
          std::span<const double>(own).subspan(static_cast<size_t>(r) * kDim, kDim),
          std::span<const double>(*merged).subspan(static_cast<size_t>(c) * kDim, kDim));
    }
  }
  const std::vector<int> match = models::MinCostAssignment(cost, k);
  global_log1p_.resize(merged->size());
  global_z_.resize(merged->size());
  for (int r = 0; r < k; ++r) {
    const auto from =
        merged->begin() + static_cast<std::ptrdiff_t>(match[static_cast<size_t>(r)]) * kDim;
    std::copy(from, from + kDim, global_log1p_.begin() + static_cast<std::ptrdiff_t>(r) * kDim);
  }
  use_global_ = true;
  ScaleGlobalCentres();
  return Status::OK();
}

void CustomerSegmenter::CentreLog1p(int c, std::span<double> out) const {
  const std::span<const double> centre = kmeans_.centroid(c);
  for (size_t j = 0; j < scale_sd_.size(); ++j) out[j] = scale_mean_[j] + centre[j] * scale_sd_[j];
}

void CustomerSegmenter::Centre(int c, std::span<double> out) const {
  if (use_global_) {
    std::copy_n(global_log1p_.begin() + static_cast<std::ptrdiff_t>(c) * kDim, kDim, out.begin());
  } else {
    CentreLog1p(c, out);
  }
  for (size_t j = 0; j < scale_sd_.size(); ++j) out[j] = std::max(0.0, std::expm1(out[j]));
}

CustomerSegmenter::Quality CustomerSegmenter::quality() const {
  Quality q;
  q.kmeans_mean_squared_distance = kmeans_.quality().mean_squared_distance();
  q.kmeans_points = kmeans_.quality().scored_points;
  q.reseeded_centres = kmeans_.quality().reseeded_centres;
  return q;
}

void CustomerSegmenter::AppendCustomer(uint32_t s, std::string* record) const {
  const Slot& slot = slots_[s];
  internal::SectionWriter section(record, kCustomerVersion);
  BinaryWriter& w = section.writer();
  w.Put<int32_t>(slot.last_kmeans_day);
  w.Put<int16_t>(static_cast<int16_t>(slot.segment));
  w.Put<int16_t>(static_cast<int16_t>(slot.published_segment));
  w.Put<int16_t>(static_cast<int16_t>(slot.challenger));
  w.Put<uint16_t>(static_cast<uint16_t>(slot.challenger_days));
}

Result<CustomerSegmenter::DecodedCustomer> CustomerSegmenter::ReadCustomer(
    BinaryReader* record) const {
  std::string payload;
  uint16_t version = 0;
  CRM_RETURN_NOT_OK(internal::ReadSection(record, kCustomerVersionNoChallenger, kCustomerVersion,
                                          "segment customer state", &payload, &version));
  BinaryReader in(payload);
  DecodedCustomer decoded;
  Slot& d = decoded.slot_;
  // The record keeps 16-bit fields; the slot packs them (checked first).
  int16_t segment = -1, published_segment = -1, challenger = -1;
  uint16_t challenger_days = 0;
  CRM_RETURN_NOT_OK(in.Get(&d.last_kmeans_day));
  CRM_RETURN_NOT_OK(in.Get(&segment));
  CRM_RETURN_NOT_OK(in.Get(&published_segment));
  if (version >= kCustomerVersion) {
    CRM_RETURN_NOT_OK(in.Get(&challenger));
    CRM_RETURN_NOT_OK(in.Get(&challenger_days));
  }
  CRM_RETURN_NOT_OK(in.ExpectEnd());
  if (segment < -1 || segment >= options_.k || published_segment < -1 ||
      published_segment >= options_.k || challenger < -1 || challenger >= options_.k) {
    return Status::InvalidArgument("segment customer state: segment outside [-1, k)");
  }
  if (challenger_days >= options_.move_after_days) {
    return Status::InvalidArgument(
        "segment customer state: challenger days not below move_after_days");
  }
  d.segment = segment;
  d.published_segment = published_segment;
  d.challenger = challenger;
  d.challenger_days = challenger_days;
  return decoded;
}

void CustomerSegmenter::InstallCustomer(uint32_t s, const DecodedCustomer& decoded) {
  if (s >= slots_.size()) GrowTo(std::max(size_t{s} + 1, 2 * slots_.size()));  // amortised
  slots_[s] = decoded.slot_;
}

void CustomerSegmenter::ForgetCustomer(uint32_t s) {
  if (s < slots_.size()) slots_[s] = Slot{};
}

void CustomerSegmenter::EncodePartition(std::string* out) const {
  std::string payload;
  BinaryWriter w(&payload);
  w.Put<int32_t>(options_.k);
  w.PutBytes(standardizer_.Serialize());
  w.PutBytes(kmeans_.Serialize());
  for (int c = 0; c < options_.k; ++c) w.Put<uint64_t>(segment_sizes_[static_cast<size_t>(c)]);
  w.PutArray<double>(scale_mean_);
  w.PutArray<double>(scale_sd_);
  *out = SealBlob(BlobKind::kSegmentPartitionState, kPartitionVersion, payload);
}

Status CustomerSegmenter::DecodePartition(std::string_view blob) {
  CRM_ASSIGN_OR_RETURN(const OpenedBlob opened, OpenBlob(blob, BlobKind::kSegmentPartitionState));
  if (opened.version != kPartitionVersion && opened.version != kPartitionVersionNoSnapshot) {
    return Mismatch("unsupported version " + std::to_string(opened.version));
  }
  BinaryReader in(opened.payload);
  int32_t k = 0;
  CRM_RETURN_NOT_OK(in.Get(&k));
  if (k != options_.k) {
    return Status::InvalidArgument("segment partition state written with k " + std::to_string(k) +
                                   "; configured " + std::to_string(options_.k));
  }
  std::string scratch;
  CRM_ASSIGN_OR_RETURN(models::Standardizer standardizer,
                       ReadNested<models::Standardizer>(in, &scratch));
  CRM_ASSIGN_OR_RETURN(models::MiniBatchKMeans kmeans,
                       ReadNested<models::MiniBatchKMeans>(in, &scratch));
  if (standardizer.dimension() != kDim || kmeans.k() != options_.k || kmeans.dim() != kDim) {
    return Mismatch("segmentation dimensions differ");
  }
  std::array<uint64_t, kMaxSegments> sizes{};
  for (int c = 0; c < k; ++c) CRM_RETURN_NOT_OK(in.Get(&sizes[static_cast<size_t>(c)]));
  std::array<double, kDim> scale_mean{}, scale_sd{};
  if (opened.version == kPartitionVersionNoSnapshot) {
    for (int j = 0; j < kDim; ++j) {
      scale_mean[static_cast<size_t>(j)] = standardizer.mean(j);
      scale_sd[static_cast<size_t>(j)] = ScaleOf(standardizer, j);
    }
  } else {
    std::vector<double> mean, sd;
    mean.reserve(kDim);
    sd.reserve(kDim);
    CRM_RETURN_NOT_OK(in.GetArray(&mean, kDim));
    CRM_RETURN_NOT_OK(in.GetArray(&sd, kDim));
    if (mean.size() != kDim || sd.size() != kDim) return Mismatch("bad scale snapshot");
    for (size_t j = 0; j < kDim; ++j) {
      if (!std::isfinite(mean[j]) || !std::isfinite(sd[j]) || sd[j] < 0.0) {
        return Mismatch("bad scale snapshot");
      }
      scale_mean[j] = mean[j];
      scale_sd[j] = sd[j];
    }
  }
  CRM_RETURN_NOT_OK(in.ExpectEnd());
  // Written with another re-seeding setting (version 1: none): the
  // configured one applies from now on.
  kmeans.set_dead_after(KMeansOptions(options_).dead_after);
  // The sizes count every customer of the partition, in memory or not (a
  // restore decodes none up front), so they are not checked against slots_.
  standardizer_ = std::move(standardizer);
  kmeans_ = std::move(kmeans);
  segment_sizes_ = sizes;
  scale_mean_ = scale_mean;
  scale_sd_ = scale_sd;
  if (use_global_) ScaleGlobalCentres();
  return Status::OK();
}

}  // namespace crmstream::scoring
