#include "crmstream/state/state_store.h"

#include <rocksdb/db.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <map>
#include <random>

#include "crmstream/common/binary_io.h"
#include "state/state_test_support.h"
#include "support/allocation_counter.h"
#include "support/require_ok.h"
#include "support/test_support.h"

namespace crmstream::state {
namespace {

using testing::CustomerId;
using testing::MakeFeatureStore;

constexpr int64_t kLaterMs = 1'710'000'000'000;

StateStoreOptions OptionsAt(const std::filesystem::path& path) {
  StateStoreOptions o;
  o.path = path;
  o.memory_cap_bytes = size_t{32} << 20;
  o.identity = "crm-engine/crm-pipeline";
  return o;
}

std::unique_ptr<StateStore> OpenOrDie(const StateStoreOptions& o) {
  auto store = StateStore::Open(o);
  INFO(store.status().ToString());
  REQUIRE_OK(store);
  return std::move(store).value();
}

// Model inputs of a customer as of a fixed time, NaN-aware bitwise compare.
std::vector<double> SnapshotOf(const features::FeatureStore& store, const std::string& id) {
  const features::CustomerFeatures* f = store.Find(id);
  REQUIRE(f != nullptr);
  std::vector<double> out;
  f->Snapshot(kLaterMs, &out);
  return out;
}
bool SameBits(const std::vector<double>& a, const std::vector<double>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(double)) == 0;
}

void CheckpointAll(const features::FeatureStore& features, PartitionKey p, int64_t next_offset,
                   StateStore* store) {
  CheckpointBatch batch = store->NewBatch();
  std::string blob;
  Status st;
  features.ForEachDirty([&](std::string_view id, const features::CustomerFeatures&) {
    if (!st.ok()) return;
    st = features.EncodeCustomer(id, &blob);
    batch.PutFeatures(p, id, blob);
  });
  REQUIRE_OK(st);
  batch.SetInputOffset(p, next_offset);
  REQUIRE_OK(store->Commit(&batch));
  CHECK(batch.empty());
}

TEST_CASE("A checkpoint of real feature state restores every customer exactly", "[state]") {
  crmstream::testing::ScratchDir dir;
  const auto options = OptionsAt(dir.path() / "store");
  auto features = MakeFeatureStore(800, 120, 1);
  {
    auto store = OpenOrDie(options);
    CHECK(store->created());
    auto p = store->Partition("crm.events", 3);
    REQUIRE_OK(p);
    CheckpointAll(*features, *p, 12345, store.get());
  }
  // Reopen: the state decodes into a fresh FeatureStore identical to the
  // original, customer by customer.
  auto store = OpenOrDie(options);
  CHECK_FALSE(store->created());
  auto partitions = store->ListPartitions();
  REQUIRE_OK(partitions);
  REQUIRE(partitions->size() == 1);
  const PartitionState& ps = partitions->front();
  CHECK(ps.topic == "crm.events");
  CHECK(ps.key.partition == 3);
  CHECK(ps.input_offset == 12345);
  CHECK(ps.changelog_offset == -1);
  CHECK_FALSE(ps.restoring);

  REQUIRE_OK_AND_ASSIGN(auto restored_owner,
                        features::FeatureStore::Create(features::FeatureSpec{}));
  features::FeatureStore& restored = *restored_owner;
  size_t count = 0;
  REQUIRE(store
              ->ForEachCustomer(ps.key,
                                [&](std::string_view id, std::string_view blob) {
                                  ++count;
                                  return restored.DecodeCustomer(id, blob);
                                })
              .ok());
  CHECK(count == 800);
  CHECK(restored.size() == 800);
  for (int i = 0; i < 800; ++i) {
    INFO(CustomerId(i));
    CHECK(SameBits(SnapshotOf(restored, CustomerId(i)), SnapshotOf(*features, CustomerId(i))));
  }
}

TEST_CASE("Later checkpoints carry only dirty entries, and deletes and offsets land atomically",
          "[state]") {
  crmstream::testing::ScratchDir dir;
  auto store = OpenOrDie(OptionsAt(dir.path() / "store"));
  auto features = MakeFeatureStore(300, 60, 2);
  auto p = store->Partition("crm.events", 0);
  REQUIRE_OK(p);
  CheckpointAll(*features, *p, 100, store.get());
  features->ClearDirty();

  // 10% of the customers change; one is deleted.
  for (int i = 0; i < 300; i += 10)
    testing::TouchCustomer(features.get(), i, kLaterMs - 1000, 42.5);
  CHECK(features->dirty_count() == 30);
  CheckpointBatch batch = store->NewBatch();
  std::string blob;
  features->ForEachDirty([&](std::string_view id, const features::CustomerFeatures&) {
    REQUIRE_OK(features->EncodeCustomer(id, &blob));
    batch.PutFeatures(*p, id, blob);
  });
  batch.DeleteCustomer(*p, CustomerId(7));
  batch.SetInputOffset(*p, 250);
  CHECK(batch.entry_count() == 30 + 2 + 1);
  REQUIRE_OK(store->Commit(&batch));

  // Reference: the in-memory store (minus the deleted customer).
  std::map<std::string, std::string> stored;
  REQUIRE(store
              ->ForEachCustomer(*p,
                                [&](std::string_view id, std::string_view b) {
                                  stored.emplace(std::string(id), std::string(b));
                                  return Status::OK();
                                })
              .ok());
  CHECK(stored.size() == 299);
  CHECK(stored.count(CustomerId(7)) == 0);
  for (int i = 0; i < 300; ++i) {
    if (i == 7) continue;
    REQUIRE_OK(features->EncodeCustomer(CustomerId(i), &blob));
    INFO(CustomerId(i));
    CHECK(stored[CustomerId(i)] == blob);
  }
  auto state = store->GetPartition(*p);
  REQUIRE_OK(state);
  CHECK(state->input_offset == 250);
}

TEST_CASE("Partitions are separate ranges: one can be dropped or restored alone", "[state]") {
  crmstream::testing::ScratchDir dir;
  auto store = OpenOrDie(OptionsAt(dir.path() / "store"));
  auto a = store->Partition("crm.events", 0);
  auto b = store->Partition("crm.events", 1);
  auto c = store->Partition("other.events", 0);
  REQUIRE((a.ok() && b.ok() && c.ok()));
  CHECK(a->topic_id == b->topic_id);
  CHECK(a->topic_id != c->topic_id);
  const std::string blob = SealBlob(BlobKind::kCustomerFeatures, 1, "payload");
  const std::string model = SealBlob(BlobKind::kLogisticRegression, 1, "weights");
  CheckpointBatch batch = store->NewBatch();
  for (PartitionKey p : {*a, *b, *c}) {
    for (int i = 0; i < 20; ++i) {
      batch.PutFeatures(p, CustomerId(i), blob);
      batch.PutCustomerModel(p, CustomerId(i), model);
    }
    batch.PutPartitionModel(p, "churn", model);
    batch.PutDedupWindow(p, blob);
    batch.SetInputOffset(p, 10 + p.partition);
    batch.SetChangelogOffset(p, 20 + p.partition);
  }
  REQUIRE_OK(store->Commit(&batch));

  REQUIRE_OK(store->DropPartition(*b));
  auto listed = store->ListPartitions();
  REQUIRE_OK(listed);
  REQUIRE(listed->size() == 2);
  CHECK((*listed)[0].key == *a);
  CHECK((*listed)[1].key == *c);
  auto count = [&](PartitionKey p) {
    size_t n = 0;
    REQUIRE(store
                ->ForEachCustomer(p,
                                  [&](auto, auto) {
                                    ++n;
                                    return Status::OK();
                                  })
                .ok());
    REQUIRE(store
                ->ForEachCustomerModel(p,
                                       [&](auto, auto) {
                                         ++n;
                                         return Status::OK();
                                       })
                .ok());
    REQUIRE(store
                ->ForEachPartitionModel(p,
                                        [&](auto, auto) {
                                          ++n;
                                          return Status::OK();
                                        })
                .ok());
    return n;
  };
  CHECK(count(*a) == 41);
  CHECK(count(*b) == 0);
  CHECK(count(*c) == 41);
  auto dedup = store->GetDedupWindow(*b);
  REQUIRE_OK(dedup);
  CHECK_FALSE(dedup->has_value());

  // A restore mark is visible until a batch finishes it, and a restore from
  // scratch drops the partition's state first.
  REQUIRE_OK(store->BeginRestore(*a, /*drop_state=*/true));
  auto during = store->GetPartition(*a);
  REQUIRE_OK(during);
  CHECK(during->restoring);
  CHECK(during->input_offset == -1);
  CHECK(count(*a) == 0);
  CheckpointBatch finish = store->NewBatch();
  finish.PutFeatures(*a, "x", blob);
  finish.SetInputOffset(*a, 99);
  finish.FinishRestore(*a);
  REQUIRE_OK(store->Commit(&finish));
  auto after = store->GetPartition(*a);
  REQUIRE_OK(after);
  CHECK_FALSE(after->restoring);
  CHECK(after->input_offset == 99);
  CHECK(count(*c) == 41);  // untouched throughout
}

// Writes `version` as the store's format version behind its back.
void SetFormatVersion(const std::filesystem::path& path, uint32_t version) {
  rocksdb::DB* raw = nullptr;
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  std::vector<rocksdb::ColumnFamilyDescriptor> families;
  for (const char* name : {"default", "features", "models", "offsets", "dedup"}) {
    families.emplace_back(name, rocksdb::ColumnFamilyOptions());
  }
  REQUIRE(rocksdb::DB::Open(rocksdb::DBOptions(), path.string(), families, &handles, &raw).ok());
  std::string payload;
  BinaryWriter(&payload).Put<uint32_t>(version);
  REQUIRE(raw->Put(rocksdb::WriteOptions(), handles[0], "format_version",
                   SealBlob(BlobKind::kCheckpointMeta, 1, payload))
              .ok());
  for (auto* h : handles) REQUIRE_OK(raw->DestroyColumnFamilyHandle(h));
  REQUIRE_OK(raw->Close());
  delete raw;
}

TEST_CASE("A store written by another pipeline or format version is refused, untouched",
          "[state]") {
  crmstream::testing::ScratchDir dir;
  auto options = OptionsAt(dir.path() / "store");
  {
    auto store = OpenOrDie(options);
    auto p = store->Partition("crm.events", 0);
    REQUIRE_OK(p);
    CheckpointBatch batch = store->NewBatch();
    batch.SetInputOffset(*p, 5);
    REQUIRE_OK(store->Commit(&batch));
  }
  const auto before = testing::SnapshotFiles(options.path);
  auto other = options;
  other.identity = "crm-engine/another-pipeline";
  auto refused = StateStore::Open(other);
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.status().code() == StatusCode::kInvalidArgument);
  CHECK_THAT(refused.status().message(), Catch::Contains(options.path.string()) &&
                                             Catch::Contains("another-pipeline") &&
                                             Catch::Contains("crm-pipeline"));
  CHECK(testing::SnapshotFiles(options.path) == before);

