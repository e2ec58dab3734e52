#include "crmstream/alerts/churn_gate.h"

#include <cmath>
#include <cstdio>

namespace crmstream::alerts {

Status ChurnGateOptions::Validate() const {
  if (min_positive_labels < 1) {
    return Status::InvalidArgument("ChurnGateOptions.min_positive_labels must be >= 1");
  }
  if (min_negative_labels < 1) {
    return Status::InvalidArgument("ChurnGateOptions.min_negative_labels must be >= 1");
  }
  if (!(auc_floor >= 0.5 && auc_floor <= 1.0)) {
    return Status::InvalidArgument("ChurnGateOptions.auc_floor must be in [0.5, 1]");
  }
  return Status::OK();
}

ChurnGateState EvaluateChurnGate(const ChurnGateOptions& options, const ChurnGateInputs& in) {
  if (in.positives < static_cast<uint64_t>(options.min_positive_labels) ||
      in.negatives < static_cast<uint64_t>(options.min_negative_labels)) {
    return ChurnGateState::kWarmingUp;
  }
  if (!(in.auc >= options.auc_floor)) return ChurnGateState::kBelowFloor;
  return ChurnGateState::kOpen;
}

std::string_view ChurnGateStateName(ChurnGateState s) {
  switch (s) {
    case ChurnGateState::kWarmingUp:
      return "warming_up";
    case ChurnGateState::kBelowFloor:
      return "below_floor";
    case ChurnGateState::kOpen:
      return "open";
  }
  return "warming_up";
}

std::string DescribeChurnGate(ChurnGateState s, const ChurnGateInputs& in) {
  const char* what = s == ChurnGateState::kOpen         ? "open"
                     : s == ChurnGateState::kBelowFloor ? "below the AUC floor"
                                                        : "warming up";
  char line[160];
  std::snprintf(line, sizeof(line), "%s: %llu labels (%llu closings), AUC %.2f", what,
                static_cast<unsigned long long>(in.positives + in.negatives),
                static_cast<unsigned long long>(in.positives), in.auc);
  return line;
}

}  // namespace crmstream::alerts
