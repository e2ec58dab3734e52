// The engine: a consumer-group member over the input topics, one
// EventProcessor (a partition task) per assigned partition, outputs through
// an idempotent producer, state in a RocksDB store (<state_dir>/store).
//
// The run loop (stream_engine.cpp) polls a batch, hands each record to its
// task through the delivery mode (delivery_mode.h: at_least_once, or
// exactly_once over stamped outputs), and lets the mode commit what is due;
// the Checkpointer writes tasks' state and offsets to the store after their
// outputs are acknowledged; the TaskRestorer brings tasks back on
// assignment. What the engine reports about itself is in its EngineProbe.
//
// Threading: Run() executes on the calling thread, which owns the consumer,
// the producer, the state store writes and every partition task between
// batches; with worker_threads > 1 (at_least_once) each batch's records are
// processed by worker threads, each on its own tasks (runtime/worker_pool.h),
// and the calling thread waits for them. Nothing on the hot path is locked.
// probe(), queries() and state_store() may be used from any thread (the
// admin server).
#pragma once

#include <atomic>
#include <memory>
#include <string>

#include "crmstream/common/status.h"
#include "crmstream/config/engine_config.h"
#include "crmstream/pipeline/event_processor.h"
#include "crmstream/pipeline/memory_plan.h"
#include "crmstream/pipeline/pipeline_spec.h"
#include "crmstream/runtime/customer_queries.h"
#include "crmstream/runtime/engine_probe.h"
#include "crmstream/scoring/model_statistics.h"
#include "crmstream/state/state_store.h"

namespace rocksdb {
class Env;
}  // namespace rocksdb

namespace crmstream::runtime {

// How Run() ends besides the stop flag.
struct RunOptions {
  // Stop once every assigned input partition is at its end (lag 0) and
  // everything processed is checkpointed.
  bool until_caught_up = false;
};

class StreamEngine {
 public:
  // Connects to the cluster in `config.kafka` (bootstrap.servers must be
  // set: the caller starts the embedded cluster if there is none).
  // `state_env`: RocksDB's environment for the state store (nullptr: the
  // default; tests inject disk faults through it).
  static Result<std::unique_ptr<StreamEngine>> Create(
      const config::EngineConfig& config, const pipeline::PipelineSpec& pipeline,
      std::shared_ptr<rocksdb::Env> state_env = nullptr);
  ~StreamEngine();
  StreamEngine(const StreamEngine&) = delete;
  StreamEngine& operator=(const StreamEngine&) = delete;

  // Consumes and processes until `stop` becomes true, then drains within
  // config.shutdown_timeout_ms: flushes the producer, checkpoints, leaves
  // the group. Returns the error that stopped it, if any (e.g. outputs the
  // brokers never acknowledged), or the drain's.
  Status Run(const std::atomic<bool>& stop, const RunOptions& options = {});

  // Thread-safe.
  EngineProbe& probe();
  const EngineProbe& probe() const;
  const EngineStats& stats() const { return probe().stats(); }
  CustomerQueries& queries();
  const state::StateStore& state_store() const;
  // How state.memory_cap_mb is split (fixed after Create).
  const pipeline::MemoryPlan& memory_plan() const;
  // The bytes one checkpoint's batch may reach: the plan's part for
  // checkpoints over the copies of it held at once (fixed after Create).
  size_t checkpoint_batch_bytes() const;
  // The threads processing the partitions (worker_threads resolved; fixed
  // after Create).
  int worker_threads() const;

  // Engine thread only (or after Run returned): the processor of a partition.
  const pipeline::EventProcessor* processor(const std::string& topic, int32_t partition) const;
  // Engine thread only (or after Run returned), model sync on: the global
  // models as last merged from `<group_id>.model-sync` (nullptr before the
  // first merge, or with model sync off), and the next offset of the topic
  // to read (-1 before any record, or off).
  const scoring::ModelStatistics* merged_models() const;
  int64_t model_sync_offset() const;

 private:
  struct Impl;
  explicit StreamEngine(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace crmstream::runtime
