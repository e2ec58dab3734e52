#include "crmstream/admin/engine_metrics.h"

#include <prometheus/gauge.h>
#include <prometheus/text_serializer.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <utility>

#include "crmstream/alerts/churn_gate.h"
#include "crmstream/common/process_memory.h"
#include "crmstream/ingest/rejection.h"
#include "crmstream/runtime/stream_engine.h"
#include "crmstream/state/state_store.h"

#ifndef CRMSTREAM_VERSION_STR
#define CRMSTREAM_VERSION_STR "unknown"
#endif

namespace crmstream::admin {
namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;

MetricFamily Family(Metric m) {
  const MetricDef& def = Def(m);
  MetricFamily f;
  f.name = std::string(def.name);
  f.help = std::string(def.help);
  switch (def.kind) {
    case MetricKind::kCounter:
      f.type = prometheus::MetricType::Counter;
      break;
    case MetricKind::kGauge:
      f.type = prometheus::MetricType::Gauge;
      break;
    case MetricKind::kHistogram:
      f.type = prometheus::MetricType::Histogram;
      break;
  }
  return f;
}

ClientMetric Sample(double value, std::vector<ClientMetric::Label> labels = {}) {
  ClientMetric c;
  c.label = std::move(labels);
  c.counter.value = value;
  c.gauge.value = value;
  return c;
}

double Load(const std::atomic<uint64_t>& v) {
  return static_cast<double>(v.load(std::memory_order_relaxed));
}

// One family with a single unlabelled sample.
MetricFamily Single(Metric m, double value) {
  MetricFamily f = Family(m);
  f.metric.push_back(Sample(value));
  return f;
}

// One histogram sample of `h`, with `labels`.
ClientMetric HistogramSample(const runtime::DurationHistogram& h,
                             std::vector<ClientMetric::Label> labels = {}) {
  ClientMetric c;
  c.label = std::move(labels);
  uint64_t cumulative = 0;
  const auto bounds = h.bounds();
  for (size_t i = 0; i < bounds.size(); ++i) {
    cumulative += h.bucket(i);
    c.histogram.bucket.push_back({cumulative, bounds[i]});
  }
  cumulative += h.bucket(bounds.size());
  c.histogram.bucket.push_back({cumulative, std::numeric_limits<double>::infinity()});
  // The count from the buckets, so _count always equals the +Inf bucket.
  c.histogram.sample_count = cumulative;
  c.histogram.sample_sum = h.sum_seconds();
  return c;
}

MetricFamily Histogram(Metric m, const runtime::DurationHistogram& h) {
  MetricFamily f = Family(m);
  f.metric.push_back(HistogramSample(h));
  return f;
}

double UnixSeconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

EngineMetrics::EngineMetrics(const runtime::StreamEngine* engine,
                             const config::OutputTopics& outputs,
                             std::chrono::milliseconds stall_after)
    : engine_(engine),
      output_topics_(outputs.Names()),
      stall_after_(stall_after),
      registry_(std::make_shared<prometheus::Registry>()) {
  prometheus::BuildGauge()
      .Name(std::string(Def(Metric::kBuildInfo).name))
      .Help(std::string(Def(Metric::kBuildInfo).help))
      .Register(*registry_)
      .Add({{"version", CRMSTREAM_VERSION_STR}})
      .Set(1);
  prometheus::BuildGauge()
      .Name(std::string(Def(Metric::kStartTime).name))
      .Help(std::string(Def(Metric::kStartTime).help))
      .Register(*registry_)
      .Add({})
      .Set(UnixSeconds());
  requests_ = &prometheus::BuildCounter()
                   .Name(std::string(Def(Metric::kAdminRequests).name))
                   .Help(std::string(Def(Metric::kAdminRequests).help))
                   .Register(*registry_);
}

void EngineMetrics::CountRequest(std::string_view path, int code) {
  requests_->Add({{"path", std::string(path)}, {"code", std::to_string(code)}}).Increment();
}

std::vector<MetricFamily> EngineMetrics::Collect() const {
  const runtime::EngineStats& s = engine_->stats();
  std::vector<MetricFamily> out;
  out.reserve(static_cast<size_t>(Metric::kCount));

  out.push_back(Single(Metric::kInputRecords, Load(s.received)));
  {
    MetricFamily f = Family(Metric::kEventsConsumed);
    for (int t = 0; t < ingest::kEventTypeCount; ++t) {
      f.metric.push_back(
          Sample(Load(s.accepted_by_type[t]), {{"type", std::string(ingest::kEventTypeNames[t])}}));
    }
    out.push_back(std::move(f));
  }
  out.push_back(Single(Metric::kDuplicateEvents, Load(s.duplicates)));
  {
    // Every reason is pre-created, so a rate() over a reason that starts
    // happening sees it from zero.
    MetricFamily f = Family(Metric::kRejectedEvents);
    for (ingest::RejectReason r : ingest::kAllRejectReasons) {
      f.metric.push_back(Sample(Load(s.rejected_by_reason[static_cast<size_t>(r)]),
                                {{"reason", std::string(ingest::RejectReasonName(r))}}));
    }
    out.push_back(std::move(f));
  }
  out.push_back(Single(Metric::kDeadLetters,
                       Load(s.outputs[static_cast<int>(pipeline::OutputKind::kDeadLetter)])));
  {
    MetricFamily f = Family(Metric::kConsumerLag);
    for (const auto& l : engine_->probe().LagByPartition()) {
      if (l.lag < 0) continue;  // unknown until the first fetch of the partition
      f.metric.push_back(Sample(static_cast<double>(l.lag),
                                {{"topic", l.topic}, {"partition", std::to_string(l.partition)}}));
    }
    out.push_back(std::move(f));
  }
  out.push_back(Single(Metric::kAssignedPartitions,
                       static_cast<double>(s.partitions.load(std::memory_order_relaxed))));
  out.push_back(Single(Metric::kRebalances, Load(s.rebalances)));
  out.push_back(Histogram(Metric::kBatchDuration, s.batch_duration));
  out.push_back(Histogram(Metric::kEventToOutputLatency, s.event_to_output));
  {
    MetricFamily f = Family(Metric::kOutputLatency);
    for (int k = 0; k < pipeline::kOutputKindCount; ++k) {
      f.metric.push_back(HistogramSample(s.output_latency[k],
                                         {{"output", std::string(pipeline::kOutputKindNames[k])}}));
    }
    out.push_back(std::move(f));
  }
  {
    MetricFamily f = Family(Metric::kOutputRecords);
    for (int k = 0; k < pipeline::kOutputKindCount; ++k) {
      f.metric.push_back(Sample(
          Load(s.outputs[k]),
          {{"output", std::string(pipeline::kOutputKindNames[k])}, {"topic", output_topics_[k]}}));
    }
    out.push_back(std::move(f));
  }
  out.push_back(Single(Metric::kDeliveredRecords, Load(s.delivered)));
  out.push_back(Single(Metric::kSuppressedRecords, Load(s.suppressed_outputs)));
  out.push_back(Single(Metric::kDeliveryFailures, Load(s.delivery_failures)));
  {
    MetricFamily f = Family(Metric::kChurnAlerts);
    for (int i = 0; i < alerts::kSeverityCount; ++i) {
      f.metric.push_back(
          Sample(Load(s.churn_alerts[i]),
                 {{"severity", std::string(alerts::kSeverityNames[static_cast<size_t>(i)])}}));
    }
    out.push_back(std::move(f));
  }
  out.push_back(Single(Metric::kOffsetCommits, Load(s.commits)));
  out.push_back(Single(Metric::kOffsetCommitFailures, Load(s.commit_failures)));
  out.push_back(Single(Metric::kGroupCommitFailures, Load(s.group_commit_failures)));
  out.push_back(Single(Metric::kTransactionsAborted, Load(s.transactions_aborted)));
  out.push_back(Single(Metric::kUnownedRecords, Load(s.unowned_records)));
  out.push_back(Single(Metric::kRedeliveredRecords, Load(s.redelivered_records)));
  out.push_back(Single(Metric::kModelSyncRecords, Load(s.model_sync_records)));
  out.push_back(Single(Metric::kModelSyncMerges, Load(s.model_sync_merges)));
  out.push_back(Single(Metric::kModelSyncPartitionsMerged, Load(s.model_sync_partitions_merged)));

  out.push_back(Single(Metric::kCheckpoints, Load(s.checkpoints)));
  out.push_back(Single(Metric::kMemoryCheckpoints, Load(s.memory_checkpoints)));
  out.push_back(Single(Metric::kInputHolds, Load(s.input_holds)));
  out.push_back(Single(Metric::kCustomersOverCapacity, Load(s.customers_over_capacity)));
  out.push_back(Single(Metric::kCustomersShed, Load(s.customers_shed)));
  out.push_back(Single(Metric::kCheckpointFailures, Load(s.checkpoint_failures)));
  out.push_back(Histogram(Metric::kCheckpointDuration, s.checkpoint_duration));
  out.push_back(Single(Metric::kChangelogRecords, Load(s.changelog_records)));
  out.push_back(Single(Metric::kChangelogRestoredRecords, Load(s.changelog_restored_records)));
  out.push_back(Single(Metric::kChangelogRestoredBytes, Load(s.changelog_restored_bytes)));
  out.push_back(
      Single(Metric::kChangelogRestoresInProgress, Load(s.changelog_restores_in_progress)));
  // Gauges fed by the state store have no sample until it reports one.
  {
    MetricFamily f = Family(Metric::kCheckpointSize);
    const int64_t bytes = s.checkpoint_bytes.load(std::memory_order_relaxed);
    if (bytes >= 0) f.metric.push_back(Sample(static_cast<double>(bytes)));
    out.push_back(std::move(f));
  }
  {
    MetricFamily f = Family(Metric::kLastCheckpointTimestamp);
    const int64_t ms = s.last_checkpoint_unix_ms.load(std::memory_order_relaxed);
    if (ms >= 0) f.metric.push_back(Sample(static_cast<double>(ms) * 1e-3));
    out.push_back(std::move(f));
  }
  {
    const int64_t started = s.checkpoint_started_ms.load(std::memory_order_relaxed);
    const int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::steady_clock::now().time_since_epoch())
                            .count();
    out.push_back(Single(Metric::kCheckpointInProgress,
                         started < 0 ? 0.0 : static_cast<double>(now - started) * 1e-3));
  }
  // Read from the store at scrape time (thread-safe), so a stalled engine
  // thread still shows what it waits for.
  const state::StateStore& store = engine_->state_store();
  {
    const state::StateStore::Memory m = store.MemoryBreakdown();
    MetricFamily f = Family(Metric::kRocksDbMemory);
    const std::array<uint64_t, runtime::kRocksDbMemoryKindCount> bytes = {
        m.memtable_bytes, m.table_reader_bytes, m.block_cache_bytes};
    for (int k = 0; k < runtime::kRocksDbMemoryKindCount; ++k) {
      f.metric.push_back(Sample(static_cast<double>(bytes[k]),
                                {{"kind", std::string(runtime::kRocksDbMemoryKindNames[k])}}));
    }
    out.push_back(std::move(f));
  }
  {
    const state::StateStore::WriteFigures w = store.WriteFiguresNow();
    auto d = [](uint64_t v) { return static_cast<double>(v); };
    out.push_back(Single(Metric::kRocksDbMemtableBudget, d(w.memtable_budget_bytes)));
    out.push_back(Single(Metric::kRocksDbImmutableMemtables, d(w.immutable_memtables)));
    out.push_back(Single(Metric::kRocksDbPendingFlushes, d(w.pending_flushes)));
    MetricFamily jobs = Family(Metric::kRocksDbRunningJobs);
    jobs.metric.push_back(Sample(d(w.running_flushes), {{"job", "flush"}}));
    jobs.metric.push_back(Sample(d(w.running_compactions), {{"job", "compaction"}}));
    out.push_back(std::move(jobs));
    out.push_back(Single(Metric::kRocksDbPendingCompaction, d(w.pending_compaction_bytes)));
    out.push_back(Single(Metric::kRocksDbL0Files, d(w.l0_files)));
    out.push_back(Single(Metric::kRocksDbWritesStopped, w.write_stopped ? 1.0 : 0.0));
    out.push_back(Single(Metric::kRocksDbWal, d(w.wal_bytes)));
    out.push_back(Single(Metric::kRocksDbWriteStalls, d(w.stalled_writes)));
    out.push_back(Single(Metric::kRocksDbWriteStallTime, w.stall_seconds));
    out.push_back(Single(Metric::kRocksDbWriteTimeouts, d(w.timed_out_writes)));
  }

