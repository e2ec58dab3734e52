// Checkpoints of CustomerModels (and of the minute metrics beside them): a
// partition restored from its blobs (in another customer order, so with
// other feature-store slots) must continue exactly like the run that was
// never interrupted, and the unsaved set must name every customer whose
// record changed.
#include <algorithm>
#include <bit>
#include <catch2/catch.hpp>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "crmstream/common/binary_io.h"
#include "crmstream/features/feature_store.h"
#include "crmstream/generator/world_generator.h"
#include "crmstream/ingest/json_decoder.h"
#include "crmstream/scoring/customer_models.h"
#include "crmstream/scoring/minute_metrics_monitor.h"
#include "scoring/scoring_test_support.h"
#include "support/require_ok.h"

namespace crmstream::scoring {
namespace {

using ingest::EventType;
using testing::AlertingOptions;
using testing::BlobsByName;
using testing::DecodePartitionBlob;
using testing::DecodePartitionBlobs;
using testing::EventSource;
using testing::HandEvent;
using testing::kMinuteMetricsBlob;
using testing::LabelIndex;
using testing::Partition;
using testing::PartitionBlobs;
using testing::SmallGeneratedPartition;

constexpr int64_t kDay = 86'400'000;

uint64_t Bits(double v) { return std::bit_cast<uint64_t>(v); }

// A set of customer ids searchable by string_view without a copy.
struct IdHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using IdSet = std::unordered_set<std::string, IdHash, std::equal_to<>>;

// What one Refresh reported, copied out (the original is valid until the
// next Refresh).
struct RefreshRecord {
  std::string customer;
  CustomerRefresh r;
  std::string trigger_event_id;
  std::vector<ChurnContribution> contributions;
};

std::vector<RefreshRecord> Flush(Partition* p) {
  std::vector<RefreshRecord> out;
  if (p->store->pending_count() > 0) {
    p->store->ForEachPending([&](std::string_view id, const features::CustomerFeatures& f) {
      const CustomerRefresh& r = p->models.Refresh(f);
      RefreshRecord rec{std::string(id), r, std::string(r.churn.trigger_event_id), {}};
      rec.r.churn.trigger_event_id = {};
      rec.contributions.assign(r.churn.contributions.begin(), r.churn.contributions.end());
      rec.r.churn.contributions = {};
      out.push_back(std::move(rec));
    });
    p->models.EndFlush();
  }
  p->store->ClearPending();
  return out;
}

std::vector<MinuteAnomaly> DrainMinuteAnomalies(Partition* p) {
  std::vector<MinuteAnomaly> out(p->minutes.anomalies().begin(), p->minutes.anomalies().end());
  p->minutes.ClearAnomalies();
  return out;
}

// Field-by-field, doubles by their bits.
void RequireSameRefresh(const RefreshRecord& a, const RefreshRecord& b) {
  INFO("customer " << a.customer);
  REQUIRE(a.customer == b.customer);
  CHECK(a.r.known == b.r.known);
  CHECK(a.r.as_of_ms == b.r.as_of_ms);
  CHECK(Bits(a.r.churn.churn_probability) == Bits(b.r.churn.churn_probability));
  CHECK(a.r.churn.alert.raise == b.r.churn.alert.raise);
  CHECK(a.r.churn.alert.severity == b.r.churn.alert.severity);
  CHECK(a.r.churn.alert.alert_id == b.r.churn.alert.alert_id);
  CHECK(a.r.churn.has_trigger == b.r.churn.has_trigger);
  CHECK(a.trigger_event_id == b.trigger_event_id);
  CHECK(a.r.churn.trigger_type == b.r.churn.trigger_type);
  CHECK(a.r.churn.trigger_ms == b.r.churn.trigger_ms);
  CHECK(a.r.segment.changed == b.r.segment.changed);
  CHECK(a.r.segment.from == b.r.segment.from);
  CHECK(a.r.segment.to == b.r.segment.to);
  CHECK(a.r.anomaly.crossed == b.r.anomaly.crossed);
  CHECK(Bits(a.r.anomaly.score) == Bits(b.r.anomaly.score));
  for (size_t i = 0; i < 4; ++i) {
    CHECK(Bits(a.r.anomaly.observed[i]) == Bits(b.r.anomaly.observed[i]));
    CHECK(Bits(a.r.anomaly.expected[i]) == Bits(b.r.anomaly.expected[i]));
  }
  REQUIRE(a.contributions.size() == b.contributions.size());
  for (size_t i = 0; i < a.contributions.size(); ++i) {
    CHECK(a.contributions[i].feature == b.contributions[i].feature);
    CHECK(Bits(a.contributions[i].value) == Bits(b.contributions[i].value));
    CHECK(Bits(a.contributions[i].contribution) == Bits(b.contributions[i].contribution));
  }
}

void RequireSameMinuteAnomalies(const std::vector<MinuteAnomaly>& a,
                                const std::vector<MinuteAnomaly>& b) {
  REQUIRE(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    CHECK(a[i].metric == b[i].metric);
    CHECK(a[i].minute_start_ms == b[i].minute_start_ms);
    CHECK(Bits(a[i].score) == Bits(b[i].score));
    CHECK(Bits(a[i].observed) == Bits(b[i].observed));
    CHECK(Bits(a[i].expected) == Bits(b[i].expected));
  }
}

void RequireSameQuality(const CustomerModels::Quality& a, const CustomerModels::Quality& b) {
  CHECK(Bits(a.churn_auc) == Bits(b.churn_auc));
  CHECK(Bits(a.churn_log_loss) == Bits(b.churn_log_loss));
  CHECK(a.churn_positives == b.churn_positives);
  CHECK(a.churn_negatives == b.churn_negatives);
  CHECK(Bits(a.warm_churn_auc) == Bits(b.warm_churn_auc));
  CHECK(Bits(a.warm_churn_log_loss) == Bits(b.warm_churn_log_loss));
  CHECK(a.warm_churn_labels == b.warm_churn_labels);
  CHECK(a.pending_examples == b.pending_examples);
  CHECK(Bits(a.value_rmse) == Bits(b.value_rmse));
  CHECK(a.value_labels == b.value_labels);
  CHECK(Bits(a.kmeans_mean_squared_distance) == Bits(b.kmeans_mean_squared_distance));
  CHECK(a.kmeans_points == b.kmeans_points);
  CHECK(Bits(a.anomaly_rate) == Bits(b.anomaly_rate));
  CHECK(a.anomaly_scored == b.anomaly_scored);
  CHECK(a.watermark_ms == b.watermark_ms);
}

// The blobs a checkpoint store would hold: the latest of every customer,
// the label deadline index (with the pending examples' snapshots) and the
// partition-wide ones by name.
struct SavedState {
  std::map<std::string, std::string> features;
  std::map<std::string, std::string> models;
  LabelIndex labels;
  BlobsByName partition;
};

void SaveCustomer(const Partition& p, std::string_view id, SavedState* saved) {
  std::string blob;
  REQUIRE_OK(p.store->EncodeCustomer(id, &blob));
  saved->features[std::string(id)] = blob;
  REQUIRE_OK(p.models.EncodeCustomer(p.Customer(id), &blob));
  saved->models[std::string(id)] = blob;
  testing::SaveLabel(p, id, &saved->labels);
}

// Decodes a checkpoint into a fresh partition, customers in `order`. The
// feature store lists the decoded customers as pending a refresh; with
// `refresh_restored` they get one (as an engine that does not clear that
// list would do), which must report and change nothing.
std::unique_ptr<Partition> Restore(const SavedState& saved, const std::vector<std::string>& order,
                                   bool refresh_restored,
                                   const CustomerModelsOptions& options = AlertingOptions()) {
  auto p = std::make_unique<Partition>(options);
  // As the engine restores: features first (they give the customers their
  // slots), then the models' customers, then the partition-wide state.
  for (const std::string& id : order) {
    REQUIRE_OK(p->store->DecodeCustomer(id, saved.features.at(id)));
  }
  for (const std::string& id : order) {
    REQUIRE_OK(p->models.DecodeCustomer(p->Customer(id), saved.models.at(id)));
  }
  REQUIRE_OK(DecodePartitionBlobs(saved.partition, p.get()));
  // The pending examples' snapshots are read from the index as they mature.
  p->AttachLabels(saved.labels);
  if (refresh_restored) {
    const std::vector<RefreshRecord> refreshed = Flush(p.get());
    CHECK(refreshed.size() == order.size());
    size_t reported = 0;
    for (const RefreshRecord& r : refreshed) {
      if (!r.r.known || r.r.churn.has_trigger || r.r.churn.alert.raise || r.r.segment.changed ||
          r.r.anomaly.crossed) {
        ++reported;
      }
    }
    CHECK(reported == 0);
  }
  // The decoded customers had no events since the checkpoint's flush.
  p->store->ClearPending();
  p->store->ClearDirty();
  CHECK(p->models.unsaved_count() == 0);
  return p;
}

// Every customer's record and scores, and the partition-wide blobs, are
// identical.
void RequireSameState(const Partition& a, const Partition& b, const std::vector<std::string>& ids) {
  REQUIRE(a.models.customer_count() == b.models.customer_count());
  const auto partition_a = PartitionBlobs(a);
  const auto partition_b = PartitionBlobs(b);
  for (const auto& [name, blob] : partition_a) {
    INFO("partition blob " << name);
    CHECK(blob == partition_b.at(name));
  }
  RequireSameQuality(a.models.quality(), b.models.quality());
  CHECK(a.minutes.late_events() == b.minutes.late_events());
  std::string blob_a, blob_b;
  size_t compared = 0;
  size_t different = 0;
  for (const std::string& id : ids) {
    REQUIRE_OK(a.models.EncodeCustomer(a.Customer(id), &blob_a));
    REQUIRE_OK(b.models.EncodeCustomer(b.Customer(id), &blob_b));
    if (blob_a != blob_b) ++different;
    const auto sa = a.models.Scores(a.Customer(id));
    const auto sb = b.models.Scores(b.Customer(id));
    REQUIRE(sa.has_value());
    REQUIRE(sb.has_value());
    if (Bits(sa->churn_probability) != Bits(sb->churn_probability) ||
        Bits(sa->predicted_value) != Bits(sb->predicted_value) || sa->segment != sb->segment ||
        Bits(sa->anomaly_score) != Bits(sb->anomaly_score) || sa->closed != sb->closed) {
      ++different;
    }
    ++compared;
  }
  INFO("customers compared " << compared);
  CHECK(compared == a.models.customer_count());
  CHECK(different == 0);
}

struct StreamSummary {
  size_t refreshes = 0;
  size_t alerts = 0;
  size_t segment_changes = 0;
  size_t customer_anomalies = 0;
  size_t minute_anomalies = 0;
};

// A generated stream through the reference partition `a` and, in lockstep,
// the partitions restored from it (`restored`, added between flushes): a
// flush every 2,000 events, at which each restored partition must report
// what `a` reports, refresh by refresh, and raise the same minute anomalies.
struct LockstepRun {
  explicit LockstepRun(const generator::WorldOptions& world,
                       const CustomerModelsOptions& options = AlertingOptions())
      : wo(world), source(world), a(options) {}

