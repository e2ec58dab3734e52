#include "support/hanging_file_system.h"

#include <chrono>

namespace crmstream::testing {

HangingFileSystem::HangingFileSystem() : FileSystemWrapper(rocksdb::FileSystem::Default()) {}

void HangingFileSystem::Hang() {
  std::lock_guard lock(mutex_);
  hanging_ = true;
}

void HangingFileSystem::Release() {
  {
    std::lock_guard lock(mutex_);
    hanging_ = false;
  }
  released_.notify_all();
}

rocksdb::IOStatus HangingFileSystem::NewWritableFile(
    const std::string& fname, const rocksdb::FileOptions& options,
    std::unique_ptr<rocksdb::FSWritableFile>* result, rocksdb::IODebugContext* dbg) {
  if (fname.ends_with(".sst")) {
    std::unique_lock lock(mutex_);
    if (hanging_) {
      blocked_.fetch_add(1);
      // Bounded, so that a test that forgets Release() still ends.
      released_.wait_for(lock, std::chrono::minutes(5), [this] { return !hanging_; });
    }
  }
  return FileSystemWrapper::NewWritableFile(fname, options, result, dbg);
}

std::shared_ptr<rocksdb::Env> EnvOver(const std::shared_ptr<rocksdb::FileSystem>& fs) {
  return std::shared_ptr<rocksdb::Env>(rocksdb::NewCompositeEnv(fs).release());
}

}  // namespace crmstream::testing
