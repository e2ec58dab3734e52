// The engine: a consumer-group member over the input topics, one
// EventProcessor (a partition task) per assigned partition, outputs through
// an idempotent producer, state in a RocksDB store (<state_dir>/store).
//
// Checkpoints: a task's state (its unsaved customers, partition-wide models,
// schedules, dedup window) and its next input offset go to the store in one
// atomic write, always after every output of the checkpointed records is
// acknowledged by the brokers. On assignment a task is rebuilt from its
// checkpoint and consumption resumes from the checkpointed offset (the
// store's offset wins over the group's committed one, which is only
// committed after the store for monitoring).
//
// Delivery (config processing.guarantee, README "Delivery semantics"):
// - at_least_once: every commit interval all tasks flush their outputs and
//   are checkpointed together. After a crash the records since the last
//   checkpoint are processed again: their outputs may appear twice; the
//   state is never counted twice.
// - exactly_once: processing is made a function of the input alone. Refresh
//   points ("blocks": scores, alerts, customer-scores records) are fixed by
//   the records' broker timestamps (one block per commit interval of
//   CreateTime, and at most kMaxBlockRecords offsets); "now" is the record's
//   timestamp; a block closed for wall-clock reasons (an idle, caught-up
//   partition; shutdown) is first logged in the store, so a replay closes it
//   at the same offset. A task is checkpointed after a block closes. On
//   restart it re-processes from its checkpoint, regenerating the same
//   outputs with the same sequence numbers, and drops those its predecessor
//   already delivered (exactly_once.h).
//
// Threading: Run() executes on the calling thread, which owns the consumer,
// the producer, the state store writes and every partition task; nothing on
// the hot path is locked. stats(), Health(), LagByPartition(),
// ModelQuality(), SubmitCustomerQuery() and the Record*/Set* feeds may be
// called from any thread (the admin HTTP server). What they share with the
// engine thread is either a relaxed atomic or a small snapshot the engine
// thread publishes with try_lock, so the engine loop never waits for a reader.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "crmstream/config/engine_config.h"
#include "crmstream/kafka/consumer.h"
#include "crmstream/kafka/producer.h"
#include "crmstream/pipeline/event_processor.h"
#include "crmstream/pipeline/exactly_once.h"
#include "crmstream/pipeline/kafka_wiring.h"
#include "crmstream/state/state_store.h"

namespace crmstream::pipeline {

// A histogram of durations (seconds) over fixed bucket bounds. Observe() is
// one relaxed fetch_add per bucket, count and sum, so any thread may feed it
// (it is fed once per batch or per checkpoint, never per event); any thread
// may read it. A reader may see a sample in a bucket before its sum: the
// metrics layer derives the count from the buckets so the exposition stays
// self-consistent.
class DurationHistogram {
 public:
  static constexpr size_t kMaxBounds = 20;
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
inline constexpr std::array<double, 14> kCheckpointDurationBounds = {
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0};

// What RocksDB's memory is spent on (rocksdb::MemoryUtil's split).
enum class RocksDbMemoryKind : uint8_t { kMemtables = 0, kTableReaders, kBlockCache };
inline constexpr int kRocksDbMemoryKindCount = 3;
inline constexpr std::array<std::string_view, kRocksDbMemoryKindCount> kRocksDbMemoryKindNames = {
    "memtables", "table_readers", "block_cache"};

// Totals published by the engine thread after every batch, plus the feeds
// of the state store. Every field is an atomic any thread may read.
struct EngineStats {
  std::atomic<uint64_t> received{0};
  std::atomic<uint64_t> accepted{0};
  std::atomic<uint64_t> duplicates{0};
  std::atomic<uint64_t> rejected{0};
  std::array<std::atomic<uint64_t>, ingest::kEventTypeCount> accepted_by_type{};
  // Indexed by ingest::RejectReason.
  std::array<std::atomic<uint64_t>, 16> rejected_by_reason{};
  std::array<std::atomic<uint64_t>, kOutputKindCount> outputs{};
  // Churn alerts by alerts::Severity (the processors count each published
  // alert under its severity).
  std::array<std::atomic<uint64_t>, alerts::kSeverityCount> churn_alerts{};
  std::atomic<uint64_t> delivered{0};  // output records acknowledged by the brokers
  // exactly_once: regenerated outputs not produced again because a
  // predecessor had delivered them before it crashed.
  std::atomic<uint64_t> suppressed_outputs{0};
  std::atomic<uint64_t> delivery_failures{0};
  std::atomic<uint64_t> commits{0};
  std::atomic<uint64_t> commit_failures{0};  // commits skipped (flush or commit error)
  std::atomic<int64_t> lag{-1};              // sum over assigned partitions; -1 unknown
  std::atomic<int> partitions{0};            // assigned partitions
  std::atomic<uint64_t> rebalances{0};
  std::atomic<uint64_t> batches{0};  // non-empty consumer batches processed

