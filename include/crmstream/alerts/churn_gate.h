// Whether the churn model has earned the right to alert: until it has,
// nobody is scored "at risk" and no churn alert is raised.
//
// The gate looks at the model's own prequential record over its recent
// matured labels (predictions judged by labels that arrived later): enough
// positive and negative labels for the figures to mean something, and a
// ROC-AUC at or above a floor. A world where nobody has churned yet has no
// positives, so a model that has only ever seen "stayed" labels cannot
// alert however confident it is. The gate closes again if the recent AUC
// falls below the floor.
//
// Thread-safety: plain values and a pure function.
#pragma once

#include <cstdint>
#include <string>

#include "crmstream/common/status.h"

namespace crmstream::alerts {

struct ChurnGateOptions {
  // Matured labels of each class needed in the recent window, >= 1.
  // Defaults 30 positives (closings) and 200 negatives.
  int min_positive_labels = 30;
  int min_negative_labels = 200;
  // Prequential ROC-AUC over the recent window needed, in [0.5, 1].
  // Default 0.7.
  double auc_floor = 0.7;

  // InvalidArgument naming the first bad field.
  Status Validate() const;
};

// The figures the gate decides on.
struct ChurnGateInputs {
  uint64_t positives = 0;
  uint64_t negatives = 0;
  double auc = 0.5;
};

enum class ChurnGateState : uint8_t {
  kWarmingUp = 0,  // not enough labels of one class yet
  kBelowFloor,     // labels enough, AUC below the floor
  kOpen,
};

ChurnGateState EvaluateChurnGate(const ChurnGateOptions& options, const ChurnGateInputs& in);
// "warming_up", "below_floor", "open" (records and metric labels).
std::string_view ChurnGateStateName(ChurnGateState s);
// What a person reads: "warming up: 412 labels (3 closings), AUC 0.61" /
// "open: 5000 labels (240 closings), AUC 0.83".
std::string DescribeChurnGate(ChurnGateState s, const ChurnGateInputs& in);

}  // namespace crmstream::alerts
