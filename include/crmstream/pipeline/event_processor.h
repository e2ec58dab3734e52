// The per-partition heart of the pipeline: raw record in, outputs out.
//
//   bytes -> decode + validate -> dedup -> per-customer features -> online
//   models (scoring: churn, value, segment, anomaly; minute metrics) -> outputs
//
// The customer's id is hashed once per event, by the feature store; the
// models find the customer by its store slot.
//
// `crm.customer-scores` is a compactable, latest-value-per-customer topic,
// so its records are coalesced: Process() only marks the customer updated,
// and FlushOutputs() emits one record per customer updated since the last
// flush. The engine flushes at every commit (so a committed offset always
// covers the outputs of its records), replay at the end. This is Kafka
// Streams' record cache: output volume follows customers, not events.
//
// The other outputs (docs/outputs.md):
// - crm.churn-alerts, crm.segments (segment changes) and crm.anomalies
//   (customer anomalies) are decided at RefreshScores(), when the customers
//   updated since the last refresh are scored (scoring::CustomerModels). The
//   engine refreshes after every consumed batch, so an alert waits for one
//   batch (not one commit interval) and a busy customer costs one scoring per
//   batch, not one per event.
// - crm.associations: co-purchase rules snapshots on an event-time schedule,
//   from Process(), of the baskets (order_id) of purchase lines with an
//   item_id; the same lines teach the item recommender.
// - crm.recommendations: at RefreshScores(), the top items of every customer
//   who bought since the last refresh (so one record per customer and batch,
//   as for the alerts), as WriteRecommendations answers them on demand.
// - crm.anomalies (global minute metrics, scoring::MinuteMetricsMonitor) as
//   soon as an event closes an anomalous minute; crm.segments centroid snapshots and
//   crm.correlations snapshots on schedules in event time, from Process(). All of them depend on
//   the input only (not on wall time), so a replay reproduces them.
//
// A record that fails validation never stops processing and is never
// dropped: it is written to the dead-letter output with its reason, field,
// original bytes and source position, and counted. So is a valid record
// whose processing throws before it changed any state (processing_error,
// e.g. a customer beyond features.max_customers); one that throws after
// changing state stops the engine (PartialUpdateError; Process's comment). A duplicate (event_id
// already seen within the dedup window) is counted once and produces no
// output.
//
// With a state store attached (AttachStateStore, done by RestoreProcessor),
// the store is the source of truth for the partition's customers: memory
// holds those touched since the restart, a customer not in memory is
// loaded on first touch (one MultiGet of its features and model record), and
// the label deadlines of the others are read from the store's index. A
// restore therefore decodes no customer up front. A batch's misses can be
// read at once before its events (PrefetchCustomerOf,
// LoadPrefetchedCustomers: batched MultiGets); the engine does so for a
// task whose events read the store often enough (PrefetchPays). With
// ProcessorOptions::cached_customers, memory holds at most that many
// customers: a saved one (no change since the last checkpoint, and that
// checkpoint committed) is evicted to make room, and the outputs are the
// same as with every customer kept.
//
// One processor per partition task: it owns that partition's customers, so
// nothing is shared and nothing is locked. Not thread-safe.
#pragma once

#include <array>
#include <cstdint>
#include <exception>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "crmstream/features/feature_store.h"
#include "crmstream/ingest/dead_letter.h"
#include "crmstream/ingest/dedup_window.h"
#include "crmstream/ingest/json_decoder.h"
#include "crmstream/models/association_rules.h"
#include "crmstream/models/item_recommender.h"
#include "crmstream/pipeline/output_sink.h"
#include "crmstream/pipeline/processor_counters.h"
#include "crmstream/scoring/customer_models.h"
#include "crmstream/scoring/minute_metrics_monitor.h"
#include "crmstream/state/state_store.h"

