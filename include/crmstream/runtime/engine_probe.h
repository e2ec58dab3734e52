// The engine's probe: every figure the engine reports about itself, in one
// place (Redpanda's probe.h habit). The engine thread writes it; the admin
// server, the status line and tests read it from any thread.
//
// Thread-safety: counters and gauges are relaxed atomics (single writer: the
// engine thread; histograms may be fed from any thread); the lag and model
// quality snapshots are published by the engine thread with try_lock, so the
// engine never waits for a reader. Health() may be called from any thread.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "crmstream/alerts/churn_alert_policy.h"
#include "crmstream/ingest/event.h"
#include "crmstream/schema/output_kind.h"

namespace crmstream::runtime {

// A histogram of durations (seconds) over fixed bucket bounds. Observe() is
// one relaxed fetch_add per bucket, count and sum, so any thread may feed it
// (it is fed once per batch or per checkpoint, never per event); any thread
// may read it. A reader may see a sample in a bucket before its sum: the
// metrics layer derives the count from the buckets so the exposition stays
// self-consistent.
class DurationHistogram {
 public:
  static constexpr size_t kMaxBounds = 32;
  // `bounds`: strictly increasing upper bounds in seconds (at most
  // kMaxBounds); must outlive the histogram (use a static array).
  explicit DurationHistogram(std::span<const double> bounds);
  void Observe(double seconds);
  std::span<const double> bounds() const { return bounds_; }
  // Samples in bucket i (non-cumulative; i == bounds().size() is +Inf).
  uint64_t bucket(size_t i) const { return buckets_[i].load(std::memory_order_relaxed); }
  double sum_seconds() const {
    return static_cast<double>(sum_ns_.load(std::memory_order_relaxed)) * 1e-9;
  }

 private:
  std::span<const double> bounds_;
  std::array<std::atomic<uint64_t>, kMaxBounds + 1> buckets_{};
  std::atomic<uint64_t> sum_ns_{0};
};

// Bucket bounds (seconds) of the engine's histograms.
inline constexpr std::array<double, 16> kBatchDurationBounds = {
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
    0.025,   0.05,   0.1,     0.25,   0.5,   1.0,    2.5,   5.0};
inline constexpr std::array<double, 16> kEventToOutputBounds = {
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,  0.25,
    0.5,   1.0,    2.5,   5.0,  10.0,  30.0, 60.0, 300.0};
// Output latency is measured in whole milliseconds (broker timestamps): a
// bound on each of 1-5 ms, where the target lies (p99 <= 5 ms), so a
// quantile there is read from its own bucket rather than interpolated
// across a wide one; 0.5 ms holds the outputs acknowledged within the
// millisecond of their input. With transactions an output is visible at its
// commit, about a commit interval after its input (the target: the interval
// + 5 ms), so the default interval of 1 s has bounds 5 ms apart after it too.
inline constexpr std::array<double, 31> kOutputLatencyBounds = {
    0.0005, 0.001, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01,  0.015, 0.02,  0.025,
    0.05,   0.075, 0.1,   0.25,  0.5,   0.75,  1.0,    1.005, 1.01,  1.025, 1.05,
    1.1,    1.25,  1.5,   2.0,   2.5,   5.0,   10.0,   30.0,  300.0};
static_assert(kOutputLatencyBounds.size() <= DurationHistogram::kMaxBounds);
inline constexpr std::array<double, 14> kCheckpointDurationBounds = {
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0};

// One output kind's latency histogram (EngineStats::output_latency).
class OutputLatencyHistogram : public DurationHistogram {
 public:
  OutputLatencyHistogram() : DurationHistogram(kOutputLatencyBounds) {}
};

// The tag an output is produced with (kafka::Producer's delivery observer):
// its kind (plus one) in bits 48-55, the time of the input behind it (ms)
// below; the top byte stays free (kafka::kMaxProducerTag). 0, no tag, when
// that time is unknown.
inline constexpr int kOutputLatencyKindShift = 48;
constexpr uint64_t OutputLatencyTag(schema::OutputKind kind, int64_t origin_ms) {
  constexpr uint64_t kTimeMask = (uint64_t{1} << kOutputLatencyKindShift) - 1;
  if (origin_ms <= 0) return 0;
  return (uint64_t{static_cast<uint8_t>(kind)} + 1) << kOutputLatencyKindShift |
         (static_cast<uint64_t>(origin_ms) & kTimeMask);
}

// What RocksDB's memory is spent on, in the order of kRocksDbMemoryKindNames.
enum class RocksDbMemoryKind : uint8_t { kMemtables = 0, kTableReaders, kBlockCache };
inline constexpr int kRocksDbMemoryKindCount = 3;
inline constexpr std::array<std::string_view, kRocksDbMemoryKindCount> kRocksDbMemoryKindNames = {
    "memtables", "table_readers", "block_cache"};

// Totals of the engine. Every field is an atomic any thread may read.
struct EngineStats {
  std::atomic<uint64_t> received{0};
  std::atomic<uint64_t> accepted{0};
  std::atomic<uint64_t> duplicates{0};
  std::atomic<uint64_t> rejected{0};
  std::array<std::atomic<uint64_t>, ingest::kEventTypeCount> accepted_by_type{};
  // Indexed by ingest::RejectReason.
  std::array<std::atomic<uint64_t>, 16> rejected_by_reason{};
  std::array<std::atomic<uint64_t>, schema::kOutputKindCount> outputs{};
  // Churn alerts by alerts::Severity.
  std::array<std::atomic<uint64_t>, alerts::kSeverityCount> churn_alerts{};
  std::atomic<uint64_t> delivered{0};  // output records acknowledged by the brokers
  // exactly_once: regenerated outputs not produced again because a
  // predecessor had delivered them before it crashed.
  std::atomic<uint64_t> suppressed_outputs{0};
  std::atomic<uint64_t> delivery_failures{0};
  std::atomic<uint64_t> commits{0};
  std::atomic<uint64_t> commit_failures{0};  // commits skipped (flush or commit error)
  // Asynchronous commits of the input offsets to the consumer group that
  // failed (the consumer's count): the store's offsets win on restart, but
  // lag monitoring and tools read the group's.
  std::atomic<uint64_t> group_commit_failures{0};
  std::atomic<uint64_t> transactions_aborted{0};
  std::atomic<int64_t> lag{-1};    // sum over assigned partitions; -1 unknown
  std::atomic<int> partitions{0};  // assigned partitions
  std::atomic<uint64_t> rebalances{0};
  std::atomic<uint64_t> batches{0};  // non-empty consumer batches processed
  // Records of partitions this instance does not own (a late batch of a
  // revoked partition): not processed, never given a task.
  std::atomic<uint64_t> unowned_records{0};
  // Records handed out twice by librdkafka and dropped (the consumer's
  // count, kafka::Consumer::redelivered_count).
  std::atomic<uint64_t> redelivered_records{0};
  // Customers loaded from the state store (cache misses of saved
  // customers): read by their event alone, or with their batch's misses.
  std::atomic<uint64_t> customer_single_loads{0};
  std::atomic<uint64_t> customer_batched_loads{0};
  // New customers that found no customer to evict and grew their task's
  // cache past its capacity (FeatureStore::over_capacity): the cache's
  // overshoot, which checkpoints begun early (memory_checkpoints) bound.
  std::atomic<uint64_t> customers_over_capacity{0};
  // Saved customers evicted because their task's cache was over its bytes
  // in the memory plan (FeatureStore::shed).
  std::atomic<uint64_t> customers_shed{0};
  // Model-sync records produced (models.sync_interval_ms > 0).
  std::atomic<uint64_t> model_sync_records{0};
  // Merges of the model-sync topic's statistics into global models, and
  // the input partitions the latest one covered (0 before the first).
  std::atomic<uint64_t> model_sync_merges{0};
  std::atomic<uint64_t> model_sync_partitions_merged{0};

