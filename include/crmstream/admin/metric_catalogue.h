// The one reviewed list of the engine's Prometheus metrics: every name the
// code exports is defined here, and docs/metrics.md documents exactly these
// (a test compares the two). Conventions: prefix crmstream_, base units in
// the name (seconds, bytes, records), _total on counters and only there.
//
// Thread-safety: constant data.
#pragma once

#include <array>
#include <cstddef>
#include <string_view>

namespace crmstream::admin {

enum class MetricKind : unsigned char { kCounter, kGauge, kHistogram };

struct MetricDef {
  std::string_view name;
  MetricKind kind;
  std::string_view labels;  // comma-separated label names, "" for none
  std::string_view help;
};

enum class Metric : int {
  // Input.
  kInputRecords,
  kEventsConsumed,
  kDuplicateEvents,
  kRejectedEvents,
  kDeadLetters,
  kConsumerLag,
  kAssignedPartitions,
  kRebalances,
  // Latency.
  kBatchDuration,
  kEventToOutputLatency,
  kOutputLatency,
  // Outputs and delivery.
  kOutputRecords,
  kDeliveredRecords,
  kSuppressedRecords,
  kDeliveryFailures,
  kChurnAlerts,
  kOffsetCommits,
  kOffsetCommitFailures,
  kGroupCommitFailures,
  kTransactionsAborted,
  kUnownedRecords,
  kRedeliveredRecords,
  kModelSyncRecords,
  kModelSyncMerges,
  kModelSyncPartitionsMerged,
  // State.
  kCheckpoints,
  kMemoryCheckpoints,
  kInputHolds,
  kCustomersOverCapacity,
  kCustomersShed,
  kCheckpointFailures,
  kCheckpointDuration,
  kCheckpointSize,
  kLastCheckpointTimestamp,
  kCheckpointInProgress,
  kChangelogRecords,
  kChangelogRestoredRecords,
  kChangelogRestoredBytes,
  kChangelogRestoresInProgress,
  kRocksDbMemory,
  kRocksDbMemtableBudget,
  kRocksDbImmutableMemtables,
  kRocksDbPendingFlushes,
  kRocksDbRunningJobs,
  kRocksDbPendingCompaction,
  kRocksDbL0Files,
  kRocksDbWritesStopped,
  kRocksDbWal,
  kRocksDbWriteStalls,
  kRocksDbWriteStallTime,
  kRocksDbWriteTimeouts,
  kCachedCustomers,
  kCustomerLoads,
  kFeatureStoreMemory,
  kCustomerCacheMemory,
  kCustomerCacheBytesPerCustomer,
  kMemoryBudget,
  kResidentMemory,
  kMemoryTrims,
  kMemoryTrimmedBytes,
  // Model quality.
  kChurnAuc,
  kChurnLogLoss,
  kChurnLabels,
  kChurnGatePartitions,
  kValueRmse,
  kKmeansMeanSquaredDistance,
  kAnomalyRatio,
  // The engine itself.
  kEngineLive,
  kEngineReady,
  kStartTime,
  kBuildInfo,
  kAdminRequests,
  kCount,
};

inline constexpr std::array<MetricDef, static_cast<size_t>(Metric::kCount)> kMetricCatalogue = {{
    {"crmstream_input_records_total", MetricKind::kCounter, "",
     "Records read from the input topics, valid or not."},
    {"crmstream_events_consumed_total", MetricKind::kCounter, "type",
     "Valid, first-seen events processed, by event type."},
    {"crmstream_duplicate_events_total", MetricKind::kCounter, "",
     "Valid events whose event_id was already seen (counted once, no output)."},
    {"crmstream_rejected_events_total", MetricKind::kCounter, "reason",
     "Records rejected by validation, by reason."},
    {"crmstream_dead_letters_total", MetricKind::kCounter, "",
     "Records written to the dead-letter topic."},
    {"crmstream_consumer_lag_records", MetricKind::kGauge, "topic,partition",
     "Records between the consumer position and the high watermark, per assigned partition."},
    {"crmstream_assigned_partitions", MetricKind::kGauge, "",
     "Input partitions assigned to this instance."},
    {"crmstream_consumer_rebalances_total", MetricKind::kCounter, "",
     "Partition assignments and revocations seen by this instance."},
    {"crmstream_batch_processing_duration_seconds", MetricKind::kHistogram, "",
     "Time to process one non-empty consumer batch (decode, features, models, outputs)."},
    {"crmstream_event_to_output_latency_seconds", MetricKind::kHistogram, "",
     "From a record's broker timestamp to when its outputs are handed to the producer; the "
     "oldest record of each flush interval."},
    {"crmstream_output_latency_seconds", MetricKind::kHistogram, "output",
     "From the broker timestamp of the input behind an output (for outputs of a refresh or "
     "a flush, the oldest record since the previous one) to the brokers' acknowledgement of "
     "the output (with transactions, to the commit of its transaction), by output."},
    {"crmstream_output_records_total", MetricKind::kCounter, "output,topic",
     "Output records handed to the producer, by output and topic."},
    {"crmstream_output_records_delivered_total", MetricKind::kCounter, "",
     "Output records acknowledged by the brokers."},
    {"crmstream_output_records_suppressed_total", MetricKind::kCounter, "",
     "Exactly-once mode: regenerated output records not produced again because the "
     "instance before a restart had delivered them."},
    {"crmstream_output_delivery_failures_total", MetricKind::kCounter, "",
     "Output records the producer failed to deliver."},
    {"crmstream_churn_alerts_total", MetricKind::kCounter, "severity",
     "Churn alerts published, by severity."},
    {"crmstream_offset_commits_total", MetricKind::kCounter, "",
     "Successful input offset commits."},
    {"crmstream_offset_commit_failures_total", MetricKind::kCounter, "",
     "Offset commits that failed or were skipped because outputs could not be flushed."},
    {"crmstream_group_offset_commit_failures_total", MetricKind::kCounter, "",
     "Asynchronous commits of the input offsets to the consumer group that failed."},
    {"crmstream_transactions_aborted_total", MetricKind::kCounter, "",
     "Kafka transactions aborted (exactly_once_transactions); each rewinds to the last "
     "checkpoint."},
    {"crmstream_unowned_records_total", MetricKind::kCounter, "",
     "Records of partitions this instance does not own (a revoked partition's late batch), "
     "left unprocessed."},
    {"crmstream_redelivered_records_total", MetricKind::kCounter, "",
     "Input records librdkafka handed out a second time (a rebalance's pause resumed their "
     "partition at them), dropped by the consumer."},
    {"crmstream_model_sync_records_produced_total", MetricKind::kCounter, "",
     "Model-sync records produced: the partition tasks' model statistics published to "
     "<group_id>.model-sync (models.sync_interval_ms)."},
    {"crmstream_model_sync_merges_total", MetricKind::kCounter, "",
     "Merges of the model-sync topic's statistics into the global models the partition tasks "
     "score with."},
    {"crmstream_model_sync_partitions_merged", MetricKind::kGauge, "",
     "Input partitions whose statistics the latest global models merged; 0 before the first "
     "merge."},
    {"crmstream_checkpoints_total", MetricKind::kCounter, "",
     "Successful state checkpoints to RocksDB."},
    {"crmstream_memory_checkpoints_total", MetricKind::kCounter, "",
     "Checkpoints begun early because a partition task's customer cache filled with customers "
     "changed since the last checkpoint, which only a checkpoint makes evictable."},
    {"crmstream_input_holds_total", MetricKind::kCounter, "",
     "Times the engine stopped taking input until a pending checkpoint was written, because a "
     "partition task's customer cache had nothing left to evict but customers that checkpoint "
     "saves or that changed since (at least once)."},
    {"crmstream_customers_over_capacity_total", MetricKind::kCounter, "",
     "New customers that found no customer to evict and grew a partition task's customer cache "
     "past its capacity (the cache keeps that size)."},
    {"crmstream_customers_shed_total", MetricKind::kCounter, "",
     "Saved customers evicted because a partition task's customer cache was over its bytes in "
     "the memory plan (customers active on many days cost more than quiet ones)."},
    {"crmstream_checkpoint_failures_total", MetricKind::kCounter, "",
     "State checkpoints that failed."},
    {"crmstream_checkpoint_duration_seconds", MetricKind::kHistogram, "",
     "Time of one checkpoint attempt, from start to durable (or failed)."},
    {"crmstream_checkpoint_size_bytes", MetricKind::kGauge, "",
     "Bytes written by the last successful checkpoint."},
    {"crmstream_last_checkpoint_timestamp_seconds", MetricKind::kGauge, "",
     "Unix time at which the last successful checkpoint completed."},
    {"crmstream_checkpoint_in_progress_seconds", MetricKind::kGauge, "",
     "Age of the checkpoint under way; 0 when none is."},
    {"crmstream_changelog_records_total", MetricKind::kCounter, "",
     "State changes produced to the changelog topics."},
    {"crmstream_changelog_restored_records_total", MetricKind::kCounter, "",
     "Changelog records read by restores of partition state."},
    {"crmstream_changelog_restored_bytes_total", MetricKind::kCounter, "",
     "Bytes (keys and values) of changelog records read by restores."},
    {"crmstream_changelog_restores_in_progress", MetricKind::kGauge, "",
     "Partitions whose state is being restored from the changelog now."},
    {"crmstream_rocksdb_memory_bytes", MetricKind::kGauge, "kind",
     "Approximate RocksDB memory, by kind (memtables, table_readers, block_cache)."},
    {"crmstream_rocksdb_memtable_budget_bytes", MetricKind::kGauge, "",
     "The write buffer manager's memtable budget (a share of state.memory_cap_mb)."},
    {"crmstream_rocksdb_immutable_memtables", MetricKind::kGauge, "",
     "Memtables waiting for or in a flush, all column families."},
    {"crmstream_rocksdb_pending_flushes", MetricKind::kGauge, "",
     "Column families with a flush pending."},
    {"crmstream_rocksdb_running_jobs", MetricKind::kGauge, "job",
     "RocksDB background jobs running, by job (flush, compaction)."},
    {"crmstream_rocksdb_pending_compaction_bytes", MetricKind::kGauge, "",
     "RocksDB's estimate of the bytes compaction must rewrite."},
    {"crmstream_rocksdb_l0_files", MetricKind::kGauge, "",
     "Level-0 table files, all column families (many slow or stop writes)."},
    {"crmstream_rocksdb_writes_stopped", MetricKind::kGauge, "",
     "1 while RocksDB's write controller stops writes."},
    {"crmstream_rocksdb_wal_bytes", MetricKind::kGauge, "",
     "Size of the live write-ahead log files."},
    {"crmstream_rocksdb_write_stalls_total", MetricKind::kCounter, "",
     "State writes that had to wait for RocksDB to free memory or catch up."},
    {"crmstream_rocksdb_write_stall_seconds_total", MetricKind::kCounter, "",
     "Time state writes spent waiting for RocksDB."},
    {"crmstream_rocksdb_write_timeouts_total", MetricKind::kCounter, "",
     "State writes that gave up after state.write_timeout_ms."},
    {"crmstream_cached_customers", MetricKind::kGauge, "",
     "Customers held in memory by the assigned partitions."},
    {"crmstream_customer_loads_total", MetricKind::kCounter, "read",
     "Customers loaded from the state store into memory (cache misses of saved customers), "
     "read one at a time by their event (single) or with their batch's other misses (batched)."},
    {"crmstream_feature_store_memory_bytes", MetricKind::kGauge, "",
     "Memory of the in-memory feature stores of the assigned partitions."},
    {"crmstream_customer_cache_memory_bytes", MetricKind::kGauge, "",
     "Heap of the customers in memory (features and per-customer model state), "
     "from the customer caches' own accounting."},
    {"crmstream_customer_cache_bytes_per_customer", MetricKind::kGauge, "",
     "crmstream_customer_cache_memory_bytes per cached customer (0 while none)."},
    {"crmstream_memory_budget_bytes", MetricKind::kGauge, "part",
     "How state.memory_cap_mb is split: fixed, dedup, kafka, rocksdb, customer_cache."},
    {"crmstream_resident_memory_bytes", MetricKind::kGauge, "",
     "Resident set of the process (/proc/self/statm), to hold against state.memory_cap_mb."},
    {"crmstream_memory_trims_total", MetricKind::kCounter, "",
     "Times the C library's free pages were handed back to the kernel because the resident "
     "set reached 7/8 of state.memory_cap_mb."},
    {"crmstream_memory_trimmed_bytes_total", MetricKind::kCounter, "",
     "Resident bytes those trims handed back."},
    {"crmstream_model_churn_auc", MetricKind::kGauge, "",
     "Prequential ROC AUC of the churn model over resolved labels."},
    {"crmstream_model_churn_log_loss", MetricKind::kGauge, "",
     "Prequential log loss (nats) of the churn model over resolved labels."},
    {"crmstream_model_churn_labels", MetricKind::kGauge, "",
     "Resolved churn labels behind the churn AUC and log loss."},
    {"crmstream_model_churn_gate_partitions", MetricKind::kGauge, "state",
     "Assigned partitions by the state of their churn alert gate (warming_up, below_floor, "
     "open); churn alerts come only from open ones."},
    {"crmstream_model_value_rmse", MetricKind::kGauge, "",
     "Prequential RMSE of the predicted spend, in currency units."},
    {"crmstream_model_kmeans_mean_squared_distance", MetricKind::kGauge, "",
     "Prequential mean squared distance of customers to their segment centre (standardised)."},
    {"crmstream_model_anomaly_ratio", MetricKind::kGauge, "",
     "Share of scored events whose customer anomaly score reached the alert level."},
    {"crmstream_engine_live", MetricKind::kGauge, "",
     "1 while the engine loop is running and not stalled (what /healthz reports)."},
    {"crmstream_engine_ready", MetricKind::kGauge, "",
     "1 while partitions are assigned and state is restored (what /readyz reports)."},
    {"crmstream_start_time_seconds", MetricKind::kGauge, "",
     "Unix time at which the admin server started."},
    {"crmstream_build_info", MetricKind::kGauge, "version", "Always 1; the engine's version."},
    {"crmstream_admin_http_requests_total", MetricKind::kCounter, "path,code",
     "Requests served by the admin HTTP server, by path and status code."},
}};

inline constexpr const MetricDef& Def(Metric m) { return kMetricCatalogue[static_cast<size_t>(m)]; }

}  // namespace crmstream::admin
