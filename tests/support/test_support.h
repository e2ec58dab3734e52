// Small helpers shared by the test suites: where the public data sets are,
// scratch directories that clean up after themselves, and skips that ctest
// reports as skipped.
#pragma once

#include <filesystem>
#include <optional>
#include <string>

namespace crmstream::testing {

// The folder of public data sets: $CRMSTREAM_DATA_DIR, else ../shared/data
// beside the checkout. nullopt when absent (a user's clone): tests that need
// it call SKIP_WITHOUT_DATA().
std::optional<std::filesystem::path> DataDir();

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

// Catch2 2.x has no SKIP. A skipped test case records it here and returns;
// the test binary (support/catch_main.cpp) then exits with kSkipExitStatus
// when every test case it ran was skipped and none failed, and ctest (told
// SKIP_RETURN_CODE, cmake/CrmstreamModule.cmake) reports the test as skipped
// instead of passed.
inline constexpr int kSkipExitStatus = 77;

void MarkSkipped();
int SkippedTestCases();
// True when the environment variable `name` is "1" (CI: what it always
// provides must not be skipped).
bool Required(const char* name);

}  // namespace crmstream::testing

// Ends the running test case as skipped, with the reason in its output.
#define CRMSTREAM_SKIP(reason)                \
  do {                                        \
    ::crmstream::testing::MarkSkipped();      \
    WARN("SKIPPED: " << reason); /* NOLINT */ \
    return;                                   \
  } while (false)

// A skip, unless the environment variable `required_by` is 1, where the
// missing thing fails the test instead.
#define CRMSTREAM_SKIP_UNLESS_REQUIRED(required_by, reason)                                        \
  do {                                                                                             \
    if (::crmstream::testing::Required(required_by)) FAIL(reason << " (" << required_by << "=1)"); \
    CRMSTREAM_SKIP(reason);                                                                        \
  } while (false)

// Catch2 2.x has no SKIP: a test without the data set reports the reason and
// passes with a warning, so a user's clone runs green while CI (which always
// has ../shared) runs the real check.
#define SKIP_WITHOUT_DATA(dir_var)                                              \
  auto dir_var##_opt = ::crmstream::testing::DataDir();                         \
  if (!dir_var##_opt) {                                                         \
    WARN(                                                                       \
        "SKIPPED: public data sets not found (set CRMSTREAM_DATA_DIR or place " \
        "../shared/data beside the checkout)");                                 \
    return;                                                                     \
  }                                                                             \
  const std::filesystem::path dir_var = *dir_var##_opt
