#include "crmstream/pipeline/event_processor.h"

#include "crmstream/common/json_writer.h"

namespace crmstream::pipeline {

ProcessorOptions ProcessorOptions::FromPipeline(const config::PipelineSpec& spec) {
  ProcessorOptions o;
  o.decoder.max_amount = spec.max_amount;
  o.decoder.min_timestamp_ms = spec.min_timestamp_ms;
  o.decoder.max_timestamp_ms = spec.max_timestamp_ms;
  o.decoder.max_message_bytes = static_cast<size_t>(spec.max_message_bytes);
  o.dedup_capacity = static_cast<size_t>(spec.dedup_window);
  o.features.window_days = spec.window_days;
  o.emit_customer_scores = spec.emit_customer_scores;
  o.models_enabled = spec.models_enabled;
  o.models.churn_horizon_days = spec.churn_horizon_days;
  o.models.kmeans_k = spec.segments;
  return o;
}

Status ProcessorOptions::Validate() const {
  CRM_RETURN_NOT_OK(decoder.Validate());
  CRM_RETURN_NOT_OK(features.Validate());
  return models.Validate();
}

EventProcessor::EventProcessor(const ProcessorOptions& options, OutputSink* sink)
    : options_(options),
      sink_(sink),
      decoder_(options.decoder),
      dedup_(options.dedup_capacity),
      features_(options.features),
      models_(options.models, options.features) {
  record_.reserve(2048);
}

ProcessOutcome EventProcessor::Process(std::string_view bytes, const ingest::SourcePosition& source,
                                       int64_t now_ms) {
  ingest::Rejection r = decoder_.Decode(bytes, now_ms, &event_);
  return ProcessDecoded(r, event_, bytes, source, now_ms);
}

ProcessOutcome EventProcessor::ProcessDecoded(const ingest::Rejection& rejection,
                                              const ingest::Event& event, std::string_view raw,
                                              const ingest::SourcePosition& source,
                                              int64_t now_ms) {
  counters_.received.Add();
  if (rejection.rejected()) {
    counters_.rejected.Add();
    counters_.by_reason[static_cast<size_t>(rejection.code)].Add();
    std::string_view value = dead_letter_.Build(rejection, source, raw, now_ms);
    sink_->Emit(OutputKind::kDeadLetter, {}, value);
    counters_.outputs[static_cast<int>(OutputKind::kDeadLetter)].Add();
    return ProcessOutcome::kRejected;
  }
  if (dedup_.SeenBefore(event.event_id)) {
    counters_.duplicates.Add();
    return ProcessOutcome::kDuplicate;
  }
  counters_.accepted.Add();
  counters_.by_type[static_cast<int>(event.type)].Add();
  const features::CustomerFeatures& f = features_.Update(event);
  if (options_.models_enabled) models_.OnEvent(event, f);
  return ProcessOutcome::kAccepted;
}

void EventProcessor::FlushOutputs() {
  if (options_.emit_customer_scores) {
    features_.ForEachDirty(
        [this](std::string_view, const features::CustomerFeatures& f) { EmitCustomerScores(f); });
  }
  features_.ClearDirty();
}

void EventProcessor::EmitCustomerScores(const features::CustomerFeatures& f) {
  uint64_t events = 0;
  for (int t = 0; t < ingest::kEventTypeCount; ++t) {
    events += f.event_count(static_cast<ingest::EventType>(t));
  }
  record_.clear();
  JsonWriter w(&record_);
  w.BeginObject();
  w.Field("customer_id", f.customer_id());
  w.Field("as_of_ms", f.as_of_ms());
  w.Field("events", events);
  w.Key("features");
  w.BeginObject();
  features::WriteFeaturesJson(f, &w);
  w.EndObject();
  if (options_.models_enabled) models_.WriteCustomerScores(f.customer_id(), &w);
  w.EndObject();
  sink_->Emit(OutputKind::kCustomerScores, f.customer_id(), record_);
  counters_.outputs[static_cast<int>(OutputKind::kCustomerScores)].Add();
}

}  // namespace crmstream::pipeline