  // Wall time to process one non-empty consumer batch (decode, features,
  // models, immediate outputs handed to the producer).
  DurationHistogram batch_duration{kBatchDurationBounds};
  // From the broker timestamp of a record (CreateTime: when its producer
  // made it) to the moment its outputs are handed to the producer (the
  // processors' FlushOutputs at each commit, where scores and alerts are
  // emitted). Sampled once per flush: the oldest record processed since the
  // previous flush, so each sample is the worst case of its interval.
  DurationHistogram event_to_output{kEventToOutputBounds};

  // Fed by the state store (StreamEngine::RecordCheckpoint).
  DurationHistogram checkpoint_duration{kCheckpointDurationBounds};
  std::atomic<uint64_t> checkpoints{0};
  std::atomic<uint64_t> checkpoint_failures{0};
  std::atomic<int64_t> checkpoint_bytes{-1};         // size of the last checkpoint; -1 none
  std::atomic<int64_t> last_checkpoint_unix_ms{-1};  // end of the last good one; -1 none
  // Steady-clock ms at which the checkpoint under way started; -1: none.
  std::atomic<int64_t> checkpoint_started_ms{-1};
  // Steady-clock ms of the first failed checkpoint since the last good one;
  // -1: the last one succeeded (or none yet).
  std::atomic<int64_t> checkpoint_failing_since_ms{-1};
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
};

// Liveness and readiness as the admin server reports them.
struct EngineHealth {
  bool live = false;   // the process is up and the engine loop is not stalled
  bool ready = false;  // live, running, partitions assigned, state restored
  std::string reason;  // why not (empty when live and ready)
};

// A read of one customer's current record, answered by the engine thread
// between batches. Poll done() (acquire); status() and json() are set before
// done() turns true and never change afterwards.
class CustomerQuery {
 public:
  explicit CustomerQuery(std::string customer_id) : customer_id_(std::move(customer_id)) {}
  const std::string& customer_id() const { return customer_id_; }
  bool done() const { return done_.load(std::memory_order_acquire); }
  // OK, NotFound (unknown customer) or Unavailable (engine stopped).
  const Status& status() const { return status_; }
  // The customer's record, the same JSON as its crm.customer-scores record
  // plus "topic" and "partition" of the task that owns it.
  const std::string& json() const { return json_; }

 private:
  friend class StreamEngine;
  void Finish(Status status) {
    status_ = std::move(status);
    done_.store(true, std::memory_order_release);
  }
  std::string customer_id_;
  Status status_;
  std::string json_;
  std::atomic<bool> done_{false};
};

// How Run() ends besides the stop flag.
struct RunOptions {
  // Stop once every assigned input partition is at its end (lag 0) and, in
  // exactly-once mode, its last block is closed and checkpointed.
  bool until_caught_up = false;
};

class StreamEngine final : public kafka::RebalanceListener {
 public:
  // Largest block in exactly-once mode, in input offsets (a block also ends
  // when its records' broker timestamps enter the next commit interval).
  static constexpr int64_t kMaxBlockRecords = 65536;

