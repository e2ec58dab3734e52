// Hoeffding tree (VFDT: Domingos and Hulten, "Mining High-Speed Data
// Streams", KDD 2000) for a binary label such as churn, on dense numeric
// features, learnt one weighted example at a time.
//
// Each leaf keeps, per feature and class, the weight, mean and variance of
// the values it has seen (a Gaussian approximation, as MOA's and River's
// numeric observers) and their range. Every `grace_period` of weight a leaf
// scores `split_points` thresholds per feature by information gain,
// estimating the class weights on each side from the Gaussians. With G1 and
// G2 the two best features' gains and n the leaf's weight, the Hoeffding
// bound
//     eps = sqrt(R^2 ln(1 / delta) / (2 n)),   R = 1 bit,
// says that G1 is the best split with probability 1 - delta when
// G1 - G2 > eps; the leaf splits then, or when eps < tie_threshold (the
// candidates are too close to matter). Children start with the class
// weights the split estimates for them.
//
// Leaves predict P(churn) by their class weights (Laplace-smoothed), by
// naive Bayes over the leaf's Gaussians, adaptively by whichever of the
// two has been more accurate at that leaf (MOA's NBAdaptive), or by a
// Bayesian logistic regression on the features standardised with the
// tree's running means and variances and clipped to +-5 standard deviations
// (a model tree: a split's children
// start from their parent's posterior, so a split refines the model instead
// of restarting it). For the random forest a leaf observes a random subset
// of the features (`features_per_split`).
//
// Explanations (Saabas' path attribution): the prediction is the root's
// smoothed churn rate, plus for each split on the path the change of the
// churn rate from the node to the child taken (credited to the split's
// feature), plus the leaf model's adjustment (naive Bayes versus the leaf's
// rate). The parts add up to the prediction exactly.
//
// Each Learn predicts first and records the prediction in the prequential
// ROC-AUC and log loss, then trains. Memory: the nodes plus, per leaf,
// 10 doubles per observed feature (and (dimension + 1)^2 for a logistic
// leaf's covariance); `max_leaves` caps the tree (a full tree
// stops splitting and keeps learning its leaves). Learn allocates only when
// a leaf splits. Not mergeable: a tree's structure is a path-dependent
// function of the order of its examples, so two trees do not combine into
// the tree of both streams (the random forest merges ensembles instead).
// Not thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "crmstream/common/binary_io.h"
#include "crmstream/common/status.h"
#include "crmstream/models/logistic_regression.h"
#include "crmstream/models/prequential_metrics.h"

namespace crmstream::models {

enum class LeafPrediction : uint8_t {
  kMajorityClass = 0,  // the leaf's smoothed class weights
  kNaiveBayes = 1,
  kNaiveBayesAdaptive = 2,  // whichever has been more accurate at the leaf
  // A Bayesian logistic regression per leaf on the standardised features;
  // a split's children start from their parent's posterior (a model tree).
  kLogistic = 3,
};

struct HoeffdingTreeOptions {
  // Number of features, in [1, 4096].
  int dimension = 0;
  // Weight a leaf sees between split attempts, > 0.
  double grace_period = 200.0;
  // delta of the Hoeffding bound, in (0, 1).
  double split_confidence = 1e-7;
  // tau: split anyway when the bound is below it, in [0, 1].
  double tie_threshold = 0.05;
  // Candidate thresholds per feature, in [1, 256].
  int split_points = 10;
  // Depth limit (root = 0), in [1, 64].
  int max_depth = 20;
  // Leaf limit, in [1, 2^20].
  uint32_t max_leaves = 1u << 12;
  // A branch must get at least this share of the weight, in [0, 0.5).
  double min_branch_fraction = 0.01;
  LeafPrediction leaf_prediction = LeafPrediction::kNaiveBayesAdaptive;
  // Features observed per leaf, chosen at random (0 = all), in [0, dimension].
  int features_per_split = 0;
  uint64_t random_seed = 1;
  // Prior variance of the logistic leaves' weights (kLogistic), > 0.
  double leaf_prior_variance = 0.1;
  // Resolution of the prequential AUC (StreamingAuc bins).
  uint32_t auc_bins = StreamingAuc::kDefaultBins;

