// Data-set feeds: the shipped pipeline files load, mapping rules do what the
// configuration says (checked against values computed here by hand or from
// the raw file), and the real data sets reach their published figures.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "crmstream/feeds/event_feed.h"
#include "crmstream/feeds/feed_spec.h"
#include "crmstream/feeds/series_feed.h"
#include "crmstream/feeds/table_feed.h"
#include "crmstream/pipeline/pipeline_spec.h"
#include "pipeline/recording_sink.h"
#include "support/require_ok.h"
#include "support/test_support.h"

namespace crmstream::feeds {
namespace {

using testing::ScratchDir;
using testing::SourceDir;

std::filesystem::path WriteFile(const std::filesystem::path& dir, const std::string& name,
                                const std::string& text) {
  const auto p = dir / name;
  std::ofstream(p, std::ios::binary) << text;
  return p;
}

pipeline::ProcessorOptions CrmOptions() {
  auto spec = pipeline::LoadPipelineSpec((SourceDir() / "pipelines" / "crm.yaml").string());
  REQUIRE_OK(spec);
  return spec->processor;
}

// Exact ROC-AUC by ranks (ties count one half), the batch reference.
double ExactAuc(std::vector<std::pair<double, bool>> scored) {
  std::sort(scored.begin(), scored.end());
  double rank_sum = 0, positives = 0;
  size_t i = 0;
  while (i < scored.size()) {
    size_t j = i;
    while (j < scored.size() && scored[j].first == scored[i].first) ++j;
    const double mid_rank = (static_cast<double>(i + j) + 1.0) / 2.0;  // 1-based average
    for (size_t k = i; k < j; ++k) {
      if (scored[k].second) {
        rank_sum += mid_rank;
        positives += 1;
      }
    }
    i = j;
  }
  const double negatives = static_cast<double>(scored.size()) - positives;
  return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives);
}

}  // namespace

TEST_CASE("the shipped feed pipelines load", "[feeds]") {
  for (const char* name : {"online-retail.yaml", "telco-churn.yaml", "nab.yaml"}) {
    const std::string path = (SourceDir() / "pipelines" / name).string();
    INFO(path);
    REQUIRE(IsFeedFile(path));
    auto spec = LoadFeedSpec(path);
    REQUIRE_OK(spec);
  }
  CHECK_FALSE(IsFeedFile((SourceDir() / "pipelines" / "crm.yaml").string()));
  auto retail = LoadFeedSpec((SourceDir() / "pipelines" / "online-retail.yaml").string());
  REQUIRE_OK(retail);
  CHECK(retail->kind == FeedKind::kEvents);
  CHECK(std::filesystem::exists(ResolvePipelinePath(*retail)));
  auto telco = LoadFeedSpec((SourceDir() / "pipelines" / "telco-churn.yaml").string());
  REQUIRE_OK(telco);
  CHECK(telco->kind == FeedKind::kTable);
  CHECK(telco->table.numeric.size() == 5);
  CHECK(telco->table.categorical.size() == 16);
}

TEST_CASE("feed configuration errors name the file, line and field", "[feeds]") {
  ScratchDir dir;
  auto missing_type = WriteFile(dir.path(), "a.yaml", R"(name: a
source:
  kind: events
  fields:
    event_id: {column: id}
    customer_id: {column: who}
    timestamp: {column: when}
)");
  auto st = LoadFeedSpec(missing_type.string()).status();
  REQUIRE_FALSE(st.ok());
  CHECK_THAT(st.ToString(), Catch::Contains("a.yaml:5") && Catch::Contains("source.fields") &&
                                Catch::Contains("'type'"));

  auto two_ops = WriteFile(dir.path(), "b.yaml", R"(name: b
source:
  kind: events
  fields:
    event_id: {column: id, constant: x}
    customer_id: {column: who}
    timestamp: {column: when}
    type: {constant: login}
)");
  st = LoadFeedSpec(two_ops.string()).status();
  REQUIRE_FALSE(st.ok());
  CHECK_THAT(st.ToString(), Catch::Contains("b.yaml:5") && Catch::Contains("event_id") &&
                                Catch::Contains("exactly one"));

  auto typo = WriteFile(dir.path(), "c.yaml", R"(name: c
source:
  kind: table
  label: {column: y, positive: "1", negative: "0"}
  numeric:
    - {name: a, column: a, transfrom: log1p}
)");
  st = LoadFeedSpec(typo.string()).status();
  REQUIRE_FALSE(st.ok());
  CHECK_THAT(st.ToString(), Catch::Contains("c.yaml:6") && Catch::Contains("transfrom") &&
                                Catch::Contains("transform"));

  auto bad_interaction = WriteFile(dir.path(), "d.yaml", R"(name: d
source:
  kind: table
  label: {column: y}
  numeric:
    - {name: a, column: a}
  categorical: {columns: [k]}
  interactions:
    - {categorical: k, numeric: b}
)");
  st = LoadFeedSpec(bad_interaction.string()).status();
  REQUIRE_FALSE(st.ok());
  CHECK_THAT(st.ToString(), Catch::Contains("d.yaml:9") && Catch::Contains("'b'"));
}