  // A future format version, format 2 (whose churn blobs held the label
  // deadlines), format 3 (behaviour state without the anomaly budget,
  // churn blobs that did not name their model) and format 4 (a spend
  // regression without the spend terms, seven output kinds, minute metrics
  // without the sustained-shift tests) and format 5 (pending churn snapshots
  // inside the customer records, label deadline values without them),
  // written behind the store's back. (Format 6 opens and is upgraded: below.)
  for (const uint32_t version :
       {kStateFormatVersion + 1, uint32_t{2}, uint32_t{3}, uint32_t{4}, uint32_t{5}}) {
    SetFormatVersion(options.path, version);
    const auto before_version = testing::SnapshotFiles(options.path);
    auto refused_version = StateStore::Open(options);
    REQUIRE_FALSE(refused_version.ok());
    CHECK(refused_version.status().code() == StatusCode::kInvalidArgument);
    CHECK_THAT(refused_version.status().message(),
               Catch::Contains(options.path.string()) &&
                   Catch::Contains("format version " + std::to_string(version)) &&
                   Catch::Contains("reads version " + std::to_string(kStateFormatVersion)));
    CHECK(testing::SnapshotFiles(options.path) == before_version);
  }
}

uint32_t ReadFormatVersion(const std::filesystem::path& path) {
  rocksdb::DB* raw = nullptr;
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  std::vector<rocksdb::ColumnFamilyDescriptor> families;
  for (const char* name : {"default", "features", "models", "offsets", "dedup"}) {
    families.emplace_back(name, rocksdb::ColumnFamilyOptions());
  }
  REQUIRE(
      rocksdb::DB::OpenForReadOnly(rocksdb::DBOptions(), path.string(), families, &handles, &raw)
          .ok());
  std::string value;
  REQUIRE(raw->Get(rocksdb::ReadOptions(), handles[0], "format_version", &value).ok());
  for (auto* h : handles) REQUIRE_OK(raw->DestroyColumnFamilyHandle(h));
  delete raw;
  REQUIRE_OK_AND_ASSIGN(std::string_view payload,
                        OpenBlobPayload(value, BlobKind::kCheckpointMeta, 1));
  uint32_t version = 0;
  REQUIRE_OK(BinaryReader(payload).Get(&version));
  return version;
}

