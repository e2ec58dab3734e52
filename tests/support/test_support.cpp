#include "support/test_support.h"

#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <random>

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

}  // namespace crmstream::testing
