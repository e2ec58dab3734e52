// Engine runs compared with each other (tests of the delivery modes): runs
// of the engine over one shared input, each with its own group, state and
// output topics, on the embedded cluster or a real one; their outputs read
// back with read_committed and their state dumped from the store.
#pragma once

#include <librdkafka/rdkafka.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <span>
#include <thread>

#include "crmstream/common/crash_point.h"
#include "crmstream/generator/world_generator.h"
#include "crmstream/kafka/embedded_cluster.h"
#include "crmstream/kafka/handles.h"
#include "crmstream/kafka/partition_reader.h"
#include "crmstream/kafka/topic_admin.h"
#include "crmstream/runtime/stamped_outputs.h"
#include "crmstream/runtime/stream_engine.h"
#include "support/kafka_broker.h"
#include "support/require_ok.h"
#include "support/test_support.h"

namespace crmstream::runtime {

using Clock = std::chrono::steady_clock;

// A multiset of output records: "topic\tkey\tvalue" -> count.
using RecordCounts = std::map<std::string, int>;

inline std::array<std::string, kOutputKindCount> Topics(const std::string& prefix) {
  std::array<std::string, kOutputKindCount> t;
  for (int k = 0; k < kOutputKindCount; ++k) {
    t[k] = prefix + std::string(OutputKindName(static_cast<OutputKind>(k)));
  }
  return t;
}

// Every record of the topics, with the stamps seen per input partition.
struct TopicContents {
  RecordCounts records;
  // "application/topic/partition" -> the stamps' sequence numbers.
  std::map<std::string, std::vector<uint64_t>> sequences;
  size_t total = 0;
};

// A broker answers a transaction's commit once the commit is decided, and
// writes the markers that make its records readable after that: until they
// are written, a read_committed reader's end (the last stable offset) stops
// short of the records (for seconds after the broker was paused). Waits,
// bounded, until no partition has an undecided transaction: its last stable
// offset is its high watermark.
inline void WaitForStableEnds(const kafka::ClientConfig& config,
                              std::span<const kafka::TopicPartitionOffset> partitions) {
  auto client = [&](const char* isolation) {
    kafka::ClientConfig c = config;
    c.Set("isolation.level", isolation);
    auto conf = c.BuildConf();
    REQUIRE_OK(conf);
    char err[256];
    kafka::KafkaHandle rk(rd_kafka_new(RD_KAFKA_CONSUMER, conf->get(), err, sizeof(err)));
    REQUIRE(rk != nullptr);
    (void)conf->release();  // owned by the handle now
    return rk;
  };
  const kafka::KafkaHandle committed = client("read_committed");
  const kafka::KafkaHandle uncommitted = client("read_uncommitted");
  auto end_of = [](rd_kafka_t* rk, const kafka::TopicPartitionOffset& p) {
    int64_t low = 0, high = -1;
    rd_kafka_query_watermark_offsets(rk, p.topic.c_str(), p.partition, &low, &high, 5000);
    return high;
  };
  const auto start = Clock::now();
  const auto deadline = start + std::chrono::seconds(60);
  for (const auto& p : partitions) {
    while (end_of(committed.get(), p) != end_of(uncommitted.get(), p) && Clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
  const auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
  if (waited > std::chrono::seconds(1)) {
    WARN("waited " << waited.count() << " ms for the outputs' transaction markers");
  }
}

inline TopicContents ReadAll(const kafka::ClientConfig& config,
                             const std::array<std::string, kOutputKindCount>& topics,
                             const OutputPartitionCounts& counts) {
  std::vector<kafka::TopicPartitionOffset> from;
  for (int k = 0; k < kOutputKindCount; ++k) {
    for (int32_t q = 0; q < counts[k]; ++q) from.push_back({topics[k], q, kafka::kOffsetBeginning});
  }
  WaitForStableEnds(config, from);
  TopicContents out;
  Status st =
      kafka::ReadPartitionsToEnd(config, from, {}, nullptr, [&](const kafka::MessageView& m) {
        ++out.records[std::string(m.topic()) + "\t" + std::string(m.key()) + "\t" +
                      std::string(m.payload())];
        ++out.total;
        if (auto h = kafka::FindHeader(m, kOutputStampHeader)) {
          auto stamp = DecodeOutputStamp(*h);
          REQUIRE(stamp.has_value());
          out.sequences[std::string(stamp->application) + "/" + std::string(stamp->input_topic) +
                        "/" + std::to_string(stamp->input_partition)]
              .push_back(stamp->sequence);
        }
        return Status::OK();
      });
  REQUIRE_OK(st);
  return out;
}

struct EngineRun {
  std::string state_dir;
  std::string group;
  std::string output_prefix;
  config::Guarantee guarantee = config::Guarantee::kExactlyOnce;
  int input_partitions = 3;  // of the shared input topic: the same for every run of a fixture
  std::string input_topic = "eo.input";
};

inline config::EngineConfig EngineConfigFor(const std::string& bootstrap, const EngineRun& run) {
  config::EngineConfig cfg;
  cfg.state_dir = run.state_dir;
  cfg.inputs = {{run.input_topic, run.input_partitions}};
  cfg.kafka.properties["bootstrap.servers"] = bootstrap;
  cfg.kafka.group_id = run.group;
  cfg.commit_interval_ms = 100;
  cfg.guarantee = run.guarantee;
  const auto names = Topics(run.output_prefix);
  cfg.outputs.customer_scores.name = names[static_cast<int>(OutputKind::kCustomerScores)];
  cfg.outputs.churn_alerts.name = names[static_cast<int>(OutputKind::kChurnAlerts)];
  cfg.outputs.segments.name = names[static_cast<int>(OutputKind::kSegments)];
  cfg.outputs.anomalies.name = names[static_cast<int>(OutputKind::kAnomalies)];
  cfg.outputs.correlations.name = names[static_cast<int>(OutputKind::kCorrelations)];
  cfg.outputs.dead_letter.name = names[static_cast<int>(OutputKind::kDeadLetter)];
  cfg.outputs.associations.name = names[static_cast<int>(OutputKind::kAssociations)];
  cfg.outputs.recommendations.name = names[static_cast<int>(OutputKind::kRecommendations)];
  return cfg;
}

// The engine of the run in progress, for a thread that watches its counters
// (the engine is destroyed when its run ends: read under the lock).
class LiveEngine {
 public:
  void Set(const StreamEngine* engine) {
    std::lock_guard<std::mutex> lock(mu_);
    engine_ = engine;
  }
  // Records the engine in progress has received; -1 when none runs.
  int64_t received() const {
    std::lock_guard<std::mutex> lock(mu_);
    return engine_ ? static_cast<int64_t>(engine_->stats().received.load()) : -1;
  }

 private:
  mutable std::mutex mu_;
  const StreamEngine* engine_ = nullptr;
};

// One engine run to the end of the input, bounded by `within`; the Status
// it stopped with. `stopped`, if given, sees the engine after its run.
inline Status RunOnce(const config::EngineConfig& cfg, uint64_t* suppressed,
                      LiveEngine* live = nullptr,
                      std::chrono::seconds within = std::chrono::seconds(120),
                      const std::function<void(const StreamEngine&)>& stopped = {}) {
  pipeline::PipelineSpec spec;
  auto engine = StreamEngine::Create(cfg, spec);
  REQUIRE_OK(engine);
  if (live) live->Set(engine->get());
  std::atomic<bool> stop{false};
  Status status;
  RunOptions options;
  options.until_caught_up = true;
  std::atomic<bool> finished{false};
  std::thread runner([&] {
    status = (*engine)->Run(stop, options);
    finished.store(true);
  });
  // Run returns by itself once caught up; the deadline only bounds a failure.
  const auto deadline = Clock::now() + within;
  while (!finished.load() && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  CHECK(finished.load());
  stop.store(true);
  runner.join();
  if (live) live->Set(nullptr);
  if (suppressed) *suppressed += (*engine)->stats().suppressed_outputs.load();
  if (stopped) stopped(**engine);
  return status;
}

inline void RunUntilCaughtUp(const config::EngineConfig& cfg, uint64_t* suppressed) {
  REQUIRE_OK(RunOnce(cfg, suppressed));
}

// As a supervisor would: an engine that stops on a broker failure (outputs
// it could not deliver) is started again, at most `restarts` times.
inline int RunRestartingOnFailure(const config::EngineConfig& cfg, int restarts,
                                  uint64_t* suppressed, LiveEngine* live,
                                  std::chrono::seconds within = std::chrono::seconds(120)) {
  for (int attempt = 0; attempt <= restarts; ++attempt) {
    Status st = RunOnce(cfg, suppressed, live, within);
    if (st.ok()) return attempt;
    WARN("engine stopped: " << st.ToString() << "; starting it again");
  }
  FAIL("the engine kept failing");
  return restarts;
}

// The state families' entries (not the metadata, which holds per-run
// bookkeeping), as key -> value.
inline std::map<std::string, std::string> StateEntries(
    const std::string& state_dir, std::initializer_list<state::StateFamily> families = {
                                      state::StateFamily::kFeatures, state::StateFamily::kModels,
                                      state::StateFamily::kOffsets, state::StateFamily::kDedup}) {
  state::StateStoreOptions o;
  o.path = std::filesystem::path(state_dir) / state::kStoreSubdirectory;
  o.read_only = true;
  auto store = state::StateStore::Open(o);
  REQUIRE_OK(store);
  std::map<std::string, std::string> out;
  for (auto family : families) {
    REQUIRE((*store)
                ->ForEachEntry(
                    family,
                    [&](std::string_view k, std::string_view v) {
                      out[std::string(state::StateFamilyName(family)) + "/" + std::string(k)] =
                          std::string(v);
                      return Status::OK();
                    })
                .ok());
  }
  return out;
}

// An engine running on its own thread until Stop().
class BackgroundEngine {
 public:
  explicit BackgroundEngine(const config::EngineConfig& cfg, bool until_caught_up = false,
                            const pipeline::PipelineSpec& pipeline = {}) {
    auto engine = StreamEngine::Create(cfg, pipeline);
    REQUIRE_OK(engine);
    engine_ = std::move(engine).value();
    RunOptions options;
    options.until_caught_up = until_caught_up;
    thread_ = std::thread([this, options] {
      status_ = engine_->Run(stop_, options);
      finished_.store(true);
    });
  }
  ~BackgroundEngine() { (void)Stop(); }
  Status Stop() {
    stop_.store(true);
    if (thread_.joinable()) thread_.join();
    return status_;
  }
  // Bounded wait for the run to end by itself (until_caught_up).
  bool WaitFinished(std::chrono::seconds within) {
    const auto deadline = Clock::now() + within;
    while (!finished_.load() && Clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return finished_.load();
  }
  const StreamEngine& engine() const { return *engine_; }
  const EngineStats& stats() const { return engine_->stats(); }
  bool finished() const { return finished_.load(); }

 private:
  std::unique_ptr<StreamEngine> engine_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> finished_{false};
  Status status_;
  std::thread thread_;
};

// The next input offset each partition's state covers, from the offsets
// family, by the raw 8-byte partition prefix.
inline std::map<std::string, int64_t> CheckpointOffsets(
    const std::map<std::string, std::string>& entries) {
  std::map<std::string, int64_t> out;
  const std::string family =
      std::string(state::StateFamilyName(state::StateFamily::kOffsets)) + "/";
  for (const auto& [key, value] : entries) {
    if (key.rfind(family, 0) != 0) continue;
    auto offset = state::DecodeOffsetValue(value);
    REQUIRE_OK(offset);
    out[key.substr(family.size(), state::kPartitionPrefixBytes)] = *offset;
  }
  return out;
}

inline std::string PrefixOf(const std::string& key) {
  return key.substr(key.find('/') + 1, state::kPartitionPrefixBytes);
}

// Several instances' stores merged as their group left them: each
// partition's entries from the store whose checkpoint of it is the latest.
inline std::map<std::string, std::string> MergedState(const std::vector<std::string>& state_dirs) {
  std::vector<std::map<std::string, std::string>> stores;
  std::map<std::string, std::pair<int64_t, size_t>> owner;  // prefix -> (offset, store)
  for (const auto& dir : state_dirs) {
    stores.push_back(StateEntries(dir));
    for (const auto& [prefix, offset] : CheckpointOffsets(stores.back())) {
      auto [it, inserted] = owner.try_emplace(prefix, offset, stores.size() - 1);
      if (!inserted && offset > it->second.first) it->second = {offset, stores.size() - 1};
    }
  }
  std::map<std::string, std::string> merged;
  for (size_t i = 0; i < stores.size(); ++i) {
    for (const auto& [key, value] : stores[i]) {
      auto it = owner.find(PrefixOf(key));
      if (it != owner.end() && it->second.second == i) merged[key] = value;
    }
  }
  return merged;
}

// Until the group gave each instance a share of the input's `partitions`
// with its state restored (the embedded cluster's coordinator may take a
// few session timeouts to settle the group), at most until `deadline`.
inline bool WaitAllAssigned(std::initializer_list<const BackgroundEngine*> engines, int partitions,
                            Clock::time_point deadline) {
  const auto all_assigned = [&] {
    int total = 0;
    for (const BackgroundEngine* e : engines) {
      if (e->finished() || !e->engine().probe().state_restored()) return false;
      if (e->stats().partitions.load() == 0) return false;
      total += e->stats().partitions.load();
    }
    return total == partitions;
  };
  while (!all_assigned() && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return all_assigned();
}

// Until the stores of `state_dirs` together checkpointed every partition of
// `topic` to its end (as it is now), at most until `deadline`.
inline bool WaitCheckpointedToEnd(const kafka::ClientConfig& client, const std::string& topic,
                                  int partitions, const std::vector<std::string>& state_dirs,
                                  Clock::time_point deadline) {
  std::map<int32_t, int64_t> ends;
  std::vector<kafka::TopicPartitionOffset> inputs;
  for (int32_t p = 0; p < partitions; ++p) inputs.push_back({topic, p, kafka::kOffsetEnd});
  REQUIRE_OK(kafka::ReadPartitionsToEnd(
      client, inputs, {},
      [&](std::span<const kafka::PartitionEnd> e) {
        for (const auto& end : e) ends[end.partition] = end.end_offset;
        return Status::OK();
      },
      nullptr));
  const auto checkpointed_to_end = [&] {
    std::map<std::string, int64_t> latest;
    for (const auto& dir : state_dirs) {
      for (const auto& [prefix, offset] :
           CheckpointOffsets(StateEntries(dir, {state::StateFamily::kOffsets}))) {
        latest[prefix] = std::max(latest[prefix], offset);
      }
    }
    int64_t total = 0, want = 0;
    for (const auto& [prefix, offset] : latest) total += offset;
    for (const auto& [partition, end] : ends) want += end;
    return latest.size() == ends.size() && total == want;
  };
  bool done = checkpointed_to_end();
  while (!done && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    done = checkpointed_to_end();
  }
  return done;
}

// A cluster with a shared input topic and, per run, its own output topics.
struct EngineFixture {
  testing::ScratchDir dir;
  std::unique_ptr<kafka::EmbeddedCluster> cluster;
  std::string bootstrap;
  kafka::ClientConfig client;
  std::unique_ptr<generator::WorldGenerator> gen;
  std::unique_ptr<kafka::Producer> producer;

  std::string input_topic;

  // On the embedded cluster (its own, new), or on the real one `real` names.
  explicit EngineFixture(std::span<const EngineRun> runs, const testing::TestBroker* real = nullptr)
      : input_topic(runs.front().input_topic) {
    std::map<std::string, int> topics;  // the input is shared
    if (real == nullptr) {
      auto c = kafka::EmbeddedCluster::Create({});
      REQUIRE_OK(c);
      cluster = std::move(c).value();
      bootstrap = cluster->bootstrap_servers();
    } else {
      bootstrap = real->bootstrap_servers();
    }
    client.Set("bootstrap.servers", bootstrap);
    for (const auto& run : runs) {
      for (const auto& t : AllTopics(EngineConfigFor(bootstrap, run))) {
        topics[t.name] = t.partitions;
      }
    }
    if (cluster) {
      for (const auto& [name, partitions] : topics) {
        REQUIRE_OK(cluster->CreateTopic(name, partitions));
      }
    } else {
      std::vector<kafka::TopicSpec> specs;
      for (const auto& [name, partitions] : topics) specs.push_back({name, partitions});
      REQUIRE_OK_AND_ASSIGN(auto admin, kafka::TopicAdmin::Create(client));
      REQUIRE_OK(admin->EnsureTopics(specs));
    }
    generator::WorldOptions world;
    world.customers = 400;
    world.malformed_rate = 0.01;
    world.duplicate_rate = 0.02;
    auto g = generator::WorldGenerator::Create(world);
    REQUIRE_OK(g);
    gen = std::move(g).value();
    auto p = kafka::Producer::Create(client);
    REQUIRE_OK(p);
    producer = std::move(p).value();
  }

  void Produce(int n) {
    std::string key, value;
    for (int i = 0; i < n; ++i) {
      gen->Next(&key, &value);
      REQUIRE_OK(producer->Produce(input_topic, kafka::kPartitionUnassigned, key, value));
    }
    REQUIRE_OK(producer->Flush(std::chrono::seconds(30)));
  }

  std::string path(const char* name) const { return (dir.path() / name).string(); }
};

// Checks that two runs' outputs and states are identical, and that no
// output was produced twice.
inline void CheckSameResults(const kafka::ClientConfig& client, const EngineRun& a_run,
                             const EngineRun& b_run) {
  const OutputPartitionCounts counts{6, 3, 3, 3, 1, 3, 1, 3};
  TopicContents a = ReadAll(client, Topics(a_run.output_prefix), counts);
  TopicContents b = ReadAll(client, Topics(b_run.output_prefix), counts);
  REQUIRE(a.total > 500);  // enough outputs to compare
  CHECK(a.total == b.total);
  // Same records, keyed by kind rather than by the run's topic names.
  auto strip = [](const RecordCounts& in) {
    RecordCounts out;
    for (const auto& [k, n] : in) out[k.substr(k.find('.') + 1)] += n;
    return out;
  };
  const RecordCounts sa = strip(a.records), sb = strip(b.records);
  CHECK(sa == sb);
  int shown = 0;
  for (const auto& [record, n] : sa) {
    auto it = sb.find(record);
    const int other = it == sb.end() ? 0 : it->second;
    if (n != other && shown++ < 5)
      WARN(a_run.group << " x" << n << " vs x" << other << ": " << record.substr(0, 300));
  }
  for (const auto& [record, n] : sb) {
    if (!sa.count(record) && shown++ < 10) WARN(b_run.group << " only: " << record.substr(0, 300));
  }
  for (const auto* contents : {&a, &b}) {
    for (const auto& [source, seqs] : contents->sequences) {
      std::vector<uint64_t> sorted = seqs;
      std::sort(sorted.begin(), sorted.end());
      CHECK(std::adjacent_find(sorted.begin(), sorted.end()) == sorted.end());
    }
  }
  CHECK(StateEntries(a_run.state_dir) == StateEntries(b_run.state_dir));
}

// What an output is about, whatever its values: kind, key and the event
// time it speaks for ("as_of_ms"); for a dead letter (which has none) the
// record without the stream time it was rejected at ("received_at_ms"). At
// least once the models are refreshed, and that time advanced, per consumed
// batch, so those values follow the batching and differ between two correct
// runs.
inline std::string OutputIdentity(const std::string& record) {
  const auto number_after = [&](std::string_view field, size_t* begin, size_t* end) {
    const size_t at = record.find(field);
    if (at == std::string::npos) return false;
    *begin = at;
    *end = at + field.size();
    while (*end < record.size() && std::isdigit(static_cast<unsigned char>(record[*end]))) ++*end;
    return true;
  };
  size_t begin = 0, end = 0;
  if (number_after("\"as_of_ms\":", &begin, &end)) {
    const size_t digits = record.find(':', begin) + 1;
    return record.substr(0, record.find('\t', record.find('\t') + 1)) + "\t" +
           record.substr(digits, end - digits);
  }
  if (number_after("\"received_at_ms\":", &begin, &end)) {
    return record.substr(0, begin) + record.substr(end);
  }
  return record;
}

// At least once: every output of the fault-free run `straight` (by
// OutputIdentity) is on the faulted run's topics at least as often; repeats
// are allowed and counted (the figure returned); the state that does not
// depend on batch timing (features, offsets, dedup window) is the same.
// Customer scores are coalesced per commit (one record per customer
// carrying its latest event), so which intermediate ones appear follows the
// batching: each customer's latest must be there. Outputs a model decides
// (anomalies, segment changes, churn alerts, correlations) are left out:
// whether one is raised depends on the model's state at the time, which
// follows the batching too (two fault-free runs raise different ones).
// `compare_state` false: the outputs only (the caller compares states, e.g.
// several instances' stores merged).
inline int CheckNothingLost(const kafka::ClientConfig& client, const EngineRun& faulted,
                            const EngineRun& straight, bool compare_state = true) {
  const OutputPartitionCounts counts{6, 3, 3, 3, 1, 3, 1, 3};
  using Latest = std::map<std::string, std::string>;  // customer -> latest as_of_ms
  auto identities = [&](const EngineRun& run, Latest* latest) {
    RecordCounts out;
    for (const auto& [k, n] : ReadAll(client, Topics(run.output_prefix), counts).records) {
      const std::string record = k.substr(k.find('.') + 1);
      if (!record.starts_with(OutputKindName(OutputKind::kCustomerScores)) &&
          !record.starts_with(OutputKindName(OutputKind::kDeadLetter))) {
        continue;
      }
      const std::string identity = OutputIdentity(record);
      if (record.starts_with(OutputKindName(OutputKind::kCustomerScores))) {
        const size_t key = identity.find('\t') + 1, as_of = identity.rfind('\t') + 1;
        std::string& seen = (*latest)[identity.substr(key, as_of - 1 - key)];
        const std::string time = identity.substr(as_of);
        if (seen.size() < time.size() || (seen.size() == time.size() && seen < time)) seen = time;
        continue;
      }
      out[identity] += n;
    }
    return out;
  };
  Latest f_latest, s_latest;
  const RecordCounts f = identities(faulted, &f_latest), s = identities(straight, &s_latest);
  REQUIRE(s_latest.size() > 300);
  CHECK(f_latest == s_latest);
  int lost = 0, repeated = 0, total = 0;
  for (const auto& [identity, n] : s) {
    total += n;
    auto it = f.find(identity);
    const int got = it == f.end() ? 0 : it->second;
    if (got < n && lost++ < 5) WARN("lost x" << n - got << ": " << identity.substr(0, 300));
  }
  for (const auto& [identity, n] : f) {
    auto it = s.find(identity);
    repeated += n - (it == s.end() ? 0 : std::min(n, it->second));
  }
  REQUIRE(total > 20);
  CHECK(lost == 0);
  const auto families = {state::StateFamily::kFeatures, state::StateFamily::kOffsets,
                         state::StateFamily::kDedup};
  if (compare_state) {
    CHECK(StateEntries(faulted.state_dir, families) == StateEntries(straight.state_dir, families));
  }
  WARN(faulted.group << ": " << s_latest.size() << " customers' latest scores, " << total
                     << " dead letters in the fault-free run, " << lost << " of them lost; "
                     << repeated << " more (repeats)");
  return repeated;
}

// The engine as a user runs it: the crmstream binary, in a child process
// (a crash point ends the whole process), on a configuration file written
// from `cfg` with the product's pipeline.
inline void WriteEngineYaml(const config::EngineConfig& cfg, const std::filesystem::path& file) {
  std::ofstream out(file);
  out << "kafka:\n  group_id: " << cfg.kafka.group_id << "\n  properties:\n";
  for (const auto& [key, value] : cfg.kafka.properties) {
    out << "    " << key << ": \"" << value << "\"\n";
  }
  // A restarted engine waits for its crashed predecessor to leave the group:
  // the shortest session a broker accepts by default
  // (group.min.session.timeout.ms).
  out << "    session.timeout.ms: \"6000\"\n";
  out << "inputs:\n";
  for (const auto& t : cfg.inputs)
    out << "  - {name: " << t.name << ", partitions: " << t.partitions << "}\n";
  out << "outputs:\n";
  const std::array<std::pair<const char*, const config::TopicSpec*>, kOutputKindCount> outputs{
      {{"customer_scores", &cfg.outputs.customer_scores},
       {"churn_alerts", &cfg.outputs.churn_alerts},
       {"segments", &cfg.outputs.segments},
       {"anomalies", &cfg.outputs.anomalies},
       {"correlations", &cfg.outputs.correlations},
       {"dead_letter", &cfg.outputs.dead_letter},
       {"associations", &cfg.outputs.associations},
       {"recommendations", &cfg.outputs.recommendations}}};
  for (const auto& [field, topic] : outputs) {
    out << "  " << field << ": {name: " << topic->name << ", partitions: " << topic->partitions
        << "}\n";
  }
  out << "processing:\n  guarantee: " << config::GuaranteeName(cfg.guarantee) << "\n";
  out << "state_dir: " << cfg.state_dir << "\n";
  out << "state:\n  memory_cap_mb: " << cfg.state.memory_cap_mb << "\n";
  out << "pipeline: " << (testing::SourceDir() / "pipelines" / "crm.yaml").string() << "\n";
  out << "metrics_port: 0\nstatus_interval_ms: 0\n";
  out << "commit_interval_ms: " << cfg.commit_interval_ms << "\n";
  out << "worker_threads: " << cfg.worker_threads << "\n";
  if (cfg.producer_linger_ms) out << "producer_linger_ms: " << *cfg.producer_linger_ms << "\n";
}

struct BinaryRun {
  testing::ChildExit exit;
  std::string log;
};

// `crmstream run --until-caught-up`; `crash_at` arms a crash point ("" none).
inline BinaryRun RunEngineBinary(const std::filesystem::path& config, const std::string& crash_at,
                                 const std::filesystem::path& log) {
  const std::vector<std::string> argv{CRMSTREAM_BINARY, "run", "--config", config.string(),
                                      "--until-caught-up"};
  const std::vector<std::string> env{std::string(crash_point::kEnvironmentVariable) + "=" +
                                     crash_at};
  BinaryRun run;
  run.exit = testing::RunChild(argv, env, log, std::chrono::seconds(180));
  run.log = testing::ReadWholeFile(log);
  return run;
}

// RunEngineBinary, checked: with no crash point armed ("") it must end
// well, with one it must end at that point.
inline BinaryRun RunEngineBinaryChecked(const std::filesystem::path& config,
                                        const std::string& crash_at,
                                        const std::filesystem::path& log) {
  BinaryRun run = RunEngineBinary(config, crash_at, log);
  INFO((crash_at.empty() ? "run" : "run crashed at " + crash_at) << ":\n" << run.log);
  if (crash_at.empty()) {
    REQUIRE(run.exit.exited(0));
  } else {
    REQUIRE(run.exit.exited(crash_point::kCrashPointExitStatus));
    CHECK_THAT(run.log, Catch::Contains("crash point " + crash_at + " reached"));
  }
  return run;
}

// What the final line of `crmstream run` says it dropped as delivered before
// the restart ("..., N already delivered before a restart").
inline std::optional<uint64_t> SuppressedInLog(const std::string& log) {
  const std::string tail = " already delivered before a restart";
  const size_t end = log.rfind(tail);
  if (end == std::string::npos) return std::nullopt;
  size_t begin = end;
  while (begin > 0 && std::isdigit(static_cast<unsigned char>(log[begin - 1]))) --begin;
  if (begin == end) return std::nullopt;
  return std::stoull(log.substr(begin, end - begin));
}

}  // namespace crmstream::runtime
