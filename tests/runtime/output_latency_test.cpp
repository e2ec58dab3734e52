// Output latency by kind (crmstream_output_latency_seconds), end to end on
// the embedded cluster: input produced, left to age on the broker, then
// processed. Every output the engine hands to the producer is acknowledged
// and measured once, from the broker timestamp of the input behind it, so
// no sample can be shorter than the time the input waited.
#include <catch2/catch.hpp>
#include <chrono>
#include <thread>

#include "crmstream/common/clock.h"
#include "crmstream/generator/world_generator.h"
#include "crmstream/kafka/embedded_cluster.h"
#include "crmstream/runtime/kafka_wiring.h"
#include "crmstream/runtime/stream_engine.h"
#include "engine_runs.h"
#include "support/require_ok.h"
#include "support/test_support.h"

namespace crmstream::runtime {
namespace {

using Clock = std::chrono::steady_clock;

uint64_t Count(const DurationHistogram& h) {
  uint64_t n = 0;
  for (size_t i = 0; i <= h.bounds().size(); ++i) n += h.bucket(i);
  return n;
}

// Samples at or below `seconds` (a bucket bound).
uint64_t CountAtMost(const DurationHistogram& h, double seconds) {
  uint64_t n = 0;
  for (size_t i = 0; i < h.bounds().size() && h.bounds()[i] <= seconds; ++i) n += h.bucket(i);
  return n;
}

TEST_CASE("Output latencies of a few milliseconds land in buckets a millisecond apart",
          "[pipeline][latency]") {
  // Latencies are whole milliseconds: a p99 near the 5 ms target must be
  // read from the histogram, so 1, 2, 3, 4 and 5 ms each have a bucket.
  OutputLatencyHistogram h;
  for (int ms = 0; ms <= 5; ++ms) h.Observe(ms * 1e-3);
  CHECK(CountAtMost(h, 0.0005) == 1);
  for (int ms = 1; ms <= 5; ++ms) {
    INFO(ms << " ms");
    CHECK(CountAtMost(h, ms * 1e-3) == static_cast<uint64_t>(ms) + 1);
  }
  // Seconds still have their buckets (a stalled output is not lost in +Inf).
  h.Observe(4.0);
  CHECK(CountAtMost(h, 2.5) == 6);
  CHECK(CountAtMost(h, 5.0) == 7);
  CHECK(Count(h) == 7);
}

TEST_CASE("Output latencies just past the default commit interval land in buckets 5 ms apart",
          "[pipeline][latency]") {
  // A transaction's outputs are visible at its commit, about one commit
  // interval (1 s by default) after their input: the target, the interval +
  // 5 ms, must be read from the histogram, not interpolated up to 2.5 s.
  OutputLatencyHistogram h;
  h.Observe(0.999);
  h.Observe(1.004);
  h.Observe(1.009);
  h.Observe(1.04);
  CHECK(CountAtMost(h, 1.0) == 1);
  CHECK(CountAtMost(h, 1.005) == 2);
  CHECK(CountAtMost(h, 1.01) == 3);
  CHECK(CountAtMost(h, 1.025) == 3);
  CHECK(CountAtMost(h, 1.05) == 4);
}

TEST_CASE("With transactions an output's latency is taken at its commit, and an abort drops it",
          "[pipeline][latency]") {
  EngineProbe probe;
  probe.HoldOutputLatencyUntilCommit();
  const auto& segments = probe.stats().output_latency[static_cast<int>(OutputKind::kSegments)];
  const int64_t origin_ms = WallMs() - 1000;
  EngineProbe::OnOutputDelivered(&probe, OutputLatencyTag(OutputKind::kSegments, origin_ms));
  EngineProbe::OnOutputDelivered(&probe, OutputLatencyTag(OutputKind::kSegments, origin_ms));
  CHECK(Count(segments) == 0);  // acknowledged, not yet visible to read_committed readers
  probe.OutputsCommitted();
  CHECK(Count(segments) == 2);
  CHECK(CountAtMost(segments, 0.75) == 0);  // at least the second since the input
  EngineProbe::OnOutputDelivered(&probe, OutputLatencyTag(OutputKind::kSegments, origin_ms));
  probe.OutputsAborted();
  probe.OutputsCommitted();
  CHECK(Count(segments) == 2);
}

TEST_CASE(
    "Each output's latency is measured from its input's broker timestamp to its acknowledgement",
    "[pipeline][integration][latency]") {
  testing::ScratchDir dir;
  REQUIRE_OK_AND_ASSIGN(auto cluster, kafka::EmbeddedCluster::Create({}));
  config::EngineConfig cfg;
  cfg.state_dir = dir.path().string();
  cfg.inputs = {{"crm.interactions", 4}};
  cfg.kafka.properties["bootstrap.servers"] = cluster->bootstrap_servers();
  cfg.commit_interval_ms = 200;
  for (const auto& t : AllTopics(cfg)) REQUIRE_OK(cluster->CreateTopic(t.name, t.partitions));

  generator::WorldOptions world;
  world.customers = 500;
  REQUIRE_OK_AND_ASSIGN(auto gen, generator::WorldGenerator::Create(world));
  REQUIRE_OK_AND_ASSIGN(auto producer, kafka::Producer::Create(MakeClientConfig(cfg.kafka)));
  const auto produced_from = Clock::now();
  std::string key, value;
  constexpr int kRecords = 20000;
  for (int i = 0; i < kRecords; ++i) {
    gen->Next(&key, &value);
    REQUIRE_OK(producer->Produce("crm.interactions", kafka::kPartitionUnassigned, key, value));
    if (i % 1024 == 0) producer->Poll();
  }
  REQUIRE_OK(producer->Flush(std::chrono::seconds(60)));
  const auto produced_by = Clock::now();
  // The input ages on the broker: every output comes at least this late.
  constexpr double kAgedSeconds = 3.0;
  std::this_thread::sleep_until(produced_by + std::chrono::duration<double>(kAgedSeconds));

  REQUIRE_OK_AND_ASSIGN(auto engine, StreamEngine::Create(cfg, pipeline::PipelineSpec{}));
  std::atomic<bool> stop{false};
  RunOptions options;
  options.until_caught_up = true;
  REQUIRE_OK(engine->Run(stop, options));
  const double elapsed = std::chrono::duration<double>(Clock::now() - produced_from).count();

  const EngineStats& s = engine->stats();
  REQUIRE(static_cast<int64_t>(s.received.load()) == kRecords);
  uint64_t measured = 0;
  for (int k = 0; k < schema::kOutputKindCount; ++k) {
    const DurationHistogram& h = s.output_latency[k];
    INFO(schema::kOutputKindNames[k]);
    // Every output handed to the producer was acknowledged (the run ended
    // with a final checkpoint) and measured once.
    CHECK(Count(h) == s.outputs[k].load());
    // None sooner than its input had waited on the broker (the bucket
    // bounds below 3 s end at 2.5 s).
    CHECK(CountAtMost(h, 2.5) == 0);
    // None longer than the whole test.
    if (Count(h) > 0) CHECK(h.sum_seconds() / static_cast<double>(Count(h)) <= elapsed);
    measured += Count(h);
  }
  CHECK(Count(s.output_latency[static_cast<int>(schema::OutputKind::kCustomerScores)]) > 0);
  CHECK(measured > 0);
  CHECK(measured <= s.delivered.load());
}

TEST_CASE("customer_scores_every batch publishes customer-scores before any commit",
          "[pipeline][integration][latency]") {
  // A commit interval of ten minutes: no commit happens during the test, so
  // customer-scores records that reach the broker left with their batch.
  // The default cadence, run beside it, publishes none until a commit.
  using Cadence = pipeline::ProcessorOptions::ScoresCadence;
  testing::ScratchDir scratch;
  const EngineRun batch{(scratch.path() / "batch").string(), "scores-batch", "sb."};
  const EngineRun commit{(scratch.path() / "commit").string(), "scores-commit", "sc."};
  const std::array<EngineRun, 2> runs{batch, commit};
  EngineFixture fx(runs);
  constexpr int kRecords = 3000;
  fx.Produce(kRecords);
  for (const auto& [run, cadence] :
       {std::pair{batch, Cadence::kBatch}, std::pair{commit, Cadence::kCommit}}) {
    INFO(run.group);
    config::EngineConfig cfg = EngineConfigFor(fx.bootstrap, run);
    cfg.guarantee = config::Guarantee::kAtLeastOnce;
    cfg.commit_interval_ms = 600000;
    pipeline::PipelineSpec spec;
    spec.processor.customer_scores_cadence = cadence;
    BackgroundEngine engine(cfg, false, spec);
    const EngineStats& s = engine.stats();
    const auto scores = static_cast<size_t>(OutputKind::kCustomerScores);
    const auto deadline = Clock::now() + std::chrono::seconds(120);
    auto done = [&] {
      // Every record processed and, for batch, its scores acknowledged.
      return s.received.load() == kRecords && s.batches.load() > 0 &&
             (cadence == Cadence::kCommit ||
              (s.outputs[scores].load() > 0 && Count(s.output_latency[scores]) > 0));
    };
    while (!done() && !engine.finished() && Clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    REQUIRE(done());
    // Let the loop finish the batch it is in (FinishTaskBatch).
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    CHECK(s.commits.load() == 0);
    CHECK(s.checkpoints.load() == 0);
    if (cadence == Cadence::kBatch) {
      // One record per customer and batch at most: never more than the
      // accepted events, at least one per customer seen.
      CHECK(s.outputs[scores].load() > 0);
      CHECK(s.outputs[scores].load() <= s.accepted.load());
      CHECK(Count(s.output_latency[scores]) > 0);  // acknowledged by the broker
    } else {
      CHECK(s.outputs[scores].load() == 0);
    }
    REQUIRE_OK(engine.Stop());
  }
}

}  // namespace
}  // namespace crmstream::runtime
