// The recommendations published by the engine (crm.recommendations), end to
// end: UCI Online Retail invoice lines produced into the embedded cluster as
// input events, the engine consuming them with the item recommender on, and
// an independent consumer reading the records back.
//
// The recommender runs without decay and below its caps, so its similarity
// is the exact cosine of the binary customer x item matrix (batch item-kNN).
// After two weeks of lines, single purchase lines of returning customers
// ("probes") are produced one at a time, each once the record of the one
// before it is out: the model then holds exactly the lines before the probe
// and the probe itself, and each probe's record must equal a batch item-kNN,
// computed here from those lines, for that customer.
#include <simdjson.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

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

// Batch item-kNN over the purchase lines seen so far: who bought what.
class BatchItemKnn {
 public:
  void Add(const evaluation::RetailLine& l) {
    const std::string customer = std::to_string(l.customer);
    const std::string item(l.stock_code);
    items_of_[customer].insert(item);
    buyers_of_[item].insert(customer);
  }
  const std::set<std::string>& ItemsOf(const std::string& customer) { return items_of_[customer]; }

  struct Scored {
    double score = 0.0;
    double best_contribution = 0.0;  // the largest sim(h, j) among the history items
  };
  // For every item j the customer has not bought and that co-occurs with one
  // they have: sum over their items h of |U(h) n U(j)| / sqrt(|U(h)| |U(j)|).
  std::map<std::string, Scored> Score(const std::string& customer) {
    const std::set<std::string>& history = items_of_[customer];
    std::map<std::string, Scored> out;
    for (const std::string& h : history) {
      std::map<std::string, int> both;  // j -> customers who bought h and j
      for (const std::string& u : buyers_of_[h]) {
        for (const std::string& j : items_of_[u]) {
          if (history.count(j) == 0) ++both[j];
        }
      }
      const double nh = static_cast<double>(buyers_of_[h].size());
      for (const auto& [j, n] : both) {
        const double sim = n / std::sqrt(nh * static_cast<double>(buyers_of_[j].size()));
        Scored& s = out[j];
        s.score += sim;
        s.best_contribution = std::max(s.best_contribution, sim);
      }
    }
    return out;
  }

 private:
  std::map<std::string, std::set<std::string>> items_of_;
  std::map<std::string, std::set<std::string>> buyers_of_;
};

// Reads crm.recommendations records as they come, by customer.
class RecordReader {
 public:
  RecordReader(const kafka::ClientConfig& client, const std::string& topic) {
    auto consumer = kafka::Consumer::Create(client, "recommendations-reader");
    REQUIRE_OK(consumer);
    consumer_ = std::move(*consumer);
    REQUIRE_OK(consumer_->Subscribe(std::vector<std::string>{topic}));
  }
  ~RecordReader() { (void)consumer_->Close(); }

  // Reads until a record of `customer` with as_of_ms `as_of` has come, or
  // `timeout`; returns it ("" on time-out).
  std::string WaitFor(const std::string& customer, int64_t as_of, std::chrono::seconds timeout) {
    const auto deadline = Clock::now() + timeout;
    do {
      for (const auto& [key, value] : records_) {
        if (key == customer && AsOf(value) == as_of) return value;
      }
      Poll();
    } while (Clock::now() < deadline);
    return {};
  }
  // Reads until `count` records have come, or `timeout`.
  void WaitForCount(size_t count, std::chrono::seconds timeout) {
    const auto deadline = Clock::now() + timeout;
    while (records_.size() < count && Clock::now() < deadline) Poll();
  }
  const std::vector<std::pair<std::string, std::string>>& records() const { return records_; }

  static int64_t AsOf(const std::string& record) {
    simdjson::dom::parser parser;
    return int64_t(parser.parse(record)["as_of_ms"]);
  }

 private:
  void Poll() {
    auto n = consumer_->ConsumeBatch(100, &batch_);
    REQUIRE_OK(n);
    for (size_t i = 0; i < batch_.size(); ++i) {
      records_.emplace_back(std::string(batch_[i].key()), std::string(batch_[i].payload()));
    }
    batch_.Clear();
  }

  std::unique_ptr<kafka::Consumer> consumer_;
  kafka::MessageBatch batch_{256};
  std::vector<std::pair<std::string, std::string>> records_;
};

