// Counters of one event processor. Each is written by its processing thread
// only and may be read by any thread (status line, metrics): single-writer
// relaxed atomics, so counting costs a plain store, no locked instruction.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>

#include "crmstream/alerts/churn_alert_policy.h"
#include "crmstream/ingest/event.h"
#include "crmstream/ingest/rejection.h"
#include "crmstream/pipeline/output_sink.h"

namespace crmstream::pipeline {

using alerts::kSeverityCount;

class SingleWriterCounter {
 public:
  void Add(uint64_t n = 1) {
    v_.store(v_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  uint64_t Get() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> v_{0};
};

struct ProcessorCounters {
  SingleWriterCounter received;    // records handed to the processor
  SingleWriterCounter accepted;    // decoded, valid, not duplicates
  SingleWriterCounter duplicates;  // valid, event_id already seen: counted once
  SingleWriterCounter rejected;    // sent to the dead-letter topic
  std::array<SingleWriterCounter, ingest::kEventTypeCount> by_type;
  std::array<SingleWriterCounter, 16> by_reason;  // indexed by RejectReason
  std::array<SingleWriterCounter, kOutputKindCount> outputs;
  // Published churn alerts by alerts::Severity (warning, high, critical).
  std::array<SingleWriterCounter, kSeverityCount> alerts_by_severity;
};

}  // namespace crmstream::pipeline