  // Wall time to process one non-empty consumer batch (decode, features,
  // models, immediate outputs handed to the producer).
  DurationHistogram batch_duration{kBatchDurationBounds};
  // From the broker timestamp of a record (CreateTime: when its producer
  // made it) to the moment its outputs are handed to the producer (the
  // processors' FlushOutputs at each commit, where scores and alerts are
  // emitted). Sampled once per flush: the oldest record processed since the
  // previous flush, so each sample is the worst case of its interval.
  DurationHistogram event_to_output{kEventToOutputBounds};
  // By output kind: from the time of the input behind an output (its broker
  // timestamp; for the outputs of a refresh or a flush, the oldest record
  // since the previous one) to the brokers' acknowledgement of the output.
  std::array<OutputLatencyHistogram, schema::kOutputKindCount> output_latency{};

  // Checkpoints (the Checkpointer).
  DurationHistogram checkpoint_duration{kCheckpointDurationBounds};
  std::atomic<uint64_t> checkpoints{0};
  // Of those, begun early because a task's customer cache was under pressure
  // (FeatureStore::UnderPressure), not because the commit interval passed.
  std::atomic<uint64_t> memory_checkpoints{0};
  // Times the loop stopped taking input until a pending checkpoint was
  // written, a task's cache having nothing else left to evict
  // (DeliveryMode::HoldInput).
  std::atomic<uint64_t> input_holds{0};
  std::atomic<uint64_t> checkpoint_failures{0};
  std::atomic<int64_t> checkpoint_bytes{-1};          // size of the last checkpoint; -1 none
  std::atomic<int64_t> largest_checkpoint_bytes{-1};  // of the run's checkpoints; -1 none
  std::atomic<int64_t> last_checkpoint_unix_ms{-1};   // end of the last good one; -1 none
  // Steady-clock ms at which the checkpoint under way started; -1: none.
  std::atomic<int64_t> checkpoint_started_ms{-1};
  // Steady-clock ms of the first failed checkpoint since the last good one;
  // -1: the last one succeeded (or none yet).
  std::atomic<int64_t> checkpoint_failing_since_ms{-1};

