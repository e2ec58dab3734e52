// What shapes the engine's outputs, recorded in the state store: the state
// format, the delivery guarantee, the commit interval (block boundaries),
// the output size bound, the dedup window of a partition, the pipeline's
// name and definition (a hash of its file: thresholds, emit flags, models)
// and the processor options that decide outputs without a file.
//
// Under exactly-once, a restart regenerates the outputs of the records
// processed since the last checkpoint and drops those its predecessor
// delivered, by sequence number: a different configuration would generate
// other outputs under the same numbers, so suppression would drop or repeat
// the wrong ones. A mismatch is refused there, naming what changed and how
// to proceed; under at-least-once it is logged and recorded.
//
// Thread-safety: functions are reentrant; the store is used at start-up.
#pragma once

#include <string>

#include "crmstream/common/status.h"
#include "crmstream/config/engine_config.h"
#include "crmstream/pipeline/event_processor.h"
#include "crmstream/pipeline/pipeline_spec.h"
#include "crmstream/state/state_store.h"

namespace crmstream::runtime {

// Metadata name of the recorded fingerprint.
inline constexpr std::string_view kOutputFingerprintMetadata = "output_fingerprint";

// The fingerprint as "key=value" lines (a stable order). `config` carries
// the resolved guarantee, `options` the processor options in effect. IOError
// when the pipeline file cannot be read.
Result<std::string> OutputFingerprint(const config::EngineConfig& config,
                                      const pipeline::PipelineSpec& pipeline,
                                      const pipeline::ProcessorOptions& options);

// Compares `fingerprint` with the store's and records it. InvalidArgument,
// naming each changed item and the ways forward, for a mismatch under an
// exactly-once guarantee unless `accept_change`.
Status CheckOutputFingerprint(state::StateStore* store, const std::string& fingerprint,
                              config::Guarantee guarantee, bool accept_change);

}  // namespace crmstream::runtime