TEST_CASE("Engine: crm.recommendations records equal a batch item-kNN of the lines before them",
          "[runtime][recommendations][integration][data]") {
  SKIP_WITHOUT_DATA(data_dir);
  auto data = evaluation::LoadRetailTransactions(data_dir);
  REQUIRE_OK(data);
  // Two weeks of lines, then probes: the first line of a later invoice of
  // a customer of those two weeks, one per customer.
  constexpr size_t kLines = 20'000;
  constexpr size_t kProbes = 20;
  constexpr size_t kTopN = 10;
  REQUIRE(data->lines.size() > kLines);
  const std::vector<evaluation::RetailLine>& all = data->lines;
  std::set<int64_t> bulk_buyers;
  std::map<std::string, int64_t> last_purchase_ms, last_event_ms;
  for (size_t i = 0; i < kLines; ++i) {
    const std::string customer = std::to_string(all[i].customer);
    last_event_ms[customer] = std::max(last_event_ms[customer], all[i].timestamp_ms);
    if (!all[i].purchase()) continue;
    bulk_buyers.insert(all[i].customer);
    last_purchase_ms[customer] = std::max(last_purchase_ms[customer], all[i].timestamp_ms);
  }
  std::vector<size_t> probes;  // indexes into `all`
  {
    std::set<int64_t> probed;
    for (size_t i = kLines; i < all.size() && probes.size() < kProbes; ++i) {
      const evaluation::RetailLine& l = all[i];
      if (l.timestamp_ms <= all[kLines - 1].timestamp_ms || !l.purchase()) continue;
      if (bulk_buyers.count(l.customer) == 0 || !probed.insert(l.customer).second) continue;
      probes.push_back(i);
    }
  }
  REQUIRE(probes.size() == kProbes);

  testing::ScratchDir dir;
  auto cluster = kafka::EmbeddedCluster::Create({});
  REQUIRE_OK(cluster);
  config::EngineConfig cfg;
  cfg.state_dir = dir.path().string();
  cfg.inputs = {{"crm.interactions", 1}};  // one recommender for the whole shop
  cfg.kafka.properties["bootstrap.servers"] = (*cluster)->bootstrap_servers();
  cfg.commit_interval_ms = 1000;
  for (const auto& t : AllTopics(cfg)) REQUIRE_OK((*cluster)->CreateTopic(t.name, t.partitions));

  pipeline::PipelineSpec spec;
  pipeline::ProcessorOptions& o = spec.processor;
  o.recommendations_enabled = true;
  o.recommendations_top_n = kTopN;
  // No decay and no cap reached: exact cosine item-kNN.
  o.recommender.half_life_days = 0.0;
  o.recommender.popularity_half_life_days = 0.0;
  o.recommender.history_half_life_days = 0.0;
  o.recommender.alpha = 0.5;
  o.recommender.history_size = 1024;
  o.recommender.neighbours = 65536;

  auto producer = kafka::Producer::Create(MakeClientConfig(cfg.kafka));
  REQUIRE_OK(producer);
  auto produce = [&](size_t i) {
    REQUIRE_OK((*producer)->Produce("crm.interactions", 0, std::to_string(all[i].customer),
                                    evaluation::RetailEventJson(all[i], i)));
  };
  for (size_t i = 0; i < kLines; ++i) produce(i);
  REQUIRE_OK((*producer)->Flush(std::chrono::seconds(60)));

  auto engine = StreamEngine::Create(cfg, spec);
  REQUIRE_OK(engine);
  std::atomic<bool> stop{false};
  Status run_status;
  std::thread runner([&] { run_status = (*engine)->Run(stop); });
  const EngineStats& stats = (*engine)->stats();
  const auto deadline = Clock::now() + std::chrono::seconds(180);
  // The counters are published one after the other while the engine runs:
  // wait for the one checked.
  while (stats.accepted.load() < kLines && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  REQUIRE(stats.accepted.load() == kLines);

  BatchItemKnn knn;
  for (size_t i = 0; i < kLines; ++i) {
    if (all[i].purchase()) knn.Add(all[i]);
  }
  RecordReader reader(MakeClientConfig(cfg.kafka), cfg.outputs.recommendations.name);
  simdjson::dom::parser parser;
  std::vector<std::string> probe_records;
  size_t compared = 0, explained = 0;
  for (size_t p : probes) {
    const evaluation::RetailLine& l = all[p];
    const std::string customer = std::to_string(l.customer);
    produce(p);
    REQUIRE_OK((*producer)->Flush(std::chrono::seconds(30)));
    knn.Add(l);
    const std::string record = reader.WaitFor(customer, l.timestamp_ms, std::chrono::seconds(60));
    INFO("probe: customer " << customer << " bought " << l.stock_code << " at " << l.timestamp_ms);
    REQUIRE(!record.empty());
    probe_records.push_back(record);

    const std::set<std::string>& history = knn.ItemsOf(customer);
    REQUIRE(history.size() <= o.recommender.history_size);
    const std::map<std::string, BatchItemKnn::Scored> want = knn.Score(customer);
    std::vector<double> ranked;
    for (const auto& [item, s] : want) ranked.push_back(s.score);
    std::sort(ranked.rbegin(), ranked.rend());

    simdjson::dom::element doc = parser.parse(record);
    CHECK(std::string_view(doc["customer_id"]) == customer);
    simdjson::dom::array items = doc["items"].get_array();
    CHECK(items.size() == kTopN);
    size_t neighbours = 0;
    bool fallback_seen = false;
    double previous = INFINITY;
    for (simdjson::dom::element item : items) {
      const std::string name{std::string_view(item["item"])};
      INFO("recommended " << name);
      CHECK(history.count(name) == 0);  // not yet bought
      if (bool(item["popular"])) {
        fallback_seen = true;
        continue;
      }
      // Neighbours of the history first, then (only when too few) popular items.
      CHECK_FALSE(fallback_seen);
      const double score = double(item["score"]);
      CHECK(score <= previous);
      previous = score;
      auto it = want.find(name);
      REQUIRE(it != want.end());
      CHECK(score == Approx(it->second.score).epsilon(1e-9));
      // The explanation starts with the history item contributing most.
      simdjson::dom::array because = item["because"].get_array();
      REQUIRE(because.size() >= 1);
      const std::string first{std::string_view(because.at(0))};
      CHECK(history.count(first) == 1);
      for (simdjson::dom::element b : because)
        CHECK(history.count(std::string(std::string_view(b))) == 1);
      ++explained;
      ++neighbours;
      ++compared;
    }
    // The top of the batch ranking: as many neighbours as it has (up to N),
    // and none it ranks above the lowest one left out (ties aside).
    CHECK(neighbours == std::min(kTopN, ranked.size()));
    if (neighbours > 0 && ranked.size() > neighbours) {
      CHECK(previous >= ranked[neighbours] * (1 - 1e-9));
    }
  }
  INFO(compared << " recommendations compared");
  CHECK(compared >= kProbes * kTopN / 2);
  CHECK(explained == compared);

  // Every buyer of the two weeks got records; the latest answers their last purchase.
  const size_t published =
      stats.outputs[static_cast<int>(schema::OutputKind::kRecommendations)].load();
  reader.WaitForCount(published, std::chrono::seconds(60));
  stop.store(true);
  runner.join();
  REQUIRE_OK(run_status);
  CHECK(stats.delivery_failures.load() == 0);
  CHECK(reader.records().size() == published);
  std::map<std::string, int64_t> latest;
  for (const auto& [key, value] : reader.records()) {
    int64_t& at = latest[key];
    at = std::max(at, RecordReader::AsOf(value));
  }
  for (size_t p : probes) last_purchase_ms.erase(std::to_string(all[p].customer));
  size_t buyers_checked = 0;
  for (const auto& [customer, at] : last_purchase_ms) {
    INFO("customer " << customer);
    REQUIRE(latest.count(customer) == 1);
    CHECK(latest[customer] >= at);
    CHECK(latest[customer] <= last_event_ms[customer]);
    ++buyers_checked;
  }
  CHECK(buyers_checked + kProbes == bulk_buyers.size());
  CHECK(latest.size() == bulk_buyers.size());

  // And the records keep their published schema.
  {
    std::ofstream out(dir.path() / "crm.recommendations.jsonl");
    for (const auto& [key, value] : reader.records()) out << value << '\n';
  }
  CHECK(pipeline::ValidateRecords(dir.path(), " crm.recommendations") == 0);
}

}  // namespace
}  // namespace crmstream::runtime
