// The engine's outputs: what each is, its stable short name (metric labels,
// replay file names, the dashboard's JSON) and its default topic. Shared by
// the engine, the output readers (dashboard, CLI) and the configuration, so
// each is defined here once. Formats of the records: docs/outputs.md and
// docs/schemas/.
//
// Thread-safety: constant data.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

namespace crmstream::schema {

enum class OutputKind : uint8_t {
  kCustomerScores = 0,
  kChurnAlerts,
  kSegments,
  kAnomalies,
  kCorrelations,
  kDeadLetter,
  // Appended, so the earlier kinds keep their values in stored state.
  kAssociations,
  kRecommendations,
};
inline constexpr int kOutputKindCount = 8;

// Short stable names, in OutputKind order.
inline constexpr std::array<std::string_view, kOutputKindCount> kOutputKindNames = {
    "customer_scores", "churn_alerts", "segments",     "anomalies",
    "correlations",    "dead_letter",  "associations", "recommendations"};
inline constexpr std::string_view OutputKindName(OutputKind k) {
  return kOutputKindNames[static_cast<int>(k)];
}

// Default topic names and partition counts, in OutputKind order.
inline constexpr std::array<std::string_view, kOutputKindCount> kDefaultOutputTopics = {
    "crm.customer-scores", "crm.churn-alerts", "crm.segments",     "crm.anomalies",
    "crm.correlations",    "crm.dead-letter",  "crm.associations", "crm.recommendations"};
inline constexpr std::array<int, kOutputKindCount> kDefaultOutputPartitions = {6, 3, 3, 3,
                                                                               1, 3, 1, 3};

}  // namespace crmstream::schema
