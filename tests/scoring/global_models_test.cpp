// Scoring with global models (CustomerModels::UseGlobalModels): a partition
// handed the merge of three partitions' statistics scores its customers
// with the merged models, computed here directly from the merged statistics,
// while it keeps learning its own; handed nothing, it scores with its own
// models again.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <limits>
#include <numeric>
#include <string>
#include <vector>

#include "crmstream/scoring/model_statistics.h"
#include "crmstream/scoring/value_spend_terms.h"
#include "scoring_test_support.h"
#include "support/require_ok.h"

namespace crmstream::scoring {
namespace {

using testing::EventSource;
using testing::Partition;

// What the churn model and the spend regression give for a customer's
// features as of its latest event, from the standardisations and models
// given (the merged ones or the partition's own), calibrated by the
// partition's own calibration.
struct Expected {
  double churn_probability = 0.0;
  double predicted_value = 0.0;
};

Expected ScoreDirectly(const features::CustomerFeatures& f, const ChurnValueModel& own,
                       const models::Standardizer& features,
                       const models::BayesianLogisticRegression& churn,
                       const models::Standardizer& spend_features,
                       const models::RecursiveLeastSquares& value,
                       const features::FeatureSpec& spec) {
  features::FeatureVector snapshot;
  f.Snapshot(f.as_of_ms(), &snapshot);
  const size_t d = snapshot.size();
  std::vector<double> z(d);
  features.Transform(snapshot, z);
  Expected out;
  out.churn_probability = own.calibrator().Calibrate(churn.PredictProbability(z));
  const ValueSpendTerms terms(spec);
  std::vector<double> raw(terms.size());
  terms.Compute(snapshot, raw);
  std::vector<double> x(z);
  x.resize(d + terms.size() + 1);
  spend_features.Transform(raw, std::span<double>(x).subspan(d, terms.size()));
  x.back() = 1.0;
  out.predicted_value = std::max(0.0, value.Predict(x));
  return out;
}

// Processes the source's next event in `p` as the processor does (then a
// refresh) and returns its customer with its scores; nullopt for a closed
// account, which keeps its last score.
struct Scored {
  features::CustomerFeatures f;
  CustomerScores scores;
};
std::optional<Scored> ProcessNext(Partition& p, EventSource& source) {
  const ingest::Event& e = source.Next();
  p.Process(e);
  p.RefreshPending();
  const features::CustomerFeatures f = p.Customer(e.customer_id);
  const std::optional<CustomerScores> scores = p.models.Scores(f);
  REQUIRE(scores);
  if (scores->closed) return std::nullopt;
  return Scored{f, *scores};
}

bool Near(double got, double want) {
  // Scores are kept as floats.
  return std::abs(got - want) <= 1e-5 * std::max(1.0, std::abs(want));
}

TEST_CASE("A partition scores with the merged models it is handed and learns its own",
          "[scoring][model_sync]") {
  std::vector<std::unique_ptr<Partition>> parts;
  std::vector<std::unique_ptr<EventSource>> sources;
  ModelStatistics merged;
  for (uint64_t seed : {5, 6, 7}) {
    generator::WorldOptions wo;
    wo.seed = seed;
    wo.customers = 300;
    sources.push_back(std::make_unique<EventSource>(wo));
    parts.push_back(std::make_unique<Partition>());
    // Until labels have matured and trained the churn model (a horizon of
    // simulated days and more).
    Partition& part = *parts.back();
    for (int n = 0; n < 200'000 && (n < 20'000 || part.models.churn().churn_model().count() < 500);
         ++n) {
      part.Process(sources.back()->Next());
    }
    part.RefreshPending();
    std::string blob;
    ModelStatistics::Collect(part.models, part.minutes).Encode(&blob);
    REQUIRE_OK_AND_ASSIGN(ModelStatistics statistics, ModelStatistics::Decode(blob));
    REQUIRE_OK(merged.Merge(statistics));
  }
  REQUIRE(merged.parts == 3);
  REQUIRE(merged.churn);
  REQUIRE(merged.churn->count() > 0);
  REQUIRE(merged.segments.k == parts[0]->models.segmenter().options().k);

