// Model sync in the engine: two engines in one group over a 12-partition
// input publish their tasks' statistics to <group_id>.model-sync; what the
// topic holds merges into global minute metrics equal to sums computed from
// the input itself. With sync off nothing is produced to the topic.
#include <array>
#include <catch2/catch.hpp>
#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "crmstream/ingest/json_decoder.h"
#include "crmstream/pipeline/model_sync.h"
#include "crmstream/runtime/kafka_wiring.h"
#include "engine_runs.h"
#include "support/minute_sums.h"
#include "support/require_ok.h"

namespace crmstream::runtime {
namespace {

constexpr int kPartitions = 12;

// Every record of a topic partition 0 from its beginning.
std::vector<pipeline::ModelSyncRecord> ReadSyncTopic(const kafka::ClientConfig& client,
                                                     const std::string& topic) {
  std::vector<pipeline::ModelSyncRecord> out;
  const std::vector<kafka::TopicPartitionOffset> from = {{topic, 0, kafka::kOffsetBeginning}};
  REQUIRE_OK(
      kafka::ReadPartitionsToEnd(client, from, {}, nullptr, [&](const kafka::MessageView& m) {
        out.push_back({std::string(m.key()), std::string(m.payload())});
        return Status::OK();
      }));
  return out;
}

TEST_CASE("Engines with model sync publish statistics that merge into the input's minute sums",
          "[runtime][integration]") {
  EngineRun on_run{.state_dir = "",
                   .group = "ms-on",
                   .output_prefix = "ms-on.",
                   .guarantee = config::Guarantee::kAtLeastOnce,
                   .input_partitions = kPartitions,
                   .input_topic = "ms.input"};
  EngineRun off_run = on_run;
  off_run.group = "ms-off";
  off_run.output_prefix = "ms-off.";
  const std::vector<EngineRun> runs = {on_run, off_run};
  EngineFixture fx(runs);
  on_run.state_dir = fx.path("on-a");
  off_run.state_dir = fx.path("off");

  config::EngineConfig on_a = EngineConfigFor(fx.bootstrap, on_run);
  on_a.models.sync_interval_ms = 200;
  config::EngineConfig on_b = on_a;
  on_b.state_dir = fx.path("on-b");
  config::EngineConfig off = EngineConfigFor(fx.bootstrap, off_run);
  REQUIRE(off.models.sync_interval_ms == 0);
  const std::string on_topic = ModelSyncTopicName(on_a);
  const std::string off_topic = ModelSyncTopicName(off);
  REQUIRE_OK(fx.cluster->CreateTopic(on_topic, 1));
  REQUIRE_OK(fx.cluster->CreateTopic(off_topic, 1));

  // A clean world: every record is accepted once, which the sums rely on.
  // Dense enough that every partition's 60-minute window overlaps the
  // others' at the end (the merge sums the minutes all partitions hold).
  generator::WorldOptions world;
  world.customers = 6000;
  world.seed = 5;
  world.malformed_rate = 0.0;
  world.duplicate_rate = 0.0;
  REQUIRE_OK_AND_ASSIGN(auto gen, generator::WorldGenerator::Create(world));
  testing::MinuteSumsByMinute want;
  ingest::EventDecoder decoder;
  ingest::Event e;
  std::string key, value;
  for (int i = 0; i < 40'000; ++i) {
    gen->Next(&key, &value);
    REQUIRE_OK(fx.producer->Produce(fx.input_topic, kafka::kPartitionUnassigned, key, value));
    REQUIRE(!decoder.Decode(value, 0, &e).rejected());
    testing::AddToMinuteSums(e, &want);
  }
  REQUIRE_OK(fx.producer->Flush(std::chrono::seconds(30)));

  uint64_t on_produced = 0;
  {
    // Two instances of one application share the partitions.
    BackgroundEngine a(on_a, /*until_caught_up=*/true);
    BackgroundEngine b(on_b, /*until_caught_up=*/true);
    REQUIRE(a.WaitFinished(std::chrono::seconds(120)));
    REQUIRE(b.WaitFinished(std::chrono::seconds(120)));
    REQUIRE_OK(a.Stop());
    REQUIRE_OK(b.Stop());
    CHECK(a.stats().received.load() + b.stats().received.load() >= 40'000);
    on_produced = a.stats().model_sync_records.load() + b.stats().model_sync_records.load();
  }
  {
    BackgroundEngine o(off, /*until_caught_up=*/true);
    REQUIRE(o.WaitFinished(std::chrono::seconds(120)));
    REQUIRE_OK(o.Stop());
    CHECK(o.stats().model_sync_records.load() == 0);
  }

  SECTION("with sync off nothing is produced to the topic") {
    CHECK(ReadSyncTopic(fx.client, off_topic).empty());
  }

  SECTION("the merged minute metrics equal sums computed from the input") {
    const std::vector<pipeline::ModelSyncRecord> records = ReadSyncTopic(fx.client, on_topic);
    pipeline::ModelSyncBoard board(on_a.kafka.group_id);
    for (const pipeline::ModelSyncRecord& r : records) REQUIRE_OK(board.Apply(r.key, r.value));
    REQUIRE(board.partitions() == size_t{kPartitions});
    // The counter counts what the topic holds (nothing is compacted yet).
    CHECK(on_produced == records.size());
    CHECK(board.foreign_records() == 0);
    REQUIRE_OK_AND_ASSIGN(scoring::ModelStatistics merged, board.Merge());
    REQUIRE(merged.minutes.size() > 10);
    for (const scoring::MinuteSums& m : merged.minutes) {
      const auto it = want.find(m.minute_start_ms);
      const std::array<double, 3> sums = it == want.end() ? std::array<double, 3>{} : it->second;
      CHECK(std::abs(m.revenue - sums[0]) / std::max(1.0, std::abs(sums[0])) < 1e-9);
      CHECK(m.tickets == sums[1]);
      CHECK(m.logins == sums[2]);
    }
  }
}

}  // namespace
}  // namespace crmstream::runtime
