#include "crmstream/ingest/json_decoder.h"

#include <simdjson.h>

#include <cstring>
#include <stdexcept>

#include "event_validator.h"

namespace crmstream::ingest {
namespace {

namespace od = simdjson::ondemand;
using internal::RawKind;
using internal::RawValue;

// Deeper nesting (inside `attributes` or an ignored field) is rejected: it
// bounds the recursion below and no event needs it.
constexpr int kMaxNesting = 64;

std::string_view TrimRight(std::string_view s) {
  while (!s.empty() &&
         (s.back() == ' ' || s.back() == '\t' || s.back() == '\n' || s.back() == '\r')) {
    s.remove_suffix(1);
  }
  return s;
}

// On-Demand only checks what is read, so every value the decoder does not
// otherwise read is walked to the end: a record with malformed content in an
// ignored field or in `attributes` is rejected as not_json rather than
// passed on.
simdjson::error_code ConsumeValue(od::value value, int depth) {
  if (depth > kMaxNesting) return simdjson::DEPTH_ERROR;
  od::json_type type;
  simdjson::error_code err = value.type().get(type);
  if (err) return err;
  switch (type) {
    case od::json_type::object: {
      od::object object;
      if ((err = value.get_object().get(object))) return err;
      for (auto field_result : object) {
        od::field field;
        if ((err = std::move(field_result).get(field))) return err;
        std::string_view key;
        if ((err = field.unescaped_key().get(key))) return err;
        if ((err = ConsumeValue(field.value(), depth + 1))) return err;
      }
      return simdjson::SUCCESS;
    }
    case od::json_type::array: {
      od::array array;
      if ((err = value.get_array().get(array))) return err;
      for (auto element_result : array) {
        od::value element;
        if ((err = std::move(element_result).get(element))) return err;
        if ((err = ConsumeValue(element, depth + 1))) return err;
      }
      return simdjson::SUCCESS;
    }
    case od::json_type::string: {
      std::string_view s;
      return value.get_string().get(s);
    }
    case od::json_type::number: {
      // get_double accepts integers of any length; only a magnitude beyond
      // double's range is an error.
      double d;
      return value.get_double().get(d);
    }
    case od::json_type::boolean: {
      bool b;
      return value.get_bool().get(b);
    }
    case od::json_type::null: {
      bool is_null = false;
      if ((err = value.is_null().get(is_null))) return err;
      return is_null ? simdjson::SUCCESS : simdjson::N_ATOM_ERROR;
    }
  }
  return simdjson::INCORRECT_TYPE;
}

Rejection NotJson(simdjson::error_code err) {
  if (err == simdjson::DEPTH_ERROR) {
    return {RejectReason::kNotJson, "", "nested deeper than 64 levels"};
  }
  // error_message returns a static string.
  return {RejectReason::kNotJson, "", simdjson::error_message(err)};
}

}  // namespace

struct EventDecoder::Impl {
  explicit Impl(DecoderOptions o)
      : options(o), buffer(new char[o.max_message_bytes + simdjson::SIMDJSON_PADDING]) {
    if (parser.allocate(options.max_message_bytes) != simdjson::SUCCESS) {
      throw std::bad_alloc();
    }
  }

  // Fills `*out` with the classified value; errors are simdjson's.
  simdjson::error_code Classify(od::document& doc, od::value value, bool want_object,
                                RawValue* out) {
    od::json_type type;
    simdjson::error_code err = value.type().get(type);
    if (err) return err;
    switch (type) {
      case od::json_type::string:
        out->kind = RawKind::kString;
        return value.get_string().get(out->text);
      case od::json_type::number: {
        od::number_type number_type;
        if (value.get_number_type().get(number_type) != simdjson::SUCCESS) {
          // An integer beyond 64 bits: valid JSON, kept as a double.
          number_type = od::number_type::floating_point_number;
        }
        const std::string_view token = value.raw_json_token();
        if (number_type == od::number_type::signed_integer &&
            value.get_int64().get(out->integer) == simdjson::SUCCESS) {
          out->kind = RawKind::kInteger;
          out->text = TrimRight(token);
          return simdjson::SUCCESS;
        }
        uint64_t u = 0;
        if (number_type == od::number_type::unsigned_integer &&
            value.get_uint64().get(u) == simdjson::SUCCESS) {
          out->kind = RawKind::kBigInteger;
          out->text = TrimRight(token);
          out->number = static_cast<double>(u);
          return simdjson::SUCCESS;
        }
        // Any other number, including integers beyond 64 bits (valid JSON):
        // a double, or an error if it is not a well-formed number in range.
        out->kind = RawKind::kNumber;
        return value.get_double().get(out->number);
      }
      case od::json_type::null: {
        bool is_null = false;
        if ((err = value.is_null().get(is_null))) return err;
        out->kind = RawKind::kAbsent;
        return is_null ? simdjson::SUCCESS : simdjson::N_ATOM_ERROR;
      }
      case od::json_type::object:
        if (want_object) {
          const std::string_view token = value.raw_json_token();
          if ((err = ConsumeValue(value, 1))) return err;
          // After the object the iterator rests on the next structural
          // character of the enclosing object (',' or '}').
          const char* end = nullptr;
          if ((err = doc.current_location().get(end))) return err;
          out->kind = RawKind::kObject;
          out->text = TrimRight(std::string_view(token.data(), end - token.data()));
          return simdjson::SUCCESS;
        }
        [[fallthrough]];
      default:
        out->kind = RawKind::kOther;
        return ConsumeValue(value, 1);
    }
  }

  static constexpr int kBadKey = -2;

