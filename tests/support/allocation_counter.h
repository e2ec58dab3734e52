// Counts heap allocations of the test binary between Start and Stop, for
// tests that check a hot path allocates nothing, and the bytes live on the
// heap, for tests that bound memory. Linking crmstream_allocation_counter
// replaces the global operator new and delete (every non-aligned form, over
// malloc and free, so allocation and release always pair up for the
// sanitizers); outside a measured region no allocation is counted, so
// Catch2's own allocations do not count.
//
// Thread-safety: the counters are atomics; allocations of every thread in
// the region count.
#pragma once

namespace crmstream::testing {

void StartCountingAllocations();
// Stops counting and returns the allocations since the last Start.
long StopCountingAllocations();

// Bytes allocated through operator new (by any thread, including prebuilt
// libraries such as RocksDB) and not yet deleted, as malloc_usable_size
// reports them; compare two readings.
long LiveHeapBytes();

}  // namespace crmstream::testing
