#include "crmstream/pipeline/replay.h"

#include <simdjson.h>

#include <catch2/catch.hpp>
#include <fstream>

#include "crmstream/generator/world_generator.h"
#include "recording_sink.h"
#include "support/require_ok.h"
#include "support/test_support.h"

namespace crmstream::pipeline {
namespace {

size_t CountLines(const std::filesystem::path& p) {
  std::ifstream in(p);
  size_t n = 0;
  std::string line;
  while (std::getline(in, line)) ++n;
  return n;
}

TEST_CASE("Replay of a generated file accounts for every record", "[pipeline]") {
  testing::ScratchDir dir;
  generator::WorldOptions world;
  world.customers = 500;
  world.malformed_rate = 0.01;
  world.duplicate_rate = 0.01;
  auto gen = generator::WorldGenerator::Create(world);
  REQUIRE_OK(gen);
  const auto input = dir.path() / "events.jsonl";
  {
    std::ofstream out(input);
    std::string key, value;
    for (int i = 0; i < 30000; ++i) {
      (*gen)->Next(&key, &value);
      out << value << '\n';
    }
  }
  const auto& truth = (*gen)->ground_truth();
  REQUIRE(truth.records == 30000);
  REQUIRE(truth.malformed.size() > 100);
  REQUIRE(truth.duplicates > 100);

  auto sink = FileSink::Open(dir.path() / "out");
  REQUIRE_OK(sink);
  REQUIRE_OK_AND_ASSIGN(auto processor_owner,
                        EventProcessor::Create(ProcessorOptions{}, sink->get()));
  EventProcessor& processor = *processor_owner;
  ReplayOptions options;
  options.input = input;
  auto stats = Replay(options, &processor);
  REQUIRE_OK(stats);
  REQUIRE_OK((*sink)->Close());

  // Every record is accounted for, by an independent tally: the generator's.
  CHECK(stats->records == 30000);
  CHECK(stats->rejected == truth.malformed.size());
  CHECK(stats->duplicates == static_cast<uint64_t>(truth.duplicates));
  CHECK(stats->accepted == static_cast<uint64_t>(truth.events));
  CHECK(CountLines(dir.path() / "out" / "dead_letter.jsonl") == truth.malformed.size());
  // One record per customer, whose lifetime event counts add up to the
  // accepted events: every event reflected exactly once.
  std::ifstream scores(dir.path() / "out" / "customer_scores.jsonl");
  simdjson::dom::parser parser;
  std::string line;
  uint64_t customers = 0, events = 0;
  while (std::getline(scores, line)) {
    simdjson::dom::element doc = parser.parse(line);
    ++customers;
    events += uint64_t(doc["events"]);
  }
  CHECK(customers == processor.feature_store().size());
  CHECK(events == stats->accepted);
}

// What a replay leaves behind: its tally, the processor's counters, every
// output record in order, and the state a checkpoint would hold.
struct ReplayResult {
  ReplayStats stats;
  std::vector<uint64_t> counters;
  std::vector<RecordedOutput> outputs;
  std::string state;
  std::string dedup;
};

ReplayResult ReplayWith(const ReplayOptions& options) {
  RecordingSink sink;
  auto created = EventProcessor::Create(ProcessorOptions{}, &sink);
  REQUIRE_OK(created);
  EventProcessor& processor = **created;
  auto stats = Replay(options, &processor);
  REQUIRE_OK(stats);
  ReplayResult result;
  result.stats = *stats;
  const ProcessorCounters& c = processor.counters();
  result.counters = {c.received.Get(), c.accepted.Get(), c.duplicates.Get(), c.rejected.Get()};
  for (const auto& n : c.by_type) result.counters.push_back(n.Get());
  for (const auto& n : c.by_reason) result.counters.push_back(n.Get());
  for (const auto& n : c.outputs) result.counters.push_back(n.Get());
  for (const auto& n : c.alerts_by_severity) result.counters.push_back(n.Get());
  result.outputs = std::move(sink.records);
  processor.EncodeState(0, &result.state);
  processor.dedup_window().EncodeTo(&result.dedup);
  return result;
}

TEST_CASE("Replay gives the same outputs, counters and state with and without the look-ahead",
          "[pipeline]") {
  // A generated world with malformed and re-sent records, written with what
  // could trip a line read or decoded ahead: lines of varying length, one
  // over the look-ahead decoder's limit, a record repeated on the next
  // line, CRLF endings and blank lines, and lines straddling the reader's
  // refills (the file is several of its 1 MiB reads).
  testing::ScratchDir dir;
  generator::WorldOptions world;
  world.customers = 2000;
  world.malformed_rate = 0.02;
  world.duplicate_rate = 0.02;
  REQUIRE_OK_AND_ASSIGN(auto gen, generator::WorldGenerator::Create(world));
  const auto input = dir.path() / "events.jsonl";
  uint64_t repeated_malformed = 0, repeated_events = 0;
  const std::string large =
      R"({"event_id":"big","customer_id":"C-big","timestamp":)" + std::to_string(world.start_ms) +
      R"(,"type":"purchase","amount":3.5,"currency":"EUR","attributes":{"note":")" +
      std::string(EventProcessor::kLookAheadBytes, 'x') + "\"}}";
  {
    std::ofstream out(input, std::ios::binary);
    std::string key, value;
    for (int i = 0; i < 40000; ++i) {
      const size_t malformed_before = gen->ground_truth().malformed.size();
      gen->Next(&key, &value);
      const bool malformed = gen->ground_truth().malformed.size() > malformed_before;
      out << value;
      if (i % 97 == 0) out << std::string(static_cast<size_t>(i % 300), ' ');  // still JSON
      out << (i % 13 == 0 ? "\r\n" : "\n");
      if (i % 1000 == 500) {  // the same record on the next line
        out << value << '\n';
        ++(malformed ? repeated_malformed : repeated_events);
      }
      if (i % 777 == 0) out << "\n  \n";
      if (i == 20000) out << large << '\n';
    }
  }
  REQUIRE(std::filesystem::file_size(input) > 4 * (1 << 20));
  REQUIRE(repeated_malformed + repeated_events == 40);