  // The FieldIndex of a key, -1 for an unknown one, kBadKey for a key with an
  // invalid escape. Known names are compared on the raw bytes (no copy); only
  // other keys are unescaped, which also checks their escapes.
  static int FieldIndexOf(od::field& field) {
    const od::raw_json_string raw_key = field.key();
    for (int i = 0; i < internal::kFieldCount; ++i) {
      // Safe: the padded buffer extends past any name's length.
      if (raw_key.unsafe_is_equal(internal::kFieldNames[i])) return i;
    }
    std::string_view key;
    if (field.unescaped_key().get(key) != simdjson::SUCCESS) return kBadKey;
    return internal::FindField(key);  // e.g. "event\u005fid"
  }

  // Validates a document that is not an object, so that not_object is only
  // reported for well-formed JSON.
  static simdjson::error_code ConsumeNonObject(od::document& doc, od::json_type type) {
    simdjson::error_code err;
    switch (type) {
      case od::json_type::array: {
        od::array array;
        if ((err = doc.get_array().get(array))) return err;
        for (auto element_result : array) {
          od::value element;
          if ((err = std::move(element_result).get(element))) return err;
          if ((err = ConsumeValue(element, 1))) return err;
        }
        return doc.current_location().error() == simdjson::OUT_OF_BOUNDS
                   ? simdjson::SUCCESS
                   : simdjson::TRAILING_CONTENT;
      }
      case od::json_type::string: {
        std::string_view s;
        return doc.get_string().get(s);
      }
      case od::json_type::number: {
        double d;
        return doc.get_double().get(d);
      }
      case od::json_type::boolean: {
        bool b;
        return doc.get_bool().get(b);
      }
      case od::json_type::null: {
        bool is_null = false;
        if ((err = doc.is_null().get(is_null))) return err;
        return is_null ? simdjson::SUCCESS : simdjson::N_ATOM_ERROR;
      }
      default:
        return simdjson::INCORRECT_TYPE;
    }
  }

  Rejection Decode(std::string_view bytes, int64_t now_ms, Event* out) {
    if (bytes.size() > options.max_message_bytes) {
      return {RejectReason::kTooLarge, "", "longer than max_message_bytes (default 65536)"};
    }
    // Kafka payloads have no padding: one copy into the padded buffer.
    std::memcpy(buffer.get(), bytes.data(), bytes.size());
    std::memset(buffer.get() + bytes.size(), 0, simdjson::SIMDJSON_PADDING);
    buffer_size = bytes.size();

    od::document doc;
    simdjson::error_code err =
        parser.iterate(buffer.get(), bytes.size(), bytes.size() + simdjson::SIMDJSON_PADDING)
            .get(doc);
    if (err) return NotJson(err);
    od::json_type type;
    if ((err = doc.type().get(type))) return NotJson(err);
    if (type != od::json_type::object) {
      if ((err = ConsumeNonObject(doc, type))) return NotJson(err);
      return {RejectReason::kNotObject, "", "the top level must be a JSON object"};
    }
    od::object object;
    if ((err = doc.get_object().get(object))) return NotJson(err);

    raw.Clear();
    // Known fields seen so far: a repeated one is rejected, since parsers
    // downstream disagree on which copy wins ({"customer_id":"a",
    // "customer_id":"b"} is b here, a for a first-wins reader).
    uint32_t seen = 0;
    static_assert(internal::kFieldCount <= 32);
    for (auto field_result : object) {
      od::field field;
      if ((err = std::move(field_result).get(field))) return NotJson(err);
      const int index = FieldIndexOf(field);
      if (index == kBadKey) return NotJson(simdjson::STRING_ERROR);
      if (index >= 0) {
        const uint32_t bit = uint32_t{1} << index;
        if ((seen & bit) != 0) {
          return {RejectReason::kDuplicateKey, internal::kFieldNames[index],
                  "appears more than once in the object"};
        }
        seen |= bit;
      }
      RawValue* slot = index >= 0 ? &raw.fields[index] : &ignored;
      if ((err = Classify(doc, field.value(), index == internal::kFieldAttributes, slot))) {
        return NotJson(err);
      }
    }
    if (doc.current_location().error() != simdjson::OUT_OF_BOUNDS) {
      return {RejectReason::kNotJson, "", "content after the JSON object"};
    }
    return internal::ValidateEvent(raw, options, now_ms, out);
  }

  DecoderOptions options;
  std::unique_ptr<char[]> buffer;  // max_message_bytes + SIMDJSON_PADDING
  size_t buffer_size = 0;          // of the last message copied in
  od::parser parser;
  internal::RawEvent raw;
  RawValue ignored;  // where unknown fields are classified (and so checked)
};

EventDecoder::EventDecoder() : impl_(std::make_unique<Impl>(DecoderOptions{})) {}

EventDecoder::EventDecoder(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Result<EventDecoder> EventDecoder::Create(DecoderOptions options) {
  CRM_RETURN_NOT_OK(options.Validate().WithContext("DecoderOptions"));
  return EventDecoder(std::make_unique<Impl>(std::move(options)));
}
EventDecoder::~EventDecoder() = default;
EventDecoder::EventDecoder(EventDecoder&&) noexcept = default;
EventDecoder& EventDecoder::operator=(EventDecoder&&) noexcept = default;

Rejection EventDecoder::Decode(std::string_view bytes, Event* out) {
  const int64_t now_ms = impl_->options.max_future_skew_ms > 0 ? internal::SystemNowMs() : 0;
  return impl_->Decode(bytes, now_ms, out);
}

Rejection EventDecoder::Decode(std::string_view bytes, int64_t now_ms, Event* out) {
  return impl_->Decode(bytes, now_ms, out);
}

const DecoderOptions& EventDecoder::options() const { return impl_->options; }

std::string_view EventDecoder::last_message() const {
  return {impl_->buffer.get(), impl_->buffer_size};
}

}  // namespace crmstream::ingest
