// Replay: a JSON-lines or CSV file through the same processor the engine
// uses, without Kafka. For backfill, for evaluation and for the replay
// throughput benchmark. Single-threaded, one processor (as one partition).
#pragma once

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "crmstream/common/status.h"
#include "crmstream/pipeline/event_processor.h"
#include "crmstream/pipeline/output_sink.h"

namespace crmstream::pipeline {

enum class InputFormat : uint8_t { kAuto, kJsonLines, kCsv };

struct ReplayOptions {
  std::filesystem::path input;
  InputFormat format = InputFormat::kAuto;  // auto: by extension (.csv, else JSON lines)
  // Outputs are flushed (customers scored, alerts decided, customer-scores
  // coalesced) every this many records, as the engine flushes at each
  // commit; 0 (the default): only once, at the end of the file, which
  // yields one customer-scores record per customer.
  uint64_t flush_every_records = 0;
  // Scores, alerts, segment changes and customer anomalies are refreshed
  // every this many records, as the engine does after each consumed batch
  // (its default batch size); 0: only at flushes.
  uint64_t refresh_every_records = 2048;
  // Each JSON line is handed to EventProcessor::LookAhead while the one
  // before it is processed, so that its decoding is done and the state it
  // touches is being fetched into the CPU's cache meanwhile. The outcome is
  // the same either way; false processes each line as it is read. CSV
  // lines are decoded here, not by the processor: they are not looked
  // ahead at. Default true.
  bool look_ahead = true;
  // The records' clock (EventProcessor::Process's now_ms: the future-skew
  // check, dead letters); unset (the default): the wall clock when the
  // replay starts.
  std::optional<int64_t> now_ms;
  // Called about every 64k records with (bytes done, total bytes).
  std::function<void(uint64_t, uint64_t)> progress;
};

struct ReplayStats {
  uint64_t records = 0;
  uint64_t accepted = 0;
  uint64_t duplicates = 0;
  uint64_t rejected = 0;
  double seconds = 0;
};

// Replays the whole file into `processor`.
Result<ReplayStats> Replay(const ReplayOptions& options, EventProcessor* processor);

// Writes each output kind to `<dir>/<kind>.jsonl`, one JSON value per line.
class FileSink final : public OutputSink {
 public:
  static Result<std::unique_ptr<FileSink>> Open(const std::filesystem::path& dir);
  void Emit(OutputKind kind, std::string_view key, std::string_view value) override;
  Status Close();

 private:
  explicit FileSink(std::filesystem::path dir) : dir_(std::move(dir)) {}
  std::filesystem::path dir_;
  std::array<std::ofstream, kOutputKindCount> files_;
};

}  // namespace crmstream::pipeline
