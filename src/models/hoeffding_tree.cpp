#include "crmstream/models/hoeffding_tree.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numbers>

namespace crmstream::models {
namespace {

constexpr int kMaxDimension = 4096;
constexpr uint32_t kMaxLeaves = 1u << 20;
// The logistic leaves' inputs are standardised with statistics of the
// examples learnt so far and clipped to this many standard deviations: while
// a feature has been (nearly) constant, its first different value would
// otherwise be thousands of deviations out and wreck the leaf's posterior for
// good (measured in the engine, where the first labelled examples are alike:
// a model tree's prequential AUC fell to 0.51 on a generated world).
constexpr double kMaxStandardised = 5.0;

// Field offsets inside one class's statistics.
enum ClassStat { kWeight = 0, kMean, kM2, kMin, kMax };

uint64_t SplitMix64(uint64_t* state) {
  uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

double Entropy(double a, double b) {
  const double n = a + b;
  if (n <= 0.0) return 0.0;
  double h = 0.0;
  for (double v : {a, b}) {
    if (v > 0.0) h -= v / n * std::log2(v / n);
  }
  return h;
}

// Estimated weight of a class's values <= threshold, from its Gaussian.
double WeightAtOrBelow(const double* s, double threshold) {
  const double w = s[kWeight];
  if (w <= 0.0 || threshold < s[kMin]) return 0.0;
  if (threshold >= s[kMax]) return w;
  const double var = s[kM2] / w;
  if (!(var > 1e-24)) return s[kMean] <= threshold ? w : 0.0;
  const double z = (threshold - s[kMean]) / std::sqrt(var);
  return w * 0.5 * std::erfc(-z / std::numbers::sqrt2);
}

// Values only ever 0 or 1: then (and only then) M2 = w * mean * (1 - mean).
bool IsBinary(const double* s) {
  if (s[kMin] < 0.0 || s[kMax] > 1.0) return false;
  const double w = s[kWeight];
  return std::fabs(s[kM2] - w * s[kMean] * (1.0 - s[kMean])) <= 1e-9 * (w + 1.0);
}

double Sigmoid(double t) { return 1.0 / (1.0 + std::exp(-std::clamp(t, -35.0, 35.0))); }

bool AllFinite(std::span<const double> x) {
  for (double v : x) {
    if (!std::isfinite(v)) return false;
  }
  return true;
}

}  // namespace

double TreeExplanation::prediction() const {
  double p = bias + leaf_adjustment;
  for (const FeatureContribution& c : contributions) p += c.contribution;
  return p;
}

Status HoeffdingTreeOptions::Validate() const {
  if (dimension < 1 || dimension > kMaxDimension) {
    return Status::InvalidArgument("dimension must be in [1, 4096]");
  }
  if (!(grace_period > 0.0) || !std::isfinite(grace_period)) {
    return Status::InvalidArgument("grace_period must be finite and > 0");
  }
  if (!(split_confidence > 0.0 && split_confidence < 1.0)) {
    return Status::InvalidArgument("split_confidence must be in (0, 1)");
  }
  if (!(tie_threshold >= 0.0 && tie_threshold <= 1.0)) {
    return Status::InvalidArgument("tie_threshold must be in [0, 1]");
  }
  if (split_points < 1 || split_points > 256) {
    return Status::InvalidArgument("split_points must be in [1, 256]");
  }
  if (max_depth < 1 || max_depth > 64)
    return Status::InvalidArgument("max_depth must be in [1, 64]");
  if (max_leaves < 1 || max_leaves > kMaxLeaves) {
    return Status::InvalidArgument("max_leaves must be in [1, 2^20]");
  }
  if (!(min_branch_fraction >= 0.0 && min_branch_fraction < 0.5)) {
    return Status::InvalidArgument("min_branch_fraction must be in [0, 0.5)");
  }
  if (!(leaf_prior_variance > 0.0) || !std::isfinite(leaf_prior_variance)) {
    return Status::InvalidArgument("leaf_prior_variance must be finite and > 0");
  }
  if (static_cast<uint8_t>(leaf_prediction) > 3) {
    return Status::InvalidArgument("leaf_prediction is not a known mode");
  }
  if (features_per_split < 0 || features_per_split > dimension) {
    return Status::InvalidArgument("features_per_split must be in [0, dimension]");
  }
  if (auc_bins < 1 || auc_bins > (1u << 24)) {
    return Status::InvalidArgument("auc_bins must be in [1, 2^24]");
  }
  return Status::OK();
}

HoeffdingTree::HoeffdingTree(const HoeffdingTreeOptions& options)
    : options_(options), rng_state_(options.random_seed), auc_(options.auc_bins) {
  if (options.leaf_prediction == LeafPrediction::kLogistic) {
    feature_mean_.assign(static_cast<size_t>(options.dimension), 0.0);
    feature_m2_.assign(static_cast<size_t>(options.dimension), 0.0);
    standardised_.assign(static_cast<size_t>(options.dimension), 0.0);
  }
}

Result<HoeffdingTree> HoeffdingTree::Create(const HoeffdingTreeOptions& options) {
  CRM_RETURN_NOT_OK(options.Validate());
  HoeffdingTree tree(options);
  tree.NewLeaf(0, 0.0, 0.0, nullptr);
  return tree;
}

std::span<const double> HoeffdingTree::Standardise(std::span<const double> x) const {
  for (size_t f = 0; f < standardised_.size(); ++f) {
    const double var = feature_weight_ > 0.0 ? feature_m2_[f] / feature_weight_ : 0.0;
    const double v = std::isfinite(x[f]) ? x[f] : feature_mean_[f];
    // A spread at rounding level relative to the mean is a constant column.
    const double sd = std::sqrt(var);
    const double scaled =
        sd > 1e-12 * std::max(1.0, std::fabs(feature_mean_[f])) ? (v - feature_mean_[f]) / sd : 0.0;
    standardised_[f] = std::clamp(scaled, -kMaxStandardised, kMaxStandardised);
  }
  return standardised_;
}

uint64_t HoeffdingTree::NextRandom() { return SplitMix64(&rng_state_); }

void HoeffdingTree::InitLeafFeatures(Leaf* leaf) {
  const int d = options_.dimension;
  const int m = options_.features_per_split;
  leaf->features.clear();
  if (m == 0 || m >= d) {
    for (int f = 0; f < d; ++f) leaf->features.push_back(f);
  } else {
    // A partial Fisher-Yates shuffle picks m distinct features.
    scratch_features_.resize(static_cast<size_t>(d));
    for (int f = 0; f < d; ++f) scratch_features_[static_cast<size_t>(f)] = f;
    for (int i = 0; i < m; ++i) {
      const auto j = static_cast<int>(i + NextRandom() % static_cast<uint64_t>(d - i));
      std::swap(scratch_features_[static_cast<size_t>(i)],
                scratch_features_[static_cast<size_t>(j)]);
      leaf->features.push_back(scratch_features_[static_cast<size_t>(i)]);
    }
    std::sort(leaf->features.begin(), leaf->features.end());
  }
  leaf->stats.assign(leaf->features.size() * kStatsPerFeature, 0.0);
  for (size_t k = 0; k < leaf->features.size(); ++k) {
    double* s = leaf->stats.data() + k * kStatsPerFeature;
    for (int c = 0; c < 2; ++c) {
      s[c * kStatsPerClass + kMin] = std::numeric_limits<double>::infinity();
      s[c * kStatsPerClass + kMax] = -std::numeric_limits<double>::infinity();
    }
  }
}

int32_t HoeffdingTree::NewLeaf(int depth, double w0, double w1,
                               const BayesianLogisticRegression* inherit) {
  int32_t leaf_index;
  if (!free_leaves_.empty()) {
    leaf_index = free_leaves_.back();
    free_leaves_.pop_back();
  } else {
    leaf_index = static_cast<int32_t>(leaves_.size());
    leaves_.emplace_back();
  }
  Leaf& leaf = leaves_[static_cast<size_t>(leaf_index)];
  InitLeafFeatures(&leaf);
  leaf.weight_at_last_attempt = 0.0;
  leaf.majority_correct = 0.0;
  leaf.bayes_correct = 0.0;
  leaf.active = true;
  leaf.model.reset();
  if (options_.leaf_prediction == LeafPrediction::kLogistic) {
    if (inherit != nullptr) {
      leaf.model.emplace(*inherit);
    } else {
      Result<BayesianLogisticRegression> model =
          BayesianLogisticRegression::Create({.dimension = options_.dimension,
                                              .prior_variance = options_.leaf_prior_variance,
                                              .auc_bins = 1});
      if (model.ok()) leaf.model.emplace(std::move(model).value());  // valid by Validate
    }
  }
  Node node;
  node.leaf = leaf_index;
  node.depth = depth;
  node.class_weight[0] = w0;
  node.class_weight[1] = w1;
  nodes_.push_back(node);
  ++leaf_count_;
  return static_cast<int32_t>(nodes_.size() - 1);
}

int32_t HoeffdingTree::FindLeafNode(std::span<const double> x) const {
  int32_t n = 0;
  while (nodes_[static_cast<size_t>(n)].feature >= 0) {
    const Node& node = nodes_[static_cast<size_t>(n)];
    double v = x[static_cast<size_t>(node.feature)];
    if (!std::isfinite(v)) v = 0.0;
    n = v <= node.threshold ? node.left : node.right;
  }
  return n;
}

double HoeffdingTree::MajorityProbability(const Node& node) const {
  // Laplace smoothing keeps a young leaf away from 0 and 1.
  return (node.class_weight[1] + 1.0) / (node.class_weight[0] + node.class_weight[1] + 2.0);
}

double HoeffdingTree::BayesProbability(const Node& node, const Leaf& leaf,
                                       std::span<const double> x) const {
  const double w0 = node.class_weight[0];
  const double w1 = node.class_weight[1];
  double logit = std::log((w1 + 1.0) / (w0 + 1.0));
  for (size_t k = 0; k < leaf.features.size(); ++k) {
    const double v = x[static_cast<size_t>(leaf.features[k])];
    const double* s = leaf.stats.data() + k * kStatsPerFeature;
    const double* s0 = s;
    const double* s1 = s + kStatsPerClass;
    const double n0 = s0[kWeight];
    const double n1 = s1[kWeight];
    if (!std::isfinite(v) || n0 <= 0.0 || n1 <= 0.0) continue;
    if (IsBinary(s0) && IsBinary(s1)) {
      // A 0/1 feature (a one-hot column): Bernoulli, Laplace-smoothed.
      const double p0 = (s0[kMean] * n0 + 1.0) / (n0 + 2.0);
      const double p1 = (s1[kMean] * n1 + 1.0) / (n1 + 2.0);
      logit += v >= 0.5 ? std::log(p1 / p0) : std::log((1.0 - p1) / (1.0 - p0));
      continue;
    }
    // Each class's variance is shrunk towards the leaf's pooled variance
    // (one pseudo-observation), so a class that has shown one value only
    // does not make the density degenerate.
    const double n = n0 + n1;
    const double dm = s0[kMean] - s1[kMean];
    const double pooled = std::max((s0[kM2] + s1[kM2] + n0 * n1 / n * dm * dm) / n, 1e-6);
    const double var0 = (s0[kM2] + pooled) / (n0 + 1.0);
    const double var1 = (s1[kM2] + pooled) / (n1 + 1.0);
    const double d0 = v - s0[kMean];
    const double d1 = v - s1[kMean];
    logit += 0.5 * std::log(var0 / var1) + d0 * d0 / (2.0 * var0) - d1 * d1 / (2.0 * var1);
  }
  return Sigmoid(logit);
}

double HoeffdingTree::LeafProbability(const Node& node, std::span<const double> x) const {
  const Leaf& leaf = leaves_[static_cast<size_t>(node.leaf)];
  switch (options_.leaf_prediction) {
    case LeafPrediction::kMajorityClass:
      return MajorityProbability(node);
    case LeafPrediction::kNaiveBayes:
      return BayesProbability(node, leaf, x);
    case LeafPrediction::kNaiveBayesAdaptive:
      return leaf.bayes_correct > leaf.majority_correct ? BayesProbability(node, leaf, x)
                                                        : MajorityProbability(node);
    case LeafPrediction::kLogistic:
      return leaf.model ? leaf.model->PredictProbability(Standardise(x))
                        : MajorityProbability(node);
  }
  return MajorityProbability(node);
}

double HoeffdingTree::PredictProbability(std::span<const double> x) const {
  return LeafProbability(nodes_[static_cast<size_t>(FindLeafNode(x))], x);
}

double HoeffdingTree::Learn(std::span<const double> x, bool label, double weight) {
  if (!(weight > 0.0) || !std::isfinite(weight) || !AllFinite(x)) {
    return std::numeric_limits<double>::quiet_NaN();
  }
  const double p = PredictProbability(x);
  auc_.Add(p, label);
  log_loss_.Add(p, label);
  Train(x, label, weight);
  return p;
}

void HoeffdingTree::Train(std::span<const double> x, bool label, double weight) {
  if (!(weight > 0.0) || !std::isfinite(weight) || !AllFinite(x)) return;
  const int y = label ? 1 : 0;
  int32_t n = 0;
  while (nodes_[static_cast<size_t>(n)].feature >= 0) {
    Node& node = nodes_[static_cast<size_t>(n)];
    node.class_weight[y] += weight;
    n = x[static_cast<size_t>(node.feature)] <= node.threshold ? node.left : node.right;
  }
  Node& node = nodes_[static_cast<size_t>(n)];
  Leaf& leaf = leaves_[static_cast<size_t>(node.leaf)];
  if (options_.leaf_prediction == LeafPrediction::kNaiveBayesAdaptive) {
    // Which leaf model would have been right, before learning the example.
    if ((MajorityProbability(node) >= 0.5) == label) leaf.majority_correct += weight;
    if ((BayesProbability(node, leaf, x) >= 0.5) == label) leaf.bayes_correct += weight;
  }
  node.class_weight[y] += weight;
  if (leaf.model) {
    // The example is folded in once whatever its weight: the posterior
    // update has no weight, and repeating it would overstate certainty.
    (void)leaf.model->Update(Standardise(x), label);
    feature_weight_ += weight;
    for (size_t f = 0; f < feature_mean_.size(); ++f) {
      const double delta = x[f] - feature_mean_[f];
      feature_mean_[f] += weight * delta / feature_weight_;
      feature_m2_[f] = std::max(0.0, feature_m2_[f] + weight * delta * (x[f] - feature_mean_[f]));
    }
  }
  for (size_t k = 0; k < leaf.features.size(); ++k) {
    const double v = x[static_cast<size_t>(leaf.features[k])];
    double* s = leaf.stats.data() + k * kStatsPerFeature + y * kStatsPerClass;
    // Weighted Welford (West 1979).
    const double w = s[kWeight] + weight;
    const double delta = v - s[kMean];
    s[kMean] += weight * delta / w;
    // Rounding can take M2 a hair below 0 when one value repeats.
    s[kM2] = std::max(0.0, s[kM2] + weight * delta * (v - s[kMean]));
    s[kWeight] = w;
    s[kMin] = std::min(s[kMin], v);
    s[kMax] = std::max(s[kMax], v);
  }
  weight_seen_ += weight;
  if (!leaf.active || node.depth >= options_.max_depth || leaf.features.empty()) return;
  const double observed = leaf.stats[kWeight] + leaf.stats[kStatsPerClass + kWeight];
  if (observed - leaf.weight_at_last_attempt >= options_.grace_period) AttemptSplit(n);
}

void HoeffdingTree::AttemptSplit(int32_t node_index) {
  Leaf& leaf = leaves_[static_cast<size_t>(nodes_[static_cast<size_t>(node_index)].leaf)];
  // Every observed feature sees every example, so the first one's class
  // weights are the leaf's observed class weights.
  const double w0 = leaf.stats[kWeight];
  const double w1 = leaf.stats[kStatsPerClass + kWeight];
  const double n = w0 + w1;
  leaf.weight_at_last_attempt = n;
  if (w0 <= 0.0 || w1 <= 0.0) return;  // pure so far
  const double parent_entropy = Entropy(w0, w1);

  double best = 0.0, second = 0.0;  // the null split has merit 0
  int best_feature = -1;
  double best_threshold = 0.0, best_left[2] = {0, 0}, best_right[2] = {0, 0};
  for (size_t k = 0; k < leaf.features.size(); ++k) {
    const double* s = leaf.stats.data() + k * kStatsPerFeature;
    const double* s0 = s;
    const double* s1 = s + kStatsPerClass;
    const double lo = std::min(s0[kMin], s1[kMin]);
    const double hi = std::max(s0[kMax], s1[kMax]);
    if (!(hi > lo)) continue;
    double feature_best = -1.0, threshold = 0.0, left[2] = {0, 0}, right[2] = {0, 0};
    for (int i = 1; i <= options_.split_points; ++i) {
      const double t = lo + (hi - lo) * i / (options_.split_points + 1);
      const double l0 = WeightAtOrBelow(s0, t);
      const double l1 = WeightAtOrBelow(s1, t);
      const double r0 = s0[kWeight] - l0;
      const double r1 = s1[kWeight] - l1;
      const double l = l0 + l1, r = r0 + r1, total = l + r;
      if (total <= 0.0 || std::min(l, r) < options_.min_branch_fraction * total) continue;
      const double merit =
          parent_entropy - (l / total) * Entropy(l0, l1) - (r / total) * Entropy(r0, r1);
      if (merit > feature_best) {
        feature_best = merit;
        threshold = t;
        left[0] = l0;
        left[1] = l1;
        right[0] = r0;
        right[1] = r1;
      }
    }
    if (feature_best > best) {
      second = best;
      best = feature_best;
      best_feature = leaf.features[k];
      best_threshold = threshold;
      std::copy(left, left + 2, best_left);
      std::copy(right, right + 2, best_right);
    } else if (feature_best > second) {
      second = feature_best;
    }
  }
  if (best_feature < 0) return;
  // Hoeffding bound with R = log2(2 classes) = 1 bit.
  const double eps = std::sqrt(std::log(1.0 / options_.split_confidence) / (2.0 * n));
  if (!(best - second > eps || eps < options_.tie_threshold)) return;
  if (leaf_count_ + 1 > options_.max_leaves) {
    leaf.active = false;  // full: this leaf keeps learning, never splits
    return;
  }
  const int32_t old_leaf = nodes_[static_cast<size_t>(node_index)].leaf;
  const int depth = nodes_[static_cast<size_t>(node_index)].depth;
  // The children inherit the parent's posterior (kLogistic); keep it aside
  // since the parent's record is reused.
  std::optional<BayesianLogisticRegression> parent_model =
      std::move(leaves_[static_cast<size_t>(old_leaf)].model);
  leaves_[static_cast<size_t>(old_leaf)].model.reset();
  free_leaves_.push_back(old_leaf);
  --leaf_count_;
  const BayesianLogisticRegression* inherit = parent_model ? &*parent_model : nullptr;
  // NewLeaf may move nodes_ and leaves_: index, never hold references across it.
  const int32_t left = NewLeaf(depth + 1, best_left[0], best_left[1], inherit);
  const int32_t right = NewLeaf(depth + 1, best_right[0], best_right[1], inherit);
  Node& node = nodes_[static_cast<size_t>(node_index)];
  node.feature = best_feature;
  node.threshold = best_threshold;
  node.left = left;
  node.right = right;
  node.leaf = -1;
}

void HoeffdingTree::Explain(std::span<const double> x, TreeExplanation* out) const {
  out->contributions.clear();
  int32_t n = 0;
  out->bias = MajorityProbability(nodes_[0]);
  while (nodes_[static_cast<size_t>(n)].feature >= 0) {
    const Node& node = nodes_[static_cast<size_t>(n)];
    double v = x[static_cast<size_t>(node.feature)];
    if (!std::isfinite(v)) v = 0.0;
    const int32_t child = v <= node.threshold ? node.left : node.right;
    const double change =
        MajorityProbability(nodes_[static_cast<size_t>(child)]) - MajorityProbability(node);
    const auto feature = static_cast<uint32_t>(node.feature);
    auto it =
        std::find_if(out->contributions.begin(), out->contributions.end(),
                     [feature](const FeatureContribution& c) { return c.feature == feature; });
    if (it == out->contributions.end()) {
      out->contributions.push_back({feature, false, change});
    } else {
      it->contribution += change;
    }
    n = child;
  }
  const Node& leaf = nodes_[static_cast<size_t>(n)];
  out->leaf_adjustment = LeafProbability(leaf, x) - MajorityProbability(leaf);
  std::sort(out->contributions.begin(), out->contributions.end(),
            [](const FeatureContribution& a, const FeatureContribution& b) {
              return std::fabs(a.contribution) > std::fabs(b.contribution);
            });
}

int HoeffdingTree::depth() const {
  int d = 0;
  for (const Node& n : nodes_) d = std::max(d, static_cast<int>(n.depth));
  return d;
}

HoeffdingTree::Split HoeffdingTree::NodeSplit(size_t node) const {
  Split s;
  if (node >= nodes_.size()) return s;
  const Node& n = nodes_[node];
  s.feature = n.feature;
  s.threshold = n.threshold;
  s.class_weight[0] = n.class_weight[0];
  s.class_weight[1] = n.class_weight[1];
  return s;
}

size_t HoeffdingTree::memory_bytes() const {
  size_t bytes = sizeof(*this) + nodes_.capacity() * sizeof(Node) +
                 leaves_.capacity() * sizeof(Leaf) + free_leaves_.capacity() * sizeof(int32_t) +
                 2 * options_.auc_bins * sizeof(uint64_t);
  for (const Leaf& l : leaves_) {
    bytes += l.features.capacity() * sizeof(int32_t) + l.stats.capacity() * sizeof(double);
  }
  return bytes;
}

// ------------------------------------------------------------------ blob

void HoeffdingTreeOptions::AppendTo(BinaryWriter& w) const {
  w.Put<int32_t>(dimension);
  w.Put<double>(grace_period);
  w.Put<double>(split_confidence);
  w.Put<double>(tie_threshold);
  w.Put<int32_t>(split_points);
  w.Put<int32_t>(max_depth);
  w.Put<uint32_t>(max_leaves);
  w.Put<double>(min_branch_fraction);
  w.Put<uint8_t>(static_cast<uint8_t>(leaf_prediction));
  w.Put<int32_t>(features_per_split);
  w.Put<uint64_t>(random_seed);
  w.Put<double>(leaf_prior_variance);
  w.Put<uint32_t>(auc_bins);
}

Result<HoeffdingTreeOptions> HoeffdingTreeOptions::ReadFrom(BinaryReader& r) {
  HoeffdingTreeOptions o;
  uint8_t mode = 0;
  CRM_RETURN_NOT_OK(r.Get(&o.dimension));
  CRM_RETURN_NOT_OK(r.Get(&o.grace_period));
  CRM_RETURN_NOT_OK(r.Get(&o.split_confidence));
  CRM_RETURN_NOT_OK(r.Get(&o.tie_threshold));
  CRM_RETURN_NOT_OK(r.Get(&o.split_points));
  CRM_RETURN_NOT_OK(r.Get(&o.max_depth));
  CRM_RETURN_NOT_OK(r.Get(&o.max_leaves));
  CRM_RETURN_NOT_OK(r.Get(&o.min_branch_fraction));
  CRM_RETURN_NOT_OK(r.Get(&mode));
  o.leaf_prediction = static_cast<LeafPrediction>(mode);
  CRM_RETURN_NOT_OK(r.Get(&o.features_per_split));
  CRM_RETURN_NOT_OK(r.Get(&o.random_seed));
  CRM_RETURN_NOT_OK(r.Get(&o.leaf_prior_variance));
  CRM_RETURN_NOT_OK(r.Get(&o.auc_bins));
  if (Status st = o.Validate(); !st.ok()) {
    return Status::Corruption("HoeffdingTree options: " + st.message());
  }
  return o;
}

void HoeffdingTree::AppendTo(BinaryWriter& w) const {
  options_.AppendTo(w);
  w.Put<uint64_t>(rng_state_);
  w.Put<double>(weight_seen_);
  w.Put<uint32_t>(static_cast<uint32_t>(nodes_.size()));
  for (const Node& n : nodes_) {
    w.Put<int32_t>(n.feature);
    w.Put<double>(n.threshold);
    w.Put<int32_t>(n.left);
    w.Put<int32_t>(n.right);
    w.Put<int32_t>(n.leaf);
    w.Put<int32_t>(n.depth);
    w.Put<double>(n.class_weight[0]);
    w.Put<double>(n.class_weight[1]);
  }
  w.Put<uint32_t>(static_cast<uint32_t>(leaves_.size()));
  for (const Leaf& l : leaves_) {
    w.PutArray<int32_t>(l.features);
    w.PutArray<double>(l.stats);
    w.Put<double>(l.weight_at_last_attempt);
    w.Put<double>(l.majority_correct);
    w.Put<double>(l.bayes_correct);
    w.Put<uint8_t>(l.active ? 1 : 0);
    w.Put<uint8_t>(l.model ? 1 : 0);
    if (l.model) w.PutBytes(l.model->Serialize());
  }
  w.PutArray<int32_t>(free_leaves_);
  if (options_.leaf_prediction == LeafPrediction::kLogistic) {
    w.Put<double>(feature_weight_);
    w.PutArray<double>(feature_mean_);
    w.PutArray<double>(feature_m2_);
  }
  auc_.AppendTo(w);
  log_loss_.AppendTo(w);
}

Result<HoeffdingTree> HoeffdingTree::ReadFrom(BinaryReader& r) {
  const auto corrupt = [](const std::string& what) {
    return Status::Corruption("HoeffdingTree blob: " + what);
  };
  CRM_ASSIGN_OR_RETURN(const HoeffdingTreeOptions o, HoeffdingTreeOptions::ReadFrom(r));
  HoeffdingTree t(o);
  CRM_RETURN_NOT_OK(r.Get(&t.rng_state_));
  CRM_RETURN_NOT_OK(r.Get(&t.weight_seen_));
  if (!(t.weight_seen_ >= 0.0) || !std::isfinite(t.weight_seen_)) return corrupt("weight");
  uint32_t nodes = 0;
  CRM_RETURN_NOT_OK(r.Get(&nodes));
  // A node takes 48 bytes; a tree of L leaves has 2L - 1 nodes.
  if (nodes < 1 || nodes > 2 * uint64_t{o.max_leaves} || nodes > r.remaining() / 48) {
    return corrupt("bad node count");
  }
  t.nodes_.resize(nodes);
  for (Node& n : t.nodes_) {
    CRM_RETURN_NOT_OK(r.Get(&n.feature));
    CRM_RETURN_NOT_OK(r.Get(&n.threshold));
    CRM_RETURN_NOT_OK(r.Get(&n.left));
    CRM_RETURN_NOT_OK(r.Get(&n.right));
    CRM_RETURN_NOT_OK(r.Get(&n.leaf));
    CRM_RETURN_NOT_OK(r.Get(&n.depth));
    CRM_RETURN_NOT_OK(r.Get(&n.class_weight[0]));
    CRM_RETURN_NOT_OK(r.Get(&n.class_weight[1]));
  }
  uint32_t leaves = 0;
  CRM_RETURN_NOT_OK(r.Get(&leaves));
  if (leaves > nodes || leaves > r.remaining() / 8) return corrupt("bad leaf count");
  t.leaves_.resize(leaves);
  for (Leaf& l : t.leaves_) {
    l.features.reserve(1);
    l.stats.reserve(1);
    CRM_RETURN_NOT_OK(r.GetArray(&l.features, static_cast<size_t>(o.dimension)));
    CRM_RETURN_NOT_OK(r.GetArray(&l.stats, static_cast<size_t>(o.dimension) * kStatsPerFeature));
    CRM_RETURN_NOT_OK(r.Get(&l.weight_at_last_attempt));
    CRM_RETURN_NOT_OK(r.Get(&l.majority_correct));
    CRM_RETURN_NOT_OK(r.Get(&l.bayes_correct));
    uint8_t active = 0;
    CRM_RETURN_NOT_OK(r.Get(&active));
    if (active > 1) return corrupt("bad leaf flag");
    l.active = active == 1;
    uint8_t has_model = 0;
    CRM_RETURN_NOT_OK(r.Get(&has_model));
    if (has_model > 1) return corrupt("bad leaf model flag");
    if (has_model == 1) {
      std::string bytes;
      CRM_RETURN_NOT_OK(r.GetBytes(&bytes));
      CRM_ASSIGN_OR_RETURN(BayesianLogisticRegression model,
                           BayesianLogisticRegression::Deserialize(bytes));
      if (o.leaf_prediction != LeafPrediction::kLogistic || model.dimension() != o.dimension) {
        return corrupt("leaf model does not fit the tree");
      }
      l.model.emplace(std::move(model));
    }
    if (l.stats.size() != l.features.size() * kStatsPerFeature) return corrupt("bad leaf stats");
    for (size_t k = 0; k < l.features.size(); ++k) {
      if (l.features[k] < 0 || l.features[k] >= o.dimension ||
          (k > 0 && l.features[k] <= l.features[k - 1])) {
        return corrupt("bad leaf features");
      }
    }
    for (size_t k = 0; k < l.features.size(); ++k) {
      for (int c = 0; c < 2; ++c) {
        const double* s = l.stats.data() + k * kStatsPerFeature + c * kStatsPerClass;
        const bool empty = s[kWeight] == 0.0;
        if (!(s[kWeight] >= 0.0) || !std::isfinite(s[kWeight]) || !std::isfinite(s[kMean]) ||
            !(s[kM2] >= 0.0) || !std::isfinite(s[kM2]) || std::isnan(s[kMin]) ||
            std::isnan(s[kMax]) || (!empty && !(s[kMin] <= s[kMax]))) {
          return corrupt("bad feature statistics");
        }
      }
    }
    for (double v : {l.weight_at_last_attempt, l.majority_correct, l.bayes_correct}) {
      if (!(v >= 0.0) || !std::isfinite(v)) return corrupt("bad leaf counters");
    }
  }
  t.free_leaves_.reserve(1);
  CRM_RETURN_NOT_OK(r.GetArray(&t.free_leaves_, leaves));
  if (o.leaf_prediction == LeafPrediction::kLogistic) {
    CRM_RETURN_NOT_OK(r.Get(&t.feature_weight_));
    CRM_RETURN_NOT_OK(r.GetArray(&t.feature_mean_, static_cast<size_t>(o.dimension)));
    CRM_RETURN_NOT_OK(r.GetArray(&t.feature_m2_, static_cast<size_t>(o.dimension)));
    if (t.feature_mean_.size() != static_cast<size_t>(o.dimension) ||
        t.feature_m2_.size() != static_cast<size_t>(o.dimension) || !(t.feature_weight_ >= 0.0) ||
        !std::isfinite(t.feature_weight_)) {
      return corrupt("bad feature statistics");
    }
    for (size_t f = 0; f < t.feature_mean_.size(); ++f) {
      if (!std::isfinite(t.feature_mean_[f]) || !(t.feature_m2_[f] >= 0.0) ||
          !std::isfinite(t.feature_m2_[f])) {
        return corrupt("bad feature statistics");
      }
    }
  }
  // Structure: children come after their parent (no cycles), every node but
  // the root has exactly one parent, leaves own distinct leaf records.
  std::vector<uint8_t> parents(nodes, 0), leaf_used(leaves, 0);
  for (int32_t f : t.free_leaves_) {
    if (f < 0 || static_cast<uint32_t>(f) >= leaves || leaf_used[static_cast<size_t>(f)]) {
      return corrupt("bad free leaf");
    }
    leaf_used[static_cast<size_t>(f)] = 1;
  }
  for (uint32_t i = 0; i < nodes; ++i) {
    const Node& n = t.nodes_[i];
    if (!(n.class_weight[0] >= 0.0) || !(n.class_weight[1] >= 0.0) ||
        !std::isfinite(n.class_weight[0]) || !std::isfinite(n.class_weight[1]) || n.depth < 0 ||
        n.depth > o.max_depth) {
      return corrupt("bad node");
    }
    if (n.feature >= 0) {
      if (n.feature >= o.dimension || n.leaf != -1 || !std::isfinite(n.threshold) ||
          n.left <= static_cast<int32_t>(i) || n.right <= static_cast<int32_t>(i) ||
          static_cast<uint32_t>(n.left) >= nodes || static_cast<uint32_t>(n.right) >= nodes ||
          n.left == n.right) {
        return corrupt("bad split node");
      }
      for (int32_t child : {n.left, n.right}) {
        if (parents[static_cast<size_t>(child)]++ != 0 ||
            t.nodes_[static_cast<size_t>(child)].depth != n.depth + 1) {
          return corrupt("bad tree shape");
        }
      }
    } else {
      if (n.feature != -1 || n.left != -1 || n.right != -1 || n.leaf < 0 ||
          static_cast<uint32_t>(n.leaf) >= leaves || leaf_used[static_cast<size_t>(n.leaf)]) {
        return corrupt("bad leaf node");
      }
      leaf_used[static_cast<size_t>(n.leaf)] = 1;
      if ((o.leaf_prediction == LeafPrediction::kLogistic) !=
          t.leaves_[static_cast<size_t>(n.leaf)].model.has_value()) {
        return corrupt("leaf model missing or unexpected");
      }
      ++t.leaf_count_;
    }
  }
  if (t.nodes_[0].depth != 0 || parents[0] != 0) return corrupt("bad root");
  for (uint32_t i = 1; i < nodes; ++i) {
    if (parents[i] != 1) return corrupt("unreachable node");
  }
  for (uint8_t used : leaf_used) {
    if (!used) return corrupt("orphan leaf record");
  }
  if (t.leaf_count_ > o.max_leaves) return corrupt("too many leaves");
  CRM_ASSIGN_OR_RETURN(t.auc_, StreamingAuc::ReadFrom(r));
  if (t.auc_.bins() != o.auc_bins || t.auc_.lo() != 0.0 || t.auc_.hi() != 1.0) {
    return corrupt("AUC histogram differs from the options");
  }
  CRM_ASSIGN_OR_RETURN(t.log_loss_, LogLoss::ReadFrom(r));
  return t;
}

std::string HoeffdingTree::Serialize() const {
  return SealAppended(BlobKind::kHoeffdingTree, kBlobVersion, *this);
}

Result<HoeffdingTree> HoeffdingTree::Deserialize(std::string_view blob) {
  return OpenAndRead<HoeffdingTree>(blob, BlobKind::kHoeffdingTree, kBlobVersion);
}

}  // namespace crmstream::models
