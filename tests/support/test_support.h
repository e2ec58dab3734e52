// Small helpers shared by the test suites: where the public data sets are,
// and scratch directories that clean up after themselves.
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

}  // namespace crmstream::testing

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
