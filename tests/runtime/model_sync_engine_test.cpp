// Model sync in the engine: two engines in one group over a 12-partition
// input publish their tasks' statistics to <group_id>.model-sync; what the
// topic holds merges into global minute metrics equal to sums computed from
// the input itself, and each engine reads the topic back into the global
// models its tasks score with, equal to a merge of the same records made
// here. With sync off nothing is produced to the topic and tasks score with
// their own models.
#include <array>
#include <catch2/catch.hpp>
#include <chrono>
#include <cmath>
#include <map>
#include <optional>
#include <string>
#include <thread>
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

// What an engine's model sync held when its run ended.
struct SyncOutcome {
  std::optional<scoring::ModelStatistics> merged;
  int64_t offset = -1;  // of the topic, read up to
  ModelQualitySnapshot quality;
  uint64_t merges = 0;
  uint64_t partitions_merged = 0;  // the gauge
};

SyncOutcome OutcomeOf(const BackgroundEngine& e) {
  SyncOutcome o;
  if (const scoring::ModelStatistics* m = e.engine().merged_models()) o.merged = *m;
  o.offset = e.engine().model_sync_offset();
  o.quality = e.engine().probe().ModelQuality();
  o.merges = e.stats().model_sync_merges.load();
  o.partitions_merged = e.stats().model_sync_partitions_merged.load();
  return o;
}

bool Within1e9(double got, double want) {
  return std::abs(got - want) <= 1e-9 * std::max(1.0, std::abs(want));
}

void CheckStandardizersEqual(const models::Standardizer& got, const models::Standardizer& want) {
  REQUIRE(got.dimension() == want.dimension());
  for (int j = 0; j < want.dimension(); ++j) {
    CHECK(got.count(j) == want.count(j));
    CHECK(Within1e9(got.mean(j), want.mean(j)));
    CHECK(Within1e9(got.variance(j), want.variance(j)));
  }
}

// `got` against `want`: the exact parts to 1e-9 (the approximate ones too:
// the same records merged in the same order give the same model).
void CheckMergedEqual(const scoring::ModelStatistics& got, const scoring::ModelStatistics& want) {
  CHECK(got.parts == want.parts);
  CHECK(got.minutes_closed == want.minutes_closed);
  REQUIRE(got.minutes.size() == want.minutes.size());
  for (size_t i = 0; i < want.minutes.size(); ++i) {
    CHECK(got.minutes[i].minute_start_ms == want.minutes[i].minute_start_ms);
    CHECK(Within1e9(got.minutes[i].revenue, want.minutes[i].revenue));
    CHECK(Within1e9(got.minutes[i].tickets, want.minutes[i].tickets));
    CHECK(Within1e9(got.minutes[i].logins, want.minutes[i].logins));
  }
  REQUIRE(got.churn_features);
  REQUIRE(got.spend_features);
  REQUIRE(got.value);
  REQUIRE(got.churn);
  CheckStandardizersEqual(*got.churn_features, *want.churn_features);
  CheckStandardizersEqual(*got.spend_features, *want.spend_features);
  CHECK(got.value->count() == want.value->count());
  const std::span<const double> gw = got.value->Coefficients();
  const std::vector<double> want_value(want.value->Coefficients().begin(),
                                       want.value->Coefficients().end());
  REQUIRE(gw.size() == want_value.size());
  for (size_t j = 0; j < gw.size(); ++j) CHECK(Within1e9(gw[j], want_value[j]));
  CHECK(got.churn->count() == want.churn->count());
  for (size_t j = 0; j < want.churn->weights().size(); ++j) {
    CHECK(Within1e9(got.churn->weights()[j], want.churn->weights()[j]));
  }
  CHECK(Within1e9(got.churn->intercept(), want.churn->intercept()));
  CHECK(got.segments.k == want.segments.k);
  REQUIRE(got.segments.centres.size() == want.segments.centres.size());
  for (size_t j = 0; j < want.segments.centres.size(); ++j) {
    CHECK(Within1e9(got.segments.centres[j], want.segments.centres[j]));
  }
  CHECK(got.segments.sizes == want.segments.sizes);
}