  // Changelog topics: records produced, and restores.
  std::atomic<uint64_t> changelog_records{0};
  std::atomic<uint64_t> changelog_restored_records{0};
  std::atomic<uint64_t> changelog_restored_bytes{0};
  std::atomic<uint64_t> changelog_restores_in_progress{0};
};

// The prequential model quality aggregated over the assigned partitions.
// Counts are sums; each figure is the mean of the partitions' figures
// weighted by the counts behind it (exact for the RMSE, the mean squared
// distance and the anomaly rate; the label-weighted mean of per-partition
// AUCs for the AUC, which is what the per-partition models achieve).
struct ModelQualitySnapshot {
  int partitions = 0;  // partitions that contributed
  double churn_auc = 0.5;
  double churn_log_loss = 0.0;
  uint64_t churn_labels = 0;
  double warm_churn_auc = 0.5;
  uint64_t warm_churn_labels = 0;
  double value_rmse = 0.0;
  uint64_t value_labels = 0;
  double kmeans_mean_squared_distance = 0.0;
  uint64_t kmeans_points = 0;
  double anomaly_rate = 0.0;
  uint64_t anomaly_scored = 0;
  uint64_t customers = 0;
  uint64_t feature_store_bytes = 0;
  uint64_t customer_cache_bytes = 0;  // features + per-customer model state
  // Partitions by the state of their churn alert gate (alerts::ChurnGateState).
  std::array<int, 3> churn_gate_partitions{};
  // Model sync: the partitions scoring with global models, and the fewest
  // input partitions any of their global models covers (0 if none does).
  int global_model_partitions = 0;
  uint32_t global_model_parts_min = 0;
};

// One assigned partition's consumer lag.
struct PartitionLagSample {
  std::string topic;
  int32_t partition = 0;
  int64_t lag = -1;  // -1 unknown
};

// Liveness and readiness as the admin server reports them.
struct EngineHealth {
  bool live = false;   // the process is up and the engine loop is not stalled
  bool ready = false;  // live, running, partitions assigned, state restored
  std::string reason;  // why not (empty when live and ready)
};

class EngineProbe {
 public:
  EngineStats& stats() { return stats_; }
  const EngineStats& stats() const { return stats_; }

  // kafka::Producer's delivery observer (context: the probe): feeds
  // output_latency from an acknowledged output's OutputLatencyTag.
  static void OnOutputDelivered(void* probe, uint64_t tag);
  // Outputs produced inside transactions: read_committed consumers see them
  // at the commit, so an acknowledged output's latency is taken when its
  // transaction commits (OutputsCommitted), or dropped if it aborts. The
  // thread serving the producer's delivery reports only.
  void HoldOutputLatencyUntilCommit() { hold_until_commit_ = true; }
  void OutputsCommitted();
  void OutputsAborted() { held_tags_.clear(); }

  // The loop's life, for Health().
  enum class LoopState : int { kNotStarted, kRunning, kStopped };
  void SetLoopState(LoopState s) { loop_state_.store(s); }
  LoopState loop_state() const { return loop_state_.load(); }
  // The end of a loop iteration.
  void Heartbeat();
  // Readiness also waits for the state restore (and rebuilds).
  void SetStateRestored(bool restored) { state_restored_.store(restored); }
  bool state_restored() const { return state_restored_.load(); }

  // One checkpoint attempt: its duration, its size and whether it succeeded.
  void RecordCheckpoint(double seconds, uint64_t bytes, bool ok);
  void CheckpointStarted();
  // The checkpoint under way was given up for the stop, neither written nor
  // failed: no longer in progress, nothing counted.
  void CheckpointAbandoned();
  // A partition's changelog restore begins / ends (with what it read).
  void ChangelogRestoreStarted();
  void ChangelogRestoreEnded(uint64_t records, uint64_t bytes);

  // Thread-safe. `stall_after`: how long the loop may go without completing
  // an iteration, or a checkpoint may run or keep failing, before the engine
  // counts as stalled.
  EngineHealth Health(std::chrono::milliseconds stall_after) const;

  // Snapshots published by the engine thread (try_lock: a busy reader makes
  // it skip one publication, never wait).
  void PublishLag(std::vector<PartitionLagSample> lags);
  void PublishQuality(const ModelQualitySnapshot& quality);
  std::vector<PartitionLagSample> LagByPartition() const;
  ModelQualitySnapshot ModelQuality() const;

 private:
  void ObserveOutputLatency(uint64_t tag, int64_t now_ms);

  EngineStats stats_;
  bool hold_until_commit_ = false;
  std::vector<uint64_t> held_tags_;  // acknowledged, not yet committed (reused)
  std::atomic<LoopState> loop_state_{LoopState::kNotStarted};
  std::atomic<int64_t> heartbeat_ms_{0};  // steady clock, end of the last iteration
  std::atomic<bool> state_restored_{true};

  mutable std::mutex snapshot_mutex_;
  std::vector<PartitionLagSample> lag_by_partition_;
  ModelQualitySnapshot quality_;
};

}  // namespace crmstream::runtime
