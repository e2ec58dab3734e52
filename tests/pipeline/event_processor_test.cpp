#include "crmstream/pipeline/event_processor.h"

#include <simdjson.h>

#include <catch2/catch.hpp>
#include <map>
#include <string>
#include <vector>

#include "crmstream/generator/world_generator.h"
#include "recording_sink.h"
#include "support/require_ok.h"

namespace crmstream::pipeline {
namespace {

constexpr int64_t kNow = 1767225600000;  // 2026-01-01T00:00:00Z

std::string Purchase(const std::string& id, const std::string& customer, int64_t ts,
                     double amount) {
  return R"({"event_id":")" + id + R"(","customer_id":")" + customer + R"(","timestamp":)" +
         std::to_string(ts) + R"(,"type":"purchase","amount":)" + std::to_string(amount) +
         R"(,"currency":"EUR"})";
}

TEST_CASE("Processor: accepted events update features and a flush emits one record per customer",
          "[pipeline]") {
  RecordingSink sink;
  REQUIRE_OK_AND_ASSIGN(auto p_owner, EventProcessor::Create(ProcessorOptions{}, &sink));
  EventProcessor& p = *p_owner;
  ingest::SourcePosition pos{"crm.interactions", 2, 40};
  CHECK(p.Process(Purchase("e1", "C1", kNow, 10.0), pos, kNow) == ProcessOutcome::kAccepted);
  pos.offset = 41;
  CHECK(p.Process(Purchase("e2", "C1", kNow + 86400000, 30.0), pos, kNow) ==
        ProcessOutcome::kAccepted);
  CHECK(p.Process(Purchase("e3", "C2", kNow, 5.0), pos, kNow) == ProcessOutcome::kAccepted);
  CHECK(sink.records.empty());  // coalesced until the flush

  p.FlushOutputs();
  auto scores = sink.Of(OutputKind::kCustomerScores);
  REQUIRE(scores.size() == 2);
  CHECK(scores[0]->key == "C1");
  simdjson::dom::parser parser;
  simdjson::dom::element doc = parser.parse(scores[0]->value);
  CHECK(std::string_view(doc["customer_id"]) == "C1");
  CHECK(int64_t(doc["events"]) == 2);
  CHECK(int64_t(doc["as_of_ms"]) == kNow + 86400000);
  CHECK(doc["features"].is_object());
  CHECK(double(doc["features"]["monetary"]) == Approx(40.0));
  // The online models' scores travel in the same record; the churn
  // probability only once the model's alert gate is open (no label has
  // matured here).
  CHECK(doc["churn_probability"].is_null());
  CHECK(std::string_view(doc["churn_model"]["state"]) == "warming_up");
  CHECK(double(doc["predicted_value_30d"]) >= 0.0);
  CHECK(double(doc["anomaly_score"]) >= 0.0);
  CHECK((doc["segment"].is_null() || doc["segment"].is_int64()));
  const auto* f = p.feature_store().Find("C1");
  REQUIRE(f != nullptr);
  CHECK(f->frequency() == 2);

  p.FlushOutputs();  // nothing changed since: nothing more to say
  CHECK(sink.Of(OutputKind::kCustomerScores).size() == 2);
  CHECK(p.Process(Purchase("e4", "C2", kNow + 1000, 1.0), pos, kNow) == ProcessOutcome::kAccepted);
  p.FlushOutputs();
  scores = sink.Of(OutputKind::kCustomerScores);
  REQUIRE(scores.size() == 3);
  CHECK(scores[2]->key == "C2");
}

TEST_CASE("Processor: a refresh scores without publishing customer-scores, a flush publishes them",
          "[pipeline]") {
  RecordingSink sink;
  REQUIRE_OK_AND_ASSIGN(auto p_owner, EventProcessor::Create(ProcessorOptions{}, &sink));
  EventProcessor& p = *p_owner;
  ingest::SourcePosition pos{"crm.interactions", 0, 0};
  CHECK(p.Process(Purchase("e1", "C1", kNow, 10.0), pos, kNow) == ProcessOutcome::kAccepted);
  CHECK(p.Process(Purchase("e2", "C2", kNow, 20.0), pos, kNow) == ProcessOutcome::kAccepted);
  p.RefreshScores();
  p.RefreshScores();  // nothing new: nothing to refresh
  CHECK(sink.Of(OutputKind::kCustomerScores).empty());
  CHECK(p.Process(Purchase("e3", "C1", kNow + 1000, 5.0), pos, kNow) == ProcessOutcome::kAccepted);
  p.RefreshScores();
  p.FlushOutputs();
  // One record per customer updated since the last flush, however many
  // refreshes came between.
  auto scores = sink.Of(OutputKind::kCustomerScores);
  REQUIRE(scores.size() == 2);
  CHECK(scores[0]->key == "C1");
  CHECK(scores[1]->key == "C2");
  simdjson::dom::parser parser;
  simdjson::dom::element doc = parser.parse(scores[0]->value);
  CHECK(double(doc["features"]["monetary"]) == Approx(15.0));

  // The record a query of the customer answers is the published one.
  std::string record;
  REQUIRE(p.WriteCustomerRecord("C1", &record));
  CHECK(record == scores[0]->value);
  CHECK_FALSE(p.WriteCustomerRecord("nobody", &record));
}

TEST_CASE("Processor: bad records go to the dead letters with reason and position", "[pipeline]") {
  RecordingSink sink;
  REQUIRE_OK_AND_ASSIGN(auto p_owner, EventProcessor::Create(ProcessorOptions{}, &sink));
  EventProcessor& p = *p_owner;
  struct Case {
    std::string bytes;
    std::string reason;
    std::string field;
  };
  std::vector<Case> cases = {
      {"{not json", "not_json", ""},
      {"[1,2]", "not_object", ""},
      {R"({"event_id":"x","timestamp":1767225600000,"type":"login"})", "missing_field",
       "customer_id"},
      {R"({"event_id":"x","customer_id":"C","timestamp":1767225600000,"type":"purchase","amount":"12"})",
       "wrong_type", "amount"},
      {R"({"event_id":"x","customer_id":"C","timestamp":1767225600000,"type":"teleport"})",
       "unknown_event_type", "type"},
      {R"({"event_id":"x","customer_id":"C","timestamp":"yesterday","type":"login"})",
       "bad_timestamp", "timestamp"},
      {R"({"event_id":"x","customer_id":"C","timestamp":1767225600000,"type":"refund","amount":-5})",
       "out_of_range", "amount"},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    ingest::SourcePosition pos{"crm.interactions", 1, static_cast<int64_t>(100 + i)};
    CHECK(p.Process(cases[i].bytes, pos, kNow) == ProcessOutcome::kRejected);
  }
  auto dead = sink.Of(OutputKind::kDeadLetter);
  REQUIRE(dead.size() == cases.size());
  CHECK(sink.Of(OutputKind::kCustomerScores).empty());
  simdjson::dom::parser parser;
  for (size_t i = 0; i < cases.size(); ++i) {
    INFO(cases[i].bytes);
    simdjson::dom::element doc = parser.parse(dead[i]->value);
    CHECK(std::string_view(doc["reason"]) == cases[i].reason);
    if (!cases[i].field.empty()) CHECK(std::string_view(doc["field"]) == cases[i].field);
    CHECK(std::string_view(doc["original"]) == cases[i].bytes);
    CHECK(std::string_view(doc["source"]["topic"]) == "crm.interactions");
    CHECK(int64_t(doc["source"]["offset"]) == static_cast<int64_t>(100 + i));
  }
  CHECK(p.counters().rejected.Get() == cases.size());
  CHECK(p.counters().accepted.Get() == 0);
}

TEST_CASE("Processor: a repeated event_id is counted once", "[pipeline]") {
  RecordingSink sink;
  REQUIRE_OK_AND_ASSIGN(auto p_owner, EventProcessor::Create(ProcessorOptions{}, &sink));
  EventProcessor& p = *p_owner;
  ingest::SourcePosition pos{"t", 0, 0};
  CHECK(p.Process(Purchase("same", "C9", kNow, 5.0), pos, kNow) == ProcessOutcome::kAccepted);
  CHECK(p.Process(Purchase("same", "C9", kNow, 5.0), pos, kNow) == ProcessOutcome::kDuplicate);
  CHECK(p.counters().duplicates.Get() == 1);
  p.FlushOutputs();
  CHECK(sink.Of(OutputKind::kCustomerScores).size() == 1);
  CHECK(p.feature_store().Find("C9")->frequency() == 1);
}

TEST_CASE("Processor: plan names are bounded, an event beyond a bound is a dead letter",
          "[pipeline]") {
  RecordingSink sink;
  ProcessorOptions options;
  options.models_enabled = false;
  REQUIRE_OK_AND_ASSIGN(auto p_owner, EventProcessor::Create(options, &sink));
  EventProcessor& p = *p_owner;
  auto plan_change = [](int n, const std::string& customer, const std::string& plan) {
    return R"({"event_id":"p)" + std::to_string(n) + R"(","customer_id":")" + customer +
           R"(","timestamp":)" + std::to_string(kNow + n) + R"(,"type":"plan_change","plan":")" +
           plan + R"("})";
  };
  ingest::SourcePosition pos{"t", 0, 0};
  // Longer than 64 bytes: refused by the validator.
  CHECK(p.Process(plan_change(0, "C1", std::string(65, 'x')), pos, kNow) ==
        ProcessOutcome::kRejected);
  CHECK(p.Process(plan_change(1, "C1", std::string(64, 'x')), pos, kNow) ==
        ProcessOutcome::kAccepted);
  // The table fills up: the plan after the last one is refused, not
  // recorded as another plan; known plans still apply.
  int n = 2;
  for (size_t i = 1; i < features::FeatureStore::kMaxPlans; ++i, ++n) {
    INFO("plan " << i);
    REQUIRE(p.Process(plan_change(n, "C2", "plan-" + std::to_string(i)), pos, kNow) ==
            ProcessOutcome::kAccepted);
  }
  CHECK(p.feature_store().Find("C2")->plan() == "plan-1023");
  CHECK(p.Process(plan_change(n++, "C2", "one-too-many"), pos, kNow) == ProcessOutcome::kRejected);
  CHECK(p.feature_store().Find("C2")->plan() == "plan-1023");
  CHECK(p.Process(plan_change(n++, "C3", "plan-7"), pos, kNow) == ProcessOutcome::kAccepted);
  CHECK(p.feature_store().Find("C3")->plan() == "plan-7");
  const auto dead = sink.Of(OutputKind::kDeadLetter);
  REQUIRE(dead.size() == 2);
  simdjson::dom::parser parser;
  for (const auto* d : dead) {
    simdjson::dom::element doc = parser.parse(d->value);
    CHECK(std::string_view(doc["reason"]) == "out_of_range");
    CHECK(std::string_view(doc["field"]) == "plan");
  }
}

