// Unusable state directories: each gives an error naming the path and the
// cause, and leaves what is there as it was.
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <thread>

#include "crmstream/common/binary_io.h"
#include "crmstream/state/state_store.h"
#include "state/state_test_support.h"
#include "support/require_ok.h"
#include "support/test_support.h"

namespace crmstream::state {
namespace {

namespace fs = std::filesystem;
using testing::CustomerId;

StateStoreOptions OptionsAt(const fs::path& path) {
  StateStoreOptions o;
  o.path = path;
  o.memory_cap_bytes = size_t{16} << 20;
  return o;
}

// A store with `customers` features entries (flushed to an SST) and the
// input offset 1000.
void MakeStore(const fs::path& path, int customers) {
  auto store = StateStore::Open(OptionsAt(path));
  REQUIRE_OK(store);
  auto p = (*store)->Partition("crm.events", 0);
  REQUIRE_OK(p);
  CheckpointBatch batch = (*store)->NewBatch();
  for (int i = 0; i < customers; ++i) {
    batch.PutFeatures(*p, CustomerId(i),
                      SealBlob(BlobKind::kCustomerFeatures, 1, "features of " + CustomerId(i)));
  }
  batch.SetInputOffset(*p, 1000);
  REQUIRE_OK((*store)->Commit(&batch));
  REQUIRE_OK((*store)->Flush());
}

std::string FileStartingWith(const fs::path& dir, std::string_view prefix,
                             std::string_view suffix) {
  for (const auto& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (name.starts_with(prefix) && name.ends_with(suffix)) return name;
  }
  FAIL("no file " << prefix << "*" << suffix << " in " << dir);
  return {};
}

TEST_CASE("A state path that is a file is refused and left alone", "[state]") {
  crmstream::testing::ScratchDir dir;
  const fs::path file = dir.path() / "not-a-dir";
  testing::WriteFileBytes(file, "precious bytes");
  auto store = StateStore::Open(OptionsAt(file));
  REQUIRE_FALSE(store.ok());
  CHECK(store.status().code() == StatusCode::kIOError);
  CHECK_THAT(store.status().message(),
             Catch::Contains(file.string()) && Catch::Contains("not a directory"));
  CHECK(testing::ReadFileBytes(file) == "precious bytes");
}

TEST_CASE("A read-only state directory is refused with its cause, while inspection still works",
          "[state]") {
  TMPFS_OR_RERUN(mount, size_t{32} << 20);
  const fs::path path = mount->path() / "store";
  MakeStore(path, 50);
  REQUIRE(mount->RemountReadOnly());
  const auto before = testing::SnapshotFiles(path);
  auto store = StateStore::Open(OptionsAt(path));
  REQUIRE_FALSE(store.ok());
  CHECK(store.status().code() == StatusCode::kIOError);
  CHECK_THAT(store.status().message(),
             Catch::Contains(path.string()) && Catch::Contains("read-only file system"));
  CHECK(testing::SnapshotFiles(path) == before);

  // `crmstream state` opens read-only and can still show what is there.
  auto options = OptionsAt(path);
  options.read_only = true;
  auto inspect = StateStore::Open(options);
  INFO(inspect.status().ToString());
  REQUIRE_OK(inspect);
  auto partitions = (*inspect)->ListPartitions();
  REQUIRE_OK(partitions);
  REQUIRE(partitions->size() == 1);
  CHECK(partitions->front().input_offset == 1000);
}

TEST_CASE("A state directory locked by another running instance names the path and the holder",
          "[state]") {
  crmstream::testing::ScratchDir dir;
  const fs::path path = dir.path() / "store";
  MakeStore(path, 10);

  // Another process opens the store and holds it until told to exit.
  int ready[2], done[2];
  REQUIRE(pipe(ready) == 0);
  REQUIRE(pipe(done) == 0);
  const pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    close(ready[0]);
    close(done[1]);
    auto held = StateStore::Open(OptionsAt(path));
    const char ok = held.ok() ? 'y' : 'n';
    if (write(ready[1], &ok, 1) != 1) _exit(2);
    char unused;
    if (read(done[0], &unused, 1) < 0) _exit(3);
    _exit(0);  // no destructors: the parent's objects are not ours
  }
  close(ready[1]);
  close(done[0]);
  char child_ok = 0;
  REQUIRE(read(ready[0], &child_ok, 1) == 1);
  REQUIRE(child_ok == 'y');

  auto store = StateStore::Open(OptionsAt(path));
  REQUIRE_FALSE(store.ok());
  CHECK(store.status().code() == StatusCode::kIOError);
  CHECK_THAT(store.status().message(), Catch::Contains(path.string()) &&
                                           Catch::Contains("another running crmstream instance") &&
                                           Catch::Contains((path / "LOCK").string()));

  // Read-only inspection works meanwhile.
  auto options = OptionsAt(path);
  options.read_only = true;
  CHECK_OK(StateStore::Open(options));

