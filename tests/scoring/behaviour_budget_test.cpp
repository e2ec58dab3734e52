// The customer-anomaly budget: reports are rationed per 1,000 customers per
// day of event time, a customer is reported once per severity per episode,
// and the state format refuses the older version.
#include <catch2/catch.hpp>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
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
  int event;  // the index of the event after which it was refreshed
  int64_t as_of_ms;
  int severity;
  double rarity;
};

struct BudgetRun {
  std::vector<Report> reports;
  BehaviourAnomalyDetector::Quality quality;
  int64_t first_ms = 0, last_ms = 0;
  uint64_t customers = 0;
  // Reports withheld before the stream's second day (its first customers
  // arriving).
  uint64_t withheld_first_day = 0;
  // The detector's checkpoint at the end: its partition blob and each
  // customer's section, by slot (slots follow the order of first events).
  std::string partition_state;
  std::vector<std::string> customer_states;
};

// A world flooded with refund bursts (one a day per 20 customers; many
// more and refunds stop being rare for the population model), run
// through one partition and refreshed every `refresh_every` events (the
// engine refreshes each consumed batch) and at the end.
BudgetRun RunFlood(double budget_per_1000_per_day, int events, int refresh_every = 500) {
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
    if (run.last_ms < run.first_ms + kMillisPerDay &&
        e.timestamp_ms >= run.first_ms + kMillisPerDay) {
      run.withheld_first_day = p.models.behaviour().quality().anomalies_withheld;
    }
    run.last_ms = e.timestamp_ms;
    p.Process(e);
    if ((n + 1) % refresh_every != 0 && n + 1 != events) continue;
    p.store->ForEachPending([&](std::string_view id, const features::CustomerFeatures& f) {
      const CustomerRefresh& r = p.models.Refresh(f);
      if (r.anomaly.crossed) {
        run.reports.push_back({std::string(id), n, r.as_of_ms, static_cast<int>(r.anomaly.severity),
                               r.anomaly.rarity});
      }
    });
    p.models.EndFlush();
    p.store->ClearPending();
  }
  const BehaviourAnomalyDetector& detector = p.models.behaviour();
  run.quality = detector.quality();
  run.customers = p.store->size();
  detector.EncodePartition(&run.partition_state);
  run.customer_states.resize(p.store->size());
  for (uint32_t slot = 0; slot < p.store->size(); ++slot) {
    detector.AppendCustomer(slot, &run.customer_states[slot]);
  }
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
  // (The loose budget withholds while the first customers arrive: a day's
  // budget grows with them faster than it fills.)
  CHECK((loose.quality.anomalies_withheld - loose.withheld_first_day) * 10 < loose.reports.size());
  // ...and gets at most a day's budget up front plus the refill: 5
  // incidents per 1,000 customers per day. An incident is an episode's first
  // report (its escalations are free, at most two): counted here as the
  // reports that do not raise one of the same customer less than an hour
  // before (an over-count, since an escalation may come later).
  const double per_day = 5.0 * static_cast<double>(tight.customers) / 1000.0;
  std::map<std::string, const Report*> previous;
  size_t incidents = 0;
  for (const Report& x : tight.reports) {
    const Report*& before = previous[x.customer];
    if (before == nullptr || x.as_of_ms - before->as_of_ms >= kMillisPerDay / 24 ||
        x.severity <= before->severity) {
      ++incidents;
    }
    before = &x;
  }
  CHECK(static_cast<double>(incidents) <= per_day * (days + 1) + 1);
  CHECK(tight.reports.size() <= 3 * incidents);
  // A customer reported twice within one refresh (an escalation) is
  // published once, at the higher severity.
  CHECK(tight.quality.anomalies_reported >= tight.reports.size());
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

