// What the processor publishes on every output topic, from a generated world
// (churners, refund bursts, outages, malformed records): the records are
// validated against docs/schemas with a real JSON Schema validator (Ajv,
// through node), and their content is checked against the generator's input
// and independent recomputations.
#include <simdjson.h>

#include <algorithm>
#include <array>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include "alerting_options.h"
#include "crmstream/alerts/churn_alert_policy.h"
#include "crmstream/common/hash.h"
#include "crmstream/generator/world_generator.h"
#include "crmstream/pipeline/event_processor.h"
#include "schema_validation.h"
#include "support/require_ok.h"
#include "support/test_support.h"

namespace crmstream::pipeline {
namespace {

constexpr int64_t kDay = 86'400'000;
constexpr int64_t kHour = 3'600'000;

// Keeps every record except most customer-scores ones (a few thousand are
// enough to validate, and all of them would be hundreds of megabytes).
class KeepingSink final : public OutputSink {
 public:
  static constexpr size_t kMaxScores = 3000;
  void Emit(OutputKind kind, std::string_view key, std::string_view value) override {
    auto& list = records[static_cast<size_t>(kind)];
    ++counts[static_cast<size_t>(kind)];
    if (kind == OutputKind::kCustomerScores && list.size() >= kMaxScores) return;
    list.push_back({std::string(key), std::string(value)});
  }
  struct Record {
    std::string key;
    std::string value;
  };
  std::array<std::vector<Record>, kOutputKindCount> records;
  std::array<uint64_t, kOutputKindCount> counts{};
};

struct WorldRun {
  KeepingSink sink;
  std::unordered_map<std::string, std::string> customer_of_event;  // event_id -> customer
  std::unordered_map<std::string, int64_t> time_of_event;
  generator::GroundTruth truth;
  ProcessorOptions options = AlertingOptions();
};

// 1,500 customers, 10% churn per 30 days, anomalies and malformed records,
// flushed every simulated hour as the engine flushes at each commit.
void RunWorld(int days, WorldRun* run) {
  generator::WorldOptions wo;
  wo.seed = 3;
  wo.customers = 1500;
  wo.churn_rate = 0.1;
  wo.anomalies.enabled = true;
  wo.anomalies.outages_per_day = 0.5;
  wo.malformed_rate = 0.0005;
  REQUIRE_OK_AND_ASSIGN(auto gen_owner, generator::WorldGenerator::Create(wo));
  generator::WorldGenerator& gen = *gen_owner;
  REQUIRE_OK_AND_ASSIGN(auto p_owner, EventProcessor::Create(run->options, &run->sink));
  EventProcessor& p = *p_owner;
  simdjson::dom::parser parser;
  ingest::SourcePosition pos{"crm.interactions", 0, 0};
  std::string key, value;
  const int64_t end = wo.start_ms + days * kDay;
  int64_t next_flush = wo.start_ms + kHour;
  for (int i = 0; i < 5'000'000; ++i) {
    const int64_t ts = gen.Next(&key, &value);
    if (ts >= end) break;
    while (ts >= next_flush) {
      p.FlushOutputs();
      next_flush += kHour;
    }
    if (p.Process(value, pos, ts) == ProcessOutcome::kAccepted) {
      simdjson::dom::element doc = parser.parse(value);
      const std::string id{std::string_view(doc["event_id"])};
      run->customer_of_event[id] = std::string(std::string_view(doc["customer_id"]));
      run->time_of_event[id] = ts;
    }
    ++pos.offset;
  }
  p.FlushOutputs();
  run->truth = gen.ground_truth();
}

#ifdef NDEBUG
constexpr int kDays = 60;
#else
constexpr int kDays = 40;  // debug and sanitizer builds are much slower
#endif

const WorldRun& SharedRun() {
  static WorldRun* run = [] {
    auto* r = new WorldRun;
    RunWorld(kDays, r);
    return r;
  }();
  return *run;
}

std::string TopicOf(OutputKind kind) {
  switch (kind) {
    case OutputKind::kCustomerScores:
      return "crm.customer-scores";
    case OutputKind::kChurnAlerts:
      return "crm.churn-alerts";
    case OutputKind::kSegments:
      return "crm.segments";
    case OutputKind::kAnomalies:
      return "crm.anomalies";
    case OutputKind::kCorrelations:
      return "crm.correlations";
    case OutputKind::kDeadLetter:
      return "crm.dead-letter";
    case OutputKind::kAssociations:
      return "crm.associations";
    case OutputKind::kRecommendations:
      return "crm.recommendations";
  }
  return "";
}

TEST_CASE("Every published record validates against its JSON Schema (Ajv)", "[pipeline][schemas]") {
  const WorldRun& run = SharedRun();
  testing::ScratchDir dir;
  std::string topics;
  for (int k = 0; k < kOutputKindCount; ++k) {
    const auto kind = static_cast<OutputKind>(k);
    // The generated world has no baskets: associations_test.cpp and
    // basket_outputs_test.cpp validate those.
    if (kind == OutputKind::kAssociations || kind == OutputKind::kRecommendations) continue;
    const std::string topic = TopicOf(kind);
    INFO(topic << ": " << run.sink.counts[static_cast<size_t>(k)] << " records");
    CHECK(run.sink.counts[static_cast<size_t>(k)] > 0);  // every kind is exercised
    std::ofstream out(dir.path() / (topic + ".jsonl"));
    for (const auto& r : run.sink.records[static_cast<size_t>(k)]) out << r.value << '\n';
    topics += " " + topic;
  }
  // Both record kinds of the two-kind topics are in the files validated.
  auto has = [&](OutputKind kind, std::string_view text) {
    const auto& list = run.sink.records[static_cast<size_t>(kind)];
    return std::any_of(list.begin(), list.end(),
                       [&](const auto& r) { return r.value.find(text) != std::string::npos; });
  };
  CHECK(has(OutputKind::kSegments, R"("kind":"segment_change")"));
  CHECK(has(OutputKind::kSegments, R"("kind":"centroids")"));
  CHECK(has(OutputKind::kAnomalies, R"("kind":"customer")"));
  CHECK(has(OutputKind::kAnomalies, R"("kind":"metric")"));

  CHECK(ValidateRecords(dir.path(), topics) == 0);

  // The validator rejects what breaks the contract (a test that cannot fail
  // proves nothing): a severity outside the enum, a missing trigger.
  testing::ScratchDir bad;
  {
    std::ofstream out(bad.path() / "crm.churn-alerts.jsonl");
    std::string record =
        run.sink.records[static_cast<size_t>(OutputKind::kChurnAlerts)].at(0).value;
    const size_t at = record.find("\"severity\":\"");
    REQUIRE(at != std::string::npos);
    record.insert(at + 12, "x");
    out << record << '\n';
  }
  CHECK(ValidateRecords(bad.path(), " crm.churn-alerts", /*quiet=*/true) == 1);
}

TEST_CASE("Churn alerts: trigger, explanation, id and cool-down as published",
          "[pipeline][alerts]") {
  const WorldRun& run = SharedRun();
  const auto& alerts = run.sink.records[static_cast<size_t>(OutputKind::kChurnAlerts)];
  REQUIRE(alerts.size() > 10);
  const alerts::ChurnAlertPolicyOptions& policy = run.options.models.churn.alerts;
  simdjson::dom::parser parser;
  std::map<std::string, std::vector<int64_t>> times_of;
  for (const auto& r : alerts) {
    simdjson::dom::element doc = parser.parse(r.value);
    const std::string customer{std::string_view(doc["customer_id"])};
    CHECK(r.key == customer);
    const int64_t as_of = int64_t(doc["as_of_ms"]);
    const double p = double(doc["churn_probability"]);
    CHECK(p >= policy.enter_probability);
    CHECK(double(doc["threshold"]) == policy.enter_probability);
    const std::string_view severity(doc["severity"]);
    CHECK(severity == (p >= policy.critical_probability ? "critical"
                       : p >= policy.high_probability   ? "high"
                                                        : "warning"));
    // The trigger is a real input event of this customer, at or before the
    // alert's time.
    const std::string event_id{std::string_view(doc["trigger"]["event_id"])};
    auto owner = run.customer_of_event.find(event_id);
    REQUIRE(owner != run.customer_of_event.end());
    CHECK(owner->second == customer);
    CHECK(int64_t(doc["trigger"]["timestamp_ms"]) == run.time_of_event.at(event_id));
    CHECK(int64_t(doc["trigger"]["timestamp_ms"]) <= as_of);
    // The alert id: Hash64 of the customer id seeded with the hash of the
    // episode start's 8 little-endian bytes.
    char bytes[8];
    std::memcpy(bytes, &as_of, 8);
    char hex[17];
    std::snprintf(
        hex, sizeof(hex), "%016llx",
        static_cast<unsigned long long>(Hash64(customer, Hash64(std::string_view(bytes, 8)))));
    CHECK(std::string_view(doc["alert_id"]) == hex);
    // Three distinct features, largest |contribution| first.
    simdjson::dom::array contributions = doc["contributions"];
    REQUIRE(contributions.size() == 3);
    double previous = INFINITY;
    std::vector<std::string> names;
    for (simdjson::dom::element c : contributions) {
      const double v = std::abs(double(c["contribution"]));
      CHECK(v <= previous);
      previous = v;
      names.emplace_back(std::string_view(c["feature"]));
    }
    std::sort(names.begin(), names.end());
    CHECK(std::unique(names.begin(), names.end()) == names.end());
    times_of[customer].push_back(as_of);
  }
  // No alert storm: one customer's alerts are a cool-down apart.
  for (auto& [customer, times] : times_of) {
    for (size_t i = 1; i < times.size(); ++i) {
      CHECK(times[i] - times[i - 1] >= policy.cooldown_ms);
    }
  }
}

TEST_CASE("Re-processing the same input publishes the same alert ids", "[pipeline][alerts]") {
  WorldRun again;
  RunWorld(kDays, &again);
  const auto& a = SharedRun().sink.records[static_cast<size_t>(OutputKind::kChurnAlerts)];
  const auto& b = again.sink.records[static_cast<size_t>(OutputKind::kChurnAlerts)];
  REQUIRE(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i) CHECK(a[i].value == b[i].value);
}

// `record` with its "segment" and "anomaly_score" values replaced by null:
// what a pipeline without those models publishes for the same customer.
std::string WithoutSegmentAndAnomaly(std::string record) {
  for (const std::string_view field : {"\"segment\":", "\"anomaly_score\":"}) {
    const size_t at = record.find(field);
    REQUIRE(at != std::string::npos);
    const size_t value = at + field.size();
    const size_t end = record.find_first_of(",}", value);
    record.replace(value, end - value, "null");
  }
  return record;
}

TEST_CASE(
    "A pipeline without segments and behaviour anomalies publishes the same churn and none "
    "of theirs",
    "[pipeline][segments][anomalies]") {
  const WorldRun& all = SharedRun();
  WorldRun churn_only;
  churn_only.options.models.segments_enabled = false;
  churn_only.options.models.behaviour_enabled = false;
  RunWorld(kDays, &churn_only);
  auto records = [](const WorldRun& run, OutputKind kind) -> const auto& {
    return run.sink.records[static_cast<size_t>(kind)];
  };
  auto count = [](const WorldRun& run, OutputKind kind) {
    return run.sink.counts[static_cast<size_t>(kind)];
  };

  // The churn and value models do not read the others: the same alerts and
  // the same customer-scores records, but for the two switched-off fields.
  const auto& alerts = records(all, OutputKind::kChurnAlerts);
  REQUIRE(alerts.size() > 10);
  REQUIRE(records(churn_only, OutputKind::kChurnAlerts).size() == alerts.size());
  for (size_t i = 0; i < alerts.size(); ++i) {
    CHECK(records(churn_only, OutputKind::kChurnAlerts)[i].value == alerts[i].value);
  }
  REQUIRE(count(churn_only, OutputKind::kCustomerScores) ==
          count(all, OutputKind::kCustomerScores));
  const auto& scores = records(all, OutputKind::kCustomerScores);
  int segmented = 0;
  for (size_t i = 0; i < scores.size(); ++i) {
    const std::string& off = records(churn_only, OutputKind::kCustomerScores)[i].value;
    CHECK(off == WithoutSegmentAndAnomaly(scores[i].value));
    segmented += scores[i].value.find("\"segment\":null") == std::string::npos;
  }
  CHECK(segmented > 0);  // the full pipeline's records do carry segments

  // Nothing of the switched-off models: no segment records, no customer
  // anomalies; the minute metrics' anomalies are not theirs and stay.
  CHECK(count(all, OutputKind::kSegments) > 0);
  CHECK(count(churn_only, OutputKind::kSegments) == 0);
  auto of_kind = [&](const WorldRun& run, std::string_view kind) {
    std::vector<std::string> out;
    for (const auto& r : records(run, OutputKind::kAnomalies)) {
      if (r.value.find(kind) != std::string::npos) out.push_back(r.value);
    }
    return out;
  };
  CHECK_FALSE(of_kind(all, R"("kind":"customer")").empty());
  CHECK(of_kind(churn_only, R"("kind":"customer")").empty());
  CHECK_FALSE(of_kind(all, R"("kind":"metric")").empty());
  CHECK(of_kind(churn_only, R"("kind":"metric")") == of_kind(all, R"("kind":"metric")"));

  // The records with null fields still meet the published schema.
  testing::ScratchDir dir;
  {
    std::ofstream out(dir.path() / "crm.customer-scores.jsonl");
    for (const auto& r : records(churn_only, OutputKind::kCustomerScores)) out << r.value << '\n';
  }
  CHECK(ValidateRecords(dir.path(), " crm.customer-scores") == 0);
}

TEST_CASE("Segment changes chain, snapshots follow their schedules", "[pipeline][segments]") {
  const WorldRun& run = SharedRun();
  simdjson::dom::parser parser;
  std::unordered_map<std::string, int64_t> current;  // customer -> segment
  int64_t last_centroids = 0;
  int snapshots = 0;
  for (const auto& r : run.sink.records[static_cast<size_t>(OutputKind::kSegments)]) {
    simdjson::dom::element doc = parser.parse(r.value);
    if (std::string_view(doc["kind"]) == "centroids") {
      CHECK(r.key == "centroids");
      const int64_t t = int64_t(doc["as_of_ms"]);
      CHECK(t % run.options.centroid_interval_ms == 0);
      CHECK(t > last_centroids);
      last_centroids = t;
      ++snapshots;
      simdjson::dom::array centroids = doc["centroids"];
      CHECK(centroids.size() == static_cast<size_t>(run.options.models.segments.k));
      continue;
    }
    const std::string customer{std::string_view(doc["customer_id"])};
    CHECK(r.key == customer);
    auto it = current.find(customer);
    // The first change comes from "no segment", each later one from the
    // previous change's target.
    if (it == current.end()) {
      CHECK(doc["from"].is_null());
    } else {
      CHECK(int64_t(doc["from"]) == it->second);
      CHECK(int64_t(doc["to"]) != it->second);
    }
    current[customer] = int64_t(doc["to"]);
  }
  // One snapshot per 15 minutes of event time, less the minutes before the
  // seeding of k-means.
  CHECK(snapshots > (kDays - 2) * 24 * 4);
  CHECK(snapshots <= kDays * 24 * 4);

  int64_t last_correlation = 0;
  int correlations = 0;
  for (const auto& r : run.sink.records[static_cast<size_t>(OutputKind::kCorrelations)]) {
    CHECK(r.key == "global");
    simdjson::dom::element doc = parser.parse(r.value);
    const int64_t t = int64_t(doc["as_of_ms"]);
    CHECK(t > last_correlation);
    last_correlation = t;
    ++correlations;
    simdjson::dom::array rows = doc["matrix"];
    std::vector<std::vector<double>> m;
    for (simdjson::dom::array row : rows) {
      m.emplace_back();
      for (simdjson::dom::element v : row) m.back().push_back(v.is_null() ? NAN : double(v));
    }
    for (size_t i = 0; i < 3; ++i) {
      for (size_t j = 0; j < 3; ++j) {
        if (std::isnan(m[i][j])) continue;
        CHECK(std::abs(m[i][j] - m[j][i]) < 1e-12);
        CHECK(std::abs(m[i][j]) <= 1.0 + 1e-9);
      }
    }
  }
  CHECK(correlations > (kDays - 1) * 24 * 4);
}

TEST_CASE("Metric anomalies point at the injected outages", "[pipeline][anomalies]") {
  const WorldRun& run = SharedRun();
  simdjson::dom::parser parser;
  std::vector<int64_t> minutes;
  for (const auto& r : run.sink.records[static_cast<size_t>(OutputKind::kAnomalies)]) {
    simdjson::dom::element doc = parser.parse(r.value);
    if (std::string_view(doc["kind"]) != "metric") continue;
    CHECK(r.key == std::string_view(doc["metric"]));
    CHECK(double(doc["score"]) >= run.options.minute_metrics.anomaly_level);
    minutes.push_back(int64_t(doc["as_of_ms"]));
  }
  // Metric anomalies fall in injected outages (or the hour after one
  // starts) far more often than the share of time those windows cover.
  int64_t covered = 0;
  int outages = 0;
  auto in_outage = [&](int64_t m) {
    return std::any_of(run.truth.anomalies.begin(), run.truth.anomalies.end(), [&](const auto& a) {
      return a.kind == generator::AnomalyKind::kOutage && m >= a.start_ms - 60'000 &&
             m < std::max(a.end_ms, a.start_ms + kHour);
    });
  };
  for (const auto& a : run.truth.anomalies) {
    if (a.kind != generator::AnomalyKind::kOutage) continue;
    ++outages;
    covered += std::max(a.end_ms, a.start_ms + kHour) - (a.start_ms - 60'000);
  }
  const int inside = static_cast<int>(std::count_if(minutes.begin(), minutes.end(), in_outage));
  const double time_share = static_cast<double>(covered) / static_cast<double>(kDays * kDay);
  INFO("outages " << outages << " covering " << time_share << " of the time; metric anomalies "
                  << minutes.size() << ", inside them " << inside);
  REQUIRE(outages >= 5);
  REQUIRE(minutes.size() >= 5);
  CHECK(inside >= 2);
  CHECK(static_cast<double>(inside) / static_cast<double>(minutes.size()) > 3 * time_share);
}

}  // namespace
}  // namespace crmstream::pipeline