  Status Validate() const;
  // Embedding in blobs; ReadFrom validates (Corruption).
  void AppendTo(BinaryWriter& out) const;
  static Result<HoeffdingTreeOptions> ReadFrom(BinaryReader& in);
};

// A prediction split into its parts (see above).
struct TreeExplanation {
  double bias = 0.0;             // the root's smoothed churn rate
  double leaf_adjustment = 0.0;  // leaf model versus the leaf's rate
  // Per feature on the path, the summed change of the churn rate, largest
  // magnitude first (FeatureContribution::hashed is always false).
  std::vector<FeatureContribution> contributions;
  double prediction() const;
};

class HoeffdingTree {
 public:
  static constexpr uint16_t kBlobVersion = 1;
  static constexpr bool kExactMerge = false;  // not mergeable at all

  static Result<HoeffdingTree> Create(const HoeffdingTreeOptions& options);

  // P(label = true). x.size() must equal dimension(); a non-finite value
  // counts as 0 for routing and is skipped by the leaf model.
  double PredictProbability(std::span<const double> x) const;
  // Predicts (recorded prequentially), then learns the example with
  // `weight` (> 0; the forest's Poisson weights). Returns the prediction;
  // NaN (and no learning) for a row with a non-finite value or a bad weight.
  double Learn(std::span<const double> x, bool label, double weight = 1.0);
  // Learns without recording a prediction (ensemble members).
  void Train(std::span<const double> x, bool label, double weight);

  // The parts of PredictProbability(x); `out` is reused.
  void Explain(std::span<const double> x, TreeExplanation* out) const;

  int dimension() const { return options_.dimension; }
  const HoeffdingTreeOptions& options() const { return options_; }
  size_t nodes() const { return nodes_.size(); }
  size_t leaves() const { return leaf_count_; }
  int depth() const;
  double weight_seen() const { return weight_seen_; }
  const StreamingAuc& prequential_auc() const { return auc_; }
  const LogLoss& prequential_log_loss() const { return log_loss_; }
  size_t memory_bytes() const;

  // The split of an internal node, for inspection (feature -1 for a leaf).
  struct Split {
    int feature = -1;
    double threshold = 0.0;
    double class_weight[2] = {0.0, 0.0};  // weight that reached the node
  };
  Split NodeSplit(size_t node) const;

  std::string Serialize() const;
  static Result<HoeffdingTree> Deserialize(std::string_view blob);
  // Embedding in a larger blob (the forest).
  void AppendTo(BinaryWriter& out) const;
  static Result<HoeffdingTree> ReadFrom(BinaryReader& in);

 private:
  struct Node {
    int32_t feature = -1;  // -1: a leaf
    double threshold = 0.0;
    int32_t left = -1;
    int32_t right = -1;
    int32_t leaf = -1;  // index into leaves_ for a leaf
    int32_t depth = 0;
    double class_weight[2] = {0.0, 0.0};
  };
  // Per observed feature, per class: weight, mean, M2, min, max.
  static constexpr int kStatsPerClass = 5;
  static constexpr int kStatsPerFeature = 2 * kStatsPerClass;
  struct Leaf {
    std::vector<int32_t> features;  // observed features
    std::vector<double> stats;      // kStatsPerFeature per observed feature
    double weight_at_last_attempt = 0.0;
    double majority_correct = 0.0;
    double bayes_correct = 0.0;
    bool active = true;
    std::optional<BayesianLogisticRegression> model;  // kLogistic leaves
  };

  explicit HoeffdingTree(const HoeffdingTreeOptions& options);

  int32_t FindLeafNode(std::span<const double> x) const;
  int32_t NewLeaf(int depth, double w0, double w1, const BayesianLogisticRegression* inherit);
  // x standardised with the running statistics, into standardised_.
  std::span<const double> Standardise(std::span<const double> x) const;
  void InitLeafFeatures(Leaf* leaf);
  double MajorityProbability(const Node& node) const;
  double BayesProbability(const Node& node, const Leaf& leaf, std::span<const double> x) const;
  double LeafProbability(const Node& node, std::span<const double> x) const;
  void AttemptSplit(int32_t node_index);
  uint64_t NextRandom();

  HoeffdingTreeOptions options_;
  uint64_t rng_state_;
  std::vector<Node> nodes_;
  std::vector<Leaf> leaves_;
  std::vector<int32_t> free_leaves_;
  size_t leaf_count_ = 0;
  double weight_seen_ = 0.0;
  StreamingAuc auc_;
  LogLoss log_loss_;
  mutable std::vector<int32_t> scratch_features_;
  // Running mean and M2 of every feature (kLogistic leaves).
  double feature_weight_ = 0.0;
  std::vector<double> feature_mean_;
  std::vector<double> feature_m2_;
  mutable std::vector<double> standardised_;
};

}  // namespace crmstream::models
