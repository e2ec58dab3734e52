#include "crmstream/ingest/csv_decoder.h"

#include <catch2/catch.hpp>
#include <string>

#include "crmstream/ingest/json_decoder.h"
#include "support/require_ok.h"

namespace crmstream::ingest {
namespace {

constexpr const char* kHeader = "event_id,customer_id,timestamp,type,channel,amount,currency,plan";

TEST_CASE("CsvEventDecoder reads order_id and item_id columns", "[ingest]") {
  auto decoder =
      CsvEventDecoder::FromHeader("event_id,customer_id,timestamp,type,amount,order_id,item_id");
  REQUIRE_OK(decoder);
  Event e;
  REQUIRE_FALSE(
      decoder->Decode("e-1,17850,2010-12-01 08:26:00,purchase,15.3,536365,85123A", &e).rejected());
  CHECK(e.order_id == "536365");
  CHECK(e.item_id == "85123A");
  REQUIRE_FALSE(decoder->Decode("e-2,17850,2010-12-01 08:26:00,purchase,15.3,,", &e).rejected());
  CHECK(e.order_id.empty());
  CHECK(e.item_id.empty());
}

TEST_CASE("CsvEventDecoder decodes a line like the JSON decoder", "[ingest]") {
  auto decoder = CsvEventDecoder::FromHeader(kHeader);
  REQUIRE_OK(decoder);
  Event e;
  REQUIRE_FALSE(
      decoder->Decode("e-1,c-42,2026-03-01T12:00:00Z,purchase,web,19.99,EUR,pro", &e).rejected());
  CHECK(e.event_id == "e-1");
  CHECK(e.customer_id == "c-42");
  CHECK(e.timestamp_ms == 1772366400000);
  CHECK(e.type == EventType::kPurchase);
  CHECK(e.channel == "web");
  CHECK(e.amount == 19.99);
  CHECK(e.has_amount);
  CHECK(e.currency == "EUR");
  CHECK(e.plan == "pro");
  CHECK(e.attributes_json.empty());

  // Empty cells are absent fields; epoch-ms timestamps and a CRLF ending.
  REQUIRE_FALSE(decoder->Decode("e-2,17850,1322727960000,login,,,,\r", &e).rejected());
  CHECK(e.customer_id == "17850");
  CHECK(e.timestamp_ms == 1322727960000);
  CHECK(e.channel.empty());
  CHECK_FALSE(e.has_amount);
}

TEST_CASE("CsvEventDecoder follows RFC 4180 quoting", "[ingest]") {
  auto decoder = CsvEventDecoder::FromHeader(
      "\xEF\xBB\xBF\"type\", event_id ,customer_id,"
      "timestamp,plan,ignored\r");
  REQUIRE_OK(decoder);
  CHECK(decoder->column_count() == 6);
  Event e;
  REQUIRE_FALSE(decoder
                    ->Decode(R"("plan_change","e,1","say ""hi""",2011-12-01 08:26:00,)"
                             R"("gold, annual","x""y")",
                             &e)
                    .rejected());
  CHECK(e.type == EventType::kPlanChange);
  CHECK(e.event_id == "e,1");
  CHECK(e.customer_id == "say \"hi\"");
  CHECK(e.timestamp_ms == 1322727960000);
  CHECK(e.plan == "gold, annual");

  // Quoted newlines are part of the field (when the caller passes them).
  REQUIRE_FALSE(
      decoder->Decode("account_closed,e2,\"c\nd\",2026-03-01T12:00:00Z,,", &e).rejected());
  CHECK(e.customer_id == "c\nd");
}

TEST_CASE("CsvEventDecoder rejects malformed lines and bad fields", "[ingest]") {
  auto decoder = CsvEventDecoder::FromHeader(kHeader);
  REQUIRE_OK(decoder);
  struct Case {
    std::string line;
    RejectReason reason;
    std::string_view field;
  };
  const std::vector<Case> cases = {
      {"e,c,2026-03-01T12:00:00Z,login,web,,", RejectReason::kMalformedCsv, ""},  // 7 cells
      {"e,c,2026-03-01T12:00:00Z,login,web,,,,", RejectReason::kMalformedCsv, ""},
      {"\"e,c,2026-03-01T12:00:00Z,login,web,,,", RejectReason::kMalformedCsv, ""},
      {"\"e\"x,c,2026-03-01T12:00:00Z,login,web,,,", RejectReason::kMalformedCsv, ""},
      {"e\"x,c,2026-03-01T12:00:00Z,login,web,,,", RejectReason::kMalformedCsv, ""},
      {"e,c\xFF,2026-03-01T12:00:00Z,login,web,,,", RejectReason::kMalformedCsv, ""},
      {"", RejectReason::kMalformedCsv, ""},
      {",c,2026-03-01T12:00:00Z,login,,,,", RejectReason::kMissingField, "event_id"},
      {"e,c,,login,,,,", RejectReason::kMissingField, "timestamp"},
      {"e,c,2026-03-01T12:00:00Z,purchase,,,,", RejectReason::kMissingField, "amount"},
      {"e,c,2026-03-01T12:00:00Z,purchase,,12 EUR,,", RejectReason::kWrongType, "amount"},
      {"e,c,2026-03-01T12:00:00Z,purchase,,inf,,", RejectReason::kOutOfRange, "amount"},
      {"e,c,2026-03-01T12:00:00Z,purchase,,nan,,", RejectReason::kOutOfRange, "amount"},
      {"e,c,2026-03-01T12:00:00Z,purchase,,1e999,,", RejectReason::kOutOfRange, "amount"},
      {"e,c,2026-03-01T12:00:00Z,purchase,,-1,,", RejectReason::kOutOfRange, "amount"},
      {"e,c,2026-03-01T12:00:00Z,purchase,,1,eur,", RejectReason::kOutOfRange, "currency"},
      {"e,c,99999999999999999999,login,,,,", RejectReason::kOutOfRange, "timestamp"},
      {"e,c,12/1/2010 8:26,login,,,,", RejectReason::kBadTimestamp, "timestamp"},
      {"e,c,2026-03-01T12:00:00Z,logon,,,,", RejectReason::kUnknownEventType, "type"},
  };
  for (const Case& c : cases) {
    INFO(c.line);
    Event e;
    const Rejection r = decoder->Decode(c.line, &e);
    CHECK(RejectReasonName(r.code) == RejectReasonName(c.reason));
    CHECK(r.field == c.field);
  }

  DecoderOptions small;
  small.max_message_bytes = 16;
  auto tiny = CsvEventDecoder::FromHeader(kHeader, small);
  REQUIRE_OK(tiny);
  Event e;
  CHECK(tiny->Decode("e,c,2026-03-01T12:00:00Z,login,,,,", &e).code == RejectReason::kTooLarge);
}

TEST_CASE("CsvEventDecoder checks the header", "[ingest]") {
  CHECK_FALSE(CsvEventDecoder::FromHeader("event_id,customer_id,type").ok());
  CHECK_FALSE(CsvEventDecoder::FromHeader("event_id,customer_id,timestamp,type,type").ok());
  CHECK_FALSE(CsvEventDecoder::FromHeader("event_id,customer_id,timestamp,type,attributes").ok());
  CHECK_FALSE(CsvEventDecoder::FromHeader("\"event_id,customer_id,timestamp,type").ok());
  const auto missing = CsvEventDecoder::FromHeader("event_id,customer_id,type,amount");
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.status().message().find("timestamp") != std::string::npos);
  CHECK_OK(CsvEventDecoder::FromHeader("type,timestamp,customer_id,event_id"));
}

TEST_CASE("CSV and JSON front-ends agree on the same records", "[ingest]") {
  auto csv = CsvEventDecoder::FromHeader(kHeader);
  REQUIRE_OK(csv);
  EventDecoder json;
  struct Pair {
    const char* csv;
    const char* json;
  };
  const Pair pairs[] = {
      {"a,b,2024-02-29T23:59:59.999+05:30,refund,store,0,GBP,",
       R"({"event_id":"a","customer_id":"b","timestamp":"2024-02-29T23:59:59.999+05:30",)"
       R"("type":"refund","channel":"store","amount":0,"currency":"GBP"})"},
      {"a,b,2024-02-30T00:00:00Z,login,,,,",
       R"({"event_id":"a","customer_id":"b","timestamp":"2024-02-30T00:00:00Z","type":"login"})"},
      {"a,b,2026-03-01T12:00:00Z,purchase,,1000000001,,",
       R"({"event_id":"a","customer_id":"b","timestamp":"2026-03-01T12:00:00Z",)"
       R"("type":"purchase","amount":1000000001})"},
  };
  for (const Pair& p : pairs) {
    INFO(p.csv);
    Event a, b;
    const Rejection ra = csv->Decode(p.csv, &a);
    const Rejection rb = json.Decode(p.json, &b);
    CHECK(ra.code == rb.code);
    CHECK(ra.field == rb.field);
    if (!ra.rejected() && !rb.rejected()) {
      CHECK(a.timestamp_ms == b.timestamp_ms);
      CHECK(a.amount == b.amount);
      CHECK(a.currency == b.currency);
    }
  }
}

}  // namespace
}  // namespace crmstream::ingest
