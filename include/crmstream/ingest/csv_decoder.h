// Decodes CSV lines into validated Events, for replay and backfill from
// files. The header line names the columns after the JSON fields
// (event_id, customer_id, timestamp, type, channel, amount, currency, plan),
// in any order; unknown columns are ignored; `attributes` is not supported.
// Quoting follows RFC 4180 ("a ""quoted"" field", embedded commas). An empty
// cell means the field is absent. Validation and rejection reasons are the
// JSON decoder's (one validator, two front-ends); a line that is not valid
// CSV is rejected as malformed_csv.
//
// Each Decode copies the line into a buffer owned by the decoder (sized once
// for DecoderOptions::max_message_bytes); the Event's string_views point
// into it and are valid until the next Decode. No allocation per line.
// Not thread-safe: one decoder per thread.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string_view>

#include "crmstream/common/status.h"
#include "crmstream/ingest/decoder_options.h"
#include "crmstream/ingest/event.h"
#include "crmstream/ingest/rejection.h"

namespace crmstream::ingest {

class CsvEventDecoder {
 public:
  // Parses the header. InvalidArgument if a required column (event_id,
  // customer_id, timestamp, type) is missing, a column repeats, the header
  // has an `attributes` column, or `options` are invalid. A UTF-8 byte-order
  // mark and a trailing CR are ignored; names are trimmed of spaces.
  static Result<CsvEventDecoder> FromHeader(std::string_view header_line,
                                            DecoderOptions options = {});

  ~CsvEventDecoder();
  CsvEventDecoder(CsvEventDecoder&&) noexcept;
  CsvEventDecoder& operator=(CsvEventDecoder&&) noexcept;
  CsvEventDecoder(const CsvEventDecoder&) = delete;
  CsvEventDecoder& operator=(const CsvEventDecoder&) = delete;

  // Decodes one record (without its line terminator; a trailing CR is
  // ignored). The future-skew check, when enabled, uses the system clock.
  Rejection Decode(std::string_view line, Event* out);
  Rejection Decode(std::string_view line, int64_t now_ms, Event* out);

  size_t column_count() const;
  const DecoderOptions& options() const;

 private:
  struct Impl;
  explicit CsvEventDecoder(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace crmstream::ingest
