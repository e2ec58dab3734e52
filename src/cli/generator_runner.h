// Drives a WorldGenerator at a target rate into a record writer (a Kafka
// topic or a file). Shared by `generate` and the main job (`run --demo`).
// Runs on the calling thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string_view>

#include "crmstream/common/status.h"
#include "crmstream/generator/world_generator.h"

namespace crmstream::cli {

struct GeneratorPace {
  double events_per_second = 0;  // 0: as fast as possible
  uint64_t max_events = 0;       // 0: unlimited
  double max_seconds = 0;        // 0: unlimited (wall time)
  // Stops after the first record whose event time is at or past this
  // (epoch ms); 0: no limit. With events_per_second 0: a backfill of
  // simulated history at full speed.
  int64_t until_event_ms = 0;
};

using RecordWriter = std::function<Status(std::string_view key, std::string_view value)>;

// Returns the number of records written, or the writer's first error.
// `produced`, when given, is incremented per record written (so several
// runs can share one counter).
Result<uint64_t> RunGenerator(generator::WorldGenerator* world, const GeneratorPace& pace,
                              const RecordWriter& write, const std::atomic<bool>& stop,
                              std::atomic<uint64_t>* produced = nullptr);

}  // namespace crmstream::cli
