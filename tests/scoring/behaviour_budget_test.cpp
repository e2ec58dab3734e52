// The customer-anomaly budget: reports are rationed per 1,000 customers per
// day of event time, a customer is reported once per severity per episode,
// and the state format refuses the older version.
#include <catch2/catch.hpp>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "crmstream/common/binary_io.h"
#include "crmstream/scoring/behaviour_anomaly_detector.h"
#include "scoring_test_support.h"
#include "support/require_ok.h"

namespace crmstream::scoring {
namespace {

using testing::EventSource;
using testing::Partition;

constexpr int64_t kMillisPerDay = 86'400'000;

struct Report {
  std::string customer;
  int64_t as_of_ms;
  int severity;
  double rarity;
};

struct BudgetRun {
  std::vector<Report> reports;
  BehaviourAnomalyDetector::Quality quality;
  int64_t first_ms = 0, last_ms = 0;
  uint64_t customers = 0;
};

// A world flooded with refund bursts (one a day per 20 customers; many
// more and refunds stop being rare for the population model), run
// through one partition and refreshed every 500 events as the engine
// refreshes each consumed batch.
BudgetRun RunFlood(double budget_per_1000_per_day, int events) {
  generator::WorldOptions wo;
  wo.seed = 11;
  wo.customers = 1000;
  wo.anomalies.enabled = true;
  wo.anomalies.refund_bursts_per_day = 50;
  EventSource source(wo);
  CustomerModelsOptions o = testing::AlertingOptions();
  o.behaviour.budget_per_1000_per_day = budget_per_1000_per_day;
  Partition p(o);
  BudgetRun run;
  for (int n = 0; n < events; ++n) {
    const ingest::Event& e = source.Next();
    if (n == 0) run.first_ms = e.timestamp_ms;
    run.last_ms = e.timestamp_ms;
    p.Process(e);
    if (n % 500 != 499) continue;
    p.store->ForEachPending([&](std::string_view id, const features::CustomerFeatures& f) {
      const CustomerRefresh& r = p.models.Refresh(f);
      if (r.anomaly.crossed) {
        run.reports.push_back(
            {std::string(id), r.as_of_ms, static_cast<int>(r.anomaly.severity), r.anomaly.rarity});
      }
    });
    p.models.EndFlush();
    p.store->ClearPending();
  }
  run.quality = p.models.behaviour().quality();
  run.customers = p.store->size();
  return run;
}

TEST_CASE("Customer anomalies stay within the budget, with the severity of their rarity",
          "[scoring][anomaly]") {
  constexpr int kEvents = 150'000;
  // 5 per 1,000 customers per day: a day's budget of about 5 records.
  const BudgetRun tight = RunFlood(5.0, kEvents);
  const BudgetRun loose = RunFlood(1000.0, kEvents);
  const double days = static_cast<double>(tight.last_ms - tight.first_ms) / kMillisPerDay;
  WARN(days << " days, " << tight.customers << " customers: tight budget " << tight.reports.size()
            << " reports (" << tight.quality.anomalies_withheld << " withheld), loose budget "
            << loose.reports.size() << " reports");
  REQUIRE(days > 5);
  // The flood needs far more than the budget allows...
  REQUIRE(static_cast<double>(loose.reports.size()) > 1.5 * days * 5.0 * 1.1);
  REQUIRE(tight.quality.anomalies_withheld > 0);
  // (The loose budget withholds only while the first customers arrive.)
  CHECK(loose.quality.anomalies_withheld * 10 < loose.reports.size());
  // ...and gets at most a day's budget up front plus the refill: 5 per 1,000
  // customers per day.
  const double per_day = 5.0 * static_cast<double>(tight.customers) / 1000.0;
  CHECK(static_cast<double>(tight.reports.size()) <= per_day * (days + 1) + 1);
  CHECK(tight.quality.anomalies_reported == tight.reports.size());
  // Each report's severity is the one its rarity gives.
  const BehaviourOptions defaults;
  for (const Report& x : loose.reports) {
    REQUIRE(x.severity >= 0);
    CHECK(x.rarity >= defaults.severity_rarity[static_cast<size_t>(x.severity)]);
    if (x.severity < 2) {
      CHECK(x.rarity < defaults.severity_rarity[static_cast<size_t>(x.severity) + 1]);
    }
  }
  // Within an episode a customer is reported again only at a higher
  // severity: two reports of one customer less than an hour apart escalate.
  std::map<std::string, Report> last;
  int escalations = 0;
  for (const Report& x : loose.reports) {
    auto it = last.find(x.customer);
    if (it != last.end() && x.as_of_ms - it->second.as_of_ms < kMillisPerDay / 24) {
      CHECK(x.severity > it->second.severity);
      ++escalations;
    }
    last[x.customer] = x;
  }
  WARN(escalations << " escalations within an hour");
}

TEST_CASE("Behaviour options refuse disordered severities and an empty budget",
          "[scoring][anomaly]") {
  BehaviourOptions o;
  REQUIRE_OK(o.Validate());
  o.severity_rarity = {6, 6, 12};
  CHECK(o.Validate().message().find("severity_rarity[1]") != std::string::npos);
  o = {};
  o.severity_rarity = {0, 9, 12};
  CHECK(o.Validate().code() == StatusCode::kInvalidArgument);
  o = {};
  o.budget_per_1000_per_day = 0;
  CHECK(o.Validate().message().find("budget_per_1000_per_day") != std::string::npos);
}

// Version 1 held no rarity, reported severity or budget: reading it as
// version 2 would misplace every field, so it is refused, naming both.
TEST_CASE("Behaviour state of format version 1 is refused", "[scoring][state]") {
  REQUIRE_OK_AND_ASSIGN(BehaviourAnomalyDetector detector,
                        BehaviourAnomalyDetector::Create({}, features::FeatureSpec{}));
  std::string section;
  {
    BinaryWriter w(&section);
    w.Put<uint16_t>(1);
    std::string payload;
    BinaryWriter p(&payload);
    p.Put<uint8_t>(1);
    p.Put<double>(0.995);
    w.PutBytes(payload);
  }
  BinaryReader in(section);
  const auto customer = detector.ReadCustomer(&in);
  REQUIRE(customer.status().code() == StatusCode::kCorruption);
  CHECK(customer.status().message().find("version 1, expected 2") != std::string::npos);

  std::string current;
  detector.EncodePartition(&current);
  REQUIRE_OK(detector.DecodePartition(current));
  // The version-1 payload: the detector, the scored and anomaly counts.
  std::string payload;
  {
    BinaryWriter w(&payload);
    models::MultivariateAnomalyDetector::Options mo;
    mo.dim = 4;
    w.PutBytes(std::move(models::MultivariateAnomalyDetector::Create(mo)).value().Serialize());
    w.Put<uint64_t>(10);
    w.Put<uint64_t>(1);
  }
  const Status old =
      detector.DecodePartition(SealBlob(BlobKind::kBehaviourPartitionState, 1, payload));
  CHECK(old.code() == StatusCode::kCorruption);
  CHECK(old.message().find("version 1 is not supported (expected 2)") != std::string::npos);
}

}  // namespace
}  // namespace crmstream::scoring
