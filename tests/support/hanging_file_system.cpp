#include "support/hanging_file_system.h"

#include <chrono>
#include <memory>
#include <string>
#include <utility>

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
    log_hanging_ = false;
  }
  released_.notify_all();
}

// A write-ahead log file whose appends meet the file system's log fault.
class HangingFileSystem::LogFile final : public rocksdb::FSWritableFileOwnerWrapper {
 public:
  LogFile(std::unique_ptr<rocksdb::FSWritableFile> file, HangingFileSystem* fs)
      : FSWritableFileOwnerWrapper(std::move(file)), fs_(fs) {}
  rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& options,
                           rocksdb::IODebugContext* dbg) override {
    rocksdb::IOStatus s = fs_->LogAppendFault();
    return s.ok() ? FSWritableFileOwnerWrapper::Append(data, options, dbg) : s;
  }
  rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& options,
                           const rocksdb::DataVerificationInfo& verification,
                           rocksdb::IODebugContext* dbg) override {
    rocksdb::IOStatus s = fs_->LogAppendFault();
    return s.ok() ? FSWritableFileOwnerWrapper::Append(data, options, verification, dbg) : s;
  }

 private:
  HangingFileSystem* fs_;
};

void HangingFileSystem::HangLogWrites() {
  std::lock_guard lock(mutex_);
  log_hanging_ = true;
}

void HangingFileSystem::FailLogWrites() {
  {
    std::lock_guard lock(mutex_);
    log_hanging_ = false;
    log_failing_ = true;
  }
  released_.notify_all();
}

rocksdb::IOStatus HangingFileSystem::LogAppendFault() {
  std::unique_lock lock(mutex_);
  if (log_hanging_) {
    blocked_log_writes_.fetch_add(1);
    // Bounded, so that a test that forgets FailLogWrites() still ends.
    released_.wait_for(lock, std::chrono::minutes(5), [this] { return !log_hanging_; });
  }
  if (log_failing_) return rocksdb::IOStatus::IOError("injected write-ahead log failure");
  return rocksdb::IOStatus::OK();
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
  rocksdb::IOStatus s = FileSystemWrapper::NewWritableFile(fname, options, result, dbg);
  if (s.ok() && fname.ends_with(".log"))
    *result = std::make_unique<LogFile>(std::move(*result), this);
  return s;
}

std::shared_ptr<rocksdb::Env> EnvOver(const std::shared_ptr<rocksdb::FileSystem>& fs) {
  return std::shared_ptr<rocksdb::Env>(rocksdb::NewCompositeEnv(fs).release());
}

}  // namespace crmstream::testing
