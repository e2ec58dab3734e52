#include "crmstream/evaluation/telco.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <fstream>
#include <iomanip>
#include <sstream>
#include <utility>
#include <vector>

#include "support/require_ok.h"
#include "support/test_support.h"

namespace crmstream::evaluation {
namespace {

// Exact ROC-AUC by the rank (Mann-Whitney) formula, ties at mean rank.
double RankAuc(const std::vector<double>& scores, const std::vector<uint8_t>& labels) {
  std::vector<std::pair<double, bool>> s;
  for (size_t i = 0; i < scores.size(); ++i) s.emplace_back(scores[i], labels[i] != 0);
  std::sort(s.begin(), s.end());
  long double rank_pos = 0;
  long double pos = 0, neg = 0;
  for (size_t i = 0; i < s.size();) {
    size_t j = i;
    while (j < s.size() && s[j].first == s[i].first) ++j;
    for (size_t k = i; k < j; ++k) {
      if (s[k].second) {
        rank_pos += (i + 1 + j) / 2.0L;
        pos += 1;
      } else {
        neg += 1;
      }
    }
    i = j;
  }
  return static_cast<double>((rank_pos - pos * (pos + 1) / 2) / (pos * neg));
}

TEST_CASE("Telco churn: one-pass prequential AUC reaches batch logistic regression",
          "[evaluation]") {
  SKIP_WITHOUT_DATA(data);
  auto report = EvaluateTelco(data);
  REQUIRE_OK(report);
  std::ostringstream printed;
  PrintTelcoReport(*report, printed);
  INFO(printed.str());

  // The data set's documented shape.
  CHECK(report->rows == 7043);
  CHECK(report->positives == 1869);
  CHECK(report->missing_total_charges == 11);
  REQUIRE(report->scores.size() == 7043);
  REQUIRE(report->labels.size() == 7043);

  // StreamingAuc (histogram, 2^14 bins) agrees with the exact rank formula.
  const double exact = RankAuc(report->scores, report->labels);
  CHECK(report->auc == Approx(exact).margin(1e-4));
  // The target: the published batch 5-fold CV figure, reached prequentially
  // (measured 0.8459 at the time of writing).
  CHECK(exact >= kTelcoBatchLogisticAuc);
  CHECK(report->ftrl_auc > 0.83);  // above scikit-learn's tuned one-pass SGD

  // Log loss recomputed from the recorded pairs, and better than the base rate.
  long double sum = 0;
  for (size_t i = 0; i < report->scores.size(); ++i) {
    const double p = std::clamp(report->scores[i], 1e-15, 1.0 - 1e-15);
    sum -= report->labels[i] ? std::log(p) : std::log1p(-p);
  }
  CHECK(report->log_loss == Approx(static_cast<double>(sum / 7043)).epsilon(1e-12));
  CHECK(report->log_loss < report->base_rate_log_loss - 0.1);
  // The printed report shows the AUC this run measured (what a user reads),
  // not only the published figure beside it.
  std::ostringstream measured;
  measured << std::fixed << std::setprecision(4) << "prequential ROC-AUC  " << report->auc;
  CHECK_THAT(printed.str(), Catch::Contains(measured.str()));
}

TEST_CASE("Telco churn: online trees and the ensemble, one pass", "[evaluation]") {
  SKIP_WITHOUT_DATA(data);
  auto report = EvaluateTelco(data);
  REQUIRE_OK(report);
  std::ostringstream printed;
  PrintTelcoReport(*report, printed);
  WARN(printed.str());
  REQUIRE(report->forest_scores.size() == 7043);
  REQUIRE(report->ensemble_scores.size() == 7043);
  // The streaming histograms agree with the exact rank formula.
  CHECK(report->forest_auc == Approx(RankAuc(report->forest_scores, report->labels)).margin(1e-4));
  const double ensemble = RankAuc(report->ensemble_scores, report->labels);
  CHECK(report->ensemble_auc == Approx(ensemble).margin(1e-4));
  // Measured at the time of writing: VFDT 0.785, model tree 0.845, forest
  // 0.829, ensemble 0.845; the product's target of 0.85 is not reached (see
  // the README). What is asserted: the forest beats a single VFDT tree and
  // scikit-learn's default one-pass SGD; the model tree and the ensemble
  // reach scikit-learn's tuned one-pass SGD; nothing does worse than chance.
  CHECK(report->vfdt_auc > 0.75);
  CHECK(report->forest_auc > report->vfdt_auc + 0.02);
  CHECK(report->forest_auc > kTelcoSgdOnePassAucDefault + 0.1);
  CHECK(report->model_tree_auc > kTelcoSgdOnePassAucTuned);
  CHECK(ensemble > kTelcoSgdOnePassAucTuned);

  // The forest of model trees (measured 0.842) beats the forest of naive
  // Bayes trees (0.829) on the same rows; the ensemble weighted by past log
  // loss (0.8458) reaches the published batch figure, which the unweighted
  // one does not. Neither reaches the product's 0.85 (README).
  REQUIRE(report->model_forest_scores.size() == 7043);
  REQUIRE(report->weighted_ensemble_scores.size() == 7043);
  const double model_forest = RankAuc(report->model_forest_scores, report->labels);
  const double weighted = RankAuc(report->weighted_ensemble_scores, report->labels);
  CHECK(report->model_forest_auc == Approx(model_forest).margin(1e-4));
  CHECK(report->weighted_ensemble_auc == Approx(weighted).margin(1e-4));
  CHECK(model_forest > RankAuc(report->forest_scores, report->labels) + 0.005);
  CHECK(weighted >= kTelcoBatchLogisticAuc);
  // The Bayes mixture's log loss is at most its best member's plus ln 3 over
  // the rows; the logistic model is one member.
  long double mixture_loss = 0, logistic_loss = 0;
  for (size_t i = 0; i < report->labels.size(); ++i) {
    const double q = std::clamp(report->weighted_ensemble_scores[i], 1e-15, 1.0 - 1e-15);
    const double p = std::clamp(report->scores[i], 1e-15, 1.0 - 1e-15);
    mixture_loss -= report->labels[i] ? std::log(q) : std::log1p(-q);
    logistic_loss -= report->labels[i] ? std::log(p) : std::log1p(-p);
  }
  CHECK(static_cast<double>(mixture_loss) <= static_cast<double>(logistic_loss) + std::log(3.0));
}

TEST_CASE("Telco evaluation reports a missing or malformed file", "[evaluation]") {
  testing::ScratchDir dir;
  CHECK(EvaluateTelco(dir.path()).status().code() == StatusCode::kIOError);
  {
    std::ofstream out(dir.path() / "WA_Fn-UseC_-Telco-Customer-Churn.csv");
    out << "customerID,gender\nA,Male\n";
  }
  CHECK(EvaluateTelco(dir.path()).status().code() == StatusCode::kCorruption);
}

}  // namespace
}  // namespace crmstream::evaluation