  Partition& p = *parts[0];
  EventSource& source = *sources[0];
  const ChurnValueModel& churn = p.models.churn();
  const features::FeatureSpec& spec = p.store->spec();
  REQUIRE(p.models.global_model_parts() == 0);
  REQUIRE_OK(p.models.UseGlobalModels(&merged));
  CHECK(p.models.global_model_parts() == 3);
  CHECK(churn.scores_with_global());

  // What the partition publishes stays its own: its own examples only.
  {
    const ModelStatistics own = ModelStatistics::Collect(p.models, p.minutes);
    CHECK(own.parts == 1);
    CHECK(own.churn->count() == churn.churn_model().count());
    CHECK(own.churn->count() < merged.churn->count());
    CHECK(own.value->count() < merged.value->count());
  }

  // The merged centre each own centre should pair with: the permutation
  // minimising the summed squared log1p distances, over every permutation.
  const CustomerSegmenter& segmenter = p.models.segmenter();
  const int k = merged.segments.k;
  constexpr int d = SegmentCentres::kDim;
  std::vector<int> best_perm;
  {
    std::vector<double> own(static_cast<size_t>(k * d));
    for (int c = 0; c < k; ++c) {
      segmenter.CentreLog1p(c, std::span<double>(own).subspan(static_cast<size_t>(c * d), d));
    }
    auto cost = [&](const std::vector<int>& perm) {
      double sum = 0.0;
      for (int c = 0; c < k; ++c) {
        for (int j = 0; j < d; ++j) {
          sum +=
              std::pow(own[static_cast<size_t>(c * d + j)] -
                           merged.segments
                               .centres[static_cast<size_t>(perm[static_cast<size_t>(c)] * d + j)],
                       2);
        }
      }
      return sum;
    };
    std::vector<int> perm(static_cast<size_t>(k));
    std::iota(perm.begin(), perm.end(), 0);
    double best = std::numeric_limits<double>::infinity();
    do {
      if (const double c = cost(perm); c < best) {
        best = c;
        best_perm = perm;
      }
    } while (std::next_permutation(perm.begin(), perm.end()));
  }

  // One event at a time, each customer's scores against the merged models
  // (the calibration is the partition's own, as of the scoring).
  const uint64_t own_examples_before = churn.churn_model().count();
  int compared = 0;
  double largest_difference_from_own = 0.0;
  for (int n = 0; n < 3000; ++n) {
    const std::optional<Scored> scored = ProcessNext(p, source);
    if (!scored) continue;
    const features::CustomerFeatures& f = scored->f;
    const CustomerScores* scores = &scored->scores;
    const Expected global = ScoreDirectly(f, churn, *merged.churn_features, *merged.churn,
                                          *merged.spend_features, *merged.value, spec);
    CHECK(Near(scores->churn_probability, global.churn_probability));
    CHECK(Near(scores->predicted_value, global.predicted_value));
    // (Approximate where the event took an example: the own standardisation
    // learnt it after scoring.)
    const Expected own = ScoreDirectly(f, churn, churn.standardizer(), churn.churn_model(),
                                       churn.spend_standardizer(), churn.value_model(), spec);
    largest_difference_from_own = std::max(
        largest_difference_from_own, std::abs(global.churn_probability - own.churn_probability));
    ++compared;
  }
  CHECK(compared > 1000);
  // The merged model is another model: the check above could not pass by
  // scoring with the own one.
  CHECK(largest_difference_from_own > 1e-3);
  // It kept learning its own statistics meanwhile.
  CHECK(churn.churn_model().count() > own_examples_before);

  SECTION(
      "segments are assigned with the merged centres, numbered as the own ones they pair with") {
    REQUIRE(segmenter.uses_global_centres());
    std::vector<double> centre(d);
    for (int c = 0; c < k; ++c) {
      segmenter.Centre(c, centre);
      for (int j = 0; j < d; ++j) {
        const double want = std::max(0.0, std::expm1(merged.segments.centres[static_cast<size_t>(
                                              best_perm[static_cast<size_t>(c)] * d + j)]));
        CHECK(std::abs(centre[static_cast<size_t>(j)] - want) <= 1e-9 * std::max(1.0, want));
      }
    }
  }