  // Feeds the stream until its day `end_day` (at most `max_events`; the days
  // end it far earlier). `on_event` sees each event once every partition
  // processed it; `at_flush` the day of the flush, `a`'s refreshes and minute
  // anomalies, once compared.
  void Run(int64_t end_day, int64_t max_events,
           const std::function<void(const ingest::Event&)>& on_event,
           const std::function<void(int64_t, const std::vector<RefreshRecord>&,
                                    const std::vector<MinuteAnomaly>&)>& at_flush) {
    constexpr int kFlushEvery = 2000;
    int64_t since_flush = 0;
    for (int64_t n = 0; n < max_events; ++n) {
      const ingest::Event& e = source.Next();
      const int64_t day = (e.timestamp_ms - wo.start_ms) / kDay;
      if (day >= end_day) break;
      a.Process(e);
      for (const auto& p : restored) p->Process(e);
      if (known.find(e.customer_id) == known.end()) known.emplace(e.customer_id);
      on_event(e);
      if (++since_flush < kFlushEvery) continue;
      since_flush = 0;
      const std::vector<RefreshRecord> ra = Flush(&a);
      const std::vector<MinuteAnomaly> ma = DrainMinuteAnomalies(&a);
      for (const auto& p : restored) {
        const std::vector<RefreshRecord> rr = Flush(p.get());
        REQUIRE(rr.size() == ra.size());
        for (size_t i = 0; i < ra.size(); ++i) RequireSameRefresh(ra[i], rr[i]);
        RequireSameMinuteAnomalies(ma, DrainMinuteAnomalies(p.get()));
      }
      at_flush(day, ra, ma);
    }
  }