// Episodes and reports are decided at each event, in event time: the same
// stream refreshed after every event or every 500 leaves the same state, and
// publishes the same reports but for escalations within one refresh.
TEST_CASE("The anomaly budget and episodes do not depend on how events are batched",
          "[scoring][anomaly]") {
  constexpr int kEvents = 60'000;
  const BudgetRun each = RunFlood(5.0, kEvents, /*refresh_every=*/1);
  const BudgetRun batched = RunFlood(5.0, kEvents, /*refresh_every=*/500);
  const BudgetRun other = RunFlood(5.0, kEvents, /*refresh_every=*/2048);
  REQUIRE(each.quality.anomalies_withheld > 0);  // the budget binds
  REQUIRE(each.reports.size() > 20);
  CHECK(each.quality.anomalies_reported == each.reports.size());
  for (const BudgetRun* run : {&batched, &other}) {
    CHECK(run->quality.anomalies_reported == each.quality.anomalies_reported);
    CHECK(run->quality.anomalies_withheld == each.quality.anomalies_withheld);
    CHECK(run->partition_state == each.partition_state);
    REQUIRE(run->customer_states.size() == each.customer_states.size());
    size_t different = 0;
    for (size_t slot = 0; slot < each.customer_states.size(); ++slot) {
      different += run->customer_states[slot] != each.customer_states[slot] ? 1 : 0;
    }
    CHECK(different == 0);
    // What a refresh publishes is, per customer, the last report decided at
    // its events since the previous refresh: the per-event run's reports
    // grouped by refresh.
    const int every = run == &batched ? 500 : 2048;
    std::map<std::pair<int, std::string>, std::pair<int, double>> expected;
    for (const Report& x : each.reports) {
      expected[{x.event / every, x.customer}] = {x.severity, x.rarity};
    }
    std::map<std::pair<int, std::string>, std::pair<int, double>> published;
    for (const Report& x : run->reports) {
      published[{x.event / every, x.customer}] = {x.severity, x.rarity};
    }
    CHECK(published.size() == run->reports.size());
    CHECK(published == expected);
    WARN(run->reports.size() << " reports refreshed every " << every << " events, "
                             << each.reports.size() << " after each event");
  }
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
  CHECK(customer.status().message().find("version 1, expected 2 to 3") != std::string::npos);

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

// A version-2 customer section (reports decided at flushes) still reads: its
// "scored since the flush" bit is dropped (nothing waits to be published),
// and the customer is written back as version 3.
TEST_CASE("Behaviour customer state of version 2 reads, with no report waiting",
          "[scoring][state]") {
  REQUIRE_OK_AND_ASSIGN(BehaviourAnomalyDetector detector,
                        BehaviourAnomalyDetector::Create({}, features::FeatureSpec{}));
  const auto section = [](uint16_t version, uint8_t flags) {
    std::string out, payload;
    BinaryWriter p(&payload);
    p.Put<uint8_t>(flags);
    p.Put<uint8_t>(2);          // high reported in the episode
    p.Put<double>(0.99609375);  // a float: the slot keeps scores as floats
    p.Put<double>(9.5);
    BinaryWriter w(&out);
    w.Put<uint16_t>(version);
    w.PutBytes(payload);
    return out;
  };
  const std::string v2 = section(2, /*active, fresh*/ 1 | 2);
  BinaryReader in(v2);
  REQUIRE_OK_AND_ASSIGN(const auto decoded, detector.ReadCustomer(&in));
  detector.InstallCustomer(0, decoded);
  CHECK(detector.score(0) == 0.99609375);
  CHECK(detector.rarity(0) == 9.5);
  std::string written;
  detector.AppendCustomer(0, &written);
  CHECK(written == section(3, /*active*/ 1));
  // In version 3 that bit is a waiting report, which carries its score and
  // rarity: without them the section is refused.
  const std::string v3_pending = section(3, 1 | 2);
  BinaryReader truncated(v3_pending);
  CHECK(detector.ReadCustomer(&truncated).status().code() == StatusCode::kCorruption);
}

// A report decided but not yet published is kept beside the slots (few
// customers have one): it is checkpointed with its own score and rarity,
// published once after a restore, and an evicted customer takes only its own.
TEST_CASE("A report waiting for its flush survives a checkpoint and an eviction beside it",
          "[scoring][state]") {
  REQUIRE_OK_AND_ASSIGN(BehaviourAnomalyDetector detector,
                        BehaviourAnomalyDetector::Create({}, features::FeatureSpec{}));
  REQUIRE_OK_AND_ASSIGN(auto store, features::FeatureStore::Create(features::FeatureSpec{}));
  const std::vector<std::string> ids = {"a", "b", "c", "d"};
  for (const std::string& id : ids) {
    store->Update(testing::HandEvent(id, id, 1'700'000'000'000, ingest::EventType::kRefund, 5));
  }
  // Version 3 sections: active, the severity reported (1 + 1) and, when
  // `report` is set, waiting to be published with its own score and rarity.
  const auto section = [](bool report, double report_score, double report_rarity) {
    std::string out, payload;
    BinaryWriter p(&payload);
    p.Put<uint8_t>(static_cast<uint8_t>(1 | (report ? 2 << 1 : 0)));
    p.Put<uint8_t>(2);
    p.Put<double>(0.5);  // the latest score, fallen since the report
    p.Put<double>(0.0);
    if (report) {
      p.Put<double>(report_score);
      p.Put<double>(report_rarity);
    }
    BinaryWriter w(&out);
    w.Put<uint16_t>(3);
    w.PutBytes(payload);
    return out;
  };
  const auto install = [&](uint32_t slot, const std::string& bytes) {
    BinaryReader in(bytes);
    REQUIRE_OK_AND_ASSIGN(const auto decoded, detector.ReadCustomer(&in));
    detector.InstallCustomer(slot, decoded);
  };
  const std::string waiting_b = section(true, 0.9921875, 7.25);
  const std::string waiting_d = section(true, 0.99609375, 9.5);
  install(1, waiting_b);
  install(3, waiting_d);
  install(2, section(false, 0, 0));
  std::string written;
  detector.AppendCustomer(1, &written);
  CHECK(written == waiting_b);
  written.clear();
  detector.AppendCustomer(3, &written);
  CHECK(written == waiting_d);

  detector.ForgetCustomer(1);  // evicted: its report goes with it
  UnsavedSlots unsaved;
  AnomalyCrossing crossing;
  detector.Refresh(store->At(3), &unsaved, &crossing);
  CHECK(crossing.crossed);
  CHECK(static_cast<int>(crossing.severity) == 1);
  CHECK(crossing.score == 0.99609375);
  CHECK(crossing.rarity == 9.5);
  detector.Refresh(store->At(3), &unsaved, &crossing);
  CHECK_FALSE(crossing.crossed);  // published once
  CHECK(crossing.score == 0.5);
  detector.Refresh(store->At(2), &unsaved, &crossing);
  CHECK_FALSE(crossing.crossed);
  // Reinstalled, the evicted customer's report is published with its own figures.
  install(1, waiting_b);
  detector.Refresh(store->At(1), &unsaved, &crossing);
  CHECK(crossing.crossed);
  CHECK(crossing.score == 0.9921875);
  CHECK(crossing.rarity == 7.25);
  written.clear();
  detector.AppendCustomer(1, &written);
  CHECK(written == section(false, 0, 0));
}

}  // namespace
}  // namespace crmstream::scoring
