#include "crmstream/pipeline/replay.h"

#include <simdjson.h>

#include <catch2/catch.hpp>
#include <fstream>

#include "crmstream/generator/world_generator.h"
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