TEST_CASE("A format-6 store opens, keeps its whole dedup windows and is marked format 7",
          "[state]") {
  STATIC_REQUIRE(kUpgradableStateFormatVersion + 1 == kStateFormatVersion);
  crmstream::testing::ScratchDir dir;
  auto options = OptionsAt(dir.path() / "store");
  {
    auto store = OpenOrDie(options);
    auto p = store->Partition("crm.events", 0);
    REQUIRE_OK(p);
    CheckpointBatch batch = store->NewBatch();
    batch.PutDedupWindow(*p, "a whole window");
    batch.SetInputOffset(*p, 5);
    REQUIRE_OK(store->Commit(&batch));
  }
  SetFormatVersion(options.path, kUpgradableStateFormatVersion);
  CHECK(ReadFormatVersion(options.path) == kUpgradableStateFormatVersion);
  {
    auto read_only = options;
    read_only.read_only = true;
    REQUIRE_OK_AND_ASSIGN(auto store, StateStore::Open(read_only));
  }
  CHECK(ReadFormatVersion(options.path) == kUpgradableStateFormatVersion);  // not written
  {
    auto store = OpenOrDie(options);
    auto p = store->Partition("crm.events", 0);
    REQUIRE_OK(p);
    REQUIRE_OK_AND_ASSIGN(auto whole, store->GetDedupWindow(*p));
    CHECK(whole == std::optional<std::string>("a whole window"));
    REQUIRE_OK_AND_ASSIGN(auto head, store->GetDedupHead(*p));
    CHECK_FALSE(head.has_value());
    REQUIRE_OK_AND_ASSIGN(auto state, store->GetPartition(*p));
    CHECK(state.input_offset == 5);
  }
  CHECK(ReadFormatVersion(options.path) == kStateFormatVersion);
}

