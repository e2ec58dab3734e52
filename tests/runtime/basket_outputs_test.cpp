// The co-purchase rules published by the engine (crm.associations), end to
// end: the UCI Online Retail invoice lines produced into the embedded
// cluster as input events (InvoiceNo the order, StockCode the item, as
// pipelines/online-retail.yaml maps them), the engine consuming them, and an
// independent consumer reading the snapshots back. Every snapshot must equal
// a batch pair count, computed here, over the baskets of its window.
#include <simdjson.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cmath>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "crmstream/common/json_writer.h"
#include "crmstream/evaluation/retail_transactions.h"
#include "crmstream/kafka/embedded_cluster.h"
#include "crmstream/runtime/kafka_wiring.h"
#include "crmstream/runtime/stream_engine.h"
#include "pipeline/schema_validation.h"
#include "support/require_ok.h"
#include "support/test_support.h"

namespace crmstream::runtime {
namespace {

using Clock = std::chrono::steady_clock;
constexpr int64_t kDayMs = 86'400'000;

struct BatchRule {
  uint32_t pair_count = 0;
  uint32_t antecedent_count = 0;
  uint32_t consequent_count = 0;
  double support = 0, confidence = 0, lift = 0;
};

struct BatchSnapshot {
  uint64_t baskets = 0;
  std::map<std::pair<std::string, std::string>, BatchRule> rules;
};

// The rules of the baskets whose first line lies in (as_of - window, as_of],
// from the purchase lines up to the one that brought the stream's time to
// as_of: a plain pair count over sets of items.
BatchSnapshot BatchRules(const std::vector<evaluation::RetailLine>& purchases, int64_t as_of,
                         int64_t window_ms, const models::RuleFloors& floors) {
  std::map<std::string, std::pair<int64_t, std::set<std::string>>> orders;
  int64_t latest = INT64_MIN;
  for (const evaluation::RetailLine& l : purchases) {
    if (latest >= as_of) break;
    latest = std::max(latest, l.timestamp_ms);
    auto [it, added] = orders.try_emplace(std::string(l.invoice));
    if (added) it->second.first = l.timestamp_ms;
    it->second.second.emplace(l.stock_code);
  }
  REQUIRE(latest == as_of);
  BatchSnapshot out;
  std::map<std::string, uint32_t> item_counts;
  std::map<std::pair<std::string, std::string>, uint32_t> pair_counts;
  for (const auto& [order, basket] : orders) {
    if (basket.first <= as_of - window_ms || basket.first > as_of) continue;
    ++out.baskets;
    for (const std::string& a : basket.second) {
      ++item_counts[a];
      for (const std::string& b : basket.second) {
        if (a != b) ++pair_counts[{a, b}];  // both directions
      }
    }
  }
  const double baskets = static_cast<double>(out.baskets);
  for (const auto& [pair, n] : pair_counts) {
    BatchRule r;
    r.pair_count = n;
    r.antecedent_count = item_counts[pair.first];
    r.consequent_count = item_counts[pair.second];
    r.support = n / baskets;
    r.confidence = static_cast<double>(n) / r.antecedent_count;
    r.lift = r.confidence / (r.consequent_count / baskets);
    if (n >= floors.min_pair_count && r.support >= floors.min_support &&
        r.confidence >= floors.min_confidence && r.lift >= floors.min_lift) {
      out.rules.emplace(pair, r);
    }
  }
  return out;
}

// One input event per invoice line, as the online-retail feed maps it.
std::string EventJson(const evaluation::RetailLine& l, size_t index) {
  return evaluation::RetailEventJson(l, index);
}

TEST_CASE("Engine: crm.associations snapshots equal a batch pair count over their window",
          "[runtime][associations][integration][data]") {
  SKIP_WITHOUT_DATA(data_dir);
  auto data = evaluation::LoadRetailTransactions(data_dir);
  REQUIRE_OK(data);
  // The first two weeks: 20,000 lines, a dozen daily snapshots of a 7-day
  // window that slides over them.
  constexpr size_t kLines = 20'000;
  REQUIRE(data->lines.size() > kLines);
  std::vector<evaluation::RetailLine> lines(data->lines.begin(), data->lines.begin() + kLines);
  std::vector<evaluation::RetailLine> purchases;
  for (const auto& l : lines) {
    if (l.purchase()) purchases.push_back(l);
  }

  testing::ScratchDir dir;
  auto cluster = kafka::EmbeddedCluster::Create({});
  REQUIRE_OK(cluster);
  config::EngineConfig cfg;
  cfg.state_dir = dir.path().string();
  cfg.inputs = {{"crm.interactions", 1}};  // one partition: one window for the whole shop
  cfg.kafka.properties["bootstrap.servers"] = (*cluster)->bootstrap_servers();
  // The basket models' blobs are whole: a checkpoint a second, not five.
  cfg.commit_interval_ms = 1000;
  for (const auto& t : AllTopics(cfg)) REQUIRE_OK((*cluster)->CreateTopic(t.name, t.partitions));

  pipeline::PipelineSpec spec;
  pipeline::ProcessorOptions& o = spec.processor;
  o.associations.window_ms = 7 * kDayMs;
  o.association_interval_ms = kDayMs;
  o.association_max_rules = 1'000'000;
  // Floors that keep a snapshot of every rule below a Kafka message's 1 MB.
  o.association_floors.min_support = 0.006;
  o.association_floors.min_confidence = 0.5;
  o.association_floors.min_lift = 1.0;
  o.association_floors.min_pair_count = 3;

  auto producer = kafka::Producer::Create(MakeClientConfig(cfg.kafka));
  REQUIRE_OK(producer);
  for (size_t i = 0; i < lines.size(); ++i) {
    REQUIRE_OK((*producer)->Produce("crm.interactions", 0, std::to_string(lines[i].customer),
                                    EventJson(lines[i], i)));
  }
  REQUIRE_OK((*producer)->Flush(std::chrono::seconds(60)));
  REQUIRE((*producer)->failed_count() == 0);

  auto engine = StreamEngine::Create(cfg, spec);
  REQUIRE_OK(engine);
  std::atomic<bool> stop{false};
  Status run_status;
  std::thread runner([&] { run_status = (*engine)->Run(stop); });
  const auto deadline = Clock::now() + std::chrono::seconds(180);
  while ((*engine)->stats().received.load() < kLines && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  stop.store(true);
  runner.join();
  REQUIRE_OK(run_status);
  const EngineStats& stats = (*engine)->stats();
  INFO("received " << stats.received.load() << ", rejected " << stats.rejected.load()
                   << ", duplicates " << stats.duplicates.load());
  for (size_t r = 0; r < stats.rejected_by_reason.size(); ++r) {
    if (stats.rejected_by_reason[r].load() != 0) {
      UNSCOPED_INFO("rejected for reason " << r << ": " << stats.rejected_by_reason[r].load());
    }
  }
  REQUIRE(stats.accepted.load() == kLines);
  CHECK(stats.delivery_failures.load() == 0);

  // Read crm.associations back with an independent consumer.
  kafka::ClientConfig client = MakeClientConfig(cfg.kafka);
  auto consumer = kafka::Consumer::Create(client, "associations-reader");
  REQUIRE_OK(consumer);
  const std::vector<std::string> topics{cfg.outputs.associations.name};
  REQUIRE_OK((*consumer)->Subscribe(topics));
  // The cadence: a snapshot whenever the purchases' event time passes the
  // next multiple of the interval (none for the first, which sets it).
  std::vector<int64_t> expected_as_of;
  {
    int64_t now = INT64_MIN, next = INT64_MIN;
    for (const auto& l : purchases) {
      now = std::max(now, l.timestamp_ms);
      if (next != INT64_MIN && now < next) continue;
      if (next != INT64_MIN) expected_as_of.push_back(now);
      next = (now / o.association_interval_ms + 1) * o.association_interval_ms;
    }
  }
  const size_t published = expected_as_of.size();
  std::vector<std::string> records;
  kafka::MessageBatch batch(256);
  const auto read_deadline = Clock::now() + std::chrono::seconds(60);
  while (records.size() < published && Clock::now() < read_deadline) {
    auto n = (*consumer)->ConsumeBatch(200, &batch);
    REQUIRE_OK(n);
    for (size_t i = 0; i < batch.size(); ++i) records.emplace_back(batch[i].payload());
    batch.Clear();
  }
  (void)(*consumer)->Close();
  // Daily snapshots from the second day on: one per day with purchases.
  REQUIRE(published >= 10);
  INFO("the engine counted "
       << stats.outputs[static_cast<int>(schema::OutputKind::kAssociations)].load()
       << " crm.associations records");
  REQUIRE(records.size() == published);

  simdjson::dom::parser parser;
  size_t compared_rules = 0;
  for (size_t i = 0; i < records.size(); ++i) {
    simdjson::dom::element doc = parser.parse(records[i]);
    const int64_t as_of = int64_t(doc["as_of_ms"]);
    INFO("snapshot as of " << as_of);
    CHECK(as_of == expected_as_of[i]);
    CHECK(int64_t(doc["window_ms"]) == o.associations.window_ms);
    CHECK(bool(doc["exact"]));
    CHECK(bool(doc["complete"]));
    const BatchSnapshot batch_rules =
        BatchRules(purchases, as_of, o.associations.window_ms, o.association_floors);
    CHECK(uint64_t(doc["baskets"]) == batch_rules.baskets);
    std::map<std::pair<std::string, std::string>, BatchRule> streamed;
    for (simdjson::dom::element r : doc["rules"].get_array()) {
      BatchRule b;
      b.pair_count = static_cast<uint32_t>(uint64_t(r["pair_count"]));
      b.antecedent_count = static_cast<uint32_t>(uint64_t(r["antecedent_count"]));
      b.consequent_count = static_cast<uint32_t>(uint64_t(r["consequent_count"]));
      b.support = double(r["support"]);
      b.confidence = double(r["confidence"]);
      b.lift = double(r["lift"]);
      CHECK(uint64_t(r["pair_count_upper"]) == b.pair_count);
      streamed.emplace(std::pair{std::string(std::string_view(r["antecedent"])),
                                 std::string(std::string_view(r["consequent"]))},
                       b);
    }
    CHECK(streamed.size() == batch_rules.rules.size());
    for (const auto& [pair, want] : batch_rules.rules) {
      INFO(pair.first << " -> " << pair.second);
      auto it = streamed.find(pair);
      REQUIRE(it != streamed.end());
      CHECK(it->second.pair_count == want.pair_count);
      CHECK(it->second.antecedent_count == want.antecedent_count);
      CHECK(it->second.consequent_count == want.consequent_count);
      CHECK(it->second.support == Approx(want.support).epsilon(1e-12));
      CHECK(it->second.confidence == Approx(want.confidence).epsilon(1e-12));
      CHECK(it->second.lift == Approx(want.lift).epsilon(1e-12));
      ++compared_rules;
    }
  }
  // The floors leave a real rule set to compare, not an empty one.
  INFO(compared_rules << " rules compared");
  CHECK(compared_rules > 300);

  // And the records keep their published schema.
  {
    std::ofstream out(dir.path() / "crm.associations.jsonl");
    for (const std::string& r : records) out << r << '\n';
  }
  CHECK(pipeline::ValidateRecords(dir.path(), " crm.associations") == 0);
}

}  // namespace
}  // namespace crmstream::runtime
