// The engine at the edges of what its brokers and its users hand it: an
// output larger than the producer accepts, records whose broker timestamp
// says an event comes from the future, output topics whose partition count
// changed under a store, a configuration changed under a store.
#include <malloc.h>
#include <simdjson.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "crmstream/kafka/embedded_cluster.h"
#include "crmstream/kafka/handles.h"
#include "crmstream/kafka/producer.h"
#include "crmstream/pipeline/memory_plan.h"
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

TEST_CASE("A topic's max.message.bytes bounds the records sent to it", "[runtime]") {
  constexpr size_t kProducer = 998'976;  // librdkafka's default, less the room for framing
  // The topic's own limit less the same room, when below the producer's.
  REQUIRE_OK_AND_ASSIGN(const size_t small, TopicRecordBound(kProducer, "t", "5000", 1));
  CHECK(small == 5000 - 1024);
  REQUIRE_OK_AND_ASSIGN(const size_t large, TopicRecordBound(kProducer, "t", "1048588", 1));
  CHECK(large == kProducer);
  // Too small for any record, or for a bounded dead letter: named.
  const Status none = TopicRecordBound(kProducer, "crm.x", "1000", 1).status();
  CHECK(none.code() == StatusCode::kInvalidArgument);
  CHECK_THAT(none.ToString(), Catch::Contains("topic crm.x: max.message.bytes 1000"));
  CHECK(TopicRecordBound(kProducer, "t", "2000", pipeline::ProcessorOptions::kMinOutputBytes)
            .status()
            .code() == StatusCode::kInvalidArgument);
  CHECK(TopicRecordBound(kProducer, "t", "12k", 1).status().code() == StatusCode::kInvalidArgument);

  // The producer's batches stay within the smallest topic limit: the broker
  // checks a whole batch against it.
  kafka::ClientConfig client;
  TopicBounds bounds;
  CHECK(!ProducerClientConfig(client, bounds).Has("batch.size"));
  bounds.smallest_topic_limit = 3000;
  CHECK(ProducerClientConfig(client, bounds).Get("batch.size") == "3000");
  client.Set("batch.size", "2500");  // the user's own, smaller: kept
  CHECK(ProducerClientConfig(client, bounds).Get("batch.size") == "2500");
}

