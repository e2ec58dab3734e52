// Crash points end the process at the armed point's nth visit, with their
// own exit status, and at no other point or visit; fault points fail their
// nth visit and nothing else.
#include "crmstream/common/crash_point.h"

#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <string>

namespace crmstream::crash_point {
namespace {

struct Outcome {
  int exit_status = -1;
  int visits_survived = 0;
};

// In a forked child (Reached reads the variable at its first call, which
// this process never makes): arms `spec`, visits `script` (one point name per
// visit), reports each visit survived through a pipe, then exits 0.
Outcome RunInChild(const char* spec, const std::vector<std::string_view>& script) {
  int pipe_fds[2];
  REQUIRE(pipe(pipe_fds) == 0);
  const pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    close(pipe_fds[0]);
    setenv(kEnvironmentVariable, spec, 1);
    for (std::string_view name : script) {
      Reached(name);
      const char survived = 's';
      if (write(pipe_fds[1], &survived, 1) != 1) _exit(3);
    }
    _exit(0);
  }
  close(pipe_fds[1]);
  Outcome out;
  char c;
  while (read(pipe_fds[0], &c, 1) == 1) ++out.visits_survived;
  close(pipe_fds[0]);
  int status = 0;
  REQUIRE(waitpid(child, &status, 0) == child);
  REQUIRE(WIFEXITED(status));
  out.exit_status = WEXITSTATUS(status);
  return out;
}

TEST_CASE("A crash point ends the process at the nth visit of its name only", "[common]") {
  // The test process itself is not armed: its points cost nothing and do nothing.
  CHECK_FALSE(internal::g_armed);
  CRMSTREAM_CRASH_POINT(kBeforeFlush);

  const std::vector<std::string_view> script{kBeforeFlush, kAfterWrite, kBeforeFlush, kAfterWrite,
                                             kBeforeFlush};
  Outcome third = RunInChild("checkpoint.before_flush:3", script);
  CHECK(third.exit_status == kCrashPointExitStatus);
  CHECK(third.visits_survived == 4);  // died at the fifth visit, the third of the point

  Outcome first = RunInChild("checkpoint.after_write", script);
  CHECK(first.exit_status == kCrashPointExitStatus);
  CHECK(first.visits_survived == 1);

  Outcome never = RunInChild("checkpoint.after_write:3", script);  // visited twice only
  CHECK(never.exit_status == 0);
  CHECK(never.visits_survived == 5);
}

TEST_CASE("A malformed crash point setting stops the process instead of passing unseen",
          "[common]") {
  for (const char* spec : {"checkpoint.before_flush:0", "checkpoint.before_flush:x", ":2"}) {
    INFO(spec);
    Outcome out = RunInChild(spec, {kAfterFlush});
    CHECK(out.exit_status == 2);
    CHECK(out.visits_survived == 0);
  }
}

// A fault point's visits (at most 9) in a forked child armed with `spec`:
// the child's exit status holds the numbers of the visits that failed, one
// decimal digit each (0: none).
int FailingVisitInChild(const char* spec, int visits) {
  const pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    setenv(kEnvironmentVariable, spec, 1);
    int failed = 0;
    for (int i = 1; i <= visits; ++i) {
      if (Fails(kTransactionAbortable)) failed = failed * 10 + i;  // the failed visits' digits
    }
    _exit(failed);
  }
  int status = 0;
  REQUIRE(waitpid(child, &status, 0) == child);
  REQUIRE(WIFEXITED(status));
  return WEXITSTATUS(status);
}

TEST_CASE("A fault point fails its nth visit once and lets the process go on", "[common]") {
  CHECK_FALSE(CRMSTREAM_FAULT_POINT(kTransactionAbortable));
  CHECK(FailingVisitInChild("transaction.abortable:2", 4) == 2);
  CHECK(FailingVisitInChild("transaction.abortable", 4) == 1);
  CHECK(FailingVisitInChild("transaction.abortable:5", 4) == 0);
  CHECK(FailingVisitInChild("checkpoint.before_flush", 4) == 0);
}

TEST_CASE("A fault point armed for every nth visit fails each multiple of n", "[common]") {
  CHECK(FailingVisitInChild("transaction.abortable:every:3", 7) == 36);
  CHECK(FailingVisitInChild("transaction.abortable:every:1", 3) == 123);
  CHECK(FailingVisitInChild("transaction.abortable:every:4", 3) == 0);
  // "every" is no point name of its own, and needs a count.
  CHECK(FailingVisitInChild("transaction.abortable:every", 3) == 2);
  CHECK(FailingVisitInChild("transaction.abortable:every:0", 3) == 2);
}

}  // namespace
}  // namespace crmstream::crash_point
