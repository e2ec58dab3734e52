// The engine at the edges of what its brokers and its users hand it: an
// output larger than the producer accepts, records whose broker timestamp
// says an event comes from the future, output topics whose partition count
// changed under a store, a configuration changed under a store.
#include <simdjson.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "crmstream/kafka/embedded_cluster.h"
#include "crmstream/pipeline/pipeline_spec.h"
#include "crmstream/runtime/kafka_wiring.h"
#include "engine_runs.h"
#include "support/require_ok.h"
#include "support/test_support.h"

namespace crmstream::runtime {
namespace {

// One engine configuration on its own embedded cluster with its topics.
struct SmallEngine {
  testing::ScratchDir dir;
  std::unique_ptr<kafka::EmbeddedCluster> cluster;
  config::EngineConfig cfg;
  std::unique_ptr<kafka::Producer> producer;

  explicit SmallEngine(config::Guarantee guarantee = config::Guarantee::kAtLeastOnce) {
    auto c = kafka::EmbeddedCluster::Create({});
    REQUIRE_OK(c);
    cluster = std::move(c).value();
    EngineRun run;
    run.state_dir = (dir.path() / "state").string();
    run.group = "edges";
    run.output_prefix = "edges.";
    run.guarantee = guarantee;
    run.input_partitions = 1;
    cfg = EngineConfigFor(cluster->bootstrap_servers(), run);
    for (const auto& t : AllTopics(cfg)) REQUIRE_OK(cluster->CreateTopic(t.name, t.partitions));
    auto p = kafka::Producer::Create(MakeClientConfig(cfg.kafka));
    REQUIRE_OK(p);
    producer = std::move(p).value();
  }

  // One input record with the broker timestamp `timestamp_ms` (CreateTime).
  void Produce(std::string_view value, int64_t timestamp_ms = 0) {
    const std::string topic = cfg.inputs.front().name;
    const rd_kafka_resp_err_t err =
        rd_kafka_producev(producer->handle(), RD_KAFKA_V_TOPIC(topic.c_str()),
                          RD_KAFKA_V_PARTITION(0), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                          RD_KAFKA_V_VALUE(const_cast<char*>(value.data()), value.size()),
                          RD_KAFKA_V_TIMESTAMP(timestamp_ms), RD_KAFKA_V_END);
    REQUIRE(err == RD_KAFKA_RESP_ERR_NO_ERROR);
  }
  void Flush() {
    REQUIRE_OK(producer->Flush(std::chrono::seconds(30)));
    REQUIRE(producer->failed_count() == 0);
  }