TEST_CASE("A label deadline keeps its example, read by the range scan and by a point lookup",
          "[state]") {
  crmstream::testing::ScratchDir dir;
  auto store = OpenOrDie(OptionsAt(dir.path() / "store"));
  auto p = store->Partition("crm.events", 0);
  REQUIRE_OK(p);
  const std::string example("\x01\x00snapshot bytes", 16);
  CheckpointBatch batch = store->NewBatch();
  const CheckpointBatch::CommitTicket ticket = batch.ticket();
  batch.PutLabelDeadline(*p, 7000, 9, "late", "");
  batch.PutLabelDeadline(*p, -5, 3, "early", example);
  CHECK_FALSE(ticket.committed());
  REQUIRE_OK(store->Commit(&batch));
  CHECK(ticket.committed());
  // The batch's next content has a ticket of its own.
  CHECK_FALSE(batch.ticket().committed());

  REQUIRE_OK_AND_ASSIGN(auto first, store->NextLabelDeadline(*p, nullptr));
  REQUIRE(first.has_value());
  CHECK(first->customer_id == "early");
  CHECK(first->deadline_ms == -5);
  CHECK(first->example == example);
  REQUIRE_OK_AND_ASSIGN(auto second, store->NextLabelDeadline(*p, &*first));
  REQUIRE(second.has_value());
  CHECK(second->customer_id == "late");
  CHECK(second->example.empty());
  REQUIRE_OK_AND_ASSIGN(auto none, store->NextLabelDeadline(*p, &*second));
  CHECK_FALSE(none.has_value());

  REQUIRE_OK_AND_ASSIGN(auto found, store->GetLabelExample(*p, -5, 3, "early"));
  REQUIRE(found.has_value());
  CHECK(*found == example);
  REQUIRE_OK_AND_ASSIGN(auto missing, store->GetLabelExample(*p, -5, 4, "early"));
  CHECK_FALSE(missing.has_value());

  // A value that is not a label's (another deadline in it) is corruption.
  std::string key;
  LabelDeadlineKey(*p, 8000, 1, "bad", &key);
  std::string payload;
  BinaryWriter(&payload).Put<int64_t>(1234);
  batch.PutStateEntry(StateFamily::kModels, *p, std::string_view(key).substr(kPartitionPrefixBytes),
                      SealBlob(BlobKind::kCheckpointMeta, 1, payload));
  REQUIRE_OK(store->Commit(&batch));
  CHECK(store->GetLabelExample(*p, 8000, 1, "bad").status().code() == StatusCode::kCorruption);
  CHECK(store->NextLabelDeadline(*p, &*second).status().code() == StatusCode::kCorruption);
}

