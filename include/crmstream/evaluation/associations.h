// The co-purchase association rules on the UCI Online Retail stream,
// checked against a batch pair count over the same window.
//
// The purchase lines with a CustomerID (the engine's stream: InvoiceNo is the
// order, StockCode the item) go through AssociationRuleMiner one at a time
// in file (time) order, with a 30-day window. Every 30 days of event time
// and at the end, the miner's rules are compared with a batch computation
// over the same window: the baskets (distinct stock codes per invoice) whose
// invoice time lies in (now - 30 d, now], every pair counted, the rules
// above the same floors derived. A second miner runs with its pair table
// capped at an eighth of the window's pairs, to show the Space-Saving
// policy: which of the batch rules it still reports, and how exactly.
//
// Stateless functions; safe to call from several threads.
#pragma once

#include <cstdint>
#include <filesystem>
#include <iosfwd>
#include <string>
#include <vector>

#include "crmstream/common/status.h"
#include "crmstream/evaluation/retail_transactions.h"
#include "crmstream/models/association_rules.h"

namespace crmstream::evaluation {

struct NamedRule {
  std::string antecedent;
  std::string consequent;
  uint32_t pair_count = 0;
  uint32_t antecedent_count = 0;
  uint32_t consequent_count = 0;
  double support = 0.0;
  double confidence = 0.0;
  double lift = 0.0;
  bool exact = true;
};

struct RulesCheckpoint {
  int64_t as_of_ms = 0;
  uint64_t baskets = 0;
  uint64_t pairs = 0;      // distinct pairs of the window (batch)
  size_t rules = 0;        // batch rules above the floors
  bool identical = false;  // the miner's rules are the batch's, counts and metrics
  // The capped miner: batch rules it reports, of those with exact counts,
  // and rules it reports that the batch does not have.
  size_t capped_found = 0;
  size_t capped_exact = 0;
  size_t capped_extra = 0;
  bool capped_complete = false;
};

struct AssociationReport {
  models::AssociationRulesOptions options;
  models::AssociationRulesOptions capped_options;
  models::RuleFloors floors;
  int64_t lines = 0;  // purchase lines fed
  std::vector<RulesCheckpoint> checkpoints;
  std::vector<NamedRule> final_rules;  // the miner's, at the end, by descending lift
  size_t memory_bytes = 0;             // the uncapped miner's state at the end
  size_t capped_memory_bytes = 0;
  double seconds = 0.0;
};

// The floors of the report: support >= 1% of the window's baskets,
// confidence >= 0.5, lift >= 1, at least 2 baskets.
models::RuleFloors DefaultRetailRuleFloors();

Result<AssociationReport> EvaluateAssociations(const RetailTransactions& data);
Result<AssociationReport> EvaluateAssociations(const std::filesystem::path& data_dir);

void PrintAssociationReport(const AssociationReport& report, std::ostream& out);

}  // namespace crmstream::evaluation
