// Evaluation of the mini-batch k-means segmentation on the UCI Online Retail
// transactions (541,909 invoice lines), against the published full k-means
// inertia on per-customer RFM features.
//
// Recipe (as published): drop lines without CustomerID and lines with
// Quantity < 0; per customer, recency = whole days (floor) from the last
// purchase to 2011-12-10 12:50, frequency = distinct invoices, monetary = sum of
// Quantity * UnitPrice; log1p of each, then standardise with the population
// standard deviation (ddof = 0, as scikit-learn's StandardScaler). 4,339
// customers.
//
// Stateless functions; safe to call from several threads.
#pragma once

#include <cstdint>
#include <filesystem>
#include <iosfwd>
#include <span>
#include <string_view>
#include <vector>

#include "crmstream/common/status.h"

namespace crmstream::evaluation {

// What the loader saw, so a reader can check it against the data set's
// documented counts.
struct RetailLoadCounts {
  int64_t lines = 0;              // data lines (header excluded)
  int64_t missing_customer = 0;   // dropped: empty CustomerID
  int64_t negative_quantity = 0;  // dropped: Quantity < 0 (with a CustomerID)
  int64_t malformed = 0;          // dropped: unparseable line
  int64_t kept = 0;
};

// One row per customer, in ascending CustomerID order.
struct RfmTable {
  std::vector<int64_t> customer_ids;
  std::vector<double> recency_days;  // raw, whole days (floor)
  std::vector<double> frequency;     // raw, distinct invoices
  std::vector<double> monetary;      // raw, sum of Quantity * UnitPrice
  // The customer's latest kept invoice line, minutes since 1970-01-01 (the
  // moment its row is final: the single-pass protocol's stream order).
  std::vector<int64_t> last_purchase_minutes;
  // log1p then standardised, row-major, 3 values per customer
  // (recency, frequency, monetary).
  std::vector<double> features;
  RetailLoadCounts counts;

  size_t size() const { return customer_ids.size(); }
};

// Parses `csv` (the online_retail.csv bytes) into the RFM table. Any byte
// sequence is accepted: quoted fields with commas, CRLF, latin-1 or UTF-8
// descriptions; unparseable lines are counted in counts.malformed.
Result<RfmTable> BuildRfmTable(std::string_view csv);

// Reads <data_dir>/online-retail/online_retail.csv (or <data_dir>/online_retail.csv).
Result<RfmTable> LoadRetailRfm(const std::filesystem::path& data_dir);

// Sum over rows of the squared distance to the nearest centre (row-major
// points and centres of dimension `dim`).
double KMeansInertia(std::span<const double> points, std::span<const double> centres, int dim);

// Published full k-means (n_init = 10) inertia for k = 4..8.
inline constexpr int kRetailMinK = 4;
inline constexpr int kRetailMaxK = 8;
inline constexpr double kRetailPublishedInertia[] = {3952.57, 3310.92, 2869.81, 2562.71, 2351.08};

struct RetailClusteringResult {
  int k = 0;
  double inertia = 0.0;  // all customers vs the final centres
  double published_inertia = 0.0;
  double relative_gap = 0.0;  // inertia / published - 1
  // The chosen model's own prequential estimate over its last epoch (mean
  // squared distance of each customer to its centre before learning it).
  double prequential_mean_sq_distance = 0.0;
  int chosen_restart = 0;
  std::vector<double> centres;  // k * 3, row-major
};

// How the customers are streamed through MiniBatchKMeans. Every model sees
// the customers one at a time, `epochs` times, each epoch in a fresh
// deterministic shuffled order (or, time_ordered, in the order of their
// latest purchase, ties by CustomerID); `restarts` models with different seeds run
// side by side and the one with the lowest prequential distance over its
// last epoch is kept (the streaming analogue of k-means' n_init: chosen by
// the model's own running estimate, not by the final inertia).
struct RetailStreamingProtocol {
  int epochs = 0;
  int restarts = 0;
  int seed_buffer_size = 0;  // k-means++ on the first buffer of customers
  int seed_lloyd_iterations = 0;
  int mini_batch_size = 0;
  double half_life = 0.0;  // in customers; 0 = plain 1/count rates
  uint64_t random_seed = 0;
  bool time_ordered = false;
};

// The protocol EvaluateRetail's main figures use: 10 shuffled epochs.
RetailStreamingProtocol DefaultRetailProtocol();
// What a stream sees: one pass, each customer once, in the order of their
// latest purchase (so the first customers are the long-lapsed ones, and
// k-means++ seeds on them), no decay, restarts run side by side.
RetailStreamingProtocol SinglePassRetailProtocol();

// Streams `table`'s features through MiniBatchKMeans(k, dim 3) under
// `protocol` and measures the final centres' inertia over all customers.
// published_inertia / relative_gap are filled for k in 4..8.
Result<RetailClusteringResult> ClusterRetail(const RfmTable& table, int k,
                                             const RetailStreamingProtocol& protocol);

struct RetailReport {
  RetailLoadCounts counts;
  int64_t customers = 0;
  double load_seconds = 0.0;
  double cluster_seconds = 0.0;
  RetailStreamingProtocol protocol;
  std::vector<RetailClusteringResult> results;  // k = 4..8
  RetailStreamingProtocol single_pass_protocol;
  std::vector<RetailClusteringResult> single_pass_results;  // k = 4..8
};

// Loads the data, builds the RFM table, and for k = 4..8 streams the
// customers through MiniBatchKMeans under DefaultRetailProtocol and under
// SinglePassRetailProtocol and measures the inertia of the final centres.
Result<RetailReport> EvaluateRetail(const std::filesystem::path& data_dir);

// A table with every figure beside the published one.
void PrintRetailReport(const RetailReport& report, std::ostream& out);

}  // namespace crmstream::evaluation
