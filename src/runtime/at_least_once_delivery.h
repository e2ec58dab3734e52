// at_least_once: the processors write to the shared Kafka sink; alerts,
// segment changes and customer anomalies of a batch's customers leave after
// the batch; every commit interval all tasks flush their customer-scores
// records and a checkpoint of them all begins, which finishes in steps while
// processing goes on (Checkpointer::Begin); sooner when a task's customer
// cache fills with customers only a checkpoint makes evictable
// (FeatureStore::UnderPressure, checked after each consumed batch). A revocation, a new assignment
// and the stop finish it first. After a crash the records since the last
// checkpoint are processed again: their outputs may appear twice, the state
// is never counted twice.
//
// With worker threads (EngineCore::workers > 1) each task's processor writes
// to the task's own OutputBuffer on the worker processing it; the engine
// thread forwards the buffers to the Kafka sink after each batch, before
// any checkpoint step, so a checkpoint still waits for every output of the
// records it covers.
//
// Thread-safety: the engine thread, except Process and FinishTaskBatch,
// which run on the worker owning the task (never two for one task).
#pragma once

#include <atomic>
#include <string>
#include <vector>

#include "runtime/checkpointer.h"
#include "runtime/delivery_mode.h"

namespace crmstream::runtime {

// A task's outputs kept from its worker thread until the engine thread
// forwards them (the producer is the engine thread's). The buffers keep
// their capacity: after the first batches no output allocates.
class OutputBuffer final : public TaskDeliveryState, public pipeline::OutputSink {
 public:
  void Emit(OutputKind kind, std::string_view key, std::string_view value) override;
  // Every buffered output to `to`, in order, with its origin time; emptied.
  void ForwardTo(pipeline::OutputSink* to);
  // While set (engine thread only), outputs go to `to` at once, unbuffered.
  void set_direct(pipeline::OutputSink* to) { direct_ = to; }

 private:
  struct Entry {
    OutputKind kind;
    int64_t origin_ms;
    uint32_t key_bytes;
    uint32_t value_bytes;
  };
  std::string bytes_;
  std::vector<Entry> entries_;
  pipeline::OutputSink* direct_ = nullptr;
};

class AtLeastOnceDelivery final : public DeliveryMode {
 public:
  AtLeastOnceDelivery(EngineCore* core, Checkpointer* checkpointer);

  pipeline::OutputSink* PrepareTask(PartitionTask* task) override;
  Status BeforeRestore() override;
  Status AfterRestore(std::span<const RestoredTask> restored) override;
  Status Process(PartitionTask* task, const kafka::MessageView& m, int64_t wall_ms) override;
  int64_t RecordClock(const kafka::MessageView& m, int64_t wall_ms) const override;
  Status AfterBatch(bool had_records) override;
  Status Tick(Clock::time_point now, bool had_records) override;
  bool HoldInput(Clock::time_point now) override;
  void OnRevoked(std::span<const kafka::TopicPartition> revoked) override;
  Status Drain() override;
  bool Settled(const PartitionTask&) const override { return true; }
  bool SupportsWorkers() const override { return true; }
  void FinishTaskBatch(PartitionTask* task) override;

 private:
  // Flushes the customer-scores records of every task (or of `only`) to the
  // producer; the tasks with records since their checkpoint.
  std::vector<PartitionTask*> FlushDue(std::span<const kafka::TopicPartition> only = {});
  // Counted and logged; the caches' pressure waits an interval to retry.
  void CheckpointFailed(Clock::time_point now, const Status& st);
  // Whether `test` holds for a task's customer cache (FeatureStore::
  // UnderPressure: it asks for a checkpoint; Full: nothing left to evict).
  bool AnyTaskStore(bool (features::FeatureStore::*test)() const) const;
  // Whether the customers changed since the last checkpoint, all tasks
  // together, are as many as one checkpoint may take (CheckpointBudget).
  bool CheckpointBudgetReached() const;
  // The task's buffered outputs (worker threads) to the Kafka sink.
  void Forward(PartitionTask* task);

  EngineCore* core_;
  Checkpointer* checkpointer_;
  Clock::time_point last_commit_ = Clock::now();
  Clock::time_point last_idle_commit_ = Clock::now();
  // No checkpoint for the caches' pressure before this (one failed).
  Clock::time_point memory_retry_{};
  // Since when input is held for a pending checkpoint (HoldInput); max:
  // not held.
  Clock::time_point held_since_ = Clock::time_point::max();
  // Broker timestamp; -1: nothing since the last flush. Set by the first
  // record a worker processes after a flush.
  std::atomic<int64_t> oldest_unflushed_ms_{-1};
};

}  // namespace crmstream::runtime
