#include "generator_runner.h"

#include <chrono>
#include <string>
#include <thread>

namespace crmstream::cli {

Result<uint64_t> RunGenerator(generator::WorldGenerator* world, const GeneratorPace& pace,
                              const RecordWriter& write, const std::atomic<bool>& stop,
                              std::atomic<uint64_t>* produced) {
  using Clock = std::chrono::steady_clock;
  std::string key, value;
  key.reserve(64);
  value.reserve(512);
  const auto start = Clock::now();
  uint64_t n = 0;
  while (!stop.load(std::memory_order_relaxed)) {
    if (pace.max_events && n >= pace.max_events) break;
    // The clock is read every 16 events, so that at a few thousand events/s
    // the input comes every few milliseconds, not in bursts of a tenth of a
    // second (a burst's last record waits for the next one's first: latency
    // the engine would be charged with); sleeps are at most 1/8 s.
    if ((n & 15) == 0) {
      const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
      if (pace.max_seconds > 0 && elapsed >= pace.max_seconds) break;
      if (pace.events_per_second > 0) {
        const double due = static_cast<double>(n) / pace.events_per_second;
        if (due > elapsed) {
          std::this_thread::sleep_for(
              std::chrono::duration<double>(std::min(due - elapsed, 0.125)));
          continue;
        }
      }
    }
    const int64_t ts = world->Next(&key, &value);
    CRM_RETURN_NOT_OK(write(key, value));
    ++n;
    if (produced) produced->fetch_add(1, std::memory_order_relaxed);
    if (pace.until_event_ms != 0 && ts >= pace.until_event_ms) break;
  }
  return n;
}

}  // namespace crmstream::cli