namespace crmstream::pipeline {

struct ProcessorOptions {
  ingest::DecoderOptions decoder;
  size_t dedup_capacity = ingest::DedupWindow::kDefaultCapacity;
  // Customers kept in memory once a state store is attached (the engine):
  // beyond it, saved customers are evicted and loaded again on their next
  // event (features/feature_store.h). 0 (default): no bound.
  size_t cached_customers = 0;
  // With cached_customers, a bound on their bytes too (the cache's own
  // accounting, customer_cache_memory()): customers active on many days
  // cost more than quiet ones, and saved ones with day histories leave while
  // the cache is over it (FeatureStore::SetCapacity). 0 (default): the
  // count alone.
  size_t customer_cache_bytes = 0;
  features::FeatureSpec features;
  // The per-customer models and the minute metrics; off, the processor
  // keeps features only.
  bool models_enabled = true;
  scoring::CustomerModelsOptions models;
  scoring::MinuteMetricsOptions minute_metrics;
  bool emit_customer_scores = true;  // FlushOutputs() emits crm.customer-scores
  // When a customer's crm.customer-scores record leaves: kCommit (default)
  // coalesces each customer's events to one record per commit; kBatch, as
  // the batch that updated it is processed (the engine's at_least_once
  // mode: it calls FlushOutputs after each batch); kEvent, one record per
  // accepted event, scored then (FlushOutputs after every event: the most
  // records and the least latency).
  enum class ScoresCadence : uint8_t { kCommit, kBatch, kEvent };
  ScoresCadence customer_scores_cadence = ScoresCadence::kCommit;
  // The other outputs; each needs models_enabled.
  bool emit_churn_alerts = true;
  bool emit_segments = true;
  bool emit_anomalies = true;
  bool emit_correlations = true;
  // Event-time period of the centroid snapshots (crm.segments) and of the
  // correlation snapshots (crm.correlations), ms, > 0. Defaults 15 minutes.
  int64_t centroid_interval_ms = 15 * 60'000;
  int64_t correlation_interval_ms = 15 * 60'000;
  // Largest output record (key + value) the sink accepts, bytes; 0 (the
  // default): no bound. The engine sets it from the producer's
  // message.max.bytes: a larger record would be refused by the producer, and
  // since processing is deterministic a restart would make it again. Such a
  // record goes to the dead-letter output instead (reason output_too_large),
  // and a dead letter that would be too large keeps less of its original.
  // 0 or >= kMinOutputBytes.
  size_t max_output_bytes = 0;
  static constexpr size_t kMinOutputBytes = 1024;
  // A tighter bound for one output kind, bytes (key + value); 0 (default):
  // max_output_bytes alone. The engine sets it from the output topic's own
  // max.message.bytes where that is below the producer's limit; the broker
  // would refuse a larger record for that topic. The dead-letter kind's
  // bound, when set, is >= kMinOutputBytes.
  std::array<size_t, schema::kOutputKindCount> max_output_bytes_by_kind = {};
  // The bound of one kind: the smaller of max_output_bytes and its own (0:
  // no bound).
  size_t OutputBound(OutputKind kind) const;

  // Co-purchase rules (models::AssociationRuleMiner) over the baskets of the
  // purchase events that carry an order_id and an item_id; independent of
  // models_enabled. Default on: events without those fields cost one test.
  bool associations_enabled = true;
  models::AssociationRulesOptions associations;
  models::RuleFloors association_floors;
  // crm.associations: a rules snapshot every this much event time (ms, > 0;
  // default 1 day: a snapshot scans the whole pair table), at most
  // association_max_rules rules (the highest lift first; >= 1, default 100,
  // about 35 kB) so a record stays well within a Kafka message.
  bool emit_associations = true;
  int64_t association_interval_ms = 24 * 60 * 60'000;
  size_t association_max_rules = 100;

