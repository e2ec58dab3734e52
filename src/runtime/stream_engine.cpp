#include "crmstream/runtime/stream_engine.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <random>
#include <span>

#include "crmstream/common/clock.h"
#include "crmstream/common/json_writer.h"
#include "crmstream/common/process_cpus.h"
#include "crmstream/kafka/topic_admin.h"
#include "crmstream/pipeline/memory_plan.h"
#include "runtime/at_least_once_delivery.h"
#include "runtime/checkpointer.h"
#include "runtime/engine_core.h"
#include "runtime/model_sync_loop.h"
#include "runtime/output_fingerprint.h"
#include "runtime/stamped_exactly_once_delivery.h"
#include "runtime/task_restorer.h"
#include "runtime/transactional_delivery.h"
#include "runtime/worker_pool.h"

namespace crmstream::runtime {
namespace {

// Smallest per-partition dedup window (event ids).
constexpr size_t kMinDedupPerPartition = 10000;

constexpr auto kLagRefresh = std::chrono::milliseconds(500);
constexpr auto kQualityRefresh = std::chrono::seconds(1);
// Run until caught up: how often the loop checks for the end of the input.
constexpr auto kCaughtUpCheck = std::chrono::milliseconds(100);

// exactly_once: transactions where the cluster has them; the embedded
// cluster has none (no markers, no fencing), so stamped outputs there.
Result<config::Guarantee> ResolveGuarantee(config::Guarantee requested,
                                           const Result<std::string>& cluster_id) {
  if (requested != config::Guarantee::kExactlyOnce) return requested;
  if (!cluster_id.ok()) return cluster_id.status();
  return kafka::IsEmbeddedClusterId(*cluster_id) ? config::Guarantee::kExactlyOnceStamped
                                                 : config::Guarantee::kExactlyOnceTransactions;
}

// The output and changelog topics' own limits. librdkafka's embedded (mock)
// cluster has no DescribeConfigs and no topic configs: there the producer's
// bound holds alone, as it does when the cluster cannot be reached now.
Result<TopicBounds> TopicBoundsOf(const config::EngineConfig& config, size_t producer_bound,
                                  kafka::TopicAdmin* admin, const Result<std::string>& cluster_id) {
  if (!cluster_id.ok()) {
    spdlog::warn(
        "could not read the topics' max.message.bytes ({}): the outputs are bounded by "
        "the producer's message.max.bytes only",
        cluster_id.status().ToString());
    return TopicBounds{};
  }
  const bool embedded = kafka::IsEmbeddedClusterId(*cluster_id);
  return LearnTopicBounds(config, producer_bound, embedded ? nullptr : admin);
}

// This engine's transactional.id: the group, the pipeline and an id made
// once per state store, so that a restart on the same store fences its
// crashed predecessor and two instances never fence each other.
Result<std::string> TransactionalId(state::StateStore* store, const std::string& group,
                                    const std::string& pipeline) {
  constexpr std::string_view kInstanceId = "instance_id";
  CRM_ASSIGN_OR_RETURN(auto id, store->GetMetadata(kInstanceId));
  if (!id) {
    std::random_device random;
    char hex[17];
    std::snprintf(hex, sizeof(hex), "%08x%08x", random(), random());
    id = std::string(hex);
    CRM_RETURN_NOT_OK(store->PutMetadata(kInstanceId, *id));
  }
  return group + "." + pipeline + "." + *id;
}

// The changelog topics must exist with one partition per input partition
// (AllTopics lists them; `crmstream run` and `crmstream broker` create them).
// `record_bound`: the largest changelog record (key + value).
Status OpenChangelogs(EngineCore* core, size_t record_bound) {
  CRM_ASSIGN_OR_RETURN(auto admin, kafka::TopicAdmin::Create(core->client));
  for (const auto& input : core->config.inputs) {
    const std::string name = ChangelogTopicName(core->config, input.name);
    auto ids = admin->ListPartitions(name);
    if (!ids.ok()) {
      return ids.status().WithContext("changelog topic " + name + " of input " + input.name +
                                      " (state.changelog needs it; `crmstream run` creates it, "
                                      "or set state.changelog: false)");
    }
    if (static_cast<int>(ids->size()) != input.partitions) {
      return Status::InvalidArgument("changelog topic " + name + " has " +
                                     std::to_string(ids->size()) + " partitions, input " +
                                     input.name + " " + std::to_string(input.partitions) +
                                     ": they must match");
    }
    core->changelog_topics[input.name] = name;
  }
  // A record (key, value, headers) must fit the producer's message.max.bytes
  // and the changelog topics' max.message.bytes as outputs do: half of the
  // bound leaves the key its room.
  const size_t chunk =
      record_bound == 0 ? kChangelogChunkBytes : std::min(kChangelogChunkBytes, record_bound / 2);
  core->changelog = std::make_unique<ChangelogWriter>(core->producer.get(), chunk);
  return Status::OK();
}

}  // namespace

std::unique_ptr<DeliveryMode> MakeDeliveryMode(config::Guarantee guarantee, EngineCore* core,
                                               Checkpointer* checkpointer) {
  switch (guarantee) {
    case config::Guarantee::kExactlyOnce:  // resolved in Create: not reached
    case config::Guarantee::kExactlyOnceStamped:
      return std::make_unique<StampedExactlyOnceDelivery>(core, checkpointer);
    case config::Guarantee::kExactlyOnceTransactions:
      return std::make_unique<TransactionalDelivery>(core, checkpointer);
    case config::Guarantee::kAtLeastOnce:
      break;
  }
  return std::make_unique<AtLeastOnceDelivery>(core, checkpointer);
}

void TaskTotals::Add(const pipeline::EventProcessor& p, uint64_t suppressed_outputs) {
  const pipeline::ProcessorCounters& c = p.counters();
  customer_loads += p.customer_loads();
  customer_prefetches += p.customer_prefetches();
  customers_over_capacity += p.feature_store().over_capacity();
  customers_shed += p.feature_store().shed();
  received += c.received.Get();
  accepted += c.accepted.Get();
  duplicates += c.duplicates.Get();
  rejected += c.rejected.Get();
  suppressed += suppressed_outputs;
  for (size_t i = 0; i < alerts.size(); ++i) alerts[i] += c.alerts_by_severity[i].Get();
  for (size_t k = 0; k < outputs.size(); ++k) outputs[k] += c.outputs[k].Get();
  for (size_t t = 0; t < by_type.size(); ++t) by_type[t] += c.by_type[t].Get();
  for (size_t r = 0; r < by_reason.size(); ++r) by_reason[r] += c.by_reason[r].Get();
}

void EngineCore::EraseTask(const kafka::TopicPartition& tp, const DeliveryMode& delivery) {
  const auto it = tasks.find(tp);
  if (it == tasks.end()) return;
  if (it->second.processor) {
    dropped_tasks.Add(*it->second.processor, delivery.Suppressed(it->second));
  }
  tasks.erase(it);
}

int64_t EngineCore::TaskLag(const PartitionTask& task) const {
  if (task.next_offset < 0) {
    // Nothing processed: the consumer's own view (0 for an empty partition).
    auto lag = consumer->Lag(task.tp.topic, task.tp.partition);
    return lag.ok() ? *lag : -1;
  }
  // Measured from what the task processed: after a restart at the end of a
  // partition the consumer has no position until a record arrives.
  auto high = consumer->HighWatermark(task.tp.topic, task.tp.partition);
  return high.ok() ? std::max<int64_t>(0, *high - task.next_offset) : -1;
}

namespace {

// Records taken per poll at most: consume_batch_size per worker thread,
// twice. A poll takes only what is queued, so the larger batch comes only
// with a deep queue; it spreads over more partitions, which the workers
// share more evenly (AssignWorkers), and the join is paid less often.
size_t ConsumeBatchCapacity(const config::EngineConfig& config, int workers) {
  const auto per_poll = static_cast<size_t>(config.consume_batch_size);
  return workers > 1 ? per_poll * 2 * static_cast<size_t>(workers) : per_poll;
}

// The worker threads' resolved count: one per core the process may use
// (its affinity and CPU quota: common/process_cpus.h) unless configured, at
// most one per input partition, one for a delivery mode without them.
int ResolveWorkers(const config::EngineConfig& config, int partitions, bool mode_has_workers) {
  int workers = config.worker_threads > 0 ? config.worker_threads : UsableCores();
  workers = std::min(workers, std::max(1, partitions));
  if (workers > 1 && !mode_has_workers) {
    spdlog::info(
        "{} processes its partitions on one thread (worker_threads applies to "
        "at_least_once)",
        GuaranteeName(config.guarantee));
    workers = 1;
  }
  return workers;
}

}  // namespace

struct StreamEngine::Impl final : kafka::RebalanceListener, BatchJob {
  EngineCore core;
  std::unique_ptr<Checkpointer> checkpointer;
  std::unique_ptr<DeliveryMode> delivery;
  std::unique_ptr<TaskRestorer> restorer;
  // models.sync_interval_ms > 0: publishes the tasks' model statistics,
  // and reads every partition's back into the global models tasks score with.
  std::unique_ptr<ModelSyncPublisher> model_sync;
  std::unique_ptr<ModelSyncReader> model_sync_reader;
  CustomerQueries queries;
  Status rebalance_error;
  // Most batches come from one partition.
  PartitionTask* last_task = nullptr;

