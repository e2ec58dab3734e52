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

TEST_CASE("JsonWriter writes a _key literal as it writes the same key at run time", "[common]") {
  using json_literals::operator""_key;
  // Every place a key can be: first in an object, after a value, after a
  // nested object or array, and a key given twice in a row.
  const auto write = [](auto key) {
    std::string out;
    JsonWriter w(&out);
    w.BeginObject();
    w.Field(key("a"), 1);
    w.Key(key("obj"));
    w.BeginObject();
    w.Field(key("b"), "x");
    w.Key(key("list"));
    w.BeginArray();
    w.BeginObject();
    w.Field(key("c"), 2.5);
    w.EndObject();
    w.EndArray();
    w.Field(key("d"), false);
    w.EndObject();
    w.Key(key("twice"));
    w.Key(key("e"));
    w.Null();
    w.Field(key("f"), int64_t{-1});
    w.EndObject();
    return out;
  };
  const std::string runtime = write([](std::string_view k) { return k; });
  const std::string literal = write([](std::string_view k) {
    // The literal for each name the record above uses.
    constexpr JsonKey keys[] = {"a"_key, "obj"_key, "b"_key,     "list"_key, "c"_key,
                                "d"_key, "e"_key,   "twice"_key, "f"_key};
    for (const JsonKey& key : keys) {
      std::string_view name = key.encoded();  // ,"name":
      if (name.substr(2, name.size() - 4) == k) return key;
    }
    FAIL("no literal for " << k);
    return keys[0];
  });
  CHECK(runtime ==
        R"({"a":1,"obj":{"b":"x","list":[{"c":2.5}],"d":false},"twice":"e":null,"f":-1})");
  CHECK(literal == runtime);
  CHECK(("customer_id"_key).encoded() == R"(,"customer_id":)");
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
