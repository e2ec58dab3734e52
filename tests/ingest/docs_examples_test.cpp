// The examples in docs/events.md and the enum in docs/event-schema.json are
// part of the contract: this test keeps them true.
#include <simdjson.h>

#include <catch2/catch.hpp>
#include <fstream>
#include <sstream>
#include <string>

#include "crmstream/ingest/csv_decoder.h"
#include "crmstream/ingest/dead_letter.h"
#include "crmstream/ingest/json_decoder.h"
#include "support/require_ok.h"
#include "support/test_support.h"

namespace crmstream::ingest {
namespace {

std::string ReadFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in.good());
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<std::string> Split(const std::string& text, char sep) {
  std::vector<std::string> parts;
  std::stringstream ss(text);
  std::string part;
  while (std::getline(ss, part, sep)) parts.push_back(part);
  return parts;
}

TEST_CASE("Every example in docs/events.md decodes as documented", "[ingest]") {
  const std::string doc = ReadFile(crmstream::testing::SourceDir() / "docs" / "events.md");
  const std::vector<std::string> lines = Split(doc, '\n');
  const std::string marker = "<!-- example: ";
  EventDecoder decoder;
  int examples = 0;
  for (size_t i = 0; i + 3 < lines.size(); ++i) {
    if (lines[i].rfind(marker, 0) != 0) continue;
    const std::string spec = lines[i].substr(marker.size(), lines[i].find(" -->") - marker.size());
    REQUIRE(lines[i + 1] == "```json");
    REQUIRE(lines[i + 3] == "```");
    const std::string& json = lines[i + 2];
    INFO(spec << " : " << json);
    const std::vector<std::string> words = Split(spec, ' ');
    Event e;
    const Rejection r = decoder.Decode(json, &e);
    if (words[0] == "accepted") {
      CHECK_FALSE(r.rejected());
    } else {
      REQUIRE(words.size() >= 2);
      CHECK(words[0] == "rejected");
      CHECK(RejectReasonName(r.code) == words[1]);
      CHECK(r.field == (words.size() > 2 ? words[2] : ""));
    }
    ++examples;
  }
  CHECK(examples >= 11);
}

TEST_CASE("The CSV and dead-letter examples in docs/events.md hold", "[ingest]") {
  auto csv = CsvEventDecoder::FromHeader(
      "event_id,customer_id,timestamp,type,channel,amount,currency,plan");
  REQUIRE_OK(csv);
  Event e;
  CHECK_FALSE(csv->Decode("e-1,c-42,2026-03-01T12:00:00Z,purchase,web,19.99,EUR,", &e).rejected());
  REQUIRE_FALSE(
      csv->Decode("e-2,c-42,2026-03-02 08:26:00,plan_change,\"phone, callback\",,,gold", &e)
          .rejected());
  CHECK(e.channel == "phone, callback");
  auto short_csv = CsvEventDecoder::FromHeader("event_id,customer_id,timestamp,type");
  REQUIRE_OK(short_csv);
  CHECK(short_csv->Decode("e-12,c-42,\"2026-03-01T12:00:00Z,login", &e).code ==
        RejectReason::kMalformedCsv);

  // The documented dead letter, rebuilt from its documented inputs.
  const std::string original =
      R"({"event_id":"e-5","timestamp":"2026-03-01T12:00:00Z","type":"login"})";
  EventDecoder decoder;
  const Rejection r = decoder.Decode(original, &e);
  DeadLetterRecord builder;
  const std::string built(
      builder.Build(r, SourcePosition{"crm.interactions", 3, 42}, original, 1772366400123));
  const std::string doc = ReadFile(crmstream::testing::SourceDir() / "docs" / "events.md");
  const size_t start = doc.find("{\"reason\":\"missing_field\"");
  REQUIRE(start != std::string::npos);
  std::string documented = doc.substr(start, doc.find("\n```", start) - start);
  // The documented record is wrapped with "\n " for reading.
  for (size_t at = documented.find("\n "); at != std::string::npos; at = documented.find("\n ")) {
    documented.erase(at, 2);
  }
  CHECK(documented == built);
}

TEST_CASE("docs/event-schema.json lists exactly the event types", "[ingest]") {
  simdjson::dom::parser parser;
  const std::string text = ReadFile(crmstream::testing::SourceDir() / "docs" / "event-schema.json");
  simdjson::dom::element schema = parser.parse(text);
  std::vector<std::string_view> names;
  for (simdjson::dom::element name : schema["properties"]["type"]["enum"].get_array()) {
    names.push_back(std::string_view(name));
  }
  CHECK(names == std::vector<std::string_view>(kEventTypeNames.begin(), kEventTypeNames.end()));
  std::vector<std::string_view> required;
  for (simdjson::dom::element name : schema["required"].get_array()) {
    required.push_back(std::string_view(name));
  }
  CHECK(required == std::vector<std::string_view>{"event_id", "customer_id", "timestamp", "type"});
}

}  // namespace
}  // namespace crmstream::ingest
