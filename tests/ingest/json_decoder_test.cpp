#include "crmstream/ingest/json_decoder.h"

#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "support/require_ok.h"

namespace crmstream::ingest {
namespace {

constexpr const char* kPurchase =
    R"({"event_id":"e-1","customer_id":"c-42","timestamp":"2026-03-01T12:00:00Z",)"
    R"("type":"purchase","channel":"web","amount":19.99,"currency":"EUR","plan":"pro",)"
    R"("attributes":{"sku":"A-7","qty":2,"tags":["x",{"y":null}]}})";

TEST_CASE("EventDecoder decodes every field of a purchase", "[ingest]") {
  EventDecoder decoder;
  Event e;
  const Rejection r = decoder.Decode(kPurchase, &e);
  REQUIRE(r.code == RejectReason::kNone);
  CHECK_FALSE(r.rejected());
  CHECK(e.event_id == "e-1");
  CHECK(e.customer_id == "c-42");
  CHECK(e.timestamp_ms == 1772366400000);
  CHECK(e.type == EventType::kPurchase);
  CHECK(e.channel == "web");
  CHECK(e.has_amount);
  CHECK(e.amount == 19.99);
  CHECK(e.currency == "EUR");
  CHECK(e.plan == "pro");
  CHECK(e.attributes_json == R"({"sku":"A-7","qty":2,"tags":["x",{"y":null}]})");
}

TEST_CASE("EventDecoder reads the order and item of a purchase line", "[ingest]") {
  EventDecoder decoder;
  Event e;
  const std::string base =
      R"({"event_id":"e-1","customer_id":"c-42","timestamp":"2026-03-01T12:00:00Z",)"
      R"("type":"purchase","amount":2.5,)";
  REQUIRE_FALSE(decoder.Decode(base + R"("order_id":"536365","item_id":"85123A"})", &e).rejected());
  CHECK(e.order_id == "536365");
  CHECK(e.item_id == "85123A");
  // Integers are kept as their decimal text, as customer ids are.
  REQUIRE_FALSE(decoder.Decode(base + R"("order_id":536365,"item_id":22423})", &e).rejected());
  CHECK(e.order_id == "536365");
  CHECK(e.item_id == "22423");
  // Absent (or null) is empty.
  REQUIRE_FALSE(decoder.Decode(base + R"("order_id":null})", &e).rejected());
  CHECK(e.order_id.empty());
  CHECK(e.item_id.empty());
  Rejection r = decoder.Decode(base + R"("order_id":["o"]})", &e);
  CHECK(r.code == RejectReason::kWrongType);
  CHECK(r.field == "order_id");
  r = decoder.Decode(base + R"("item_id":""})", &e);
  CHECK(r.code == RejectReason::kOutOfRange);
  CHECK(r.field == "item_id");
  r = decoder.Decode(base + R"("item_id":")" + std::string(129, 'x') + R"("})", &e);
  CHECK(r.code == RejectReason::kOutOfRange);
}

TEST_CASE("EventDecoder accepts integer customer ids, epoch-ms timestamps and escapes",
          "[ingest]") {
  EventDecoder decoder;
  Event e;
  REQUIRE_FALSE(decoder
                    .Decode(R"({"event_id":"a\"b\u00e9","customer_id":17850,)"
                            R"("timestamp":1772366400123,"type":"login"})",
                            &e)
                    .rejected());
  CHECK(e.event_id == "a\"b\xC3\xA9");
  CHECK(e.customer_id == "17850");
  CHECK(e.timestamp_ms == 1772366400123);
  CHECK(e.type == EventType::kLogin);
  CHECK_FALSE(e.has_amount);
  CHECK(e.channel.empty());
  CHECK(e.attributes_json.empty());

