#include "support/test_support.h"

#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <cstdlib>
#include <random>
#include <set>
#include <string>
#include <string_view>

namespace crmstream::testing {

std::optional<std::filesystem::path> DataDir() {
  if (const char* env = std::getenv("CRMSTREAM_DATA_DIR"); env && *env) {
    if (std::filesystem::is_directory(env)) return std::filesystem::path(env);
    return std::nullopt;
  }
  std::filesystem::path def = CRMSTREAM_DEFAULT_DATA_DIR;
  if (std::filesystem::is_directory(def)) return std::filesystem::canonical(def);
  return std::nullopt;
}

std::filesystem::path SourceDir() { return CRMSTREAM_SOURCE_DIR_STR; }

ScratchDir::ScratchDir() {
  static std::atomic<int> counter{0};
  std::random_device rd;
  path_ = std::filesystem::temp_directory_path() /
          ("crmstream-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++) + "-" +
           std::to_string(rd()));
  std::filesystem::create_directories(path_);
}

ScratchDir::~ScratchDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

namespace {
// By name: a test case with sections runs once per section, and counts once.
std::set<std::string>& Skipped() {
  static std::set<std::string> skipped;
  return skipped;
}
}  // namespace

void MarkSkipped() { Skipped().insert(Catch::getResultCapture().getCurrentTestName()); }

int SkippedTestCases() { return static_cast<int>(Skipped().size()); }

bool Required(const char* name) {
  const char* value = std::getenv(name);
  return value != nullptr && std::string_view(value) == "1";
}

}  // namespace crmstream::testing