TEST_CASE("One batched read finds what point reads find, for every customer of a batch",
          "[state]") {
  crmstream::testing::ScratchDir dir;
  auto store = OpenOrDie(OptionsAt(dir.path() / "store"));
  REQUIRE_OK_AND_ASSIGN(const PartitionKey p, store->Partition("crm.events", 0));
  REQUIRE_OK_AND_ASSIGN(const PartitionKey other, store->Partition("crm.events", 1));
  // Customers with features and a model, with features only, in another
  // partition only, and none; enough for several blocks after a flush.
  CheckpointBatch batch = store->NewBatch();
  for (int i = 0; i < 3000; ++i) {
    const std::string id = CustomerId(i);
    if (i % 4 == 3) {
      batch.PutFeatures(other, id, "features of the other partition " + id);
      continue;
    }
    batch.PutFeatures(p, id, "features " + id + std::string(static_cast<size_t>(i % 50), 'f'));
    if (i % 4 != 2) batch.PutCustomerModel(p, id, "model " + id);
  }
  REQUIRE_OK(store->Commit(&batch));
  REQUIRE_OK(store->Flush());
  batch.PutFeatures(p, CustomerId(1), "features in a memtable");
  REQUIRE_OK(store->Commit(&batch));

  CustomerReads reads;
  std::mt19937 rng(3);
  std::uniform_int_distribution<int> pick(0, 3999);  // a quarter unknown
  for (int round = 0; round < 3; ++round) {
    reads.Clear();
    const int n = round == 1 ? 700 : 300;  // the buffers grow, then are reused
    for (int k = 0; k < n; ++k) reads.Add(CustomerId(pick(rng)));
    reads.Add(CustomerId(1));
    reads.Add(CustomerId(1));  // twice: both answered
    REQUIRE_OK(store->ReadCustomers(p, &reads));
    REQUIRE(reads.size() == static_cast<size_t>(n) + 2);
    size_t found = 0;
    for (size_t i = 0; i < reads.size(); ++i) {
      REQUIRE_OK_AND_ASSIGN(const auto expected, store->GetCustomer(p, reads.customer_id(i)));
      INFO(reads.customer_id(i));
      CHECK(reads.features(i) == expected.features.value_or(""));
      CHECK(reads.model(i) == expected.model.value_or(""));
      found += reads.features(i).empty() ? 0 : 1;
    }
    CHECK(found > reads.size() / 2);
    CHECK(reads.features(reads.size() - 1) == "features in a memtable");
  }
  reads.Clear();
  REQUIRE_OK(store->ReadCustomers(p, &reads));
  CHECK(reads.size() == 0);
}

