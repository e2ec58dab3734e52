// Evaluation of the item-item recommender on the UCI Online Retail
// transactions, time-ordered, against a popularity baseline and an exact
// batch item-kNN on the same history.
//
// Protocol: the invoices (purchase lines of products with a CustomerID) are
// replayed in time order. For each invoice of the final month whose
// customer bought before, every method recommends the customer's top N
// products not bought before (N = 10), from everything before the invoice;
// the invoice's products that are new to the customer are what it should
// have found. Hit rate@N: the share of such invoices with at least one of
// them recommended; recall@N: the mean share of them recommended. Invoices
// without a new product are skipped (nothing to find). Then every method
// learns the invoice.
//
// Methods: the online ItemRecommender (updated after every line; its options
// were chosen on the month before the final one, see
// DefaultRecommendProtocol); popularity (the products bought by the most
// distinct customers so far); batch item-kNN (cosine similarity of the
// binary customer x product matrix of everything before the invoice, scores
// summed over the customer's products), computed here from a dense
// co-occurrence matrix independently of the model's code.
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
#include "crmstream/models/item_recommender.h"

namespace crmstream::evaluation {

struct RecommendProtocol {
  size_t top_n = 10;
  // The evaluated period: the `period_days` before the stream's last
  // invoice, shifted `offset_days` earlier (0 = the final month; 30 = the
  // month before, used to choose the model's options).
  int period_days = 30;
  int offset_days = 0;
  models::ItemRecommenderOptions model;
};

// The protocol of the report: the final month, and the model options chosen
// on the month before it.
RecommendProtocol DefaultRecommendProtocol();

struct RecommendScore {
  double hit_rate = 0.0;
  double recall = 0.0;
};

// One evaluated invoice: what was new in it, and each method's list.
struct RecommendCase {
  int64_t customer = 0;
  int64_t timestamp_ms = 0;
  std::string invoice;
  std::vector<std::string> relevant;  // the invoice's products new to the customer
  std::vector<std::string> online;
  std::vector<std::string> item_knn;
  std::vector<std::string> popularity;
};

struct RecommendReport {
  RecommendProtocol protocol;
  int64_t period_start_ms = 0;
  int64_t period_end_ms = 0;
  int64_t invoices = 0;              // purchase invoices replayed
  int64_t period_invoices = 0;       // of them in the period
  int64_t skipped_new_customer = 0;  // in the period, customer never bought before
  int64_t skipped_nothing_new = 0;   // in the period, every product bought before
  int64_t products = 0;
  RecommendScore online;
  RecommendScore item_knn;
  RecommendScore popularity;
  std::vector<RecommendCase> cases;  // the evaluated invoices, in stream order
  double seconds = 0.0;
};

Result<RecommendReport> EvaluateRecommendations(const RetailTransactions& data,
                                                const RecommendProtocol& protocol);
Result<RecommendReport> EvaluateRecommendations(const std::filesystem::path& data_dir);

// Hit rate and recall of one method's lists over the cases.
RecommendScore ScoreRecommendations(const std::vector<RecommendCase>& cases,
                                    std::vector<std::string> RecommendCase::*method);

void PrintRecommendReport(const RecommendReport& report, std::ostream& out);

}  // namespace crmstream::evaluation
