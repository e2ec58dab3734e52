// What a partition task keeps in the state store, and how it comes back:
//
//   features family   every customer updated since the last checkpoint
//   models family     the same customers' model records ('C' keys), and the
//                     partition-wide state ('P' keys): one blob per scoring
//                     part (scoring::CustomerModels::kPartitionStateNames:
//                     "churn", "segments", "behaviour"), "minute_metrics",
//                     "associations" and "recommendations" (the basket
//                     models, when on) and "processor" (the processor's
//                     schedules and the task's output sequence), and the
//                     index of pending churn labels by deadline ('D' keys),
//                     kept in step with the customers' records
//   dedup family      the dedup window: a head and the chunks of its ring
//                     written since the last checkpoint
//
// Checkpoints are incremental for customers (only the unsaved ones) and
// whole for the partition-wide blobs (the basket models' only when they
// learnt since the last checkpoint). They are taken at a refresh boundary
// (right after EventProcessor::FlushOutputs): no customer has un-refreshed
// events then, so nothing transient needs saving.
//
// Restore decodes no customer: it attaches the store to the processor
// (EventProcessor::AttachStateStore), which loads each customer on first
// touch and finds the labels maturing for the others in the index.
//
// Thread-safety: one thread a task at a time (tasks' processors share
// nothing a checkpoint reads).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "crmstream/common/status.h"
#include "crmstream/pipeline/event_processor.h"
#include "crmstream/state/state_store.h"

namespace crmstream::pipeline {

inline constexpr std::string_view kMinuteMetricsStateName = "minute_metrics";
inline constexpr std::string_view kProcessorStateName = "processor";
inline constexpr std::string_view kAssociationsStateName = "associations";
inline constexpr std::string_view kRecommenderStateName = "recommendations";

// Adds the processor's unsaved state to `batch`. `scratch` is reused.
Status AddToCheckpoint(const EventProcessor& processor, uint64_t next_output_sequence,
                       state::PartitionKey key, state::CheckpointBatch* batch,
                       std::string* scratch);
// The same into a batch of the task's own that is appended to `committed`'s
// batch before the commit (CheckpointBatch::Append): `committed` is that
// batch's ticket. Other tasks' processors may be encoded meanwhile on other
// threads: each call touches its processor only.
Status AddToCheckpoint(const EventProcessor& processor, uint64_t next_output_sequence,
                       state::PartitionKey key, state::CheckpointBatch* batch, std::string* scratch,
                       state::CheckpointBatch::CommitTicket committed);
// After the batch is committed: nothing is unsaved any more.
void MarkCheckpointed(EventProcessor* processor);

// Rebuilds a fresh processor from the partition's checkpoint (partition-wide
// models, schedules, dedup window; customers on demand, from `store`, which
// must outlive the processor); returns the task's next output
// sequence (0 when the store holds nothing of the partition).
Result<uint64_t> RestoreProcessor(const state::StateStore& store, state::PartitionKey key,
                                  EventProcessor* processor);

}  // namespace crmstream::pipeline
