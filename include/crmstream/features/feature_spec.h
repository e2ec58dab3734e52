// What the per-customer feature store computes: the sliding windows of event
// time. Built once at start-up from the pipeline configuration and validated
// there; immutable afterwards, so it may be read from any thread.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "crmstream/common/status.h"

namespace crmstream::features {

struct FeatureSpec {
  // Sliding windows of event time, in whole UTC days. A window of N days at
  // time t covers the events whose UTC day lies in (day(t) - N, day(t)]
  // (docs/features.md). Distinct, each in [1, kMaxWindowDays], at most
  // kMaxWindows of them. The longest one also bounds how much per-day history
  // a customer keeps and is the window of the ticket and complaint rates.
  // Default: 7, 30 and 90 days.
  std::vector<int> window_days = {7, 30, 90};

  // Most customers one store (one input partition) holds in memory (with a
  // bounded cache, customers evicted to the state store do not count); an
  // event of one more customer throws std::length_error from
  // FeatureStore::Update, with the store unchanged (the pipeline
  // dead-letters it as processing_error).
  // In [1, kMaxCustomers]; default kMaxCustomers (the slot index's range).
  uint32_t max_customers = kMaxCustomers;

  static constexpr uint32_t kMaxCustomers = (1u << 26) - 2;
  static constexpr int kMaxWindowDays = 1000;
  static constexpr size_t kMaxWindows = 8;

  // InvalidArgument naming the field ("window_days[1]: ...") on a bad spec.
  Status Validate() const;

  // The longest window, in days (requires a valid spec).
  int LongestWindowDays() const;
};

}  // namespace crmstream::features
