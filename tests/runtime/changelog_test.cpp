// Changelog topics: a partition's state restored from its changelog alone
// or over a stale local store, and a second instance joining a running one
// (the partitions it takes come with their state).
#include "runtime/changelog.h"

#include <filesystem>
#include <fstream>
#include <set>

#include "engine_runs.h"

namespace crmstream::runtime {
namespace {

namespace fs = std::filesystem;

struct ChangelogContents {
  size_t records = 0;
  size_t largest_value = 0;
  size_t chunked_values = 0;  // records announcing a value split into chunks
};

ChangelogContents ReadChangelog(const kafka::ClientConfig& client, const std::string& topic,
                                int partitions) {
  std::vector<kafka::TopicPartitionOffset> from;
  for (int32_t p = 0; p < partitions; ++p) from.push_back({topic, p, kafka::kOffsetBeginning});
  ChangelogContents out;
  REQUIRE_OK(
      kafka::ReadPartitionsToEnd(client, from, {}, nullptr, [&](const kafka::MessageView& m) {
        ++out.records;
        out.largest_value = std::max(out.largest_value, m.payload().size());
        if (kafka::FindHeader(m, kChangelogChunksHeader)) ++out.chunked_values;
        REQUIRE(kafka::FindHeader(m, kChangelogOffsetHeader).has_value());
        return Status::OK();
      }));
  return out;
}

// Every entry of the state families and the offsets of a store, key -> value.
std::map<std::string, std::string> Entries(const state::StateStore& store) {
  std::map<std::string, std::string> out;
  for (auto family : {state::StateFamily::kFeatures, state::StateFamily::kModels,
                      state::StateFamily::kOffsets, state::StateFamily::kDedup}) {
    REQUIRE_OK(store.ForEachEntry(family, [&](std::string_view k, std::string_view v) {
      out[std::string(state::StateFamilyName(family)) + "/" + std::string(k)] = std::string(v);
      return Status::OK();
    }));
  }
  return out;
}

std::unique_ptr<state::StateStore> OpenStore(const fs::path& path) {
  state::StateStoreOptions o;
  o.path = path;
  o.memory_cap_bytes = size_t{32} << 20;
  auto store = state::StateStore::Open(o);
  REQUIRE_OK(store);
  return std::move(store).value();
}

}  // namespace

TEST_CASE(
    "Changelog records restore a partition's state: chunked values, tombstones, nothing beyond "
    "the committed offset, and a tail over a local checkpoint",
    "[runtime]") {
  testing::ScratchDir scratch;
  auto cluster = kafka::EmbeddedCluster::Create({});
  REQUIRE_OK(cluster);
  const std::string topic = "app-in-changelog";
  REQUIRE_OK((*cluster)->CreateTopic(topic, 2));
  kafka::ClientConfig client;
  client.Set("bootstrap.servers", (*cluster)->bootstrap_servers());
  REQUIRE_OK_AND_ASSIGN(auto producer, kafka::Producer::Create(client));
  constexpr size_t kChunk = 1000;
  ChangelogWriter writer(producer.get(), kChunk);

  auto source = OpenStore(scratch.path() / "source");
  REQUIRE_OK_AND_ASSIGN(const state::PartitionKey p, source->Partition("in", 1));
  REQUIRE_OK_AND_ASSIGN(const state::PartitionKey other, source->Partition("in", 0));
  std::string big(3500, 'x');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>('a' + i * 7 % 26);
  std::vector<std::map<std::string, std::string>> after;  // the source after each checkpoint
  const std::array<int64_t, 3> offsets{10, 20, 30};
  for (int step = 0; step < 3; ++step) {
    state::CheckpointBatch batch = source->NewBatch();
    // Another partition's changes in the same batch stay out of this changelog partition.
    batch.PutFeatures(other, "elsewhere", "not mirrored here");
    const size_t first = batch.entry_count();
    if (step == 0) {
      batch.PutFeatures(p, "c1", "features of c1 v1");
      batch.PutFeatures(p, "c2", "features of c2");
      batch.PutCustomerModel(p, "c2", "model of c2");
      batch.PutPartitionModel(p, "big", big);  // 4 chunks
      batch.PutDedupWindow(p, "dedup v1");
      batch.PutLabelDeadline(p, 5000, 42, "c1");
    } else if (step == 1) {
      batch.DeleteCustomer(p, "c2");
      batch.PutPartitionModel(p, "big", big.substr(0, 2100));  // 3 chunks over older ones
      batch.DeleteLabelDeadline(p, 5000, 42, "c1");
      batch.PutDedupWindow(p, "dedup v2");
    } else {
      batch.PutFeatures(p, "c1", "features of c1 v3");
      batch.PutPartitionModel(p, "big", "small now");
    }
    batch.SetInputOffset(p, offsets[static_cast<size_t>(step)]);
    REQUIRE_OK(writer.Append(batch, first, p, topic, 1, offsets[static_cast<size_t>(step)]));
    REQUIRE_OK(source->Commit(&batch));
    after.push_back(Entries(*source));
  }
  REQUIRE_OK(producer->Flush(std::chrono::seconds(30)));
  CHECK(writer.records() > 0);

  // Partition 1 of the changelog only, every record small enough, some chunked.
  size_t records = 0, chunked = 0, largest = 0;
  const kafka::TopicPartitionOffset both[] = {{topic, 0, kafka::kOffsetBeginning},
                                              {topic, 1, kafka::kOffsetBeginning}};
  REQUIRE_OK(
      kafka::ReadPartitionsToEnd(client, both, {}, nullptr, [&](const kafka::MessageView& m) {
        CHECK(m.partition() == 1);
        ++records;
        largest = std::max(largest, m.payload().size());
        if (kafka::FindHeader(m, kChangelogChunksHeader)) ++chunked;
        return Status::OK();
      }));
  CHECK(records == writer.records());
  CHECK(largest <= kChunk);
  CHECK(chunked == 2);

  // The source's entries of partition p only (the other partition is not restored).
  const auto only_p = [&](const std::map<std::string, std::string>& entries) {
    std::string prefix;
    state::AppendPartitionPrefix(p, &prefix);
    std::map<std::string, std::string> out;
    for (const auto& [k, v] : entries) {
      if (k.compare(k.find('/') + 1, prefix.size(), prefix) == 0) out[k] = v;
    }
    return out;
  };
  for (int up_to = 0; up_to < 3; ++up_to) {
    auto target = OpenStore(scratch.path() / ("up-to-" + std::to_string(up_to)));
    REQUIRE_OK_AND_ASSIGN(const state::PartitionKey tp, target->Partition("in", 1));
    REQUIRE(tp == p);
    ChangelogRestoreOptions o;
    o.changelog_topic = topic;
    o.partition = 1;
    o.up_to_offset = offsets[static_cast<size_t>(up_to)];
    REQUIRE_OK_AND_ASSIGN(const ChangelogRestoreResult r,
                          RestoreFromChangelog(client, target.get(), tp, o));
    CHECK(r.input_offset == offsets[static_cast<size_t>(up_to)]);
    CHECK(r.records_read == records);
    CHECK((r.records_beyond > 0) == (up_to < 2));
    CHECK(Entries(*target) == only_p(after[static_cast<size_t>(up_to)]));
    REQUIRE_OK_AND_ASSIGN(const state::PartitionState ps, target->GetPartition(tp));
    CHECK_FALSE(ps.restoring);
    if (up_to == 0) {
      // The tail over this local checkpoint at offset 10 brings it to 30.
      o.after_offset = 10;
      o.up_to_offset = 30;
      REQUIRE_OK_AND_ASSIGN(const ChangelogRestoreResult tail,
                            RestoreFromChangelog(client, target.get(), tp, o));
      CHECK(tail.input_offset == 30);
      CHECK(tail.records_applied < r.records_read);
      CHECK(Entries(*target) == only_p(after[2]));
    }
  }

  // A full restore in spans of a record or two, each span's table files
  // ingested over the previous ones (a later span's delete of an earlier
  // span's put included), or each span written through the memtable: the
  // same state as the source's, and no table file left behind.
  for (const bool ingest : {true, false}) {
    INFO("ingest_tables " << ingest);
    const fs::path path = scratch.path() / (ingest ? "spans-ingested" : "spans-written");
    auto target = OpenStore(path);
    REQUIRE_OK_AND_ASSIGN(const state::PartitionKey tp, target->Partition("in", 1));
    ChangelogRestoreOptions o;
    o.changelog_topic = topic;
    o.partition = 1;
    o.up_to_offset = 30;
    o.buffer_bytes = 16;
    o.ingest_tables = ingest;
    REQUIRE_OK_AND_ASSIGN(const ChangelogRestoreResult r,
                          RestoreFromChangelog(client, target.get(), tp, o));
    CHECK(r.input_offset == 30);
    CHECK(Entries(*target) == only_p(after[2]));
    CHECK_FALSE(fs::exists(path / state::kRestoreTablesSubdirectory));
    // And again over that state and a stray customer (a restore cut short
    // is redone from nothing): the stray one goes.
    state::CheckpointBatch stray = target->NewBatch();
    stray.PutFeatures(tp, "stray", "not in the changelog");
    REQUIRE_OK(target->Commit(&stray));
    REQUIRE(Entries(*target) != only_p(after[2]));
    REQUIRE_OK(RestoreFromChangelog(client, target.get(), tp, o));
    CHECK(Entries(*target) == only_p(after[2]));
    if (!ingest) continue;
    // A span's table files that cannot be written (a file where their
    // directory goes), while the next span is read: the restore fails with
    // that error, the partition stays marked restoring, and once the
    // obstacle is gone a restore brings the same state.
    {
      std::ofstream obstacle(path / state::kRestoreTablesSubdirectory);
      obstacle << "not a directory";
    }
    const auto failed = RestoreFromChangelog(client, target.get(), tp, o);
    REQUIRE_FALSE(failed.ok());
    CHECK_THAT(failed.status().ToString(), Catch::Contains("restore's table directory"));
    REQUIRE_OK_AND_ASSIGN(const state::PartitionState marked, target->GetPartition(tp));
    CHECK(marked.restoring);
    fs::remove(path / state::kRestoreTablesSubdirectory);
    REQUIRE_OK(RestoreFromChangelog(client, target.get(), tp, o));
    CHECK(Entries(*target) == only_p(after[2]));
    REQUIRE_OK_AND_ASSIGN(const state::PartitionState done, target->GetPartition(tp));
    CHECK_FALSE(done.restoring);
  }
}

TEST_CASE("A store deleted is restored from the changelog alone, identical to the lost one",
          "[runtime][integration]") {
  testing::ScratchDir scratch;
  EngineRun run{(scratch.path() / "s").string(), "changelog-alone", "cl."};
  run.guarantee = config::Guarantee::kAtLeastOnce;
  const std::array<EngineRun, 1> runs{run};
  EngineFixture fx(runs);
  const config::EngineConfig cfg = EngineConfigFor(fx.bootstrap, run);
  const OutputPartitionCounts counts{6, 3, 3, 3, 1, 3, 1, 3};
  fx.Produce(3000);
  RunUntilCaughtUp(cfg, nullptr);
  const auto lost = StateEntries(run.state_dir);
  const size_t outputs_before = ReadAll(fx.client, Topics("cl."), counts).total;
  REQUIRE(lost.size() > 300);

  // No record over the chunk size (under brokers' 1 MB message limit).
  const ChangelogContents changelog =
      ReadChangelog(fx.client, ChangelogTopicName(cfg, run.input_topic), run.input_partitions);
  CHECK(changelog.records >= lost.size() - CheckpointOffsets(lost).size());
  CHECK(changelog.largest_value <= kChangelogChunkBytes);

  fs::remove_all(fs::path(run.state_dir) / state::kStoreSubdirectory);
  {
    BackgroundEngine restored(cfg, /*until_caught_up=*/true);
    REQUIRE(restored.WaitFinished(std::chrono::seconds(120)));
    REQUIRE_OK(restored.Stop());
    // Nothing was processed again: the state came from the changelog.
    CHECK(restored.stats().received.load() == 0);
    CHECK(restored.stats().changelog_restored_records.load() >= changelog.records / 2);
    CHECK(restored.stats().changelog_restores_in_progress.load() == 0);
  }
  // Every value byte for byte: the same features, models, label index,
  // dedup window and input offsets (sealed blobs: equal bytes decode equal).
  const auto restored = StateEntries(run.state_dir);
  CHECK(restored.size() == lost.size());
  CHECK(restored == lost);
  CHECK(ReadAll(fx.client, Topics("cl."), counts).total == outputs_before);
}

// At least once, the group's offsets follow the store asynchronously: a
// commit that never landed (an instance killed right after its checkpoint)
// leaves the group behind the changelog. The next owner restores past it and
// has the checkpoint's offsets committed, with no record left to process.
TEST_CASE(
    "At least once: a partition restored past the group's committed offset has the checkpoint's "
    "offset committed",
    "[runtime][integration][kafka]") {
  CRMSTREAM_USE_BROKER(testing::RealBroker, broker);
  testing::ScratchDir scratch;
  EngineRun run;
  run.state_dir = (scratch.path() / "s").string();
  run.group = broker.Name("restored-offsets");
  run.output_prefix = broker.Name("restored-offsets") + ".";
  run.guarantee = config::Guarantee::kAtLeastOnce;
  run.input_topic = broker.Name("restored-offsets.input");
  const std::array<EngineRun, 1> runs{run};
  EngineFixture fx(runs, &broker);
  const config::EngineConfig cfg = EngineConfigFor(fx.bootstrap, run);
  fx.Produce(2000);
  RunUntilCaughtUp(cfg, nullptr);

  std::vector<kafka::TopicPartition> tps;
  for (int32_t p = 0; p < run.input_partitions; ++p) tps.push_back({run.input_topic, p});
  const auto committed = [&] {
    REQUIRE_OK_AND_ASSIGN(auto consumer, kafka::Consumer::Create(fx.client, run.group));
    REQUIRE_OK_AND_ASSIGN(auto offsets, consumer->Committed(tps, std::chrono::seconds(30)));
    std::vector<int64_t> out;
    for (const auto& o : offsets) out.push_back(o.offset);
    return out;
  };
  const std::vector<int64_t> ends = committed();
  for (int64_t end : ends) REQUIRE(end > 0);
  {
    // The group back at the beginning, as if its commits had never landed.
    REQUIRE_OK_AND_ASSIGN(auto consumer, kafka::Consumer::Create(fx.client, run.group));
    std::vector<kafka::TopicPartitionOffset> beginning;
    for (const auto& tp : tps) beginning.push_back({tp.topic, tp.partition, 0});
    REQUIRE_OK(consumer->CommitOffsets(beginning, /*async=*/false));
  }
  REQUIRE(committed() == std::vector<int64_t>(tps.size(), 0));
  fs::remove_all(fs::path(run.state_dir) / state::kStoreSubdirectory);
  {
    BackgroundEngine restored(cfg, /*until_caught_up=*/true);
    REQUIRE(restored.WaitFinished(std::chrono::seconds(120)));
    REQUIRE_OK(restored.Stop());
    CHECK(restored.stats().received.load() == 0);
    CHECK(restored.stats().changelog_restored_records.load() > 0);
  }
  CHECK(committed() == ends);
}

TEST_CASE(
    "A restore cut short by a crash before its writes are on disk is done again on the next "
    "start, identical to the lost state",
    "[runtime][integration]") {
  // Before the end: every change ingested (or written without the WAL), the
  // mark still set. Before an ingest: the table files written, not ingested.
  const std::string_view point =
      GENERATE(crash_point::kRestoreBeforeEnd, crash_point::kRestoreBeforeIngest);
  INFO("crash point " << point);
  testing::ScratchDir scratch;
  EngineRun run{(scratch.path() / "s").string(), "changelog-crash", "cc."};
  run.guarantee = config::Guarantee::kAtLeastOnce;
  const std::array<EngineRun, 1> runs{run};
  EngineFixture fx(runs);
  const fs::path config = scratch.path() / "engine.yaml";
  WriteEngineYaml(EngineConfigFor(fx.bootstrap, run), config);
  fx.Produce(3000);
  RunEngineBinaryChecked(config, "", scratch.path() / "first.log");
  const auto lost = StateEntries(run.state_dir);
  const auto lost_offsets = CheckpointOffsets(lost);
  REQUIRE(lost_offsets.size() == static_cast<size_t>(run.input_partitions));
  fs::remove_all(fs::path(run.state_dir) / state::kStoreSubdirectory);

  // The engine binary ends as a crash would in the second partition's
  // restore; the first partition's restore had ended.
  const BinaryRun crash =
      RunEngineBinary(config, std::string(point) + ":2", scratch.path() / "crash.log");
  INFO("crash run:\n" << crash.log);
  REQUIRE(crash.exit.exited(crash_point::kCrashPointExitStatus));
  CHECK_THAT(crash.log,
             Catch::Contains("crash point " + std::string(point) + " reached (visit 2)"));
  {
    state::StateStoreOptions o;
    o.path = fs::path(run.state_dir) / state::kStoreSubdirectory;
    o.read_only = true;
    REQUIRE_OK_AND_ASSIGN(auto store, state::StateStore::Open(o));
    REQUIRE_OK_AND_ASSIGN(const auto partitions, store->ListPartitions());
    size_t restoring = 0;
    for (const auto& ps : partitions) restoring += ps.restoring ? 1 : 0;
    CHECK(restoring == 1);
  }
  // Only the finished restore's offsets are there, with all of its state.
  const auto after_crash = StateEntries(run.state_dir);
  const auto crash_offsets = CheckpointOffsets(after_crash);
  REQUIRE(crash_offsets.size() == 1);
  const auto of_finished = [&](const std::map<std::string, std::string>& entries) {
    std::map<std::string, std::string> out;
    for (const auto& [k, v] : entries) {
      if (PrefixOf(k) == crash_offsets.begin()->first) out[k] = v;
    }
    return out;
  };
  CHECK(of_finished(after_crash) == of_finished(lost));

  // The next start restores the marked partition again (and the third).
  const BinaryRun restart = RunEngineBinaryChecked(config, "", scratch.path() / "restart.log");
  CHECK_THAT(restart.log, Catch::Contains("restored from the changelog"));
  const auto restored = StateEntries(run.state_dir);
  CHECK(restored.size() == lost.size());
  CHECK(restored == lost);
  CHECK_FALSE(fs::exists(fs::path(run.state_dir) / state::kStoreSubdirectory /
                         state::kRestoreTablesSubdirectory));
}

TEST_CASE("A stale local store catches up from the changelog's tail", "[runtime][integration]") {
  testing::ScratchDir scratch;
  EngineRun run{(scratch.path() / "s").string(), "changelog-tail", "ct."};
  run.guarantee = config::Guarantee::kAtLeastOnce;
  EngineRun reference{(scratch.path() / "ref").string(), "changelog-tail-ref", "ctr."};
  reference.guarantee = config::Guarantee::kAtLeastOnce;
  const std::array<EngineRun, 2> runs{run, reference};
  EngineFixture fx(runs);
  const config::EngineConfig cfg = EngineConfigFor(fx.bootstrap, run);
  fx.Produce(2000);
  RunUntilCaughtUp(cfg, nullptr);
  // This copy of the store stops here, as an instance whose partitions
  // went elsewhere.
  const fs::path stale = scratch.path() / "stale";
  fs::copy(run.state_dir, stale, fs::copy_options::recursive);
  const auto stale_offsets = CheckpointOffsets(StateEntries(stale.string()));
  fx.Produce(2000);
  RunUntilCaughtUp(cfg, nullptr);
  const auto latest = StateEntries(run.state_dir);

  config::EngineConfig stale_cfg = cfg;
  stale_cfg.state_dir = stale.string();
  {
    BackgroundEngine back(stale_cfg, /*until_caught_up=*/true);
    REQUIRE(back.WaitFinished(std::chrono::seconds(120)));
    REQUIRE_OK(back.Stop());
    CHECK(back.stats().received.load() == 0);
    CHECK(back.stats().changelog_restored_records.load() > 0);
  }
  const auto caught_up = StateEntries(stale.string());
  for (const auto& [prefix, offset] : CheckpointOffsets(caught_up)) {
    CHECK(offset > stale_offsets.at(prefix));
  }
  CHECK(caught_up == latest);
  // And both equal an uninterrupted run's state, although at least once the
  // batching differs (two runs here, one there): every family, the models
  // too (the behaviour detector's episodes and budget are decided per event
  // in event time).
  RunUntilCaughtUp(EngineConfigFor(fx.bootstrap, reference), nullptr);
  const auto uninterrupted = StateEntries(reference.state_dir);
  CHECK(uninterrupted.size() == latest.size());
  CHECK(uninterrupted == latest);
}

TEST_CASE(
    "A second instance joins a running one: it takes its share with its state, both keep "
    "processing, and together they equal one uninterrupted instance",
    "[runtime][integration]") {
  testing::ScratchDir scratch;
  // exactly_once on the embedded cluster: stamped outputs.
  EngineRun first{(scratch.path() / "first").string(), "scale-out", "so."};
  EngineRun reference{(scratch.path() / "ref").string(), "scale-out-ref", "sor."};
  const std::array<EngineRun, 2> runs{first, reference};
  EngineFixture fx(runs);
  const config::EngineConfig cfg = EngineConfigFor(fx.bootstrap, first);
  config::EngineConfig second_cfg = cfg;
  second_cfg.state_dir = (scratch.path() / "second").string();

  fx.Produce(3000);
  BackgroundEngine a(cfg);
  const auto deadline = Clock::now() + std::chrono::seconds(90);
  while (a.stats().received.load() < 1500 && Clock::now() < deadline && !a.finished()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  REQUIRE(a.stats().received.load() >= 1500);
  BackgroundEngine b(second_cfg);
  REQUIRE(WaitAllAssigned({&a, &b}, first.input_partitions, deadline + std::chrono::seconds(60)));
  const uint64_t a_before = a.stats().received.load();
  const uint64_t b_before = b.stats().received.load();
  fx.Produce(3000);
  const bool done = WaitCheckpointedToEnd(fx.client, fx.input_topic, first.input_partitions,
                                          {first.state_dir, second_cfg.state_dir},
                                          deadline + std::chrono::seconds(120));
  INFO("first: partitions " << a.stats().partitions.load() << " received "
                            << a.stats().received.load());
  INFO("second: partitions " << b.stats().partitions.load() << " received "
                             << b.stats().received.load());
  REQUIRE(done);
  // Both kept processing: the second took partitions with their state from
  // the changelog (the input was not processed again from its beginning).
  CHECK(b.stats().changelog_restored_records.load() > 0);
  CHECK(a.stats().received.load() > a_before);
  CHECK(b.stats().received.load() > b_before);
  CHECK(b.stats().received.load() < 6000);
  REQUIRE_OK(b.Stop());
  REQUIRE_OK(a.Stop());

  RunUntilCaughtUp(EngineConfigFor(fx.bootstrap, reference), nullptr);
  const auto merged = MergedState({first.state_dir, second_cfg.state_dir});
  const auto expected = StateEntries(reference.state_dir);
  REQUIRE(expected.size() > 300);
  CHECK(merged.size() == expected.size());
  CHECK(merged == expected);

  // Every output of the uninterrupted instance is there (at least once).
  const OutputPartitionCounts counts{6, 3, 3, 3, 1, 3, 1, 3};
  const TopicContents got = ReadAll(fx.client, Topics("so."), counts);
  const TopicContents want = ReadAll(fx.client, Topics("sor."), counts);
  auto by_kind = [](const RecordCounts& in) {
    RecordCounts out;
    for (const auto& [k, n] : in) out[k.substr(k.find('.') + 1)] += n;
    return out;
  };
  const RecordCounts g = by_kind(got.records), w = by_kind(want.records);
  REQUIRE(want.total > 1000);
  size_t missing = 0, repeated = 0;
  for (const auto& [record, n] : w) {
    auto it = g.find(record);
    if (it == g.end()) {
      if (missing++ < 5) WARN("missing: " << record.substr(0, 300));
    } else if (it->second > n) {
      ++repeated;
    }
  }
  CHECK(missing == 0);
  // Stamped outputs: what a predecessor delivered is not delivered again.
  CHECK(repeated == 0);
  CHECK(got.total == want.total);
}

}  // namespace crmstream::runtime
