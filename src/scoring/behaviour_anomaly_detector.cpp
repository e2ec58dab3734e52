#include "crmstream/scoring/behaviour_anomaly_detector.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "crmstream/common/binary_io.h"
#include "scoring/scoring_internal.h"

namespace crmstream::scoring {
namespace {

constexpr int kDim = static_cast<int>(kBehaviourNames.size());
constexpr uint16_t kCustomerVersion = 1;
constexpr uint16_t kPartitionVersion = 1;
constexpr uint8_t kActiveBit = 1;

size_t ShortestWindow(const features::FeatureSpec& spec) {
  return static_cast<size_t>(std::min_element(spec.window_days.begin(), spec.window_days.end()) -
                             spec.window_days.begin());
}

}  // namespace

Status BehaviourOptions::Validate() const {
  if (!(alert_level > 0 && alert_level <= 1)) {
    return Status::InvalidArgument("BehaviourOptions.alert_level must be in (0, 1], got " +
                                   std::to_string(alert_level));
  }
  return Status::OK();
}

Result<BehaviourAnomalyDetector> BehaviourAnomalyDetector::Create(
    const BehaviourOptions& options, const features::FeatureSpec& spec) {
  CRM_RETURN_NOT_OK(options.Validate());
  CRM_RETURN_NOT_OK(spec.Validate().WithContext("FeatureSpec"));
  models::MultivariateAnomalyDetector::Options o;
  o.dim = kDim;
  CRM_ASSIGN_OR_RETURN(models::MultivariateAnomalyDetector detector,
                       models::MultivariateAnomalyDetector::Create(o));
  return BehaviourAnomalyDetector(options, spec, std::move(detector));
}

BehaviourAnomalyDetector::BehaviourAnomalyDetector(const BehaviourOptions& options,
                                                   const features::FeatureSpec& spec,
                                                   models::MultivariateAnomalyDetector detector)
    : options_(options), shortest_window_(ShortestWindow(spec)), detector_(std::move(detector)) {}

void BehaviourAnomalyDetector::GrowTo(size_t slots) {
  if (slots > slots_.size()) slots_.resize(slots);
}

void BehaviourAnomalyDetector::OnEvent(const features::CustomerFeatures& f, UnsavedSlots* unsaved) {
  const uint32_t s = f.slot();
  GrowTo(size_t{s} + 1);
  unsaved->Mark(s);
  const features::WindowAggregates w = f.window(shortest_window_);
  point_[0] = std::log1p(static_cast<double>(w.refunds));
  point_[1] = std::log1p(static_cast<double>(w.support_tickets) + w.complaints);
  point_[2] = std::log1p(static_cast<double>(w.logins));
  point_[3] = std::log1p(static_cast<double>(w.purchases));
  Slot& slot = slots_[s];
  slot.score = detector_.Score(point_);
  ++scored_;
  if (slot.score >= options_.alert_level) ++anomalies_;
}

void BehaviourAnomalyDetector::Refresh(const features::CustomerFeatures& f, UnsavedSlots* unsaved,
                                       AnomalyCrossing* out) {
  AnomalyCrossing& r = *out;
  r = AnomalyCrossing{};
  const uint32_t s = f.slot();
  Slot& slot = slots_[s];
  r.score = slot.score;
  if (slot.score >= options_.alert_level) {
    if (!slot.active) {
      slot.active = true;
      unsaved->Mark(s);
      r.crossed = true;
      const features::WindowAggregates w = f.window(shortest_window_);
      r.observed = {static_cast<double>(w.refunds),
                    static_cast<double>(w.support_tickets) + w.complaints,
                    static_cast<double>(w.logins), static_cast<double>(w.purchases)};
      // The detector learns log1p counts: its mean maps back to the
      // population's typical (geometric-mean-like) counts.
      const auto mean = detector_.mean();
      for (size_t i = 0; i < r.expected.size(); ++i) r.expected[i] = std::expm1(mean[i]);
    }
  } else if (slot.active) {
    slot.active = false;
    unsaved->Mark(s);
  }
}

BehaviourAnomalyDetector::Quality BehaviourAnomalyDetector::quality() const {
  Quality q;
  q.anomaly_rate =
      scored_ == 0 ? 0.0 : static_cast<double>(anomalies_) / static_cast<double>(scored_);
  q.anomaly_scored = scored_;
  return q;
}

void BehaviourAnomalyDetector::AppendCustomer(uint32_t s, std::string* record) const {
  const Slot& slot = slots_[s];
  internal::SectionWriter section(record, kCustomerVersion);
  BinaryWriter& w = section.writer();
  w.Put<uint8_t>(slot.active ? kActiveBit : 0);
  w.Put<double>(slot.score);
}

Result<BehaviourAnomalyDetector::DecodedCustomer> BehaviourAnomalyDetector::ReadCustomer(
    BinaryReader* record) const {
  std::string payload;
  CRM_RETURN_NOT_OK(
      internal::ReadSection(record, kCustomerVersion, "behaviour customer state", &payload));
  BinaryReader in(payload);
  DecodedCustomer decoded;
  uint8_t bits = 0;
  CRM_RETURN_NOT_OK(in.Get(&bits));
  if ((bits & ~kActiveBit) != 0) return Status::Corruption("behaviour customer state: bad flags");
  decoded.slot_.active = (bits & kActiveBit) != 0;
  CRM_RETURN_NOT_OK(in.Get(&decoded.slot_.score));
  CRM_RETURN_NOT_OK(in.ExpectEnd());
  return decoded;
}

void BehaviourAnomalyDetector::InstallCustomer(uint32_t s, const DecodedCustomer& decoded) {
  GrowTo(size_t{s} + 1);
  slots_[s] = decoded.slot_;
}

void BehaviourAnomalyDetector::ForgetCustomer(uint32_t s) {
  if (s < slots_.size()) slots_[s] = Slot{};
}

void BehaviourAnomalyDetector::EncodePartition(std::string* out) const {
  std::string payload;
  BinaryWriter w(&payload);
  w.PutBytes(detector_.Serialize());
  w.Put<uint64_t>(scored_);
  w.Put<uint64_t>(anomalies_);
  *out = SealBlob(BlobKind::kBehaviourPartitionState, kPartitionVersion, payload);
}

Status BehaviourAnomalyDetector::DecodePartition(std::string_view blob) {
  CRM_ASSIGN_OR_RETURN(
      const std::string_view payload,
      OpenBlobPayload(blob, BlobKind::kBehaviourPartitionState, kPartitionVersion));
  BinaryReader in(payload);
  std::string scratch;
  CRM_ASSIGN_OR_RETURN(models::MultivariateAnomalyDetector detector,
                       internal::ReadNested<models::MultivariateAnomalyDetector>(in, &scratch));
  if (detector.options().dim != kDim) {
    return Status::Corruption("behaviour partition state: dimension differs");
  }
  uint64_t scored = 0, anomalies = 0;
  CRM_RETURN_NOT_OK(in.Get(&scored));
  CRM_RETURN_NOT_OK(in.Get(&anomalies));
  CRM_RETURN_NOT_OK(in.ExpectEnd());
  if (anomalies > scored) {
    return Status::Corruption("behaviour partition state: more anomalies than scores");
  }
  detector_ = std::move(detector);
  scored_ = scored;
  anomalies_ = anomalies;
  return Status::OK();
}

}  // namespace crmstream::scoring
