// Fixtures for the state module's tests: real feature state to checkpoint,
// byte snapshots of a directory (to prove a refused store was not touched),
// and a small tmpfs for read-only and disk-full cases (as root, or as root
// of a user namespace).
//
// Thread-safety: test code, single-threaded.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "crmstream/features/feature_store.h"
#include "support/test_support.h"

namespace crmstream::state::testing {

// Customer ids "cust-<i>", i in [0, n).
std::string CustomerId(int i);

// A FeatureStore holding `customers` customers, each with a few events of
// every kind spread over `days` days (deterministic in `seed`).
std::unique_ptr<features::FeatureStore> MakeFeatureStore(int customers, int days, uint64_t seed);

// Applies one more purchase to customer i (makes it dirty with new state).
void TouchCustomer(features::FeatureStore* store, int i, int64_t at_ms, double amount);

// Every regular file under `dir` (recursively) with its bytes.
std::map<std::string, std::string> SnapshotFiles(const std::filesystem::path& dir);

std::string ReadFileBytes(const std::filesystem::path& file);
void WriteFileBytes(const std::filesystem::path& file, const std::string& bytes);
// Flips every bit of `count` bytes at `offset` of `file`.
void FlipBytes(const std::filesystem::path& file, size_t offset, size_t count);

// A tmpfs of `bytes` mounted at a fresh directory, unmounted on destruction.
// Mount() returns nullptr when this process may not mount (not root, no
// CAP_SYS_ADMIN): use TMPFS_OR_RERUN below.
class TmpfsMount {
 public:
  static std::unique_ptr<TmpfsMount> Mount(size_t bytes);
  ~TmpfsMount();
  const std::filesystem::path& path() const { return path_; }
  // Remounts read-only (true on success).
  bool RemountReadOnly();

 private:
  explicit TmpfsMount(std::filesystem::path path) : path_(std::move(path)) {}
  std::filesystem::path path_;
};

}  // namespace crmstream::state::testing

// A real tmpfs for the running test case (real ENOSPC and EROFS from the
// kernel, nothing simulated): mounted here when this process may; else the
// test case runs again in a child as root of a user namespace, which any
// user may mount a tmpfs in, and its verdict is this test's. Only where
// neither works (no user namespaces) it skips, and fails when
// CRMSTREAM_REQUIRE_TMPFS=1 (CI).
#define TMPFS_OR_RERUN(mount_var, bytes)                                                     \
  auto mount_var = ::crmstream::state::testing::TmpfsMount::Mount(bytes);                    \
  if (!mount_var) {                                                                          \
    using ::crmstream::testing::NamespaceRun;                                                \
    std::string rerun_log;                                                                   \
    const NamespaceRun rerun = ::crmstream::testing::RerunInUserNamespace(&rerun_log);       \
    if (rerun == NamespaceRun::kPassed) {                                                    \
      SUCCEED("passed as root of a user namespace:\n" << rerun_log);                         \
      return;                                                                                \
    }                                                                                        \
    if (rerun == NamespaceRun::kFailed)                                                      \
      FAIL("failed as root of a user namespace:\n" << rerun_log);                            \
    if (rerun == NamespaceRun::kSkipped) {                                                   \
      CRMSTREAM_SKIP("skipped as root of a user namespace:\n" << rerun_log);                 \
    }                                                                                        \
    CRMSTREAM_SKIP_UNLESS_REQUIRED(                                                          \
        "CRMSTREAM_REQUIRE_TMPFS",                                                           \
        "cannot mount a tmpfs: not root, and no user namespace to be root in (" << rerun_log \
                                                                                << ")");     \
  }
