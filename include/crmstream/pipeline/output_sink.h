// Where the pipeline's results go. The processor writes each output record
// (key + JSON value) to an OutputSink: Kafka topics in the engine, files or
// nothing at all for replay and benchmarks, a recording sink in tests.
//
// A sink is called from one processing thread; implementations document
// their own thread-safety.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

#include "crmstream/schema/output_kind.h"

namespace crmstream::pipeline {

using schema::kOutputKindCount;
using schema::kOutputKindNames;
using schema::OutputKind;
using schema::OutputKindName;

class OutputSink {
 public:
  virtual ~OutputSink() = default;
  // `key` and `value` are only valid during the call: copy what must outlive it.
  virtual void Emit(OutputKind kind, std::string_view key, std::string_view value) = 0;

  // The timestamp (ms) of the input behind the next outputs: the record
  // being processed, or the oldest of those whose outputs a refresh or a
  // flush emits. The processor sets it; the engine's sinks measure each
  // output's latency from it. 0: unknown.
  void set_origin_ms(int64_t ms) { origin_ms_ = ms; }
  int64_t origin_ms() const { return origin_ms_; }

 protected:
  int64_t origin_ms_ = 0;
};

// Counts records and drops them: replay benchmarks measure the pipeline, not
// the disk.
class DiscardingSink final : public OutputSink {
 public:
  void Emit(OutputKind kind, std::string_view, std::string_view value) override {
    ++records_[static_cast<int>(kind)];
    bytes_ += value.size();
  }
  uint64_t records(OutputKind kind) const { return records_[static_cast<int>(kind)]; }
  uint64_t bytes() const { return bytes_; }

 private:
  std::array<uint64_t, kOutputKindCount> records_{};
  uint64_t bytes_ = 0;
};

}  // namespace crmstream::pipeline