  REQUIRE_FALSE(decoder
                    .Decode(R"({"event_id":"x","customer_id":18446744073709551615 ,)"
                            R"("timestamp":"2026-03-01T12:00:00Z","type":"refund","amount":5})",
                            &e)
                    .rejected());
  CHECK(e.customer_id == "18446744073709551615");
  CHECK(e.amount == 5.0);
  CHECK(e.type == EventType::kRefund);
}

TEST_CASE("EventDecoder matches escaped keys and checks unknown ones", "[ingest]") {
  EventDecoder decoder;
  Event e;
  REQUIRE_FALSE(decoder
                    .Decode(R"({"event\u005fid":"e","customer_id":"c","timestamp":1772366400000,)"
                            R"("typ\u0065":"login","x\ty":1})",
                            &e)
                    .rejected());
  CHECK(e.event_id == "e");
  CHECK(e.type == EventType::kLogin);
  CHECK(decoder
            .Decode(R"({"event_id":"e","customer_id":"c","timestamp":1772366400000,)"
                    R"("type":"login","x\qy":1})",
                    &e)
            .code == RejectReason::kNotJson);
}

TEST_CASE("EventDecoder resets optional fields between events", "[ingest]") {
  EventDecoder decoder;
  Event e;
  REQUIRE_FALSE(decoder.Decode(kPurchase, &e).rejected());
  REQUIRE_FALSE(decoder
                    .Decode(R"({"event_id":"e-2","customer_id":"c","timestamp":1772366400000,)"
                            R"("type":"page_view","channel":null})",
                            &e)
                    .rejected());
  CHECK(e.event_id == "e-2");
  CHECK(e.channel.empty());
  CHECK(e.currency.empty());
  CHECK(e.plan.empty());
  CHECK(e.attributes_json.empty());
  CHECK_FALSE(e.has_amount);
  CHECK(e.amount == 0.0);
}

TEST_CASE("EventDecoder ignores unknown fields, whatever they hold", "[ingest]") {
  EventDecoder decoder;
  Event e;
  const Rejection r = decoder.Decode(
      R"( { "extra" : {"deep":[1,2.5e3,{"k":"v"}]}, "event_id":"e","customer_id":"c",)"
      R"("timestamp":"2026-03-01T12:00:00Z","type":"complaint","n":null,"b":true } )",
      &e);
  REQUIRE_FALSE(r.rejected());
  CHECK(e.type == EventType::kComplaint);
}

struct RejectCase {
  std::string json;
  RejectReason reason;
  std::string_view field;
};

std::string Base(std::string_view replace_key, std::string_view replace_value) {
  // A valid purchase, with one field replaced ("" value: removed).
  const std::vector<std::pair<std::string, std::string>> fields = {
      {"event_id", R"("e-1")"},
      {"customer_id", R"("c-1")"},
      {"timestamp", R"("2026-03-01T12:00:00Z")"},
      {"type", R"("purchase")"},
      {"amount", "10.5"},
      {"currency", R"("USD")"},
      {"channel", R"("app")"},
      {"plan", R"("basic")"},
      {"attributes", R"({"a":1})"}};
  std::string json = "{";
  for (const auto& [k, v] : fields) {
    std::string value = k == replace_key ? std::string(replace_value) : v;
    if (value.empty()) continue;
    if (json.size() > 1) json += ",";
    json += "\"" + k + "\":" + value;
  }
  return json + "}";
}

TEST_CASE("EventDecoder rejects with the reason and the field", "[ingest]") {
  const std::string huge_id(129, 'x');
  const std::vector<RejectCase> cases = {
      {R"({"event_id":"e",)", RejectReason::kNotJson, ""},
      {R"({"event_id":"e"} {})", RejectReason::kNotJson, ""},
      {R"({"event_id":"e"}])", RejectReason::kNotJson, ""},
      {"", RejectReason::kNotJson, ""},
      {"   ", RejectReason::kNotJson, ""},
      {"{\"event_id\":\"\xC3\x28\"}", RejectReason::kNotJson, ""},  // invalid UTF-8
      {R"({"event_id":"e","x":[1,,2]})", RejectReason::kNotJson, ""},
      {R"({"event_id":"e","x":tru})", RejectReason::kNotJson, ""},
      {R"({"event_id":"e","x":"\q"})", RejectReason::kNotJson, ""},
      {R"({"event_id":"e" "customer_id":"c"})", RejectReason::kNotJson, ""},
      {Base("attributes", R"({"a":[1,}})"), RejectReason::kNotJson, ""},
      {Base("plan", "1e400"), RejectReason::kNotJson, ""},  // beyond a double's range
      {R"([1,2,3])", RejectReason::kNotObject, ""},
      {R"("purchase")", RejectReason::kNotObject, ""},
      {R"(42)", RejectReason::kNotObject, ""},
      {R"(null)", RejectReason::kNotObject, ""},
      {Base("event_id", ""), RejectReason::kMissingField, "event_id"},
      {Base("event_id", "null"), RejectReason::kMissingField, "event_id"},
      {Base("customer_id", ""), RejectReason::kMissingField, "customer_id"},
      {Base("timestamp", ""), RejectReason::kMissingField, "timestamp"},
      {Base("type", ""), RejectReason::kMissingField, "type"},
      {Base("amount", ""), RejectReason::kMissingField, "amount"},
      {Base("event_id", "7"), RejectReason::kWrongType, "event_id"},
      {Base("customer_id", "1.5"), RejectReason::kWrongType, "customer_id"},
      {Base("customer_id", "true"), RejectReason::kWrongType, "customer_id"},
      {Base("timestamp", "1772366400000.0"), RejectReason::kWrongType, "timestamp"},
      {Base("timestamp", "[1]"), RejectReason::kWrongType, "timestamp"},
      {Base("type", "1"), RejectReason::kWrongType, "type"},
      {Base("amount", R"("10.5")"), RejectReason::kWrongType, "amount"},
      {Base("currency", "840"), RejectReason::kWrongType, "currency"},
      {Base("channel", "{}"), RejectReason::kWrongType, "channel"},
      {Base("plan", "false"), RejectReason::kWrongType, "plan"},
      {Base("attributes", "[1]"), RejectReason::kWrongType, "attributes"},
      {Base("attributes", R"("a=1")"), RejectReason::kWrongType, "attributes"},
      {Base("event_id", R"("")"), RejectReason::kOutOfRange, "event_id"},
      {Base("event_id", "\"" + huge_id + "\""), RejectReason::kOutOfRange, "event_id"},
      {Base("customer_id", R"("")"), RejectReason::kOutOfRange, "customer_id"},
      {Base("amount", "-0.01"), RejectReason::kOutOfRange, "amount"},
      {Base("amount", "1000000000.5"), RejectReason::kOutOfRange, "amount"},
      {Base("currency", R"("usd")"), RejectReason::kOutOfRange, "currency"},
      {Base("currency", R"("EURO")"), RejectReason::kOutOfRange, "currency"},
      {Base("currency", R"("")"), RejectReason::kOutOfRange, "currency"},
      {Base("timestamp", R"("1999-12-31T23:59:59.999Z")"), RejectReason::kOutOfRange, "timestamp"},
      {Base("timestamp", R"("2100-01-01T00:00:00Z")"), RejectReason::kOutOfRange, "timestamp"},
      {Base("timestamp", "946684799999"), RejectReason::kOutOfRange, "timestamp"},
      {Base("timestamp", "-5"), RejectReason::kOutOfRange, "timestamp"},
      {Base("timestamp", "18446744073709551615"), RejectReason::kOutOfRange, "timestamp"},
      {Base("timestamp", R"("2026-02-29T00:00:00Z")"), RejectReason::kBadTimestamp, "timestamp"},
      {Base("timestamp", R"("yesterday")"), RejectReason::kBadTimestamp, "timestamp"},
      {Base("timestamp", R"("1772366400000")"), RejectReason::kBadTimestamp, "timestamp"},
      {Base("type", R"("Purchase")"), RejectReason::kUnknownEventType, "type"},
      {Base("type", R"("sale")"), RejectReason::kUnknownEventType, "type"},
  };
  EventDecoder decoder;
  for (const RejectCase& c : cases) {
    INFO(c.json);
    Event e;
    const Rejection r = decoder.Decode(c.json, &e);
    CHECK(RejectReasonName(r.code) == RejectReasonName(c.reason));
    CHECK(r.field == c.field);
    CHECK_FALSE(r.detail.empty());
  }
  // Amount is optional where no money moves, but checked when present.
  Event e;
  CHECK_FALSE(
      decoder.Decode(Base("plan", "\"p\",\"big\":123456789012345678901234567890"), &e).rejected());
  CHECK_FALSE(decoder.Decode(Base("type", R"("login")").c_str(), &e).rejected());
  std::string no_amount = Base("amount", "");
  no_amount.replace(no_amount.find("purchase"), 8, "support_ticket");
  CHECK_FALSE(decoder.Decode(no_amount, &e).rejected());
  CHECK_FALSE(e.has_amount);
}

TEST_CASE("EventDecoder rejects oversized and deeply nested records", "[ingest]") {
  DecoderOptions options;
  options.max_message_bytes = 1024;
  REQUIRE_OK_AND_ASSIGN(EventDecoder decoder, EventDecoder::Create(options));
  Event e;
  std::string big = Base("plan", "\"" + std::string(2000, 'p') + "\"");
  Rejection r = decoder.Decode(big, &e);
  CHECK(r.code == RejectReason::kTooLarge);
  CHECK(r.field.empty());

  std::string deep = Base("attributes", std::string(100, '[') + std::string(100, ']'));
  r = decoder.Decode(deep, &e);
  CHECK(r.code == RejectReason::kNotJson);
  std::string ok_depth =
      Base("attributes", "{\"a\":" + std::string(30, '[') + std::string(30, ']') + "}");
  CHECK_FALSE(decoder.Decode(ok_depth, &e).rejected());
}

TEST_CASE("EventDecoder applies configured limits", "[ingest]") {
  DecoderOptions options;
  options.max_amount = 100;
  options.min_timestamp_ms = 1'700'000'000'000;
  options.max_timestamp_ms = 1'800'000'000'000;
  options.max_future_skew_ms = 60'000;
  REQUIRE_OK_AND_ASSIGN(EventDecoder decoder, EventDecoder::Create(options));
  Event e;
  const int64_t now = 1772366400000;  // 2026-03-01T12:00:00Z
  CHECK_FALSE(decoder.Decode(Base("amount", "100"), now, &e).rejected());
  CHECK(decoder.Decode(Base("amount", "100.01"), now, &e).code == RejectReason::kOutOfRange);
  // Exactly the allowed skew passes; one millisecond more does not.
  CHECK_FALSE(decoder.Decode(Base("timestamp", "1772366460000"), now, &e).rejected());
  const Rejection r = decoder.Decode(Base("timestamp", "1772366460001"), now, &e);
  CHECK(r.code == RejectReason::kTimestampInFuture);
  CHECK(r.field == "timestamp");
  CHECK(decoder.Decode(Base("timestamp", "1699999999999"), now, &e).code ==
        RejectReason::kOutOfRange);

  DecoderOptions bad;
  bad.min_timestamp_ms = bad.max_timestamp_ms;
  CHECK_FALSE(bad.Validate().ok());
  const auto refused = EventDecoder::Create(bad);
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.status().code() == StatusCode::kInvalidArgument);
  CHECK_THAT(refused.status().message(), Catch::StartsWith("DecoderOptions: "));
}

