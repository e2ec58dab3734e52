// End to end through a real Kafka protocol stack: the embedded cluster on
// loopback, the generator producing into the input topic, the engine, and an
// independent consumer reading the output topics back.
#include "crmstream/runtime/stream_engine.h"

#include <simdjson.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <fstream>
#include <map>
#include <thread>

#include "crmstream/generator/world_generator.h"
#include "crmstream/kafka/embedded_cluster.h"
#include "crmstream/runtime/kafka_wiring.h"
#include "pipeline/schema_validation.h"
#include "support/require_ok.h"
#include "support/test_support.h"

namespace crmstream::runtime {
namespace {

using Clock = std::chrono::steady_clock;

struct ReadBack {
  std::map<std::string, uint64_t> last_events;  // customer -> events in its last record
  uint64_t last_events_total = 0;
  std::vector<std::string> dead_letters;
  std::map<std::string, std::vector<std::string>> by_topic;  // every record read, by topic
};

// Reads every output topic until `done` says so (and at least
// `expected_dead` dead letters arrived) or the deadline passed.
template <typename Done>
ReadBack ReadOutputs(const config::EngineConfig& cfg, size_t expected_dead, Done done) {
  kafka::ClientConfig client = MakeClientConfig(cfg.kafka);
  client.Set("isolation.level", "read_committed");
  auto consumer = kafka::Consumer::Create(client, "independent-reader");
  REQUIRE_OK(consumer);
  std::vector<std::string> topics;
  for (const auto& t : cfg.outputs.Names()) topics.push_back(t);
  REQUIRE_OK((*consumer)->Subscribe(topics));
  ReadBack out;
  simdjson::dom::parser parser;
  kafka::MessageBatch batch(1024);
  const auto deadline = Clock::now() + std::chrono::seconds(60);
  while (!(done(out) && out.dead_letters.size() >= expected_dead) && Clock::now() < deadline) {
    auto n = (*consumer)->ConsumeBatch(200, &batch);
    REQUIRE_OK(n);
    for (size_t i = 0; i < batch.size(); ++i) {
      auto m = batch[i];
      out.by_topic[std::string(m.topic())].emplace_back(m.payload());
      if (m.topic() == cfg.outputs.dead_letter.name) {
        out.dead_letters.emplace_back(m.payload());
        continue;
      }
      if (m.topic() != cfg.outputs.customer_scores.name) continue;
      simdjson::dom::element doc = parser.parse(m.payload());
      const std::string customer{std::string_view(doc["customer_id"])};
      CHECK(m.key() == customer);
      uint64_t& last = out.last_events[customer];
      out.last_events_total -= last;
      last = uint64_t(doc["events"]);
      out.last_events_total += last;
    }
    batch.Clear();
  }
  (void)(*consumer)->Close();
  return out;
}

TEST_CASE("Engine end to end: nothing lost, bad records in the dead-letter topic",
          "[pipeline][integration]") {
  testing::ScratchDir dir;
  auto cluster = kafka::EmbeddedCluster::Create({});
  REQUIRE_OK(cluster);
  config::EngineConfig cfg;
  cfg.state_dir = dir.path().string();
  cfg.inputs = {{"crm.interactions", 4}};
  cfg.kafka.properties["bootstrap.servers"] = (*cluster)->bootstrap_servers();
  cfg.commit_interval_ms = 200;
  for (const auto& t : AllTopics(cfg)) REQUIRE_OK((*cluster)->CreateTopic(t.name, t.partitions));

  // Input: a generated world with malformed records and duplicates, plus
  // hand-made bad records whose reasons we know.
  generator::WorldOptions world;
  world.customers = 300;
  world.malformed_rate = 0.02;
  world.duplicate_rate = 0.02;
  auto gen = generator::WorldGenerator::Create(world);
  REQUIRE_OK(gen);
  auto producer = kafka::Producer::Create(MakeClientConfig(cfg.kafka));
  REQUIRE_OK(producer);
  const int kGenerated = 8000;
  std::string key, value;
  for (int i = 0; i < kGenerated; ++i) {
    (*gen)->Next(&key, &value);
    REQUIRE_OK((*producer)->Produce("crm.interactions", kafka::kPartitionUnassigned, key, value));
  }
  const std::vector<std::pair<std::string, std::string>> hand_made = {
      {"", "not_json"},  // an empty message (a tombstone)
      {R"({"event_id":"h1","customer_id":"C1","timestamp":1767225600000,"type":"warp"})",
       "unknown_event_type"},
      {"\xff\xfe garbage", "not_json"},
  };
  for (const auto& [bytes, reason] : hand_made) {
    REQUIRE_OK((*producer)->Produce("crm.interactions", 0, "k", bytes));
  }
  REQUIRE_OK((*producer)->Flush(std::chrono::seconds(30)));
  REQUIRE((*producer)->failed_count() == 0);
  const auto& truth = (*gen)->ground_truth();
  const uint64_t total_in = kGenerated + hand_made.size();
  const uint64_t expected_dead = truth.malformed.size() + hand_made.size();
  const uint64_t expected_scores = static_cast<uint64_t>(truth.events);

  pipeline::PipelineSpec spec;
  auto engine = StreamEngine::Create(cfg, spec);
  REQUIRE_OK(engine);
  std::atomic<bool> stop{false};
  Status run_status;
  std::thread runner([&] { run_status = (*engine)->Run(stop); });
  const auto deadline = Clock::now() + std::chrono::seconds(90);
  while ((*engine)->stats().received.load() < total_in && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  stop.store(true);
  runner.join();
  REQUIRE_OK(run_status);

  const auto& s = (*engine)->stats();
  CHECK(s.received.load() == total_in);
  CHECK(s.rejected.load() == expected_dead);
  CHECK(s.duplicates.load() == static_cast<uint64_t>(truth.duplicates));
  CHECK(s.accepted.load() == expected_scores);
  CHECK(s.delivery_failures.load() == 0);

  // What an independent consumer finds on the topics: the last scores record
  // of each customer (keyed, so in its partition's order) counts the events
  // of that customer; together they count every accepted event exactly once.
  ReadBack back = ReadOutputs(cfg, expected_dead, [&](const ReadBack& b) {
    return b.last_events_total == expected_scores;
  });
  CHECK(back.last_events_total == expected_scores);
  CHECK(back.dead_letters.size() == expected_dead);
  CHECK(back.last_events_total + back.dead_letters.size() +
            static_cast<uint64_t>(truth.duplicates) ==
        total_in);

  simdjson::dom::parser parser;
  std::map<std::string, int> reasons;
  int hand_made_found = 0;
  for (const auto& rec : back.dead_letters) {
    simdjson::dom::element doc = parser.parse(rec);
    reasons[std::string(std::string_view(doc["reason"]))]++;
    CHECK(std::string_view(doc["source"]["topic"]) == "crm.interactions");
    CHECK(int64_t(doc["source"]["offset"]) >= 0);
    for (const auto& [bytes, reason] : hand_made) {
      auto original = doc["original"];
      if (!original.error() && std::string_view(original) == bytes && !bytes.empty()) {
        CHECK(std::string_view(doc["reason"]) == reason);
        ++hand_made_found;
      }
    }
  }
  CHECK(hand_made_found == 1);  // the two others are empty / not UTF-8 (base64)
  // Every dead letter carries the reason the generator meant it to fail for.
  std::map<std::string, int> expected_reasons;
  for (int r = 0; r < generator::kMalformedReasonCount; ++r) {
    auto reason = static_cast<generator::MalformedReason>(r);
    const auto n = static_cast<int>(truth.malformed_by_reason[r]);
    if (n > 0) expected_reasons[std::string(generator::ExpectedRejectReasonName(reason))] += n;
  }
  for (const auto& [bytes, reason] : hand_made) expected_reasons[reason] += 1;
  CHECK(reasons == expected_reasons);

  // Every record the engine published, as read from the topics, validates
  // against its topic's JSON Schema (docs/schemas).
  testing::ScratchDir records;
  std::string topics;
  for (const auto& [topic, values] : back.by_topic) {
    std::ofstream out(records.path() / (topic + ".jsonl"));
    for (const auto& v : values) out << v << '\n';
    topics += " " + topic;
  }
  INFO("topics read: " << topics);
  CHECK(back.by_topic.count(cfg.outputs.customer_scores.name) == 1);
  CHECK(back.by_topic.count(cfg.outputs.dead_letter.name) == 1);
  CHECK(back.by_topic.count(cfg.outputs.segments.name) == 1);
  CHECK(pipeline::ValidateRecords(records.path(), topics) == 0);
}

}  // namespace
}  // namespace crmstream::runtime

namespace crmstream::runtime {
namespace {

TEST_CASE("Engine health, readiness and customer queries follow the loop's life",
          "[pipeline][integration]") {
  testing::ScratchDir dir;
  auto cluster = kafka::EmbeddedCluster::Create({});
  REQUIRE_OK(cluster);
  config::EngineConfig cfg;
  cfg.state_dir = dir.path().string();
  cfg.inputs = {{"crm.interactions", 2}};
  cfg.kafka.properties["bootstrap.servers"] = (*cluster)->bootstrap_servers();
  for (const auto& t : AllTopics(cfg)) REQUIRE_OK((*cluster)->CreateTopic(t.name, t.partitions));
  auto engine = StreamEngine::Create(cfg, pipeline::PipelineSpec{});
  REQUIRE_OK(engine);
  StreamEngine& e = **engine;

  // Before Run: alive (starting), not ready, no queries.
  EngineHealth h = e.probe().Health(std::chrono::seconds(60));
  CHECK(h.live);
  CHECK(!h.ready);
  CHECK(e.queries().Submit("C1").status().code() == StatusCode::kUnavailable);

  auto producer = kafka::Producer::Create(MakeClientConfig(cfg.kafka));
  REQUIRE_OK(producer);
  for (int i = 0; i < 3; ++i) {
    const std::string v = R"({"event_id":"q)" + std::to_string(i) +
                          R"(","customer_id":"C1","timestamp":1767225600000,"type":"login"})";
    REQUIRE_OK((*producer)->Produce("crm.interactions", kafka::kPartitionUnassigned, "C1", v));
  }
  REQUIRE_OK((*producer)->Flush(std::chrono::seconds(30)));