  SECTION("handed nothing, it scores with its own models again") {
    REQUIRE_OK(p.models.UseGlobalModels(nullptr));
    CHECK(p.models.global_model_parts() == 0);
    CHECK(!churn.scores_with_global());
    CHECK(!segmenter.uses_global_centres());
    int own_compared = 0;
    for (int n = 0; n < 1000; ++n) {
      const std::optional<Scored> scored = ProcessNext(p, source);
      if (!scored) continue;
      const features::CustomerFeatures& f = scored->f;
      const CustomerScores* scores = &scored->scores;
      // An event that took an example was scored before the own
      // standardisation learnt it: judged by the label, not here.
      if (churn.PendingSnapshotMs(f.slot()) == f.as_of_ms()) continue;
      const Expected own = ScoreDirectly(f, churn, churn.standardizer(), churn.churn_model(),
                                         churn.spend_standardizer(), churn.value_model(), spec);
      CHECK(Near(scores->churn_probability, own.churn_probability));
      CHECK(Near(scores->predicted_value, own.predicted_value));
      ++own_compared;
    }
    CHECK(own_compared > 300);
  }

  SECTION("merged models of another shape are refused and change nothing") {
    ModelStatistics other = merged;
    REQUIRE_OK_AND_ASSIGN(models::Standardizer narrower, models::Standardizer::Create(3));
    other.churn_features.emplace(std::move(narrower));
    CHECK(p.models.UseGlobalModels(&other).code() == StatusCode::kInvalidArgument);
    CHECK(p.models.global_model_parts() == 3);
    CHECK(churn.scores_with_global());
  }
}

TEST_CASE("A tree churn model keeps scoring alone beside merged spend models",
          "[scoring][model_sync]") {
  // Twins fed the same stream, one handed global models (its own statistics
  // merged with a copy of them): the tree's churn probabilities stay those
  // of the twin scoring alone, the predicted spend is the merged
  // regression's.
  CustomerModelsOptions options = testing::AlertingOptions();
  options.churn.churn_model = ChurnModelKind::kModelTree;
  Partition with_global(options);
  Partition alone(options);
  generator::WorldOptions wo;
  wo.seed = 9;
  wo.customers = 200;
  EventSource a(wo), b(wo);
  for (int n = 0; n < 40'000; ++n) {
    with_global.Process(a.Next());
    alone.Process(b.Next());
  }
  with_global.RefreshPending();
  alone.RefreshPending();
  ModelStatistics merged = ModelStatistics::Collect(with_global.models, with_global.minutes);
  REQUIRE_OK(merged.Merge(ModelStatistics(merged)));
  REQUIRE_OK(with_global.models.UseGlobalModels(&merged));
  const ChurnValueModel& churn = with_global.models.churn();
  REQUIRE(churn.scores_with_global());
  int compared = 0;
  double largest_value_difference = 0.0;
  for (int n = 0; n < 2000; ++n) {
    const std::optional<Scored> scored = ProcessNext(with_global, a);
    const std::optional<Scored> twin = ProcessNext(alone, b);
    REQUIRE(scored.has_value() == twin.has_value());
    if (!scored) continue;
    CHECK(scored->scores.churn_probability == twin->scores.churn_probability);
    const Expected global =
        ScoreDirectly(scored->f, churn, *merged.churn_features, churn.churn_model(),
                      *merged.spend_features, *merged.value, with_global.store->spec());
    CHECK(Near(scored->scores.predicted_value, global.predicted_value));
    largest_value_difference =
        std::max(largest_value_difference,
                 std::abs(scored->scores.predicted_value - twin->scores.predicted_value));
    ++compared;
  }
  CHECK(compared > 1000);
  CHECK(largest_value_difference > 1e-3);
}

}  // namespace
}  // namespace crmstream::scoring
