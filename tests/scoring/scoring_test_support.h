// Fixtures shared by the scoring tests: a partition (feature store, models,
// minute metrics) fed as the event processor feeds it, and a generated
// event source.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "crmstream/features/feature_store.h"
#include "crmstream/generator/world_generator.h"
#include "crmstream/ingest/json_decoder.h"
#include "crmstream/scoring/customer_models.h"
#include "crmstream/scoring/minute_metrics_monitor.h"

namespace crmstream::scoring::testing {

// Lower alert levels, an earlier warm-up and a lenient alert gate: streams
// of a few simulated weeks raise many alerts.
CustomerModelsOptions AlertingOptions();

// The name under which the tests keep the minute metrics' blob beside the
// models' partition blobs (the engine's, pipeline/partition_checkpoint.h).
inline constexpr std::string_view kMinuteMetricsBlob = "minute_metrics";

// A hand-written event; it views `event_id` and `customer`, which must
// outlive it.
ingest::Event HandEvent(std::string_view event_id, std::string_view customer, int64_t ts,
                        ingest::EventType type, double amount = 0.0);

// The state store's label deadline index as the tests keep it: pending
// examples by (deadline, hash of the id, id) with their snapshots.
using LabelIndex = std::map<std::tuple<int64_t, uint64_t, std::string>, std::vector<float>>;
// Records the customer's pending example of `p` in `index` as a checkpoint
// does (its previous entry replaced); its snapshot must be in memory.
struct Partition;
void SaveLabel(const Partition& p, std::string_view id, LabelIndex* index);

// A SavedLabelSource over a LabelIndex, for a partition whose customers are
// all in memory (restored from records): nothing is loaded.
class LabelIndexSource final : public SavedLabelSource {
 public:
  LabelIndexSource(LabelIndex index, const features::FeatureStore* store)
      : index_(std::move(index)), store_(store) {}
  bool NextSaved(const SavedLabel* after, SavedLabel* out) override;
  std::optional<uint32_t> SlotOf(std::string_view customer_id) override;
  bool ReadSaved(SavedLabel* label) override;

 private:
  LabelIndex index_;
  const features::FeatureStore* store_;
};

// One partition's feature store, models and minute metrics.
struct Partition {
  explicit Partition(const CustomerModelsOptions& options = AlertingOptions(),
                     const MinuteMetricsOptions& minute_options = {});

  // As EventProcessor::ProcessDecoded: features, minute metrics, models.
  void Process(const ingest::Event& e);
  // As EventProcessor::RefreshScores, reports discarded.
  void RefreshPending();
  // A customer of the store (a copy of the view: Find's is rebound); fails
  // the test for an unknown one.
  features::CustomerFeatures Customer(std::string_view id) const;
  std::optional<int64_t> PendingSnapshotMs(std::string_view id) const;

  std::unique_ptr<features::FeatureStore> store;
  CustomerModels models;
  MinuteMetricsMonitor minutes;
  // The label index of a restored partition (SetSavedLabels), if any.
  std::unique_ptr<LabelIndexSource> labels;
  void AttachLabels(LabelIndex index);
};

// The partition-wide blobs of the models' parts and of the minute metrics,
// by name.
using BlobsByName = std::map<std::string, std::string, std::less<>>;
BlobsByName PartitionBlobs(const Partition& p);
// Decodes the blob named `name` (a part's, or the minute metrics') into `p`.
Status DecodePartitionBlob(std::string_view name, std::string_view blob, Partition* p);
// Decodes every blob of `blobs` into `p`; the first failure.
Status DecodePartitionBlobs(const BlobsByName& blobs, Partition* p);

// The generated world, decoded lazily (an Event is a view into the decoder).
class EventSource {
 public:
  explicit EventSource(const generator::WorldOptions& wo);
  // The next accepted event.
  const ingest::Event& Next();

 private:
  std::unique_ptr<generator::WorldGenerator> gen_;
  ingest::EventDecoder decoder_;
  std::string key_, value_;
  ingest::Event event_;
};

// 300 generated customers, 30,000 events, refreshed at the end.
std::unique_ptr<Partition> SmallGeneratedPartition(
    const CustomerModelsOptions& options = AlertingOptions());

}  // namespace crmstream::scoring::testing
