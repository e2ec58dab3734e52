#include "crmstream/ingest/dead_letter.h"

#include <simdjson.h>

#include <catch2/catch.hpp>
#include <string>

#include "crmstream/ingest/json_decoder.h"

namespace crmstream::ingest {
namespace {

std::string_view Str(simdjson::dom::element e, const char* key) { return std::string_view(e[key]); }

TEST_CASE("DeadLetterRecord holds the reason, the source and the original", "[ingest]") {
  EventDecoder decoder;
  const std::string original =
      R"({"event_id":"e-9","timestamp":"2026-03-01T12:00:00Z","type":"login"})";
  Event e;
  const Rejection r = decoder.Decode(original, &e);
  REQUIRE(r.code == RejectReason::kMissingField);

  DeadLetterRecord builder;
  const SourcePosition source{"crm.interactions", 3, 42};
  const std::string json(builder.Build(r, source, original, 1772366400000));

  simdjson::dom::parser parser;
  simdjson::dom::element doc = parser.parse(json);
  CHECK(Str(doc, "reason") == "missing_field");
  CHECK(Str(doc, "field") == "customer_id");
  CHECK(Str(doc, "detail").find("customer_id") != std::string_view::npos);
  CHECK(Str(doc["source"], "topic") == "crm.interactions");
  CHECK(int64_t(doc["source"]["partition"]) == 3);
  CHECK(int64_t(doc["source"]["offset"]) == 42);
  CHECK(Str(doc, "original") == original);
  CHECK(int64_t(doc["original_size"]) == static_cast<int64_t>(original.size()));
  CHECK(int64_t(doc["received_at_ms"]) == 1772366400000);
  CHECK(doc["original_base64"].error() == simdjson::NO_SUCH_FIELD);
  CHECK(doc["original_truncated"].error() == simdjson::NO_SUCH_FIELD);
}

TEST_CASE("DeadLetterRecord base64-encodes bytes that are not UTF-8", "[ingest]") {
  DeadLetterRecord builder;
  const std::string original(
      "\xFF\xFE\x00"
      "a",
      4);
  const Rejection r{RejectReason::kNotJson, "", "bad"};
  const std::string json(builder.Build(r, SourcePosition{"replay.jsonl", -1, 7}, original, 5));
  simdjson::dom::parser parser;
  simdjson::dom::element doc = parser.parse(json);
  CHECK(Str(doc, "reason") == "not_json");
  CHECK(Str(doc, "field").empty());
  CHECK(Str(doc, "original_base64") == "//4AYQ==");  // RFC 4648 by hand
  CHECK(doc["original"].error() == simdjson::NO_SUCH_FIELD);
  CHECK(int64_t(doc["source"]["partition"]) == -1);
  CHECK(int64_t(doc["source"]["offset"]) == 7);
}

TEST_CASE("DeadLetterRecord escapes control characters and truncates long originals", "[ingest]") {
  DeadLetterRecord builder(10);
  // "ab\n" + 4 two-byte characters: the cut at 10 bytes splits the 4th one.
  const std::string original = "ab\n\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9xyz";
  const std::string json(
      builder.Build({RejectReason::kTooLarge, "", ""}, {"t", 0, 1}, original, 0));
  simdjson::dom::parser parser;
  simdjson::dom::element doc = parser.parse(json);
  CHECK(Str(doc, "original") == "ab\n\xC3\xA9\xC3\xA9\xC3\xA9");
  CHECK(bool(doc["original_truncated"]));
  CHECK(int64_t(doc["original_size"]) == static_cast<int64_t>(original.size()));
  CHECK(Str(doc, "detail") == RejectReasonDescription(RejectReason::kTooLarge));
}

TEST_CASE("AppendBase64 matches RFC 4648 test vectors", "[ingest]") {
  const std::pair<const char*, const char*> vectors[] = {{"", ""},
                                                         {"f", "Zg=="},
                                                         {"fo", "Zm8="},
                                                         {"foo", "Zm9v"},
                                                         {"foob", "Zm9vYg=="},
                                                         {"fooba", "Zm9vYmE="},
                                                         {"foobar", "Zm9vYmFy"}};
  for (const auto& [in, out] : vectors) {
    std::string s;
    AppendBase64(in, &s);
    CHECK(s == out);
  }
}

}  // namespace
}  // namespace crmstream::ingest