// A generated world with malformed and repeated records among its events.
generator::WorldOptions MessyWorld() {
  generator::WorldOptions world;
  world.customers = 300;
  world.malformed_rate = 0.01;
  world.duplicate_rate = 0.01;
  return world;
}

// The values of the first `count` records `world` generates.
std::vector<std::string> RecordsOf(const generator::WorldOptions& world, int count) {
  REQUIRE_OK_AND_ASSIGN(auto gen, generator::WorldGenerator::Create(world));
  std::vector<std::string> records;
  std::string key, value;
  for (int i = 0; i < count; ++i) {
    gen->Next(&key, &value);
    records.push_back(value);
  }
  return records;
}

TEST_CASE("Processor: customer_scores_every event publishes each accepted event's record at once",
          "[pipeline]") {
  // A generated world with malformed and repeated records: every accepted
  // event, and only those, leaves one customer-scores record before the
  // next record is processed, carrying the customer's events so far,
  // counted here from the input.
  const std::vector<std::string> records = RecordsOf(MessyWorld(), 5000);
  ProcessorOptions options;
  options.customer_scores_cadence = ProcessorOptions::ScoresCadence::kEvent;
  RecordingSink sink;
  REQUIRE_OK_AND_ASSIGN(auto p, EventProcessor::Create(options, &sink));
  std::map<std::string, int64_t, std::less<>> events_of;
  simdjson::dom::parser parser;
  size_t accepted = 0, other = 0;
  for (size_t i = 0; i < records.size(); ++i) {
    const std::string& value = records[i];
    const size_t before = sink.Of(OutputKind::kCustomerScores).size();
    const ProcessOutcome outcome =
        p->Process(value, {"crm.interactions", 0, static_cast<int64_t>(i)}, 0);
    const auto scores = sink.Of(OutputKind::kCustomerScores);
    if (outcome != ProcessOutcome::kAccepted) {
      ++other;
      CHECK(scores.size() == before);
      continue;
    }
    ++accepted;
    REQUIRE(scores.size() == before + 1);
    const std::string customer(std::string_view(parser.parse(value)["customer_id"]));
    const int64_t expected = ++events_of[customer];
    CHECK(scores.back()->key == customer);
    simdjson::dom::element doc = parser.parse(scores.back()->value);
    CHECK(int64_t(doc["events"]) == expected);
  }
  CHECK(accepted > 4500);
  CHECK(other > 0);  // the malformed and repeated records were met
  // Nothing is left for a flush: every record already left.
  p->FlushOutputs();
  CHECK(sink.Of(OutputKind::kCustomerScores).size() == accepted);
}

