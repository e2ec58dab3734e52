// Named crash points for recovery tests, in the manner of RocksDB's sync
// points and DuckDB's checkpoint aborts: the process ends at a chosen place
// in the code as `kill -9` would end it (no destructor, no flush, no atexit
// handler), so a test can crash the engine exactly there and check what a
// restart makes of it.
//
// A point is armed only by the environment: CRMSTREAM_CRASH_AT=<name>[:<nth>]
// ends the process the nth time (default 1) the point named <name> is
// reached, after one line on stderr, with exit status kCrashPointExitStatus,
// so that a test can tell its crash from any other. Unarmed, a point costs
// the load of one bool set before main and a predictable branch; builds
// with CRMSTREAM_NO_CRASH_POINTS defined compile them out.
//
// Thread-safety: points may be reached from any thread.
#pragma once

#include <array>
#include <string_view>

namespace crmstream::crash_point {

inline constexpr int kCrashPointExitStatus = 86;
inline constexpr const char* kEnvironmentVariable = "CRMSTREAM_CRASH_AT";

// The engine's points, in the order one checkpoint reaches them
// (runtime/checkpointer.cpp: outputs flushed to the brokers, then the state
// written).
inline constexpr std::string_view kBeforeFlush = "checkpoint.before_flush";
inline constexpr std::string_view kAfterFlush = "checkpoint.after_flush";
inline constexpr std::string_view kBeforeWrite = "checkpoint.before_write";
inline constexpr std::string_view kAfterWrite = "checkpoint.after_write";
inline constexpr std::array<std::string_view, 4> kCheckpointPoints{kBeforeFlush, kAfterFlush,
                                                                   kBeforeWrite, kAfterWrite};

// The transactional mode's points (runtime/transactional_delivery.cpp): the
// transaction holding outputs and input offsets commits, then the staged
// state is written (the checkpoint points before_write/after_write).
inline constexpr std::string_view kBeforeTransactionCommit = "transaction.before_commit";
inline constexpr std::string_view kAfterTransactionCommit = "transaction.after_commit";
inline constexpr std::array<std::string_view, 4> kTransactionPoints{
    kBeforeTransactionCommit, kAfterTransactionCommit, kBeforeWrite, kAfterWrite};

// A changelog restore (runtime/changelog.cpp) has written every change
// (ingested, or without the WAL and not yet flushed) and not cleared its
// restoring mark.
inline constexpr std::string_view kRestoreBeforeEnd = "restore.before_end";
// A full restore has written a span's table files and not ingested them.
inline constexpr std::string_view kRestoreBeforeIngest = "restore.before_ingest";

// Fault points: armed the same way, the nth visit does not end the process
// but makes the code there fail as the named fault would (Fails() returns
// true once). A commit whose transaction is refused as abortable (as a
// group generation moved on by a rebalance makes it).
inline constexpr std::string_view kTransactionAbortable = "transaction.abortable";
// A stage's produce refused because the transaction failed under the
// producer (librdkafka's abortable state: every produce gets _STATE).
inline constexpr std::string_view kTransactionProduceRefused = "transaction.produce_refused";

namespace internal {
// True when CRMSTREAM_CRASH_AT was set at start-up.
extern const bool g_armed;
}  // namespace internal

// Counts a visit of `name`; ends the process at the armed point's nth.
void Reached(std::string_view name);
// Counts a visit of the fault point `name`; true at the armed point's nth.
bool Fails(std::string_view name);

}  // namespace crmstream::crash_point

#ifdef CRMSTREAM_NO_CRASH_POINTS
#define CRMSTREAM_CRASH_POINT(name) \
  do {                              \
  } while (0)
#define CRMSTREAM_FAULT_POINT(name) false
#else
#define CRMSTREAM_FAULT_POINT(name) \
  (::crmstream::crash_point::internal::g_armed && ::crmstream::crash_point::Fails(name))
#define CRMSTREAM_CRASH_POINT(name)                                 \
  do {                                                              \
    if (::crmstream::crash_point::internal::g_armed) [[unlikely]] { \
      ::crmstream::crash_point::Reached(name);                      \
    }                                                               \
  } while (0)
#endif
