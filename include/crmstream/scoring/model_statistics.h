// The sufficient statistics of one partition task's models, and their merge
// into a global model: what instances exchange so that each scores with a
// model learnt from every partition, not only its own.
//
// Exact merges (the merged statistics equal those of one task fed every
// partition's rows, up to rounding):
//   * minute metrics: revenue, tickets and logins summed per event-time
//     minute, over the minutes every contributing partition has closed and
//     still holds (covered_from_ms .. complete_through_ms), and the count of
//     closed minutes;
//   * the minute correlation's count, means and co-moments (Chan et al.),
//     pooled over the partitions' windows;
//   * the standardisations of the churn features and of the spend terms
//     (Welford counts, means and scatter);
//   * the spend regression (recursive least squares): its square-root factor
//     R with R'R = [X y]'[X y] + ridge * I, stacked and re-triangularised,
//     each partition's rows weighted by its own forgetting (rows of all
//     partitions are taken to end now).
// Approximate merges (no sufficient statistics exist):
//   * the churn model (Bayesian logistic regression): the Gaussian posteriors
//     multiplied, the shared prior divided out once; each posterior was
//     linearised along its own stream, so the product is near, not equal to,
//     what one task would learn;
//   * the segments (mini-batch k-means): centres in log1p units (each
//     partition standardises with its own snapshot), paired by a minimum-cost
//     assignment and averaged by their counts; exact as the mean of the points
//     each centre won when the partitions found the same segments, but
//     assignments depended on each partition's own centres. Customers per
//     segment follow their centre and add up.
// The tree churn models merge not at all (a tree's splits are not
// statistics); a partition that runs one contributes the untrained logistic
// model, which the merge leaves unchanged.
//
// Thread-safety: a value type; none.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "crmstream/common/status.h"
#include "crmstream/models/logistic_regression.h"
#include "crmstream/models/recursive_least_squares.h"
#include "crmstream/models/rolling_correlation.h"
#include "crmstream/models/standardizer.h"

namespace crmstream::scoring {

class CustomerModels;
class MinuteMetricsMonitor;

// One closed event-time minute's partition-wide sums.
struct MinuteSums {
  int64_t minute_start_ms = 0;
  double revenue = 0.0;
  double tickets = 0.0;
  double logins = 0.0;
};

// Segment centres in log1p units of kSegmentFeatureNames, with their
// k-means counts and customers per segment. k == 0 while not seeded.
struct SegmentCentres {
  static constexpr int kDim = 4;
  int k = 0;
  std::vector<double> centres;  // k * kDim, row-major
  std::vector<double> counts;   // k, effective k-means points
  std::vector<uint64_t> sizes;  // k, customers
};

struct ModelStatistics {
  static constexpr uint16_t kVersion = 1;

  // Partitions merged in (1 for a partition's own statistics).
  uint32_t parts = 0;
  // Exact.
  uint64_t minutes_closed = 0;
  // Minutes held by every contributing partition: [covered_from_ms,
  // complete_through_ms]; both INT64_MIN while none has closed a minute.
  int64_t covered_from_ms = INT64_MIN;
  int64_t complete_through_ms = INT64_MIN;
  std::vector<MinuteSums> minutes;  // increasing minute_start_ms, within the range
  models::CorrelationMoments minute_moments;
  std::optional<models::Standardizer> churn_features;
  std::optional<models::Standardizer> spend_features;
  std::optional<models::RecursiveLeastSquares> value;
  // Approximate.
  std::optional<models::BayesianLogisticRegression> churn;
  SegmentCentres segments;

  // A partition's statistics, copied from its parts. O(model size);
  // allocates: call it off the hot path (between batches).
  static ModelStatistics Collect(const CustomerModels& models, const MinuteMetricsMonitor& minutes);

  // Folds in the statistics of partitions disjoint from this one's.
  // InvalidArgument if the models' shapes or options differ; this object is
  // then unchanged. Merging into an empty ModelStatistics (parts == 0)
  // copies.
  Status Merge(const ModelStatistics& other);

  // Pearson correlation of minute metrics i and j (0 revenue, 1 tickets,
  // 2 logins) over `minutes`, two-pass; NaN with fewer than 2 minutes or a
  // constant metric.
  double MinuteCorrelation(int i, int j) const;

  // A sealed blob (BlobKind::kModelStatistics), replacing `*out`.
  void Encode(std::string* out) const;
  // Corruption on bad bytes or inconsistent sizes.
  static Result<ModelStatistics> Decode(std::string_view blob);
};

}  // namespace crmstream::scoring
