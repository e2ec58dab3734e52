#include "crmstream/ingest/decoder_options.h"

#include <cmath>

namespace crmstream::ingest {

Status DecoderOptions::Validate() const {
  if (max_message_bytes == 0 || max_message_bytes > (size_t{1} << 30)) {
    return Status::InvalidArgument("max_message_bytes must be in 1..2^30");
  }
  if (!(max_amount >= 0) || !std::isfinite(max_amount)) {
    return Status::InvalidArgument("max_amount must be finite and >= 0");
  }
  if (min_timestamp_ms >= max_timestamp_ms) {
    return Status::InvalidArgument("min_timestamp_ms must be below max_timestamp_ms");
  }
  return Status::OK();
}

}  // namespace crmstream::ingest