  generator::WorldOptions wo;
  EventSource source;
  Partition a;
  std::vector<std::unique_ptr<Partition>> restored;
  IdSet known;  // every customer of the stream so far
};

// A generated world: the reference partition A runs uninterrupted. At a
// flush in the middle of the stream every customer is checkpointed and
// restored into B (customers decoded in sorted order); later, at a second
// checkpoint, only the customers A lists as unsaved are re-encoded into the
// same saved state (an incremental checkpoint) and restored into C
// (shuffled order). A, B and C then run on in lockstep: every refresh, every
// minute anomaly and the final state must be identical.
TEST_CASE("Restored customer models continue bit-identically to an uninterrupted run",
          "[scoring][models][state]") {
  generator::WorldOptions wo;
  wo.seed = 23;
  wo.churn_rate = 0.1;
  wo.anomalies.enabled = true;
  wo.anomalies.refund_bursts_per_day = 20.0;
  // Debug and sanitizer builds run tens of times slower: a smaller world
  // and a shorter stream, still past the first churn horizon so that labels
  // resolve and alerts are raised on both sides of the checkpoints.
#ifdef NDEBUG
  wo.customers = 4000;
  constexpr int64_t kFirstCheckpointDay = 40;
  constexpr int64_t kSecondCheckpointDay = 55;
  constexpr int64_t kEndDay = 70;
#else
  wo.customers = 800;
  constexpr int64_t kFirstCheckpointDay = 31;
  constexpr int64_t kSecondCheckpointDay = 33;
  constexpr int64_t kEndDay = 35;
#endif
  constexpr int64_t kMaxEvents = 5'000'000;
  LockstepRun run(wo);
  Partition& a = run.a;
  IdSet& known = run.known;
  SavedState saved;
  int checkpoints = 0;
  // Customers with events since the first checkpoint, and the pending
  // snapshot times at that checkpoint: the reference for the unsaved set.
  IdSet touched;
  std::unordered_map<std::string, int64_t> pending_at_checkpoint;
  StreamSummary after_restore;

  const auto on_event = [&](const ingest::Event& e) {
    if (checkpoints >= 1 && touched.find(e.customer_id) == touched.end()) {
      touched.emplace(e.customer_id);
    }
  };
  const auto at_flush = [&](int64_t day, const std::vector<RefreshRecord>& ra,
                            const std::vector<MinuteAnomaly>& ma) {
    if (!run.restored.empty()) {
      after_restore.refreshes += ra.size();
      for (const RefreshRecord& r : ra) {
        after_restore.alerts += r.r.churn.alert.raise ? 1 : 0;
        after_restore.segment_changes += r.r.segment.changed ? 1 : 0;
        after_restore.customer_anomalies += r.r.anomaly.crossed ? 1 : 0;
      }
      after_restore.minute_anomalies += ma.size();
    }

    if (checkpoints == 0 && day >= kFirstCheckpointDay) {
      // Full checkpoint: every customer the reference knows.
      REQUIRE(known.size() == a.models.customer_count());
      for (const std::string& id : known) {
        SaveCustomer(a, id, &saved);
        if (const auto ms = a.PendingSnapshotMs(id)) pending_at_checkpoint[id] = *ms;
      }
      saved.partition = PartitionBlobs(a);
      a.store->ClearDirty();
      a.models.ClearUnsaved();
      std::vector<std::string> sorted(known.begin(), known.end());
      std::sort(sorted.begin(), sorted.end());
      run.restored.push_back(Restore(saved, sorted, /*refresh_restored=*/true));
      checkpoints = 1;
    } else if (checkpoints == 1 && day >= kSecondCheckpointDay) {
      // The unsaved set is exactly the customers with events since the
      // checkpoint plus those whose pending example passed its deadline
      // (snapshot time + horizon before the watermark) without an event.
      const int64_t watermark = a.models.watermark_ms();
      std::set<std::string> expected(touched.begin(), touched.end());
      for (const auto& [id, ms] : pending_at_checkpoint) {
        if (ms + 30 * kDay < watermark) expected.insert(id);
      }
      std::set<std::string> unsaved;
      size_t listed = 0;
      a.models.ForEachUnsaved([&](const features::CustomerFeatures& f) {
        unsaved.emplace(f.customer_id());
        ++listed;
      });
      CHECK(listed == unsaved.size());         // each customer once
      CHECK(unsaved.size() > touched.size());  // some labels resolved without events
      CHECK(unsaved == expected);
      // Incremental checkpoint: only what changed is re-encoded.
      a.models.ForEachUnsaved([&](const features::CustomerFeatures& f) {
        std::string blob;
        REQUIRE_OK(a.models.EncodeCustomer(f, &blob));
        saved.models[std::string(f.customer_id())] = blob;
      });
      a.store->ForEachDirty([&](std::string_view id, const features::CustomerFeatures&) {
        std::string blob;
        REQUIRE_OK(a.store->EncodeCustomer(id, &blob));
        saved.features[std::string(id)] = blob;
      });
      REQUIRE(saved.models.size() == known.size());
      REQUIRE(saved.features.size() == known.size());
      saved.partition = PartitionBlobs(a);
      a.store->ClearDirty();
      a.models.ClearUnsaved();
      std::vector<std::string> shuffled(known.begin(), known.end());
      std::sort(shuffled.begin(), shuffled.end());
      std::mt19937_64 rng(7);
      std::shuffle(shuffled.begin(), shuffled.end(), rng);
      run.restored.push_back(Restore(saved, shuffled, /*refresh_restored=*/false));
      checkpoints = 2;
    }
  };
  run.Run(kEndDay, kMaxEvents, on_event, at_flush);
  REQUIRE(checkpoints == 2);
  INFO("after the first restore: refreshes "
       << after_restore.refreshes << ", alerts " << after_restore.alerts << ", segment changes "
       << after_restore.segment_changes << ", customer anomalies "
       << after_restore.customer_anomalies << ", minute anomalies "
       << after_restore.minute_anomalies);
  // The compared half must exercise what the checkpoint carries.
  CHECK(after_restore.alerts > 0);
  CHECK(after_restore.segment_changes > 0);
  CHECK(after_restore.customer_anomalies > 0);
  CHECK(a.models.quality().churn_negatives > 0);

  const std::vector<std::string> ids(known.begin(), known.end());
  for (const auto& restored : run.restored) RequireSameState(a, *restored, ids);
}

// The tree churn models (pipelines: models.churn_model) through a full
// checkpoint in the middle of a stream: the restored partition goes on
// refreshing, alerting and learning exactly as the uninterrupted one.
TEST_CASE("Tree and forest churn models: a restored partition continues bit-identically",
          "[scoring][models][state]") {
  const ChurnModelKind kind = GENERATE(ChurnModelKind::kHoeffdingTree, ChurnModelKind::kModelTree,
                                       ChurnModelKind::kRandomForest, ChurnModelKind::kModelForest);
  INFO("churn model " << kChurnModelKindNames[static_cast<size_t>(kind)]);
  CustomerModelsOptions options = AlertingOptions();
  options.churn.churn_model = kind;
  generator::WorldOptions wo;
  wo.seed = 5;
  wo.churn_rate = 0.1;
#ifdef NDEBUG
  wo.customers = 1500;
  constexpr int64_t kCheckpointDay = 40;
  constexpr int64_t kEndDay = 50;
  constexpr uint64_t kMinExamples = 200;
  constexpr size_t kMinCompared = 1000;
#else
  wo.customers = 400;
  constexpr int64_t kCheckpointDay = 32;
  constexpr int64_t kEndDay = 35;
  constexpr uint64_t kMinExamples = 10;
  constexpr size_t kMinCompared = 100;
#endif
  constexpr int64_t kMaxEvents = 3'000'000;
  LockstepRun run(wo, options);
  const Partition& a = run.a;
  size_t compared = 0;
  const auto at_flush = [&](int64_t day, const std::vector<RefreshRecord>& ra,
                            const std::vector<MinuteAnomaly>&) {
    if (!run.restored.empty()) {
      compared += ra.size();
      return;
    }
    if (day < kCheckpointDay) return;
    SavedState saved;
    for (const std::string& id : run.known) SaveCustomer(a, id, &saved);
    saved.partition = PartitionBlobs(a);
    const std::vector<std::string> order(run.known.begin(), run.known.end());
    run.restored.push_back(Restore(saved, order, /*refresh_restored=*/false, options));
    CHECK(PartitionBlobs(*run.restored.front()) == saved.partition);
    // The state says which model wrote it: the logistic one refuses it.
    Partition other;
    for (const auto& [id, blob] : saved.features) {
      REQUIRE_OK(other.store->DecodeCustomer(id, blob));
    }
    for (const auto& [id, blob] : saved.models) {
      REQUIRE_OK(other.models.DecodeCustomer(other.Customer(id), blob));
    }
    const Status refused = other.models.DecodePartition("churn", saved.partition.at("churn"));
    CHECK(refused.code() == StatusCode::kInvalidArgument);
    CHECK_THAT(refused.message(), Catch::Contains("churn model"));
  };
  run.Run(
      kEndDay, kMaxEvents, [](const ingest::Event&) {}, at_flush);
  REQUIRE(run.restored.size() == 1);
  CHECK(compared > kMinCompared);
  // The chosen model learnt, and scores customers apart.
  CHECK(a.models.churn().churn_examples() > kMinExamples);
  std::set<uint64_t> probabilities;
  for (const std::string& id : run.known) {
    if (auto scores = a.models.Scores(a.Customer(id))) {
      probabilities.insert(Bits(scores->churn_probability));
    }
  }
  CHECK(probabilities.size() > 10);
  CHECK(PartitionBlobs(a) == PartitionBlobs(*run.restored.front()));
}

// Examples snapshotted at the same millisecond share a deadline: the heap
// pops them in an order that depends on its array layout, and the models'
// updates depend on that order. The restored heap must pop them alike even
// though the restored customers have other slot numbers.
TEST_CASE("Label deadlines that tie resolve in the original order after a restore",
          "[scoring][models][state]") {
  constexpr int64_t kStart = 1'767'225'600'000;
  Partition a;
  std::vector<std::string> ids;
  std::string event_id;
  ingest::Event e;
  auto send = [&](Partition* p, const std::string& customer, int64_t ts, EventType type,
                  double amount) {
    event_id = customer + "-" + std::to_string(ts);
    e = HandEvent(event_id, customer, ts, type, amount);
    p->Process(e);
  };
  // Background customers spread over a day give the scaling its statistics;
  // then 40 customers whose first events share one millisecond.
  for (int i = 0; i < 60; ++i) {
    ids.push_back("bg" + std::to_string(i));
    send(&a, ids.back(), kStart + i * 1'000'000, EventType::kPurchase, 5.0 + i);
  }
  const int64_t tie = kStart + kDay;
  for (int i = 0; i < 40; ++i) {
    ids.push_back("tie" + std::to_string(i));
    send(&a, ids.back(), tie, i % 2 == 0 ? EventType::kPurchase : EventType::kSupportTicket,
         1.0 + 7.0 * i);
  }
  // A few of them close inside the horizon: positives among the ties.
  for (int i = 0; i < 40; i += 7) {
    send(&a, "tie" + std::to_string(i), tie + kDay, EventType::kAccountClosed, 0.0);
  }
  static_cast<void>(Flush(&a));

  SavedState saved;
  for (const std::string& id : ids) SaveCustomer(a, id, &saved);
  saved.partition = PartitionBlobs(a);
  std::vector<std::string> reversed(ids.rbegin(), ids.rend());
  std::unique_ptr<Partition> b = Restore(saved, reversed, /*refresh_restored=*/false);

  // One event past every deadline resolves all the examples in one go.
  for (Partition* p : {&a, b.get()}) {
    send(p, "late", tie + 31 * kDay, EventType::kLogin, 0.0);
    static_cast<void>(Flush(p));
  }
  REQUIRE(a.models.quality().pending_examples == 1);  // the late customer's own
  CHECK(a.models.quality().churn_positives == 6);
  CHECK(a.models.churn().churn_model().count() == 100);
  ids.push_back("late");
  RequireSameState(a, *b, ids);
}

TEST_CASE("Customer model records reject every truncation and flipped byte",
          "[scoring][models][state]") {
  const std::unique_ptr<Partition> w = SmallGeneratedPartition();
  // A customer with a pending example (the record's longest form).
  std::string id;
  w->store->ForEachDirty([&](std::string_view c, const features::CustomerFeatures& f) {
    if (id.empty() && w->models.churn().PendingSnapshotMs(f.slot()).has_value()) {
      id = std::string(c);
    }
  });
  REQUIRE(!id.empty());
  std::string blob;
  REQUIRE_OK(w->models.EncodeCustomer(w->Customer(id), &blob));
  // A customer of the store the models never saw has no record.
  ingest::Event e;
  e.event_id = "features-only";
  e.customer_id = "nobody";
  e.timestamp_ms = w->models.watermark_ms();
  e.type = EventType::kLogin;
  static_cast<void>(w->store->Update(e));
  std::string unknown;
  CHECK(w->models.EncodeCustomer(w->Customer("nobody"), &unknown).code() == StatusCode::kNotFound);

  std::string after;
  for (size_t n = 0; n < blob.size(); ++n) {
    const Status st =
        w->models.DecodeCustomer(w->Customer(id), std::string_view(blob).substr(0, n));
    REQUIRE(st.code() == StatusCode::kCorruption);
  }
  for (size_t i = 0; i < blob.size(); ++i) {
    std::string bad = blob;
    bad[i] = static_cast<char>(bad[i] ^ 0x5a);
    const Status st = w->models.DecodeCustomer(w->Customer(id), bad);
    REQUIRE(st.code() == StatusCode::kCorruption);
  }
  // Rejected blobs left the customer as it was.
  REQUIRE_OK(w->models.EncodeCustomer(w->Customer(id), &after));
  CHECK(after == blob);
  const auto partition = PartitionBlobs(*w);
  for (const auto& [name, other] : partition) {
    INFO("partition blob " << name);
    CHECK(w->models.DecodeCustomer(w->Customer(id), other).code() == StatusCode::kCorruption);
  }

  // Decoded into a fresh object (features first, as a restore does), the
  // record is the same customer.
  Partition fresh;
  std::string features;
  REQUIRE_OK(w->store->EncodeCustomer(id, &features));
  REQUIRE_OK(fresh.store->DecodeCustomer(id, features));
  REQUIRE_OK(fresh.models.DecodeCustomer(fresh.Customer(id), blob));
  REQUIRE_OK(fresh.models.EncodeCustomer(fresh.Customer(id), &after));
  CHECK(after == blob);
  CHECK(fresh.PendingSnapshotMs(id) == w->PendingSnapshotMs(id));
  // The snapshot is not in the record (the label index holds it): in
  // memory only where it was taken.
  CHECK(w->models.churn().PendingSnapshot(w->Customer(id).slot()).size() ==
        static_cast<size_t>(w->models.churn().input_dim()));
  CHECK(fresh.models.churn().PendingSnapshot(fresh.Customer(id).slot()).empty());
  CHECK(fresh.models.unsaved_count() == 0);  // decoding is not a change to save
}

TEST_CASE("Partition model blobs reject truncation, flipped bytes and missing customers",
          "[scoring][models][state]") {
  const std::unique_ptr<Partition> w = SmallGeneratedPartition();
  const auto partition = PartitionBlobs(*w);
  std::vector<std::string> ids;
  w->store->ForEachDirty(
      [&](std::string_view c, const features::CustomerFeatures&) { ids.emplace_back(c); });

  // A target holding every customer, so that only the blobs can be wrong.
  Partition target;
  for (const std::string& id : ids) {
    std::string blob;
    REQUIRE_OK(w->store->EncodeCustomer(id, &blob));
    REQUIRE_OK(target.store->DecodeCustomer(id, blob));
  }
  for (const std::string& id : ids) {
    std::string blob;
    REQUIRE_OK(w->models.EncodeCustomer(w->Customer(id), &blob));
    REQUIRE_OK(target.models.DecodeCustomer(target.Customer(id), blob));
  }
  const auto before = PartitionBlobs(target);
  // The minute metrics' blob is over a megabyte (the detectors' context
  // tables), so not every byte: the envelope and the payload's first fields,
  // its last bytes (the churn deadlines) and a stride through the rest.
#ifdef NDEBUG
  constexpr size_t kEdge = 512;
  constexpr size_t kStride = 4999;
#else
  constexpr size_t kEdge = 64;
  constexpr size_t kStride = 49999;
#endif
  auto decode = [&](std::string_view name, std::string_view blob) {
    return DecodePartitionBlob(name, blob, &target);
  };
  size_t tried = 0;
  for (const auto& [name, blob] : partition) {
    INFO("partition blob " << name);
    std::vector<size_t> positions;
    for (size_t i = 0; i < blob.size(); ++i) {
      if (i < kEdge || i + kEdge >= blob.size() || i % kStride == 0) positions.push_back(i);
    }
    for (size_t n : positions) {
      REQUIRE(decode(name, std::string_view(blob).substr(0, n)).code() == StatusCode::kCorruption);
    }
    std::string bad = blob;
    for (size_t i : positions) {
      bad[i] = static_cast<char>(bad[i] ^ 0x01);
      REQUIRE(decode(name, bad).code() == StatusCode::kCorruption);
      bad[i] = blob[i];
    }
    tried += positions.size();
  }
  CHECK(tried >= partition.size() * kEdge);  // every blob, not one by mistake
  CHECK(PartitionBlobs(target) == before);   // unchanged by the rejected blobs

  // The partition blobs no longer depend on which customers are in memory
  // (a restart decodes none of them up front): decoding them first works.
  Partition empty;
  REQUIRE_OK(DecodePartitionBlobs(partition, &empty));
  CHECK(PartitionBlobs(empty) == partition);
  // Another configuration is not this state.
  CustomerModelsOptions other_k = AlertingOptions();
  other_k.segments.k = 4;
  CHECK(Partition(other_k).models.DecodePartition("segments", partition.at("segments")).code() ==
        StatusCode::kInvalidArgument);
  CustomerModelsOptions other_horizon = AlertingOptions();
  other_horizon.churn.horizon_days = 20;
  CHECK(Partition(other_horizon).models.DecodePartition("churn", partition.at("churn")).code() ==
        StatusCode::kInvalidArgument);
  MinuteMetricsOptions other_window;
  other_window.correlation_window_minutes = 30;
  CHECK(Partition(AlertingOptions(), other_window)
            .minutes.Decode(partition.at(std::string(kMinuteMetricsBlob)))
            .code() == StatusCode::kInvalidArgument);
  CHECK(target.models.DecodePartition("models", partition.at("churn")).code() ==
        StatusCode::kInvalidArgument);  // no such part

  REQUIRE_OK(DecodePartitionBlobs(partition, &target));
  CHECK(PartitionBlobs(target) == partition);
}

}  // namespace
}  // namespace crmstream::scoring