  ReplayOptions options;
  options.input = input;
  options.now_ms = world.start_ms + int64_t{400} * 86'400'000;  // past every event
  options.flush_every_records = 10000;
  options.look_ahead = false;
  const ReplayResult reference = ReplayWith(options);
  options.look_ahead = true;
  const ReplayResult ahead = ReplayWith(options);

  const auto& truth = gen->ground_truth();
  CHECK(reference.stats.records == 40000 + 40 + 1);
  CHECK(reference.stats.rejected == truth.malformed.size() + repeated_malformed);
  CHECK(reference.stats.duplicates == static_cast<uint64_t>(truth.duplicates) + repeated_events);
  CHECK(reference.stats.accepted == static_cast<uint64_t>(truth.events) + 1);  // + the large

  CHECK(ahead.stats.records == reference.stats.records);
  CHECK(ahead.stats.accepted == reference.stats.accepted);
  CHECK(ahead.stats.duplicates == reference.stats.duplicates);
  CHECK(ahead.stats.rejected == reference.stats.rejected);
  CHECK(ahead.counters == reference.counters);
  REQUIRE(ahead.outputs.size() == reference.outputs.size());
  size_t differing = 0;
  for (size_t i = 0; i < reference.outputs.size(); ++i) {
    const RecordedOutput& a = ahead.outputs[i];
    const RecordedOutput& r = reference.outputs[i];
    differing += a.kind != r.kind || a.key != r.key || a.value != r.value;
  }
  CHECK(differing == 0);
  CHECK(ahead.state == reference.state);
  CHECK(ahead.dedup == reference.dedup);
}

TEST_CASE("Replay reads CSV with the same validation", "[pipeline]") {
  testing::ScratchDir dir;
  const auto input = dir.path() / "events.csv";
  {
    std::ofstream out(input);
    out << "event_id,customer_id,timestamp,type,channel,amount,currency\n"
        << "a1,C1,2026-01-01T10:00:00Z,purchase,web,20.5,EUR\n"
        << "a2,C1,2026-01-03T10:00:00Z,purchase,app,\"9.5\",EUR\n"
        << "a3,C2,2026-01-03T11:00:00Z,login,app,,\n"
        << "a4,,2026-01-03T11:00:00Z,login,app,,\n"
        << "a5,C2,2026-01-03T11:00:00Z,purchase,app,,\n";
  }
  DiscardingSink sink;
  REQUIRE_OK_AND_ASSIGN(auto processor_owner, EventProcessor::Create(ProcessorOptions{}, &sink));
  EventProcessor& processor = *processor_owner;
  ReplayOptions options;
  options.input = input;
  auto stats = Replay(options, &processor);
  REQUIRE_OK(stats);
  CHECK(stats->records == 5);
  CHECK(stats->accepted == 3);
  CHECK(stats->rejected == 2);  // no customer_id; a purchase without amount
  const auto* c1 = processor.feature_store().Find("C1");
  REQUIRE(c1 != nullptr);
  CHECK(c1->frequency() == 2);
  CHECK(c1->monetary() == Approx(30.0));
}

TEST_CASE("Replay of a missing file names the path", "[pipeline]") {
  DiscardingSink sink;
  REQUIRE_OK_AND_ASSIGN(auto processor_owner, EventProcessor::Create(ProcessorOptions{}, &sink));
  EventProcessor& processor = *processor_owner;
  ReplayOptions options;
  options.input = "/nonexistent/events.jsonl";
  auto stats = Replay(options, &processor);
  REQUIRE_FALSE(stats.ok());
  CHECK_THAT(stats.status().message(), Catch::Contains("/nonexistent/events.jsonl"));
}

}  // namespace
}  // namespace crmstream::pipeline
