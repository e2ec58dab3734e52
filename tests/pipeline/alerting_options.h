// Processor options for tests that need churn alerts from a short
// generated world.
#pragma once

#include "crmstream/pipeline/event_processor.h"

namespace crmstream::pipeline {

// The defaults, but with a churn alert gate that opens on the first
// matured labels of this short world (the defaults wait for predictions of
// a trained model to mature: about two horizons), so that alerts are
// published and their records checked.
inline ProcessorOptions AlertingOptions() {
  ProcessorOptions o;
  o.models.churn.warm_after_examples = 0;
  o.models.churn.gate.min_positive_labels = 1;
  o.models.churn.gate.min_negative_labels = 1;
  o.models.churn.gate.auc_floor = 0.5;
  o.models.churn.calibration.min_labels = 50;
  o.models.churn.calibration.refit_every = 32;
  // Calibrated to this world's base rate, few customers reach the default
  // levels within its first weeks.
  o.models.churn.alerts.enter_probability = 0.15;
  o.models.churn.alerts.exit_probability = 0.1;
  o.models.churn.alerts.high_probability = 0.3;
  o.models.churn.alerts.critical_probability = 0.5;
  return o;
}

}  // namespace crmstream::pipeline
