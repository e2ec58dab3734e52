// The process's own memory, as the kernel counts it (Linux /proc).
#pragma once

#include <cstdint>

namespace crmstream {

// The resident set now, in bytes; -1 where /proc is not readable.
int64_t ResidentBytes();
// The highest resident set of this process image so far (VmHWM), in bytes;
// -1 where /proc is not readable. Unlike getrusage's ru_maxrss of a child,
// it starts afresh at exec, so it never counts the memory of the process
// that spawned it.
int64_t PeakResidentBytes();

}  // namespace crmstream