TEST_CASE("Verify flags values whose envelope is broken, and stats count what was written",
          "[state]") {
  crmstream::testing::ScratchDir dir;
  auto store = OpenOrDie(OptionsAt(dir.path() / "store"));
  auto p = store->Partition("crm.events", 2);
  REQUIRE_OK(p);
  auto features = MakeFeatureStore(100, 30, 3);
  CheckpointAll(*features, *p, 7, store.get());
  auto clean = store->Verify();
  REQUIRE_OK(clean);
  // 100 customers + 1 offset + metadata (format version, identity, topic id).
  CHECK(clean->values_checked == 100 + 1 + 3);
  CHECK(clean->bad_values == 0);

  std::string blob;
  REQUIRE_OK(features->EncodeCustomer(CustomerId(5), &blob));
  blob[blob.size() / 2] ^= 0x55;  // a payload bit flip: CRC32C must catch it
  CheckpointBatch batch = store->NewBatch();
  batch.PutFeatures(*p, CustomerId(5), blob);
  batch.PutCustomerModel(*p, CustomerId(6), "not a blob");
  REQUIRE_OK(store->Commit(&batch));
  REQUIRE_OK(store->Flush());
  auto dirty = store->Verify();
  REQUIRE_OK(dirty);
  CHECK(dirty->values_checked == 100 + 1 + 3 + 1);
  CHECK(dirty->bad_values == 2);
  REQUIRE(dirty->problems.size() == 2);
  CHECK_THAT(dirty->problems[0], Catch::StartsWith("features "));
  CHECK_THAT(dirty->problems[1], Catch::StartsWith("models "));

  auto stats = store->Stats();
  REQUIRE_OK(stats);
  REQUIRE(stats->families.size() == 5);
  CHECK(stats->families[0].name == "features");
  CHECK(stats->families[0].keys == 100);
  CHECK(stats->families[1].keys == 1);
  CHECK(stats->families[2].keys == 1);
  CHECK(stats->families[0].sst_file_bytes > 0);
  REQUIRE(stats->partitions.size() == 1);
  CHECK(stats->partitions[0].topic == "crm.events");
  CHECK(stats->partitions[0].partition == 2);
  CHECK(stats->partitions[0].customers == 100);
  CHECK(stats->partitions[0].model_entries == 1);
}

