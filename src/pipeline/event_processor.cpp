#include "crmstream/pipeline/event_processor.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "crmstream/alerts/churn_alert_policy.h"
#include "crmstream/common/binary_io.h"
#include "crmstream/common/json_writer.h"
#include "crmstream/common/partial_update_error.h"
#include "crmstream/state/state_keys.h"

namespace crmstream::pipeline {

using json_literals::operator""_key;

namespace {

constexpr int64_t kMillisPerMinute = 60'000;
// Version 2 added the crm.associations schedule; version 1 is still read.
constexpr uint16_t kProcessorStateVersion = 2;

std::array<size_t, kOutputKindCount> OutputBounds(const ProcessorOptions& options) {
  std::array<size_t, kOutputKindCount> bounds{};
  for (int k = 0; k < kOutputKindCount; ++k) {
    bounds[static_cast<size_t>(k)] = options.OutputBound(static_cast<OutputKind>(k));
  }
  return bounds;
}

// The original a dead letter under `bound` can quote: JSON escaping grows
// text at most 6 times, the other fields take under 768 bytes (the longest
// topic name included). No bound: the dead letter's default.
size_t BoundedOriginalBytes(size_t bound) {
  if (bound == 0) return ingest::DeadLetterRecord::kDefaultMaxOriginalBytes;
  return bound > 768 ? (bound - 768) / 6 : 0;
}

// The first multiple of `interval` strictly after `t`.
int64_t NextMultiple(int64_t t, int64_t interval) {
  int64_t q = t / interval;
  if (t % interval != 0 && t < 0) --q;
  return (q + 1) * interval;
}

}  // namespace

// The attached state store, seen by the feature store (misses) and the
// churn model (label deadlines of customers not in memory).
class EventProcessor::SavedCustomers final : public features::CustomerMissHandler,
                                             public features::CustomerEvictionHooks,
                                             public scoring::SavedLabelSource {
 public:
  SavedCustomers(EventProcessor* processor, const state::StateStore* store, state::PartitionKey key)
      : processor_(processor), store_(store), key_(key) {}

  void OnMiss(std::string_view customer_id) override { Load(customer_id); }

  // Model changes not yet checkpointed (a label resolved at its deadline
  // changes the models only) keep the customer in memory, and so does a
  // churn snapshot the store does not have yet (its checkpoint staged, not
  // committed). Both are counted by the store's pressure checks: the first
  // are pinned there (PinModelChanges; this covers the event being
  // processed), a snapshot's customer is unsaved or staged until its
  // checkpoint commits, and then the snapshot goes too (StagedCommitted).
  bool Pinned(uint32_t slot) override {
    if (!processor_->options_.models_enabled) return false;
    const scoring::CustomerModels& models = processor_->models_;
    return models.unsaved_slot(slot) ||
           (slot < models.churn().slot_count() && models.churn().holds_snapshot(slot));
  }
  void Evicted(uint32_t slot) override { processor_->models_.Forget(slot); }
  size_t OtherCustomerBytes() override { return processor_->models_.customer_memory().total(); }
  bool StagedCommitted() override {
    const state::CheckpointBatch::CommitTicket& ticket = processor_->staged_ticket_;
    const bool committed = !ticket.issued() || ticket.committed();
    // The store releases the staged customers now: their snapshots must not
    // keep them (uncounted) until the next checkpoint.
    if (committed) processor_->ReleaseCommittedSnapshots();
    return committed;
  }

  bool NextSaved(const scoring::SavedLabel* after, scoring::SavedLabel* out) override {
    if (after != nullptr) {
      after_.deadline_ms = after->deadline_ms;
      after_.id_hash = after->id_hash;
      after_.customer_id = after->customer_id;
    }
    auto next = store_->NextLabelDeadline(key_, after != nullptr ? &after_ : nullptr);
    if (!next.ok()) {
      Fail(next.status().WithContext("label deadlines"));
      return false;
    }
    if (!next->has_value()) return false;
    out->deadline_ms = (*next)->deadline_ms;
    out->id_hash = (*next)->id_hash;
    out->customer_id = std::move((*next)->customer_id);
    return ReadSnapshot((*next)->example, out);
  }

  bool ReadSaved(scoring::SavedLabel* label) override {
    auto example =
        store_->GetLabelExample(key_, label->deadline_ms, label->id_hash, label->customer_id);
    if (!example.ok()) {
      Fail(example.status().WithContext("a label deadline"));
      return false;
    }
    if (!example->has_value()) {
      Fail(Status::Corruption("a pending churn example is missing from the label index"));
      return false;
    }
    return ReadSnapshot(**example, label);
  }

  std::optional<uint32_t> SlotOf(std::string_view customer_id) override {
    const features::CustomerFeatures* f = processor_->features_->Find(customer_id);
    if (f == nullptr) {
      Load(customer_id);
      f = processor_->features_->Find(customer_id);
    }
    if (f == nullptr) return std::nullopt;
    return f->slot();
  }

  void Load(std::string_view customer_id) {
    auto blobs = store_->GetCustomer(key_, customer_id);
    if (!blobs.ok()) return Failed(customer_id, blobs.status());
    if (!blobs->features) return;
    Install(customer_id, *blobs->features, blobs->model ? std::string_view(*blobs->model) : "");
  }

  // One MultiGet for the ids in `reads` (customers not in memory), each
  // found installed as Load does and held until its event. False when the
  // cache had no room left for one of them (the rest stay unread: their
  // events load them).
  bool LoadAll(state::CustomerReads* reads) {
    Status st = store_->ReadCustomers(key_, reads);
    if (!st.ok()) {
      Fail(st.WithContext("saved customers"));
      return true;
    }
    for (size_t i = 0; i < reads->size(); ++i) {
      if (reads->features(i).empty()) continue;  // a new customer
      // Never over a customer in memory: its state may be newer.
      if (processor_->features_->Find(reads->customer_id(i)) != nullptr) continue;
      if (!Install(reads->customer_id(i), reads->features(i), reads->model(i), /*held=*/true)) {
        return false;
      }
      ++prefetched_;
    }
    return true;
  }

 private:
  // A saved customer's records (`model` empty when it has none) into memory;
  // `held` until its event (FeatureStore::LoadHeldCustomer): false when
  // there was no room for it.
  bool Install(std::string_view customer_id, std::string_view features, std::string_view model,
               bool held = false) {
    Status st;
    if (held) {
      Result<bool> loaded = processor_->features_->LoadHeldCustomer(customer_id, features);
      if (loaded.ok() && !*loaded) return false;
      st = loaded.status();
    } else {
      st = processor_->features_->LoadCustomer(customer_id, features);
    }
    ++loads_;
    if (st.ok() && !model.empty() && processor_->options_.models_enabled) {
      st = processor_->models_.DecodeCustomer(*processor_->features_->Find(customer_id), model);
    }
    if (!st.ok()) Failed(customer_id, st);
    return true;
  }

  void Failed(std::string_view customer_id, const Status& st) {
    // Errors end in logs: they never name the customer (a customer
    // identifier); the id goes to the debug log only.
    spdlog::debug("state store: the saved customer that failed to load is customer id '{}'",
                  customer_id);
    Fail(st.WithContext("a saved customer (--log-level debug shows its id)"));
  }

  void Fail(const Status& st) {
    if (processor_->storage_status_.ok()) processor_->storage_status_ = st;
  }

  // A label index entry's example: the churn model's snapshot.
  bool ReadSnapshot(std::string_view example, scoring::SavedLabel* out) {
    BinaryReader in(example);
    const size_t dim = static_cast<size_t>(processor_->models_.churn().input_dim());
    Status st = in.GetArray(&out->snapshot, dim);
    if (st.ok()) st = in.ExpectEnd();
    if (st.ok() && out->snapshot.size() != dim) {
      st = Status::Corruption("the snapshot has " + std::to_string(out->snapshot.size()) +
                              " features, expected " + std::to_string(dim));
    }
    if (st.ok()) return true;
    Fail(st.WithContext("a label deadline's example"));
    return false;
  }

  EventProcessor* processor_;
  const state::StateStore* store_;
  state::PartitionKey key_;
  state::LabelDeadline after_;

 public:
  uint64_t loads_ = 0;
  uint64_t prefetched_ = 0;  // of loads_, by LoadAll
};

size_t ProcessorOptions::OutputBound(OutputKind kind) const {
  const size_t own = max_output_bytes_by_kind[static_cast<size_t>(kind)];
  if (own == 0) return max_output_bytes;
  return max_output_bytes == 0 ? own : std::min(own, max_output_bytes);
}

Status ProcessorOptions::Validate() const {
  CRM_RETURN_NOT_OK(decoder.Validate());
  CRM_RETURN_NOT_OK(features.Validate());
  if (centroid_interval_ms <= 0) {
    return Status::InvalidArgument("ProcessorOptions.centroid_interval_ms must be > 0");
  }
  if (correlation_interval_ms <= 0) {
    return Status::InvalidArgument("ProcessorOptions.correlation_interval_ms must be > 0");
  }
  if (max_output_bytes != 0 && max_output_bytes < kMinOutputBytes) {
    return Status::InvalidArgument("ProcessorOptions.max_output_bytes must be 0 or >= " +
                                   std::to_string(kMinOutputBytes));
  }
  const size_t dead_letter_bound = OutputBound(OutputKind::kDeadLetter);
  if (dead_letter_bound != 0 && dead_letter_bound < kMinOutputBytes) {
    return Status::InvalidArgument(
        "ProcessorOptions.max_output_bytes_by_kind of the dead letters must be 0 or >= " +
        std::to_string(kMinOutputBytes));
  }
  if (association_interval_ms <= 0) {
    return Status::InvalidArgument("ProcessorOptions.association_interval_ms must be > 0");
  }
  if (association_max_rules < 1) {
    return Status::InvalidArgument("ProcessorOptions.association_max_rules must be >= 1");
  }
  if (recommendations_top_n < 1 || recommendations_top_n > 100) {
    return Status::InvalidArgument("ProcessorOptions.recommendations_top_n must be in [1, 100]");
  }
  CRM_RETURN_NOT_OK(associations.Validate().WithContext("associations"));
  CRM_RETURN_NOT_OK(association_floors.Validate().WithContext("associations"));
  CRM_RETURN_NOT_OK(recommender.Validate().WithContext("recommendations"));
  CRM_RETURN_NOT_OK(models.Validate());
  return minute_metrics.Validate();
}

ProcessorOptions::ProcessorOptions() = default;
ProcessorOptions::~ProcessorOptions() = default;

models::ItemRecommenderOptions ProcessorOptions::DefaultRecommender() {
  // evaluation::DefaultRecommendProtocol's choices, but rows of the model's
  // default 256 neighbours (the evaluation's 4,096 hold its whole catalogue,
  // about 16 bytes per neighbour per item).
  models::ItemRecommenderOptions o;
  o.history_size = 128;
  o.half_life_days = 30.0;
  return o;
}

Result<std::unique_ptr<EventProcessor>> EventProcessor::Create(const ProcessorOptions& options,
                                                               OutputSink* sink) {
  CRM_RETURN_NOT_OK(options.Validate());
  CRM_ASSIGN_OR_RETURN(ingest::EventDecoder decoder, ingest::EventDecoder::Create(options.decoder));
  CRM_ASSIGN_OR_RETURN(std::unique_ptr<features::FeatureStore> features,
                       features::FeatureStore::Create(options.features));
  CRM_ASSIGN_OR_RETURN(scoring::CustomerModels models,
                       scoring::CustomerModels::Create(options.models, features.get()));
  CRM_ASSIGN_OR_RETURN(scoring::MinuteMetricsMonitor minutes,
                       scoring::MinuteMetricsMonitor::Create(options.minute_metrics));
  std::unique_ptr<EventProcessor> p(new EventProcessor(options, sink, std::move(decoder),
                                                       std::move(features), std::move(models),
                                                       std::move(minutes)));
  // LookAhead's decoders take the records most are (JSON events of a few
  // hundred bytes): a small parser each.
  ingest::DecoderOptions ahead_options = options.decoder;
  ahead_options.max_message_bytes = std::min(ahead_options.max_message_bytes, kLookAheadBytes);
  for (int i = 0; i < 2; ++i) {
    CRM_ASSIGN_OR_RETURN(ingest::EventDecoder ahead, ingest::EventDecoder::Create(ahead_options));
    p->ahead_.push_back({std::move(ahead), {}, 0, false});
  }
  if (options.associations_enabled) {
    CRM_ASSIGN_OR_RETURN(models::AssociationRuleMiner miner,
                         models::AssociationRuleMiner::Create(options.associations));
    p->associations_ = std::make_unique<models::AssociationRuleMiner>(std::move(miner));
  }
  if (options.recommendations_enabled) {
    CRM_ASSIGN_OR_RETURN(models::ItemRecommender recommender,
                         models::ItemRecommender::Create(options.recommender));
    p->recommender_ = std::make_unique<models::ItemRecommender>(std::move(recommender));
  }
  return p;
}

EventProcessor::EventProcessor(const ProcessorOptions& options, OutputSink* sink,
                               ingest::EventDecoder decoder,
                               std::unique_ptr<features::FeatureStore> features,
                               scoring::CustomerModels models,
                               scoring::MinuteMetricsMonitor minutes)
    : options_(options),
      sink_(sink),
      decoder_(std::move(decoder)),
      dedup_(options.dedup_capacity),
      features_(std::move(features)),
      models_(std::move(models)),
      minutes_(std::move(minutes)),
      output_bounds_(OutputBounds(options)),
      bounded_dead_letter_(
          BoundedOriginalBytes(output_bounds_[static_cast<size_t>(OutputKind::kDeadLetter)])) {
  record_.reserve(2048);
}

EventProcessor::~EventProcessor() = default;

uint64_t EventProcessor::customer_loads() const { return saved_ ? saved_->loads_ : 0; }
uint64_t EventProcessor::customer_prefetches() const { return saved_ ? saved_->prefetched_ : 0; }

bool EventProcessor::PrefetchPays() {
  if (saved_ == nullptr) return false;
  constexpr uint64_t kDecideEvery = 4096;
  const uint64_t received = counters_.received.Get();
  if (received - pays_received_ >= kDecideEvery) {
    const uint64_t loads = saved_->loads_ - pays_loads_;
    prefetch_pays_ = loads * 64 >= received - pays_received_;
    pays_received_ = received;
    pays_loads_ = saved_->loads_;
  }
  return prefetch_pays_;
}

void EventProcessor::PrefetchCustomerOf(std::string_view bytes) {
  if (saved_ == nullptr) return;
  if (!prefetch_batch_open_) {
    // A new batch: the last one's events are processed.
    features_->ReleaseHeld();
    prefetch_batch_open_ = true;
    prefetch_full_ = false;
  }
  // Decoded again by Process: a few hundred ns against a disk read. A
  // record Process will reject only costs a look-up.
  if (decoder_.Decode(bytes, 0, &prefetch_event_).rejected()) return;
  const std::string_view id = prefetch_event_.customer_id;
  if (const features::CustomerFeatures* f = features_->Find(id)) {
    // In memory: the batch's loads must not evict it before its event.
    features_->Hold(f->slot());
    return;
  }
  if (prefetch_full_) return;
  prefetch_ids_.Add(id);
  if (prefetch_ids_.size() >= kPrefetchChunk) LoadPrefetchChunk();
}

void EventProcessor::LoadPrefetchedCustomers() {
  if (saved_ == nullptr) return;
  // A batch that noted nothing: the holds of the one before end too.
  if (!prefetch_batch_open_) features_->ReleaseHeld();
  LoadPrefetchChunk();
  prefetch_batch_open_ = false;
}

void EventProcessor::LoadPrefetchChunk() {
  if (prefetch_ids_.size() == 0) return;
  // Held customers cannot make room for each other: once the cache is full
  // of customers that must stay, the batch's other misses are read by their
  // events (which grow the cache past its capacity, as without the read).
  if (!features_->HasRoom()) {
    prefetch_full_ = true;
    prefetch_ids_.Clear();
    return;
  }
  // Sorted and deduplicated: RocksDB reads keys in order anyway, and a
  // customer with several events of the batch is read once.
  prefetch_order_.resize(prefetch_ids_.size());
  for (uint32_t i = 0; i < prefetch_order_.size(); ++i) prefetch_order_[i] = i;
  const auto id = [this](uint32_t i) { return prefetch_ids_.customer_id(i); };
  std::sort(prefetch_order_.begin(), prefetch_order_.end(),
            [&](uint32_t a, uint32_t b) { return id(a) < id(b); });
  prefetch_reads_.Clear();
  for (size_t k = 0; k < prefetch_order_.size(); ++k) {
    if (k > 0 && id(prefetch_order_[k]) == id(prefetch_order_[k - 1])) continue;
    prefetch_reads_.Add(id(prefetch_order_[k]));
  }
  prefetch_ids_.Clear();
  if (!saved_->LoadAll(&prefetch_reads_)) prefetch_full_ = true;
  prefetch_reads_.Clear();
}

void EventProcessor::AttachStateStore(const state::StateStore* store, state::PartitionKey key) {
  saved_ = std::make_unique<SavedCustomers>(this, store, key);
  features_->set_miss_handler(saved_.get());
  models_.SetSavedLabels(saved_.get());
  if (options_.cached_customers != 0) {
    features_->SetCapacity(options_.cached_customers, saved_.get(), options_.customer_cache_bytes);
    models_.set_slot_limit(options_.cached_customers);
  }
}

void EventProcessor::LookAhead(std::string_view bytes, int64_t now_ms) {
  DecodedAhead& a = ahead_[next_ahead_];
  next_ahead_ = next_ahead_ + 1 == ahead_.size() ? 0 : next_ahead_ + 1;
  a.valid =
      bytes.size() <= kLookAheadBytes && !a.decoder.Decode(bytes, now_ms, &a.event).rejected();
  a.now_ms = now_ms;
  if (!a.valid) return;
  dedup_.Prefetch(a.event.event_id);
  const uint32_t slot = features_->Prefetch(a.event.customer_id);
  if (options_.models_enabled && slot != UINT32_MAX) models_.Prefetch(slot);
}

ProcessOutcome EventProcessor::Process(std::string_view bytes, const ingest::SourcePosition& source,
                                       int64_t now_ms) {
  for (DecodedAhead& a : ahead_) {
    if (a.valid && a.now_ms == now_ms && a.decoder.last_message() == bytes) {
      a.valid = false;
      return ProcessDecoded(ingest::Rejection::Accepted(), a.event, bytes, source, now_ms);
    }
  }
  ingest::Rejection r = decoder_.Decode(bytes, now_ms, &event_);
  return ProcessDecoded(r, event_, bytes, source, now_ms);
}

ProcessOutcome EventProcessor::ProcessDecoded(const ingest::Rejection& decoded,
                                              const ingest::Event& event, std::string_view raw,
                                              const ingest::SourcePosition& source,
                                              int64_t now_ms) {
  counters_.received.Add();
  if (source.topic != source_topic_) source_topic_.assign(source.topic);
  source_ = {source_topic_, source.partition, source.offset};
  source_now_ms_ = now_ms;
  // Outputs made now are this record's; a refresh's and a flush's are those
  // of the oldest record since the last one.
  sink_->set_origin_ms(now_ms);
  if (refresh_origin_ms_ < 0 || now_ms < refresh_origin_ms_) refresh_origin_ms_ = now_ms;
  if (flush_origin_ms_ < 0 || now_ms < flush_origin_ms_) flush_origin_ms_ = now_ms;
  ingest::Rejection rejection = decoded;
  if (!rejection.rejected() && !event.plan.empty() && !features_->CanTakePlan(event.plan)) {
    // A bound on input-controlled state: a plan the partition cannot take
    // goes to the dead letters rather than be recorded as another plan.
    rejection = {ingest::RejectReason::kOutOfRange, "plan",
                 "a new plan beyond the partition's 1024 distinct plans"};
  }
  if (rejection.rejected()) return DeadLetter(rejection, raw, source, now_ms);
  if (dedup_.SeenBefore(event.event_id)) {
    counters_.duplicates.Add();
    return ProcessOutcome::kDuplicate;
  }
  // An exception here must not end the engine: processing is deterministic,
  // so a restart would meet the same record again (a crash loop). What the
  // state looks like after a throw decides what happens (a try block costs
  // nothing until something throws):
  // - Reserve and Update throw before changing anything (a customer beyond
  //   features.max_customers, memory for a new customer or plan): the state
  //   is as if the record had never come, so it is dead-lettered as
  //   processing_error and processing goes on. Only the dedup window has
  //   seen its event_id: a copy sent again counts as a duplicate of a record
  //   already handled (dead-lettered).
  // - Anything thrown once the features took the event (PartialUpdateError
  //   from Update; the minute metrics, the models, the event-time outputs)
  //   may have left part of the event applied. That state must not be
  //   checkpointed: the processor stops the engine (Fatal), and the restart
  //   resumes from the last checkpoint, which is consistent.
  bool state_changed = false;
  try {
    if (options_.models_enabled) {
      models_.Reserve(features_->size() + features_->vacant_slots() + 1);  // every slot + a new one
    }
    const features::CustomerFeatures& f = features_->Update(event);
    state_changed = true;
    if (options_.models_enabled) {
      minutes_.OnEvent(event);
      models_.OnEvent(event, f);
      PinModelChanges();
      EmitEventTimeOutputs();
    }
    if (event.type == ingest::EventType::kPurchase && !event.order_id.empty() &&
        !event.item_id.empty()) {
      OnPurchaseLine(event);
    }
  } catch (const PartialUpdateError& error) {
    Fatal(error, source);
  } catch (const std::exception& error) {
    if (state_changed) Fatal(error, source);
    return ProcessingError(error, raw, source, now_ms);
  }
  counters_.accepted.Add();
  counters_.by_type[static_cast<int>(event.type)].Add();
  if (options_.customer_scores_cadence == ProcessorOptions::ScoresCadence::kEvent) FlushOutputs();
  return ProcessOutcome::kAccepted;
}

ProcessOutcome EventProcessor::DeadLetter(const ingest::Rejection& rejection, std::string_view raw,
                                          const ingest::SourcePosition& source, int64_t now_ms) {
  counters_.rejected.Add();
  counters_.by_reason[static_cast<size_t>(rejection.code)].Add();
  std::string_view value = dead_letter_.Build(rejection, source, raw, now_ms);
  const size_t bound = output_bounds_[static_cast<size_t>(OutputKind::kDeadLetter)];
  if (bound != 0 && value.size() > bound) {
    value = bounded_dead_letter_.Build(rejection, source, raw, now_ms);
  }
  Send(OutputKind::kDeadLetter, {}, value);
  counters_.outputs[static_cast<int>(OutputKind::kDeadLetter)].Add();
  return ProcessOutcome::kRejected;
}

ProcessOutcome EventProcessor::ProcessingError(const std::exception& error, std::string_view raw,
                                               const ingest::SourcePosition& source,
                                               int64_t now_ms) {
  // The detail is the exception's text: Build copies it before it goes.
  const ingest::Rejection rejection{ingest::RejectReason::kProcessingError, "", error.what()};
  // Logged at the 1st, 2nd, 4th, 8th... failure: hostile input must not
  // flood the log (the dead letters and the metric count every one).
  const uint64_t failures =
      counters_.by_reason[static_cast<size_t>(ingest::RejectReason::kProcessingError)].Get() + 1;
  if ((failures & (failures - 1)) == 0) {
    spdlog::warn(
        "{}:{} offset {}: processing failed, record sent to the dead-letter output ({} so far in "
        "this partition): {}",
        source.topic, source.partition, source.offset, failures, error.what());
  }
  return DeadLetter(rejection, raw, source, now_ms);
}

void EventProcessor::Fatal(const std::exception& error, const ingest::SourcePosition& source) {
  const std::string message = fmt::format(
      "{}:{} offset {}: processing failed after it had changed the partition's state ({}); the "
      "state may be inconsistent, so the engine stops without a checkpoint and a restart resumes "
      "from the last checkpoint",
      source.topic, source.partition, source.offset, error.what());
  spdlog::critical("{}", message);
  throw PartialUpdateError(message);
}

void EventProcessor::RefreshScores() {
  if (refresh_origin_ms_ >= 0) sink_->set_origin_ms(refresh_origin_ms_);
  refresh_origin_ms_ = -1;
  if (options_.models_enabled && features_->pending_count() > 0) {
    features_->ForEachPending([this](std::string_view, const features::CustomerFeatures& f) {
      EmitRefresh(f, models_.Refresh(f));
    });
    models_.EndFlush();
    PinModelChanges();
  }
  if (recommender_ && options_.emit_recommendations) EmitRecommendations();
  features_->ClearPending();
}

void EventProcessor::FlushOutputs() {
  RefreshScores();
  if (flush_origin_ms_ >= 0) sink_->set_origin_ms(flush_origin_ms_);
  flush_origin_ms_ = -1;
  if (options_.emit_customer_scores) {
    features_->ForEachDirty(
        [this](std::string_view, const features::CustomerFeatures& f) { EmitCustomerScores(f); });
  }
  features_->ClearDirty();
}

void EventProcessor::Publish(OutputKind kind, std::string_view key) {
  Send(kind, key, record_);
  counters_.outputs[static_cast<int>(kind)].Add();
}

void EventProcessor::Send(OutputKind kind, std::string_view key, std::string_view value) {
  const size_t limit = output_bounds_[static_cast<size_t>(kind)];
  if (limit == 0 || key.size() + value.size() <= limit) {
    sink_->Emit(kind, key, value);
    return;
  }
  // The producer would refuse it, and the engine would make it again after
  // every restart: the dead-letter output gets its start instead, under the
  // input record being processed (or the last one, for the outputs of a
  // flush). The detail names the output, never the customer.
  counters_.by_reason[static_cast<size_t>(ingest::RejectReason::kOutputTooLarge)].Add();
  const std::string detail = fmt::format(
      "a {} record of {} bytes is over the {} bytes its topic accepts (the producer's "
      "message.max.bytes, the topic's max.message.bytes)",
      OutputKindName(kind), key.size() + value.size(), limit);
  const ingest::Rejection rejection{ingest::RejectReason::kOutputTooLarge, OutputKindName(kind),
                                    detail};
  std::string_view dead = bounded_dead_letter_.Build(rejection, source_, value, source_now_ms_);
  // Built within the dead-letter bound: over it cannot happen.
  const size_t dead_bound = output_bounds_[static_cast<size_t>(OutputKind::kDeadLetter)];
  if (kind == OutputKind::kDeadLetter || (dead_bound != 0 && dead.size() > dead_bound)) return;
  sink_->Emit(OutputKind::kDeadLetter, {}, dead);
  counters_.outputs[static_cast<int>(OutputKind::kDeadLetter)].Add();
}

void EventProcessor::EmitRefresh(const features::CustomerFeatures& f,
                                 const scoring::CustomerRefresh& r) {
  if (!r.known) return;
  if (r.churn.alert.raise && options_.emit_churn_alerts) EmitChurnAlert(f, r);
  if (r.segment.changed && options_.emit_segments) {
    record_.clear();
    JsonWriter w(&record_);
    w.BeginObject();
    w.Field("kind", std::string_view("segment_change"));
    w.Field("customer_id", f.customer_id());
    w.Field("as_of_ms", r.as_of_ms);
    w.Key("from");
    if (r.segment.from < 0) {
      w.Null();
    } else {
      w.Int(r.segment.from);
    }
    w.Field("to", static_cast<int64_t>(r.segment.to));
    w.EndObject();
    Publish(OutputKind::kSegments, f.customer_id());
  }
  if (r.anomaly.crossed && options_.emit_anomalies) {
    record_.clear();
    JsonWriter w(&record_);
    w.BeginObject();
    w.Field("kind", std::string_view("customer"));
    w.Field("customer_id", f.customer_id());
    w.Field("as_of_ms", r.as_of_ms);
    w.Field("severity", alerts::SeverityName(r.anomaly.severity));
    w.Field("score", r.anomaly.score);
    w.Field("rarity", r.anomaly.rarity);
    w.Field("window_days", static_cast<int64_t>(f.window(0).days));
    w.Key("observed");
    w.BeginObject();
    for (size_t i = 0; i < scoring::kBehaviourNames.size(); ++i)
      w.Field(scoring::kBehaviourNames[i], r.anomaly.observed[i]);
    w.EndObject();
    w.Key("expected");
    w.BeginObject();
    for (size_t i = 0; i < scoring::kBehaviourNames.size(); ++i)
      w.Field(scoring::kBehaviourNames[i], r.anomaly.expected[i]);
    w.EndObject();
    w.EndObject();
    Publish(OutputKind::kAnomalies, f.customer_id());
  }
}

void EventProcessor::EmitChurnAlert(const features::CustomerFeatures& f,
                                    const scoring::CustomerRefresh& r) {
  char id[16];
  alerts::ChurnAlertPolicy::AlertIdHex(r.churn.alert.alert_id, id);
  record_.clear();
  JsonWriter w(&record_);
  w.BeginObject();
  w.Field("alert_id", std::string_view(id, sizeof(id)));
  w.Field("customer_id", f.customer_id());
  w.Field("as_of_ms", r.as_of_ms);
  w.Field("severity", alerts::SeverityName(r.churn.alert.severity));
  w.Field("churn_probability", r.churn.churn_probability);
  w.Field("threshold", models_.churn().alert_policy().options().enter_probability);
  w.Key("contributions");
  w.BeginArray();
  const auto names = features_->feature_names();
  for (const scoring::ChurnContribution& c : r.churn.contributions) {
    w.BeginObject();
    w.Field("feature", std::string_view(names[static_cast<size_t>(c.feature)]));
    w.Field("value", c.value);
    w.Field("contribution", c.contribution);
    w.EndObject();
  }
  w.EndArray();
  w.Key("trigger");
  w.BeginObject();
  w.Field("event_id", r.churn.trigger_event_id);
  w.Field("type", ingest::EventTypeName(r.churn.trigger_type));
  w.Field("timestamp_ms", r.churn.trigger_ms);
  w.EndObject();
  w.EndObject();
  Publish(OutputKind::kChurnAlerts, f.customer_id());
  counters_.alerts_by_severity[static_cast<size_t>(r.churn.alert.severity)].Add();
}

void EventProcessor::EmitEventTimeOutputs() {
  if (!minutes_.anomalies().empty()) {
    if (options_.emit_anomalies) {
      for (const scoring::MinuteAnomaly& a : minutes_.anomalies()) {
        const std::string_view metric = scoring::MinuteMetricName(a.metric);
        record_.clear();
        JsonWriter w(&record_);
        w.BeginObject();
        w.Field("kind", std::string_view("metric"));
        w.Field("metric", metric);
        w.Field("as_of_ms", a.minute_start_ms);
        w.Field("score", a.score);
        w.Field("observed", a.observed);
        w.Field("expected", a.expected);
        w.Field("direction", std::string_view(a.direction > 0 ? "up" : "down"));
        w.Field("since_ms", a.since_ms);
        w.Field("minutes", static_cast<int64_t>(a.minutes));
        w.Field("sustained", a.sustained);
        w.EndObject();
        Publish(OutputKind::kAnomalies, metric);
      }
    }
    minutes_.ClearAnomalies();
  }
  const int64_t watermark = models_.watermark_ms();
  if (options_.emit_segments) {
    if (next_centroids_ms_ == INT64_MIN) {
      next_centroids_ms_ = NextMultiple(watermark, options_.centroid_interval_ms);
    } else if (watermark >= next_centroids_ms_) {
      if (models_.segmenter().seeded()) EmitCentroids(next_centroids_ms_);
      next_centroids_ms_ = NextMultiple(watermark, options_.centroid_interval_ms);
    }
  }
  const int64_t minute_start = minutes_.latest_minute().minute_start_ms;
  if (options_.emit_correlations && minute_start != 0) {
    // As of the end of the latest closed minute.
    const int64_t closed_until = minute_start + kMillisPerMinute;
    if (next_correlations_ms_ == INT64_MIN) {
      next_correlations_ms_ = NextMultiple(closed_until, options_.correlation_interval_ms);
    } else if (closed_until >= next_correlations_ms_) {
      EmitCorrelations(closed_until);
      next_correlations_ms_ = NextMultiple(closed_until, options_.correlation_interval_ms);
    }
  }
}

void EventProcessor::EmitCentroids(int64_t as_of_ms) {
  const scoring::CustomerSegmenter& segmenter = models_.segmenter();
  const int k = segmenter.options().k;
  record_.clear();
  JsonWriter w(&record_);
  w.BeginObject();
  w.Field("kind", std::string_view("centroids"));
  w.Field("as_of_ms", as_of_ms);
  w.Field("k", static_cast<int64_t>(k));
  w.Key("features");
  w.BeginArray();
  for (std::string_view name : scoring::kSegmentFeatureNames) w.String(name);
  w.EndArray();
  w.Key("centroids");
  w.BeginArray();
  for (int c = 0; c < k; ++c) {
    segmenter.Centre(c, centre_);
    w.BeginObject();
    w.Field("segment", static_cast<int64_t>(c));
    w.Field("size", segmenter.Size(c));
    w.Key("center");
    w.BeginArray();
    for (double v : centre_) w.Double(v);
    w.EndArray();
    w.EndObject();
  }
  w.EndArray();
  w.EndObject();
  Publish(OutputKind::kSegments, "centroids");
}

void EventProcessor::EmitCorrelations(int64_t as_of_ms) {
  using scoring::MinuteMetrics;
  const MinuteMetrics& m = minutes_.latest_minute();
  record_.clear();
  JsonWriter w(&record_);
  w.BeginObject();
  w.Field("as_of_ms", as_of_ms);
  w.Field("window_minutes", static_cast<int64_t>(minutes_.options().correlation_window_minutes));
  w.Key("metrics");
  w.BeginArray();
  for (int i = 0; i < MinuteMetrics::kMetrics; ++i) w.String(scoring::MinuteMetricName(i));
  w.EndArray();
  w.Key("matrix");
  w.BeginArray();
  for (int i = 0; i < MinuteMetrics::kMetrics; ++i) {
    w.BeginArray();
    for (int j = 0; j < MinuteMetrics::kMetrics; ++j) {
      w.Double(m.correlation[static_cast<size_t>(i * MinuteMetrics::kMetrics + j)]);
    }
    w.EndArray();
  }
  w.EndArray();
  w.EndObject();
  Publish(OutputKind::kCorrelations, "global");
}

void EventProcessor::WriteCustomerJson(const features::CustomerFeatures& f,
                                       std::string* out) const {
  uint64_t events = 0;
  for (int t = 0; t < ingest::kEventTypeCount; ++t) {
    events += f.event_count(static_cast<ingest::EventType>(t));
  }
  out->clear();
  JsonWriter w(out);
  w.BeginObject();
  w.Field("customer_id"_key, f.customer_id());
  w.Field("as_of_ms"_key, f.as_of_ms());
  w.Field("events"_key, events);
  w.Key("features"_key);
  w.BeginObject();
  features::WriteFeaturesJson(f, &w);
  w.EndObject();
  if (options_.models_enabled) models_.WriteCustomerScores(f, &w);
  w.EndObject();
}

void EventProcessor::SealSnapshots() {
  if (!options_.models_enabled) return;
  seals_.emplace_back(checkpoint_ticket_, models_.SealSnapshots());
  ReleaseCommittedSnapshots();
}

void EventProcessor::ReleaseCommittedSnapshots() {
  // Seals are committed in order; the newest committed one covers all before it.
  size_t committed = 0;
  for (size_t i = 0; i < seals_.size(); ++i) {
    if (seals_[i].first.committed()) committed = i + 1;
  }
  if (committed == 0) return;
  models_.ReleaseSnapshots(seals_[committed - 1].second);
  seals_.erase(seals_.begin(), seals_.begin() + static_cast<std::ptrdiff_t>(committed));
}

void EventProcessor::StageCheckpointed() {
  if (!staged_ticket_.issued() || staged_ticket_.committed()) features_->ReleaseStaged();
  // Those with model changes only (a label resolved at its deadline) too:
  // pinned, they are staged with the unsaved.
  PinModelChanges();
  features_->StageUnsaved();
  models_.ClearUnsaved();
  staged_ticket_ = checkpoint_ticket_;
}

void EventProcessor::LoadSavedCustomer(std::string_view customer_id) {
  if (saved_ != nullptr && features_->Find(customer_id) == nullptr) saved_->Load(customer_id);
}

bool EventProcessor::WriteCustomerRecord(std::string_view customer_id, std::string* out) {
  LoadSavedCustomer(customer_id);
  const features::CustomerFeatures* f = features_->Find(customer_id);
  if (f == nullptr) return false;
  WriteCustomerJson(*f, out);
  return true;
}

void EventProcessor::EmitCustomerScores(const features::CustomerFeatures& f) {
  WriteCustomerJson(f, &record_);
  Send(OutputKind::kCustomerScores, f.customer_id(), record_);
  counters_.outputs[static_cast<int>(OutputKind::kCustomerScores)].Add();
}

void EventProcessor::EncodeState(uint64_t next_output_sequence, std::string* out) const {
  std::string payload;
  BinaryWriter w(&payload);
  w.Put<int64_t>(next_centroids_ms_);
  w.Put<int64_t>(next_correlations_ms_);
  w.Put<uint64_t>(next_output_sequence);
  w.Put<int64_t>(next_associations_ms_);
  *out = SealBlob(BlobKind::kProcessorState, kProcessorStateVersion, payload);
}

Result<uint64_t> EventProcessor::DecodeState(std::string_view blob) {
  CRM_ASSIGN_OR_RETURN(OpenedBlob opened, OpenBlob(blob, BlobKind::kProcessorState));
  if (opened.version != 1 && opened.version != kProcessorStateVersion) {
    return Status::Corruption("processor state: unknown version " + std::to_string(opened.version));
  }
  BinaryReader in(opened.payload);
  int64_t centroids = 0, correlations = 0, associations = INT64_MIN;
  uint64_t sequence = 0;
  CRM_RETURN_NOT_OK(in.Get(&centroids));
  CRM_RETURN_NOT_OK(in.Get(&correlations));
  CRM_RETURN_NOT_OK(in.Get(&sequence));
  if (opened.version >= 2) CRM_RETURN_NOT_OK(in.Get(&associations));
  if (!in.AtEnd()) return Status::Corruption("processor state: trailing bytes");
  next_centroids_ms_ = centroids;
  next_correlations_ms_ = correlations;
  next_associations_ms_ = associations;
  return sequence;
}

}  // namespace crmstream::pipeline
