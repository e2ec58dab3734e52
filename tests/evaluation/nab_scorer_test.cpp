#include "crmstream/evaluation/nab_scorer.h"

#include <catch2/catch.hpp>
#include <cmath>
#include <vector>

#include "support/require_ok.h"

namespace crmstream::evaluation {
namespace {

TEST_CASE("NAB scaled sigmoid and probationary length follow the published rule", "[evaluation]") {
  // 2 * sigmoid(5) - 1 = 0.98661 (the paper's value at the left window edge).
  CHECK(NabScaledSigmoid(-1.0) == Approx(0.986614).margin(1e-6));
  CHECK(NabScaledSigmoid(-0.5) == Approx(0.848284).margin(1e-6));
  CHECK(NabScaledSigmoid(0.0) == 0.0);
  CHECK(NabScaledSigmoid(1.0) == Approx(-0.986614).margin(1e-6));
  CHECK(NabScaledSigmoid(3.0) == -1.0);
  CHECK(NabScaledSigmoid(10.0) == -1.0);
  CHECK(NabProbationaryLength(1000) == 150);
  CHECK(NabProbationaryLength(4032) == 604);   // floor(604.8)
  CHECK(NabProbationaryLength(22695) == 750);  // capped at 0.15 * 5000
}

TEST_CASE("NAB scorer on a tiny file matches a hand computation", "[evaluation]") {
  // 20 rows: probation floor(0.15 * 20) = 3 rows; one window, rows 8..11
  // (width 4).
  std::vector<double> scores(20, 0.0);
  scores[9] = 0.9;   // detection in the window
  scores[14] = 0.8;  // false positive 3 rows after the window's right edge
  scores[5] = 0.7;   // false positive before any window
  scores[1] = 1.0;   // probationary: never scored
  const std::vector<NabWindow> windows = {{8, 11}};
  NabScorer scorer;
  REQUIRE_OK(scorer.AddFile(scores, windows));
  const auto results = scorer.Score();
  REQUIRE(results.size() == 3);

  // Row 9: position -(11 - 9 + 1) / 4 = -0.75; S(-0.75) = 2/(1+e^-3.75) - 1
  //   = 0.954047; weighted by 1 / S(-1) = 1 / 0.986614 -> 0.966991.
  // Row 14: (14 - 11) / (4 - 1) = 1 -> S(1) = -0.986614.
  // Row 5: before any window -> -1.
  const double tp = 0.966991;
  // standard: thresholds 0.9 -> tp; 0.8 -> tp - 0.11 * 0.986614; 0.7 -> ... -0.11.
  const NabProfileScore& standard = results[0];
  CHECK(standard.profile == "standard");
  CHECK(standard.threshold == 0.9);
  CHECK(standard.raw == Approx(tp).margin(1e-6));
  CHECK(standard.null_raw == -1.0);
  CHECK(standard.perfect_raw == 1.0);
  CHECK(standard.normalized == Approx(100.0 * (tp + 1.0) / 2.0).margin(1e-4));
  CHECK(standard.true_positive_windows == 1);
  CHECK(standard.false_positive_rows == 0);
  // low FN: null is -2 (fn weight 2), same best threshold.
  const NabProfileScore& low_fn = results[2];
  CHECK(low_fn.null_raw == -2.0);
  CHECK(low_fn.normalized == Approx(100.0 * (tp + 2.0) / 3.0).margin(1e-4));

  // Lowering the threshold to 0.8 costs 0.11 * 0.986614: check it through a
  // file where the false positive comes first.
  std::vector<double> fp_first(20, 0.0);
  fp_first[14] = 0.95;
  fp_first[9] = 0.9;
  NabScorer second;
  REQUIRE_OK(second.AddFile(fp_first, windows));
  const NabProfileScore s = second.Score()[0];
  CHECK(s.threshold == 0.9);
  CHECK(s.raw == Approx(tp - 0.11 * 0.986614).margin(1e-6));
  CHECK(s.false_positive_rows == 1);
}

TEST_CASE("NAB scorer at a fixed threshold counts every row at or above it", "[evaluation]") {
  // The tiny file of the hand computation: detection 0.9 in the window,
  // false positives 0.8 (3 rows after it) and 0.7 (before any window).
  std::vector<double> scores(20, 0.0);
  scores[9] = 0.9;
  scores[14] = 0.8;
  scores[5] = 0.7;
  NabScorer scorer;
  REQUIRE_OK(scorer.AddFile(scores, std::vector<NabWindow>{{8, 11}}));
  const double tp = 0.966991;
  auto at = scorer.ScoreAt(std::vector<double>{0.7, 0.85, 1.1});
  REQUIRE_OK(at);
  REQUIRE(at->size() == 3);
  // standard at 0.7: tp, the row after the window (S(1)) and the one before
  // any window (-1), fp weight 0.11.
  CHECK((*at)[0].threshold == 0.7);
  CHECK((*at)[0].raw == Approx(tp - 0.11 * 0.986614 - 0.11).margin(1e-6));
  CHECK((*at)[0].false_positive_rows == 2);
  // low FP at 0.85: the detection alone.
  CHECK((*at)[1].raw == Approx(tp).margin(1e-6));
  CHECK((*at)[1].false_positive_rows == 0);
  // low FN at 1.1: never fires, the null score.
  CHECK((*at)[2].raw == -2.0);
  CHECK((*at)[2].normalized == Approx(0.0).margin(1e-12));
  CHECK((*at)[2].false_negative_windows == 1);
  // One threshold per profile, finite.
  CHECK(scorer.ScoreAt(std::vector<double>{0.5}).status().code() == StatusCode::kInvalidArgument);
  CHECK(scorer.ScoreAt(std::vector<double>{0.5, std::nan(""), 0.5}).status().code() ==
        StatusCode::kInvalidArgument);
}

TEST_CASE("NAB scorer: never firing scores 0, firing at every window start scores 100",
          "[evaluation]") {
  NabScorer never, perfect;
  const size_t n = 2000;
  const std::vector<NabWindow> windows = {{400, 480}, {900, 1000}, {1500, 1510}};
  std::vector<double> zeros(n, 0.0), ideal(n, 0.0);
  for (const NabWindow& w : windows) ideal[w.first_row] = 1.0;
  for (int file = 0; file < 3; ++file) {
    REQUIRE_OK(never.AddFile(zeros, windows));
    REQUIRE_OK(perfect.AddFile(ideal, windows));
  }
  for (const NabProfileScore& p : never.Score()) CHECK(p.normalized == Approx(0.0).margin(1e-12));
  for (const NabProfileScore& p : perfect.Score()) {
    CHECK(p.normalized == Approx(100.0).epsilon(1e-12));
  }
}

TEST_CASE("NAB scorer rejects bad windows and non-finite scores", "[evaluation]") {
  NabScorer scorer;
  const std::vector<double> scores(10, 0.0);
  const std::vector<NabWindow> overlapping = {{2, 5}, {5, 7}};
  const std::vector<NabWindow> outside = {{8, 12}};
  CHECK(scorer.AddFile(scores, overlapping).code() == StatusCode::kInvalidArgument);
  CHECK(scorer.AddFile(scores, outside).code() == StatusCode::kInvalidArgument);
  std::vector<double> nan_scores(10, 0.0);
  nan_scores[3] = std::nan("");
  CHECK(scorer.AddFile(nan_scores, {}).code() == StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace crmstream::evaluation