TEST_CASE("Block cache and memtables stay under the memory cap", "[state]") {
  crmstream::testing::ScratchDir dir;
  auto options = OptionsAt(dir.path() / "store");
  options.memory_cap_bytes = size_t{16} << 20;
  auto store = OpenOrDie(options);
  auto p = store->Partition("crm.events", 0);
  REQUIRE_OK(p);
  // Measured on the heap, not by RocksDB's own accounting (the LRU cache's
  // usage is bounded by its capacity, which is the cap: it could not show
  // memtables or anything else left outside it): the bytes every thread
  // allocated through operator new and has not freed since the store was
  // opened.
  const std::string value = SealBlob(BlobKind::kCustomerFeatures, 1, std::string(300, 'v'));
  CheckpointBatch batch = store->NewBatch();
  for (int i = 0; i < 3000; ++i) batch.PutFeatures(*p, CustomerId(i), value);
  batch.Clear();  // its buffer keeps its size: the test's own memory is not counted
  const long opened = crmstream::testing::LiveHeapBytes();
  long peak = 0;
  auto sample = [&] { peak = std::max(peak, crmstream::testing::LiveHeapBytes() - opened); };
  auto write = [&](int from, int to) {
    for (int i = from; i < to; ++i) {
      batch.PutFeatures(*p, CustomerId(i), value);
      if (batch.entry_count() == 3000) {
        REQUIRE_OK(store->Commit(&batch));
        sample();
      }
    }
    REQUIRE_OK(store->Commit(&batch));
  };
  auto read = [&](int from, int to, int step) {
    for (int i = from; i < to; i += step) {
      auto got = store->GetFeatures(*p, CustomerId(i));
      REQUIRE_OK(got);
      REQUIRE(got->has_value());
      if (i % 7000 == 0) sample();
    }
  };
  // About 48 MB of values, three times the cap, in 1 MB checkpoints; read
  // back (filling the cache); then 16 MB more written while reading, so
  // that memtables grow while the cache is full.
  write(0, 150'000);
  read(0, 150'000, 7);
  for (int chunk = 0; chunk < 16; ++chunk) {
    write(150'000 + chunk * 3000, 153'000 + chunk * 3000);
    read(chunk * 9000, chunk * 9000 + 9000, 3);
  }
  sample();
  INFO("peak heap growth " << peak << " bytes; cache in use " << store->MemoryUsageBytes());
  // The cap covers the block cache and the memtables (charged to it). Not
  // covered: RocksDB's file write buffers (up to 1 MiB per file being
  // written: the WAL, a flush's or a compaction's output) and table reader
  // objects, a few MiB whatever the cap (measured 2.7 MiB over a 16 MiB cap
  // on a quiet machine, 4.4 MiB on a loaded one, where a flush and a
  // compaction write at the same time; memtables left out of the cache
  // would add their 4 MiB budget on top: about 6.7 MiB over).
  constexpr long kUncoveredIoBuffers = long{5} << 20;
  CHECK(peak <= static_cast<long>(options.memory_cap_bytes) + kUncoveredIoBuffers);
  // The reads did fill the cache: the bound above held under pressure.
  CHECK(store->MemoryUsageBytes() > options.memory_cap_bytes / 2);
}

TEST_CASE("Batches appended one after another hold the bytes of one batch written in that order",
          "[state]") {
  crmstream::testing::ScratchDir dir;
  auto store = OpenOrDie(OptionsAt(dir.path() / "store"));
  auto features = MakeFeatureStore(60, 30, 5);
  auto p0 = store->Partition("crm.events", 0);
  auto p1 = store->Partition("crm.events", 1);
  REQUIRE_OK(p0);
  REQUIRE_OK(p1);
  // A partition's part of a checkpoint: every family, puts and deletes.
  std::string blob;
  const auto add_part = [&](PartitionKey p, int first, CheckpointBatch* batch) {
    for (int i = first; i < 60; i += 2) {
      REQUIRE_OK(features->EncodeCustomer(CustomerId(i), &blob));
      batch->PutFeatures(p, CustomerId(i), blob);
      batch->PutCustomerModel(p, CustomerId(i), blob.substr(0, 17));
    }
    batch->DeleteCustomer(p, CustomerId(first + 2));
    batch->PutLabelDeadline(p, kLaterMs + first, 99, CustomerId(first), "example");
    batch->DeleteLabelDeadline(p, kLaterMs - 1, 98, CustomerId(first + 3));
    batch->PutPartitionModel(p, "processor", "schedules" + std::to_string(first));
    batch->PutDedupHead(p, "head");
    batch->PutDedupChunk(p, static_cast<uint32_t>(first), "chunk");
    batch->DeleteDedupWindow(p);
  };
  CheckpointBatch whole = store->NewBatch();
  add_part(*p0, 0, &whole);
  whole.SetInputOffset(*p0, 10);
  add_part(*p1, 1, &whole);
  whole.SetInputOffset(*p1, 20);
  whole.PutMetadata("sync", "7");

  CheckpointBatch part0 = store->NewBatch();
  CheckpointBatch part1 = store->NewBatch();
  add_part(*p0, 0, &part0);
  add_part(*p1, 1, &part1);
  CheckpointBatch merged = store->NewBatch();
  merged.Append(part0);
  merged.SetInputOffset(*p0, 10);
  merged.Append(part1);
  merged.SetInputOffset(*p1, 20);
  merged.PutMetadata("sync", "7");
  // The parts are left as they were.
  CHECK(part0.entry_count() == 30 * 2 + 2 + 2 + 1 + 3);
  CHECK(merged.entry_count() == whole.entry_count());
  CHECK(merged.byte_size() == whole.byte_size());
  CHECK(merged.bytes() == whole.bytes());

  REQUIRE_OK(store->Commit(&merged));
  auto state = store->GetPartition(*p1);
  REQUIRE_OK(state);
  CHECK(state->input_offset == 20);
  std::map<std::string, std::string> stored;
  REQUIRE_OK(store->ForEachCustomer(*p0, [&](std::string_view id, std::string_view b) {
    stored.emplace(std::string(id), std::string(b));
    return Status::OK();
  }));
  CHECK(stored.size() == 29);  // customer 2 deleted after it was written
  CHECK(stored.count(CustomerId(2)) == 0);
  REQUIRE_OK(features->EncodeCustomer(CustomerId(58), &blob));
  CHECK(stored[CustomerId(58)] == blob);
}

}  // namespace
}  // namespace crmstream::state