TEST_CASE("The future-skew check is on by default and can be turned off", "[ingest]") {
  const int64_t now = 1772366400000;  // 2026-03-01T12:00:00Z
  const std::string poison = Base("timestamp", R"("2099-01-01T00:00:00Z")");
  const std::string tomorrow = Base("timestamp", R"("2026-03-02T12:00:00Z")");  // exactly 1 day
  Event e;
  EventDecoder by_default;
  CHECK(by_default.options().max_future_skew_ms == 86'400'000);
  const Rejection r = by_default.Decode(poison, now, &e);
  CHECK(r.code == RejectReason::kTimestampInFuture);
  CHECK(r.field == "timestamp");
  CHECK_FALSE(by_default.Decode(tomorrow, now, &e).rejected());
  CHECK(by_default.Decode(Base("timestamp", R"("2026-03-02T12:00:00.001Z")"), now, &e).code ==
        RejectReason::kTimestampInFuture);
  // Against the system clock (no caller clock): 2099 is still the future.
  CHECK(by_default.Decode(poison, &e).code == RejectReason::kTimestampInFuture);
  // A caller without a clock for the record (now <= 0) skips the check.
  CHECK_FALSE(by_default.Decode(poison, 0, &e).rejected());

  for (int64_t off : {int64_t{0}, int64_t{-1}}) {
    DecoderOptions options;
    options.max_future_skew_ms = off;
    REQUIRE_OK_AND_ASSIGN(EventDecoder unchecked, EventDecoder::Create(options));
    CHECK_FALSE(unchecked.Decode(poison, now, &e).rejected());
    CHECK(e.timestamp_ms == 4'070'908'800'000);
  }
}

