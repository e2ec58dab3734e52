// at_least_once: the processors write to the shared Kafka sink; alerts,
// segment changes and customer anomalies of a batch's customers leave after
// the batch; every commit interval all tasks flush their customer-scores
// records and a checkpoint of them all begins, which finishes in steps while
// processing goes on (Checkpointer::Begin). A revocation, a new assignment
// and the stop finish it first. After a crash the records since the last
// checkpoint are processed again: their outputs may appear twice, the state
// is never counted twice.
//
// Thread-safety: the engine thread only.
#pragma once

#include <vector>

#include "runtime/checkpointer.h"
#include "runtime/delivery_mode.h"

namespace crmstream::runtime {

class AtLeastOnceDelivery final : public DeliveryMode {
 public:
  AtLeastOnceDelivery(EngineCore* core, Checkpointer* checkpointer);

  pipeline::OutputSink* PrepareTask(PartitionTask* task) override;
  Status BeforeRestore() override;
  Status AfterRestore(std::span<const RestoredTask>) override { return Status::OK(); }
  Status Process(PartitionTask* task, const kafka::MessageView& m, int64_t wall_ms) override;
  Status AfterBatch(bool had_records) override;
  Status Tick(Clock::time_point now, bool had_records) override;
  void OnRevoked(std::span<const kafka::TopicPartition> revoked) override;
  Status Drain() override;
  bool Settled(const PartitionTask&) const override { return true; }

 private:
  // Flushes the customer-scores records of every task (or of `only`) to the
  // producer; the tasks with records since their checkpoint.
  std::vector<PartitionTask*> FlushDue(std::span<const kafka::TopicPartition> only = {});

  EngineCore* core_;
  Checkpointer* checkpointer_;
  Clock::time_point last_commit_ = Clock::now();
  Clock::time_point last_idle_commit_ = Clock::now();
  int64_t oldest_unflushed_ms_ = -1;  // broker timestamp; -1: nothing since the last flush
};

}  // namespace crmstream::runtime