  // Connects to the cluster in `config.kafka` (bootstrap.servers must be
  // set: the caller starts the embedded cluster if there is none).
  // `state_env`: RocksDB's environment for the state store (nullptr: the
  // default; tests inject disk faults through it).
  static Result<std::unique_ptr<StreamEngine>> Create(
      const config::EngineConfig& config, const config::PipelineSpec& pipeline,
      std::shared_ptr<rocksdb::Env> state_env = nullptr);
  ~StreamEngine() override;

  // Consumes and processes until `stop` becomes true, then drains: flushes
  // the producer, commits offsets and leaves the group. Returns the error
  // that stopped it, if any (e.g. a fatal producer error).
  Status Run(const std::atomic<bool>& stop, const RunOptions& options = {});

  const EngineStats& stats() const { return stats_; }

  // Thread-safe. `stall_after`: how long the loop may go without completing
  // an iteration before the engine counts as stalled (an iteration can wait
  // for the brokers for up to the 30 s flush timeout).
  EngineHealth Health(std::chrono::milliseconds stall_after) const;
  // Thread-safe. Readiness also waits for the state store's restore; it
  // calls SetStateRestored(false) before restoring and true once done.
  // Default true (no state store).
  void SetStateRestored(bool restored) { state_restored_.store(restored); }
  // Thread-safe. The lag of every assigned partition as of the last refresh
  // (every 500 ms).
  std::vector<kafka::PartitionLag> LagByPartition() const;
  // Thread-safe. Refreshed by the engine thread every second.
  ModelQualitySnapshot ModelQuality() const;

  // Thread-safe. Queues a read of one customer's current record; the engine
  // thread answers it between batches (one relaxed load per batch when
  // nothing is queued). Unavailable when the loop is not running or
  // kMaxQueuedQueries are already waiting.
  static constexpr size_t kMaxQueuedQueries = 64;
  Result<std::shared_ptr<const CustomerQuery>> SubmitCustomerQuery(std::string customer_id);

  // Feeds of the state store; thread-safe.
  // One checkpoint attempt: its duration, the bytes it wrote (its size) and
  // whether it succeeded.
  void RecordCheckpoint(double seconds, uint64_t bytes, bool ok);

  // Engine thread only (or after Run returned): the processor of a partition.
  const EventProcessor* processor(const std::string& topic, int32_t partition) const;
  // The state store (open for the engine's lifetime).
  const state::StateStore& state_store() const { return *store_; }

 private:
  using Clock = std::chrono::steady_clock;
  struct PartitionTask {
    std::unique_ptr<StampingSink> stamping;  // exactly_once: this task's sink
    std::unique_ptr<EventProcessor> processor;
    state::PartitionKey key;
    int64_t next_offset = -1;          // offset after the last processed record
    int64_t committed_offset = -1;     // last next-offset committed to the group
    int64_t checkpointed_offset = -1;  // next-offset of the last checkpoint
    Clock::time_point last_checkpoint{};
    // exactly_once: records processed since the block closed, and the last
    // record's broker-time slot.
    bool block_open = false;
    int64_t block_slot = 0;
    int64_t last_record_ms = 0;         // steady clock, when its last record came
    std::deque<int64_t> logged_closes;  // replay: close the block at these next-offsets
    OutputPositions positions;          // where this task's later outputs can land
    // Rebuilding lost state from the input's beginning up to this offset
    // (the group's committed one); -1: not rebuilding.
    int64_t rebuild_until = -1;
    // Counters of this task already published into stats_.
    uint64_t published_received = 0, published_accepted = 0, published_duplicates = 0,
             published_rejected = 0;
    std::array<uint64_t, kOutputKindCount> published_outputs{};
    std::array<uint64_t, ingest::kEventTypeCount> published_by_type{};
    std::array<uint64_t, 16> published_by_reason{};
    std::array<uint64_t, kSeverityCount> published_alerts{};
    uint64_t published_suppressed = 0;
  };