  std::atomic<bool> stop{false};
  Status run_status;
  std::thread runner([&] { run_status = e.Run(stop); });
  const auto deadline = Clock::now() + std::chrono::seconds(60);
  while ((e.stats().accepted.load() < 3 || !e.probe().Health(std::chrono::seconds(60)).ready) &&
         Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  CHECK(e.probe().Health(std::chrono::seconds(60)).ready);
  CHECK(e.stats().accepted_by_type[static_cast<int>(ingest::EventType::kLogin)].load() == 3);

  // Queries are answered by the engine thread between batches.
  auto wait = [&](const std::shared_ptr<const CustomerQuery>& q) {
    const auto end = Clock::now() + std::chrono::seconds(10);
    while (!q->done() && Clock::now() < end)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    return q->done();
  };
  auto known = e.queries().Submit("C1");
  REQUIRE_OK(known);
  REQUIRE(wait(*known));
  CHECK_OK((*known)->status());
  simdjson::dom::parser parser;
  simdjson::dom::element doc = parser.parse((*known)->json());
  CHECK(std::string_view(doc["customer_id"]) == "C1");
  CHECK(uint64_t(doc["events"]) == 3);
  CHECK(uint64_t(doc["features"]["event_counts"]["login"]) == 3);
  auto unknown = e.queries().Submit("C9");
  REQUIRE_OK(unknown);
  REQUIRE(wait(*unknown));
  CHECK((*unknown)->status().code() == StatusCode::kNotFound);

  // Readiness also waits for the state store.
  e.probe().SetStateRestored(false);
  CHECK(!e.probe().Health(std::chrono::seconds(60)).ready);
  CHECK(e.probe().Health(std::chrono::seconds(60)).live);
  e.probe().SetStateRestored(true);

  stop.store(true);
  runner.join();
  REQUIRE_OK(run_status);
  h = e.probe().Health(std::chrono::seconds(60));
  CHECK(!h.live);
  CHECK(h.reason == "engine loop stopped");
  CHECK(e.queries().Submit("C1").status().code() == StatusCode::kUnavailable);
}

}  // namespace
}  // namespace crmstream::runtime
