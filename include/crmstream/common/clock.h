// The clocks the engine reads, in milliseconds, and the integer arithmetic
// of time slots. Thread-safe (pure functions of the system clocks).
#pragma once

#include <chrono>
#include <cstdint>

namespace crmstream {

// Unix time, ms (the wall clock: record timestamps, "as of" fields).
inline int64_t WallMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// A monotonic clock, ms (durations, deadlines, heartbeats; not a date).
inline int64_t SteadyMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Floor division (rounds towards negative infinity): the slot of a time in
// slots of `b` (b > 0), also for times before the epoch.
constexpr int64_t FloorDiv(int64_t a, int64_t b) {
  int64_t q = a / b;
  if (a % b != 0 && (a < 0) != (b < 0)) --q;
  return q;
}

}  // namespace crmstream
