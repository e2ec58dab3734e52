// Decodes one JSON message (one object, as on the `crm.interactions` topic
// or one line of a JSON-lines file) into a validated Event, with simdjson's
// On-Demand API. The wire format is documented in docs/events.md and
// docs/event-schema.json.
//
// The decoder owns a padded buffer and a parser sized for
// DecoderOptions::max_message_bytes at construction; each Decode copies the
// message into that buffer once (Kafka payloads carry no padding) and
// allocates nothing. The Event's string_views point into the decoder and are
// valid until its next Decode.
//
// Not thread-safe: use one decoder per thread (or per partition).
#pragma once

#include <cstdint>
#include <memory>
#include <string_view>

#include "crmstream/common/status.h"
#include "crmstream/ingest/decoder_options.h"
#include "crmstream/ingest/event.h"
#include "crmstream/ingest/rejection.h"

namespace crmstream::ingest {

class EventDecoder {
 public:
  // A decoder with the default options (valid by construction).
  EventDecoder();
  // InvalidArgument (DecoderOptions::Validate's message, naming the field)
  // for invalid options.
  static Result<EventDecoder> Create(DecoderOptions options);
  ~EventDecoder();
  EventDecoder(EventDecoder&&) noexcept;
  EventDecoder& operator=(EventDecoder&&) noexcept;
  EventDecoder(const EventDecoder&) = delete;
  EventDecoder& operator=(const EventDecoder&) = delete;

  // Decodes and validates `bytes`. On acceptance fills every field of `*out`
  // and returns a Rejection whose code is kNone; on rejection `*out` is
  // unspecified. The future-skew check (when enabled) uses the system clock.
  Rejection Decode(std::string_view bytes, Event* out);
  // Same, with the caller's notion of "now" (Unix epoch ms) for the
  // future-skew check, e.g. the Kafka message timestamp or a fake clock.
  Rejection Decode(std::string_view bytes, int64_t now_ms, Event* out);

  const DecoderOptions& options() const;
  // The bytes of the last Decode that got as far as parsing (the decoder's
  // own copy; its Event points into it).
  std::string_view last_message() const;

 private:
  struct Impl;
  explicit EventDecoder(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace crmstream::ingest
