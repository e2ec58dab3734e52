#include "crmstream/pipeline/partition_checkpoint.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "crmstream/common/binary_io.h"

namespace crmstream::pipeline {

Status AddToCheckpoint(const EventProcessor& processor, uint64_t next_output_sequence,
                       state::PartitionKey key, state::CheckpointBatch* batch,
                       std::string* scratch) {
  Status failure;
  processor.feature_store().ForEachUnsaved(
      [&](std::string_view id, const features::CustomerFeatures&) {
        if (!failure.ok()) return;
        failure = processor.feature_store().EncodeCustomer(id, scratch);
        if (failure.ok()) batch->PutFeatures(key, id, *scratch);
      });
  CRM_RETURN_NOT_OK(failure);
  if (processor.options().models_enabled) {
    const scoring::CustomerModels& models = processor.customer_models();
    models.ForEachUnsaved([&](const features::CustomerFeatures& f) {
      if (!failure.ok()) return;
      failure = models.EncodeCustomer(f, scratch);
      if (failure.ok()) batch->PutCustomerModel(key, f.customer_id(), *scratch);
    });
    CRM_RETURN_NOT_OK(failure);
    for (std::string_view name : scoring::CustomerModels::kPartitionStateNames) {
      CRM_RETURN_NOT_OK(models.EncodePartition(name, scratch));
      batch->PutPartitionModel(key, name, *scratch);
    }
    processor.minute_metrics().Encode(scratch);
    batch->PutPartitionModel(key, kMinuteMetricsStateName, *scratch);
  }
  processor.EncodeState(next_output_sequence, scratch);
  batch->PutPartitionModel(key, kProcessorStateName, *scratch);
  std::string payload;
  processor.dedup_window().EncodeTo(&payload);
  batch->PutDedupWindow(
      key, SealBlob(BlobKind::kDedupWindow, ingest::DedupWindow::kEncodingVersion, payload));
  return Status::OK();
}

namespace {
// Restore errors end in logs: they name the customer by position in the
// store's order, never by id (a customer identifier); the id itself goes
// to the debug log, for whoever runs with --log-level debug.
std::string CustomerForLog(std::string_view what, size_t ordinal, std::string_view id) {
  spdlog::debug("restore: {} of customer #{} of the partition is customer id '{}'", what, ordinal,
                id);
  return std::string(what) + " of customer #" + std::to_string(ordinal) +
         " of the partition (--log-level debug shows its id)";
}
}  // namespace

void MarkCheckpointed(EventProcessor* processor) {
  processor->feature_store().ClearUnsaved();
  processor->customer_models().ClearUnsaved();
}

Result<uint64_t> RestoreProcessor(const state::StateStore& store, state::PartitionKey key,
                                  EventProcessor* processor) {
  // Features first: they give every customer its slot in the store, by
  // which the models then find it.
  features::FeatureStore& features = processor->feature_store();
  size_t ordinal = 0;
  CRM_RETURN_NOT_OK(store.ForEachCustomer(key, [&](std::string_view id, std::string_view blob) {
    ++ordinal;
    Status st = features.DecodeCustomer(id, blob);
    return st.ok() ? st : st.WithContext(CustomerForLog("features", ordinal, id));
  }));
  const bool models_enabled = processor->options().models_enabled;
  scoring::CustomerModels& models = processor->customer_models();
  if (models_enabled) {
    ordinal = 0;
    CRM_RETURN_NOT_OK(
        store.ForEachCustomerModel(key, [&](std::string_view id, std::string_view blob) {
          ++ordinal;
          const features::CustomerFeatures* f = features.Find(id);
          if (f == nullptr) {
            return Status::Corruption(CustomerForLog("model state", ordinal, id) +
                                      ": no features for this customer");
          }
          Status st = models.DecodeCustomer(*f, blob);
          return st.ok() ? st : st.WithContext(CustomerForLog("model state", ordinal, id));
        }));
  }
  // The models' partition-wide blobs, then the minute metrics: all of them
  // or none (a partition checkpointed with models off).
  constexpr size_t kModelStates = scoring::CustomerModels::kPartitionStateNames.size() + 1;
  size_t model_states = 0;
  uint64_t sequence = 0;
  CRM_RETURN_NOT_OK(
      store.ForEachPartitionModel(key, [&](std::string_view name, std::string_view blob) -> Status {
        const auto& names = scoring::CustomerModels::kPartitionStateNames;
        if (std::find(names.begin(), names.end(), name) != names.end()) {
          ++model_states;
          if (!models_enabled) return Status::OK();
          return models.DecodePartition(name, blob).WithContext("partition " + std::string(name));
        }
        if (name == kMinuteMetricsStateName) {
          ++model_states;
          if (!models_enabled) return Status::OK();
          return processor->minute_metrics().Decode(blob).WithContext("partition minute metrics");
        }
        if (name == kProcessorStateName) {
          CRM_ASSIGN_OR_RETURN(sequence, processor->DecodeState(blob));
          return Status::OK();
        }
        return Status::Corruption("unknown partition state '" + std::string(name) + "'");
      }));
  if (models_enabled && (model_states != 0 || models.customer_count() != 0) &&
      model_states != kModelStates) {
    return Status::Corruption("partition model state incomplete: " + std::to_string(model_states) +
                              " of " + std::to_string(kModelStates) + " blobs");
  }
  CRM_ASSIGN_OR_RETURN(std::optional<std::string> dedup, store.GetDedupWindow(key));
  if (dedup) {
    CRM_ASSIGN_OR_RETURN(
        std::string_view payload,
        OpenBlobPayload(*dedup, BlobKind::kDedupWindow, ingest::DedupWindow::kEncodingVersion));
    CRM_ASSIGN_OR_RETURN(ingest::DedupWindow window, ingest::DedupWindow::Decode(payload));
    processor->set_dedup_window(std::move(window));
  }
  // Restored state is saved state, and no output is owed for it.
  features.ClearDirty();
  features.ClearUnsaved();
  models.ClearUnsaved();
  return sequence;
}

}  // namespace crmstream::pipeline
