#include "crmstream/ingest/dead_letter.h"

#include <simdjson.h>

#include "crmstream/common/json_writer.h"

namespace crmstream::ingest {
namespace {

// Length of the longest prefix of `s` (at most `limit` bytes) that is valid
// UTF-8, or npos if cutting at a character boundary does not make it valid.
size_t Utf8PrefixLength(std::string_view s, size_t limit) {
  if (s.size() <= limit) {
    return simdjson::validate_utf8(s.data(), s.size()) ? s.size() : std::string_view::npos;
  }
  // A cut can split one character of up to 4 bytes: back off at most 3.
  for (size_t back = 0; back < 4 && back <= limit; ++back) {
    if (simdjson::validate_utf8(s.data(), limit - back)) return limit - back;
  }
  return std::string_view::npos;
}

}  // namespace

void AppendBase64(std::string_view bytes, std::string* out) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  size_t n = bytes.size();
  while (n >= 3) {
    const uint32_t v = (uint32_t{p[0]} << 16) | (uint32_t{p[1]} << 8) | p[2];
    const char quad[4] = {kAlphabet[v >> 18], kAlphabet[(v >> 12) & 63], kAlphabet[(v >> 6) & 63],
                          kAlphabet[v & 63]};
    out->append(quad, 4);
    p += 3;
    n -= 3;
  }
  if (n > 0) {
    const uint32_t v = (uint32_t{p[0]} << 16) | (n == 2 ? uint32_t{p[1]} << 8 : 0);
    const char quad[4] = {kAlphabet[v >> 18], kAlphabet[(v >> 12) & 63],
                          n == 2 ? kAlphabet[(v >> 6) & 63] : '=', '='};
    out->append(quad, 4);
  }
}

DeadLetterRecord::DeadLetterRecord(size_t max_original_bytes)
    : max_original_bytes_(max_original_bytes) {}

std::string_view DeadLetterRecord::Build(const Rejection& rejection, const SourcePosition& source,
                                         std::string_view original, int64_t received_at_ms) {
  json_.clear();
  JsonWriter w(&json_);
  w.BeginObject();
  w.Field("reason", RejectReasonName(rejection.code));
  w.Field("field", rejection.field);
  // "<field>: <detail>" reads well on its own in a dead-letter viewer.
  scratch_.clear();
  if (!rejection.field.empty()) {
    scratch_.append(rejection.field);
    scratch_.append(": ");
  }
  scratch_.append(rejection.detail.empty() ? RejectReasonDescription(rejection.code)
                                           : rejection.detail);
  w.Field("detail", std::string_view(scratch_));
  w.Key("source");
  w.BeginObject();
  w.Field("topic", source.topic);
  w.Field("partition", source.partition);
  w.Field("offset", source.offset);
  w.EndObject();

  const size_t limit = std::min(original.size(), max_original_bytes_);
  const size_t utf8_length = Utf8PrefixLength(original, limit);
  if (utf8_length != std::string_view::npos) {
    w.Field("original", original.substr(0, utf8_length));
  } else {
    w.Key("original_base64");
    // Base64 never needs escaping: append the quoted text directly.
    scratch_.clear();
    AppendBase64(original.substr(0, limit), &scratch_);
    w.String(scratch_);
  }
  const bool truncated = utf8_length != std::string_view::npos ? utf8_length < original.size()
                                                               : limit < original.size();
  w.Field("original_size", static_cast<int64_t>(original.size()));
  if (truncated) w.Field("original_truncated", true);
  w.Field("received_at_ms", received_at_ms);
  w.EndObject();
  return json_;
}

}  // namespace crmstream::ingest
