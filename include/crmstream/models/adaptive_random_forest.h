// Adaptive random forest for a binary label such as churn (Gomes et al.,
// "Adaptive random forests for evolving data stream classification",
// Machine Learning 106, 2017), on dense numeric features.
//
// `models` Hoeffding trees, each learning every example with a Poisson(lambda)
// weight (online bagging, Oza and Russell 2001; lambda = 6 as in the paper
// leverages resampling) and observing a random subset of `features_per_split`
// features at each leaf. Each member watches its own 0/1 errors with two
// ADWIN detectors: when the warning detector (looser delta) fires a
// background tree starts learning; when the drift detector fires the
// background tree (or a fresh one) replaces the member and its statistics
// restart. The forest's P(churn) is the members' probabilities averaged with
// weights equal to their accuracy since their last reset.
//
// Each Learn predicts first and records the prediction in the prequential
// ROC-AUC and log loss, then trains. Explanations average the members' path
// attributions (HoeffdingTree::Explain) with the same weights.
//
// Merge pools two forests' members and keeps the `models` most accurate:
// the standard way to combine ensembles trained on different partitions; it
// is not the forest one instance would have grown on both streams. The
// prequential metrics merge exactly. Memory: the members' trees (see
// HoeffdingTree) and their detectors. Not thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "crmstream/common/status.h"
#include "crmstream/models/adwin.h"
#include "crmstream/models/hoeffding_tree.h"
#include "crmstream/models/prequential_metrics.h"

namespace crmstream::models {

struct AdaptiveRandomForestOptions {
  // Number of features, in [1, 4096].
  int dimension = 0;
  // Members, in [1, 256].
  int models = 10;
  // Poisson rate of the example weights, in (0, 100].
  double lambda = 6.0;
  // Features per leaf; 0 = round(sqrt(dimension)) + 1 (the paper's default).
  int features_per_split = 0;
  // ADWIN deltas of the warning and drift detectors, in (0, 1).
  double warning_delta = 0.01;
  double drift_delta = 0.001;
  // Detect drift and replace members (off: a plain online random forest).
  bool drift_detection = true;
  // Train a background tree after a warning (off: replace by a fresh tree).
  bool background_learners = true;
  // Member trees: the paper's grace period 50, delta 0.01, tau 0.05,
  // naive Bayes adaptive leaves. dimension, features_per_split, seed and
  // auc_bins are set by the forest.
  HoeffdingTreeOptions tree = DefaultTreeOptions();
  uint64_t random_seed = 42;
  // Resolution of the prequential AUC.
  uint32_t auc_bins = StreamingAuc::kDefaultBins;

  static HoeffdingTreeOptions DefaultTreeOptions();
  Status Validate() const;
};

struct ForestMemberStats {
  double accuracy = 0.0;  // since the member's last reset
  uint64_t warnings = 0;
  uint64_t drifts = 0;
  bool has_background = false;
  size_t leaves = 0;
};

class AdaptiveRandomForest {
 public:
  static constexpr uint16_t kBlobVersion = 1;
  static constexpr bool kExactMerge = false;

  static Result<AdaptiveRandomForest> Create(const AdaptiveRandomForestOptions& options);

  double PredictProbability(std::span<const double> x) const;
  // Predicts (recorded prequentially), then learns. NaN (and no learning)
  // for a row with a non-finite value.
  double Learn(std::span<const double> x, bool label);
  // The accuracy-weighted mean of the members' explanations; `out` is reused.
  void Explain(std::span<const double> x, TreeExplanation* out) const;

  int dimension() const { return options_.dimension; }
  const AdaptiveRandomForestOptions& options() const { return options_; }
  size_t members() const { return members_.size(); }
  ForestMemberStats member_stats(size_t i) const;
  uint64_t drifts() const;
  uint64_t count() const { return count_; }
  const StreamingAuc& prequential_auc() const { return auc_; }
  const LogLoss& prequential_log_loss() const { return log_loss_; }
  size_t memory_bytes() const;

  // Pools the members (see above); InvalidArgument if the options differ.
  Status Merge(const AdaptiveRandomForest& other);

  std::string Serialize() const;
  static Result<AdaptiveRandomForest> Deserialize(std::string_view blob);

 private:
  struct Member {
    HoeffdingTree tree;
    std::optional<HoeffdingTree> background;
    Adwin warning;
    Adwin drift;
    double correct = 0.0;
    double seen = 0.0;
    uint64_t warnings = 0;
    uint64_t drifts = 0;
    double accuracy() const { return seen > 0.0 ? correct / seen : 0.0; }
  };

  explicit AdaptiveRandomForest(const AdaptiveRandomForestOptions& options);
  HoeffdingTree NewTree();
  uint32_t Poisson();
  uint64_t NextRandom();
  double MemberWeight(const Member& m) const;

  AdaptiveRandomForestOptions options_;
  int features_per_split_;
  uint64_t rng_state_;
  uint64_t count_ = 0;
  std::vector<Member> members_;
  StreamingAuc auc_;
  LogLoss log_loss_;
  mutable TreeExplanation member_explanation_;
};

}  // namespace crmstream::models
