// Counts heap allocations of the test binary between Start and Stop, for
// tests that check a hot path allocates nothing. Linking
// crmstream_allocation_counter replaces the global operator new and delete
// (every non-aligned form, over malloc and free, so allocation and release
// always pair up for the sanitizers); outside a measured region nothing is
// counted, so Catch2's own allocations do not count.
//
// Thread-safety: the counters are atomics; allocations of every thread in
// the region count.
#pragma once

namespace crmstream::testing {

void StartCountingAllocations();
// Stops counting and returns the allocations since the last Start.
long StopCountingAllocations();

}  // namespace crmstream::testing
