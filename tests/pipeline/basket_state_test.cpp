// The basket models of the processor (co-purchase rules, recommendations):
// their outputs, and their state through a checkpoint and a restore. A
// processor restored from a checkpoint must go on exactly as the one that
// wrote it (same crm.associations records, same recommendations, same
// model bytes): the crash harness relies on it.
#include <simdjson.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "crmstream/common/json_writer.h"
#include "crmstream/pipeline/event_processor.h"
#include "crmstream/pipeline/partition_checkpoint.h"
#include "crmstream/state/state_store.h"
#include "pipeline/recording_sink.h"
#include "pipeline/schema_validation.h"
#include "support/require_ok.h"
#include "support/test_support.h"

namespace crmstream::pipeline {
namespace {

constexpr int64_t kStartMs = 1'767'225'600'000;  // 2026-01-01
constexpr int64_t kHourMs = 3'600'000;
// The wall clock the records are processed at: after every event (no skew).
constexpr int64_t kNowMs = kStartMs + 100 * 24 * kHourMs;

// Purchase lines of a small shop: orders of 1-6 lines, 5 minutes apart on average, with
// item pairs that go together, plus events without a basket.
std::vector<std::string> ShopEvents(int orders, uint64_t seed) {
  std::vector<std::string> out;
  uint64_t x = seed;
  auto next = [&x] {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return x;
  };
  int64_t t = kStartMs;
  int id = 0;
  for (int o = 0; o < orders; ++o) {
    t += static_cast<int64_t>(next() % (10 * 60'000));
    const std::string customer = "c" + std::to_string(next() % 150);
    const int lines = 1 + static_cast<int>(next() % 6);
    const int base = static_cast<int>(next() % 40);
    for (int l = 0; l < lines; ++l) {
      // Items near `base` go together: real rules to find.
      const int item = (l % 2 == 0) ? base + l : static_cast<int>(next() % 60);
      std::string e;
      JsonWriter w(&e);
      w.BeginObject();
      w.Field("event_id", "e" + std::to_string(id++));
      w.Field("customer_id", customer);
      w.Field("timestamp", t);
      w.Field("type", std::string_view("purchase"));
      w.Field("amount", 1.0 + static_cast<double>(item));
      w.Field("order_id", "o" + std::to_string(o));
      w.Field("item_id", "i" + std::to_string(item));
      w.EndObject();
      out.push_back(std::move(e));
    }
    if (o % 7 == 0) {  // a login: no basket, moves nothing
      out.push_back(R"({"event_id":"e)" + std::to_string(id++) + R"(","customer_id":")" + customer +
                    R"(","timestamp":)" + std::to_string(t) + R"(,"type":"login"})");
    }
  }
  return out;
}

ProcessorOptions BasketOptions() {
  ProcessorOptions o;
  o.associations.window_ms = 48 * kHourMs;
  o.association_interval_ms = 6 * kHourMs;
  o.association_floors.min_support = 0.002;
  o.association_floors.min_confidence = 0.05;
  o.association_floors.min_pair_count = 2;
  o.recommendations_enabled = true;
  o.recommendations_top_n = 5;
  return o;
}

void Feed(EventProcessor* p, const std::vector<std::string>& events, size_t from, size_t to) {
  for (size_t i = from; i < to; ++i) {
    REQUIRE(p->Process(events[i], {"shop", 0, static_cast<int64_t>(i)}, kNowMs) ==
            ProcessOutcome::kAccepted);
    if (i % 500 == 0) p->RefreshScores();
  }
  p->FlushOutputs();
}

std::vector<std::string> Values(const RecordingSink& sink, OutputKind kind) {
  std::vector<std::string> out;
  for (const RecordedOutput* r : sink.Of(kind)) out.push_back(r->value);
  return out;
}

// A processor restored from a store, which it reads customers from on first
// touch: the store outlives it (members are destroyed in reverse order).
struct Restored {
  std::unique_ptr<state::StateStore> store;
  std::unique_ptr<EventProcessor> processor;
  EventProcessor* operator->() const { return processor.get(); }
  EventProcessor* get() const { return processor.get(); }
};

// Checkpoints `p` into a fresh store at `dir` and restores a new processor
// with `options` from it.
Result<Restored> CheckpointAndRestore(EventProcessor* p, const ProcessorOptions& options,
                                      const std::filesystem::path& dir, OutputSink* sink) {
  state::StateStoreOptions so;
  so.path = dir;
  Restored r;
  CRM_ASSIGN_OR_RETURN(r.store, state::StateStore::Open(so));
  const state::PartitionKey key{1, 0};
  state::CheckpointBatch batch = r.store->NewBatch();
  std::string scratch;
  CRM_RETURN_NOT_OK(AddToCheckpoint(*p, 0, key, &batch, &scratch));
  CRM_RETURN_NOT_OK(r.store->Commit(&batch));
  CRM_ASSIGN_OR_RETURN(r.processor, EventProcessor::Create(options, sink));
  CRM_RETURN_NOT_OK(RestoreProcessor(*r.store, key, r.processor.get()).status());
  return r;
}

TEST_CASE("Basket models: a restored processor goes on exactly as the original",
          "[pipeline][associations][recommendations][state]") {
  const std::vector<std::string> events = ShopEvents(2500, 42);
  const size_t half = events.size() / 2;
  const ProcessorOptions options = BasketOptions();
  RecordingSink sink_a;
  REQUIRE_OK_AND_ASSIGN(auto a, EventProcessor::Create(options, &sink_a));
  Feed(a.get(), events, 0, half);
  REQUIRE(a->associations()->baskets() > 100);
  REQUIRE(!Values(sink_a, OutputKind::kAssociations).empty());

  testing::ScratchDir dir;
  RecordingSink sink_b;
  REQUIRE_OK_AND_ASSIGN(auto b, CheckpointAndRestore(a.get(), options, dir.path(), &sink_b));
  CHECK(b->associations()->Serialize() == a->associations()->Serialize());
  CHECK(b->recommender()->Serialize() == a->recommender()->Serialize());

  sink_a.records.clear();
  Feed(a.get(), events, half, events.size());
  Feed(b.get(), events, half, events.size());
  const auto rules_a = Values(sink_a, OutputKind::kAssociations);
  CHECK(rules_a.size() >= 10);  // about 4 days after the restore, a snapshot every 6 hours
  CHECK(Values(sink_b, OutputKind::kAssociations) == rules_a);
  // crm.recommendations too: one record per buyer and refresh, the same ones.
  const auto recommended_a = Values(sink_a, OutputKind::kRecommendations);
  CHECK(recommended_a.size() >= 300);
  CHECK(Values(sink_b, OutputKind::kRecommendations) == recommended_a);
  CHECK(b->associations()->Serialize() == a->associations()->Serialize());
  CHECK(b->recommender()->Serialize() == a->recommender()->Serialize());

  // Every customer's recommendations read the same from both.
  testing::ScratchDir records;
  std::ofstream recommendations(records.path() / "crm.recommendations.jsonl");
  simdjson::dom::parser parser;
  size_t with_items = 0;
  for (int c = 0; c < 150; ++c) {
    const std::string id = "c" + std::to_string(c);
    std::string json_a, json_b;
    const Status st = a->WriteRecommendations(id, &json_a);
    if (st.code() == StatusCode::kNotFound) continue;
    REQUIRE_OK(st);
    REQUIRE_OK(b->WriteRecommendations(id, &json_b));
    CHECK(json_a == json_b);
    recommendations << json_a << '\n';
    // Never an item the customer already bought.
    std::vector<uint32_t> history;
    a->recommender()->History(id, &history);
    std::set<std::string> bought;
    for (uint32_t h : history) bought.emplace(a->recommender()->item_name(h));
    simdjson::dom::element doc = parser.parse(json_a);
    for (simdjson::dom::element item : doc["items"].get_array()) {
      CHECK(bought.count(std::string(std::string_view(item["item"]))) == 0);
      ++with_items;
    }
  }
  recommendations.close();
  CHECK(with_items > 100);
  CHECK(ValidateRecords(records.path(), " crm.recommendations") == 0);
  std::string unknown;
  CHECK(a->WriteRecommendations("nobody", &unknown).code() == StatusCode::kNotFound);
}

// One purchase line of `customer` (order `order`, item `item`) at minute `minute`.
std::string PurchaseLine(int minute, const std::string& customer, const std::string& order,
                         const std::string& item) {
  return R"({"event_id":"p)" + std::to_string(minute) + customer + item + R"(","customer_id":")" +
         customer + R"(","timestamp":)" + std::to_string(kStartMs + minute * 60'000) +
         R"(,"type":"purchase","amount":5,"order_id":")" + order + R"(","item_id":")" + item +
         R"("})";
}

