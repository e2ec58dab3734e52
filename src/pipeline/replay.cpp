#include "crmstream/pipeline/replay.h"

#include <chrono>

#include "crmstream/common/clock.h"
#include "crmstream/ingest/csv_decoder.h"
#include "crmstream/ingest/line_reader.h"

namespace crmstream::pipeline {

Result<ReplayStats> Replay(const ReplayOptions& options, EventProcessor* processor) {
  InputFormat format = options.format;
  if (format == InputFormat::kAuto) {
    format = options.input.extension() == ".csv" ? InputFormat::kCsv : InputFormat::kJsonLines;
  }
  const bool look_ahead = options.look_ahead && format == InputFormat::kJsonLines;
  std::error_code ec;
  const uint64_t total_bytes = std::filesystem::file_size(options.input, ec);
  ingest::LineReaderOptions reader_options;
  reader_options.keep_previous_line = look_ahead;
  CRM_ASSIGN_OR_RETURN(ingest::LineReader reader,
                       ingest::LineReader::Open(options.input, reader_options));

  const std::string path = options.input.string();
  ingest::SourcePosition source{path, -1, 0};
  // The line being processed and, when looking ahead, the next one, in turn.
  ingest::Line lines[2];
  size_t current = 0;
  ingest::Event event;
  std::optional<ingest::CsvEventDecoder> csv;
  uint64_t bytes_done = 0;
  ReplayStats stats;
  const auto start = std::chrono::steady_clock::now();
  // One clock for the whole file: LookAhead's record is only taken by
  // Process when their clocks match.
  const int64_t now_ms = options.now_ms ? *options.now_ms : WallMs();

  Result<bool> more = reader.Next(&lines[current]);
  if (format == InputFormat::kCsv && more.ok() && *more) {
    const ingest::Line& header_line = lines[current];
    bytes_done += header_line.text.size() + 1;
    auto header =
        ingest::CsvEventDecoder::FromHeader(header_line.text, processor->options().decoder);
    if (!header.ok())
      return header.status().WithContext(path + ":" + std::to_string(header_line.number));
    csv.emplace(std::move(header).value());
    more = reader.Next(&lines[current]);
  }
  while (more.ok() && *more) {
    const ingest::Line& line = lines[current];
    // Read before `line` is processed, which keep_previous_line leaves in
    // place. A read error is returned once `line` has been processed, as
    // without the look-ahead.
    Result<bool> ahead = false;
    if (look_ahead) {
      ahead = reader.Next(&lines[current ^ 1]);
      if (ahead.ok() && *ahead) processor->LookAhead(lines[current ^ 1].text, now_ms);
    }
    bytes_done += line.text.size() + 1;
    source.offset = line.number;
    ProcessOutcome outcome;
    if (csv) {
      ingest::Rejection r = csv->Decode(line.text, now_ms, &event);
      outcome = processor->ProcessDecoded(r, event, line.text, source, now_ms);
    } else {
      outcome = processor->Process(line.text, source, now_ms);
    }
    ++stats.records;
    switch (outcome) {
      case ProcessOutcome::kAccepted:
        ++stats.accepted;
        break;
      case ProcessOutcome::kDuplicate:
        ++stats.duplicates;
        break;
      case ProcessOutcome::kRejected:
        ++stats.rejected;
        break;
    }
    if (options.flush_every_records != 0 && stats.records % options.flush_every_records == 0) {
      processor->FlushOutputs();
    } else if (options.refresh_every_records != 0 &&
               stats.records % options.refresh_every_records == 0) {
      processor->RefreshScores();
    }
    if (options.progress && (stats.records & 0xFFFF) == 0)
      options.progress(bytes_done, total_bytes);
    if (look_ahead) {
      more = std::move(ahead);
      current ^= 1;
    } else {
      more = reader.Next(&lines[current]);
    }
  }
  if (!more.ok()) return more.status();
  processor->FlushOutputs();
  if (options.progress) options.progress(total_bytes, total_bytes);
  stats.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return stats;
}

Result<std::unique_ptr<FileSink>> FileSink::Open(const std::filesystem::path& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Status::IOError(dir.string() + ": " + ec.message());
  auto sink = std::unique_ptr<FileSink>(new FileSink(dir));
  for (int i = 0; i < kOutputKindCount; ++i) {
    auto path = dir / (std::string(kOutputKindNames[i]) + ".jsonl");
    sink->files_[i].open(path, std::ios::out | std::ios::trunc | std::ios::binary);
    if (!sink->files_[i]) return Status::IOError(path.string() + ": cannot open for writing");
  }
  return sink;
}

void FileSink::Emit(OutputKind kind, std::string_view, std::string_view value) {
  auto& f = files_[static_cast<int>(kind)];
  f.write(value.data(), static_cast<std::streamsize>(value.size()));
  f.put('\n');
}

Status FileSink::Close() {
  for (int i = 0; i < kOutputKindCount; ++i) {
    files_[i].flush();
    if (!files_[i]) {
      return Status::IOError((dir_ / kOutputKindNames[i]).string() + ".jsonl: write failed");
    }
    files_[i].close();
  }
  return Status::OK();
}

}  // namespace crmstream::pipeline
