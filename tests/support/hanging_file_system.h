// A RocksDB file system for tests: the default one, except that while
// "hanging" the creation of table files (*.sst) blocks, as on a disk that
// stopped answering. Flushes then never finish, memtables stay full, and
// the state store's writes stall: what a checkpoint faces on a hung disk.
// Appends to the write-ahead log (*.log) can be made to block, then fail:
// a store write that waits on the disk and ends in an I/O error.
//
// Thread-safety: Hang()/Release()/HangLogWrites()/FailLogWrites() from any
// thread; RocksDB's threads block.
#pragma once

#include <rocksdb/env.h>
#include <rocksdb/file_system.h>

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>

namespace crmstream::testing {

class HangingFileSystem final : public rocksdb::FileSystemWrapper {
 public:
  HangingFileSystem();
  const char* Name() const override { return "HangingFileSystem"; }

  // From now on, creating a table file blocks until Release().
  void Hang();
  // Ends every hang (table files and log appends).
  void Release();
  // Table-file creations blocked so far.
  int blocked() const { return blocked_.load(); }

  // From now on, an append to a write-ahead log blocks until
  // FailLogWrites(), which fails it and every later one with an I/O error
  // (or Release(), which lets it through).
  void HangLogWrites();
  void FailLogWrites();
  // Log appends blocked so far.
  int blocked_log_writes() const { return blocked_log_writes_.load(); }

  rocksdb::IOStatus NewWritableFile(const std::string& fname, const rocksdb::FileOptions& options,
                                    std::unique_ptr<rocksdb::FSWritableFile>* result,
                                    rocksdb::IODebugContext* dbg) override;

 private:
  class LogFile;
  // What a log append meets: OK, or (after blocking) the injected failure.
  rocksdb::IOStatus LogAppendFault();

  std::mutex mutex_;
  std::condition_variable released_;
  bool hanging_ = false;
  bool log_hanging_ = false;
  bool log_failing_ = false;
  std::atomic<int> blocked_{0};
  std::atomic<int> blocked_log_writes_{0};
};

// An Env over `fs` for StateStoreOptions::env.
std::shared_ptr<rocksdb::Env> EnvOver(const std::shared_ptr<rocksdb::FileSystem>& fs);

}  // namespace crmstream::testing