  // Item-item recommendations (models::ItemRecommender) learnt from the same
  // purchase lines; read per customer (WriteRecommendations) and, with
  // emit_recommendations, published to crm.recommendations on a customer's
  // purchase. Default off: it multiplies the cost of a purchase line
  // (bench_pipeline, BM_RetailReplay).
  bool recommendations_enabled = false;
  bool emit_recommendations = true;
  models::ItemRecommenderOptions recommender = DefaultRecommender();
  // Items per recommendation answer, in [1, 100]. Default 10.
  size_t recommendations_top_n = 10;

  // The first invalid field of the decoder, features, models or minute
  // metrics options.
  Status Validate() const;
  // The recipe `crmstream eval recommend` measures: 30-day half-life of the
  // co-occurrences and of the popularity.
  static models::ItemRecommenderOptions DefaultRecommender();

  // Out of line: GCC 12 inlines the members' construction (and the clean-up
  // of those built when a later one throws) into every caller that makes a
  // temporary (ProcessorOptions{}), then reports the clean-up, wrongly, as
  // reading maybe-uninitialized vectors. Copies stand in for moves.
  ProcessorOptions();
  ~ProcessorOptions();
  ProcessorOptions(const ProcessorOptions&) = default;
  ProcessorOptions& operator=(const ProcessorOptions&) = default;
};

enum class ProcessOutcome : uint8_t { kAccepted, kDuplicate, kRejected };

class EventProcessor {
 public:
  // InvalidArgument naming the field for options that fail Validate().
  // `sink` must outlive the processor. Not movable (the models point at the
  // feature store), hence the pointer.
  static Result<std::unique_ptr<EventProcessor>> Create(const ProcessorOptions& options,
                                                        OutputSink* sink);
  EventProcessor(const EventProcessor&) = delete;
  EventProcessor& operator=(const EventProcessor&) = delete;
  ~EventProcessor();

  // Decodes one JSON record and processes it. `now_ms` is the record's clock
  // (the broker timestamp, or the wall clock; <= 0: none) for dead-letter
  // records and the future-skew check. Throws PartialUpdateError, after a
  // critical log line, only when processing failed after it had changed
  // state: the caller must not checkpoint, and should stop.
  ProcessOutcome Process(std::string_view bytes, const ingest::SourcePosition& source,
                         int64_t now_ms);
  // Processes a record some other decoder (CSV) already decoded.
  ProcessOutcome ProcessDecoded(const ingest::Rejection& rejection, const ingest::Event& event,
                                std::string_view raw, const ingest::SourcePosition& source,
                                int64_t now_ms);
  // The record the caller will Process after the current one: decoded now,
  // and the memory its event will touch first (its dedup-table slot, its
  // customer's table slot and record) fetched into the CPU's cache while the
  // current one is processed, so that those lookups, each a cache miss in
  // tables far larger than the caches, no longer wait. Process takes the
  // decoded record when it is given the same bytes and clock (compared with
  // the decoder's copy), else decodes it as before. Two are kept: the next
  // record and the one after it. Records over kLookAheadBytes, and ones the
  // decoder rejects, are left to Process. No allocation.
  void LookAhead(std::string_view bytes, int64_t now_ms);
  static constexpr size_t kLookAheadBytes = 4096;

  // Scores every customer updated since the last refresh and emits its churn
  // alert, segment change and customer anomaly when there is one.
  void RefreshScores();
  // RefreshScores(), then the customer-scores record of every customer
  // updated since the last flush.
  void FlushOutputs();
  // Writes the customer's current customer-scores record (the JSON
  // FlushOutputs publishes) into *out; false for an unknown customer. A
  // customer saved in the attached store is loaded first.
  bool WriteCustomerRecord(std::string_view customer_id, std::string* out);

  // Makes `store` (partition `key`) the source of truth for customers not
  // in memory (see the top). `store` must outlive the processor.
  void AttachStateStore(const state::StateStore* store, state::PartitionKey key);
  // The first failure to read a customer or a label deadline from the
  // attached store (OK when none). The state in memory is then not to be
  // trusted: AddToCheckpoint fails with it, so no checkpoint covers it and
  // the engine processes the events again after its restart.
  const Status& storage_status() const { return storage_status_; }
  // Customers loaded from the attached store (cache misses of customers
  // saved there), since creation.
  uint64_t customer_loads() const;
  // Of those, loaded by LoadPrefetchedCustomers.
  uint64_t customer_prefetches() const;

