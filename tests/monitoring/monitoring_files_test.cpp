// The shipped rules and dashboard only use metrics the engine exports (by
// the catalogue), and the dashboard is importable: a uid, a data-source
// variable every panel uses.
#include <simdjson.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include "crmstream/admin/metric_catalogue.h"
#include "support/test_support.h"

namespace crmstream::admin {
namespace {

std::string ReadFile(const std::filesystem::path& p) {
  std::ifstream in(p);
  REQUIRE(in.good());
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Names of the form crmstream_... used in `text` that the catalogue does not
// define (histogram series suffixes resolved to their histogram).
std::set<std::string> UnknownMetrics(const std::string& text, size_t* used) {
  std::set<std::string> known, histograms;
  for (const MetricDef& d : kMetricCatalogue) {
    known.insert(std::string(d.name));
    if (d.kind == MetricKind::kHistogram) histograms.insert(std::string(d.name));
  }
  std::set<std::string> unknown;
  const std::regex name(R"(crmstream_[a-z0-9_]+)");
  *used = 0;
  for (auto it = std::sregex_iterator(text.begin(), text.end(), name); it != std::sregex_iterator();
       ++it) {
    std::string n = it->str();
    for (const char* suffix : {"_bucket", "_count", "_sum"}) {
      const std::string s(suffix);
      if (n.size() > s.size() && n.ends_with(s) &&
          histograms.count(n.substr(0, n.size() - s.size()))) {
        n.resize(n.size() - s.size());
      }
    }
    ++*used;
    if (!known.count(n)) unknown.insert(n);
  }
  return unknown;
}

TEST_CASE("Alert rules use only exported metrics", "[monitoring]") {
  const auto rules = testing::SourceDir() / "monitoring" / "rules";
  size_t files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(rules)) {
    if (entry.path().extension() != ".yml") continue;
    ++files;
    size_t used = 0;
    INFO(entry.path().string());
    CHECK(UnknownMetrics(ReadFile(entry.path()), &used).empty());
    CHECK(used > 0);
  }
  CHECK(files > 0);
}

TEST_CASE("Grafana dashboard is importable and uses only exported metrics", "[monitoring]") {
  const std::string text =
      ReadFile(testing::SourceDir() / "monitoring" / "grafana" / "crmstream-engine.json");
  size_t used = 0;
  CHECK(UnknownMetrics(text, &used).empty());
  CHECK(used > 20);

  simdjson::dom::parser parser;
  simdjson::dom::element dash = parser.parse(text);
  CHECK(std::string_view(dash["uid"]) == "crmstream-engine");
  CHECK(!std::string_view(dash["title"]).empty());
  bool has_datasource_variable = false;
  for (simdjson::dom::element v : dash["templating"]["list"].get_array()) {
    if (std::string_view(v["type"]) == "datasource" &&
        std::string_view(v["name"]) == "datasource") {
      CHECK(std::string_view(v["query"]) == "prometheus");
      has_datasource_variable = true;
    }
  }
  CHECK(has_datasource_variable);
  std::set<int64_t> ids;
  int queries = 0;
  for (simdjson::dom::element p : dash["panels"].get_array()) {
    CHECK(ids.insert(int64_t(p["id"])).second);
    if (std::string_view(p["type"]) == "row") continue;
    CHECK(std::string_view(p["datasource"]["uid"]) == "${datasource}");
    for (simdjson::dom::element t : p["targets"].get_array()) {
      CHECK(std::string_view(t["datasource"]["uid"]) == "${datasource}");
      CHECK(!std::string_view(t["expr"]).empty());
      ++queries;
    }
  }
  CHECK(queries > 20);
}

}  // namespace
}  // namespace crmstream::admin
