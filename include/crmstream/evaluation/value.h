// Evaluation of customer-value prediction (next-30-day spend) on the UCI
// Online Retail transactions, time-ordered.
//
// Protocol: the lines with a CustomerID are replayed in time order, an
// invoice at its first line's time (a few span two minutes), invoices of
// the same minute together. At each purchase invoice of a customer (after
// the minute's invoices), each method predicts the
// customer's net spend (purchases minus returns, Quantity * UnitPrice) over
// the next 30 days, (t, t + 30 d]; what really followed is read off the
// stream. Predictions whose 30 days end after the data are not scored.
// Labels arrive late: a model learns a prediction's example only once its 30
// days have passed (the features as they stood at prediction time, never
// the future), so every score is out of sample.
//
// Methods:
// - naive: "the same as the last 30 days", the net spend in (t - 30 d, t];
// - value model: recursive least squares (exact online ridge) on the
//   customer's spend history: net spend over the last 7, 30, 90 and 365
//   days, invoices over the last 30, 90 and 365 days, lifetime net spend and
//   invoices, days since the first and the previous purchase, and a
//   constant (amounts in thousands); trained on labels winsorised at
//   +-20,000, its prediction clamped at 0. Its ridge and clip were chosen on
//   the first half of the stream's predictions only (value.cpp);
// - the engine's value model (scoring::ChurnValueModel): RLS (its
//   value_ridge) on the engine's own standardised feature vector
//   (features::FeatureStore::Snapshot, windows 7/30/90 days, log1p of counts
//   and amounts) and its standardised spend terms (the amounts back on a
//   linear scale, scoring::ValueSpendTerms), as the engine does;
// - the engine's earlier value model, for comparison: the same without the
//   spend terms, ridge 1;
// - batch ridge: the same features as the value model, fitted by least
//   squares (ridge 1) on every scored row and its true label at once
//   (in sample: a hindsight bound for a linear model on these features, not
//   a forecast).
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

namespace crmstream::evaluation {

// Names of the value model's features, in order (the last is the constant).
std::vector<std::string> ValueFeatureNames();

struct ValueRow {
  int64_t customer = 0;
  int64_t timestamp_ms = 0;
  double actual = 0.0;           // net spend in (t, t + 30 d]
  double naive = 0.0;            // net spend in (t - 30 d, t]
  double model = 0.0;            // the value model's prediction
  double engine = 0.0;           // the engine recipe's prediction
  double engine_log_only = 0.0;  // the earlier engine recipe's (no spend terms, ridge 1)
  std::vector<double> features;  // the value model's inputs (ValueFeatureNames)
};

struct ValueErrors {
  double rmse = 0.0;
  double mae = 0.0;
};

struct ValueReport {
  int64_t invoices = 0;  // purchase invoices (prediction points)
  int64_t customers = 0;
  int horizon_days = 30;
  double ridge = 0.0;       // the value model's RLS ridge
  double label_clip = 0.0;  // its training labels' winsorisation
  ValueErrors naive, model, engine, engine_log_only, batch_ridge, zero;
  std::vector<double> batch_coefficients;
  std::vector<ValueRow> rows;  // the scored rows, in stream order
  double seconds = 0.0;
};

Result<ValueReport> EvaluateValue(const RetailTransactions& data);
Result<ValueReport> EvaluateValue(const std::filesystem::path& data_dir);

// RMSE and MAE of a prediction column against `actual`.
ValueErrors ScoreValue(const std::vector<ValueRow>& rows, double ValueRow::*prediction);

void PrintValueReport(const ValueReport& report, std::ostream& out);

}  // namespace crmstream::evaluation
