#include "crmstream/features/feature_spec.h"

#include <algorithm>
#include <string>

namespace crmstream::features {

Status FeatureSpec::Validate() const {
  if (max_customers < 1 || max_customers > kMaxCustomers) {
    return Status::InvalidArgument("max_customers: " + std::to_string(max_customers) +
                                   " is outside [1, " + std::to_string(kMaxCustomers) + "]");
  }
  if (window_days.empty()) {
    return Status::InvalidArgument("window_days: at least one window is required");
  }
  if (window_days.size() > kMaxWindows) {
    return Status::InvalidArgument("window_days: " + std::to_string(window_days.size()) +
                                   " windows, at most " + std::to_string(kMaxWindows));
  }
  for (size_t i = 0; i < window_days.size(); ++i) {
    const std::string field = "window_days[" + std::to_string(i) + "]";
    const int d = window_days[i];
    if (d < 1 || d > kMaxWindowDays) {
      return Status::InvalidArgument(field + ": " + std::to_string(d) + " days is outside [1, " +
                                     std::to_string(kMaxWindowDays) + "]");
    }
    for (size_t j = 0; j < i; ++j) {
      if (window_days[j] == d) {
        return Status::InvalidArgument(field + ": " + std::to_string(d) +
                                       " days repeats window_days[" + std::to_string(j) + "]");
      }
    }
  }
  return Status::OK();
}

int FeatureSpec::LongestWindowDays() const {
  return window_days.empty() ? 0 : *std::max_element(window_days.begin(), window_days.end());
}

}  // namespace crmstream::features
