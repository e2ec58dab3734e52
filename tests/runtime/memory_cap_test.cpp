// The engine holds its memory cap (state.memory_cap_mb) as a whole process:
// the engine binary runs as a child over more customers than its cache
// holds, and reports its peak resident set (the kernel's VmHWM) as it ends.

#include <catch2/catch.hpp>
#include <regex>
#include <string>

#include "engine_runs.h"

namespace crmstream::runtime {
namespace {

TEST_CASE(
    "The engine's peak resident set stays under state.memory_cap_mb with more customers "
    "than its cache holds",
    "[runtime][integration][state]") {
#if defined(__SANITIZE_ADDRESS__)
  CRMSTREAM_SKIP("a sanitizer build's shadow memory and quarantine lie outside any cap");
#endif
  constexpr int kCapMb = 104;
  constexpr int kCustomers = 30'000;
  testing::ScratchDir scratch;
  EngineRun run;
  run.state_dir = (scratch.path() / "state").string();
  run.group = "memory-cap";
  run.output_prefix = "memory-cap";
  run.guarantee = config::Guarantee::kAtLeastOnce;
  run.input_topic = "memory-cap.input";
  EngineFixture fx(std::span<const EngineRun>(&run, 1));
  generator::WorldOptions world;
  world.customers = kCustomers;
  REQUIRE_OK_AND_ASSIGN(fx.gen, generator::WorldGenerator::Create(world));
  fx.Produce(60'000);

  config::EngineConfig cfg = EngineConfigFor(fx.bootstrap, run);
  cfg.state.memory_cap_mb = kCapMb;
  cfg.commit_interval_ms = 500;
  // One worker thread: with two, the peak under this cap varied from 90 to
  // 102 MiB (README, Benchmarks), an open problem of the plan.
  cfg.worker_threads = 1;
  const auto file = scratch.path() / "engine.yaml";
  WriteEngineYaml(cfg, file);
  const BinaryRun done = RunEngineBinaryChecked(file, "", scratch.path() / "engine.log");

  // The run only means something if the customers did not fit: the plan's
  // cache per partition, from the engine's log, against the customers the
  // generator spread over the partitions.
  std::smatch m;
  REQUIRE(std::regex_search(done.log, m, std::regex(R"(\((\d+) customers per partition\))")));
  const long cached_per_partition = std::stol(m[1].str());
  CHECK(cached_per_partition * run.input_partitions < kCustomers / 2);

  // The engine's own peak (its VmHWM, reported on its last line): the
  // kernel's figure for a spawned child (wait4's ru_maxrss) also counts the
  // memory of this test process that spawned it, up to its exec.
  REQUIRE(std::regex_search(done.log, m, std::regex(R"(peak resident set (\d+) KiB)")));
  const double peak_mb = std::stod(m[1].str()) / 1024.0;
  WARN("peak resident set " << peak_mb << " MiB under a cap of " << kCapMb << " MiB ("
                            << static_cast<double>(done.exit.peak_resident_kb) / 1024.0
                            << " MiB with the spawning process's); " << cached_per_partition
                            << " customers cached per partition");
  CHECK(peak_mb <= kCapMb);
  CHECK(peak_mb > 16);  // a real figure, not an empty one
  CHECK(peak_mb <= static_cast<double>(done.exit.peak_resident_kb) / 1024.0 + 1);
}

}  // namespace
}  // namespace crmstream::runtime
