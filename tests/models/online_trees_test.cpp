// ADWIN, the Hoeffding tree and the adaptive random forest.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <deque>
#include <random>
#include <vector>

#include "crmstream/models/adaptive_random_forest.h"
#include "crmstream/models/adwin.h"
#include "crmstream/models/hoeffding_tree.h"
#include "crmstream/models/prequential_metrics.h"
#include "support/require_ok.h"

namespace crmstream::models {
namespace {

// ------------------------------------------------------------------ ADWIN

TEST_CASE("ADWIN keeps a stationary stream whole and cuts at an abrupt change", "[models][adwin]") {
  auto adwin = Adwin::Create({.delta = 0.002}).value();
  std::mt19937_64 rng(1);
  std::bernoulli_distribution before(0.2), after(0.8);
  std::deque<double> values;  // every value, to check the window against
  for (int i = 0; i < 20000; ++i) {
    const double v = before(rng) ? 1.0 : 0.0;
    values.push_back(v);
    CHECK_FALSE(adwin.Update(v));
  }
  CHECK(adwin.detections() == 0);
  CHECK(adwin.width() == 20000);
  CHECK(adwin.mean() == Approx(0.2).margin(0.01));

  int detected_at = -1;
  for (int i = 0; i < 2000; ++i) {
    const double v = after(rng) ? 1.0 : 0.0;
    values.push_back(v);
    if (adwin.Update(v) && detected_at < 0) detected_at = i;
  }
  INFO("detected " << detected_at << " values after the change");
  REQUIRE(detected_at >= 0);
  CHECK(detected_at < 300);
  // The window dropped (nearly) everything before the change.
  CHECK(adwin.width() < 2300);
  CHECK(adwin.mean() > 0.7);
  // Its mean and variance are those of its last width() values.
  const size_t w = adwin.width();
  double sum = 0.0;
  for (size_t i = values.size() - w; i < values.size(); ++i) sum += values[i];
  const double mean = sum / static_cast<double>(w);
  double ss = 0.0;
  for (size_t i = values.size() - w; i < values.size(); ++i)
    ss += (values[i] - mean) * (values[i] - mean);
  CHECK(adwin.mean() == Approx(mean).epsilon(1e-9));
  CHECK(adwin.variance() == Approx(ss / static_cast<double>(w)).epsilon(1e-6));

  auto copy = Adwin::Deserialize(adwin.Serialize());
  REQUIRE_OK(copy);
  for (int i = 0; i < 500; ++i) {
    const double v = i % 3 == 0 ? 1.0 : 0.0;
    CHECK(copy->Update(v) == adwin.Update(v));
  }
  CHECK(copy->Serialize() == adwin.Serialize());
  CHECK_FALSE(Adwin::Create({.delta = 0.0}).ok());
  std::string blob = adwin.Serialize();
  CHECK(Adwin::Deserialize(blob.substr(0, blob.size() / 2)).status().code() ==
        StatusCode::kCorruption);
}

// ------------------------------------------------------------------ tree

HoeffdingTreeOptions TwoFeatures() {
  HoeffdingTreeOptions o;
  o.dimension = 2;
  o.grace_period = 200;
  o.split_confidence = 1e-7;
  o.tie_threshold = 0.05;
  return o;
}

TEST_CASE("Hoeffding tree: a clear split happens at the first attempt the bound allows",
          "[models][tree]") {
  // x0 separates the classes (label = x0 > 0.5), x1 is noise. At n = 200 the
  // bound is sqrt(ln(1e7) / 400) = 0.2007; the best gain is close to 1 bit
  // and the noise's close to 0, so the leaf splits on x0 at its first attempt.
  auto tree = HoeffdingTree::Create(TwoFeatures()).value();
  std::mt19937_64 rng(3);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  for (int i = 0; i < 199; ++i) {
    const double x[2] = {u(rng), u(rng)};
    (void)tree.Learn(x, x[0] > 0.5);
  }
  CHECK(tree.leaves() == 1);
  const double x[2] = {u(rng), u(rng)};
  (void)tree.Learn(x, x[0] > 0.5);
  REQUIRE(tree.leaves() == 2);
  const HoeffdingTree::Split root = tree.NodeSplit(0);
  CHECK(root.feature == 0);
  CHECK(root.threshold == Approx(0.5).margin(0.1));
  // Afterwards it predicts the concept.
  const double low[2] = {0.1, 0.7};
  const double high[2] = {0.9, 0.2};
  CHECK(tree.PredictProbability(low) < 0.1);
  CHECK(tree.PredictProbability(high) > 0.9);
}

TEST_CASE("Hoeffding tree: tied features wait until the bound falls below tau", "[models][tree]") {
  // x1 = x0: the two best gains are equal, so G1 - G2 = 0 never beats the
  // bound; the leaf splits once eps < tau = 0.05, i.e. n > ln(1e7) /
  // (2 * 0.05^2) = 3223.6. Attempts come every 200: 3200 is too early, 3400
  // splits.
  auto tree = HoeffdingTree::Create(TwoFeatures()).value();
  std::mt19937_64 rng(4);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  for (int i = 1; i <= 3400; ++i) {
    const double v = u(rng);
    const double x[2] = {v, v};
    (void)tree.Learn(x, v > 0.3);
    if (i == 3399) CHECK(tree.leaves() == 1);
  }
  CHECK(tree.leaves() == 2);
  CHECK(tree.NodeSplit(0).threshold == Approx(0.3).margin(0.1));
}

// label = x0 > 0.3 and x1 < 0.6, with 5% of the labels flipped; x2 is noise.
void Concept(std::mt19937_64& rng, double* x, bool* label) {
  std::uniform_real_distribution<double> u(0.0, 1.0);
  for (int f = 0; f < 3; ++f) x[f] = u(rng);
  *label = (x[0] > 0.3 && x[1] < 0.6) != (u(rng) < 0.05);
}

TEST_CASE("Hoeffding tree learns a two-split concept, and its explanations add up",
          "[models][tree]") {
  for (LeafPrediction mode : {LeafPrediction::kMajorityClass, LeafPrediction::kNaiveBayes,
                              LeafPrediction::kNaiveBayesAdaptive, LeafPrediction::kLogistic}) {
    HoeffdingTreeOptions o;
    o.dimension = 3;
    o.leaf_prediction = mode;
    auto tree = HoeffdingTree::Create(o).value();
    std::mt19937_64 rng(7);
    double x[3];
    bool label = false;
    for (int i = 0; i < 20000; ++i) {
      Concept(rng, x, &label);
      (void)tree.Learn(x, label);
    }
    INFO("leaf mode " << static_cast<int>(mode) << ", AUC " << tree.prequential_auc().Value());
    CHECK(tree.prequential_auc().Value() > 0.9);
    CHECK(tree.leaves() >= 3);
    TreeExplanation e;
    int informative_first = 0;
    for (int i = 0; i < 50; ++i) {
      Concept(rng, x, &label);
      tree.Explain(x, &e);
      CHECK(e.prediction() == Approx(tree.PredictProbability(x)).margin(1e-12));
      // Late tie-break splits may use the noise, but the largest part of a
      // path's change is the concept's.
      if (!e.contributions.empty() && e.contributions[0].feature < 2) ++informative_first;
    }
    CHECK(informative_first >= 45);
    // Inside the concept's box the path pushes the probability up.
    const double inside[3] = {0.8, 0.2, 0.5};
    tree.Explain(inside, &e);
    double path = 0.0;
    for (const FeatureContribution& c : e.contributions) path += c.contribution;
    CHECK(path > 0.2);
  }
}

// The engine's first labelled examples are often alike: a feature can stay
// constant (to rounding) for dozens of examples and then vary widely. A
// model tree standardises its leaves' inputs with the examples seen so far;
// the first different value must not wreck the leaf's posterior. Reference:
// the prequential AUC of the true probabilities on the same rows.
TEST_CASE("Model tree: a feature that was constant at first does not wreck the leaf models",
          "[models][tree]") {
  HoeffdingTreeOptions o;
  o.dimension = 3;
  o.leaf_prediction = LeafPrediction::kLogistic;
  auto tree = HoeffdingTree::Create(o).value();
  std::mt19937_64 rng(21);
  std::normal_distribution<double> normal(0.0, 1.0);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  StreamingAuc tree_auc, oracle_auc;
  double extreme = 0.0;  // predictions closer to 0 or 1 than 1e-9
  for (int i = 0; i < 6000; ++i) {
    double x[3];
    // x0: 1 give or take 1e-5 for the first 60 rows, then N(0, 20^2).
    x[0] = i < 60 ? 1.0 + 1e-5 * normal(rng) : 20.0 * normal(rng);
    x[1] = normal(rng);
    x[2] = u(rng);
    const double truth = 1.0 / (1.0 + std::exp(-(1.5 * x[0] / 20.0 - 1.0 * x[1] - 0.5)));
    const bool label = u(rng) < truth;
    const double p = tree.Learn(x, label);
    if (i >= 1000) {
      tree_auc.Add(p, label);
      oracle_auc.Add(truth, label);
      if (p < 1e-9 || p > 1.0 - 1e-9) extreme += 1.0;
    }
  }
  INFO("tree AUC " << tree_auc.Value() << ", oracle AUC " << oracle_auc.Value() << ", " << extreme
                   << " extreme predictions");
  CHECK(tree_auc.Value() > oracle_auc.Value() - 0.02);
  CHECK(extreme == 0.0);
}

TEST_CASE("Hoeffding tree: blob round trip, caps and bad input", "[models][tree]") {
  for (LeafPrediction mode : {LeafPrediction::kNaiveBayesAdaptive, LeafPrediction::kLogistic}) {
    HoeffdingTreeOptions o;
    o.dimension = 3;
    o.max_leaves = 4;
    o.leaf_prediction = mode;
    auto tree = HoeffdingTree::Create(o).value();
    std::mt19937_64 rng(9);
    double x[3];
    bool label = false;
    for (int i = 0; i < 6000; ++i) {
      Concept(rng, x, &label);
      (void)tree.Learn(x, label, 1.0 + (i % 3));
    }
    CHECK(tree.leaves() <= 4);
    auto copy = HoeffdingTree::Deserialize(tree.Serialize());
    REQUIRE_OK(copy);
    CHECK(copy->Serialize() == tree.Serialize());
    for (int i = 0; i < 2000; ++i) {
      Concept(rng, x, &label);
      CHECK(copy->Learn(x, label) == tree.Learn(x, label));
    }
    CHECK(copy->Serialize() == tree.Serialize());
    std::string blob = tree.Serialize();
    for (size_t cut : {size_t{3}, blob.size() / 3, blob.size() - 1}) {
      CHECK(HoeffdingTree::Deserialize(blob.substr(0, cut)).status().code() ==
            StatusCode::kCorruption);
    }
  }
  auto tree = HoeffdingTree::Create(TwoFeatures()).value();
  const double bad[2] = {NAN, 1.0};
  CHECK(std::isnan(tree.Learn(bad, true)));
  CHECK(tree.weight_seen() == 0.0);
  const double fine[2] = {0.0, 1.0};
  CHECK(std::isnan(tree.Learn(fine, true, -1.0)));
  HoeffdingTreeOptions o = TwoFeatures();
  o.features_per_split = 3;
  CHECK(HoeffdingTree::Create(o).status().code() == StatusCode::kInvalidArgument);
  o = TwoFeatures();
  o.dimension = 0;
  CHECK_FALSE(HoeffdingTree::Create(o).ok());
}

// ------------------------------------------------------------------ forest

// label = x0 > 0.5 (with x1..x4 noise) before `flip`, its negation after.
double ForestAccuracy(AdaptiveRandomForest& forest, int rows, int flip, int from, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  int correct = 0, scored = 0;
  double x[5];
  for (int i = 0; i < rows; ++i) {
    for (double& v : x) v = u(rng);
    const bool label = (x[0] > 0.5) != (i >= flip);
    const double p = forest.Learn(x, label);
    if (i >= from) {
      ++scored;
      if ((p >= 0.5) == label) ++correct;
    }
  }
  return static_cast<double>(correct) / scored;
}

TEST_CASE("adaptive random forest recovers from concept drift by replacing members",
          "[models][forest]") {
  AdaptiveRandomForestOptions o;
  o.dimension = 5;
  o.models = 8;
  auto adaptive = AdaptiveRandomForest::Create(o).value();
  o.drift_detection = false;
  auto plain = AdaptiveRandomForest::Create(o).value();
  // 4,000 rows of one concept, then 2,000 of its negation; scored on the
  // 1,000 rows that follow the first 1,000 after the change.
  const double with = ForestAccuracy(adaptive, 6000, 4000, 5000, 17);
  const double without = ForestAccuracy(plain, 6000, 4000, 5000, 17);
  INFO("accuracy after the change: with drift detection " << with << ", without " << without);
  CHECK(adaptive.drifts() >= 4);
  CHECK(plain.drifts() == 0);
  CHECK(with > 0.9);
  CHECK(with > without + 0.1);
  CHECK(adaptive.count() == 6000);

  TreeExplanation e;
  const double x[5] = {0.9, 0.1, 0.5, 0.5, 0.5};
  adaptive.Explain(x, &e);
  CHECK(e.prediction() == Approx(adaptive.PredictProbability(x)).margin(1e-12));
  REQUIRE_FALSE(e.contributions.empty());
  CHECK(e.contributions[0].feature == 0);
}

TEST_CASE("adaptive random forest: blob round trip and pooling merge", "[models][forest]") {
  AdaptiveRandomForestOptions o;
  o.dimension = 3;
  o.models = 4;
  auto forest = AdaptiveRandomForest::Create(o).value();
  std::mt19937_64 rng(21);
  double x[3];
  bool label = false;
  for (int i = 0; i < 3000; ++i) {
    Concept(rng, x, &label);
    (void)forest.Learn(x, label);
  }
  CHECK(forest.prequential_auc().Value() > 0.85);
  auto copy = AdaptiveRandomForest::Deserialize(forest.Serialize());
  INFO(copy.status().ToString());
  REQUIRE_OK(copy);
  CHECK(copy->Serialize() == forest.Serialize());
  for (int i = 0; i < 1000; ++i) {
    Concept(rng, x, &label);
    CHECK(copy->Learn(x, label) == forest.Learn(x, label));
  }
  CHECK(copy->Serialize() == forest.Serialize());

  o.random_seed = 7;
  auto other = AdaptiveRandomForest::Create(o).value();
  o.random_seed = 42;
  auto fresh = AdaptiveRandomForest::Create(o).value();
  for (int i = 0; i < 500; ++i) {
    Concept(rng, x, &label);
    (void)fresh.Learn(x, label);
  }
  const uint64_t before =
      forest.prequential_auc().positives() + forest.prequential_auc().negatives();
  REQUIRE_OK(forest.Merge(fresh));
  CHECK(forest.members() == 4);
  CHECK(forest.count() == 4500);
  CHECK(forest.prequential_auc().positives() + forest.prequential_auc().negatives() ==
        before + 500);
  // The pooled forest keeps its most accurate members: still good.
  int correct = 0;
  for (int i = 0; i < 1000; ++i) {
    Concept(rng, x, &label);
    correct += (forest.PredictProbability(x) >= 0.5) == label;
  }
  CHECK(correct > 850);
  CHECK_FALSE(forest.Merge(other).ok());  // a different seed: different options
  std::string blob = forest.Serialize();
  blob[blob.size() / 2] ^= 1;
  CHECK(AdaptiveRandomForest::Deserialize(blob).status().code() == StatusCode::kCorruption);
}

}  // namespace
}  // namespace crmstream::models
