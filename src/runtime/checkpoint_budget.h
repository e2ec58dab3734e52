// How many changed customers one checkpoint may take, from the memory plan's
// part for checkpoints (pipeline/memory_plan.h). A checkpoint's encoded
// changes are held several times at once: the encoder's per-task batches
// (with worker threads), the write batch, and the changelog records until
// the brokers acknowledge them (librdkafka's copy and a header each, about
// as much again). So one checkpoint's batch may reach the part divided by
// those copies; the engine begins a checkpoint early when the customers
// changed since the last one would encode to more, and holds the input
// while one is pending and the next has reached it.
//
// What an encoded customer costs (its features, its models' state, its
// label deadline) is learnt from the checkpoints themselves: up at once,
// down slowly, and only from checkpoints of many customers, where the
// partition-wide state (models, schedules, the dedup window's changes) is
// spread thin.
//
// Thread-safety: the engine thread only.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

namespace crmstream::runtime {

class CheckpointBudget {
 public:
  // Before the first checkpoint of many customers, from above: a customer
  // with every model encoded to about 630 bytes in a world of 30,000
  // (tests/runtime/memory_cap_test.cpp) and about 300 at 10M customers.
  static constexpr double kInitialBytesPerCustomer = 1024;
  // Checkpoints of fewer customers teach nothing.
  static constexpr size_t kMinCustomersObserved = 1024;

  CheckpointBudget() = default;  // no bound
  // `part_bytes`: the plan's part; `copies`: how many times a checkpoint's
  // bytes are held at once.
  CheckpointBudget(size_t part_bytes, int copies)
      : batch_bytes_(part_bytes / static_cast<size_t>(std::max(1, copies))) {}

  // A checkpoint of `customers` changed customers encoded to `bytes`.
  void Observe(size_t bytes, size_t customers) {
    if (customers < kMinCustomersObserved) return;
    const double per = static_cast<double>(bytes) / static_cast<double>(customers);
    bytes_per_customer_ =
        per > bytes_per_customer_ ? per : 0.875 * bytes_per_customer_ + 0.125 * per;
  }

  // The most bytes one checkpoint's batch should hold (SIZE_MAX: no bound).
  size_t batch_bytes() const { return batch_bytes_; }
  // Changed customers one checkpoint may take, at least one.
  size_t customers() const {
    if (batch_bytes_ == SIZE_MAX) return SIZE_MAX;
    return std::max<size_t>(
        1, static_cast<size_t>(static_cast<double>(batch_bytes_) / bytes_per_customer_));
  }
  bool Reached(size_t changed_customers) const { return changed_customers >= customers(); }
  double bytes_per_customer() const { return bytes_per_customer_; }

 private:
  size_t batch_bytes_ = SIZE_MAX;
  double bytes_per_customer_ = kInitialBytesPerCustomer;
};

}  // namespace crmstream::runtime
