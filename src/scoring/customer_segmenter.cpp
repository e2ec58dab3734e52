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
constexpr uint16_t kCustomerVersion = 1;
constexpr uint16_t kPartitionVersion = 1;

models::MiniBatchKMeansOptions KMeansOptions(const SegmenterOptions& o) {
  models::MiniBatchKMeansOptions k;
  k.k = o.k;
  k.dim = kDim;
  k.seed_buffer_size = std::max(256, 20 * o.k);
  k.random_seed = o.seed;
  return k;
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
  return Status::OK();
}

Result<CustomerSegmenter> CustomerSegmenter::Create(const SegmenterOptions& options,
                                                    const features::FeatureSpec& spec) {
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
  if (slots > slots_.size()) slots_.resize(slots);
}

void CustomerSegmenter::OnEvent(const features::CustomerFeatures& f, UnsavedSlots* unsaved) {
  const uint32_t s = f.slot();
  GrowTo(size_t{s} + 1);
  unsaved->Mark(s);
  Slot& slot = slots_[s];
  const auto day = static_cast<int32_t>(internal::FloorDiv(f.as_of_ms(), internal::kMillisPerDay));
  const double recency = f.recency_days();
  // Never purchased: at least as long ago as the customer has been known.
  point_[0] = std::log1p(std::max(0.0, std::isnan(recency) ? f.tenure_days() : recency));
  point_[1] = std::log1p(static_cast<double>(f.frequency()));
  point_[2] = std::log1p(std::max(0.0, f.monetary()));
  const features::WindowAggregates w = f.window(month_window_);
  point_[3] = std::log1p(static_cast<double>(w.purchases) + w.logins + w.page_views +
                         w.support_tickets + w.complaints + w.refunds);
  std::array<double, kDim> z{};
  standardizer_.Transform(point_, z);
  if (day != slot.last_kmeans_day) {
    // Once per customer and day: a busy customer must not outweigh the rest.
    slot.last_kmeans_day = day;
    standardizer_.Update(point_);
    static_cast<void>(kmeans_.Update(z));  // fails only on non-finite input
  }
  const int segment = kmeans_.Assign(z).cluster;
  if (segment != slot.segment) {
    if (slot.segment >= 0) --segment_sizes_[static_cast<size_t>(slot.segment)];
    if (segment >= 0) ++segment_sizes_[static_cast<size_t>(segment)];
    slot.segment = static_cast<int16_t>(segment);
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

void CustomerSegmenter::Centre(int c, std::span<double> out) const {
  const std::span<const double> centre = kmeans_.centroid(c);
  for (int j = 0; j < kDim; ++j) {
    const double sd = std::sqrt(standardizer_.variance(j));
    out[static_cast<size_t>(j)] = standardizer_.mean(j) + centre[static_cast<size_t>(j)] * sd;
  }
}

CustomerSegmenter::Quality CustomerSegmenter::quality() const {
  Quality q;
  q.kmeans_mean_squared_distance = kmeans_.quality().mean_squared_distance();
  q.kmeans_points = kmeans_.quality().scored_points;
  return q;
}

void CustomerSegmenter::AppendCustomer(uint32_t s, std::string* record) const {
  const Slot& slot = slots_[s];
  internal::SectionWriter section(record, kCustomerVersion);
  BinaryWriter& w = section.writer();
  w.Put<int32_t>(slot.last_kmeans_day);
  w.Put<int16_t>(slot.segment);
  w.Put<int16_t>(slot.published_segment);
}

Result<CustomerSegmenter::DecodedCustomer> CustomerSegmenter::ReadCustomer(
    BinaryReader* record) const {
  std::string payload;
  CRM_RETURN_NOT_OK(
      internal::ReadSection(record, kCustomerVersion, "segment customer state", &payload));
  BinaryReader in(payload);
  DecodedCustomer decoded;
  Slot& d = decoded.slot_;
  CRM_RETURN_NOT_OK(in.Get(&d.last_kmeans_day));
  CRM_RETURN_NOT_OK(in.Get(&d.segment));
  CRM_RETURN_NOT_OK(in.Get(&d.published_segment));
  CRM_RETURN_NOT_OK(in.ExpectEnd());
  if (d.segment < -1 || d.segment >= options_.k || d.published_segment < -1 ||
      d.published_segment >= options_.k) {
    return Status::InvalidArgument("segment customer state: segment outside [-1, k)");
  }
  return decoded;
}

void CustomerSegmenter::InstallCustomer(uint32_t s, const DecodedCustomer& decoded) {
  GrowTo(size_t{s} + 1);
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
  *out = SealBlob(BlobKind::kSegmentPartitionState, kPartitionVersion, payload);
}

Status CustomerSegmenter::DecodePartition(std::string_view blob) {
  CRM_ASSIGN_OR_RETURN(const std::string_view payload,
                       OpenBlobPayload(blob, BlobKind::kSegmentPartitionState, kPartitionVersion));
  BinaryReader in(payload);
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
  CRM_RETURN_NOT_OK(in.ExpectEnd());
  // The sizes count every customer of the partition, in memory or not (a
  // restore decodes none up front), so they are not checked against slots_.
  standardizer_ = std::move(standardizer);
  kmeans_ = std::move(kmeans);
  segment_sizes_ = sizes;
  return Status::OK();
}

}  // namespace crmstream::scoring
