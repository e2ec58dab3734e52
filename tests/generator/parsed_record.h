// Test-side reading of generated records: an independent simdjson parse of
// each JSON record into its fields, so the tests check the bytes a consumer
// sees rather than the generator's own idea of them.
#pragma once

#include <simdjson.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace crmstream::generator::testing {

struct ParsedRecord {
  bool valid_json = false;  // a complete JSON object
  std::optional<std::string> event_id;
  std::optional<std::string> customer_id;
  std::optional<int64_t> timestamp_ms;          // when an integer
  std::optional<std::string> timestamp_string;  // when a string
  std::optional<std::string> type;
  std::optional<std::string> channel;
  std::optional<double> amount;              // when a number
  std::optional<std::string> amount_string;  // when a string
  std::optional<std::string> currency;
  std::optional<std::string> plan;
  int other_fields = 0;  // fields outside the event schema
};

inline ParsedRecord ParseRecord(simdjson::ondemand::parser& parser, std::string_view text) {
  ParsedRecord out;
  simdjson::padded_string padded(text);
  simdjson::ondemand::document doc;
  if (parser.iterate(padded).get(doc)) return out;
  simdjson::ondemand::object object;
  if (doc.get_object().get(object)) return out;
  for (auto field_result : object) {
    simdjson::ondemand::field field;
    if (std::move(field_result).get(field)) return out;
    std::string_view key;
    if (field.unescaped_key().get(key)) return out;
    simdjson::ondemand::value value = field.value();
    simdjson::ondemand::json_type type;
    if (value.type().get(type)) return out;
    const bool is_string = type == simdjson::ondemand::json_type::string;
    const bool is_number = type == simdjson::ondemand::json_type::number;
    std::string_view s;
    if (is_string && value.get_string().get(s)) return out;
    if (key == "event_id" && is_string) {
      out.event_id = std::string(s);
    } else if (key == "customer_id" && is_string) {
      out.customer_id = std::string(s);
    } else if (key == "timestamp" && is_string) {
      out.timestamp_string = std::string(s);
    } else if (key == "timestamp" && is_number) {
      int64_t v;
      if (value.get_int64().get(v)) return out;
      out.timestamp_ms = v;
    } else if (key == "type" && is_string) {
      out.type = std::string(s);
    } else if (key == "channel" && is_string) {
      out.channel = std::string(s);
    } else if (key == "amount" && is_string) {
      out.amount_string = std::string(s);
    } else if (key == "amount" && is_number) {
      double v;
      if (value.get_double().get(v)) return out;
      out.amount = v;
    } else if (key == "currency" && is_string) {
      out.currency = std::string(s);
    } else if (key == "plan" && is_string) {
      out.plan = std::string(s);
    } else {
      ++out.other_fields;
    }
  }
  // The whole object iterated without a syntax error. (On-demand parsing
  // does not look past the object; the generator writes nothing there.)
  out.valid_json = true;
  return out;
}

}  // namespace crmstream::generator::testing
