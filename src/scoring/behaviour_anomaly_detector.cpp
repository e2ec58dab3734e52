#include "crmstream/scoring/behaviour_anomaly_detector.h"

#include <algorithm>
#include <array>
#include <climits>
#include <cmath>
#include <limits>
#include <utility>

#include "crmstream/common/binary_io.h"
#include "scoring/scoring_internal.h"

namespace crmstream::scoring {
namespace {

constexpr int kDim = static_cast<int>(kBehaviourNames.size());
// Version 2: rarity, the severity reported in the episode (customer) and
// the budget (partition). Customer version 3: reports are decided at the
// event, and one decided since the last flush waits in the record (version
// 2's "scored since the flush" bit is read and dropped: its reports were
// decided at the flush).
constexpr uint16_t kOldestCustomerVersion = 2;
constexpr uint16_t kCustomerVersion = 3;
constexpr uint16_t kPartitionVersion = 2;
constexpr uint8_t kActiveBit = 1;
constexpr uint8_t kV2FreshBit = 2;
// Version 3, bits 1-2: 0, or 1 + the severity of the report waiting for
// the next flush; bits 3-4: 0, or 1 + the highest severity the budget
// withheld in the episode.
constexpr int kPendingShift = 1;
constexpr uint8_t kPendingMask = 3 << kPendingShift;
constexpr int kWithheldShift = 3;
constexpr uint8_t kWithheldMask = 3 << kWithheldShift;
static_assert(alerts::kSeverityCount <= 3, "a severity takes two bits");
// Share of a day's budget that must be left for a report of each severity
// (warning, high, critical): the rest is kept for the more severe.
constexpr std::array<double, alerts::kSeverityCount> kReserveShare = {0.5, 0.25, 0.0};

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
  double previous = 0.0;
  for (size_t i = 0; i < severity_rarity.size(); ++i) {
    if (!(severity_rarity[i] > previous) || !std::isfinite(severity_rarity[i])) {
      return Status::InvalidArgument("BehaviourOptions.severity_rarity[" + std::to_string(i) +
                                     "] must be finite, > 0 and above the previous level, got " +
                                     std::to_string(severity_rarity[i]));
    }
    previous = severity_rarity[i];
  }
  if (!(budget_per_1000_per_day > 0) || !std::isfinite(budget_per_1000_per_day)) {
    return Status::InvalidArgument("BehaviourOptions.budget_per_1000_per_day must be > 0, got " +
                                   std::to_string(budget_per_1000_per_day));
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
  static_assert(sizeof(Slot) == 12);
  if (slots <= slots_.size()) return;
  slots_.reserve(slots);  // exactly: CustomerModels chooses the growth
  slots_.resize(slots);
}

void BehaviourAnomalyDetector::OnEvent(const features::CustomerFeatures& f, UnsavedSlots* unsaved) {
  const uint32_t s = f.slot();
  if (s >= slots_.size()) GrowTo(std::max(size_t{s} + 1, 2 * slots_.size()));  // amortised
  unsaved->Mark(s);
  const features::WindowAggregates w = f.window(shortest_window_);
  point_[0] = std::log1p(static_cast<double>(w.refunds));
  point_[1] = std::log1p(static_cast<double>(w.support_tickets) + w.complaints);
  point_[2] = std::log1p(static_cast<double>(w.logins));
  point_[3] = std::log1p(static_cast<double>(w.purchases));
  Slot& slot = slots_[s];
  if (!slot.seen) {
    slot.seen = true;
    ++customers_;
  }
  const double score = detector_.Score(point_);
  // The rarity matters only for an anomaly; the tail is computed then.
  const double rarity = score >= options_.alert_level
                            ? models::ChiSquareRarity(detector_.last_squared_distance(), kDim)
                            : 0.0;
  slot.score = static_cast<float>(score);
  slot.rarity = static_cast<float>(std::min<double>(rarity, std::numeric_limits<float>::max()));
  ++scored_;
  if (score < options_.alert_level) {
    slot.active = false;  // the episode, if any, ends
    slot.reported = 0;
    slot.withheld = 0;
    return;
  }
  ++anomalies_;
  slot.active = true;
  // Decided here, at the event, in event time: which events a flush
  // gathers changes neither the episodes nor the budget.
  const int severity = SeverityOf(rarity);
  if (severity < 0 || severity + 1 <= slot.reported) return;
  // The budget is for incidents: an episode's first report draws on it, its
  // escalations (at most two more reports) do not. Decided per event, a
  // burst is seen as it grows, and charging each step would spend up to
  // three tokens on one incident.
  if (slot.reported == 0 && !TakeBudget(severity, f.as_of_ms())) {
    // Counted once per severity per episode, as a report would be.
    if (severity + 1 > slot.withheld) {
      slot.withheld = static_cast<uint8_t>(severity + 1);
      ++withheld_;
    }
    return;
  }
  // Its entry first (may allocate, amortised: reports are rare), so a
  // throw changes nothing.
  PendingReport* report = slot.pending != 0 ? ReportOf(s) : nullptr;
  if (report == nullptr) {
    reports_.push_back({s, 0.0f, 0.0f});
    report = &reports_.back();
  }
  ++reported_;
  slot.reported = static_cast<uint8_t>(severity + 1) & 7;
  slot.pending = slot.reported;
  report->score = slot.score;
  report->rarity = slot.rarity;
}

BehaviourAnomalyDetector::PendingReport* BehaviourAnomalyDetector::ReportOf(uint32_t s) {
  for (PendingReport& r : reports_) {
    if (r.slot == s) return &r;
  }
  return nullptr;
}

const BehaviourAnomalyDetector::PendingReport* BehaviourAnomalyDetector::ReportOf(
    uint32_t s) const {
  for (const PendingReport& r : reports_) {
    if (r.slot == s) return &r;
  }
  return nullptr;
}

void BehaviourAnomalyDetector::DropReport(uint32_t s) {
  if (PendingReport* r = ReportOf(s); r != nullptr) {
    *r = reports_.back();
    reports_.pop_back();
  }
}

int BehaviourAnomalyDetector::SeverityOf(double rarity) const {
  int severity = -1;
  for (size_t i = 0; i < options_.severity_rarity.size(); ++i) {
    if (rarity >= options_.severity_rarity[i]) severity = static_cast<int>(i);
  }
  return severity;
}

bool BehaviourAnomalyDetector::TakeBudget(int severity, int64_t now_ms) {
  const double per_day = options_.budget_per_1000_per_day *
                         static_cast<double>(std::max<uint64_t>(customers_, 1)) / 1000.0;
  const double capacity = std::max(1.0, per_day);
  if (budget_clock_ms_ == INT64_MIN) {
    tokens_ = capacity;  // a full day's budget at the first report
    budget_clock_ms_ = now_ms;
  } else if (now_ms > budget_clock_ms_) {
    tokens_ =
        std::min(capacity, tokens_ + per_day * static_cast<double>(now_ms - budget_clock_ms_) /
                                         static_cast<double>(internal::kMillisPerDay));
    budget_clock_ms_ = now_ms;
  }
  const double needed = std::max(1.0, kReserveShare[static_cast<size_t>(severity)] * capacity);
  if (tokens_ < needed) return false;
  tokens_ -= 1.0;
  return true;
}

void BehaviourAnomalyDetector::Refresh(const features::CustomerFeatures& f, UnsavedSlots* unsaved,
                                       AnomalyCrossing* out) {
  AnomalyCrossing& r = *out;
  r = AnomalyCrossing{};
  const uint32_t s = f.slot();
  Slot& slot = slots_[s];
  r.score = slot.score;
  r.rarity = slot.rarity;
  if (slot.pending == 0) return;
  // The latest report since the last flush, with the score and rarity that
  // decided it (an escalation within one flush is published once, at its
  // highest severity).
  const int severity = slot.pending - 1;
  if (const PendingReport* report = ReportOf(s); report != nullptr) {
    r.score = report->score;
    r.rarity = report->rarity;
  }
  DropReport(s);
  slot.pending = 0;
  unsaved->Mark(s);
  r.crossed = true;
  r.severity = static_cast<alerts::Severity>(severity);
  const features::WindowAggregates w = f.window(shortest_window_);
  r.observed = {static_cast<double>(w.refunds),
                static_cast<double>(w.support_tickets) + w.complaints,
                static_cast<double>(w.logins), static_cast<double>(w.purchases)};
  // The detector learns log1p counts: its mean maps back to the
  // population's typical (geometric-mean-like) counts.
  const auto mean = detector_.mean();
  for (size_t i = 0; i < r.expected.size(); ++i) r.expected[i] = std::expm1(mean[i]);
}

BehaviourAnomalyDetector::Quality BehaviourAnomalyDetector::quality() const {
  Quality q;
  q.anomaly_rate =
      scored_ == 0 ? 0.0 : static_cast<double>(anomalies_) / static_cast<double>(scored_);
  q.anomaly_scored = scored_;
  q.anomalies_reported = reported_;
  q.anomalies_withheld = withheld_;
  return q;
}

void BehaviourAnomalyDetector::AppendCustomer(uint32_t s, std::string* record) const {
  const Slot& slot = slots_[s];
  internal::SectionWriter section(record, kCustomerVersion);
  BinaryWriter& w = section.writer();
  w.Put<uint8_t>(static_cast<uint8_t>((slot.active ? kActiveBit : 0) |
                                      (slot.pending << kPendingShift) |
                                      (slot.withheld << kWithheldShift)));
  w.Put<uint8_t>(slot.reported);
  w.Put<double>(slot.score);
  w.Put<double>(slot.rarity);
  if (slot.pending != 0) {
    const PendingReport* report = ReportOf(s);
    w.Put<double>(report != nullptr ? report->score : 0.0);
    w.Put<double>(report != nullptr ? report->rarity : 0.0);
  }
}

Result<BehaviourAnomalyDetector::DecodedCustomer> BehaviourAnomalyDetector::ReadCustomer(
    BinaryReader* record) const {
  std::string payload;
  uint16_t version = 0;
  CRM_RETURN_NOT_OK(internal::ReadSection(record, kOldestCustomerVersion, kCustomerVersion,
                                          "behaviour customer state", &payload, &version));
  BinaryReader in(payload);
  DecodedCustomer decoded;
  Slot& slot = decoded.slot_;
  uint8_t bits = 0;
  CRM_RETURN_NOT_OK(in.Get(&bits));
  const uint8_t known =
      version == 2 ? kActiveBit | kV2FreshBit : kActiveBit | kPendingMask | kWithheldMask;
  if ((bits & ~known) != 0) return Status::Corruption("behaviour customer state: bad flags");
  slot.active = (bits & kActiveBit) != 0;
  uint8_t pending = 0;
  if (version > 2) {
    pending = static_cast<uint8_t>((bits & kPendingMask) >> kPendingShift);
    slot.withheld = static_cast<uint8_t>((bits & kWithheldMask) >> kWithheldShift);
  }
  slot.seen = true;
  uint8_t reported = 0;
  CRM_RETURN_NOT_OK(in.Get(&reported));
  if (reported > alerts::kSeverityCount || pending > alerts::kSeverityCount ||
      slot.withheld > alerts::kSeverityCount ||
      ((reported != 0 || slot.withheld != 0) && !slot.active)) {
    return Status::Corruption("behaviour customer state: bad reported severity");
  }
  // Kept as floats; the record holds them as doubles.
  double score = 0.0, rarity = 0.0, report_score = 0.0, report_rarity = 0.0;
  CRM_RETURN_NOT_OK(in.Get(&score));
  CRM_RETURN_NOT_OK(in.Get(&rarity));
  slot.reported = reported & 7;  // checked above: fits the 3-bit field
  slot.pending = pending & 7;
  if (slot.pending != 0) {
    CRM_RETURN_NOT_OK(in.Get(&report_score));
    CRM_RETURN_NOT_OK(in.Get(&report_rarity));
  }
  constexpr double kMaxRarity = std::numeric_limits<float>::max();
  if (!(score >= 0 && score <= 1) || !(rarity >= 0 && rarity <= kMaxRarity) ||
      !(report_score >= 0 && report_score <= 1) ||
      !(report_rarity >= 0 && report_rarity <= kMaxRarity)) {
    return Status::Corruption("behaviour customer state: score or rarity out of range");
  }
  slot.score = static_cast<float>(score);
  slot.rarity = static_cast<float>(rarity);
  decoded.report_ = {0, static_cast<float>(report_score), static_cast<float>(report_rarity)};
  CRM_RETURN_NOT_OK(in.ExpectEnd());
  return decoded;
}

void BehaviourAnomalyDetector::InstallCustomer(uint32_t s, const DecodedCustomer& decoded) {
  if (s >= slots_.size()) GrowTo(std::max(size_t{s} + 1, 2 * slots_.size()));  // amortised
  slots_[s] = decoded.slot_;
  DropReport(s);
  if (decoded.slot_.pending != 0) {
    reports_.push_back(decoded.report_);
    reports_.back().slot = s;
  }
}

void BehaviourAnomalyDetector::ForgetCustomer(uint32_t s) {
  if (s >= slots_.size()) return;
  if (slots_[s].pending != 0) DropReport(s);
  slots_[s] = Slot{};
}

void BehaviourAnomalyDetector::EncodePartition(std::string* out) const {
  std::string payload;
  BinaryWriter w(&payload);
  w.PutBytes(detector_.Serialize());
  w.Put<uint64_t>(scored_);
  w.Put<uint64_t>(anomalies_);
  w.Put<uint64_t>(reported_);
  w.Put<uint64_t>(withheld_);
  w.Put<uint64_t>(customers_);
  w.Put<double>(tokens_);
  w.Put<int64_t>(budget_clock_ms_);
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
  uint64_t scored = 0, anomalies = 0, reported = 0, withheld = 0, customers = 0;
  double tokens = 0;
  int64_t clock = 0;
  CRM_RETURN_NOT_OK(in.Get(&scored));
  CRM_RETURN_NOT_OK(in.Get(&anomalies));
  CRM_RETURN_NOT_OK(in.Get(&reported));
  CRM_RETURN_NOT_OK(in.Get(&withheld));
  CRM_RETURN_NOT_OK(in.Get(&customers));
  CRM_RETURN_NOT_OK(in.Get(&tokens));
  CRM_RETURN_NOT_OK(in.Get(&clock));
  CRM_RETURN_NOT_OK(in.ExpectEnd());
  if (anomalies > scored) {
    return Status::Corruption("behaviour partition state: more anomalies than scores");
  }
  if (!(tokens >= 0) || !std::isfinite(tokens)) {
    return Status::Corruption("behaviour partition state: bad budget");
  }
  detector_ = std::move(detector);
  scored_ = scored;
  anomalies_ = anomalies;
  reported_ = reported;
  withheld_ = withheld;
  customers_ = customers;
  tokens_ = tokens;
  budget_clock_ms_ = clock;
  return Status::OK();
}

}  // namespace crmstream::scoring
