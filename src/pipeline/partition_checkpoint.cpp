#include "crmstream/pipeline/partition_checkpoint.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "crmstream/common/binary_io.h"
#include "crmstream/common/hash.h"

namespace crmstream::pipeline {
namespace {

// A basket model's blob, installed when the model is on (a pipeline that
// turned it off ignores it; one that turned it on after the checkpoint
// starts it empty). InvalidArgument when written under another window or
// recipe: counts of another definition would be published as this one's.
Status RestoreAssociations(std::string_view blob, EventProcessor* processor) {
  models::AssociationRuleMiner* miner = processor->associations();
  if (miner == nullptr) return Status::OK();
  CRM_ASSIGN_OR_RETURN(models::AssociationRuleMiner restored,
                       models::AssociationRuleMiner::Deserialize(blob));
  if (restored.options().window_ms != miner->options().window_ms ||
      restored.options().max_pairs != miner->options().max_pairs) {
    return Status::InvalidArgument(
        "partition associations: checkpointed with another window or max_pairs");
  }
  *miner = std::move(restored);
  return Status::OK();
}

Status RestoreRecommender(std::string_view blob, EventProcessor* processor) {
  models::ItemRecommender* recommender = processor->recommender();
  if (recommender == nullptr) return Status::OK();
  CRM_ASSIGN_OR_RETURN(models::ItemRecommender restored,
                       models::ItemRecommender::Deserialize(blob));
  const models::ItemRecommenderOptions& a = restored.options();
  const models::ItemRecommenderOptions& b = recommender->options();
  if (a.half_life_days != b.half_life_days ||
      a.popularity_half_life_days != b.popularity_half_life_days ||
      a.history_half_life_days != b.history_half_life_days || a.alpha != b.alpha ||
      a.neighbours != b.neighbours || a.history_size != b.history_size) {
    return Status::InvalidArgument("partition recommendations: checkpointed with another recipe");
  }
  *recommender = std::move(restored);
  return Status::OK();
}

// The window from its head and chunks, or (a format-6 store) from its whole
// blob, then written whole at the next checkpoint.
Status RestoreDedupWindow(const state::StateStore& store, state::PartitionKey key,
                          EventProcessor* processor) {
  using ingest::DedupWindow;
  // The window keeps the capacity this run is configured with.
  const size_t capacity = processor->dedup_window().capacity();
  CRM_ASSIGN_OR_RETURN(std::optional<std::string> head, store.GetDedupHead(key));
  if (head) {
    constexpr uint16_t kVersion = DedupWindow::kChunkedEncodingVersion;
    CRM_ASSIGN_OR_RETURN(std::string_view head_payload,
                         OpenBlobPayload(*head, BlobKind::kDedupWindow, kVersion));
    const auto read_chunk = [&](size_t chunk) -> Result<std::string> {
      const std::string where = "chunk " + std::to_string(chunk);
      CRM_ASSIGN_OR_RETURN(std::optional<std::string> blob,
                           store.GetDedupChunk(key, static_cast<uint32_t>(chunk)));
      if (!blob) return Status::Corruption(where + " is missing");
      auto payload = OpenBlobPayload(*blob, BlobKind::kDedupWindow, kVersion);
      if (!payload.ok()) return payload.status().WithContext(where);
      return std::string(*payload);
    };
    CRM_ASSIGN_OR_RETURN(DedupWindow window,
                         DedupWindow::DecodeChunked(head_payload, read_chunk, capacity));
    processor->set_dedup_window(std::move(window));
    return Status::OK();
  }
  CRM_ASSIGN_OR_RETURN(std::optional<std::string> whole, store.GetDedupWindow(key));
  if (!whole) return Status::OK();
  CRM_ASSIGN_OR_RETURN(std::string_view payload, OpenBlobPayload(*whole, BlobKind::kDedupWindow,
                                                                 DedupWindow::kEncodingVersion));
  CRM_ASSIGN_OR_RETURN(DedupWindow window, DedupWindow::Decode(payload, capacity));
  window.MarkAllUnsaved();
  processor->set_dedup_window(std::move(window));
  return Status::OK();
}

}  // namespace

Status AddToCheckpoint(const EventProcessor& processor, uint64_t next_output_sequence,
                       state::PartitionKey key, state::CheckpointBatch* batch,
                       std::string* scratch) {
  return AddToCheckpoint(processor, next_output_sequence, key, batch, scratch, batch->ticket());
}

Status AddToCheckpoint(const EventProcessor& processor, uint64_t next_output_sequence,
                       state::PartitionKey key, state::CheckpointBatch* batch, std::string* scratch,
                       state::CheckpointBatch::CommitTicket committed) {
  CRM_RETURN_NOT_OK(processor.storage_status().WithContext("reading the state store"));
  // The customers in key order: RocksDB's memtable (a skip list) takes
  // increasing keys next to the last insert, random ones each with a search
  // from the top (bench_state BM_Checkpoint10PercentDirty, sorted:0 and 1).
  // Each with its id, so that the sort compares the ids in hand.
  using Customer = std::pair<std::string_view, features::CustomerFeatures>;
  std::vector<Customer> customers;
  const auto in_key_order = [&customers] {
    std::sort(customers.begin(), customers.end(),
              [](const Customer& a, const Customer& b) { return a.first < b.first; });
  };
  customers.reserve(processor.feature_store().unsaved_count());
  processor.feature_store().ForEachUnsaved(
      [&](std::string_view id, const features::CustomerFeatures& f) {
        customers.emplace_back(id, f);
      });
  in_key_order();
  for (const auto& [id, f] : customers) {
    CRM_RETURN_NOT_OK(processor.feature_store().EncodeCustomer(id, scratch));
    batch->PutFeatures(key, id, *scratch);
  }
  if (processor.options().models_enabled) {
    const scoring::CustomerModels& models = processor.customer_models();
    customers.clear();
    customers.reserve(models.unsaved_count());
    models.ForEachUnsaved(
        [&](const features::CustomerFeatures& f) { customers.emplace_back(f.customer_id(), f); });
    in_key_order();
    for (const auto& [id, f] : customers) {
      CRM_RETURN_NOT_OK(models.EncodeCustomer(f, scratch));
      batch->PutCustomerModel(key, id, *scratch);
      // The deadline index follows the customer's pending example, whose
      // snapshot it holds.
      const auto change = models.LabelIndexChange(f);
      if (change.saved_ms == change.current_ms && !change.write_snapshot) continue;
      const uint64_t id_hash = Hash64(id);
      if (change.saved_ms != INT64_MIN && change.saved_ms != change.current_ms) {
        batch->DeleteLabelDeadline(key, change.saved_ms, id_hash, id);
      }
      if (change.current_ms == INT64_MIN) continue;
      if (!change.write_snapshot) {
        return Status::Corruption("a new pending churn example without its snapshot");
      }
      scratch->clear();
      BinaryWriter(scratch).PutArray<float>(models.PendingSnapshot(f));
      batch->PutLabelDeadline(key, change.current_ms, id_hash, id, *scratch);
    }
    for (std::string_view name : scoring::CustomerModels::kPartitionStateNames) {
      CRM_RETURN_NOT_OK(models.EncodePartition(name, scratch));
      batch->PutPartitionModel(key, name, *scratch);
    }
    processor.minute_metrics().Encode(scratch);
    batch->PutPartitionModel(key, kMinuteMetricsStateName, *scratch);
  }
  // The basket models are whole blobs, written when they learnt something
  // since the last checkpoint (the stored ones are current otherwise).
  if (processor.baskets_unsaved()) {
    if (const models::AssociationRuleMiner* miner = processor.associations()) {
      batch->PutPartitionModel(key, kAssociationsStateName, miner->Serialize());
    }
    if (const models::ItemRecommender* recommender = processor.recommender()) {
      batch->PutPartitionModel(key, kRecommenderStateName, recommender->Serialize());
    }
  }
  processor.NoteCheckpoint(std::move(committed));
  processor.EncodeState(next_output_sequence, scratch);
  batch->PutPartitionModel(key, kProcessorStateName, *scratch);
  // The dedup window: its head, and the chunks of its ring the ids since the
  // last checkpoint went to (one or two, not the whole window).
  const ingest::DedupWindow& dedup = processor.dedup_window();
  constexpr uint16_t kDedupVersion = ingest::DedupWindow::kChunkedEncodingVersion;
  scratch->clear();
  dedup.EncodeHead(scratch);
  batch->PutDedupHead(key, SealBlob(BlobKind::kDedupWindow, kDedupVersion, *scratch));
  dedup.ForEachUnsavedChunk([&](size_t chunk) {
    scratch->clear();
    dedup.EncodeChunk(chunk, scratch);
    batch->PutDedupChunk(key, static_cast<uint32_t>(chunk),
                         SealBlob(BlobKind::kDedupWindow, kDedupVersion, *scratch));
  });
  // Restored at a smaller size: the chunks past its end are no longer read.
  dedup.ForEachStaleChunk(
      [&](size_t chunk) { batch->DeleteDedupChunk(key, static_cast<uint32_t>(chunk)); });
  // Written whole: a format-6 window, read at the restore, is no longer
  // needed.
  if (dedup.all_unsaved()) batch->DeleteDedupWindow(key);
  return Status::OK();
}

void MarkCheckpointed(EventProcessor* processor) {
  // The checkpoint may be committed later: until then its customers stay in
  // memory (a cache miss would load their state from before it).
  processor->StageCheckpointed();
  // The churn snapshots taken so far are in the checkpoint: they leave
  // memory once it is committed (it may be staged and committed later).
  processor->SealSnapshots();
  processor->MarkBasketsSaved();
  processor->dedup_window().MarkSaved();
  // The index has new entries: the churn model looks its next one up again.
  processor->customer_models().SavedLabelsChanged();
  // Customers saved by committed checkpoints may leave now if the cache
  // outgrew its byte budget while they were unsaved (it checks the budget
  // otherwise only for a new customer).
  features::FeatureStore& features = processor->feature_store();
  features.ShedOverBudget(features.size());
}

Result<uint64_t> RestoreProcessor(const state::StateStore& store, state::PartitionKey key,
                                  EventProcessor* processor) {
  // No customer is decoded here: each is loaded from the store on first
  // touch, and the churn model reads the deadlines of the others from the
  // store's index (format 3), so a restart costs the partition-wide blobs.
  processor->AttachStateStore(&store, key);
  features::FeatureStore& features = processor->feature_store();
  const bool models_enabled = processor->options().models_enabled;
  scoring::CustomerModels& models = processor->customer_models();
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
        if (name == kAssociationsStateName) return RestoreAssociations(blob, processor);
        if (name == kRecommenderStateName) return RestoreRecommender(blob, processor);
        if (name == kProcessorStateName) {
          CRM_ASSIGN_OR_RETURN(sequence, processor->DecodeState(blob));
          return Status::OK();
        }
        return Status::Corruption("unknown partition state '" + std::string(name) + "'");
      }));
  if (models_enabled && model_states != 0 && model_states != kModelStates) {
    return Status::Corruption("partition model state incomplete: " + std::to_string(model_states) +
                              " of " + std::to_string(kModelStates) + " blobs");
  }
  CRM_RETURN_NOT_OK(RestoreDedupWindow(store, key, processor).WithContext("dedup window"));
  // Restored state is saved state, and no output is owed for it.
  features.ClearDirty();
  features.ClearUnsaved();
  models.ClearUnsaved();
  processor->MarkBasketsSaved();
  return sequence;
}

}  // namespace crmstream::pipeline