TEST_CASE("an events feed maps rows to events through the engine's processor", "[feeds]") {
  ScratchDir dir;
  // Retail-like lines: a purchase, a quoted description with a comma, a
  // cancellation (refund), a verbatim repeat, a line without a customer and
  // a line with a broken quote.
  auto csv = WriteFile(dir.path(), "lines.csv",
                       "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID\n"
                       "1,A,plain,6,2011-01-02 10:00:00,2.5,17850.0\n"
                       "1,B,\"cup, blue\",2,2011-01-02 10:00:00,1.25,17850.0\n"
                       "C2,A,plain,-1,2011-01-03 09:00:00,2.5,17850.0\n"
                       "1,A,plain,6,2011-01-02 10:00:00,2.5,17850.0\n"
                       "3,A,plain,1,2011-01-04 11:00:00,4,\n"
                       "4,A,\"broken,1,2011-01-04 11:00:00,4,12000.0\n"
                       "5,Z,x,3,2011-01-05 12:00:00,10,12346.0\n");
  auto spec = LoadFeedSpec((SourceDir() / "pipelines" / "online-retail.yaml").string());
  REQUIRE_OK(spec);
  pipeline::RecordingSink sink;
  REQUIRE_OK_AND_ASSIGN(auto processor_owner,
                        pipeline::EventProcessor::Create(CrmOptions(), &sink));
  pipeline::EventProcessor& processor = *processor_owner;
  auto stats = RunEventFeed(*spec, csv, &processor);
  REQUIRE_OK(stats);
  CHECK(stats->records == 7);
  CHECK(stats->accepted == 4);
  CHECK(stats->duplicates == 1);
  CHECK(stats->rejected == 2);

  const features::CustomerFeatures* c = processor.feature_store().Find("17850");
  REQUIRE(c != nullptr);
  CHECK(c->frequency() == 2);
  CHECK(c->purchase_amount_total() == Approx(6 * 2.5 + 2 * 1.25));
  CHECK(c->refund_amount_total() == Approx(2.5));
  CHECK(processor.feature_store().Find("12346") != nullptr);
  CHECK(processor.feature_store().size() == 2);

  auto dead = sink.Of(pipeline::OutputKind::kDeadLetter);
  REQUIRE(dead.size() == 2);
  CHECK_THAT(dead[0]->value, Catch::Contains("\"reason\":\"missing_field\"") &&
                                 Catch::Contains("\"field\":\"customer_id\"") &&
                                 Catch::Contains("3,A,plain,1,2011-01-04 11:00:00,4,") &&
                                 Catch::Contains("\"offset\":6"));
  CHECK_THAT(dead[1]->value, Catch::Contains("\"reason\":\"malformed_csv\"") &&
                                 Catch::Contains("unterminated quoted field"));
}

TEST_CASE("online retail replays as a transaction stream", "[feeds][data]") {
  SKIP_WITHOUT_DATA(data);
  const auto csv = data / "online-retail" / "online_retail.csv";
  // Independent counts from the raw file: lines, lines without CustomerID,
  // distinct customers, verbatim repeats of every column but Description.
  uint64_t lines = 0, no_customer = 0, repeats = 0;
  std::set<std::string> customers, seen;
  {
    std::ifstream in(csv);
    std::string line;
    std::getline(in, line);  // header
    while (std::getline(in, line)) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line.empty()) continue;
      ++lines;
      // Split on commas outside quotes.
      std::vector<std::string> cells(1);
      bool quoted = false;
      for (char ch : line) {
        if (ch == '"') {
          quoted = !quoted;
        } else if (ch == ',' && !quoted) {
          cells.emplace_back();
        } else {
          cells.back().push_back(ch);
        }
      }
      REQUIRE(cells.size() == 8);
      if (cells[6].empty()) {
        ++no_customer;
        continue;
      }
      customers.insert(cells[6]);
      const std::string key = cells[0] + "|" + cells[1] + "|" + cells[3] + "|" + cells[4] + "|" +
                              cells[5] + "|" + cells[6];
      if (!seen.insert(key).second) ++repeats;
    }
  }
  auto spec = LoadFeedSpec((SourceDir() / "pipelines" / "online-retail.yaml").string());
  REQUIRE_OK(spec);
  pipeline::DiscardingSink sink;
  auto options = CrmOptions();
  options.dedup_capacity = 1 << 20;  // the whole file fits: every repeat is caught
  REQUIRE_OK_AND_ASSIGN(auto processor_owner, pipeline::EventProcessor::Create(options, &sink));
  pipeline::EventProcessor& processor = *processor_owner;
  auto stats = RunEventFeed(*spec, csv, &processor);
  REQUIRE_OK(stats);
  CHECK(lines == 541909);
  CHECK(stats->records == lines);
  CHECK(stats->rejected == no_customer);
  CHECK(processor.counters()
            .by_reason[static_cast<size_t>(ingest::RejectReason::kMissingField)]
            .Get() == no_customer);
  CHECK(stats->duplicates == repeats);
  CHECK(stats->accepted == lines - no_customer - repeats);
  CHECK(processor.feature_store().size() == customers.size());
  CHECK(sink.records(pipeline::OutputKind::kDeadLetter) == no_customer);
}