  // Every record of one output topic, in partition order.
  std::vector<std::string> Read(OutputKind kind, int32_t partitions) const {
    std::vector<kafka::TopicPartitionOffset> from;
    const std::string topic = cfg.outputs.of(kind).name;
    for (int32_t q = 0; q < partitions; ++q) from.push_back({topic, q, kafka::kOffsetBeginning});
    std::vector<std::string> out;
    kafka::ClientConfig client = MakeClientConfig(cfg.kafka);
    REQUIRE_OK(
        kafka::ReadPartitionsToEnd(client, from, {}, nullptr, [&](const kafka::MessageView& m) {
          out.emplace_back(m.payload());
          return Status::OK();
        }));
    return out;
  }
};

// Runs an engine until `done` says so (bounded), then stops it; the engine
// is kept for its counters.
struct KeptRun {
  std::unique_ptr<StreamEngine> engine;
  Status status;
};
template <typename Done>
KeptRun RunUntil(const config::EngineConfig& cfg, Done done) {
  auto engine = StreamEngine::Create(cfg, pipeline::PipelineSpec{});
  REQUIRE_OK(engine);
  KeptRun run{std::move(engine).value(), Status::OK()};
  std::atomic<bool> stop{false};
  std::thread runner([&] { run.status = run.engine->Run(stop, RunOptions{}); });
  const auto deadline = Clock::now() + std::chrono::seconds(60);
  while (!done(*run.engine) && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  CHECK(done(*run.engine));
  stop.store(true);
  runner.join();
  return run;
}

std::string Event(const std::string& id, const std::string& customer, int64_t timestamp_ms) {
  return R"({"event_id":")" + id + R"(","customer_id":")" + customer + R"(","timestamp":)" +
         std::to_string(timestamp_ms) + R"(,"type":"login"})";
}

TEST_CASE("A dead letter larger than the producer accepts keeps less of its original",
          "[runtime][integration]") {
  SmallEngine e;
  // The user's producer takes 20000 bytes; a 40000-byte record that is not
  // JSON would make a dead letter of about 40000 bytes (its original), which
  // the producer refuses: the engine stopped there, and a restart met the
  // same record again.
  e.cfg.kafka.properties["message.max.bytes"] = "20000";
  const std::string garbage(40000, 'x');
  e.Produce(garbage);
  for (int i = 0; i < 3; ++i) e.Produce(Event("e" + std::to_string(i), "C1", 1767225600000 + i));
  e.Flush();

  uint64_t suppressed = 0;
  RunUntilCaughtUp(e.cfg, &suppressed);

  const auto dead = e.Read(OutputKind::kDeadLetter, e.cfg.outputs.dead_letter.partitions);
  REQUIRE(dead.size() == 1);
  CHECK(dead[0].size() <= 20000);
  simdjson::dom::parser parser;
  simdjson::dom::element doc = parser.parse(dead[0]);
  CHECK(std::string_view(doc["reason"]) == "not_json");
  CHECK(int64_t(doc["source"]["offset"]) == 0);
  CHECK(int64_t(doc["original_size"]) == 40000);
  CHECK(bool(doc["original_truncated"]));
  const std::string_view original = doc["original"];
  CHECK(!original.empty());
  CHECK(original == std::string_view(garbage).substr(0, original.size()));
  // The engine went on: the events after it were processed and published.
  const auto scores = e.Read(OutputKind::kCustomerScores, e.cfg.outputs.customer_scores.partitions);
  REQUIRE(!scores.empty());
  simdjson::dom::element last = parser.parse(scores.back());
  CHECK(std::string_view(last["customer_id"]) == "C1");
  CHECK(uint64_t(last["events"]) == 3);
}

TEST_CASE("A message.max.bytes that leaves no room for outputs is refused at start",
          "[runtime][integration]") {
  SmallEngine e;
  e.cfg.kafka.properties["message.max.bytes"] = "1500";
  auto engine = StreamEngine::Create(e.cfg, pipeline::PipelineSpec{});
  REQUIRE(engine.status().code() == StatusCode::kInvalidArgument);
  CHECK_THAT(engine.status().ToString(), Catch::Contains("message.max.bytes"));
}

TEST_CASE("at_least_once checks an event's future skew against its broker timestamp",
          "[runtime][integration]") {
  SmallEngine e;
  // Produced at 2024-01-01 (CreateTime) and processed much later: an event
  // two days ahead of when it was produced is in the future whatever the
  // wall clock says now, as in the exactly-once modes; one an hour behind
  // is fine.
  const int64_t produced_ms = 1704067200000;
  const int64_t day_ms = 86'400'000;
  e.Produce(Event("future", "C1", produced_ms + 2 * day_ms), produced_ms);
  e.Produce(Event("fine", "C1", produced_ms - 3'600'000), produced_ms);
  e.Flush();

  RunUntilCaughtUp(e.cfg, nullptr);

  const auto dead = e.Read(OutputKind::kDeadLetter, e.cfg.outputs.dead_letter.partitions);
  REQUIRE(dead.size() == 1);
  simdjson::dom::parser parser;
  simdjson::dom::element doc = parser.parse(dead[0]);
  CHECK(std::string_view(doc["reason"]) == "timestamp_in_future");
  CHECK(int64_t(doc["source"]["offset"]) == 0);
  // The record's clock is the broker's.
  CHECK(int64_t(doc["received_at_ms"]) == produced_ms);
  const auto scores = e.Read(OutputKind::kCustomerScores, e.cfg.outputs.customer_scores.partitions);
  REQUIRE(scores.size() == 1);
  CHECK(uint64_t(parser.parse(scores[0])["events"]) == 1);
}

TEST_CASE("An output topic whose partition count changed under the store is named, with the repair",
          "[runtime][integration]") {
  SmallEngine e(config::Guarantee::kExactlyOnce);  // stamped on the embedded cluster
  for (int i = 0; i < 5; ++i) e.Produce(Event("e" + std::to_string(i), "C1", 1767225600000 + i));
  e.Flush();
  RunUntilCaughtUp(e.cfg, nullptr);

  // The customer-scores topic now has 8 partitions where it had 6 (as a
  // topic recreated, or given partitions, under the same name would).
  e.cfg.outputs.customer_scores = {"edges.customer-scores-resized", 8};
  REQUIRE_OK(e.cluster->CreateTopic(e.cfg.outputs.customer_scores.name, 8));
  e.Produce(Event("e5", "C1", 1767225600005));
  e.Flush();
  const Status st = RunOnce(e.cfg, nullptr);
  INFO(st.ToString());
  CHECK(st.code() == StatusCode::kInvalidArgument);
  CHECK_THAT(st.ToString(), Catch::Contains("output topic edges.customer-scores-resized has 8 "
                                            "partitions but had 6"));
  CHECK_THAT(st.ToString(), Catch::Contains("move the state directory away"));
}

TEST_CASE("A lost store whose group committed no offset is refused, not re-produced",
          "[runtime][integration]") {
  SmallEngine e(config::Guarantee::kExactlyOnce);  // stamped on the embedded cluster
  // Nothing to restore the lost store from: with a changelog it is restored
  // (changelog_test.cpp).
  e.cfg.state.changelog = false;
  for (int i = 0; i < 20; ++i) e.Produce(Event("e" + std::to_string(i), "C1", 1767225600000 + i));
  e.Flush();
  // Every commit of the group's offsets fails (the store's checkpoints do
  // not): the group ends the run without a committed offset.
  const std::vector<rd_kafka_resp_err_t> refused(200, RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED);
  constexpr int16_t kOffsetCommitApiKey = 8;
  e.cluster->PushRequestErrors(kOffsetCommitApiKey, refused);
  {
    // Every record processed and checkpointed, and the failed commits
    // counted where the metrics see them.
    KeptRun first = RunUntil(e.cfg, [](const StreamEngine& engine) {
      return engine.stats().accepted.load() == 20 && engine.stats().checkpoints.load() > 0 &&
             engine.stats().group_commit_failures.load() > 0;
    });
    REQUIRE_OK(first.status);
  }
  e.cluster->ClearRequestErrors(kOffsetCommitApiKey);
  const auto before = e.Read(OutputKind::kCustomerScores, e.cfg.outputs.customer_scores.partitions);
  REQUIRE(!before.empty());

  // The store is lost. Starting again would number the outputs from 0 and
  // publish every one of them a second time.
  std::filesystem::remove_all(e.cfg.state_dir);
  const Status st = RunOnce(e.cfg, nullptr);
  INFO(st.ToString());
  CHECK(st.code() == StatusCode::kInvalidArgument);
  CHECK_THAT(st.ToString(), Catch::Contains("the state directory was lost or changed"));
  CHECK_THAT(st.ToString(), Catch::Contains("new kafka.group_id"));
  CHECK(e.Read(OutputKind::kCustomerScores, e.cfg.outputs.customer_scores.partitions).size() ==
        before.size());

  // A new application on the same topics starts: its outputs are its own.
  e.cfg.kafka.group_id = "edges-afresh";
  e.cfg.state_dir = (e.dir.path() / "state-afresh").string();
  REQUIRE_OK(RunOnce(e.cfg, nullptr));
  CHECK(e.Read(OutputKind::kCustomerScores, e.cfg.outputs.customer_scores.partitions).size() >
        before.size());
}

TEST_CASE("exactly_once refuses a restart whose configuration shapes other outputs",
          "[runtime][integration]") {
  SmallEngine e(config::Guarantee::kExactlyOnce);  // stamped on the embedded cluster
  // The product's pipeline, and a copy with one alert threshold changed.
  const auto product = testing::SourceDir() / "pipelines" / "crm.yaml";
  std::string text = testing::ReadWholeFile(product);
  const std::string from = "enter_probability: 0.4 ", to = "enter_probability: 0.45";
  REQUIRE(text.find(from) != std::string::npos);
  const auto changed = e.dir.path() / "changed.yaml";
  {
    std::ofstream out(changed);
    out << text.replace(text.find(from), from.size(), to);
  }
  REQUIRE_OK_AND_ASSIGN(const pipeline::PipelineSpec spec,
                        pipeline::LoadPipelineSpec(product.string()));
  REQUIRE_OK_AND_ASSIGN(const pipeline::PipelineSpec changed_spec,
                        pipeline::LoadPipelineSpec(changed.string()));
  REQUIRE_OK(StreamEngine::Create(e.cfg, spec));

  // Another pipeline definition: refused, saying what changed and what to do.
  auto refused = StreamEngine::Create(e.cfg, changed_spec);
  REQUIRE(refused.status().code() == StatusCode::kInvalidArgument);
  CHECK_THAT(refused.status().ToString(), Catch::Contains("pipeline_definition"));
  CHECK_THAT(refused.status().ToString(), Catch::Contains("--accept-config-change"));
  // Another commit interval (block boundaries): refused, naming both values.
  e.cfg.commit_interval_ms = 200;
  refused = StreamEngine::Create(e.cfg, spec);
  REQUIRE(refused.status().code() == StatusCode::kInvalidArgument);
  CHECK_THAT(refused.status().ToString(), Catch::Contains("commit_interval_ms: 100 then, 200 now"));
  // What does not shape the outputs is free to change.
  e.cfg.commit_interval_ms = 100;
  e.cfg.producer_linger_ms = 50;
  e.cfg.state.memory_cap_mb *= 2;
  REQUIRE_OK(StreamEngine::Create(e.cfg, spec));

  // Accepted once, the new configuration is the store's from then on.
  e.cfg.commit_interval_ms = 200;
  e.cfg.accept_config_change = true;
  REQUIRE_OK(StreamEngine::Create(e.cfg, spec));
  e.cfg.accept_config_change = false;
  REQUIRE_OK(StreamEngine::Create(e.cfg, spec));
  CHECK(StreamEngine::Create(e.cfg, changed_spec).status().code() == StatusCode::kInvalidArgument);

  // at_least_once promises no suppression: a change is logged, not refused.
  e.cfg.guarantee = config::Guarantee::kAtLeastOnce;
  REQUIRE_OK(StreamEngine::Create(e.cfg, changed_spec));
}

}  // namespace
}  // namespace crmstream::runtime
