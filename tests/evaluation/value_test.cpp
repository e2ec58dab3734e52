#include "crmstream/evaluation/value.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <map>
#include <sstream>
#include <vector>

#include "support/require_ok.h"
#include "support/test_support.h"

namespace crmstream::evaluation {
namespace {

// Ridge least squares by the normal equations and a Cholesky factorisation
// in long double, written here independently of the evaluation's Eigen solve.
std::vector<long double> Ridge(const std::vector<ValueRow>& rows, long double ridge) {
  const size_t d = rows.front().features.size();
  std::vector<long double> a(d * d, 0.0L), b(d, 0.0L);
  for (size_t i = 0; i < d; ++i) a[i * d + i] = ridge;
  for (const ValueRow& r : rows) {
    for (size_t i = 0; i < d; ++i) {
      b[i] += static_cast<long double>(r.features[i]) * r.actual;
      for (size_t j = 0; j < d; ++j) {
        a[i * d + j] += static_cast<long double>(r.features[i]) * r.features[j];
      }
    }
  }
  // A = L L'; solve L z = b, L' w = z.
  std::vector<long double> l(d * d, 0.0L);
  for (size_t i = 0; i < d; ++i) {
    for (size_t j = 0; j <= i; ++j) {
      long double s = a[i * d + j];
      for (size_t k = 0; k < j; ++k) s -= l[i * d + k] * l[j * d + k];
      l[i * d + j] = i == j ? std::sqrt(s) : s / l[j * d + j];
    }
  }
  std::vector<long double> z(d), w(d);
  for (size_t i = 0; i < d; ++i) {
    long double s = b[i];
    for (size_t k = 0; k < i; ++k) s -= l[i * d + k] * z[k];
    z[i] = s / l[i * d + i];
  }
  for (size_t i = d; i-- > 0;) {
    long double s = z[i];
    for (size_t k = i + 1; k < d; ++k) s -= l[k * d + i] * w[k];
    w[i] = s / l[i * d + i];
  }
  return w;
}

TEST_CASE(
    "customer value on Online Retail: online RLS and the engine's model beat the naive forecast by "
    "20%",
    "[evaluation][value][data]") {
  SKIP_WITHOUT_DATA(data_dir);
  auto data = LoadRetailTransactions(data_dir);
  REQUIRE_OK(data);
  auto report = EvaluateValue(*data);
  REQUIRE_OK(report);
  std::ostringstream printed;
  PrintValueReport(*report, printed);
  WARN(printed.str());
  REQUIRE(report->rows.size() > 10'000);

  // What really followed and the naive forecast, recomputed from the raw
  // lines: each customer's invoices (a run of lines with one number, at its
  // first line's time; a few invoices span two minutes), summed over the
  // windows.
  std::map<int64_t, std::vector<std::pair<int64_t, double>>> lines;
  for (size_t i = 0; i < data->lines.size(); ++i) {
    const RetailLine& l = data->lines[i];
    const bool continues = i > 0 && data->lines[i - 1].invoice == l.invoice;
    if (continues) {
      lines[l.customer].back().second += l.amount();
    } else {
      lines[l.customer].emplace_back(l.timestamp_ms, l.amount());
    }
  }
  const int64_t horizon = int64_t{30} * kMsPerDay;
  long double naive_sq = 0, model_sq = 0, model_abs = 0, engine_sq = 0, earlier_sq = 0;
  int64_t previous_t = INT64_MIN;
  for (const ValueRow& r : report->rows) {
    REQUIRE(r.timestamp_ms + horizon <= data->last_ms);  // only labels inside the data
    CHECK(r.timestamp_ms >= previous_t);                 // stream order
    previous_t = r.timestamp_ms;
    long double actual = 0, last30 = 0;
    for (const auto& [t, amount] : lines.at(r.customer)) {
      if (t > r.timestamp_ms && t <= r.timestamp_ms + horizon) actual += amount;
      if (t > r.timestamp_ms - horizon && t <= r.timestamp_ms) last30 += amount;
    }
    INFO("customer " << r.customer << " at " << r.timestamp_ms);
    REQUIRE(r.actual == Approx(static_cast<double>(actual)).margin(1e-6));
    REQUIRE(r.naive == Approx(static_cast<double>(last30)).margin(1e-6));
    // The model's 30-day spend input is that same sum (in thousands).
    REQUIRE(r.features[1] == Approx(static_cast<double>(last30) * 1e-3).margin(1e-9));
    CHECK(r.model >= 0.0);
    naive_sq += (r.naive - actual) * (r.naive - actual);
    model_sq += (r.model - actual) * (r.model - actual);
    model_abs += std::fabs(r.model - static_cast<double>(actual));
    CHECK(r.engine >= 0.0);
    engine_sq += (r.engine - actual) * (r.engine - actual);
    earlier_sq += (r.engine_log_only - actual) * (r.engine_log_only - actual);
  }
  const double n = static_cast<double>(report->rows.size());
  const double naive_rmse = std::sqrt(static_cast<double>(naive_sq) / n);
  const double model_rmse = std::sqrt(static_cast<double>(model_sq) / n);
  CHECK(report->naive.rmse == Approx(naive_rmse).epsilon(1e-9));
  CHECK(report->model.rmse == Approx(model_rmse).epsilon(1e-9));
  CHECK(report->model.mae == Approx(static_cast<double>(model_abs) / n).epsilon(1e-9));

  // The batch ridge on the same features, solved here.
  const std::vector<long double> w = Ridge(report->rows, 1.0L);
  long double batch_sq = 0;
  for (const ValueRow& r : report->rows) {
    long double p = 0;
    for (size_t i = 0; i < w.size(); ++i) p += w[i] * r.features[i];
    p = std::max(0.0L, p);
    batch_sq += (p - r.actual) * (p - r.actual);
  }
  const double batch_rmse = std::sqrt(static_cast<double>(batch_sq) / n);
  CHECK(report->batch_ridge.rmse == Approx(batch_rmse).epsilon(1e-6));

  // The target, and how close the one-pass model gets to the hindsight fit
  // (measured at the time of writing: naive 3332, model 2440 (-26.8%),
  // batch in sample 2311).
  CHECK(model_rmse <= 0.8 * naive_rmse);
  CHECK(model_rmse <= 1.1 * batch_rmse);
  CHECK(report->model.mae < report->naive.mae);

  // The engine's value model (its features and spend terms), scored here
  // against the labels and the naive forecast recomputed above: the target
  // too, where the log-scale features alone fall short (measured at the time
  // of writing: 2601 (-22.3%) and 3133 (-6.4%)).
  const double engine_rmse = std::sqrt(static_cast<double>(engine_sq) / n);
  const double earlier_rmse = std::sqrt(static_cast<double>(earlier_sq) / n);
  CHECK(report->engine.rmse == Approx(engine_rmse).epsilon(1e-9));
  CHECK(engine_rmse <= 0.8 * naive_rmse);
  CHECK(engine_rmse < earlier_rmse);
}

}  // namespace
}  // namespace crmstream::evaluation
