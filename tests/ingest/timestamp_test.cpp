#include "crmstream/ingest/timestamp.h"

#include <catch2/catch.hpp>

namespace crmstream::ingest {
namespace {

// Reference values computed independently with GNU date:
//   date -u -d '<time>' +%s%3N
TEST_CASE("ParseTimestampMs accepts RFC 3339 and space-separated forms", "[ingest]") {
  CHECK(ParseTimestampMs("2026-03-01T12:00:00Z") == 1772366400000);
  CHECK(ParseTimestampMs("2026-03-01t12:00:00z") == 1772366400000);
  CHECK(ParseTimestampMs("2011-12-01 08:26:00") == 1322727960000);  // no zone: UTC
  CHECK(ParseTimestampMs("2011-12-01T08:26:00") == 1322727960000);
  CHECK(ParseTimestampMs("2000-01-01T00:00:00Z") == 946684800000);
  CHECK(ParseTimestampMs("2100-01-01T00:00:00Z") == 4102444800000);
  CHECK(ParseTimestampMs("1970-01-01T00:00:00Z") == 0);
  CHECK(ParseTimestampMs("1969-12-31T23:59:59.999Z") == -1);
}

TEST_CASE("ParseTimestampMs applies offsets and fractions", "[ingest]") {
  // 2024-02-29T23:59:59.999+05:30 == 2024-02-29T18:29:59.999Z
  CHECK(ParseTimestampMs("2024-02-29T23:59:59.999+05:30") == 1709231399999);
  CHECK(ParseTimestampMs("2024-02-29T23:59:59.999+0530") == 1709231399999);
  CHECK(ParseTimestampMs("2026-03-01T07:00:00-05:00") == 1772366400000);
  CHECK(ParseTimestampMs("2026-03-01T12:00:00+00:00") == 1772366400000);
  CHECK(ParseTimestampMs("2026-03-01T12:00:00-00:00") == 1772366400000);
  CHECK(ParseTimestampMs("2026-03-01T12:00:00.5Z") == 1772366400500);
  CHECK(ParseTimestampMs("2026-03-01T12:00:00.05Z") == 1772366400050);
  // Digits past milliseconds are truncated, not rounded.
  CHECK(ParseTimestampMs("2026-03-01T12:00:00.123999999Z") == 1772366400123);
}

TEST_CASE("ParseTimestampMs validates the calendar", "[ingest]") {
  CHECK(ParseTimestampMs("2024-02-29T00:00:00Z").has_value());  // leap year
  CHECK(ParseTimestampMs("2000-02-29T00:00:00Z").has_value());  // divisible by 400
  CHECK_FALSE(ParseTimestampMs("2023-02-29T00:00:00Z"));        // not a leap year
  CHECK_FALSE(ParseTimestampMs("2100-02-29T00:00:00Z"));        // divisible by 100
  CHECK_FALSE(ParseTimestampMs("2026-04-31T00:00:00Z"));
  CHECK_FALSE(ParseTimestampMs("2026-13-01T00:00:00Z"));
  CHECK_FALSE(ParseTimestampMs("2026-00-01T00:00:00Z"));
  CHECK_FALSE(ParseTimestampMs("2026-01-00T00:00:00Z"));
  CHECK_FALSE(ParseTimestampMs("2026-01-01T24:00:00Z"));
  CHECK_FALSE(ParseTimestampMs("2026-01-01T00:60:00Z"));
  CHECK_FALSE(ParseTimestampMs("2026-01-01T00:00:60Z"));  // leap seconds are not accepted
}

TEST_CASE("ParseTimestampMs rejects malformed text", "[ingest]") {
  for (const char* bad :
       {"", "2026-03-01", "2026-03-01T12:00Z", "2026-3-01T12:00:00Z", "2026-03-01X12:00:00Z",
        "2026-03-01T12:00:00.Z", "2026-03-01T12:00:00ZZ", "2026-03-01T12:00:00+5:00",
        "2026-03-01T12:00:00+24:00", "2026-03-01T12:00:00+05:60", "2026-03-01T12:00:00 ",
        " 2026-03-01T12:00:00Z", "1772366400000", "12/1/2010 8:26"}) {
    INFO(bad);
    CHECK_FALSE(ParseTimestampMs(bad));
  }
}

TEST_CASE("FormatTimestampMs writes RFC 3339 that parses back", "[ingest]") {
  char buf[32];
  CHECK(FormatTimestampMs(1709231399999, buf) == "2024-02-29T18:29:59.999Z");
  CHECK(FormatTimestampMs(946684800000, buf) == "2000-01-01T00:00:00.000Z");
  CHECK(FormatTimestampMs(-1, buf) == "1969-12-31T23:59:59.999Z");
  for (int64_t ms = 946684800000; ms < 4102444800000; ms += 86'400'000LL * 97 + 12'345) {
    CHECK(ParseTimestampMs(FormatTimestampMs(ms, buf)) == ms);
  }
}

}  // namespace
}  // namespace crmstream::ingest
