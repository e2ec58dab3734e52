#include "crmstream/models/platt_calibrator.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "support/allocation_counter.h"
#include "support/require_ok.h"

namespace crmstream::models {
namespace {

double Sigmoid(double z) { return 1.0 / (1.0 + std::exp(-z)); }

struct Labelled {
  double raw;
  bool label;
};

// A model whose raw scores are mis-scaled: the true log-odds of a raw
// prediction sigmoid(u) are slope * u + intercept.
std::vector<Labelled> MisCalibrated(size_t n, double slope, double intercept, uint32_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> u(0.0, 1.5);
  std::uniform_real_distribution<double> coin(0.0, 1.0);
  std::vector<Labelled> out;
  for (size_t i = 0; i < n; ++i) {
    const double x = u(rng);
    out.push_back({Sigmoid(x), coin(rng) < Sigmoid(slope * x + intercept)});
  }
  return out;
}

// Independent reference: plain gradient descent on the same penalised
// log-likelihood (prior precision `lambda` around a = 1, b = 0), run to a
// tiny gradient. Inputs are the logits of the float-rounded raw scores, as
// the calibrator stores them.
std::pair<double, double> GradientDescentFit(const std::vector<Labelled>& data, double lambda) {
  std::vector<double> x;
  for (const auto& d : data) {
    // Clamped as documented: a raw 0 or 1 has a finite logit.
    const double p = std::clamp<double>(static_cast<float>(d.raw), 1e-7, 1 - 1e-7);
    x.push_back(std::log(p / (1 - p)));
  }
  double a = 1, b = 0;
  const double step = 1.0 / static_cast<double>(data.size());
  for (int it = 0; it < 200000; ++it) {
    double ga = lambda * (a - 1), gb = lambda * b;
    for (size_t i = 0; i < data.size(); ++i) {
      const double r = Sigmoid(a * x[i] + b) - (data[i].label ? 1.0 : 0.0);
      ga += r * x[i];
      gb += r;
    }
    a -= step * ga;
    b -= step * gb;
    if (std::fabs(ga) + std::fabs(gb) < 1e-9) break;
  }
  return {a, b};
}

// Independent reference: the AUC as the share of (positive, negative)
// pairs ranked right, ties counted half, over every pair.
double PairAuc(const std::vector<Labelled>& data) {
  double right = 0, pairs = 0;
  for (const auto& p : data) {
    if (!p.label) continue;
    for (const auto& n : data) {
      if (n.label) continue;
      const float sp = static_cast<float>(p.raw), sn = static_cast<float>(n.raw);
      right += sp > sn ? 1.0 : sp == sn ? 0.5 : 0.0;
      pairs += 1;
    }
  }
  return right / pairs;
}

PlattCalibratorOptions Options(int window, int refit_every) {
  PlattCalibratorOptions o;
  o.window = window;
  o.refit_every = refit_every;
  o.min_labels = 100;
  return o;
}

TEST_CASE("Platt calibrator: the fit equals a batch fit and makes probabilities mean what they say",
          "[models][calibration]") {
  const auto train = MisCalibrated(4096, 2.0, -1.0, 7);
  REQUIRE_OK_AND_ASSIGN(PlattCalibrator c, PlattCalibrator::Create(Options(4096, 4096)));
  CHECK_FALSE(c.fit().fitted);
  CHECK(c.Calibrate(0.3) == 0.3);  // the identity before the first fit
  for (const auto& d : train) c.Add(d.raw, d.label);
  REQUIRE(c.fit().fitted);

  const auto [a, b] = GradientDescentFit(train, c.options().prior_precision);
  CHECK(c.fit().slope == Approx(a).epsilon(1e-6));
  CHECK(c.fit().intercept == Approx(b).margin(1e-6));
  // The generating process, to sampling error.
  CHECK(c.fit().slope == Approx(2.0).margin(0.15));
  CHECK(c.fit().intercept == Approx(-1.0).margin(0.15));

  // Out of sample: among fresh predictions calibrated to about p, a share
  // of about p is positive (the raw scores are off by far more).
  const auto test = MisCalibrated(40000, 2.0, -1.0, 8);
  std::vector<double> predicted(5), raw(5), observed(5), count(5);
  for (const auto& d : test) {
    const double p = c.Calibrate(d.raw);
    const size_t bin = std::min<size_t>(4, static_cast<size_t>(p * 5));
    predicted[bin] += p;
    raw[bin] += d.raw;
    observed[bin] += d.label ? 1 : 0;
    count[bin] += 1;
  }
  double worst_raw_gap = 0;
  for (size_t k = 0; k < 5; ++k) {
    if (count[k] < 500) continue;
    CHECK(observed[k] / count[k] == Approx(predicted[k] / count[k]).margin(0.03));
    worst_raw_gap = std::max(worst_raw_gap, std::fabs(observed[k] - raw[k]) / count[k]);
  }
  CHECK(worst_raw_gap > 0.1);  // the correction was needed
  CHECK(std::fabs(c.fit().mean_error) < 0.01);
  CHECK(c.fit().expected_calibration_error < 0.03);
}

TEST_CASE("Platt calibrator: the order of scores is kept whatever the labels",
          "[models][calibration]") {
  // Labels anti-correlated with the scores: the fit would want a negative
  // slope; the calibrated order must still be the raw order.
  REQUIRE_OK_AND_ASSIGN(PlattCalibrator c, PlattCalibrator::Create(Options(1024, 1024)));
  const auto data = MisCalibrated(1024, -1.5, 0.0, 3);
  for (const auto& d : data) c.Add(d.raw, d.label);
  REQUIRE(c.fit().fitted);
  CHECK(c.fit().slope >= PlattCalibrator::kMinSlope);
  CHECK(c.fit().auc < 0.4);
  double previous = -1;
  for (double raw = 0.01; raw < 1.0; raw += 0.01) {
    const double p = c.Calibrate(raw);
    CHECK(p >= previous);
    previous = p;
  }
}

TEST_CASE("Platt calibrator: the window is the recent labels, its AUC exact with ties",
          "[models][calibration]") {
  REQUIRE_OK_AND_ASSIGN(PlattCalibrator c, PlattCalibrator::Create(Options(2000, 250)));
  // An old regime, then a new one that fills the window entirely.
  for (const auto& d : MisCalibrated(3000, 3.0, 1.0, 11)) c.Add(d.raw, d.label);
  auto recent = MisCalibrated(2000, 0.5, -1.0, 12);
  for (auto& d : recent) d.raw = std::round(d.raw * 50) / 50;  // many ties
  for (const auto& d : recent) c.Add(d.raw, d.label);
  CHECK(c.window_size() == 2000);
  CHECK(c.labels_seen() == 5000);
  const auto [a, b] = GradientDescentFit(recent, c.options().prior_precision);
  CHECK(c.fit().slope == Approx(a).epsilon(1e-6));
  CHECK(c.fit().intercept == Approx(b).margin(1e-6));
  uint64_t positives = 0;
  for (const auto& d : recent) positives += d.label ? 1 : 0;
  CHECK(c.fit().positives == positives);
  CHECK(c.fit().negatives == 2000 - positives);
  CHECK(c.fit().auc == Approx(PairAuc(recent)).epsilon(1e-12));
}

TEST_CASE("Platt calibrator: state round-trips exactly and refits to the same bits",
          "[models][calibration]") {
  const auto data = MisCalibrated(3000, 1.7, -0.4, 21);
  REQUIRE_OK_AND_ASSIGN(PlattCalibrator a, PlattCalibrator::Create(Options(1000, 64)));
  for (size_t i = 0; i < 1500; ++i) a.Add(data[i].raw, data[i].label);
  std::string blob;
  BinaryWriter w(&blob);
  a.AppendTo(w);
  BinaryReader r(blob);
  REQUIRE_OK_AND_ASSIGN(PlattCalibrator b, PlattCalibrator::ReadFrom(r, a.options()));
  CHECK(r.AtEnd());
  CHECK(b.fit() == a.fit());
  for (size_t i = 1500; i < data.size(); ++i) {
    a.Add(data[i].raw, data[i].label);
    b.Add(data[i].raw, data[i].label);
  }
  CHECK(b.fit() == a.fit());
  CHECK(b.Calibrate(0.37) == a.Calibrate(0.37));

  // Another window is named as such; every truncation is an error.
  BinaryReader other(blob);
  auto wrong = PlattCalibrator::ReadFrom(other, Options(2000, 64));
  REQUIRE_FALSE(wrong.ok());
  CHECK(wrong.status().code() == StatusCode::kInvalidArgument);
  for (size_t cut = 0; cut < blob.size(); cut += 7) {
    BinaryReader truncated(std::string_view(blob).substr(0, cut));
    CHECK_FALSE(PlattCalibrator::ReadFrom(truncated, a.options()).ok());
  }
}

TEST_CASE("Platt calibrator: options are validated, adding does not allocate",
          "[models][calibration]") {
  PlattCalibratorOptions o;
  o.window = 8;
  CHECK_FALSE(PlattCalibrator::Create(o).ok());
  o = {};
  o.refit_every = o.window + 1;
  CHECK_FALSE(PlattCalibrator::Create(o).ok());
  o = {};
  o.prior_precision = 0;
  CHECK_FALSE(PlattCalibrator::Create(o).ok());

  REQUIRE_OK_AND_ASSIGN(PlattCalibrator c, PlattCalibrator::Create(Options(512, 32)));
  const auto data = MisCalibrated(2000, 1.0, 0.0, 5);
  testing::StartCountingAllocations();
  for (const auto& d : data) c.Add(d.raw, d.label);
  CHECK(testing::StopCountingAllocations() == 0);
  CHECK(c.fit().fitted);
}

}  // namespace
}  // namespace crmstream::models