TEST_CASE(
    "Processor: records looked up ahead give the outputs and state of records decoded as "
    "they come",
    "[pipeline]") {
  // A generated world with malformed and repeated records, plus what could
  // trip a cached decode: a record over the look-ahead's size, a record
  // looked up ahead with another clock, one looked up but never processed,
  // and one buffer reused for another record's bytes.
  const generator::WorldOptions world = MessyWorld();
  std::vector<std::string> records = RecordsOf(world, 6000);
  std::string large = Purchase("big", "C-big", kNow, 3.0);
  large.insert(large.size() - 1, R"(,"attributes":{"note":")" +
                                     std::string(EventProcessor::kLookAheadBytes, 'x') + "\"}");
  records.insert(records.begin() + 100, large);
  records.insert(records.begin() + 101, records[99]);  // a duplicate after it
  // Clocks past the world's events (none is ahead of its clock), or none.
  const int64_t late = world.start_ms + int64_t{400} * 86'400'000;
  // Every 50th clock is a year before the world: its record is ahead of it
  // by more than the allowed skew, and rejected.
  const auto now_of = [&](size_t i) {
    if (i % 50 == 11) return world.start_ms - int64_t{365} * 86'400'000;
    return i % 7 == 0 ? int64_t{0} : late + int64_t(i);
  };

  RecordingSink reference_sink, ahead_sink;
  REQUIRE_OK_AND_ASSIGN(auto reference,
                        EventProcessor::Create(ProcessorOptions{}, &reference_sink));
  REQUIRE_OK_AND_ASSIGN(auto ahead, EventProcessor::Create(ProcessorOptions{}, &ahead_sink));
  // One buffer, looked up ahead holding another record of the same size
  // and then given the next record's bytes: Process must see those.
  std::string reused;
  reused.reserve(EventProcessor::kLookAheadBytes);
  size_t reused_cases = 0;
  bool use_reused = false;
  for (size_t i = 0; i < records.size(); ++i) {
    const ingest::SourcePosition pos{"crm.interactions", 0, static_cast<int64_t>(i)};
    reference->Process(records[i], pos, now_of(i));
    if (use_reused) {
      ahead->Process(reused, pos, now_of(i));
      use_reused = false;
    } else {
      ahead->Process(records[i], pos, now_of(i));
    }
    if (i + 1 >= records.size()) continue;
    const std::string& next = records[i + 1];
    if (i % 50 == 10) {
      // Looked up with another clock (one that accepts it): decoded again
      // with its own when it comes, and rejected.
      ahead->LookAhead(next, late);
    } else if (i % 50 == 20) {
      for (size_t j = i + 2; j < std::min(records.size(), i + 300); ++j) {
        if (records[j].size() != next.size() || records[j] == next) continue;
        reused.assign(records[j]);
        const char* buffer = reused.data();
        ahead->LookAhead(reused, now_of(i + 1));
        reused.assign(next);
        REQUIRE(reused.data() == buffer);
        use_reused = true;
        ++reused_cases;
        break;
      }
    } else if (i % 50 == 30) {
      // Looked up, then the caller processes something else first.
      ahead->LookAhead(records[std::min(records.size() - 1, i + 2)], now_of(i + 2));
      ahead->LookAhead(next, now_of(i + 1));
    } else if (i % 50 != 40) {  // and now and then not looked up at all
      ahead->LookAhead(next, now_of(i + 1));
    }
    if (i % 1000 == 999) {
      reference->FlushOutputs();
      ahead->FlushOutputs();
    }
  }
  reference->FlushOutputs();
  ahead->FlushOutputs();

  const ProcessorCounters& r = reference->counters();
  const ProcessorCounters& a = ahead->counters();
  CHECK(r.accepted.Get() > 5000);
  CHECK(r.duplicates.Get() > 0);
  CHECK(r.rejected.Get() > records.size() / 50);
  CHECK(a.received.Get() == r.received.Get());
  CHECK(a.accepted.Get() == r.accepted.Get());
  CHECK(a.duplicates.Get() == r.duplicates.Get());
  CHECK(a.rejected.Get() == r.rejected.Get());
  REQUIRE(ahead_sink.records.size() == reference_sink.records.size());
  for (size_t i = 0; i < reference_sink.records.size(); ++i) {
    CAPTURE(i);
    CHECK(ahead_sink.records[i].kind == reference_sink.records[i].kind);
    CHECK(ahead_sink.records[i].key == reference_sink.records[i].key);
    CHECK(ahead_sink.records[i].value == reference_sink.records[i].value);
  }
  std::string reference_state, ahead_state;
  reference->EncodeState(0, &reference_state);
  ahead->EncodeState(0, &ahead_state);
  CHECK(ahead_state == reference_state);
  std::string x, y;
  reference->dedup_window().EncodeTo(&x);
  ahead->dedup_window().EncodeTo(&y);
  CHECK(x == y);
  CHECK(ahead->feature_store().Find("C-big") != nullptr);
  CHECK(reused_cases > 10);
}

}  // namespace
}  // namespace crmstream::pipeline
