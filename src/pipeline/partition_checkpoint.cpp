#include "crmstream/pipeline/partition_checkpoint.h"

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
  const CustomerModels& models = processor.customer_models();
  if (processor.options().models_enabled) {
    models.ForEachUnsaved([&](std::string_view id) {
      if (!failure.ok()) return;
      failure = models.EncodeCustomer(id, scratch);
      if (failure.ok()) batch->PutCustomerModel(key, id, *scratch);
    });
    CRM_RETURN_NOT_OK(failure);
    CRM_RETURN_NOT_OK(models.EncodeGlobal(scratch));
    batch->PutPartitionModel(key, kModelsStateName, *scratch);
  }
  processor.EncodeState(next_output_sequence, scratch);
  batch->PutPartitionModel(key, kProcessorStateName, *scratch);
  std::string payload;
  processor.dedup_window().EncodeTo(&payload);
  batch->PutDedupWindow(
      key, SealBlob(BlobKind::kDedupWindow, ingest::DedupWindow::kEncodingVersion, payload));
  return Status::OK();
}

void MarkCheckpointed(EventProcessor* processor) {
  processor->feature_store().ClearUnsaved();
  processor->customer_models().ClearUnsaved();
}

Result<uint64_t> RestoreProcessor(const state::StateStore& store, state::PartitionKey key,
                                  EventProcessor* processor) {
  features::FeatureStore& features = processor->feature_store();
  CRM_RETURN_NOT_OK(store.ForEachCustomer(key, [&](std::string_view id, std::string_view blob) {
    return features.DecodeCustomer(id, blob).WithContext("customer " + std::string(id));
  }));
  CustomerModels& models = processor->customer_models();
  uint64_t sequence = 0;
  if (processor->options().models_enabled) {
    CRM_RETURN_NOT_OK(
        store.ForEachCustomerModel(key, [&](std::string_view id, std::string_view blob) {
          return models.DecodeCustomer(id, blob).WithContext("customer " + std::string(id));
        }));
  }
  CRM_RETURN_NOT_OK(
      store.ForEachPartitionModel(key, [&](std::string_view name, std::string_view blob) -> Status {
        if (name == kModelsStateName) {
          if (!processor->options().models_enabled) return Status::OK();
          return models.DecodeGlobal(blob).WithContext("partition models");
        }
        if (name == kProcessorStateName) {
          CRM_ASSIGN_OR_RETURN(sequence, processor->DecodeState(blob));
          return Status::OK();
        }
        return Status::Corruption("unknown partition state '" + std::string(name) + "'");
      }));
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
