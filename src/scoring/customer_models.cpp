#include "crmstream/scoring/customer_models.h"

#include <algorithm>
#include <utility>

#include "crmstream/common/binary_io.h"
#include "crmstream/common/hash.h"

namespace crmstream::scoring {

using json_literals::operator""_key;

namespace {

// The customer record (BlobKind::kCustomerModelState): the churn, segment
// and behaviour sections (each versioned and length-prefixed by its part),
// under one checksum. Version 1 was the pre-split record of state format 1.
constexpr uint16_t kRecordVersion = 2;

}  // namespace

Status CustomerModelsOptions::Validate() const {
  CRM_RETURN_NOT_OK(churn.Validate());
  CRM_RETURN_NOT_OK(segments.Validate());
  return behaviour.Validate();
}

Result<CustomerModels> CustomerModels::Create(const CustomerModelsOptions& options,
                                              const features::FeatureStore* store) {
  const features::FeatureSpec& spec = store->spec();
  CRM_ASSIGN_OR_RETURN(ChurnValueModel churn, ChurnValueModel::Create(options.churn, spec));
  CRM_ASSIGN_OR_RETURN(CustomerSegmenter segmenter,
                       CustomerSegmenter::Create(options.segments, spec));
  CRM_ASSIGN_OR_RETURN(BehaviourAnomalyDetector behaviour,
                       BehaviourAnomalyDetector::Create(options.behaviour, spec));
  return CustomerModels(options, store, std::move(churn), std::move(segmenter),
                        std::move(behaviour));
}

CustomerModels::CustomerModels(const CustomerModelsOptions& options,
                               const features::FeatureStore* store, ChurnValueModel churn,
                               CustomerSegmenter segmenter, BehaviourAnomalyDetector behaviour)
    : options_(options),
      store_(store),
      churn_(std::move(churn)),
      segmenter_(std::move(segmenter)),
      behaviour_(std::move(behaviour)) {}

void CustomerModels::Reserve(size_t slots) {
  if (slots <= known_.size()) return;
  // Geometric growth, but never past the cache's capacity while within it:
  // a full cache holds little spare room (up to half of every array
  // otherwise). Past it (the processor reserves one slot ahead of a full
  // cache; a cache with nothing to evict grows), steps of 1/32 of it.
  size_t target = std::max(slots, known_.size() * 2);
  if (slot_limit_ != 0 && slots <= slot_limit_) target = std::min(target, slot_limit_);
  if (slot_limit_ != 0 && slots > slot_limit_) {
    target = std::max(slots, known_.size() + std::max<size_t>(64, slot_limit_ / 32));
  }
  // known_ last: its size says every part has grown (a part that grew before
  // another threw is merely larger).
  churn_.GrowTo(target);
  segmenter_.GrowTo(target);
  behaviour_.GrowTo(target);
  unsaved_.Reserve(target);
  known_.reserve(target);
  known_.resize(target, false);
}

CustomerModels::CustomerMemory CustomerModels::customer_memory() const {
  CustomerMemory m;
  m.churn_slots = churn_.SlotMemoryBytes();
  m.pending_snapshots = churn_.PendingSnapshotBytes();
  m.deadlines = churn_.DeadlineMemoryBytes();
  m.segments = segmenter_.CustomerMemoryBytes();
  m.behaviour = behaviour_.CustomerMemoryBytes();
  m.tracking = known_.capacity() / 8 + unsaved_.MemoryBytes();  // a bit per slot
  return m;
}

size_t CustomerModels::BytesPerSlot() const {
  // A slot's entries in every array, its known and unsaved flags and its
  // place in the unsaved list. A pending example's snapshot and deadline are
  // in memory only until the checkpoint after it was taken.
  return ChurnValueModel::kSlotBytes + CustomerSegmenter::kSlotBytes +
         BehaviourAnomalyDetector::kSlotBytes + sizeof(uint32_t);
}

void CustomerModels::Know(uint32_t slot) {
  Reserve(size_t{slot} + 1);
  if (!known_[slot]) {
    known_[slot] = true;
    ++customer_count_;
  }
}

void CustomerModels::OnEvent(const ingest::Event& event, const features::CustomerFeatures& f) {
  Know(f.slot());
  churn_.OnEvent(event, f, &unsaved_);
  if (event.type == ingest::EventType::kAccountClosed) return;
  if (options_.segments_enabled) segmenter_.OnEvent(f, &unsaved_);
  if (options_.behaviour_enabled) behaviour_.OnEvent(f, &unsaved_);
}

const CustomerRefresh& CustomerModels::Refresh(const features::CustomerFeatures& f) {
  CustomerRefresh& r = refresh_;
  r = CustomerRefresh{};
  const uint32_t s = f.slot();
  if (!Knows(s)) return r;
  r.known = true;
  r.as_of_ms = f.as_of_ms();
  churn_.Refresh(f, &unsaved_, &r.churn);
  if (options_.segments_enabled) segmenter_.Refresh(s, &unsaved_, &r.segment);
  if (options_.behaviour_enabled) behaviour_.Refresh(f, &unsaved_, &r.anomaly);
  return r;
}

void CustomerModels::WriteCustomerScores(const features::CustomerFeatures& f, JsonWriter* w) const {
  const uint32_t s = f.slot();
  if (!Knows(s)) return;
  // Until the gate opens nobody is "at risk": the probability is null and
  // the record says why (the same partition-wide figures in every record,
  // so a consumer of the topic alone can show the warm-up).
  w->Key("churn_probability"_key);
  if (churn_.gate_open()) {
    w->Double(churn_.churn_probability(s));
  } else {
    w->Null();
  }
  const alerts::ChurnGateInputs gate = churn_.gate_inputs();
  w->Key("churn_model"_key);
  w->BeginObject();
  w->Field("state"_key, alerts::ChurnGateStateName(churn_.gate_state()));
  w->Field("labels"_key, gate.positives + gate.negatives);
  w->Field("closings"_key, gate.positives);
  w->Field("auc"_key, gate.auc);
  w->EndObject();
  w->Field("predicted_value_30d"_key, churn_.predicted_value(s));
  w->Key("segment"_key);
  if (const int segment = segmenter_.segment(s); segment < 0 || !options_.segments_enabled) {
    w->Null();
  } else {
    w->Int(segment);
  }
  w->Key("anomaly_score"_key);
  if (options_.behaviour_enabled) {
    w->Double(behaviour_.score(s));
  } else {
    w->Null();
  }
}

std::optional<CustomerScores> CustomerModels::Scores(const features::CustomerFeatures& f) const {
  const uint32_t s = f.slot();
  if (!Knows(s)) return std::nullopt;
  CustomerScores out;
  out.churn_probability = churn_.churn_probability(s);
  out.churn_gate_open = churn_.gate_open();
  out.predicted_value = churn_.predicted_value(s);
  out.segment = segmenter_.segment(s);
  out.anomaly_score = behaviour_.score(s);
  out.closed = churn_.closed(s);
  return out;
}

Status CustomerModels::EncodeCustomer(const features::CustomerFeatures& f, std::string* out) const {
  const uint32_t s = f.slot();
  if (!Knows(s)) {
    return Status::NotFound("the models do not know customer " + std::string(f.customer_id()));
  }
  std::string& payload = record_scratch_;
  payload.clear();
  churn_.AppendCustomer(s, &payload);
  segmenter_.AppendCustomer(s, &payload);
  behaviour_.AppendCustomer(s, &payload);
  *out = SealBlob(BlobKind::kCustomerModelState, kRecordVersion, payload);
  return Status::OK();
}

Status CustomerModels::DecodeCustomer(const features::CustomerFeatures& f,
                                      std::string_view record) {
  CRM_ASSIGN_OR_RETURN(const std::string_view payload,
                       OpenBlobPayload(record, BlobKind::kCustomerModelState, kRecordVersion));
  BinaryReader in(payload);
  // Every section is read before any is installed: a bad one changes nothing.
  CRM_ASSIGN_OR_RETURN(ChurnValueModel::DecodedCustomer churn, churn_.ReadCustomer(&in));
  CRM_ASSIGN_OR_RETURN(const CustomerSegmenter::DecodedCustomer segment,
                       segmenter_.ReadCustomer(&in));
  CRM_ASSIGN_OR_RETURN(const BehaviourAnomalyDetector::DecodedCustomer behaviour,
                       behaviour_.ReadCustomer(&in));
  CRM_RETURN_NOT_OK(in.ExpectEnd());
  const uint32_t s = f.slot();
  Know(s);
  churn_.InstallCustomer(s, std::move(churn));
  segmenter_.InstallCustomer(s, segment);
  behaviour_.InstallCustomer(s, behaviour);
  return Status::OK();
}

Status CustomerModels::EncodePartition(std::string_view name, std::string* out) const {
  if (name == kPartitionStateNames[0]) {
    churn_.EncodePartition(out);
  } else if (name == kPartitionStateNames[1]) {
    segmenter_.EncodePartition(out);
  } else if (name == kPartitionStateNames[2]) {
    behaviour_.EncodePartition(out);
  } else {
    return Status::InvalidArgument("no partition model state named '" + std::string(name) + "'");
  }
  return Status::OK();
}

Status CustomerModels::DecodePartition(std::string_view name, std::string_view blob) {
  if (name == kPartitionStateNames[0]) return churn_.DecodePartition(blob);
  if (name == kPartitionStateNames[1]) return segmenter_.DecodePartition(blob);
  if (name == kPartitionStateNames[2]) return behaviour_.DecodePartition(blob);
  return Status::InvalidArgument("no partition model state named '" + std::string(name) + "'");
}

Status CustomerModels::UseGlobalModels(const ModelStatistics* merged) {
  if (merged == nullptr) {
    CRM_RETURN_NOT_OK(churn_.UseGlobalModels(std::nullopt));
    CRM_RETURN_NOT_OK(segmenter_.UseGlobalCentres(nullptr, 0));
    global_parts_ = 0;
    return Status::OK();
  }
  if (!merged->churn_features || !merged->spend_features || !merged->value) {
    return Status::InvalidArgument(
        "global models: the merged statistics hold no churn features, "
        "spend standardisation or spend regression");
  }
  // Checked before anything changes: a refusal leaves the scoring as it was.
  if (merged->segments.k != 0 && merged->segments.k != options_.segments.k) {
    return Status::InvalidArgument("global models: segment count k " +
                                   std::to_string(merged->segments.k) + ", this partition's " +
                                   std::to_string(options_.segments.k));
  }
  CRM_RETURN_NOT_OK(churn_.UseGlobalModels(ChurnValueModel::GlobalModels{
      *merged->churn_features, *merged->spend_features, *merged->value, merged->churn}));
  CRM_RETURN_NOT_OK(segmenter_.UseGlobalCentres(&merged->segments.centres, merged->segments.k));
  global_parts_ = merged->parts;
  return Status::OK();
}

void CustomerModels::ClearUnsaved() {
  for (uint32_t s : unsaved_.slots()) churn_.MarkIndexSaved(s);
  unsaved_.Clear();
  unsaved_taken_ = 0;
}

void CustomerModels::Forget(uint32_t slot) {
  if (!Knows(slot)) return;
  known_[slot] = false;
  --customer_count_;
  churn_.ForgetCustomer(slot);
  segmenter_.ForgetCustomer(slot);
  behaviour_.ForgetCustomer(slot);
}

CustomerModels::Quality CustomerModels::quality() const {
  Quality q;
  static_cast<ChurnValueModel::Quality&>(q) = churn_.quality();
  static_cast<CustomerSegmenter::Quality&>(q) = segmenter_.quality();
  static_cast<BehaviourAnomalyDetector::Quality&>(q) = behaviour_.quality();
  q.watermark_ms = churn_.watermark_ms();
  return q;
}

}  // namespace crmstream::scoring