TEST_CASE("crm.recommendations: one record per buyer of the batch, as the API answers it",
          "[pipeline][recommendations]") {
  ProcessorOptions options = BasketOptions();
  options.recommendations_top_n = 3;
  // No decay: the scores are the exact cosines below.
  options.recommender.half_life_days = 0.0;
  options.recommender.popularity_half_life_days = 0.0;
  options.recommender.history_half_life_days = 0.0;
  RecordingSink sink;
  REQUIRE_OK_AND_ASSIGN(auto p, EventProcessor::Create(options, &sink));
  auto process = [&](const std::string& event) {
    REQUIRE(p->Process(event, {"shop", 0, 0}, kNowMs) == ProcessOutcome::kAccepted);
  };
  // K1 {A, B, C}, K2 {A, B}, K3 {A, D}: then K3's record recommends B (with
  // A in 2 of A's 3 baskets: cosine 2 / sqrt(3 * 2)) before C (1 / sqrt(3)).
  process(PurchaseLine(0, "K1", "O1", "A"));
  process(PurchaseLine(0, "K1", "O1", "B"));
  process(PurchaseLine(0, "K1", "O1", "C"));
  process(PurchaseLine(1, "K2", "O2", "A"));
  process(PurchaseLine(1, "K2", "O2", "B"));
  process(PurchaseLine(2, "K3", "O3", "A"));
  process(PurchaseLine(2, "K3", "O3", "D"));
  // A login: an event of a customer who did not buy.
  process(R"({"event_id":"l1","customer_id":"K9","timestamp":)" +
          std::to_string(kStartMs + 2 * 60'000) + R"(,"type":"login"})");
  p->RefreshScores();
  std::vector<const RecordedOutput*> records = sink.Of(OutputKind::kRecommendations);
  REQUIRE(records.size() == 3);  // K1, K2, K3 once each, not K9
  std::set<std::string> keys;
  for (const RecordedOutput* r : records) keys.insert(r->key);
  CHECK(keys == std::set<std::string>{"K1", "K2", "K3"});
  simdjson::dom::parser parser;
  const RecordedOutput* k3 = records.back();
  REQUIRE(k3->key == "K3");
  simdjson::dom::element doc = parser.parse(k3->value);
  CHECK(std::string_view(doc["customer_id"]) == "K3");
  CHECK(int64_t(doc["as_of_ms"]) == kStartMs + 2 * 60'000);
  simdjson::dom::array items = doc["items"].get_array();
  REQUIRE(items.size() == 2);  // B and C: every neighbour of A and D not bought
  CHECK(std::string_view(items.at(0)["item"]) == "B");
  CHECK(double(items.at(0)["score"]) == Approx(2.0 / std::sqrt(6.0)));
  CHECK(std::string_view(items.at(0)["because"].at(0)) == "A");
  CHECK(std::string_view(items.at(1)["item"]) == "C");
  CHECK(double(items.at(1)["score"]) == Approx(1.0 / std::sqrt(3.0)));
  // The API answers the same as of the same time.
  std::string answer;
  REQUIRE_OK(p->WriteRecommendations("K3", &answer));
  CHECK(answer == k3->value);

  // A refresh without purchases publishes nothing; the next purchase does.
  sink.records.clear();
  process(R"({"event_id":"l2","customer_id":"K3","timestamp":)" +
          std::to_string(kStartMs + 3 * 60'000) + R"(,"type":"login"})");
  p->RefreshScores();
  CHECK(sink.Of(OutputKind::kRecommendations).empty());
  process(PurchaseLine(4, "K2", "O4", "C"));
  process(PurchaseLine(4, "K2", "O4", "D"));
  p->FlushOutputs();
  records = sink.Of(OutputKind::kRecommendations);
  REQUIRE(records.size() == 1);
  CHECK(records[0]->key == "K2");

  // Switched off: learnt and answered, not published.
  options.emit_recommendations = false;
  RecordingSink quiet;
  REQUIRE_OK_AND_ASSIGN(auto q, EventProcessor::Create(options, &quiet));
  REQUIRE(q->Process(PurchaseLine(0, "K1", "O1", "A"), {"shop", 0, 0}, kNowMs) ==
          ProcessOutcome::kAccepted);
  q->FlushOutputs();
  CHECK(quiet.Of(OutputKind::kRecommendations).empty());
  CHECK(q->WriteRecommendations("K1", &answer).ok());
}

TEST_CASE("Basket models: state of another definition is refused, a switched-off model ignored",
          "[pipeline][associations][state]") {
  const std::vector<std::string> events = ShopEvents(400, 7);
  RecordingSink sink;
  REQUIRE_OK_AND_ASSIGN(auto a, EventProcessor::Create(BasketOptions(), &sink));
  Feed(a.get(), events, 0, events.size());

  // Another window: the counts would be published as this window's.
  ProcessorOptions other = BasketOptions();
  other.associations.window_ms = 24 * kHourMs;
  testing::ScratchDir d1;
  auto refused = CheckpointAndRestore(a.get(), other, d1.path(), &sink);
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.status().code() == StatusCode::kInvalidArgument);
  CHECK_THAT(refused.status().message(), Catch::Contains("associations"));

  // Switched off since the checkpoint: the blobs are ignored, the rest restores.
  ProcessorOptions off = BasketOptions();
  off.associations_enabled = false;
  off.recommendations_enabled = false;
  testing::ScratchDir d2;
  REQUIRE_OK_AND_ASSIGN(auto restored, CheckpointAndRestore(a.get(), off, d2.path(), &sink));
  CHECK(restored->associations() == nullptr);
  // Customers load from the store on first touch, their features intact.
  std::string out, original;
  REQUIRE(restored->WriteCustomerRecord("c1", &out));
  REQUIRE(a->WriteCustomerRecord("c1", &original));
  CHECK(out == original);
  CHECK(restored->WriteRecommendations("c1", &out).code() == StatusCode::kNotFound);
  std::vector<EventProcessor*> processors{restored.get()};
  const Status st = WriteAssociationsFor(processors, "i1", 5, &out);
  CHECK(st.code() == StatusCode::kNotFound);
  CHECK_THAT(st.message(), Catch::Contains("off"));
}

TEST_CASE("Associations of an item: one partition's rules, or the partitions' merged",
          "[pipeline][associations]") {
  // Two partitions, each with its own customers' baskets: the answer over
  // both equals that of one processor that saw every basket.
  const std::vector<std::string> events = ShopEvents(1200, 99);
  const ProcessorOptions options = BasketOptions();
  RecordingSink sink;
  REQUIRE_OK_AND_ASSIGN(auto whole, EventProcessor::Create(options, &sink));
  REQUIRE_OK_AND_ASSIGN(auto even, EventProcessor::Create(options, &sink));
  REQUIRE_OK_AND_ASSIGN(auto odd, EventProcessor::Create(options, &sink));
  simdjson::dom::parser parser;
  for (size_t i = 0; i < events.size(); ++i) {
    REQUIRE(whole->Process(events[i], {}, kNowMs) == ProcessOutcome::kAccepted);
    const std::string_view customer = std::string_view(parser.parse(events[i])["customer_id"]);
    EventProcessor* part = (customer.back() % 2 == 0) ? even.get() : odd.get();
    REQUIRE(part->Process(events[i], {}, kNowMs) == ProcessOutcome::kAccepted);
  }
  // The most frequent item of the window has rules.
  const models::AssociationRuleMiner& m = *whole->associations();
  uint32_t top = 0;
  for (uint32_t i = 0; i < m.items(); ++i) {
    if (m.item_count(i) > m.item_count(top)) top = i;
  }
  const std::string item(m.item_name(top));
  std::string one, merged;
  std::vector<EventProcessor*> single{whole.get()};
  std::vector<EventProcessor*> parts{even.get(), odd.get()};
  REQUIRE_OK(WriteAssociationsFor(single, item, 0, &one));
  REQUIRE_OK(WriteAssociationsFor(parts, item, 0, &merged));
  simdjson::dom::element a = parser.parse(one);
  CHECK(std::string_view(a["item"]) == item);
  CHECK(int64_t(a["partitions"]) == 1);
  const size_t rules = a["rules"].get_array().size();
  CHECK(rules >= 1);
  for (simdjson::dom::element r : a["rules"].get_array()) {
    CHECK(std::string_view(r["antecedent"]) == item);
  }
  // The same rules from the two partitions as from the whole stream (ties
  // of confidence may list in another order).
  auto rule_set = [](simdjson::dom::element doc) {
    std::set<std::string> out;
    for (simdjson::dom::element r : doc["rules"].get_array()) out.insert(simdjson::to_string(r));
    return out;
  };
  const std::set<std::string> rules_one = rule_set(a);
  simdjson::dom::parser parser2;
  simdjson::dom::element b = parser2.parse(merged);
  CHECK(int64_t(b["partitions"]) == 2);
  CHECK(int64_t(b["baskets"]) == int64_t(a["baskets"]));
  CHECK(rule_set(b) == rules_one);

  std::string out;
  CHECK(WriteAssociationsFor(single, "no-such-item", 0, &out).code() == StatusCode::kNotFound);
}

}  // namespace
}  // namespace crmstream::pipeline
