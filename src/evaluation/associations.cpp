#include "crmstream/evaluation/associations.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <iomanip>
#include <ostream>
#include <sstream>
#include <string_view>
#include <tuple>
#include <unordered_map>

namespace crmstream::evaluation {
namespace {

constexpr int64_t kWindowDays = 30;
constexpr int64_t kCheckpointDays = 30;
constexpr uint32_t kCappedPairs = 1u << 17;

// The batch reference: every basket of the window rebuilt from the lines,
// every pair counted, the rules derived with the same formulas.
std::vector<NamedRule> BatchRules(const RetailTransactions& data, size_t end, int64_t now_ms,
                                  const models::RuleFloors& floors, uint64_t* baskets_out,
                                  uint64_t* pairs_out) {
  const int64_t from = now_ms - kWindowDays * kMsPerDay;
  std::unordered_map<std::string_view, std::vector<std::string_view>> baskets;
  for (size_t i = end; i-- > 0;) {
    const RetailLine& l = data.lines[i];
    if (l.timestamp_ms <= from) break;  // the file is in time order
    if (!l.purchase()) continue;
    std::vector<std::string_view>& b = baskets[l.invoice];
    if (std::find(b.begin(), b.end(), l.stock_code) == b.end()) b.push_back(l.stock_code);
  }
  std::unordered_map<std::string_view, uint32_t> items;
  std::unordered_map<std::string_view, std::unordered_map<std::string_view, uint32_t>> pairs;
  uint64_t distinct_pairs = 0;
  for (auto& [invoice, b] : baskets) {
    std::sort(b.begin(), b.end());
    for (size_t x = 0; x < b.size(); ++x) {
      ++items[b[x]];
      for (size_t y = x + 1; y < b.size(); ++y) {
        if (++pairs[b[x]][b[y]] == 1) ++distinct_pairs;
      }
    }
  }
  const double n = static_cast<double>(baskets.size());
  std::vector<NamedRule> out;
  for (const auto& [a, row] : pairs) {
    for (const auto& [b, count] : row) {
      if (count < floors.min_pair_count) continue;
      for (int dir = 0; dir < 2; ++dir) {
        NamedRule r;
        r.antecedent = std::string(dir == 0 ? a : b);
        r.consequent = std::string(dir == 0 ? b : a);
        r.pair_count = count;
        r.antecedent_count = items[dir == 0 ? a : b];
        r.consequent_count = items[dir == 0 ? b : a];
        r.support = count / n;
        r.confidence = static_cast<double>(count) / r.antecedent_count;
        r.lift = r.confidence * n / r.consequent_count;
        if (r.support >= floors.min_support && r.confidence >= floors.min_confidence &&
            r.lift >= floors.min_lift) {
          out.push_back(std::move(r));
        }
      }
    }
  }
  *baskets_out = baskets.size();
  *pairs_out = distinct_pairs;
  return out;
}

std::vector<NamedRule> MinerRules(const models::AssociationRuleMiner& miner,
                                  const models::RuleFloors& floors, bool* complete) {
  std::vector<models::AssociationRule> rules;
  const models::RuleSummary s = miner.Rules(floors, &rules);
  *complete = s.complete;
  std::vector<NamedRule> out;
  out.reserve(rules.size());
  for (const models::AssociationRule& r : rules) {
    out.push_back({std::string(miner.item_name(r.antecedent)),
                   std::string(miner.item_name(r.consequent)), r.pair_count, r.antecedent_count,
                   r.consequent_count, r.support, r.confidence, r.lift, r.exact});
  }
  return out;
}

bool ByItems(const NamedRule& x, const NamedRule& y) {
  return std::tie(x.antecedent, x.consequent) < std::tie(y.antecedent, y.consequent);
}

bool Close(double a, double b) { return std::fabs(a - b) <= 1e-12 * std::max(1.0, std::fabs(b)); }

RulesCheckpoint Compare(const RetailTransactions& data, size_t end, int64_t now_ms,
                        const models::RuleFloors& floors, const models::AssociationRuleMiner& miner,
                        const models::AssociationRuleMiner& capped) {
  RulesCheckpoint c;
  c.as_of_ms = now_ms;
  std::vector<NamedRule> batch = BatchRules(data, end, now_ms, floors, &c.baskets, &c.pairs);
  bool complete = false;
  std::vector<NamedRule> mine = MinerRules(miner, floors, &complete);
  std::vector<NamedRule> small = MinerRules(capped, floors, &c.capped_complete);
  std::sort(batch.begin(), batch.end(), ByItems);
  std::sort(mine.begin(), mine.end(), ByItems);
  std::sort(small.begin(), small.end(), ByItems);
  c.rules = batch.size();
  c.identical = mine.size() == batch.size() && miner.baskets() == c.baskets && complete;
  for (size_t i = 0; c.identical && i < batch.size(); ++i) {
    const NamedRule& m = mine[i];
    const NamedRule& b = batch[i];
    c.identical = m.antecedent == b.antecedent && m.consequent == b.consequent &&
                  m.pair_count == b.pair_count && m.antecedent_count == b.antecedent_count &&
                  m.consequent_count == b.consequent_count && m.exact &&
                  Close(m.support, b.support) && Close(m.confidence, b.confidence) &&
                  Close(m.lift, b.lift);
  }
  for (const NamedRule& s : small) {
    auto it = std::lower_bound(batch.begin(), batch.end(), s, ByItems);
    if (it == batch.end() || it->antecedent != s.antecedent || it->consequent != s.consequent) {
      ++c.capped_extra;
      continue;
    }
    ++c.capped_found;
    if (s.pair_count == it->pair_count) ++c.capped_exact;
  }
  return c;
}

}  // namespace

models::RuleFloors DefaultRetailRuleFloors() {
  models::RuleFloors f;
  f.min_support = 0.01;
  f.min_confidence = 0.5;
  f.min_lift = 1.0;
  f.min_pair_count = 2;
  return f;
}

Result<AssociationReport> EvaluateAssociations(const RetailTransactions& data) {
  const auto t0 = std::chrono::steady_clock::now();
  AssociationReport report;
  report.options.window_ms = kWindowDays * kMsPerDay;
  report.capped_options = report.options;
  report.capped_options.max_pairs = kCappedPairs;
  report.floors = DefaultRetailRuleFloors();
  CRM_ASSIGN_OR_RETURN(models::AssociationRuleMiner miner,
                       models::AssociationRuleMiner::Create(report.options));
  CRM_ASSIGN_OR_RETURN(models::AssociationRuleMiner capped,
                       models::AssociationRuleMiner::Create(report.capped_options));
  int64_t next_checkpoint = data.first_ms + kCheckpointDays * kMsPerDay;
  for (size_t i = 0; i < data.lines.size(); ++i) {
    const RetailLine& l = data.lines[i];
    if (l.timestamp_ms > next_checkpoint) {
      report.checkpoints.push_back(Compare(data, i, miner.now_ms(), report.floors, miner, capped));
      while (next_checkpoint < l.timestamp_ms) next_checkpoint += kCheckpointDays * kMsPerDay;
    }
    if (!l.purchase()) continue;
    ++report.lines;
    (void)miner.AddLine(l.invoice, l.stock_code, l.timestamp_ms);
    (void)capped.AddLine(l.invoice, l.stock_code, l.timestamp_ms);
  }
  report.checkpoints.push_back(
      Compare(data, data.lines.size(), miner.now_ms(), report.floors, miner, capped));
  bool complete = false;
  report.final_rules = MinerRules(miner, report.floors, &complete);
  report.memory_bytes = miner.memory_bytes();
  report.capped_memory_bytes = capped.memory_bytes();
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return report;
}

Result<AssociationReport> EvaluateAssociations(const std::filesystem::path& data_dir) {
  CRM_ASSIGN_OR_RETURN(const RetailTransactions data, LoadRetailTransactions(data_dir));
  return EvaluateAssociations(data);
}

void PrintAssociationReport(const AssociationReport& r, std::ostream& out) {
  std::ostringstream s;
  const models::RuleFloors& f = r.floors;
  s << "UCI Online Retail, co-purchase rules: " << r.lines
    << " purchase lines (InvoiceNo = order, StockCode = item), window "
    << r.options.window_ms / kMsPerDay << " days; floors: support >= " << f.min_support
    << ", confidence >= " << f.min_confidence << ", lift >= " << f.min_lift
    << ", pair count >= " << f.min_pair_count << "\n";
  s << "  checked against a batch pair count over the same window every " << kCheckpointDays
    << " days and at the end; a second miner capped at " << r.capped_options.max_pairs
    << " pairs (Space-Saving beyond)\n";
  s << "  day   baskets     pairs  rules  identical | capped: found  exact  extra  complete\n";
  size_t identical = 0;
  for (const RulesCheckpoint& c : r.checkpoints) {
    identical += c.identical ? 1 : 0;
    s << "  " << std::setw(3) << (c.as_of_ms - r.checkpoints.front().as_of_ms) / kMsPerDay + 30
      << "  " << std::setw(8) << c.baskets << "  " << std::setw(8) << c.pairs << "  "
      << std::setw(5) << c.rules << "  " << std::setw(9) << (c.identical ? "yes" : "NO")
      << " |         " << std::setw(5) << c.capped_found << "  " << std::setw(5) << c.capped_exact
      << "  " << std::setw(5) << c.capped_extra << "  " << std::setw(8)
      << (c.capped_complete ? "yes" : "no") << "\n";
  }
  s << "  identical to the batch at " << identical << " of " << r.checkpoints.size()
    << " checkpoints (target: all)\n";
  s << std::fixed << std::setprecision(1) << "  state: " << r.memory_bytes / 1048576.0
    << " MiB uncapped, " << r.capped_memory_bytes / 1048576.0 << " MiB capped; " << r.seconds
    << " s\n";
  s << "  strongest rules of the final window:\n";
  for (size_t i = 0; i < std::min<size_t>(5, r.final_rules.size()); ++i) {
    const NamedRule& x = r.final_rules[i];
    s << std::setprecision(3) << "    " << x.antecedent << " -> " << x.consequent << "  support "
      << x.support << ", confidence " << x.confidence << ", lift " << std::setprecision(1) << x.lift
      << "\n";
  }
  out << s.str();
}

}  // namespace crmstream::evaluation