TEST_CASE(
    "Engines with model sync publish statistics that merge into the input's minute sums, and "
    "score with the global models read back",
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
  // The scenario needs the two engines in the group together: an engine
  // that finished its partitions before the other was assigned any merged
  // only its own. Under load the embedded coordinator can hold a member's
  // JoinGroup for seconds, so a run where they never held partitions at the
  // same time is not this test's scenario and is run again (a new cluster),
  // at most three times.
  std::optional<EngineFixture> fx;
  config::EngineConfig on_a, on_b, off;
  std::string on_topic, off_topic;
  testing::MinuteSumsByMinute want;
  uint64_t on_produced = 0;
  SyncOutcome outcome_a, outcome_b, outcome_off;
  bool overlapped = false;
  for (int attempt = 0; attempt < 3 && !overlapped; ++attempt) {
    fx.reset();
    fx.emplace(runs);
    on_run.state_dir = fx->path("on-a");
    off_run.state_dir = fx->path("off");
    on_a = EngineConfigFor(fx->bootstrap, on_run);
    on_a.models.sync_interval_ms = 200;
    on_b = on_a;
    on_b.state_dir = fx->path("on-b");
    off = EngineConfigFor(fx->bootstrap, off_run);
    REQUIRE(off.models.sync_interval_ms == 0);
    on_topic = ModelSyncTopicName(on_a);
    off_topic = ModelSyncTopicName(off);
    REQUIRE_OK(fx->cluster->CreateTopic(on_topic, 1));
    REQUIRE_OK(fx->cluster->CreateTopic(off_topic, 1));

    // A clean world: every record is accepted once, which the sums rely on.
    // Dense enough that every partition's 60-minute window overlaps the
    // others' at the end (the merge sums the minutes all partitions hold).
    generator::WorldOptions world;
    world.customers = 6000;
    world.seed = 5;
    world.malformed_rate = 0.0;
    world.duplicate_rate = 0.0;
    REQUIRE_OK_AND_ASSIGN(auto gen, generator::WorldGenerator::Create(world));
    want = {};
    ingest::EventDecoder decoder;
    ingest::Event e;
    std::string key, value;
    for (int i = 0; i < 40'000; ++i) {
      gen->Next(&key, &value);
      REQUIRE_OK(fx->producer->Produce(fx->input_topic, kafka::kPartitionUnassigned, key, value));
      REQUIRE(!decoder.Decode(value, 0, &e).rejected());
      testing::AddToMinuteSums(e, &want);
    }
    REQUIRE_OK(fx->producer->Flush(std::chrono::seconds(30)));

    {
      // Two instances of one application share the partitions.
      BackgroundEngine a(on_a, /*until_caught_up=*/true);
      BackgroundEngine b(on_b, /*until_caught_up=*/true);
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
      while (!(a.finished() && b.finished()) && std::chrono::steady_clock::now() < deadline) {
        overlapped =
            overlapped || (a.stats().partitions.load() > 0 && b.stats().partitions.load() > 0);
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
      REQUIRE(a.finished());
      REQUIRE(b.finished());
      REQUIRE_OK(a.Stop());
      REQUIRE_OK(b.Stop());
      CHECK(a.stats().received.load() + b.stats().received.load() >= 40'000);
      on_produced = a.stats().model_sync_records.load() + b.stats().model_sync_records.load();
      outcome_a = OutcomeOf(a);
      outcome_b = OutcomeOf(b);
    }
    if (!overlapped) WARN("the two engines never held partitions together; running again");
  }
  REQUIRE(overlapped);
  {
    BackgroundEngine o(off, /*until_caught_up=*/true);
    REQUIRE(o.WaitFinished(std::chrono::seconds(120)));
    REQUIRE_OK(o.Stop());
    CHECK(o.stats().model_sync_records.load() == 0);
    outcome_off = OutcomeOf(o);
  }

  // (One section per run of the engines: each section runs them anew.)
  SECTION(
      "with sync off nothing is produced to the topic and every task scores with its own models") {
    CHECK(ReadSyncTopic(fx->client, off_topic).empty());
    CHECK(!outcome_off.merged);
    CHECK(outcome_off.offset == -1);
    CHECK(outcome_off.merges == 0);
    CHECK(outcome_off.partitions_merged == 0);
    CHECK(outcome_off.quality.partitions > 0);
    CHECK(outcome_off.quality.global_model_partitions == 0);
  }

  SECTION(
      "the merged minute metrics equal sums computed from the input, and each engine's tasks "
      "score with global models of all 12 partitions equal to a merge of the topic's records") {
    const std::vector<pipeline::ModelSyncRecord> records = ReadSyncTopic(fx->client, on_topic);
    for (const SyncOutcome* o : {&outcome_a, &outcome_b}) {
      REQUIRE(o->merged);
      CHECK(o->merged->parts == uint32_t{kPartitions});
      CHECK(o->merges > 0);
      CHECK(o->partitions_merged == uint64_t{kPartitions});
      // Every task it still owned at the end scored with a merge of all 12.
      CHECK(o->quality.partitions > 0);
      CHECK(o->quality.global_model_partitions == o->quality.partitions);
      CHECK(o->quality.global_model_parts_min == uint32_t{kPartitions});
      // The reference: a board of the records the engine had read.
      REQUIRE(o->offset > 0);
      REQUIRE(static_cast<size_t>(o->offset) <= records.size());
      pipeline::ModelSyncBoard board(on_a.kafka.group_id);
      for (size_t i = 0; i < static_cast<size_t>(o->offset); ++i) {
        REQUIRE_OK(board.Apply(records[i].key, records[i].value));
      }
      REQUIRE_OK_AND_ASSIGN(scoring::ModelStatistics reference, board.Merge());
      CheckMergedEqual(*o->merged, reference);
    }

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
