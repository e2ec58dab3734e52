#include "crmstream/common/json_writer.h"

#include <catch2/catch.hpp>

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

}  // namespace
}  // namespace crmstream
