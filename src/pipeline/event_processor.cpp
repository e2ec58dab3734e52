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
  return o;
}

EventProcessor::EventProcessor(const ProcessorOptions& options, OutputSink* sink)
    : options_(options),
      sink_(sink),
      decoder_(options.decoder),
      dedup_(options.dedup_capacity),
      features_(options.features) {
  record_.reserve(2048);
}

ProcessOutcome EventProcessor::Process(std::string_view bytes,
                                       const ingest::SourcePosition& source, int64_t now_ms) {
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
  if (options_.emit_customer_scores) EmitCustomerScores(event, f, source);
  return ProcessOutcome::kAccepted;
}

void EventProcessor::EmitCustomerScores(const ingest::Event& event,
                                        const features::CustomerFeatures& f,
                                        const ingest::SourcePosition& source) {
  record_.clear();
  JsonWriter w(&record_);
  w.BeginObject();
  w.Field("customer_id", event.customer_id);
  w.Field("event_id", event.event_id);
  w.Field("event_type", ingest::EventTypeName(event.type));
  w.Field("event_time_ms", event.timestamp_ms);
  w.Key("source");
  w.BeginObject();
  w.Field("topic", source.topic);
  w.Field("partition", source.partition);
  w.Field("offset", source.offset);
  w.EndObject();
  w.Key("features");
  w.BeginObject();
  features::WriteFeaturesJson(f, &w);
  w.EndObject();
  w.EndObject();
  sink_->Emit(OutputKind::kCustomerScores, event.customer_id, record_);
  counters_.outputs[static_cast<int>(OutputKind::kCustomerScores)].Add();
}

}  // namespace crmstream::pipeline
