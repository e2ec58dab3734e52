// The per-partition heart of the pipeline: raw record in, outputs out.
//
//   bytes -> decode + validate -> dedup -> per-customer features -> online
//   models (churn, value, segment, anomaly) -> outputs
//
// `crm.customer-scores` is a compactable, latest-value-per-customer topic,
// so its records are coalesced: Process() only marks the customer updated,
// and FlushOutputs() emits one record per customer updated since the last
// flush. The engine flushes at every commit (so a committed offset always
// covers the outputs of its records), replay at the end. This is Kafka
// Streams' record cache: output volume follows customers, not events.
//
// A record that fails validation never stops processing and is never
// dropped: it is written to the dead-letter output with its reason, field,
// original bytes and source position, and counted. A duplicate (event_id
// already seen within the dedup window) is counted once and produces no
// output.
//
// One processor per partition task: it owns that partition's customers, so
// nothing is shared and nothing is locked. Not thread-safe.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "crmstream/config/engine_config.h"
#include "crmstream/features/feature_store.h"
#include "crmstream/ingest/dead_letter.h"
#include "crmstream/ingest/dedup_window.h"
#include "crmstream/ingest/json_decoder.h"
#include "crmstream/pipeline/customer_models.h"
#include "crmstream/pipeline/output_sink.h"
#include "crmstream/pipeline/processor_counters.h"

namespace crmstream::pipeline {

struct ProcessorOptions {
  ingest::DecoderOptions decoder;
  size_t dedup_capacity = ingest::DedupWindow::kDefaultCapacity;
  features::FeatureSpec features;
  bool models_enabled = true;
  CustomerModelsOptions models;
  bool emit_customer_scores = true;  // FlushOutputs() emits crm.customer-scores

  static ProcessorOptions FromPipeline(const config::PipelineSpec& spec);
  // The first invalid field of the decoder, features or models options.
  Status Validate() const;
};

enum class ProcessOutcome : uint8_t { kAccepted, kDuplicate, kRejected };

class EventProcessor {
 public:
  EventProcessor(const ProcessorOptions& options, OutputSink* sink);

  // Decodes one JSON record and processes it. `now_ms` is the wall clock (or
  // the broker timestamp) for dead-letter records and skew checks.
  ProcessOutcome Process(std::string_view bytes, const ingest::SourcePosition& source,
                         int64_t now_ms);
  // Processes a record some other decoder (CSV) already decoded.
  ProcessOutcome ProcessDecoded(const ingest::Rejection& rejection, const ingest::Event& event,
                                std::string_view raw, const ingest::SourcePosition& source,
                                int64_t now_ms);

  // Emits the latest customer-scores record of every customer updated since
  // the last flush.
  void FlushOutputs();

  const ProcessorOptions& options() const { return options_; }
  const ProcessorCounters& counters() const { return counters_; }
  const features::FeatureStore& feature_store() const { return features_; }
  features::FeatureStore& feature_store() { return features_; }
  const CustomerModels& customer_models() const { return models_; }
  ingest::DedupWindow& dedup_window() { return dedup_; }

 private:
  void EmitCustomerScores(const features::CustomerFeatures& f);

  ProcessorOptions options_;
  OutputSink* sink_;
  ingest::EventDecoder decoder_;
  ingest::DedupWindow dedup_;
  features::FeatureStore features_;
  CustomerModels models_;  // churn, value, segment, anomaly; global minute metrics
  ingest::DeadLetterRecord dead_letter_;
  ingest::Event event_;
  std::string record_;  // reused output buffer
  ProcessorCounters counters_;
};

}  // namespace crmstream::pipeline