  const runtime::ModelQualitySnapshot q = engine_->probe().ModelQuality();
  out.push_back(Single(Metric::kCachedCustomers, static_cast<double>(q.customers)));
  {
    MetricFamily f = Family(Metric::kCustomerLoads);
    f.metric.push_back(Sample(Load(s.customer_single_loads), {{"read", "single"}}));
    f.metric.push_back(Sample(Load(s.customer_batched_loads), {{"read", "batched"}}));
    out.push_back(std::move(f));
  }
  out.push_back(Single(Metric::kFeatureStoreMemory, static_cast<double>(q.feature_store_bytes)));
  out.push_back(Single(Metric::kCustomerCacheMemory, static_cast<double>(q.customer_cache_bytes)));
  out.push_back(Single(Metric::kCustomerCacheBytesPerCustomer,
                       q.customers == 0 ? 0.0
                                        : static_cast<double>(q.customer_cache_bytes) /
                                              static_cast<double>(q.customers)));
  {
    const pipeline::MemoryPlan& plan = engine_->memory_plan();
    MetricFamily f = Family(Metric::kMemoryBudget);
    const std::array<std::pair<const char*, size_t>, 6> parts = {
        {{"fixed", plan.fixed_bytes},
         {"dedup", plan.dedup_bytes},
         {"kafka", plan.kafka_bytes},
         {"checkpoints", plan.checkpoint_bytes},
         {"rocksdb", plan.rocksdb_bytes},
         {"customer_cache", plan.customer_cache_bytes}}};
    for (const auto& [part, bytes] : parts) {
      f.metric.push_back(Sample(static_cast<double>(bytes), {{"part", part}}));
    }
    out.push_back(std::move(f));
  }
  {
    MetricFamily f = Family(Metric::kResidentMemory);
    if (const int64_t rss = ResidentBytes(); rss >= 0) {
      f.metric.push_back(Sample(static_cast<double>(rss)));
    }
    out.push_back(std::move(f));
  }
  out.push_back(Single(Metric::kMemoryTrims, static_cast<double>(ResidentTrimmer::trims())));
  out.push_back(
      Single(Metric::kMemoryTrimmedBytes, static_cast<double>(ResidentTrimmer::trimmed_bytes())));
  out.push_back(Single(Metric::kChurnAuc, q.churn_auc));
  out.push_back(Single(Metric::kChurnLogLoss, q.churn_log_loss));
  out.push_back(Single(Metric::kChurnLabels, static_cast<double>(q.churn_labels)));
  {
    MetricFamily gate = Family(Metric::kChurnGatePartitions);
    for (size_t i = 0; i < q.churn_gate_partitions.size(); ++i) {
      const auto state = alerts::ChurnGateStateName(static_cast<alerts::ChurnGateState>(i));
      gate.metric.push_back(
          Sample(static_cast<double>(q.churn_gate_partitions[i]), {{"state", std::string(state)}}));
    }
    out.push_back(std::move(gate));
  }
  out.push_back(Single(Metric::kValueRmse, q.value_rmse));
  out.push_back(Single(Metric::kKmeansMeanSquaredDistance, q.kmeans_mean_squared_distance));
  out.push_back(Single(Metric::kAnomalyRatio, q.anomaly_rate));

  const runtime::EngineHealth health = engine_->probe().Health(stall_after_);
  out.push_back(Single(Metric::kEngineLive, health.live ? 1 : 0));
  out.push_back(Single(Metric::kEngineReady, health.ready ? 1 : 0));

  for (auto& f : registry_->Collect()) out.push_back(std::move(f));
  return out;
}

std::string EngineMetrics::Scrape() const {
  return prometheus::TextSerializer().Serialize(Collect());
}

}  // namespace crmstream::admin