  // A batch's cache misses read together: before processing a batch of
  // records, PrefetchCustomerOf(each record), then LoadPrefetchedCustomers()
  // loads the customers not in memory that the attached store holds, with
  // one batched MultiGet per kPrefetchChunk ids (which bounds the read
  // buffers), so that the events then find them in memory. A customer so
  // loaded, and one of the batch already in memory, is held in the cache
  // until its event (the batch's loads cannot evict it, so none is read
  // twice; the next batch ends a hold whose event never came), and loading
  // stops when the cache holds nothing else it may evict: the prefetch never
  // grows the cache past its capacity. The outputs and the state are the same as without it (a
  // customer it did not load is loaded by its event as before). Without an
  // attached store both do nothing. No allocation per record once the
  // buffers have grown to a chunk.
  void PrefetchCustomerOf(std::string_view bytes);
  void LoadPrefetchedCustomers();
  static constexpr size_t kPrefetchChunk = 256;
  // Whether this processor's misses are worth prefetching: a prefetch
  // decodes each record twice (a few hundred ns), a batched read saves most
  // of a point lookup's cost per miss (measured at 10M stored customers:
  // 3.5-3.9x the events/s at a hit ratio of 0.12). Decided every 4,096
  // events from the store reads per event since the last decision: on while
  // at least 1 in 64 events read a saved customer (a restart's catch-up, a
  // working set bigger than the cache), off otherwise. On at first, with a
  // store attached. Cheap enough to ask per record.
  bool PrefetchPays();

  const ProcessorOptions& options() const { return options_; }
  const ProcessorCounters& counters() const { return counters_; }
  // The customer cache's own accounting: heap bytes of the customers in
  // memory (features and per-customer model state, by part).
  struct CustomerCacheMemory {
    features::FeatureStore::Memory features;
    scoring::CustomerModels::CustomerMemory models;
    size_t customers = 0;
    size_t total() const { return features.total() + models.total(); }
    // 0 while the cache is empty.
    double per_customer() const {
      return customers == 0 ? 0.0 : static_cast<double>(total()) / static_cast<double>(customers);
    }
  };
  CustomerCacheMemory customer_cache_memory() const {
    return {features_->memory(), models_.customer_memory(), features_->size()};
  }
  const features::FeatureStore& feature_store() const { return *features_; }
  features::FeatureStore& feature_store() { return *features_; }
  const scoring::CustomerModels& customer_models() const { return models_; }
  scoring::CustomerModels& customer_models() { return models_; }
  const scoring::MinuteMetricsMonitor& minute_metrics() const { return minutes_; }
  scoring::MinuteMetricsMonitor& minute_metrics() { return minutes_; }
  // The co-purchase miner and the recommender; null when off.
  const models::AssociationRuleMiner* associations() const { return associations_.get(); }
  models::AssociationRuleMiner* associations() { return associations_.get(); }
  const models::ItemRecommender* recommender() const { return recommender_.get(); }
  models::ItemRecommender* recommender() { return recommender_.get(); }
  // Whether the basket models learnt anything since MarkBasketsSaved(): their
  // blobs are whole (megabytes for a busy window), so a checkpoint writes
  // them only then.
  bool baskets_unsaved() const { return baskets_unsaved_; }
  void MarkBasketsSaved() { baskets_unsaved_ = false; }
  // The churn snapshots buffered since the last checkpoint leave memory once
  // the store has them: AddToCheckpoint notes its batch's ticket,
  // MarkCheckpointed seals the snapshots under it, and they are released when
  // it is committed (checked at each seal).
  void NoteCheckpoint(state::CheckpointBatch::CommitTicket ticket) const {
    checkpoint_ticket_ = std::move(ticket);
  }
  void SealSnapshots();
  // The customers changed since the last checkpoint (features or models)
  // are in the one NoteCheckpoint noted: their unsaved marks are cleared,
  // and they stay in memory until it is committed (FeatureStore::
  // StageUnsaved): a reload before would read their state from before it.
  void StageCheckpointed();
  // The customer's top recommendations_top_n items not yet bought, as
  // models::WriteRecommendationsJson writes them, into *out. NotFound for a
  // customer this partition does not know, or (saying so) when
  // recommendations are off. Not const: the recommender reuses scratch space.
  Status WriteRecommendations(std::string_view customer_id, std::string* out);
  const ingest::DedupWindow& dedup_window() const { return dedup_; }
  ingest::DedupWindow& dedup_window() { return dedup_; }
  void set_dedup_window(ingest::DedupWindow window) { dedup_ = std::move(window); }