TEST_CASE("EventDecoder rejects a known field that appears twice", "[ingest]") {
  EventDecoder decoder;
  Event e;
  const std::string ok = Base("", "");
  REQUIRE_FALSE(decoder.Decode(ok, &e).rejected());
  // The same purchase with a second customer_id: last-wins would make it b's.
  std::string twice = ok;
  twice.insert(twice.size() - 1, R"(,"customer_id":"c-2")");
  Rejection r = decoder.Decode(twice, &e);
  CHECK(r.code == RejectReason::kDuplicateKey);
  CHECK(r.field == "customer_id");
  // Spelt with an escape, it is still the same key.
  std::string escaped = ok;
  escaped.insert(escaped.size() - 1, R"(,"customer\u005fid":"c-2")");
  r = decoder.Decode(escaped, &e);
  CHECK(r.code == RejectReason::kDuplicateKey);
  CHECK(r.field == "customer_id");
  // A repeat of null counts too: null then a value is not "absent".
  std::string with_null = ok;
  with_null.insert(1, R"("order_id":null,)");
  with_null.insert(with_null.size() - 1, R"(,"order_id":"o-1")");
  CHECK(decoder.Decode(with_null, &e).code == RejectReason::kDuplicateKey);
  // Every known field is covered, first or last.
  for (std::string_view name :
       {"event_id", "timestamp", "type", "amount", "currency", "channel", "plan", "attributes"}) {
    std::string dup = ok;
    dup.insert(1, "\"" + std::string(name) + "\":" + (name == "attributes" ? "{}" : "\"x\"") + ",");
    INFO(dup);
    r = decoder.Decode(dup, &e);
    CHECK(r.code == RejectReason::kDuplicateKey);
    CHECK(r.field == name);
  }
  // Unknown fields are ignored, repeated or not; keys inside attributes may repeat.
  std::string unknown = ok;
  unknown.insert(1, R"("x":1,"x":2,)");
  CHECK_FALSE(decoder.Decode(unknown, &e).rejected());
  CHECK_FALSE(decoder.Decode(Base("attributes", R"({"a":1,"a":2})"), &e).rejected());
}

TEST_CASE("Every rejection reason has a distinct stable name", "[ingest]") {
  std::vector<std::string_view> names;
  for (RejectReason r : kAllRejectReasons) {
    const std::string_view name = RejectReasonName(r);
    CHECK(name.find_first_not_of("abcdefghijklmnopqrstuvwxyz_") == std::string_view::npos);
    CHECK(ParseRejectReason(name) == r);
    CHECK(std::find(names.begin(), names.end(), name) == names.end());
    names.push_back(name);
  }
  CHECK(names.size() == 12);
  CHECK(RejectReasonName(RejectReason::kTimestampInFuture) == "timestamp_in_future");
  CHECK(RejectReasonName(RejectReason::kDuplicateKey) == "duplicate_key");
  CHECK(RejectReasonName(RejectReason::kProcessingError) == "processing_error");
  CHECK(RejectReasonName(RejectReason::kMissingField) == "missing_field");
  CHECK(RejectReasonName(RejectReason::kNotJson) == "not_json");
  CHECK_FALSE(ParseRejectReason("bogus"));
}

}  // namespace
}  // namespace crmstream::ingest