  close(done[1]);
  int status = 0;
  REQUIRE(waitpid(child, &status, 0) == child);
  CHECK(WIFEXITED(status));
  // Once the holder is gone the store opens, with its state.
  auto reopened = StateStore::Open(OptionsAt(path));
  REQUIRE_OK(reopened);
  auto partitions = (*reopened)->ListPartitions();
  REQUIRE_OK(partitions);
  CHECK(partitions->front().input_offset == 1000);
}

TEST_CASE("Corrupt CURRENT or MANIFEST files are refused without touching the directory",
          "[state]") {
  crmstream::testing::ScratchDir dir;
  const fs::path path = dir.path() / "store";
  MakeStore(path, 200);
  const std::string manifest = FileStartingWith(path, "MANIFEST-", "");

  SECTION("CURRENT names a MANIFEST that does not exist") {
    // "MANIFEST-000005\n": flip a digit.
    testing::FlipBytes(path / "CURRENT", 12, 1);
  }
  SECTION("CURRENT is garbage") {
    testing::WriteFileBytes(path / "CURRENT", std::string("\x01\x02garbage", 9));
  }
  SECTION("MANIFEST bytes flipped") {
    const size_t size = fs::file_size(path / manifest);
    testing::FlipBytes(path / manifest, size / 2, 8);
  }
  const auto before = testing::SnapshotFiles(path);
  auto store = StateStore::Open(OptionsAt(path));
  REQUIRE_FALSE(store.ok());
  INFO(store.status().ToString());
  CHECK((store.status().code() == StatusCode::kCorruption));
  CHECK_THAT(store.status().message(),
             Catch::Contains(path.string()) && Catch::Contains("corrupt"));
  CHECK(testing::SnapshotFiles(path) == before);
}

TEST_CASE("A missing CURRENT beside state files is corruption, not an empty store", "[state]") {
  crmstream::testing::ScratchDir dir;
  const fs::path path = dir.path() / "store";
  MakeStore(path, 20);
  fs::remove(path / "CURRENT");
  const auto before = testing::SnapshotFiles(path);
  auto store = StateStore::Open(OptionsAt(path));
  REQUIRE_FALSE(store.ok());
  CHECK(store.status().code() == StatusCode::kCorruption);
  CHECK_THAT(store.status().message(),
             Catch::Contains(path.string()) && Catch::Contains("without a CURRENT"));
  CHECK(testing::SnapshotFiles(path) == before);
}

TEST_CASE("A flipped SST block is reported as corruption naming the path when read", "[state]") {
  crmstream::testing::ScratchDir dir;
  const fs::path path = dir.path() / "store";
  MakeStore(path, 5000);
  // The features family's SST (the largest one).
  std::string sst;
  uintmax_t largest = 0;
  for (const auto& entry : fs::directory_iterator(path)) {
    if (entry.path().extension() == ".sst" && entry.file_size() > largest) {
      largest = entry.file_size();
      sst = entry.path().filename().string();
    }
  }
  REQUIRE_FALSE(sst.empty());
  // Data blocks come first in an SST; a third of the way in is data.
  testing::FlipBytes(path / sst, static_cast<size_t>(largest / 3), 16);
  const std::string corrupted = testing::ReadFileBytes(path / sst);

  auto store = StateStore::Open(OptionsAt(path));
  Status failure;
  if (!store.ok()) {
    failure = store.status();
  } else {
    auto p = (*store)->Partition("crm.events", 0);
    REQUIRE_OK(p);
    failure = (*store)->ForEachCustomer(*p, [](auto, auto) { return Status::OK(); });
    auto verified = (*store)->Verify();
    REQUIRE_FALSE(verified.ok());
    CHECK(verified.status().code() == StatusCode::kCorruption);
  }
  INFO(failure.ToString());
  REQUIRE_FALSE(failure.ok());
  CHECK(failure.code() == StatusCode::kCorruption);
  CHECK_THAT(failure.message(), Catch::Contains(path.string()));
  CHECK(testing::ReadFileBytes(path / sst) == corrupted);
}

TEST_CASE("A full disk fails the checkpoint with its cause and keeps the last good one",
          "[state]") {
  TMPFS_OR_RERUN(mount, size_t{6} << 20);
  const fs::path path = mount->path() / "store";
  auto options = OptionsAt(path);
  Status failure;
  int good_checkpoints = 0;
  {
    auto store = StateStore::Open(options);
    REQUIRE_OK(store);
    auto p = (*store)->Partition("crm.events", 0);
    REQUIRE_OK(p);
    // 256 KiB checkpoints until the 6 MiB file system is full (bounded).
    const std::string value = SealBlob(BlobKind::kCustomerFeatures, 1, std::string(1000, 'x'));
    CheckpointBatch batch = (*store)->NewBatch();
    for (int checkpoint = 0; checkpoint < 100 && failure.ok(); ++checkpoint) {
      for (int i = 0; i < 256; ++i) {
        batch.PutFeatures(*p, CustomerId(checkpoint * 256 + i), value);
      }
      batch.SetInputOffset(*p, checkpoint + 1);
      failure = (*store)->Commit(&batch);
      if (failure.ok()) ++good_checkpoints;
    }
  }
  INFO(failure.ToString());
  REQUIRE_FALSE(failure.ok());
  CHECK(failure.code() == StatusCode::kIOError);
  CHECK_THAT(failure.message(), Catch::Contains(path.string()) && Catch::Contains("disk full"));
  REQUIRE(good_checkpoints > 0);

  // With the files moved to a roomy disk, the store holds exactly the good
  // checkpoints: the failed one is absent as a whole.
  crmstream::testing::ScratchDir roomy;
  fs::copy(path, roomy.path() / "store", fs::copy_options::recursive);
  auto store = StateStore::Open(OptionsAt(roomy.path() / "store"));
  INFO(store.status().ToString());
  REQUIRE_OK(store);
  auto p = (*store)->Partition("crm.events", 0);
  REQUIRE_OK(p);
  auto state = (*store)->GetPartition(*p);
  REQUIRE_OK(state);
  CHECK(state->input_offset == good_checkpoints);
  size_t customers = 0;
  REQUIRE((*store)
              ->ForEachCustomer(*p,
                                [&](auto, auto) {
                                  ++customers;
                                  return Status::OK();
                                })
              .ok());
  CHECK(customers == static_cast<size_t>(good_checkpoints) * 256);
}

}  // namespace
}  // namespace crmstream::state
