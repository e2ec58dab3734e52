// Runs a table feed (see feed_spec.h): each row is one labelled customer.
// The row's numeric columns (optionally log1p) are standardised with the
// statistics of past rows only, categorical columns are one-hot encoded with
// a growing vocabulary, interactions give a numeric feature one slope per
// category; the churn model (Bayesian logistic regression) scores the row,
// the score and label enter the prequential ROC-AUC and log loss, and only
// then does the model learn from the row. One pass, in file order.
//
// Single-threaded.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string_view>
#include <vector>

#include "crmstream/common/status.h"
#include "crmstream/feeds/feed_spec.h"

namespace crmstream::feeds {

struct TableFeedReport {
  uint64_t rows = 0;
  uint64_t positives = 0;
  int features = 0;  // width of the encoded feature vector
  double auc = 0.5;  // prequential ROC-AUC
  double log_loss = 0.0;
  // The three features that pushed the last row's score most, by name.
  std::vector<std::pair<std::string, double>> last_explanation;
  double seconds = 0.0;
};

// Called for every row after it is scored: (id, predicted probability, label).
using TableScoreFn = std::function<void(std::string_view id, double probability, bool label)>;

// InvalidArgument for a column the file lacks; Corruption naming the file and
// line for a row with a label that is neither `positive` nor `negative`, or a
// non-numeric cell in a numeric column without a `missing` value.
Result<TableFeedReport> RunTableFeed(const FeedSpec& spec, const std::filesystem::path& input,
                                     const TableScoreFn& on_score = {});

}  // namespace crmstream::feeds
