// Small helpers shared by the test suites: where the public data sets are,
// scratch directories that clean up after themselves, child processes, and
// skips that ctest reports as skipped.
#pragma once

#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace crmstream::testing {

// The folder of public data sets: $CRMSTREAM_DATA_DIR, else ../shared/data
// beside the checkout. nullopt when absent (a user's clone): tests that need
// it call SKIP_WITHOUT_DATA(). A CRMSTREAM_DATA_DIR that names no directory
// is a mistake, not an absence: DataDirError() says so and the test fails.
std::optional<std::filesystem::path> DataDir();
std::string DataDirError();  // "" unless CRMSTREAM_DATA_DIR is set to a non-directory

// The repository root (for pipelines/, config/ and docs/ files).
std::filesystem::path SourceDir();

// A fresh directory under the system temp dir, removed on destruction.
class ScratchDir {
 public:
  ScratchDir();
  ~ScratchDir();
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

std::string ReadWholeFile(const std::filesystem::path& path);  // "" when unreadable

// --- Child processes -------------------------------------------------------

struct ChildExit {
  bool started = false;
  bool timed_out = false;      // still running at the deadline: killed with SIGKILL
  int exit_status = -1;        // when it exited by itself
  int signal = 0;              // when a signal ended it
  long peak_resident_kb = -1;  // its peak resident set, when it ended by itself
  bool exited(int status) const {
    return started && !timed_out && signal == 0 && exit_status == status;
  }
};

// Runs argv[0] (a path) with argv, this process's environment plus `env`
// ("NAME=value", overriding), stdout and stderr appended to `log`. Waits at
// most `timeout`, then kills it with SIGKILL.
ChildExit RunChild(const std::vector<std::string>& argv, const std::vector<std::string>& env,
                   const std::filesystem::path& log, std::chrono::seconds timeout);

// A child started as RunChild starts it, left running: the test signals it
// (e.g. SIGSTOP, SIGCONT, SIGTERM) and waits for it. Killed with SIGKILL on
// destruction if still running.
class Child {
 public:
  Child(const std::vector<std::string>& argv, const std::vector<std::string>& env,
        const std::filesystem::path& log);
  ~Child();
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  bool started() const { return pid_ > 0; }
  void Signal(int signal) const;
  // Waits at most `timeout`, then kills it with SIGKILL.
  ChildExit Wait(std::chrono::seconds timeout);

 private:
  int pid_ = -1;
  bool reaped_ = false;
};

// --- Skips -------------------------------------------------------------------
//
// Catch2 2.x has no SKIP. A skipped test case records it here and returns;
// the test binary (support/catch_main.cpp) then exits with kSkipExitStatus
// when every test case it ran was skipped and none failed, and ctest, told
// SKIP_RETURN_CODE kSkipExitStatus (cmake/CrmstreamModule.cmake), reports
// the test as skipped instead of passed. CI sets CRMSTREAM_REQUIRE_* so that
// what it always has (the data sets, tmpfs mounts) is never skipped.

inline constexpr int kSkipExitStatus = 77;

void MarkSkipped();
int SkippedTestCases();
// True when the environment variable `name` is "1".
bool Required(const char* name);

// Re-runs the current test case in a child process inside a new user and
// mount namespace (`unshare --user --map-root-user --mount`), where an
// unprivileged user may mount a tmpfs. kPassed / kFailed / kSkipped: the
// child's verdict (its output is in `log`); kUnavailable: no user namespaces
// here, or this process is that child already.
enum class NamespaceRun { kPassed, kFailed, kSkipped, kUnavailable };
NamespaceRun RerunInUserNamespace(std::string* log);
bool InUserNamespaceRerun();

}  // namespace crmstream::testing

// Ends the running test case as skipped, with the reason in its output.
#define CRMSTREAM_SKIP(reason)                \
  do {                                        \
    ::crmstream::testing::MarkSkipped();      \
    WARN("SKIPPED: " << reason); /* NOLINT */ \
    return;                                   \
  } while (false)

// A skip unless the environment variable `required_by` is 1 (CI), where
// the missing thing fails the test instead.
#define CRMSTREAM_SKIP_UNLESS_REQUIRED(required_by, reason)                                        \
  do {                                                                                             \
    if (::crmstream::testing::Required(required_by)) FAIL(reason << " (" << required_by << "=1)"); \
    CRMSTREAM_SKIP(reason);                                                                        \
  } while (false)

// The data sets: a user's clone without them skips; CRMSTREAM_REQUIRE_DATA=1
// (CI) fails; a CRMSTREAM_DATA_DIR that names no directory always fails.
#define SKIP_WITHOUT_DATA(dir_var)                                                          \
  auto dir_var##_opt = ::crmstream::testing::DataDir();                                     \
  if (!dir_var##_opt) {                                                                     \
    if (const std::string error = ::crmstream::testing::DataDirError(); !error.empty()) {   \
      FAIL(error);                                                                          \
    }                                                                                       \
    CRMSTREAM_SKIP_UNLESS_REQUIRED("CRMSTREAM_REQUIRE_DATA",                                \
                                   "public data sets not found (set CRMSTREAM_DATA_DIR or " \
                                   "place ../shared/data beside the checkout)");            \
  }                                                                                         \
  const std::filesystem::path dir_var = *dir_var##_opt
