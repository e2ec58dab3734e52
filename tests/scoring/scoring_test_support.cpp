#include "scoring/scoring_test_support.h"

#include <catch2/catch.hpp>
#include <span>
#include <utility>

#include "crmstream/common/hash.h"
#include "support/require_ok.h"

namespace crmstream::scoring::testing {

CustomerModelsOptions AlertingOptions() {
  CustomerModelsOptions o;
  // Alerts start once the churn model has this many labels.
  o.churn.warm_after_examples = 100;
  o.churn.alerts.enter_probability = 0.25;
  o.churn.alerts.exit_probability = 0.15;
  o.churn.alerts.high_probability = 0.4;
  o.churn.alerts.critical_probability = 0.6;
  // A gate that opens on the first few matured labels of a short stream
  // (tests of the gate itself set their own).
  o.churn.gate.min_positive_labels = 3;
  o.churn.gate.min_negative_labels = 20;
  o.churn.gate.auc_floor = 0.5;
  o.churn.calibration.min_labels = 50;
  o.churn.calibration.refit_every = 32;
  return o;
}

ingest::Event HandEvent(std::string_view event_id, std::string_view customer, int64_t ts,
                        ingest::EventType type, double amount) {
  ingest::Event e;
  e.event_id = event_id;
  e.customer_id = customer;
  e.timestamp_ms = ts;
  e.type = type;
  e.amount = amount;
  e.has_amount = ingest::EventTypeHasAmount(type);
  return e;
}

Partition::Partition(const CustomerModelsOptions& options,
                     const MinuteMetricsOptions& minute_options)
    : store(std::move(features::FeatureStore::Create(features::FeatureSpec{})).value()),
      models(std::move(CustomerModels::Create(options, store.get())).value()),
      minutes(std::move(MinuteMetricsMonitor::Create(minute_options)).value()) {}

void Partition::AttachLabels(LabelIndex index) {
  labels = std::make_unique<LabelIndexSource>(std::move(index), store.get());
  models.SetSavedLabels(labels.get());
}

void SaveLabel(const Partition& p, std::string_view id, LabelIndex* index) {
  std::erase_if(*index, [&](const auto& entry) { return std::get<2>(entry.first) == id; });
  const std::optional<int64_t> ms = p.PendingSnapshotMs(id);
  if (!ms) return;
  const std::span<const float> snapshot = p.models.churn().PendingSnapshot(p.Customer(id).slot());
  REQUIRE(!snapshot.empty());
  const int64_t horizon_ms = int64_t{p.models.churn().options().horizon_days} * 86'400'000;
  index->emplace(std::tuple(*ms + horizon_ms, Hash64(id), std::string(id)),
                 std::vector<float>(snapshot.begin(), snapshot.end()));
}

bool LabelIndexSource::NextSaved(const SavedLabel* after, SavedLabel* out) {
  auto it =
      after == nullptr
          ? index_.begin()
          : index_.upper_bound(std::tuple(after->deadline_ms, after->id_hash, after->customer_id));
  if (it == index_.end()) return false;
  out->deadline_ms = std::get<0>(it->first);
  out->id_hash = std::get<1>(it->first);
  out->customer_id = std::get<2>(it->first);
  out->snapshot = it->second;
  return true;
}

std::optional<uint32_t> LabelIndexSource::SlotOf(std::string_view customer_id) {
  const features::CustomerFeatures* f = store_->Find(customer_id);
  if (f == nullptr) return std::nullopt;
  return f->slot();
}

bool LabelIndexSource::ReadSaved(SavedLabel* label) {
  auto it = index_.find(std::tuple(label->deadline_ms, label->id_hash, label->customer_id));
  if (it == index_.end()) return false;
  label->snapshot = it->second;
  return true;
}

void Partition::Process(const ingest::Event& e) {
  const features::CustomerFeatures& f = store->Update(e);
  minutes.OnEvent(e);
  models.OnEvent(e, f);
}

void Partition::RefreshPending() {
  store->ForEachPending([&](std::string_view, const features::CustomerFeatures& f) {
    static_cast<void>(models.Refresh(f));
  });
  models.EndFlush();
  store->ClearPending();
}

features::CustomerFeatures Partition::Customer(std::string_view id) const {
  const features::CustomerFeatures* f = store->Find(id);
  REQUIRE(f != nullptr);
  return *f;
}

std::optional<int64_t> Partition::PendingSnapshotMs(std::string_view id) const {
  return models.churn().PendingSnapshotMs(Customer(id).slot());
}

BlobsByName PartitionBlobs(const Partition& p) {
  BlobsByName out;
  for (std::string_view name : CustomerModels::kPartitionStateNames) {
    REQUIRE_OK(p.models.EncodePartition(name, &out[std::string(name)]));
  }
  p.minutes.Encode(&out[std::string(kMinuteMetricsBlob)]);
  return out;
}

Status DecodePartitionBlob(std::string_view name, std::string_view blob, Partition* p) {
  return name == kMinuteMetricsBlob ? p->minutes.Decode(blob)
                                    : p->models.DecodePartition(name, blob);
}

Status DecodePartitionBlobs(const BlobsByName& blobs, Partition* p) {
  for (const auto& [name, blob] : blobs) CRM_RETURN_NOT_OK(DecodePartitionBlob(name, blob, p));
  return Status::OK();
}

EventSource::EventSource(const generator::WorldOptions& wo)
    : gen_(std::move(generator::WorldGenerator::Create(wo)).value()) {}

const ingest::Event& EventSource::Next() {
  for (;;) {
    const int64_t t = gen_->Next(&key_, &value_);
    if (!decoder_.Decode(value_, t, &event_).rejected()) return event_;
  }
}

std::unique_ptr<Partition> SmallGeneratedPartition(const CustomerModelsOptions& options) {
  generator::WorldOptions wo;
  wo.seed = 5;
  wo.customers = 300;
  EventSource source(wo);
  auto p = std::make_unique<Partition>(options);
  for (int n = 0; n < 30'000; ++n) p->Process(source.Next());
  p->RefreshPending();
  return p;
}

}  // namespace crmstream::scoring::testing
