#include "crmstream/state/changelog.h"

#include <catch2/catch.hpp>
#include <map>
#include <random>

#include "crmstream/common/binary_io.h"
#include "crmstream/kafka/producer.h"
#include "kafka/kafka_test_support.h"
#include "state/state_test_support.h"
#include "support/test_support.h"

namespace crmstream::state {
namespace {

using kafka::testing::ClusterFixture;
using kafka::testing::kTestDeadline;
using testing::CustomerId;

TEST_CASE("Changelog records round-trip and malformed ones are corruption", "[state]") {
  std::string key, stamp;
  const std::string blob = SealBlob(BlobKind::kCustomerFeatures, 1, "state");
  EncodeChangelogKey(ChangeKind::kFeatures, "cust-1", &key);
  EncodeChangelogStamp(123456789012, &stamp);
  CHECK(key == std::string("Fcust-1"));
  CHECK(stamp.size() == 9);
  CHECK(stamp[0] == 1);
  auto change = DecodeChangelogRecord(key, blob, std::string_view(stamp));
  REQUIRE(change.ok());
  CHECK(change->kind == ChangeKind::kFeatures);
  CHECK(change->id == "cust-1");
  CHECK(change->value == blob);
  CHECK(change->input_offset == 123456789012);
  CHECK_FALSE(change->tombstone());

  auto tombstone = DecodeChangelogRecord(key, "", std::string_view(stamp));
  REQUIRE(tombstone.ok());
  CHECK(tombstone->tombstone());

  CHECK(DecodeChangelogRecord("", blob, std::string_view(stamp)).status().code() ==
        StatusCode::kCorruption);
  CHECK(DecodeChangelogRecord("Xcust", blob, std::string_view(stamp)).status().code() ==
        StatusCode::kCorruption);
  CHECK(DecodeChangelogRecord(key, blob, std::nullopt).status().code() == StatusCode::kCorruption);
  CHECK(DecodeChangelogRecord(key, blob, std::string_view(stamp).substr(0, 5)).status().code() ==
        StatusCode::kCorruption);
  std::string bad_blob = blob;
  bad_blob[bad_blob.size() - 6] ^= 1;
  CHECK(DecodeChangelogRecord(key, bad_blob, std::string_view(stamp)).status().code() ==
        StatusCode::kCorruption);
  CHECK(ChangelogTopicName("crm-engine", "crm.events") == "crm-engine-crm.events-changelog");
}

// What the store must hold after replaying `log` in order: the last value per
// (kind, id), tombstones removing.
using Reference = std::map<std::pair<char, std::string>, std::string>;

struct LoggedChange {
  ChangeKind kind;
  std::string id;
  std::string value;  // empty: tombstone
  int64_t input_offset;
};

void Replay(const std::vector<LoggedChange>& log, Reference* ref) {
  for (const LoggedChange& c : log) {
    const auto key = std::make_pair(static_cast<char>(c.kind), c.id);
    if (c.value.empty()) {
      ref->erase(key);
    } else {
      (*ref)[key] = c.value;
    }
  }
}

Reference ReadBack(const StateStore& store, PartitionKey p) {
  Reference out;
  auto collect = [&](char kind) {
    return [&out, kind](std::string_view id, std::string_view blob) {
      out[{kind, std::string(id)}] = std::string(blob);
      return Status::OK();
    };
  };
  REQUIRE(store.ForEachCustomer(p, collect('F')).ok());
  REQUIRE(store.ForEachCustomerModel(p, collect('C')).ok());
  REQUIRE(store.ForEachPartitionModel(p, collect('P')).ok());
  auto dedup = store.GetDedupWindow(p);
  REQUIRE(dedup.ok());
  if (dedup->has_value()) out[{'D', ""}] = **dedup;
  return out;
}

// Random changes over `customers` customers, as a checkpointing engine would
// log them: stamps grow, every value is a sealed blob of its kind.
std::vector<LoggedChange> MakeChanges(int count, int customers, int64_t first_stamp,
                                      uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<LoggedChange> log;
  for (int i = 0; i < count; ++i) {
    LoggedChange c;
    c.input_offset = first_stamp + i / 10;  // ten changes per checkpoint
    const uint64_t r = rng() % 100;
    const std::string payload = "v" + std::to_string(rng());
    if (r < 70) {
      c.kind = ChangeKind::kFeatures;
      c.id = CustomerId(static_cast<int>(rng() % customers));
      c.value = SealBlob(BlobKind::kCustomerFeatures, 1, payload);
    } else if (r < 85) {
      c.kind = ChangeKind::kCustomerModel;
      c.id = CustomerId(static_cast<int>(rng() % customers));
      c.value = SealBlob(BlobKind::kLogisticRegression, 1, payload);
    } else if (r < 92) {
      c.kind = r < 88 ? ChangeKind::kFeatures : ChangeKind::kCustomerModel;
      c.id = CustomerId(static_cast<int>(rng() % customers));  // tombstone
    } else if (r < 97) {
      c.kind = ChangeKind::kPartitionModel;
      c.id = "churn";
      c.value = SealBlob(BlobKind::kStandardizer, 1, payload);
    } else {
      c.kind = ChangeKind::kDedupWindow;
      c.value = SealBlob(BlobKind::kCheckpointMeta, 1, payload);
    }
    log.push_back(std::move(c));
  }
  return log;
}

void ProduceLog(kafka::Producer& producer, const std::string& topic, int32_t partition,
                const std::vector<LoggedChange>& log) {
  std::string key, stamp;
  for (const LoggedChange& c : log) {
    const StateChange change{c.kind, c.id, c.value, c.input_offset};
    REQUIRE(ProduceChange(&producer, topic, partition, change, &key, &stamp).ok());
  }
  REQUIRE(producer.Flush(kTestDeadline).ok());
  REQUIRE(producer.failed_count() == 0);
}

TEST_CASE("A partition is rebuilt from its changelog, then caught up from a checkpoint offset",
          "[state][integration]") {
  ClusterFixture fx;
  const std::string topic = ChangelogTopicName("crm-engine", "crm.events");
  REQUIRE(fx.cluster->CreateTopic(topic, 2, 3).ok());
  auto producer = kafka::Producer::Create(fx.config());
  REQUIRE(producer.ok());

  const auto first = MakeChanges(3000, 400, 100, 11);
  ProduceLog(**producer, topic, 1, first);
  // Noise on the other partition must not leak into partition 1's state.
  ProduceLog(**producer, topic, 0, MakeChanges(200, 50, 5, 12));

  crmstream::testing::ScratchDir dir;
  StateStoreOptions options;
  options.path = dir.path() / "store";
  options.memory_cap_bytes = size_t{16} << 20;
  auto store = StateStore::Open(options);
  REQUIRE(store.ok());
  auto p = (*store)->Partition("crm.events", 1);
  REQUIRE(p.ok());
  // Stale local state that a rebuild from scratch must replace.
  CheckpointBatch stale = (*store)->NewBatch();
  stale.PutFeatures(*p, "ghost", SealBlob(BlobKind::kCustomerFeatures, 1, "old"));
  REQUIRE((*store)->Commit(&stale).ok());

  std::vector<RestoreProgress> reports;
  ChangelogRestoreOptions restore;
  restore.records_per_write = 500;
  restore.progress = [&](const RestoreProgress& r) { reports.push_back(r); };
  auto result = RestoreFromChangelog(fx.config(), topic, 1, store->get(), *p, restore);
  INFO(result.status().ToString());
  REQUIRE(result.ok());
  CHECK(result->records == 3000);
  CHECK(result->next_changelog_offset == 3000);
  CHECK(result->input_offset == first.back().input_offset);

  Reference expected;
  Replay(first, &expected);
  CHECK(ReadBack(**store, *p) == expected);
  auto state = (*store)->GetPartition(*p);
  REQUIRE(state.ok());
  CHECK(state->changelog_offset == 3000);
  CHECK(state->input_offset == first.back().input_offset);
  CHECK_FALSE(state->restoring);

  // Progress: every 500 records and once at the end, never going back.
  REQUIRE(reports.size() == 3000 / 500 + 1);
  for (size_t i = 1; i < reports.size(); ++i) {
    CHECK(reports[i].records >= reports[i - 1].records);
    CHECK(reports[i].next_offset >= reports[i - 1].next_offset);
  }
  CHECK(reports.back().records == 3000);
  CHECK(reports.back().end_offset == 3000);

  // The engine checkpointed up to changelog offset 3000; more changes were
  // logged (committed, then the crash came before the local checkpoint).
  const auto tail = MakeChanges(700, 400, first.back().input_offset + 1, 13);
  ProduceLog(**producer, topic, 1, tail);
  ChangelogRestoreOptions catch_up;
  catch_up.start_offset = state->changelog_offset;
  auto caught = RestoreFromChangelog(fx.config(), topic, 1, store->get(), *p, catch_up);
  INFO(caught.status().ToString());
  REQUIRE(caught.ok());
  CHECK(caught->records == 700);
  CHECK(caught->next_changelog_offset == 3700);
  Replay(tail, &expected);
  CHECK(ReadBack(**store, *p) == expected);
  auto after = (*store)->GetPartition(*p);
  REQUIRE(after.ok());
  CHECK(after->input_offset == tail.back().input_offset);
  CHECK(after->changelog_offset == 3700);

  // Nothing new: a catch-up reads nothing and keeps the offsets.
  catch_up.start_offset = after->changelog_offset;
  auto idle = RestoreFromChangelog(fx.config(), topic, 1, store->get(), *p, catch_up);
  REQUIRE(idle.ok());
  CHECK(idle->records == 0);
  auto still = (*store)->GetPartition(*p);
  REQUIRE(still.ok());
  CHECK(still->input_offset == tail.back().input_offset);
  CHECK(still->changelog_offset == 3700);
}

TEST_CASE("A changelog record that does not decode stops the restore and leaves the mark",
          "[state][integration]") {
  ClusterFixture fx;
  const std::string topic = "bad-changelog";
  REQUIRE(fx.cluster->CreateTopic(topic, 1, 3).ok());
  auto producer = kafka::Producer::Create(fx.config());
  REQUIRE(producer.ok());
  ProduceLog(**producer, topic, 0, MakeChanges(20, 5, 1, 21));
  REQUIRE((*producer)->Produce(topic, 0, "Fcust-x", "not a sealed blob").ok());  // no stamp
  REQUIRE((*producer)->Flush(kTestDeadline).ok());

  crmstream::testing::ScratchDir dir;
  StateStoreOptions options;
  options.path = dir.path() / "store";
  options.memory_cap_bytes = size_t{16} << 20;
  auto store = StateStore::Open(options);
  REQUIRE(store.ok());
  auto p = (*store)->Partition("in", 0);
  REQUIRE(p.ok());
  auto result = RestoreFromChangelog(fx.config(), topic, 0, store->get(), *p);
  REQUIRE_FALSE(result.ok());
  CHECK(result.status().code() == StatusCode::kCorruption);
  CHECK_THAT(result.status().message(), Catch::Contains("offset 20"));
  auto state = (*store)->GetPartition(*p);
  REQUIRE(state.ok());
  CHECK(state->restoring);  // half-restored state is marked, never served
}

}  // namespace
}  // namespace crmstream::state