  // Worker threads (core.workers > 1): the pool, and per worker its tasks
  // and its records of the batch in hand (indexes into it, their capacity
  // kept from batch to batch).
  struct Lane {
    PartitionTask* task;
    size_t index;
  };
  std::unique_ptr<WorkerPool> pool;
  std::vector<PartitionTask*> all_tasks;  // every task, ordered by its records
  std::vector<Lane> batch_lane;           // the batch's owned records
  std::vector<size_t> worker_load;        // records given to each worker
  std::vector<std::vector<PartitionTask*>> worker_tasks;
  std::vector<std::vector<Lane>> lanes;
  std::vector<Status> worker_status;
  bool workers_stale = true;  // the tasks changed since all_tasks was taken
  const kafka::MessageBatch* batch_in_hand = nullptr;
  int64_t batch_wall_ms = 0;

  // Spreads the tasks over the workers for the batch in hand by their
  // records (batch_records), most first, each to the least loaded worker.
  void AssignWorkers();
  // The batch's records on the workers, each task's on its worker, then
  // each worker's tasks finished (DeliveryMode::FinishTaskBatch).
  Status ProcessOnWorkers(const kafka::MessageBatch& batch, int64_t wall_ms);
  void RunWorker(int worker) override;

  void OnAssigned(std::span<kafka::TopicPartitionOffset> partitions) override;
  void OnRevoked(std::span<const kafka::TopicPartition> partitions) override;
  void OnLost(std::span<const kafka::TopicPartition> partitions) override;
  // Forgets the tasks of partitions revoked or lost.
  void DropTasks(std::span<const kafka::TopicPartition> partitions, const char* how);
  // The task of a consumed record; nullptr for a partition this instance
  // does not own (never given a task: its state was not restored).
  PartitionTask* TaskFor(std::string_view topic, int32_t partition);
  // A batch's cache misses, read by one batched MultiGet per task before its
  // events are processed, for each task whose misses make it pay
  // (EventProcessor::PrefetchPays). Called by the thread processing `task`.
  static void PrefetchCustomer(PartitionTask* task, const kafka::MessageView& m) {
    if (task->processor->PrefetchPays()) task->processor->PrefetchCustomerOf(m.payload());
  }
  // The record `task` processes next, decoded while the one before it is
  // processed (EventProcessor::LookAhead). Called by the thread processing
  // `task`.
  void LookAhead(PartitionTask* task, const kafka::MessageView& m, int64_t wall_ms) const {
    task->processor->LookAhead(m.payload(), delivery->RecordClock(m, wall_ms));
  }
  // Every task back to its checkpoint, the consumer with it (the delivery
  // mode dropped uncommitted work).
  Status Rewind();
  bool CaughtUp() const;
  void PublishStats();
  void RefreshLag();
  void RefreshQuality();
  void AnswerQueries();
  // A recommendations or associations query (engine thread).
  Status AnswerBasketQuery(const CustomerQuery& q, std::string* json);
};

StreamEngine::StreamEngine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
StreamEngine::~StreamEngine() = default;

EngineProbe& StreamEngine::probe() { return impl_->core.probe; }
const EngineProbe& StreamEngine::probe() const { return impl_->core.probe; }
CustomerQueries& StreamEngine::queries() { return impl_->queries; }
const state::StateStore& StreamEngine::state_store() const { return *impl_->core.store; }

const pipeline::MemoryPlan& StreamEngine::memory_plan() const { return impl_->core.memory_plan; }
size_t StreamEngine::checkpoint_batch_bytes() const {
  return impl_->core.checkpoint_budget.batch_bytes();
}
int StreamEngine::worker_threads() const { return impl_->core.workers; }

const scoring::ModelStatistics* StreamEngine::merged_models() const {
  return impl_->model_sync_reader ? impl_->model_sync_reader->merged() : nullptr;
}

int64_t StreamEngine::model_sync_offset() const {
  return impl_->model_sync_reader ? impl_->model_sync_reader->next_offset() : -1;
}

const pipeline::EventProcessor* StreamEngine::processor(const std::string& topic,
                                                        int32_t partition) const {
  auto it = impl_->core.tasks.find(kafka::TopicPartition{topic, partition});
  return it == impl_->core.tasks.end() ? nullptr : it->second.processor.get();
}

Result<std::unique_ptr<StreamEngine>> StreamEngine::Create(
    const config::EngineConfig& config, const pipeline::PipelineSpec& pipeline,
    std::shared_ptr<rocksdb::Env> state_env) {
  if (config.kafka.embedded()) {
    return Status::InvalidArgument("StreamEngine needs kafka.properties.bootstrap.servers");
  }
  auto impl = std::make_unique<Impl>();
  EngineCore& core = impl->core;
  core.config = config;
  core.processor_options = pipeline.processor;
  // The dedup window is configured for the whole input: each partition task
  // remembers its share, so memory stays what the user configured.
  int partitions = 0;
  for (const auto& t : config.inputs) partitions += t.partitions;
  pipeline::ProcessorOptions& options = core.processor_options;
  if (options.dedup_capacity > 0) {
    options.dedup_capacity =
        std::max<size_t>(kMinDedupPerPartition,
                         options.dedup_capacity / static_cast<size_t>(std::max(1, partitions)));
  }
  // An output the producer or its topic would refuse goes to the dead
  // letters instead.
  const kafka::ClientConfig client = MakeClientConfig(config.kafka);
  CRM_ASSIGN_OR_RETURN(options.max_output_bytes, MaxOutputBytes(client));
  CRM_ASSIGN_OR_RETURN(auto admin, kafka::TopicAdmin::Create(client));
  const Result<std::string> cluster_id = admin->ClusterId();
  CRM_ASSIGN_OR_RETURN(const TopicBounds topic_bounds,
                       TopicBoundsOf(config, options.max_output_bytes, admin.get(), cluster_id));
  options.max_output_bytes_by_kind = topic_bounds.outputs;
  CRM_RETURN_NOT_OK(options.Validate().WithContext(pipeline.file));
  // One memory cap for the process: RocksDB and the partitions' customer
  // caches are sized from it (pipeline/memory_plan.h).
  pipeline::MemoryPlanInput memory;
  memory.cap_bytes = static_cast<size_t>(config.state.memory_cap_mb) << 20;
  memory.partitions = std::max(1, partitions);
  memory.dedup_ids = options.dedup_capacity * static_cast<size_t>(memory.partitions);
  // As many as a mode with workers would run (the exactly-once modes run one:
  // their plan keeps the allowance unused).
  memory.worker_threads = ResolveWorkers(config, partitions, /*mode_has_workers=*/true);
  if (options.recommendations_enabled) {
    memory.extra_bytes_per_customer =
        models::ItemRecommender::BytesPerCustomer(options.recommender);
  }
  CRM_ASSIGN_OR_RETURN(core.memory_plan, pipeline::PlanMemory(memory));
  const pipeline::MemoryPlan& plan = core.memory_plan;
  options.cached_customers = plan.cached_customers_per_partition;
  options.customer_cache_bytes = plan.cached_state_bytes_per_partition;
  // The recommender remembers the histories of as many customers as the
  // cache holds (the most recently active), within the plan's share.
  options.recommender.max_customers = static_cast<uint32_t>(
      std::min<size_t>(options.recommender.max_customers, plan.cached_customers_per_partition));
  spdlog::info("memory: {}", plan.ToString());

  state::StateStoreOptions store_options;
  store_options.path = std::filesystem::path(config.state_dir) / state::kStoreSubdirectory;
  store_options.memory_cap_bytes = plan.rocksdb_bytes;
  store_options.sync = config.state.sync;
  store_options.write_timeout = std::chrono::milliseconds(config.state.write_timeout_ms);
  store_options.env = std::move(state_env);
  store_options.identity = config.kafka.group_id + "/" + pipeline.name;
  CRM_ASSIGN_OR_RETURN(core.store, state::StateStore::Open(store_options));
  std::string windows;
  for (int d : pipeline.processor.features.window_days)
    windows += (windows.empty() ? "" : ",") + std::to_string(d);
  CRM_RETURN_NOT_OK(core.store->PutMetadata(state::kFeatureWindowsMetadata, windows));

  core.client = client;
  const auto output_topics = config.outputs.Names();
  CRM_ASSIGN_OR_RETURN(core.config.guarantee, ResolveGuarantee(config.guarantee, cluster_id));
  if (config.guarantee != core.config.guarantee) {
    spdlog::info("exactly_once on this cluster: {}", GuaranteeName(core.config.guarantee));
  }
  {
    config::EngineConfig resolved = config;
    resolved.guarantee = core.config.guarantee;
    CRM_ASSIGN_OR_RETURN(const std::string fingerprint,
                         OutputFingerprint(resolved, pipeline, core.processor_options));
    CRM_RETURN_NOT_OK(CheckOutputFingerprint(core.store.get(), fingerprint, resolved.guarantee,
                                             config.accept_config_change));
  }
  const bool stamped = core.config.guarantee == config::Guarantee::kExactlyOnceStamped;
  const bool transactional = core.config.guarantee == config::Guarantee::kExactlyOnceTransactions;
  if (stamped) {
    // The engine partitions its outputs itself (stamped_outputs.h): it needs
    // the real partition counts.
    for (int k = 0; k < schema::kOutputKindCount; ++k) {
      auto ids = admin->ListPartitions(output_topics[static_cast<size_t>(k)]);
      if (!ids.ok()) {
        return ids.status().WithContext("output topic " + output_topics[static_cast<size_t>(k)] +
                                        " (exactly_once needs it to exist)");
      }
      core.output_partitions[static_cast<size_t>(k)] = static_cast<int32_t>(ids->size());
    }
  }
  kafka::ProducerOptions producer_options;
  // A cluster that could not say what it is counts as a Kafka cluster.
  producer_options.linger_ms = OutputLingerMs(
      config, cluster_id.ok() && kafka::IsEmbeddedClusterId(*cluster_id), core.config.guarantee);
  producer_options.queue_max_kbytes = static_cast<int>(plan.producer_queue_kbytes);
  producer_options.queue_max_messages = static_cast<int>(plan.producer_queue_messages);
  if (transactional) {
    // A transaction left open by a crashed or paused instance holds back
    // read_committed readers and the group's offsets until the broker
    // aborts it: keep that short (as Kafka Streams does under exactly-once),
    // well above a commit interval.
    producer_options.transaction_timeout_ms = std::max(10000, 5 * config.commit_interval_ms);
    CRM_ASSIGN_OR_RETURN(producer_options.transactional_id,
                         TransactionalId(core.store.get(), config.kafka.group_id, pipeline.name));
  }
  CRM_ASSIGN_OR_RETURN(
      core.producer,
      kafka::Producer::Create(ProducerClientConfig(core.client, topic_bounds), producer_options));
  core.producer->SetDeliveryObserver(&EngineProbe::OnOutputDelivered, &core.probe);
  if (transactional) {
    // Fences a crashed predecessor with the same id and ends its open
    // transaction before the group's offsets are read at the assignment.
    CRM_RETURN_NOT_OK(core.producer->InitTransactions(std::chrono::seconds(60))
                          .WithContext("initialising transactions (transactional.id " +
                                       producer_options.transactional_id + ")"));
  }
  if (stamped) {
    for (const auto& t : output_topics) core.producer->TrackDeliveredOffsets(t);
  }
  core.sink = std::make_unique<KafkaSink>(core.producer.get(), output_topics);
  if (config.state.changelog) {
    const size_t changelog_bound =
        topic_bounds.changelog != 0 ? topic_bounds.changelog : options.max_output_bytes;
    CRM_RETURN_NOT_OK(OpenChangelogs(&core, changelog_bound));
  }
  kafka::ConsumerOptions consumer_options;
  consumer_options.listener = impl.get();
  // A restarted engine rejoins its group after one session timeout: keep it
  // short (librdkafka's default is 45 s) unless the user chose one.
  kafka::ClientConfig consumer_client = core.client;
  consumer_client.SetDefault("session.timeout.ms", "10000");
  consumer_client.SetDefault("heartbeat.interval.ms", "1000");
  // Incremental rebalances: a member joining or leaving moves only the
  // partitions that change hands; the others keep processing (and keep their
  // cached state) through the rebalance.
  consumer_client.SetDefault("partition.assignment.strategy", "cooperative-sticky");
  // The prefetch stays inside the memory plan (librdkafka's default queue
  // alone is 64 MiB).
  SetConsumerMemory(plan, &consumer_client);
  // The embedded cluster answers a fetch that found no records only after
  // fetch.wait.max.ms, even when records arrive meanwhile (a broker answers
  // as soon as they do): there a short wait bounds what it adds to every
  // event's latency (500 ms by default). Measured at 5,000 events/s
  // (bench/output_latency.sh), outputs' p50 / p99: 50 ms, 55-62 / 237-242
  // ms; 5 ms, 18-25 / 72-131 ms. A fetch of a busy topic finds records and
  // never waits, so the short wait costs no throughput; an idle engine asks
  // each broker 200 times a second. A cluster that could not say what it is
  // keeps librdkafka's default.
  if (cluster_id.ok() && kafka::IsEmbeddedClusterId(*cluster_id)) {
    consumer_client.SetDefault("fetch.wait.max.ms", "5");
  }
  CRM_ASSIGN_OR_RETURN(
      core.consumer,
      kafka::Consumer::Create(consumer_client, config.kafka.group_id, consumer_options));
  // An output counts as delivered at its acknowledgement, which the loop
  // serves between batches: an acknowledgement ends the loop's wait for
  // input rather than waiting for it.
  core.producer->WakeOnDelivery(*core.consumer);

  impl->checkpointer = std::make_unique<Checkpointer>(&core);
  impl->delivery = MakeDeliveryMode(core.config.guarantee, &core, impl->checkpointer.get());
  impl->restorer = std::make_unique<TaskRestorer>(&core, impl->delivery.get());
  if (options.customer_scores_cadence != pipeline::ProcessorOptions::ScoresCadence::kCommit &&
      config.guarantee != config::Guarantee::kAtLeastOnce) {
    // The exactly-once modes' outputs leave with their commit anyway, and
    // the stamped mode's must not depend on how the consumer batched.
    return Status::InvalidArgument(
        "the pipeline's outputs.customer_scores_every (batch or event) needs "
        "processing.guarantee: at_least_once");
  }
  if (config.models.sync_interval_ms > 0) {
    // at_least_once only: the exactly-once modes' producer only produces
    // in their blocks.
    if (config.guarantee != config::Guarantee::kAtLeastOnce) {
      return Status::InvalidArgument(
          "models.sync_interval_ms needs processing.guarantee: "
          "at_least_once");
    }
    const size_t bound = options.max_output_bytes == 0 ? pipeline::kModelSyncChunkBytes
                                                       : options.max_output_bytes / 2;
    const std::chrono::milliseconds interval(config.models.sync_interval_ms);
    impl->model_sync = std::make_unique<ModelSyncPublisher>(
        &core, core.producer.get(), &core.probe.stats(), interval,
        std::min(pipeline::kModelSyncChunkBytes, bound));
    CRM_ASSIGN_OR_RETURN(impl->model_sync_reader,
                         ModelSyncReader::Create(&core, &core.probe.stats(), interval));
  }
  core.workers = ResolveWorkers(core.config, partitions, impl->delivery->SupportsWorkers());
  if (core.workers > 1) {
    impl->pool = std::make_unique<WorkerPool>(core.workers);
    impl->checkpointer->UseWorkers(impl->pool.get());
    const auto n = static_cast<size_t>(core.workers);
    impl->worker_tasks.resize(n);
    impl->worker_status.resize(n);
    impl->lanes.resize(n);
    impl->worker_load.resize(n);
    // The batch's capacity (Run): any lane may take all of it.
    const size_t batch_capacity = ConsumeBatchCapacity(config, core.workers);
    impl->batch_lane.reserve(batch_capacity);
    for (auto& lane : impl->lanes) lane.reserve(batch_capacity);
  }
  // A checkpoint's bytes are held by the write batch, the workers' per-task
  // batches and the changelog's records (their payload and librdkafka's
  // copy with its headers): what its part of the plan allows one.
  const int copies = 1 + (core.workers > 1 ? 1 : 0) + (core.changelog ? 2 : 0);
  core.checkpoint_budget = CheckpointBudget(plan.checkpoint_bytes, copies);
  spdlog::info("a checkpoint's batch may reach {:.1f} MiB (its part of the plan, held {} times)",
               static_cast<double>(core.checkpoint_budget.batch_bytes()) / (1 << 20), copies);
  spdlog::info("{} worker thread(s) process the partitions", core.workers);
  return std::unique_ptr<StreamEngine>(new StreamEngine(std::move(impl)));
}

void StreamEngine::Impl::OnAssigned(std::span<kafka::TopicPartitionOffset> partitions) {
  core.probe.SetStateRestored(false);
  last_task = nullptr;
  workers_stale = true;
  Status st = restorer->Restore(partitions);
  if (!st.ok()) {
    // Never process from half-restored state: the loop stops with this error.
    spdlog::error("restoring state: {}", st.ToString());
    if (rebalance_error.ok()) rebalance_error = st;
  }
  core.probe.SetStateRestored(st.ok() && !restorer->rebuilding());
  EngineStats& stats = core.probe.stats();
  stats.partitions.store(static_cast<int>(core.tasks.size()), std::memory_order_relaxed);
  stats.rebalances.fetch_add(1, std::memory_order_relaxed);
  spdlog::info("assigned {} partition(s); {} in total", partitions.size(), core.tasks.size());
}

void StreamEngine::Impl::OnRevoked(std::span<const kafka::TopicPartition> partitions) {
  delivery->OnRevoked(partitions);
  DropTasks(partitions, "revoked");
}

void StreamEngine::Impl::OnLost(std::span<const kafka::TopicPartition> partitions) {
  spdlog::warn(
      "lost {} partition(s): the group gave them to another member (this instance was "
      "paused or too slow past its session timeout); their uncommitted work is dropped",
      partitions.size());
  delivery->OnLost(partitions);
  DropTasks(partitions, "lost");
}

void StreamEngine::Impl::DropTasks(std::span<const kafka::TopicPartition> partitions,
                                   const char* how) {
  for (const auto& tp : partitions) core.EraseTask(tp, *delivery);
  PublishStats();
  last_task = nullptr;
  workers_stale = true;
  EngineStats& stats = core.probe.stats();
  stats.partitions.store(static_cast<int>(core.tasks.size()), std::memory_order_relaxed);
  stats.rebalances.fetch_add(1, std::memory_order_relaxed);
  spdlog::info("{} {} partition(s); {} left", how, partitions.size(), core.tasks.size());
}

PartitionTask* StreamEngine::Impl::TaskFor(std::string_view topic, int32_t partition) {
  if (last_task && last_task->tp.partition == partition && last_task->tp.topic == topic) {
    return last_task;
  }
  auto it = core.tasks.find(kafka::TopicPartition{std::string(topic), partition});
  if (it == core.tasks.end()) return nullptr;
  last_task = &it->second;
  return last_task;
}

Status StreamEngine::Impl::Rewind() {
  std::vector<kafka::TopicPartitionOffset> partitions;
  for (const auto& [tp, task] : core.tasks) {
    partitions.push_back({tp.topic, tp.partition, kafka::kOffsetBeginning});
  }
  last_task = nullptr;
  workers_stale = true;
  CRM_RETURN_NOT_OK(restorer->Restore(partitions).WithContext("rewinding to the checkpoint"));
  for (const auto& p : partitions) {
    CRM_RETURN_NOT_OK(
        core.consumer->Seek(p, std::chrono::seconds(10))
            .WithContext("rewinding " + p.topic + " [" + std::to_string(p.partition) + "]"));
  }
  core.probe.SetStateRestored(!restorer->rebuilding());
  spdlog::info("rewound {} partition(s) to their checkpoints", partitions.size());
  return Status::OK();
}

void StreamEngine::Impl::AssignWorkers() {
  if (workers_stale) {
    all_tasks.clear();
    for (auto& [tp, task] : core.tasks) all_tasks.push_back(&task);
    workers_stale = false;
  }
  // A batch holds a few partitions' runs of records (librdkafka queues
  // each fetched partition's records together): a fixed spread left one
  // worker with 71% of a batch's records on average (400k events, 24
  // partitions, two workers), and the other waiting at the join. Every
  // worker is parked between batches, so a task may move to another worker
  // from one batch to the next. A task with no records still gets a worker:
  // its batch is finished too (FinishTaskBatch).
  std::sort(all_tasks.begin(), all_tasks.end(), [](const PartitionTask* a, const PartitionTask* b) {
    return a->batch_records > b->batch_records;
  });
  for (auto& tasks : worker_tasks) tasks.clear();
  std::fill(worker_load.begin(), worker_load.end(), 0);
  for (PartitionTask* task : all_tasks) {
    const auto least = static_cast<size_t>(
        std::min_element(worker_load.begin(), worker_load.end()) - worker_load.begin());
    task->worker = static_cast<int>(least);
    worker_load[least] += task->batch_records + 1;
    worker_tasks[least].push_back(task);
    task->batch_records = 0;
  }
}

Status StreamEngine::Impl::ProcessOnWorkers(const kafka::MessageBatch& batch, int64_t wall_ms) {
  EngineStats& stats = core.probe.stats();
  batch_lane.clear();
  for (size_t i = 0; i < batch.size(); ++i) {
    const kafka::MessageView m = batch[i];
    PartitionTask* task = TaskFor(m.topic(), m.partition());
    if (task == nullptr) {
      stats.unowned_records.fetch_add(1, std::memory_order_relaxed);
      continue;
    }
    ++task->batch_records;
    batch_lane.push_back({task, i});
  }
  AssignWorkers();
  for (const Lane& lane : batch_lane) {
    lanes[static_cast<size_t>(lane.task->worker)].push_back(lane);
  }
  batch_in_hand = &batch;
  batch_wall_ms = wall_ms;
  pool->RunBatch(this);
  batch_in_hand = nullptr;
  Status result;
  for (size_t w = 0; w < lanes.size(); ++w) {
    lanes[w].clear();
    if (result.ok() && !worker_status[w].ok()) result = worker_status[w];
    worker_status[w] = Status::OK();
  }
  return result;
}

void StreamEngine::Impl::RunWorker(int worker) {
  const auto w = static_cast<size_t>(worker);
  Status& st = worker_status[w];
  for (const Lane& lane : lanes[w]) PrefetchCustomer(lane.task, (*batch_in_hand)[lane.index]);
  for (PartitionTask* task : worker_tasks[w]) task->processor->LoadPrefetchedCustomers();
  const std::vector<Lane>& lane = lanes[w];
  for (size_t k = 0; k < lane.size(); ++k) {
    if (k + 1 < lane.size())
      LookAhead(lane[k + 1].task, (*batch_in_hand)[lane[k + 1].index], batch_wall_ms);
    st = delivery->Process(lane[k].task, (*batch_in_hand)[lane[k].index], batch_wall_ms);
    if (!st.ok()) return;
  }
  // As one thread does after a batch with records: every task finished.
  if (batch_in_hand->size() > 0) {
    for (PartitionTask* task : worker_tasks[w]) delivery->FinishTaskBatch(task);
  }
}

bool StreamEngine::Impl::CaughtUp() const {
  if (core.tasks.empty() || !core.probe.state_restored()) return false;
  for (const auto& [tp, task] : core.tasks) {
    if (!delivery->Settled(task) || task.next_offset != task.checkpointed_offset) return false;
    if (core.TaskLag(task) != 0) return false;
  }
  return true;
}

void StreamEngine::Impl::PublishStats() {
  TaskTotals totals = core.dropped_tasks;
  for (const auto& [tp, task] : core.tasks) {
    totals.Add(*task.processor, delivery->Suppressed(task));
  }
  EngineStats& stats = core.probe.stats();
  const auto store = [](std::atomic<uint64_t>& to, uint64_t v) {
    to.store(v, std::memory_order_relaxed);
  };
  store(stats.received, totals.received);
  store(stats.accepted, totals.accepted);
  store(stats.duplicates, totals.duplicates);
  store(stats.rejected, totals.rejected);
  store(stats.suppressed_outputs, totals.suppressed);
  store(stats.customer_single_loads, totals.customer_loads - totals.customer_prefetches);
  store(stats.customer_batched_loads, totals.customer_prefetches);
  store(stats.customers_over_capacity, totals.customers_over_capacity);
  store(stats.customers_shed, totals.customers_shed);
  for (size_t i = 0; i < totals.alerts.size(); ++i) store(stats.churn_alerts[i], totals.alerts[i]);
  for (size_t k = 0; k < totals.outputs.size(); ++k) store(stats.outputs[k], totals.outputs[k]);
  for (size_t t = 0; t < totals.by_type.size(); ++t) {
    store(stats.accepted_by_type[t], totals.by_type[t]);
  }
  for (size_t r = 0; r < totals.by_reason.size(); ++r) {
    store(stats.rejected_by_reason[r], totals.by_reason[r]);
  }
  stats.delivered.store(core.producer->delivered_count(), std::memory_order_relaxed);
  stats.delivery_failures.store(core.producer->failed_count(), std::memory_order_relaxed);
  stats.group_commit_failures.store(core.consumer->commit_failures(), std::memory_order_relaxed);
  stats.redelivered_records.store(core.consumer->redelivered_count(), std::memory_order_relaxed);
}

void StreamEngine::Impl::RefreshLag() {
  auto lags = core.consumer->LagSnapshot();
  if (!lags.ok()) return;
  int64_t total = 0;
  std::vector<PartitionLagSample> samples;
  samples.reserve(lags->size());
  for (const auto& l : *lags) {
    if (l.lag < 0 || total < 0) {
      total = -1;
    } else {
      total += l.lag;
    }
    samples.push_back({l.topic, l.partition, l.lag});
  }
  core.probe.stats().lag.store(total, std::memory_order_relaxed);
  core.probe.PublishLag(std::move(samples));
}

void StreamEngine::Impl::RefreshQuality() {
  ModelQualitySnapshot q;
  double auc_weighted = 0, log_loss_weighted = 0, warm_auc_weighted = 0, squared_error = 0,
         squared_distance = 0, anomalies = 0;
  for (const auto& [tp, task] : core.tasks) {
    const auto pq = task.processor->customer_models().quality();
    ++q.partitions;
    ++q.churn_gate_partitions[static_cast<size_t>(pq.gate_state)];
    const uint64_t labels = pq.churn_positives + pq.churn_negatives;
    q.churn_labels += labels;
    auc_weighted += pq.churn_auc * static_cast<double>(labels);
    log_loss_weighted += pq.churn_log_loss * static_cast<double>(labels);
    q.warm_churn_labels += pq.warm_churn_labels;
    warm_auc_weighted += pq.warm_churn_auc * static_cast<double>(pq.warm_churn_labels);
    q.value_labels += pq.value_labels;
    squared_error += pq.value_rmse * pq.value_rmse * static_cast<double>(pq.value_labels);
    q.kmeans_points += pq.kmeans_points;
    squared_distance += pq.kmeans_mean_squared_distance * static_cast<double>(pq.kmeans_points);
    q.anomaly_scored += pq.anomaly_scored;
    anomalies += pq.anomaly_rate * static_cast<double>(pq.anomaly_scored);
    q.customers += task.processor->feature_store().size();
    q.feature_store_bytes += task.processor->feature_store().MemoryUsageBytes();
    q.customer_cache_bytes += task.processor->customer_cache_memory().total();
    if (const uint32_t parts = task.processor->customer_models().global_model_parts(); parts > 0) {
      ++q.global_model_partitions;
      q.global_model_parts_min =
          q.global_model_partitions == 1 ? parts : std::min(q.global_model_parts_min, parts);
    }
  }
  auto mean = [](double weighted, uint64_t n, double none) {
    return n == 0 ? none : weighted / static_cast<double>(n);
  };
  q.churn_auc = mean(auc_weighted, q.churn_labels, 0.5);
  q.churn_log_loss = mean(log_loss_weighted, q.churn_labels, 0.0);
  q.warm_churn_auc = mean(warm_auc_weighted, q.warm_churn_labels, 0.5);
  q.value_rmse = std::sqrt(mean(squared_error, q.value_labels, 0.0));
  q.kmeans_mean_squared_distance = mean(squared_distance, q.kmeans_points, 0.0);
  q.anomaly_rate = mean(anomalies, q.anomaly_scored, 0.0);
  core.probe.PublishQuality(q);
}

void StreamEngine::Impl::AnswerQueries() {
  for (auto& q : queries.Take()) {
    if (restorer->rebuilding()) {
      q->Finish(Status::Unavailable("state being rebuilt"));
      continue;
    }
    std::string& json = *q->mutable_json();
    if (q->kind() != QueryKind::kCustomer) {
      q->Finish(AnswerBasketQuery(*q, &json));
      continue;
    }
    bool found = false;
    for (const auto& [tp, task] : core.tasks) {
      if (!task.processor->WriteCustomerRecord(q->customer_id(), &json)) continue;
      // The crm.customer-scores record, plus where the customer lives: the
      // record's closing brace gives way to the location's fields.
      std::string location;
      JsonWriter w(&location);
      w.BeginObject();
      w.Field("topic", std::string_view(tp.topic));
      w.Field("partition", tp.partition);
      w.EndObject();
      json.back() = ',';
      json.append(location, 1);
      found = true;
      break;
    }
    q->Finish(found ? Status::OK() : Status::NotFound("unknown customer"));
  }
}

Status StreamEngine::Impl::AnswerBasketQuery(const CustomerQuery& q, std::string* json) {
  constexpr size_t kRulesPerItem = 20;
  std::vector<pipeline::EventProcessor*> processors;
  for (auto& [tp, task] : core.tasks) processors.push_back(task.processor.get());
  if (q.kind() == QueryKind::kAssociations) {
    return pipeline::WriteAssociationsFor(processors, q.customer_id(), kRulesPerItem, json);
  }
  Status last = Status::NotFound("unknown customer");
  for (pipeline::EventProcessor* p : processors) {
    last = p->WriteRecommendations(q.customer_id(), json);
    if (last.code() != StatusCode::kNotFound) return last;
  }
  return last;
}

Status StreamEngine::Run(const std::atomic<bool>& stop, const RunOptions& options) {
  Impl& e = *impl_;
  EngineCore& core = e.core;
  EngineProbe& probe = core.probe;
  EngineStats& stats = probe.stats();
  std::vector<std::string> topics;
  for (const auto& t : core.config.inputs) topics.push_back(t.name);
  if (Status subscribed = core.consumer->Subscribe(topics); !subscribed.ok()) {
    probe.SetLoopState(EngineProbe::LoopState::kStopped);
    return subscribed;
  }

  kafka::MessageBatch batch(ConsumeBatchCapacity(core.config, core.workers));
  auto last_lag = Clock::now();
  auto last_quality = Clock::now();
  auto last_caught_up_check = Clock::now();
  Status result;
  bool caught_up = false;
  core.until_caught_up = options.until_caught_up;
  e.checkpointer->Start(&stop);
  probe.Heartbeat();
  probe.SetLoopState(EngineProbe::LoopState::kRunning);
  e.queries.Open();

  while (!stop.load(std::memory_order_relaxed)) {
    if (e.delivery->HoldInput(Clock::now())) {
      // No input until the checkpoint that frees the caches is written:
      // the acknowledgements it waits for are served meanwhile.
      core.producer->Poll(std::chrono::milliseconds(5));
    } else if (auto consumed = core.consumer->ConsumeBatch(core.config.poll_timeout_ms, &batch);
               !consumed.ok()) {
      // Transport errors are retried by librdkafka; keep polling.
      spdlog::warn("consume: {}", consumed.status().ToString());
    }
    if (!e.rebalance_error.ok()) {
      result = e.rebalance_error;
      break;
    }
    if (!e.checkpointer->fatal().ok()) {
      result = e.checkpointer->fatal();
      break;
    }
    const auto batch_start = Clock::now();
    const int64_t wall_ms = WallMs();
    if (e.pool) {
      if (batch.size() > 0) result = e.ProcessOnWorkers(batch, wall_ms);
    } else {
      for (size_t i = 0; i < batch.size(); ++i) {
        const kafka::MessageView m = batch[i];
        if (PartitionTask* task = e.TaskFor(m.topic(), m.partition())) e.PrefetchCustomer(task, m);
      }
      for (auto& [tp, task] : core.tasks) task.processor->LoadPrefetchedCustomers();
      PartitionTask* next =
          batch.size() > 0 ? e.TaskFor(batch[0].topic(), batch[0].partition()) : nullptr;
      for (size_t i = 0; i < batch.size() && result.ok(); ++i) {
        const kafka::MessageView m = batch[i];
        PartitionTask* task = next;
        if (i + 1 < batch.size()) {
          const kafka::MessageView ahead = batch[i + 1];
          next = e.TaskFor(ahead.topic(), ahead.partition());
          if (next != nullptr) e.LookAhead(next, ahead, wall_ms);
        }
        if (task == nullptr) {
          stats.unowned_records.fetch_add(1, std::memory_order_relaxed);
          continue;
        }
        result = e.delivery->Process(task, m, wall_ms);
      }
    }
    const bool had_records = batch.size() > 0;
    batch.Clear();
    if (!result.ok()) break;
    if (e.restorer->rebuilding() || had_records) e.restorer->TrackRebuilds();
    result = e.delivery->AfterBatch(had_records);
    if (!result.ok()) break;
    if (e.model_sync) {
      const auto now = Clock::now();
      result = e.model_sync->MaybePublish(now);
      if (result.ok()) result = e.model_sync_reader->Step(now);
      if (!result.ok()) break;
    }
    core.producer->Poll(std::chrono::milliseconds(0));
    if (!core.sink->first_error().ok()) {
      result = core.sink->first_error().WithContext("producing outputs");
      break;
    }
    const auto now = Clock::now();
    if (had_records) {
      stats.batches.fetch_add(1, std::memory_order_relaxed);
      stats.batch_duration.Observe(std::chrono::duration<double>(now - batch_start).count());
    }
    e.PublishStats();
    if (e.queries.pending()) e.AnswerQueries();
    result = e.delivery->Tick(now, had_records);
    if (result.ok() && e.delivery->TakeRewind()) result = e.Rewind();
    if (!result.ok()) break;
    if (options.until_caught_up && now - last_caught_up_check >= kCaughtUpCheck) {
      last_caught_up_check = now;
      if (e.CaughtUp()) {
        caught_up = true;
        break;
      }
    }
    if (now - last_lag >= kLagRefresh) {
      e.RefreshLag();
      last_lag = now;
    }
    if (now - last_quality >= kQualityRefresh) {
      e.RefreshQuality();
      last_quality = now;
    }
    probe.Heartbeat();
  }

  probe.SetLoopState(EngineProbe::LoopState::kStopped);
  e.queries.Close();
  // Drain: everything processed is delivered and checkpointed before
  // leaving, within the shutdown bound.
  e.checkpointer->BeginDrain(Clock::now() +
                             std::chrono::milliseconds(core.config.shutdown_timeout_ms));
  Status st;
  // The last statistics go out with the final flush, whose scores use the
  // topic as it stands (a bounded read: a quarter of the drain at most).
  if (result.ok() && e.model_sync) {
    st = e.model_sync->Publish();
    const auto bound = std::min<std::chrono::milliseconds>(
        std::chrono::seconds(2), std::chrono::milliseconds(core.config.shutdown_timeout_ms / 4));
    if (Status read = e.model_sync_reader->CatchUp(bound); !read.ok()) {
      spdlog::warn("model sync: the final read of the topic stopped early: {}", read.ToString());
    }
  }
  if (result.ok() && st.ok()) st = e.delivery->Drain();
  // The final statistics are no output a checkpoint waits for (with every
  // task checkpointed already, the drain flushes nothing): flushed here.
  if (result.ok() && st.ok() && e.model_sync) {
    st = core.producer->Flush(std::chrono::milliseconds(core.config.shutdown_timeout_ms / 4))
             .WithContext("flushing the final model-sync records");
  }
  if (!st.ok()) {
    stats.commit_failures.fetch_add(1, std::memory_order_relaxed);
    spdlog::error(
        "stopping without a final checkpoint: {}. The state resumes from the last checkpoint; "
        "records processed since then are processed again at the next start",
        st.ToString());
  } else if (result.ok() && stats.checkpoints.load(std::memory_order_relaxed) > 0) {
    // (A run loop that ended in an error drains nothing.)
    spdlog::info("final checkpoint written");
  }
  if (caught_up) spdlog::info("caught up with the input: stopping");
  e.PublishStats();
  e.RefreshQuality();
  Status closed = core.consumer->Close();
  if (!closed.ok()) spdlog::warn("closing consumer: {}", closed.ToString());
  if (result.ok() && !st.ok()) result = st;
  return result;
}

}  // namespace crmstream::runtime