  StreamEngine(config::EngineConfig config, ProcessorOptions processor_options);
  void OnAssigned(std::span<kafka::TopicPartitionOffset> partitions) override;
  void OnRevoked(std::span<const kafka::TopicPartition> partitions) override;
  Status RestoreTasks(std::span<kafka::TopicPartitionOffset> partitions);
  PartitionTask& TaskFor(std::string_view topic, int32_t partition);
  PartitionTask& NewTask(const kafka::TopicPartition& tp);
  // at_least_once: flushes outputs, then checkpoints every task (or those
  // of `only`, when given).
  Status CommitProcessed(const std::vector<kafka::TopicPartition>* only = nullptr);
  // Writes the tasks' checkpoint after the producer has delivered
  // everything, then commits their offsets to the group.
  Status Checkpoint(std::span<PartitionTask* const> tasks);
  // exactly_once: closes the task's block (refresh, customer-scores);
  // checkpoints it when the commit interval has passed or `checkpoint`.
  Status CloseBlock(PartitionTask* task, bool checkpoint);
  // exactly_once: a close decided by the wall clock, logged first.
  Status CloseBlockLogged(const kafka::TopicPartition& tp, PartitionTask* task);
  Status CloseIdleBlocks(bool all);
  bool CaughtUp() const;
  bool Rebuilding() const;
  // Reports rebuild progress; marks the state restored once all are done.
  void TrackRebuilds();
  // Records of the partition not processed yet; -1 while unknown.
  int64_t TaskLag(const kafka::TopicPartition& tp, const PartitionTask& task) const;
  void PublishStats();
  void RefreshLag();
  void RefreshQuality();
  void AnswerQueries();
  void FailQueries();

  config::EngineConfig config_;
  ProcessorOptions processor_options_;
  bool exactly_once_ = false;
  bool until_caught_up_ = false;
  bool rebuilding_ = false;
  // Run()'s stop flag: cancels a checkpoint that waits on the store.
  const std::atomic<bool>* stop_ = nullptr;
  // After a stop: the final flush and checkpoint end by this time.
  bool draining_ = false;
  Clock::time_point drain_deadline_ = Clock::time_point::max();
  Clock::time_point last_rebuild_report_{};
  kafka::ClientConfig client_;
  OutputPartitionCounts output_partitions_{};
  std::unique_ptr<state::StateStore> store_;
  std::optional<state::CheckpointBatch> checkpoint_batch_;
  std::string checkpoint_scratch_;
  std::unique_ptr<kafka::Producer> producer_;
  std::unique_ptr<KafkaSink> sink_;
  std::unique_ptr<kafka::Consumer> consumer_;
  std::map<kafka::TopicPartition, PartitionTask> tasks_;
  PartitionTask* last_task_ = nullptr;  // most batches come from one partition
  int64_t oldest_unflushed_ms_ = -1;    // broker timestamp; -1: nothing since the last flush
  kafka::TopicPartition last_key_;
  EngineStats stats_;
  Status rebalance_error_;
  Status fatal_;  // stops the loop: outputs could not be delivered
  uint64_t delivery_failures_seen_ = 0;

  enum class LoopState : int { kNotStarted, kRunning, kStopped };
  std::atomic<LoopState> loop_state_{LoopState::kNotStarted};
  std::atomic<int64_t> loop_heartbeat_ms_{0};  // steady clock, end of the last iteration
  std::atomic<bool> state_restored_{true};

  // Snapshots for other threads: written with try_lock by the engine thread.
  mutable std::mutex snapshot_mutex_;
  std::vector<kafka::PartitionLag> lag_by_partition_;
  ModelQualitySnapshot quality_;

  std::mutex query_mutex_;
  std::vector<std::shared_ptr<CustomerQuery>> queries_;
  std::atomic<bool> queries_pending_{false};
  std::string query_scratch_;
};

}  // namespace crmstream::pipeline
