// Builds the JSON value written to the dead-letter topic (`crm.dead-letter`)
// for a rejected record:
//   {"reason":"missing_field","field":"customer_id","detail":"...",
//    "source":{"topic":"crm.interactions","partition":3,"offset":42},
//    "original":"<the record as a JSON string>" | "original_base64":"...",
//    "original_size":123,"received_at_ms":1772366400000}
// "original" is used when the bytes are valid UTF-8, "original_base64"
// otherwise; a record longer than max_original_bytes is cut to that length
// (at a UTF-8 character boundary) and gets "original_truncated":true.
// The format is documented in docs/events.md.
//
// The record is written into a string owned by the builder and reused, so a
// warm builder does not allocate. Not thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "crmstream/ingest/event.h"
#include "crmstream/ingest/rejection.h"

namespace crmstream::ingest {

class DeadLetterRecord {
 public:
  // Longest original kept by default, bytes: keeps the record well under
  // Kafka's default 1 MB message limit even after escaping.
  static constexpr size_t kDefaultMaxOriginalBytes = 128 * 1024;

  explicit DeadLetterRecord(size_t max_original_bytes = kDefaultMaxOriginalBytes);

  // Builds the record; the view is valid until the next Build.
  std::string_view Build(const Rejection& rejection, const SourcePosition& source,
                         std::string_view original, int64_t received_at_ms);

 private:
  size_t max_original_bytes_;
  std::string json_;
  std::string scratch_;
};

// Standard base64 (RFC 4648, with padding), appended to `out`.
void AppendBase64(std::string_view bytes, std::string* out);

}  // namespace crmstream::ingest
