// The reviewed list: the catalogue follows Prometheus' naming conventions,
// and docs/metrics.md documents exactly the names the code exports.
#include "crmstream/admin/metric_catalogue.h"

#include <prometheus/check_names.h>

#include <catch2/catch.hpp>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include "support/test_support.h"

namespace crmstream::admin {
namespace {

bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

TEST_CASE("Metric catalogue follows the naming conventions", "[metrics]") {
  std::set<std::string_view> names;
  for (const MetricDef& def : kMetricCatalogue) {
    INFO(def.name);
    CHECK(names.insert(def.name).second);
    CHECK(def.name.starts_with("crmstream_"));
    CHECK(prometheus::CheckMetricName(std::string(def.name)));
    CHECK(!def.help.empty());
    const bool total = EndsWith(def.name, "_total");
    CHECK(total == (def.kind == MetricKind::kCounter));
    if (def.kind == MetricKind::kHistogram) CHECK(EndsWith(def.name, "_seconds"));
    // Base units only.
    for (std::string_view bad : {"_milliseconds", "_ms", "_kilobytes", "_megabytes", "_minutes"}) {
      CHECK(def.name.find(bad) == std::string_view::npos);
    }
    std::string labels(def.labels);
    std::stringstream ss(labels);
    for (std::string label; std::getline(ss, label, ',');) {
      CHECK(prometheus::CheckLabelName(label));
    }
  }
}

TEST_CASE("docs/metrics.md documents exactly the catalogue", "[metrics]") {
  std::ifstream in(testing::SourceDir() / "docs" / "metrics.md");
  REQUIRE(in.good());
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string doc = ss.str();
  // Names in the table's first column: "| `crmstream_...` |".
  std::set<std::string> documented;
  const std::regex row(R"(^\| `(crmstream_[a-z0-9_]+)` \|)", std::regex::multiline);
  for (auto it = std::sregex_iterator(doc.begin(), doc.end(), row); it != std::sregex_iterator();
       ++it) {
    documented.insert((*it)[1].str());
  }
  std::set<std::string> catalogue;
  for (const MetricDef& def : kMetricCatalogue) catalogue.insert(std::string(def.name));
  CHECK(documented == catalogue);
  // And every documented row states the type the code exports.
  for (const MetricDef& def : kMetricCatalogue) {
    const char* kind = def.kind == MetricKind::kCounter ? "counter"
                       : def.kind == MetricKind::kGauge ? "gauge"
                                                        : "histogram";
    const std::string expected = "| `" + std::string(def.name) + "` | " + kind + " |";
    INFO(expected);
    CHECK(doc.find(expected) != std::string::npos);
  }
}

}  // namespace
}  // namespace crmstream::admin