TEST_CASE("a table feed learns a churn signal prequentially", "[feeds]") {
  // A synthetic table: churn depends on a numeric column and a category.
  ScratchDir dir;
  std::ostringstream text;
  text << "id,usage,plan,label\n";
  uint64_t state = 12345;
  auto next = [&] {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    return static_cast<double>(state >> 11) / 9007199254740992.0;
  };
  std::vector<bool> labels;
  for (int i = 0; i < 4000; ++i) {
    const double usage = next() * 10;
    const int plan = static_cast<int>(next() * 3);
    const double logit = -2.0 + 0.5 * (5 - usage) + (plan == 2 ? 1.5 : 0.0);
    const bool churn = next() < 1.0 / (1.0 + std::exp(-logit));
    labels.push_back(churn);
    text << "c" << i << "," << usage << ",p" << plan << "," << (churn ? "yes" : "no") << "\n";
  }
  auto csv = WriteFile(dir.path(), "table.csv", text.str());
  auto yaml = WriteFile(dir.path(), "table.yaml", R"(name: synthetic
source:
  kind: table
  id: id
  label: {column: label, positive: "yes", negative: "no"}
  numeric:
    - {name: usage, column: usage}
  categorical: {columns: [plan], max_categories: 4}
)");
  auto spec = LoadFeedSpec(yaml.string());
  REQUIRE_OK(spec);
  std::vector<std::pair<double, bool>> scored;
  size_t row = 0;
  bool ids_match = true;
  auto report = RunTableFeed(*spec, csv, [&](std::string_view id, double p, bool label) {
    ids_match = ids_match && id == "c" + std::to_string(row) && label == labels[row];
    scored.emplace_back(p, label);
    ++row;
  });
  REQUIRE_OK(report);
  CHECK(ids_match);
  CHECK(report->rows == 4000);
  CHECK(report->features == 1 + 5);
  // The true logit's own AUC on this sample bounds what any model can do;
  // an online model should get close to it.
  const double auc = ExactAuc(scored);
  CHECK(auc > 0.75);
  CHECK(report->auc == Approx(auc).margin(0.005));

  auto bad = WriteFile(dir.path(), "bad.csv", "id,usage,plan,label\nx,1,p0,yes\ny,2,p1,maybe\n");
  auto st = RunTableFeed(*spec, bad).status();
  REQUIRE_FALSE(st.ok());
  CHECK_THAT(st.ToString(), Catch::Contains("bad.csv:3") && Catch::Contains("maybe"));
}

TEST_CASE("telco churn through its feed pipeline beats the published batch AUC", "[feeds][data]") {
  SKIP_WITHOUT_DATA(data);
  auto spec = LoadFeedSpec((SourceDir() / "pipelines" / "telco-churn.yaml").string());
  REQUIRE_OK(spec);
  std::vector<std::pair<double, bool>> scored;
  auto report =
      RunTableFeed(*spec, data / "telco-churn" / "WA_Fn-UseC_-Telco-Customer-Churn.csv",
                   [&](std::string_view, double p, bool label) { scored.emplace_back(p, label); });
  REQUIRE_OK(report);
  CHECK(report->rows == 7043);
  CHECK(report->positives == 1869);
  const double auc = ExactAuc(scored);
  // Batch logistic regression with 5-fold CV: 0.845 (data set README).
  CHECK(auc >= 0.845);
  CHECK(report->auc == Approx(auc).margin(0.002));
  REQUIRE(report->last_explanation.size() == 3);
}

TEST_CASE("a series feed scores a metric file from the past only", "[feeds]") {
  ScratchDir dir;
  std::ostringstream text;
  text << "timestamp,value\n";
  const int n = 3000, spike = 2500;
  for (int i = 0; i < n; ++i) {
    const double v = (i == spike) ? 400.0 : 100.0 + 10.0 * std::sin(i * 0.3);
    text << "2024-01-01 00:" << i << ",";
    text << v << "\n";
  }
  auto csv = WriteFile(dir.path(), "metric.csv", text.str());
  auto spec = LoadFeedSpec((SourceDir() / "pipelines" / "nab.yaml").string());
  REQUIRE_OK(spec);
  auto report = RunSeriesFeed(*spec, csv, dir.path() / "out");
  REQUIRE_OK(report);
  CHECK(report->rows == n);
  CHECK_FALSE(report->nab.has_value());
  std::ifstream in(dir.path() / "out" / "crmstream_metric.csv");
  std::string line;
  std::getline(in, line);
  CHECK(line == "timestamp,value,anomaly_score");
  int rows = 0, argmax = -1;
  double best = -1;
  while (std::getline(in, line)) {
    const double score = std::stod(line.substr(line.rfind(',') + 1));
    CHECK(score >= 0.0);
    CHECK(score <= 1.0);
    if (score > best) {
      best = score;
      argmax = rows;
    }
    ++rows;
  }
  CHECK(rows == n);
  CHECK(argmax == spike);
}

}  // namespace crmstream::feeds
