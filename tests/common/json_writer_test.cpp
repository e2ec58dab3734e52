#include "crmstream/common/json_writer.h"

#include <catch2/catch.hpp>
#include <cstdio>
#include <random>

namespace crmstream {
namespace {

TEST_CASE("JsonWriter writes nested records with escapes", "[common]") {
  std::string out;
  JsonWriter w(&out);
  w.BeginObject();
  w.Field("id", "a\"b\\c\n\x01");
  w.Field("n", int64_t{-3});
  w.Field("x", 0.1);
  w.Field("ok", true);
  w.Key("nan");
  w.Double(std::nan(""));
  w.Key("list");
  w.BeginArray();
  w.Int(1);
  w.BeginObject();
  w.EndObject();
  w.Raw("{\"k\":[]}");
  w.EndArray();
  w.EndObject();
  CHECK(out ==
        R"({"id":"a\"b\\c\n\u0001","n":-3,"x":0.1,"ok":true,"nan":null,"list":[1,{},{"k":[]}]})");
}

// RFC 8259's escapes, one byte at a time: the reference for the writer's
// word-at-a-time scan.
std::string ReferenceQuoted(std::string_view s) {
  std::string out = "\"";
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += ch;
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c == '\b') {
      out += "\\b";
    } else if (c == '\f') {
      out += "\\f";
    } else if (c < 0x20) {
      char esc[8];
      std::snprintf(esc, sizeof(esc), "\\u%04x", c);
      out += esc;
    } else {
      out += ch;
    }
  }
  return out + "\"";
}

TEST_CASE("JsonWriter escapes every byte as a byte-at-a-time escaper does", "[common]") {
  // Bytes near every boundary of the scan: controls, the two escaped
  // characters, their neighbours, UTF-8 bytes, at every position of a word.
  const std::string alphabet = std::string("\x00\x01\x1f !\"#[\\]a~\x7f\x80\xc3\xa9\xff\n\t", 19);
  std::mt19937_64 rng(7);
  std::string s, out;
  for (int trial = 0; trial < 20000; ++trial) {
    s.clear();
    const size_t n = rng() % 41;
    // Mostly plain text, as keys and ids are, with escapes here and there.
    for (size_t i = 0; i < n; ++i) {
      s += rng() % 4 == 0 ? alphabet[rng() % alphabet.size()] : static_cast<char>('a' + rng() % 26);
    }
    out.clear();
    JsonWriter::AppendString(&out, s);
    INFO("trial " << trial);
    REQUIRE(out == ReferenceQuoted(s));
  }
}

}  // namespace
}  // namespace crmstream