TEST_CASE("The embedded cluster has no topic configs: the producer's bound holds alone",
          "[runtime][integration]") {
  SmallEngine e;
  auto engine = StreamEngine::Create(e.cfg, pipeline::PipelineSpec{});
  REQUIRE_OK(engine);
  // As before topic limits were read: nothing but the producer's bound.
  REQUIRE_OK_AND_ASSIGN(auto learnt, LearnTopicBounds(e.cfg, 998'976, nullptr));
  CHECK(learnt.outputs == std::array<size_t, kOutputKindCount>{});
  CHECK(learnt.changelog == 0);
  CHECK(learnt.smallest_topic_limit == 0);
}

// An at_least_once run on the real cluster, its names unique to the fixture.
EngineRun RealBrokerRun(const testing::TestBroker& broker, const testing::ScratchDir& scratch,
                        const std::string& name, int input_partitions) {
  EngineRun run;
  run.state_dir = (scratch.path() / "state").string();
  run.group = broker.Name(name);
  run.output_prefix = broker.Name(name) + ".";
  run.guarantee = config::Guarantee::kAtLeastOnce;
  run.input_topic = broker.Name(name + ".input");
  run.input_partitions = input_partitions;
  return run;
}

// Output topics created by their user with a max.message.bytes below the
// producer's: the broker answers MSG_SIZE_TOO_LARGE for a record the
// producer takes, and for a whole batch of small ones. The engine reads the
// topics' limits at start: a larger output becomes a dead letter, every other
// one arrives, and the engine goes on.
TEST_CASE("An output topic's own max.message.bytes turns larger outputs into dead letters",
          "[runtime][integration][kafka]") {
  CRMSTREAM_USE_BROKER(testing::RealBroker, broker);
  testing::ScratchDir scratch;
  const EngineRun run = RealBrokerRun(broker, scratch, "small-topics", 1);
  const config::EngineConfig cfg = EngineConfigFor(broker.bootstrap_servers(), run);
  REQUIRE(cfg.state.changelog);
  // The segments topic takes 1500 bytes (records of up to 476 bytes of key
  // and value): a segment change (about 100 bytes) fits, a snapshot of the
  // centroids (about 700) does not. The changelog topic takes 4000 bytes:
  // its records are chunked to fit.
  constexpr size_t kSegmentsTopicLimit = 1500;
  constexpr size_t kSegmentsBound = kSegmentsTopicLimit - 1024;
  {
    std::vector<kafka::TopicSpec> specs;
    for (kafka::TopicSpec t : AllTopics(cfg)) {
      if (t.name == cfg.outputs.segments.name) {
        t.configs.emplace_back("max.message.bytes", std::to_string(kSegmentsTopicLimit));
      } else if (t.name == ChangelogTopicName(cfg, run.input_topic)) {
        t.configs.emplace_back("max.message.bytes", "4000");
      } else {
        continue;
      }
      specs.push_back(t);
    }
    REQUIRE(specs.size() == 2);
    REQUIRE_OK_AND_ASSIGN(auto admin, kafka::TopicAdmin::Create(broker.config()));
    REQUIRE_OK(admin->EnsureTopics(specs));
  }
  EngineFixture fx(std::span<const EngineRun>(&run, 1), &broker);  // the other topics, the input
  fx.Produce(3000);

  // The product's pipeline: it segments customers (crm.segments).
  REQUIRE_OK_AND_ASSIGN(
      const pipeline::PipelineSpec spec,
      pipeline::LoadPipelineSpec((testing::SourceDir() / "pipelines" / "crm.yaml").string()));
  auto engine = StreamEngine::Create(cfg, spec);
  REQUIRE_OK(engine);
  std::atomic<bool> stop{false};
  Status status;
  std::atomic<bool> finished{false};
  RunOptions options;
  options.until_caught_up = true;
  std::thread runner([&] {
    status = (*engine)->Run(stop, options);
    finished.store(true);
  });
  const auto deadline = Clock::now() + std::chrono::seconds(120);
  while (!finished.load() && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  stop.store(true);
  runner.join();
  // The engine did not stop on a refused record: it ran to the end.
  REQUIRE(finished.load());
  REQUIRE_OK(status);
  const EngineStats& stats = (*engine)->stats();
  CHECK(stats.delivery_failures.load() == 0);

  OutputPartitionCounts counts{};
  for (int k = 0; k < kOutputKindCount; ++k) {
    counts[static_cast<size_t>(k)] = cfg.outputs.of(static_cast<OutputKind>(k)).partitions;
  }
  std::array<std::vector<std::pair<std::string, std::string>>, kOutputKindCount> read;
  {
    std::vector<kafka::TopicPartitionOffset> from;
    std::map<std::string, int> kind_of;
    for (int k = 0; k < kOutputKindCount; ++k) {
      const std::string& topic = cfg.outputs.of(static_cast<OutputKind>(k)).name;
      kind_of[topic] = k;
      for (int32_t q = 0; q < counts[static_cast<size_t>(k)]; ++q) {
        from.push_back({topic, q, kafka::kOffsetBeginning});
      }
    }
    REQUIRE_OK(
        kafka::ReadPartitionsToEnd(fx.client, from, {}, nullptr, [&](const kafka::MessageView& m) {
          read[static_cast<size_t>(kind_of.at(std::string(m.topic())))].emplace_back(m.key(),
                                                                                     m.payload());
          return Status::OK();
        }));
  }

  // The oversized segments records (the centroid snapshots) are dead
  // letters naming their kind and size.
  simdjson::dom::parser parser;
  size_t too_large = 0;
  for (const auto& [key, value] : read[static_cast<size_t>(OutputKind::kDeadLetter)]) {
    simdjson::dom::element doc = parser.parse(value);
    if (std::string_view(doc["reason"]) != "output_too_large") continue;
    ++too_large;
    CHECK(std::string_view(doc["field"]) == "segments");
    CHECK_THAT(std::string(std::string_view(doc["detail"])),
               Catch::Contains("over the " + std::to_string(kSegmentsBound) + " bytes"));
    CHECK(uint64_t(doc["original_size"]) > kSegmentsBound);  // snapshots have no key
    const std::string_view original = doc["original"];
    CHECK(original.starts_with(R"({"kind":"centroids")"));
  }
  // The snapshots were all turned away; the segment changes all arrived.
  const auto& segments = read[static_cast<size_t>(OutputKind::kSegments)];
  CHECK(too_large > 0);
  CHECK(!segments.empty());
  for (const auto& [key, value] : segments) {
    CHECK(key.size() + value.size() <= kSegmentsBound);
    CHECK(value.starts_with(R"({"kind":"segment_change")"));
  }
  // Every other output arrived: each kind's records are what the engine
  // made, less the segments records it turned into dead letters.
  for (int k = 0; k < kOutputKindCount; ++k) {
    const auto kind = static_cast<OutputKind>(k);
    INFO(OutputKindName(kind));
    const size_t made = stats.outputs[static_cast<size_t>(k)].load();
    const size_t replaced = kind == OutputKind::kSegments ? too_large : 0;
    CHECK(read[static_cast<size_t>(k)].size() == made - replaced);
  }
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

// Sets a topic's configs on a real cluster (AlterConfigs: the topic's other
// own configs are reset), as an operator would while the engine runs.
void AlterTopicConfig(const kafka::ClientConfig& client, const std::string& topic,
                      const std::string& name, const std::string& value) {
  REQUIRE_OK_AND_ASSIGN(kafka::ConfHandle conf, client.BuildConf());
  std::array<char, 512> errstr{};
  kafka::KafkaHandle rk(rd_kafka_new(RD_KAFKA_PRODUCER, conf.get(), errstr.data(), errstr.size()));
  REQUIRE(rk);
  conf.release();  // owned by rk now
  rd_kafka_ConfigResource_t* resource =
      rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, topic.c_str());
  REQUIRE(rd_kafka_ConfigResource_set_config(resource, name.c_str(), value.c_str()) ==
          RD_KAFKA_RESP_ERR_NO_ERROR);
  kafka::QueueHandle queue(rd_kafka_queue_new(rk.get()));
  rd_kafka_AlterConfigs(rk.get(), &resource, 1, nullptr, queue.get());
  rd_kafka_ConfigResource_destroy(resource);
  kafka::EventHandle event(rd_kafka_queue_poll(queue.get(), 30000));
  REQUIRE(event);
  REQUIRE(rd_kafka_event_error(event.get()) == RD_KAFKA_RESP_ERR_NO_ERROR);
  size_t count = 0;
  const rd_kafka_ConfigResource_t** results = rd_kafka_AlterConfigs_result_resources(
      rd_kafka_event_AlterConfigs_result(event.get()), &count);
  REQUIRE(count == 1);
  REQUIRE(rd_kafka_ConfigResource_error(results[0]) == RD_KAFKA_RESP_ERR_NO_ERROR);
}

TEST_CASE("A topic limit lowered while the engine runs stops it with the topic and the bound named",
          "[runtime][integration][kafka]") {
  CRMSTREAM_USE_BROKER(testing::RealBroker, broker);
  testing::ScratchDir scratch;
  const EngineRun run = RealBrokerRun(broker, scratch, "lowered-limit", 1);
  const config::EngineConfig cfg = EngineConfigFor(broker.bootstrap_servers(), run);
  EngineFixture fx(std::span<const EngineRun>(&run, 1), &broker);
  fx.Produce(300);

  auto engine = StreamEngine::Create(cfg, pipeline::PipelineSpec{});
  REQUIRE_OK(engine);
  std::atomic<bool> stop{false};
  std::atomic<bool> finished{false};
  Status status;
  std::thread runner([&] {
    status = (*engine)->Run(stop, RunOptions{});
    finished.store(true);
  });
  const auto wait_for = [&](auto done, std::chrono::seconds within) {
    const auto deadline = Clock::now() + within;
    while (!done() && Clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return done();
  };
  // Running, its first outputs delivered; then the customer-scores topic
  // takes no record at all any more.
  CHECK(
      wait_for([&] { return (*engine)->stats().delivered.load() > 0; }, std::chrono::seconds(60)));
  const std::string& scores_topic = cfg.outputs.customer_scores.name;
  AlterTopicConfig(fx.client, scores_topic, "max.message.bytes", "100");
  fx.Produce(300);
  const bool stopped = wait_for([&] { return finished.load(); }, std::chrono::seconds(90));
  stop.store(true);
  runner.join();
  REQUIRE(stopped);
  INFO(status.ToString());
  REQUIRE_FALSE(status.ok());
  CHECK_THAT(status.ToString(), Catch::Contains("MSG_SIZE_TOO_LARGE"));
  CHECK_THAT(status.ToString(), Catch::Contains("topic " + scores_topic + " refused a record"));
  // At start the topic had the broker's default: the producer's bound held.
  REQUIRE_OK_AND_ASSIGN(const size_t producer_bound, MaxOutputBytes(MakeClientConfig(cfg.kafka)));
  CHECK_THAT(status.ToString(),
             Catch::Contains("to " + std::to_string(producer_bound) + " bytes a record"));
  CHECK_THAT(status.ToString(), Catch::Contains("A restart reads it again"));

  // The restart reads the limit: one that leaves no room is refused, named.
  auto restarted = StreamEngine::Create(cfg, pipeline::PipelineSpec{});
  REQUIRE(restarted.status().code() == StatusCode::kInvalidArgument);
  CHECK_THAT(restarted.status().ToString(),
             Catch::Contains("topic " + scores_topic + ": max.message.bytes 100"));
}

TEST_CASE("Outputs leave at once at least once on a Kafka cluster unless producer_linger_ms is set",
          "[runtime]") {
  using config::Guarantee;
  config::EngineConfig cfg;
  CHECK(OutputLingerMs(cfg, /*embedded_cluster=*/false, Guarantee::kAtLeastOnce) == 0);
  CHECK(OutputLingerMs(cfg, /*embedded_cluster=*/true, Guarantee::kAtLeastOnce) == 5);
  CHECK(OutputLingerMs(cfg, false, Guarantee::kExactlyOnceTransactions) == 5);
  CHECK(OutputLingerMs(cfg, true, Guarantee::kExactlyOnceStamped) == 5);
  cfg.producer_linger_ms = 20;
  CHECK(OutputLingerMs(cfg, false, Guarantee::kAtLeastOnce) == 20);
  CHECK(OutputLingerMs(cfg, true, Guarantee::kExactlyOnceTransactions) == 20);
  cfg.producer_linger_ms = 0;
  CHECK(OutputLingerMs(cfg, true, Guarantee::kAtLeastOnce) == 0);
}

// The heap in use: every malloc arena, mapped chunks included (freed memory
// reused does not hide growth as it does in the resident set).
size_t HeapInUse() {
  const struct mallinfo2 m = mallinfo2();
  return m.uordblks + m.hblkhd;
}

TEST_CASE("The prefetch queue is bounded by its bytes, not by librdkafka's message count",
          "[runtime]") {
  // At the default cap (12 partitions, the default dedup windows) the
  // plan's queue of 180-byte events reaches its bytes before its count: a
  // count of librdkafka's default 100,000 would stop fetches first.
  pipeline::MemoryPlanInput in;
  in.partitions = 12;
  in.dedup_ids = 1'000'000;
  REQUIRE_OK_AND_ASSIGN(const pipeline::MemoryPlan plan, pipeline::PlanMemory(in));
  CHECK(plan.consumer_queue_messages * 180 >= plan.consumer_queue_kbytes * 1024);
  CHECK(plan.consumer_queue_messages > 100000);
  // The engine's clients accept the plan's counts, the smallest and the
  // largest plans' too.
  for (const size_t cap_mb : {128, 256, 1024, 65536}) {
    in.cap_bytes = cap_mb << 20;
    in.partitions = cap_mb == 128 ? 1 : 12;
    in.dedup_ids = cap_mb == 128 ? 0 : 1'000'000;
    REQUIRE_OK_AND_ASSIGN(const pipeline::MemoryPlan p, pipeline::PlanMemory(in));
    INFO(p.ToString());
    kafka::ClientConfig consumer;
    consumer.Set("queued.min.messages", std::to_string(p.consumer_queue_messages));
    consumer.Set("queued.max.messages.kbytes", std::to_string(p.consumer_queue_kbytes));
    CHECK(consumer.BuildConf().ok());
    kafka::ClientConfig producer;
    producer.Set("queue.buffering.max.messages", std::to_string(p.producer_queue_messages));
    producer.Set("queue.buffering.max.kbytes", std::to_string(p.producer_queue_kbytes));
    CHECK(producer.BuildConf().ok());
  }
}

TEST_CASE("A consumer's prefetch of small events stays within the memory plan's part for it",
          "[runtime]") {
  // librdkafka's queue limits count payload, but it keeps about 320 bytes of
  // its own beside each fetched event, more than a small event: the plan
  // counts both. A consumer set as the engine's is assigned a backlog larger
  // than its queue and never polled, so librdkafka fills the queue to the
  // plan's limits; the heap in use (every malloc arena, mapped chunks
  // included: freed memory reused does not hide it as in the resident set)
  // grows by no more than the plan's part for the consumer.
#if defined(__SANITIZE_ADDRESS__)
  // ASan's allocator keeps its own books: mallinfo2() does not see its heap.
  CRMSTREAM_SKIP("heap measurement needs the system allocator (not a sanitizer build)");
#endif
  constexpr int kPartitions = 6;
  constexpr size_t kEventBytes = 150;
  constexpr int kEventsPerPartition = 20000;  // 3 MB: under the cluster's 5 MiB a partition
  pipeline::MemoryPlanInput in;
  in.cap_bytes = size_t{128} << 20;
  in.partitions = kPartitions;
  REQUIRE_OK_AND_ASSIGN(const pipeline::MemoryPlan plan, pipeline::PlanMemory(in));
  INFO(plan.ToString() + "; consumer queue " + std::to_string(plan.consumer_queue_kbytes) +
       " KiB, " + std::to_string(plan.consumer_queue_messages) + " messages");
  // The backlog is more than the queue holds.
  REQUIRE(size_t{kPartitions} * kEventsPerPartition * kEventBytes >
          2 * plan.consumer_queue_kbytes * 1024);

  REQUIRE_OK_AND_ASSIGN(auto cluster, kafka::EmbeddedCluster::Create({.broker_count = 1}));
  REQUIRE_OK(cluster->CreateTopic("prefetch", kPartitions));
  kafka::ClientConfig producer_client;
  producer_client.Set("bootstrap.servers", cluster->bootstrap_servers());
  // A fetch returns at least one whole record batch a partition (the
  // embedded cluster exactly one), however large: batches no larger than the
  // plan's fetch keep the bound below about the plan, not about how many
  // records the producer happened to gather (up to 1 MB on a loaded machine).
  REQUIRE(plan.consumer_fetch_bytes >= 64 * 1024);
  producer_client.Set("batch.size", std::to_string(64 * 1024));
  {
    REQUIRE_OK_AND_ASSIGN(kafka::ConfHandle conf, producer_client.BuildConf());
    char err[256];
    kafka::KafkaHandle producer(rd_kafka_new(RD_KAFKA_PRODUCER, conf.get(), err, sizeof(err)));
    REQUIRE(producer);
    conf.release();
    std::string value(kEventBytes, 'x');
    for (int p = 0; p < kPartitions; ++p) {
      for (int i = 0; i < kEventsPerPartition; ++i) {
        const std::string key = "C" + std::to_string(i);
        value[0] = static_cast<char>('a' + i % 26);
        rd_kafka_resp_err_t e;
        int tries = 0;
        while (
            (e = rd_kafka_producev(producer.get(), RD_KAFKA_V_TOPIC("prefetch"),
                                   RD_KAFKA_V_PARTITION(p), RD_KAFKA_V_KEY(key.data(), key.size()),
                                   RD_KAFKA_V_VALUE(value.data(), value.size()),
                                   RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END)) ==
                RD_KAFKA_RESP_ERR__QUEUE_FULL &&
            ++tries < 1000) {
          rd_kafka_poll(producer.get(), 10);
        }
        REQUIRE(e == RD_KAFKA_RESP_ERR_NO_ERROR);
      }
    }
    REQUIRE(rd_kafka_flush(producer.get(), 60000) == RD_KAFKA_RESP_ERR_NO_ERROR);
  }

  kafka::ClientConfig consumer_client;
  consumer_client.Set("bootstrap.servers", cluster->bootstrap_servers());
  consumer_client.Set("group.id", "prefetch-test");
  SetConsumerMemory(plan, &consumer_client);
  REQUIRE_OK_AND_ASSIGN(kafka::ConfHandle conf, consumer_client.BuildConf());
  char err[256];
  kafka::KafkaHandle consumer(rd_kafka_new(RD_KAFKA_CONSUMER, conf.get(), err, sizeof(err)));
  REQUIRE(consumer);
  conf.release();
  rd_kafka_poll_set_consumer(consumer.get());
  kafka::QueueHandle queue(rd_kafka_queue_get_consumer(consumer.get()));
  const size_t before = HeapInUse();
  kafka::PartitionListHandle assignment(rd_kafka_topic_partition_list_new(kPartitions));
  for (int p = 0; p < kPartitions; ++p) {
    rd_kafka_topic_partition_list_add(assignment.get(), "prefetch", p)->offset =
        RD_KAFKA_OFFSET_BEGINNING;
  }
  REQUIRE(rd_kafka_assign(consumer.get(), assignment.get()) == RD_KAFKA_RESP_ERR_NO_ERROR);
  // Until the queue, half full at least, stops growing (at most 30 s), the
  // peak heap growth. A start on a loaded machine can pause the fetches for
  // a second before the queue is anywhere near full: that is not the end.
  size_t queued = 0;
  size_t peak = 0;
  int steady = 0;
  for (int i = 0; i < 300 && steady < 10; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    const size_t now = rd_kafka_queue_length(queue.get());
    const size_t in_use = HeapInUse();
    peak = std::max(peak, in_use - std::min(before, in_use));
    const bool half_full = now * kEventBytes >= plan.consumer_queue_kbytes * 1024 / 2;
    steady = now == queued && half_full ? steady + 1 : 0;
    queued = now;
  }
  INFO("queued " << queued << " events, heap grew by " << peak << " bytes, the plan's part "
                 << plan.consumer_bytes);
  // The queue filled to its bytes (within a fetch).
  CHECK(queued * kEventBytes >= plan.consumer_queue_kbytes * 1024 / 2);
  CHECK(queued * kEventBytes <=
        plan.consumer_queue_kbytes * 1024 + kPartitions * plan.consumer_fetch_bytes);
  // librdkafka's own bytes per event are real (the premise of the plan's
  // count: re-measure kConsumerBytesPerQueuedMessage if this fails) ...
  CHECK(peak >= queued * (kEventBytes + 200));
  // ... and the plan holds them.
  CHECK(peak <= plan.consumer_bytes);
}

TEST_CASE("A producer's queue of small outputs stays within the memory plan's part for it",
          "[runtime]") {
  // The producer's twin of the test above: librdkafka keeps about 190 bytes
  // of its own beside each queued record, and the plan counts them. A
  // producer set as the engine's, its broker unreachable, is given records
  // of the plan's least size until its queue is full; the heap in use grows
  // by no more than the plan's part for the producer (which also allows a
  // request's copy of the records in flight, none here).
#if defined(__SANITIZE_ADDRESS__)
  CRMSTREAM_SKIP("heap measurement needs the system allocator (not a sanitizer build)");
#endif
  pipeline::MemoryPlanInput in;
  in.cap_bytes = size_t{128} << 20;
  in.partitions = 6;
  REQUIRE_OK_AND_ASSIGN(const pipeline::MemoryPlan plan, pipeline::PlanMemory(in));
  INFO(plan.ToString() + "; producer queue " + std::to_string(plan.producer_queue_kbytes) +
       " KiB, " + std::to_string(plan.producer_queue_messages) + " messages");
  kafka::ProducerOptions options;
  options.queue_max_kbytes = static_cast<int>(plan.producer_queue_kbytes);
  options.queue_max_messages = static_cast<int>(plan.producer_queue_messages);
  options.queue_full_timeout = std::chrono::milliseconds(50);
  kafka::ClientConfig client{{"bootstrap.servers", "127.0.0.1:1"}, {"log_level", "0"}};
  REQUIRE_OK_AND_ASSIGN(auto producer, kafka::Producer::Create(client, options));
  const std::string key = "C0000001";
  std::string value(pipeline::kMinQueuedRecordBytes - key.size(), 'x');
  const size_t before = HeapInUse();
  size_t queued = 0;
  const size_t most = 2 * plan.producer_queue_messages;
  while (queued < most) {
    value[0] = static_cast<char>('a' + queued % 26);
    if (!producer->Produce("outputs", 0, key, value).ok()) break;  // full
    ++queued;
  }
  const size_t after = HeapInUse();
  const size_t grown = after - std::min(before, after);
  INFO("queued " << queued << " records, heap grew by " << grown << " bytes, the plan's part "
                 << plan.producer_bytes);
  // The queue filled to its limits, not past them.
  REQUIRE(queued < most);
  CHECK(queued * pipeline::kMinQueuedRecordBytes >= plan.producer_queue_kbytes * 1024 / 2);
  CHECK(queued <= plan.producer_queue_messages);
  // librdkafka's own bytes per record are real (re-measure
  // kProducerBytesPerQueuedMessage if this fails) ...
  CHECK(grown >= queued * (pipeline::kMinQueuedRecordBytes + 120));
  // ... and the plan holds them.
  CHECK(grown <= plan.producer_bytes);
  producer.reset();  // undelivered: nothing to flush to
}

}  // namespace
}  // namespace crmstream::runtime