  // Checkpoints (partition_checkpoint.h): the processor's own schedules as
  // a sealed blob (BlobKind::kProcessorState), with the output sequence of
  // the task that owns it.
  void EncodeState(uint64_t next_output_sequence, std::string* out) const;
  // Restores EncodeState's schedules; returns the output sequence.
  Result<uint64_t> DecodeState(std::string_view blob);

 private:
  EventProcessor(const ProcessorOptions& options, OutputSink* sink, ingest::EventDecoder decoder,
                 std::unique_ptr<features::FeatureStore> features, scoring::CustomerModels models,
                 scoring::MinuteMetricsMonitor minutes);
  void WriteCustomerJson(const features::CustomerFeatures& f, std::string* out) const;
  void EmitCustomerScores(const features::CustomerFeatures& f);
  void EmitRefresh(const features::CustomerFeatures& f, const scoring::CustomerRefresh& r);
  void EmitChurnAlert(const features::CustomerFeatures& f, const scoring::CustomerRefresh& r);
  // Minute anomalies and the event-time schedules, after each event.
  void EmitEventTimeOutputs();
  void EmitCentroids(int64_t as_of_ms);
  void EmitCorrelations(int64_t as_of_ms);
  void Publish(OutputKind kind, std::string_view key);  // record_ to the sink
  // Every output goes through here: one over its kind's bound is replaced
  // by an output_too_large dead letter.
  void Send(OutputKind kind, std::string_view key, std::string_view value);
  // A purchase line with an order and an item: the basket models.
  void OnPurchaseLine(const ingest::Event& event);
  // crm.associations when the miner's time crossed the next snapshot time.
  void EmitAssociationsIfDue();
  // crm.recommendations of the customers who bought since the last refresh.
  void EmitRecommendations();
  // Loads a customer from the attached store if it is saved there.
  void LoadSavedCustomer(std::string_view customer_id);
  // The customers whose model state changed since the last call (a label
  // resolved at its deadline changes no features) are pinned in the
  // feature store, so that its pressure checks count them.
  void PinModelChanges() {
    for (uint32_t slot : models_.TakeNewlyUnsaved()) features_->Pin(slot);
  }
  // The churn snapshots of committed checkpoints leave memory (see
  // NoteCheckpoint).
  void ReleaseCommittedSnapshots();
  class SavedCustomers;
  ProcessOutcome DeadLetter(const ingest::Rejection& rejection, std::string_view raw,
                            const ingest::SourcePosition& source, int64_t now_ms);
  // A record whose processing threw before changing any state.
  ProcessOutcome ProcessingError(const std::exception& error, std::string_view raw,
                                 const ingest::SourcePosition& source, int64_t now_ms);
  // Logs and throws PartialUpdateError: the state may be inconsistent.
  [[noreturn]] void Fatal(const std::exception& error, const ingest::SourcePosition& source);

