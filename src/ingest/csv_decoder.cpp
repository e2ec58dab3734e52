#include "crmstream/ingest/csv_decoder.h"

#include <simdjson.h>

#include <charconv>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "crmstream/ingest/csv_record.h"
#include "event_validator.h"

namespace crmstream::ingest {
namespace {

using internal::RawKind;
using internal::RawValue;

std::string_view StripCr(std::string_view s) {
  if (!s.empty() && s.back() == '\r') s.remove_suffix(1);
  return s;
}

std::string_view TrimSpaces(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool IsIntegerText(std::string_view s) {
  size_t i = (!s.empty() && s[0] == '-') ? 1 : 0;
  if (i == s.size()) return false;
  for (; i < s.size(); ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
  }
  return true;
}

// CSV cells are all text: numbers are recognised for the fields where the
// JSON form would carry a number, so that the shared validator applies the
// same rules to both formats.
RawValue ClassifyCell(int field, std::string_view text) {
  RawValue v;
  if (text.empty()) return v;  // absent
  v.kind = RawKind::kString;
  v.text = text;
  if (field == internal::kFieldTimestamp && IsIntegerText(text)) {
    const auto r = std::from_chars(text.data(), text.data() + text.size(), v.integer);
    v.kind = r.ec == std::errc() ? RawKind::kInteger : RawKind::kBigInteger;
  } else if (field == internal::kFieldAmount) {
    double d = 0;
    const auto r = std::from_chars(text.data(), text.data() + text.size(), d);
    if (r.ptr == text.data() + text.size() &&
        (r.ec == std::errc() || r.ec == std::errc::result_out_of_range)) {
      v.kind = RawKind::kNumber;
      // Out-of-range magnitudes count as infinite (rejected as out_of_range).
      v.number = r.ec == std::errc() ? d : HUGE_VAL;
    }
  }
  return v;
}

}  // namespace

struct CsvEventDecoder::Impl {
  DecoderOptions options;
  std::vector<int> column_fields;  // FieldIndex per column, -1 when ignored
  std::unique_ptr<char[]> buffer;  // max_message_bytes
  internal::RawEvent raw;

  Rejection Decode(std::string_view line, int64_t now_ms, Event* out) {
    line = StripCr(line);
    if (line.size() > options.max_message_bytes) {
      return {RejectReason::kTooLarge, "", "longer than max_message_bytes (default 65536)"};
    }
    if (!simdjson::validate_utf8(line.data(), line.size())) {
      return {RejectReason::kMalformedCsv, "", "not valid UTF-8"};
    }
    std::memcpy(buffer.get(), line.data(), line.size());
    raw.Clear();
    const size_t expected = column_fields.size();
    size_t columns = 0;
    const char* error =
        SplitCsvInPlace(buffer.get(), line.size(), [&](size_t column, const CsvCell& cell) {
          columns = column + 1;
          if (column >= expected) return;
          const int field = column_fields[column];
          if (field >= 0) raw.fields[field] = ClassifyCell(field, cell.text);
        });
    if (error != nullptr) return {RejectReason::kMalformedCsv, "", error};
    if (columns != expected) {
      return {RejectReason::kMalformedCsv, "", "the number of cells differs from the header's"};
    }
    return internal::ValidateEvent(raw, options, now_ms, out);
  }
};

Result<CsvEventDecoder> CsvEventDecoder::FromHeader(std::string_view header_line,
                                                    DecoderOptions options) {
  CRM_RETURN_NOT_OK(options.Validate().WithContext("DecoderOptions"));
  header_line = StripCr(header_line);
  if (header_line.substr(0, 3) == "\xEF\xBB\xBF") header_line.remove_prefix(3);
  std::string header(header_line);
  std::vector<std::string> names;
  const char* error = SplitCsvInPlace(
      header.data(), header.size(),
      [&](size_t, const CsvCell& cell) { names.emplace_back(TrimSpaces(cell.text)); });
  if (error != nullptr) return Status::InvalidArgument(std::string("CSV header: ") + error);

  auto impl = std::make_unique<Impl>();
  impl->options = options;
  bool seen[internal::kFieldCount] = {};
  for (const std::string& name : names) {
    const int field = internal::FindField(name);
    if (field == internal::kFieldAttributes) {
      return Status::InvalidArgument("CSV header: the attributes column is not supported in CSV");
    }
    if (field >= 0) {
      if (seen[field]) return Status::InvalidArgument("CSV header: column '" + name + "' repeats");
      seen[field] = true;
    }
    impl->column_fields.push_back(field);
  }
  for (int required : {internal::kFieldEventId, internal::kFieldCustomerId,
                       internal::kFieldTimestamp, internal::kFieldType}) {
    if (!seen[required]) {
      return Status::InvalidArgument("CSV header: required column '" +
                                     std::string(internal::kFieldNames[required]) + "' is missing");
    }
  }
  impl->buffer.reset(new char[options.max_message_bytes]);
  return CsvEventDecoder(std::move(impl));
}

CsvEventDecoder::CsvEventDecoder(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
CsvEventDecoder::~CsvEventDecoder() = default;
CsvEventDecoder::CsvEventDecoder(CsvEventDecoder&&) noexcept = default;
CsvEventDecoder& CsvEventDecoder::operator=(CsvEventDecoder&&) noexcept = default;

Rejection CsvEventDecoder::Decode(std::string_view line, Event* out) {
  const int64_t now_ms = impl_->options.max_future_skew_ms > 0 ? internal::SystemNowMs() : 0;
  return impl_->Decode(line, now_ms, out);
}

Rejection CsvEventDecoder::Decode(std::string_view line, int64_t now_ms, Event* out) {
  return impl_->Decode(line, now_ms, out);
}

size_t CsvEventDecoder::column_count() const { return impl_->column_fields.size(); }
const DecoderOptions& CsvEventDecoder::options() const { return impl_->options; }

}  // namespace crmstream::ingest
