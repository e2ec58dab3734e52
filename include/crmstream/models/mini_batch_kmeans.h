// Online customer segmentation: mini-batch k-means (Sculley, "Web-scale
// k-means clustering", WWW 2010) with per-centre learning rates 1/count,
// k-means++ seeding on the first buffer of points, optional exponential decay
// of the counts (so centres follow drift) and re-seeding of dead centres.
//
// The model learns one row at a time. Points are buffered until the seeding
// buffer is full; the centres are then seeded by greedy k-means++ on that
// buffer and refined by a few Lloyd iterations over it. After that every
// point is assigned to its nearest centre as it arrives and the centres move
// once per mini-batch (mini_batch_size = 1 is MacQueen's online k-means).
//
// Per-centre learning rate 1/count means that, without decay, a centre is
// exactly the mean of the points it has won (and its count their number), so
// (centre, count) are sufficient statistics of its points. That is what
// Merge() combines.
//
// Memory is allocated at construction; Update() and Assign() allocate nothing.
// Not thread-safe: one instance per thread (or partition), combined by Merge.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "crmstream/common/status.h"

namespace crmstream::models {

struct MiniBatchKMeansOptions {
  // Number of clusters, >= 1.
  int k = 8;
  // Dimension of a point, >= 1.
  int dim = 3;
  // Points collected before seeding (k-means++ on this buffer); >= k.
  int seed_buffer_size = 256;
  // Lloyd iterations over the seeding buffer after k-means++ (0 = none).
  int seed_lloyd_iterations = 10;
  // Points per mini-batch; the centres move once per batch. 1 = per point.
  int mini_batch_size = 1;
  // Half-life of the counts, in points processed; 0 = no decay (counts only
  // grow, and centres converge to the mean of their points).
  double half_life = 0.0;
  // A centre that has won no point for this many points is re-seeded from a
  // recent point chosen as in k-means++ (probability proportional to the
  // squared distance to the nearest other centre); 0 disables re-seeding.
  uint64_t dead_after = 0;
  // Number of recent points kept as candidates for re-seeding.
  int recent_capacity = 256;
  // Smoothing of the exponentially weighted prequential distance, in points.
  double inertia_ewma_span = 1000.0;
  // Seed of the deterministic random generator (k-means++ and re-seeding).
  uint64_t random_seed = 0x5eed;

  Status Validate() const;
};

// Minimum-cost perfect matching on an n x n row-major cost matrix
// (Hungarian algorithm, Kuhn-Munkres with potentials, O(n^3)): match[row] =
// column. Merge pairs centres with it; so do merges of exported centres.
std::vector<int> MinCostAssignment(const std::vector<double>& cost, int n);

// Nearest centre of a point and its squared Euclidean distance. cluster is -1
// while the model is not seeded yet.
struct KMeansAssignment {
  int cluster = -1;
  double squared_distance = 0.0;
};

// Self-evaluation: every point after seeding is scored against the centres as
// they stood before the point was learnt (prequential inertia).
struct KMeansQuality {
  uint64_t scored_points = 0;
  double sum_squared_distance = 0.0;   // over all scored points
  double ewma_squared_distance = 0.0;  // recent average
  uint64_t reseeded_centres = 0;
  double mean_squared_distance() const {
    return scored_points == 0 ? 0.0 : sum_squared_distance / static_cast<double>(scored_points);
  }
};

class MiniBatchKMeans {
 public:
  // Checks the options; the only allocation of the model's lifetime.
  static Result<MiniBatchKMeans> Create(const MiniBatchKMeansOptions& options);

  // Learns one point (dimension dim(), finite values). Returns the point's
  // assignment against the centres before this update (cluster -1 while the
  // seeding buffer fills).
  Result<KMeansAssignment> Update(std::span<const double> point);

  // Nearest centre of `point` (no learning). `point` must have dim() values.
  KMeansAssignment Assign(std::span<const double> point) const;

  // Applies a partially filled mini-batch now (e.g. before a snapshot).
  void Flush();

  // Maps the model to new coordinates, x'[j] = scale[j] * x[j] + shift[j]
  // (dim() values each): the centres and every buffered point (seeding,
  // mini-batch, recent points). A caller whose feature scaling changes keeps
  // the centres where they were in its own units this way. Counts and the
  // prequential quality (measured in the old units) are unchanged.
  void Rescale(std::span<const double> scale, std::span<const double> shift);

  // Changes the dead-centre threshold (options().dead_after) of a live or
  // restored model; 0 disables re-seeding.
  void set_dead_after(uint64_t points) { options_.dead_after = points; }

  bool seeded() const { return seeded_; }
  int k() const { return options_.k; }
  int dim() const { return options_.dim; }
  const MiniBatchKMeansOptions& options() const { return options_; }
  // k * dim values, row-major (centre c starts at c * dim()). Meaningless
  // until seeded().
  std::span<const double> centroids() const { return centroids_; }
  std::span<const double> centroid(int c) const {
    return std::span<const double>(centroids_)
        .subspan(static_cast<size_t>(c) * options_.dim, options_.dim);
  }
  // Effective number of points behind each centre (decayed if half_life > 0).
  std::span<const double> counts() const { return counts_; }
  uint64_t points_seen() const { return points_seen_; }
  const KMeansQuality& quality() const { return quality_; }

  // Versioned blob (BlobKind::kMiniBatchKMeans); Deserialize(Serialize())
  // restores a model that behaves bit-identically from then on.
  std::string Serialize() const;
  static Result<MiniBatchKMeans> Deserialize(std::string_view blob);

  // Combines another instance's model into this one (same k and dim).
  // Centres are paired by a minimum-cost assignment (Hungarian algorithm) on
  // squared distance and each pair becomes the count-weighted mean of the two.
  // The (centre, count) pairs are sufficient statistics of the points each
  // instance assigned to that centre, so the merged centre is exactly the
  // mean of the union of those points; it is NOT what one instance fed both
  // streams would hold, because each instance's assignments depended on its
  // own centres. The result is an approximation of a joint model that is good
  // when both instances found the same segments, poor when their centres do
  // not correspond. Points still buffered in `other` (seeding or mini-batch)
  // are learnt by this instance afterwards. Prequential quality adds up.
  Status Merge(const MiniBatchKMeans& other);

 private:
  explicit MiniBatchKMeans(const MiniBatchKMeansOptions& options);

  void Seed();
  void ApplyBatch();
  void RememberRecent(const double* point);
  void ReseedDeadCentres();
  int NearestCentre(const double* point, double* squared_distance, int skip = -1) const;
  double NextUniform();

  MiniBatchKMeansOptions options_;
  double decay_ = 1.0;  // count multiplier per point, from half_life
  bool seeded_ = false;
  uint64_t rng_state_ = 0;
  uint64_t points_seen_ = 0;
  uint64_t last_dead_check_ = 0;  // points_seen_ at the last dead-centre check
  KMeansQuality quality_;

  std::vector<double> centroids_;   // k * dim
  std::vector<double> counts_;      // k
  std::vector<uint64_t> last_win_;  // k: points_seen_ when the centre last won

  std::vector<double> seed_buffer_;  // seed_buffer_size * dim
  int seed_filled_ = 0;

  std::vector<double> batch_points_;  // mini_batch_size * dim
  std::vector<int> batch_clusters_;   // mini_batch_size
  int batch_filled_ = 0;

  std::vector<double> recent_;  // recent_capacity * dim, ring
  int recent_filled_ = 0;
  int recent_next_ = 0;

  std::vector<double> scratch_;  // max(seed_buffer_size, recent_capacity) distances
};

}  // namespace crmstream::models
