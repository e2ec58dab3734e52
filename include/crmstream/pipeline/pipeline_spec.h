// A pipeline definition (pipelines/*.yaml): what the engine computes, as the
// processor's own options. Every default is the one of the module options it
// fills (ingest::DecoderOptions, features::FeatureSpec, the scoring options,
// ProcessorOptions): a field absent from the file keeps it, and there is no
// second copy of any default here. Errors name the file, line and field.
//
// Thread-safety: loading is reentrant; the spec is a plain value.
#pragma once

#include <string>

#include "crmstream/common/status.h"
#include "crmstream/pipeline/event_processor.h"

namespace crmstream::pipeline {

struct PipelineSpec {
  std::string file;  // the file it was loaded from ("" for defaults)
  std::string name = "crm";
  ProcessorOptions processor;
};

// Loads pipelines/*.yaml; the options are validated (ProcessorOptions::Validate).
Result<PipelineSpec> LoadPipelineSpec(const std::string& path);

}  // namespace crmstream::pipeline