  ProcessorOptions options_;
  OutputSink* sink_;
  ingest::EventDecoder decoder_;
  ingest::DedupWindow dedup_;
  std::unique_ptr<features::FeatureStore> features_;
  scoring::CustomerModels models_;  // churn, value, segment, behaviour; by store slot
  scoring::MinuteMetricsMonitor minutes_;
  ingest::DeadLetterRecord dead_letter_;
  // options_.OutputBound of each kind, looked up per output.
  std::array<size_t, schema::kOutputKindCount> output_bounds_{};
  // Dead letters kept under the dead-letter bound: a shorter original.
  ingest::DeadLetterRecord bounded_dead_letter_;
  // The record being processed, or the last one: the source of an
  // output_too_large dead letter. The topic is copied once per partition.
  std::string source_topic_;
  ingest::SourcePosition source_;
  int64_t source_now_ms_ = 0;
  // The oldest record time since the last refresh / flush (-1: none): the
  // origin of the outputs they emit (OutputSink::origin_ms).
  int64_t refresh_origin_ms_ = -1;
  int64_t flush_origin_ms_ = -1;
  ingest::Event event_;
  // LookAhead's records, each in a decoder of its own (an Event points into
  // its decoder), used in turn.
  struct DecodedAhead {
    ingest::EventDecoder decoder;
    ingest::Event event;
    int64_t now_ms = 0;
    bool valid = false;
  };
  std::vector<DecodedAhead> ahead_;
  size_t next_ahead_ = 0;
  std::string record_;  // reused output buffer
  int64_t next_centroids_ms_ = INT64_MIN;
  int64_t next_correlations_ms_ = INT64_MIN;
  // Boxed: they are large, and absent when off.
  std::unique_ptr<models::AssociationRuleMiner> associations_;
  std::unique_ptr<models::ItemRecommender> recommender_;
  std::vector<models::AssociationRule> rules_;  // snapshot scratch
  std::vector<models::Recommendation> recommendations_;
  int64_t next_associations_ms_ = INT64_MIN;
  bool baskets_unsaved_ = false;
  std::array<double, 4> centre_{};
  ProcessorCounters counters_;
  std::unique_ptr<SavedCustomers> saved_;  // with an attached store
  // PrefetchCustomerOf's buffers: ids as they come, their sorted order, the
  // distinct ones read.
  ingest::Event prefetch_event_;
  state::CustomerReads prefetch_ids_;
  std::vector<uint32_t> prefetch_order_;
  state::CustomerReads prefetch_reads_;
  // A batch is being noted (PrefetchCustomerOf since the last
  // LoadPrefetchedCustomers); the cache had no room left for it.
  bool prefetch_batch_open_ = false;
  bool prefetch_full_ = false;
  // PrefetchPays's decision, and the counts it was last taken at.
  bool prefetch_pays_ = true;
  uint64_t pays_received_ = 0;
  uint64_t pays_loads_ = 0;
  void LoadPrefetchChunk();
  // NoteCheckpoint's ticket (mutable: AddToCheckpoint reads the processor
  // as const), and the seals waiting for their checkpoint's commit.
  mutable state::CheckpointBatch::CommitTicket checkpoint_ticket_;
  std::vector<std::pair<state::CheckpointBatch::CommitTicket, uint32_t>> seals_;
  // The newest checkpoint whose customers the feature store holds staged
  // (commits are in order: it committed, all of them are).
  state::CheckpointBatch::CommitTicket staged_ticket_;
  Status storage_status_;
};

// Answers "what do buyers of `item` also buy": the rules whose antecedent is
// `item` (at most `k`, 0 = all, by descending confidence) over the baskets of
// every processor given (their miners merged when there are several: the
// window of the whole input), written as {"item":..} followed by the fields
// of a crm.associations record. NotFound for an item no basket of the
// window holds, or (saying so) when associations are off.
Status WriteAssociationsFor(std::span<EventProcessor* const> processors, std::string_view item,
                            size_t k, std::string* out);

}  // namespace crmstream::pipeline
