#include "crmstream/models/mini_batch_kmeans.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <limits>
#include <utility>

#include "crmstream/common/binary_io.h"

namespace crmstream::models {
namespace {

constexpr uint16_t kBlobVersion = 1;
// Bounds that keep a model (and a hostile blob) from asking for absurd memory.
constexpr int kMaxK = 4096;
constexpr int kMaxDim = 4096;
constexpr int64_t kMaxCentreValues = int64_t{1} << 22;
constexpr int64_t kMaxBufferRows = int64_t{1} << 20;
constexpr int64_t kMaxBufferValues = int64_t{1} << 24;
// Dead centres are looked for at most this often (points), so the check costs
// nothing on the hot path.
constexpr uint64_t kDeadCheckInterval = 64;

uint64_t SplitMix64(uint64_t* state) {
  uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

double SquaredDistance(const double* a, const double* b, int dim) {
  double s = 0.0;
  for (int j = 0; j < dim; ++j) {
    const double t = a[j] - b[j];
    s += t * t;
  }
  return s;
}

bool AllFinite(std::span<const double> v) {
  for (double x : v) {
    if (!std::isfinite(x)) return false;
  }
  return true;
}

}  // namespace

std::vector<int> MinCostAssignment(const std::vector<double>& cost, int n) {
  const double inf = std::numeric_limits<double>::infinity();
  std::vector<double> u(n + 1, 0.0), v(n + 1, 0.0), minv(n + 1);
  std::vector<int> p(n + 1, 0), way(n + 1, 0);
  std::vector<char> used(n + 1);
  for (int i = 1; i <= n; ++i) {
    p[0] = i;
    int j0 = 0;
    std::fill(minv.begin(), minv.end(), inf);
    std::fill(used.begin(), used.end(), 0);
    do {
      used[j0] = 1;
      const int i0 = p[j0];
      double delta = inf;
      int j1 = 0;
      for (int j = 1; j <= n; ++j) {
        if (used[j]) continue;
        const double cur = cost[static_cast<size_t>(i0 - 1) * n + (j - 1)] - u[i0] - v[j];
        if (cur < minv[j]) {
          minv[j] = cur;
          way[j] = j0;
        }
        if (minv[j] < delta) {
          delta = minv[j];
          j1 = j;
        }
      }
      for (int j = 0; j <= n; ++j) {
        if (used[j]) {
          u[p[j]] += delta;
          v[j] -= delta;
        } else {
          minv[j] -= delta;
        }
      }
      j0 = j1;
    } while (p[j0] != 0);
    do {
      const int j1 = way[j0];
      p[j0] = p[j1];
      j0 = j1;
    } while (j0 != 0);
  }
  std::vector<int> match(n, 0);
  for (int j = 1; j <= n; ++j) match[p[j] - 1] = j - 1;
  return match;
}

Status MiniBatchKMeansOptions::Validate() const {
  if (k < 1 || k > kMaxK) return Status::InvalidArgument("k must be in [1, 4096]");
  if (dim < 1 || dim > kMaxDim) return Status::InvalidArgument("dim must be in [1, 4096]");
  if (int64_t{k} * dim > kMaxCentreValues) {
    return Status::InvalidArgument("k * dim too large");
  }
  if (seed_buffer_size < k || seed_buffer_size > kMaxBufferRows ||
      int64_t{seed_buffer_size} * dim > kMaxBufferValues) {
    return Status::InvalidArgument("seed_buffer_size must be in [k, 2^20] (and * dim <= 2^24)");
  }
  if (seed_lloyd_iterations < 0 || seed_lloyd_iterations > 1000) {
    return Status::InvalidArgument("seed_lloyd_iterations must be in [0, 1000]");
  }
  if (mini_batch_size < 1 || mini_batch_size > kMaxBufferRows ||
      int64_t{mini_batch_size} * dim > kMaxBufferValues) {
    return Status::InvalidArgument("mini_batch_size must be in [1, 2^20] (and * dim <= 2^24)");
  }
  if (!(half_life >= 0.0) || !std::isfinite(half_life)) {
    return Status::InvalidArgument("half_life must be finite and >= 0");
  }
  if (recent_capacity < 1 || recent_capacity > kMaxBufferRows ||
      int64_t{recent_capacity} * dim > kMaxBufferValues) {
    return Status::InvalidArgument("recent_capacity must be in [1, 2^20] (and * dim <= 2^24)");
  }
  if (!(inertia_ewma_span >= 1.0) || !std::isfinite(inertia_ewma_span)) {
    return Status::InvalidArgument("inertia_ewma_span must be finite and >= 1");
  }
  return Status::OK();
}

MiniBatchKMeans::MiniBatchKMeans(const MiniBatchKMeansOptions& options)
    : options_(options),
      decay_(options.half_life > 0.0 ? std::exp2(-1.0 / options.half_life) : 1.0),
      rng_state_(options.random_seed),
      centroids_(static_cast<size_t>(options.k) * options.dim, 0.0),
      counts_(options.k, 0.0),
      last_win_(options.k, 0),
      seed_buffer_(static_cast<size_t>(options.seed_buffer_size) * options.dim),
      batch_points_(static_cast<size_t>(options.mini_batch_size) * options.dim),
      batch_clusters_(options.mini_batch_size),
      recent_(static_cast<size_t>(options.recent_capacity) * options.dim),
      // Seeding needs two distance arrays over the buffer plus k * (dim + 1)
      // accumulators for Lloyd; re-seeding needs one over the recent points.
      scratch_(std::max<size_t>(2 * static_cast<size_t>(options.seed_buffer_size) +
                                    static_cast<size_t>(options.k) * (options.dim + 1),
                                options.recent_capacity)) {}

Result<MiniBatchKMeans> MiniBatchKMeans::Create(const MiniBatchKMeansOptions& options) {
  CRM_RETURN_NOT_OK(options.Validate());
  return MiniBatchKMeans(options);
}

double MiniBatchKMeans::NextUniform() {
  return static_cast<double>(SplitMix64(&rng_state_) >> 11) * 0x1.0p-53;
}

int MiniBatchKMeans::NearestCentre(const double* point, double* squared_distance, int skip) const {
  const int dim = options_.dim;
  int best = -1;
  double best_d2 = std::numeric_limits<double>::infinity();
  const double* c = centroids_.data();
  for (int i = 0; i < options_.k; ++i, c += dim) {
    if (i == skip) continue;
    const double d2 = SquaredDistance(point, c, dim);
    if (d2 < best_d2) {
      best_d2 = d2;
      best = i;
    }
  }
  *squared_distance = best_d2;
  return best;
}

KMeansAssignment MiniBatchKMeans::Assign(std::span<const double> point) const {
  KMeansAssignment a;
  if (!seeded_ || static_cast<int>(point.size()) != options_.dim) return a;
  a.cluster = NearestCentre(point.data(), &a.squared_distance);
  return a;
}

void MiniBatchKMeans::RememberRecent(const double* point) {
  const int dim = options_.dim;
  std::copy(point, point + dim, recent_.data() + static_cast<size_t>(recent_next_) * dim);
  recent_next_ = (recent_next_ + 1) % options_.recent_capacity;
  recent_filled_ = std::min(recent_filled_ + 1, options_.recent_capacity);
}

Result<KMeansAssignment> MiniBatchKMeans::Update(std::span<const double> point) {
  const int dim = options_.dim;
  if (static_cast<int>(point.size()) != dim) {
    return Status::InvalidArgument("point has the wrong dimension");
  }
  if (!AllFinite(point)) return Status::InvalidArgument("point has a non-finite value");

  ++points_seen_;
  RememberRecent(point.data());
  if (!seeded_) {
    std::copy(point.begin(), point.end(),
              seed_buffer_.data() + static_cast<size_t>(seed_filled_) * dim);
    if (++seed_filled_ == options_.seed_buffer_size) Seed();
    return KMeansAssignment{};
  }

  KMeansAssignment a;
  a.cluster = NearestCentre(point.data(), &a.squared_distance);
  ++quality_.scored_points;
  quality_.sum_squared_distance += a.squared_distance;
  // A plain mean until the span is reached, then exponential smoothing.
  const double alpha =
      std::max(1.0 / static_cast<double>(quality_.scored_points), 1.0 / options_.inertia_ewma_span);
  quality_.ewma_squared_distance += alpha * (a.squared_distance - quality_.ewma_squared_distance);

  std::copy(point.begin(), point.end(),
            batch_points_.data() + static_cast<size_t>(batch_filled_) * dim);
  batch_clusters_[batch_filled_] = a.cluster;
  last_win_[a.cluster] = points_seen_;
  if (++batch_filled_ == options_.mini_batch_size) ApplyBatch();
  return a;
}

void MiniBatchKMeans::Flush() {
  if (seeded_ && batch_filled_ > 0) ApplyBatch();
}

void MiniBatchKMeans::Rescale(std::span<const double> scale, std::span<const double> shift) {
  const auto dim = static_cast<size_t>(options_.dim);
  assert(scale.size() == dim && shift.size() == dim);
  auto apply = [&](double* rows, size_t n) {
    for (size_t i = 0; i < n; ++i, rows += dim) {
      for (size_t j = 0; j < dim; ++j) rows[j] = scale[j] * rows[j] + shift[j];
    }
  };
  apply(centroids_.data(), static_cast<size_t>(options_.k));
  apply(seed_buffer_.data(), static_cast<size_t>(seed_filled_));
  apply(batch_points_.data(), static_cast<size_t>(batch_filled_));
  apply(recent_.data(), static_cast<size_t>(recent_filled_));
}

void MiniBatchKMeans::ApplyBatch() {
  const int dim = options_.dim;
  for (int b = 0; b < batch_filled_; ++b) {
    if (decay_ != 1.0) {
      for (double& n : counts_) n *= decay_;
    }
    const int c = batch_clusters_[b];
    counts_[c] += 1.0;
    const double eta = 1.0 / counts_[c];
    double* centre = centroids_.data() + static_cast<size_t>(c) * dim;
    const double* x = batch_points_.data() + static_cast<size_t>(b) * dim;
    for (int j = 0; j < dim; ++j) centre[j] += eta * (x[j] - centre[j]);
  }
  batch_filled_ = 0;
  if (options_.dead_after > 0 && points_seen_ - last_dead_check_ >= kDeadCheckInterval) {
    last_dead_check_ = points_seen_;
    ReseedDeadCentres();
  }
}

void MiniBatchKMeans::ReseedDeadCentres() {
  if (options_.k < 2 || recent_filled_ == 0) return;
  const int dim = options_.dim;
  for (int c = 0; c < options_.k; ++c) {
    if (points_seen_ - last_win_[c] <= options_.dead_after) continue;
    // k-means++ style: a recent point, with probability proportional to its
    // squared distance to the nearest live centre, so the dead centre moves
    // to where the data are poorly served.
    double total = 0.0;
    for (int i = 0; i < recent_filled_; ++i) {
      double d2 = 0.0;
      NearestCentre(recent_.data() + static_cast<size_t>(i) * dim, &d2, c);
      scratch_[i] = d2;
      total += d2;
    }
    if (!(total > 0.0)) continue;
    double r = NextUniform() * total;
    int pick = recent_filled_ - 1;
    for (int i = 0; i < recent_filled_; ++i) {
      r -= scratch_[i];
      if (r < 0.0) {
        pick = i;
        break;
      }
    }
    const double* src = recent_.data() + static_cast<size_t>(pick) * dim;
    std::copy(src, src + dim, centroids_.data() + static_cast<size_t>(c) * dim);
    counts_[c] = 1.0;
    last_win_[c] = points_seen_;
    ++quality_.reseeded_centres;
  }
}

void MiniBatchKMeans::Seed() {
  const int k = options_.k;
  const int dim = options_.dim;
  const int n = seed_filled_;
  const double* pts = seed_buffer_.data();
  double* closest = scratch_.data();
  double* candidate = closest + n;
  double* sums = candidate + n;  // k * dim, then k counts
  double* sizes = sums + static_cast<size_t>(k) * dim;

  // Greedy k-means++ (Arthur & Vassilvitskii 2007, with 2 + ln k trials per
  // centre as scikit-learn does): each new centre is the best of a few
  // candidates drawn with probability proportional to D^2.
  const int trials = 2 + static_cast<int>(std::log(static_cast<double>(k)));
  const int first = std::min(n - 1, static_cast<int>(NextUniform() * n));
  std::copy(pts + static_cast<size_t>(first) * dim, pts + static_cast<size_t>(first + 1) * dim,
            centroids_.data());
  double potential = 0.0;
  for (int i = 0; i < n; ++i) {
    closest[i] = SquaredDistance(pts + static_cast<size_t>(i) * dim, centroids_.data(), dim);
    potential += closest[i];
  }
  for (int c = 1; c < k; ++c) {
    int best_index = -1;
    double best_potential = std::numeric_limits<double>::infinity();
    for (int t = 0; t < trials; ++t) {
      int index = static_cast<int>(NextUniform() * n);
      if (potential > 0.0) {
        double r = NextUniform() * potential;
        index = n - 1;
        for (int i = 0; i < n; ++i) {
          r -= closest[i];
          if (r < 0.0) {
            index = i;
            break;
          }
        }
      }
      index = std::min(index, n - 1);
      const double* cand = pts + static_cast<size_t>(index) * dim;
      double pot = 0.0;
      for (int i = 0; i < n; ++i) {
        pot += std::min(closest[i], SquaredDistance(pts + static_cast<size_t>(i) * dim, cand, dim));
      }
      if (pot < best_potential) {
        best_potential = pot;
        best_index = index;
      }
    }
    const double* chosen = pts + static_cast<size_t>(best_index) * dim;
    std::copy(chosen, chosen + dim, centroids_.data() + static_cast<size_t>(c) * dim);
    potential = 0.0;
    for (int i = 0; i < n; ++i) {
      closest[i] =
          std::min(closest[i], SquaredDistance(pts + static_cast<size_t>(i) * dim, chosen, dim));
      potential += closest[i];
    }
  }

  // Lloyd iterations over the buffer; the last pass leaves every centre at
  // the mean of its buffer points and its count at their number, which is
  // what the 1/count learning rate continues from. A centre that wins no
  // buffer point keeps its seed position and count 0.
  for (int iter = 0; iter <= options_.seed_lloyd_iterations; ++iter) {
    std::fill(sums, sums + static_cast<size_t>(k) * (dim + 1), 0.0);
    for (int i = 0; i < n; ++i) {
      const double* x = pts + static_cast<size_t>(i) * dim;
      double d2 = 0.0;
      const int c = NearestCentre(x, &d2);
      double* s = sums + static_cast<size_t>(c) * dim;
      for (int j = 0; j < dim; ++j) s[j] += x[j];
      sizes[c] += 1.0;
    }
    for (int c = 0; c < k; ++c) {
      counts_[c] = sizes[c];
      if (sizes[c] == 0.0) continue;
      double* centre = centroids_.data() + static_cast<size_t>(c) * dim;
      const double* s = sums + static_cast<size_t>(c) * dim;
      for (int j = 0; j < dim; ++j) centre[j] = s[j] / sizes[c];
    }
  }
  std::fill(last_win_.begin(), last_win_.end(), points_seen_);
  last_dead_check_ = points_seen_;
  seed_filled_ = 0;
  seeded_ = true;
}

Status MiniBatchKMeans::Merge(const MiniBatchKMeans& other) {
  if (other.options_.k != options_.k || other.options_.dim != options_.dim) {
    return Status::InvalidArgument("MiniBatchKMeans::Merge: k and dim must match");
  }
  if (&other == this)
    return Status::InvalidArgument("MiniBatchKMeans::Merge: cannot merge into itself");
  const int k = options_.k;
  const int dim = options_.dim;
  Flush();

  // Points the other instance has not learnt from yet: its seeding buffer
  // or its pending mini-batch. They are learnt here after the centres merge.
  std::vector<double> pending;
  bool pending_scored = false;
  if (!other.seeded_) {
    pending.assign(other.seed_buffer_.begin(),
                   other.seed_buffer_.begin() + static_cast<ptrdiff_t>(other.seed_filled_) * dim);
  } else {
    pending.assign(other.batch_points_.begin(),
                   other.batch_points_.begin() + static_cast<ptrdiff_t>(other.batch_filled_) * dim);
    pending_scored = true;
  }

  if (other.seeded_) {
    if (!seeded_) {
      // Adopt the other model, then learn the points this one had buffered.
      std::vector<double> own(seed_buffer_.begin(),
                              seed_buffer_.begin() + static_cast<ptrdiff_t>(seed_filled_) * dim);
      const uint64_t own_seen = points_seen_ - static_cast<uint64_t>(seed_filled_);
      centroids_ = other.centroids_;
      counts_ = other.counts_;
      last_win_ = other.last_win_;
      quality_ = other.quality_;
      points_seen_ = other.points_seen_ + own_seen;
      last_dead_check_ = points_seen_;
      for (uint64_t& w : last_win_) w += own_seen;
      seed_filled_ = 0;
      seeded_ = true;
      for (size_t i = 0; i + dim <= own.size(); i += dim) {
        auto r = Update(std::span<const double>(own.data() + i, dim));
        if (!r.ok()) return r.status();
      }
    } else {
      std::vector<double> cost(static_cast<size_t>(k) * k);
      for (int a = 0; a < k; ++a) {
        for (int b = 0; b < k; ++b) {
          cost[static_cast<size_t>(a) * k + b] =
              SquaredDistance(centroids_.data() + static_cast<size_t>(a) * dim,
                              other.centroids_.data() + static_cast<size_t>(b) * dim, dim);
        }
      }
      const std::vector<int> match = MinCostAssignment(cost, k);
      const uint64_t merged_seen = points_seen_ + other.points_seen_;
      for (int a = 0; a < k; ++a) {
        const int b = match[a];
        double* ca = centroids_.data() + static_cast<size_t>(a) * dim;
        const double* cb = other.centroids_.data() + static_cast<size_t>(b) * dim;
        const double na = counts_[a];
        const double nb = other.counts_[b];
        const double wa = na + nb > 0.0 ? na / (na + nb) : 0.5;
        for (int j = 0; j < dim; ++j) ca[j] = wa * ca[j] + (1.0 - wa) * cb[j];
        counts_[a] = na + nb;
        // A merged centre is as fresh as the fresher of the two.
        const uint64_t age =
            std::min(points_seen_ - last_win_[a], other.points_seen_ - other.last_win_[b]);
        last_win_[a] = merged_seen - age;
      }
      points_seen_ = merged_seen;
      last_dead_check_ = points_seen_;
      const uint64_t scored = quality_.scored_points + other.quality_.scored_points;
      if (scored > 0) {
        quality_.ewma_squared_distance =
            (quality_.ewma_squared_distance * static_cast<double>(quality_.scored_points) +
             other.quality_.ewma_squared_distance *
                 static_cast<double>(other.quality_.scored_points)) /
            static_cast<double>(scored);
      }
      quality_.scored_points = scored;
      quality_.sum_squared_distance += other.quality_.sum_squared_distance;
      quality_.reseeded_centres += other.quality_.reseeded_centres;
    }
  }

  for (size_t i = 0; i + dim <= pending.size(); i += dim) {
    const std::span<const double> x(pending.data() + i, dim);
    if (pending_scored && seeded_) {
      // Already scored by the other instance: learn without scoring twice.
      const KMeansQuality saved = quality_;
      auto r = Update(x);
      if (!r.ok()) return r.status();
      quality_.scored_points = saved.scored_points;
      quality_.sum_squared_distance = saved.sum_squared_distance;
      quality_.ewma_squared_distance = saved.ewma_squared_distance;
    } else {
      auto r = Update(x);
      if (!r.ok()) return r.status();
    }
  }
  // Merged in from other's count; points_seen_ was already credited for them.
  if (pending_scored && seeded_) points_seen_ -= pending.size() / dim;
  return Status::OK();
}

std::string MiniBatchKMeans::Serialize() const {
  std::string payload;
  BinaryWriter w(&payload);
  w.Put<int32_t>(options_.k);
  w.Put<int32_t>(options_.dim);
  w.Put<int32_t>(options_.seed_buffer_size);
  w.Put<int32_t>(options_.seed_lloyd_iterations);
  w.Put<int32_t>(options_.mini_batch_size);
  w.Put<double>(options_.half_life);
  w.Put<uint64_t>(options_.dead_after);
  w.Put<int32_t>(options_.recent_capacity);
  w.Put<double>(options_.inertia_ewma_span);
  w.Put<uint64_t>(options_.random_seed);

  w.Put<uint8_t>(seeded_ ? 1 : 0);
  w.Put<uint64_t>(rng_state_);
  w.Put<uint64_t>(points_seen_);
  w.Put<uint64_t>(last_dead_check_);
  w.Put<uint64_t>(quality_.scored_points);
  w.Put<double>(quality_.sum_squared_distance);
  w.Put<double>(quality_.ewma_squared_distance);
  w.Put<uint64_t>(quality_.reseeded_centres);
  w.PutArray<double>(centroids_);
  w.PutArray<double>(counts_);
  w.PutArray<uint64_t>(last_win_);
  const size_t dim = static_cast<size_t>(options_.dim);
  w.PutArray<double>(std::span<const double>(seed_buffer_).first(seed_filled_ * dim));
  w.PutArray<double>(std::span<const double>(batch_points_).first(batch_filled_ * dim));
  w.PutArray<int32_t>(std::span<const int>(batch_clusters_).first(batch_filled_));
  w.Put<int32_t>(recent_next_);
  w.PutArray<double>(std::span<const double>(recent_).first(recent_filled_ * dim));
  return SealBlob(BlobKind::kMiniBatchKMeans, kBlobVersion, payload);
}

Result<MiniBatchKMeans> MiniBatchKMeans::Deserialize(std::string_view blob) {
  CRM_ASSIGN_OR_RETURN(const std::string_view opened_payload,
                       OpenBlobPayload(blob, BlobKind::kMiniBatchKMeans, kBlobVersion));
  BinaryReader r(opened_payload);
  MiniBatchKMeansOptions o;
  int32_t k = 0, dim = 0, seed_buffer = 0, lloyd = 0, batch = 0, recent_cap = 0;
  CRM_RETURN_NOT_OK(r.Get(&k));
  CRM_RETURN_NOT_OK(r.Get(&dim));
  CRM_RETURN_NOT_OK(r.Get(&seed_buffer));
  CRM_RETURN_NOT_OK(r.Get(&lloyd));
  CRM_RETURN_NOT_OK(r.Get(&batch));
  CRM_RETURN_NOT_OK(r.Get(&o.half_life));
  CRM_RETURN_NOT_OK(r.Get(&o.dead_after));
  CRM_RETURN_NOT_OK(r.Get(&recent_cap));
  CRM_RETURN_NOT_OK(r.Get(&o.inertia_ewma_span));
  CRM_RETURN_NOT_OK(r.Get(&o.random_seed));
  o.k = k;
  o.dim = dim;
  o.seed_buffer_size = seed_buffer;
  o.seed_lloyd_iterations = lloyd;
  o.mini_batch_size = batch;
  o.recent_capacity = recent_cap;
  if (Status st = o.Validate(); !st.ok()) {
    return Status::Corruption("MiniBatchKMeans blob has invalid options: " + st.message());
  }
  MiniBatchKMeans m(o);

  uint8_t seeded = 0;
  CRM_RETURN_NOT_OK(r.Get(&seeded));
  CRM_RETURN_NOT_OK(r.Get(&m.rng_state_));
  CRM_RETURN_NOT_OK(r.Get(&m.points_seen_));
  CRM_RETURN_NOT_OK(r.Get(&m.last_dead_check_));
  CRM_RETURN_NOT_OK(r.Get(&m.quality_.scored_points));
  CRM_RETURN_NOT_OK(r.Get(&m.quality_.sum_squared_distance));
  CRM_RETURN_NOT_OK(r.Get(&m.quality_.ewma_squared_distance));
  CRM_RETURN_NOT_OK(r.Get(&m.quality_.reseeded_centres));
  if (seeded > 1) return Status::Corruption("MiniBatchKMeans blob: bad seeded flag");
  m.seeded_ = seeded == 1;

  const size_t kd = static_cast<size_t>(k) * dim;
  std::vector<double> centroids, counts, seed_points, batch_points, recent;
  std::vector<uint64_t> last_win;
  std::vector<int32_t> batch_clusters;
  // BinaryReader::GetArray memcpy's into data(), which is null for a vector
  // that never allocated; a zero-length array (an empty buffer) would then
  // pass a null pointer to memcpy. Reserving keeps data() valid.
  for (std::vector<double>* v : {&centroids, &counts, &seed_points, &batch_points, &recent}) {
    v->reserve(1);
  }
  last_win.reserve(1);
  batch_clusters.reserve(1);
  CRM_RETURN_NOT_OK(r.GetArray(&centroids, kd));
  CRM_RETURN_NOT_OK(r.GetArray(&counts, static_cast<size_t>(k)));
  CRM_RETURN_NOT_OK(r.GetArray(&last_win, static_cast<size_t>(k)));
  CRM_RETURN_NOT_OK(r.GetArray(&seed_points, m.seed_buffer_.size()));
  CRM_RETURN_NOT_OK(r.GetArray(&batch_points, m.batch_points_.size()));
  CRM_RETURN_NOT_OK(r.GetArray(&batch_clusters, m.batch_clusters_.size()));
  int32_t recent_next = 0;
  CRM_RETURN_NOT_OK(r.Get(&recent_next));
  CRM_RETURN_NOT_OK(r.GetArray(&recent, m.recent_.size()));
  CRM_RETURN_NOT_OK(r.ExpectEnd());

  const size_t d = static_cast<size_t>(dim);
  if (centroids.size() != kd || counts.size() != static_cast<size_t>(k) ||
      last_win.size() != static_cast<size_t>(k) || seed_points.size() % d != 0 ||
      batch_points.size() % d != 0 || recent.size() % d != 0 ||
      batch_clusters.size() != batch_points.size() / d) {
    return Status::Corruption("MiniBatchKMeans blob: inconsistent array sizes");
  }
  const int seed_filled = static_cast<int>(seed_points.size() / d);
  const int batch_filled = static_cast<int>(batch_points.size() / d);
  const int recent_filled = static_cast<int>(recent.size() / d);
  if (m.seeded_ ? seed_filled != 0 : (batch_filled != 0 || seed_filled >= seed_buffer)) {
    return Status::Corruption("MiniBatchKMeans blob: buffers inconsistent with seeding state");
  }
  if (batch_filled >= batch) return Status::Corruption("MiniBatchKMeans blob: mini-batch overfull");
  if (recent_next < 0 || recent_next >= recent_cap ||
      (recent_filled < recent_cap && recent_next != recent_filled)) {
    return Status::Corruption("MiniBatchKMeans blob: bad recent-points ring");
  }
  for (int32_t c : batch_clusters) {
    if (c < 0 || c >= k) return Status::Corruption("MiniBatchKMeans blob: bad cluster index");
  }
  for (uint64_t w : last_win) {
    if (w > m.points_seen_)
      return Status::Corruption("MiniBatchKMeans blob: bad last-win position");
  }
  for (double c : counts) {
    if (!(c >= 0.0) || !std::isfinite(c))
      return Status::Corruption("MiniBatchKMeans blob: bad count");
  }
  if (!AllFinite(centroids) || !AllFinite(seed_points) || !AllFinite(batch_points) ||
      !AllFinite(recent) || !std::isfinite(m.quality_.sum_squared_distance) ||
      !std::isfinite(m.quality_.ewma_squared_distance) || m.last_dead_check_ > m.points_seen_) {
    return Status::Corruption("MiniBatchKMeans blob: non-finite or inconsistent state");
  }

  std::copy(centroids.begin(), centroids.end(), m.centroids_.begin());
  std::copy(counts.begin(), counts.end(), m.counts_.begin());
  std::copy(last_win.begin(), last_win.end(), m.last_win_.begin());
  std::copy(seed_points.begin(), seed_points.end(), m.seed_buffer_.begin());
  std::copy(batch_points.begin(), batch_points.end(), m.batch_points_.begin());
  std::copy(batch_clusters.begin(), batch_clusters.end(), m.batch_clusters_.begin());
  std::copy(recent.begin(), recent.end(), m.recent_.begin());
  m.seed_filled_ = seed_filled;
  m.batch_filled_ = batch_filled;
  m.recent_filled_ = recent_filled;
  m.recent_next_ = recent_next;
  return m;
}

}  // namespace crmstream::models
