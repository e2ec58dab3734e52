#include "crmstream/models/recursive_least_squares.h"

#include <Eigen/Dense>
#include <catch2/catch.hpp>
#include <cmath>
#include <random>
#include <vector>

#include "crmstream/common/binary_io.h"
#include "support/require_ok.h"

namespace crmstream::models {
namespace {

using MatrixL = Eigen::Matrix<long double, Eigen::Dynamic, Eigen::Dynamic>;
using VectorL = Eigen::Matrix<long double, Eigen::Dynamic, 1>;

// Rows with an intercept, an offset column, a nearly collinear pair and a
// near linear combination: cond(X) is about 2e5 at d = 50, so cond(X'X) is
// about 3e10 and the textbook P-matrix recursion (or normal equations in
// double) loses most of the digits this test demands. For scale: Householder
// QR of the stacked batch problem in double lands ~4e-12 from the reference.
struct Dataset {
  int d;
  std::vector<double> x;  // row-major
  std::vector<double> y;
  std::span<const double> Row(size_t i) const {
    return std::span<const double>(x).subspan(i * d, static_cast<size_t>(d));
  }
};

Dataset MakeDataset(int d, size_t n, uint64_t seed) {
  REQUIRE(d >= 7);  // the columns below need seven slots
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> z(0.0, 1.0);
  Dataset data{d, {}, {}};
  data.x.resize(n * d);
  data.y.resize(n);
  std::vector<double> w_true(d);
  for (int j = 0; j < d; ++j) w_true[j] = z(rng);
  for (size_t i = 0; i < n; ++i) {
    double* row = &data.x[i * d];
    row[0] = 1.0;
    for (int j = 1; j < d; ++j) row[j] = z(rng);
    row[1] = 100.0 + z(rng);                       // large offset vs the intercept
    row[3] = row[2] + 1e-3 * z(rng);               // nearly collinear pair
    row[d - 1] = row[4] - row[5] + 1e-3 * z(rng);  // nearly a linear combination
    double t = 0.0;
    for (int j = 0; j < d; ++j) t += w_true[j] * row[j];
    data.y[i] = t + 0.1 * z(rng);
  }
  return data;
}

// Independent reference: weighted ridge normal equations accumulated and
// solved (LDLT) in long double.
std::vector<double> BatchRidge(const Dataset& data, size_t begin, size_t end, double ridge,
                               long double lambda = 1.0L) {
  const int d = data.d;
  MatrixL gram = MatrixL::Zero(d, d);
  VectorL xty = VectorL::Zero(d);
  long double prior = ridge;
  for (size_t i = begin; i < end; ++i) {
    gram *= lambda;
    xty *= lambda;
    prior *= lambda;
    const double* row = &data.x[i * d];
    for (int a = 0; a < d; ++a) {
      const long double xa = row[a];
      xty(a) += xa * data.y[i];
      for (int b = a; b < d; ++b) gram(a, b) += xa * row[b];
    }
  }
  for (int a = 0; a < d; ++a) {
    gram(a, a) += prior;
    for (int b = 0; b < a; ++b) gram(a, b) = gram(b, a);
  }
  VectorL w = gram.ldlt().solve(xty);
  std::vector<double> out(d);
  for (int a = 0; a < d; ++a) out[a] = static_cast<double>(w(a));
  return out;
}

double RelativeError(std::span<const double> got, const std::vector<double>& want) {
  long double num = 0, den = 0;
  for (size_t j = 0; j < want.size(); ++j) {
    num +=
        (static_cast<long double>(got[j]) - want[j]) * (static_cast<long double>(got[j]) - want[j]);
    den += static_cast<long double>(want[j]) * want[j];
  }
  return static_cast<double>(std::sqrt(num / den));
}

RecursiveLeastSquares MakeModel(int d, double lambda = 1.0, double ridge = 1e-3) {
  auto m =
      RecursiveLeastSquares::Create({.dimension = d, .forgetting_factor = lambda, .ridge = ridge});
  REQUIRE_OK(m);
  return std::move(m).value();
}

TEST_CASE("RLS equals batch ridge on 100k collinear rows", "[models]") {
  for (int d : {16, 50}) {
    const size_t n = 100000;
    Dataset data = MakeDataset(d, n, 42 + d);
    RecursiveLeastSquares rls = MakeModel(d);
    for (size_t i = 0; i < n; ++i) (void)rls.Update(data.Row(i), data.y[i]);
    const std::vector<double> reference = BatchRidge(data, 0, n, 1e-3);
    INFO("d = " << d);
    CHECK(RelativeError(rls.Coefficients(), reference) < 1e-10);
    CHECK(rls.count() == n);
  }
}

TEST_CASE("RLS with forgetting equals exponentially weighted batch ridge", "[models]") {
  const int d = 8;
  const size_t n = 4000;
  Dataset data = MakeDataset(d, n, 9);
  for (double lambda : {0.999, 0.99}) {
    RecursiveLeastSquares rls = MakeModel(d, lambda, 0.5);
    for (size_t i = 0; i < n; ++i) (void)rls.Update(data.Row(i), data.y[i]);
    const auto reference = BatchRidge(data, 0, n, 0.5, static_cast<long double>(lambda));
    INFO("lambda = " << lambda);
    CHECK(RelativeError(rls.Coefficients(), reference) < 1e-10);
  }
}

TEST_CASE("RLS a-priori predictions equal ridge fitted on the past rows", "[models]") {
  const int d = 7;
  const size_t n = 150;
  Dataset data = MakeDataset(d, n, 5);
  RecursiveLeastSquares rls = MakeModel(d, 1.0, 2.0);
  long double sq = 0;
  for (size_t i = 0; i < n; ++i) {
    const auto past = BatchRidge(data, 0, i, 2.0);
    double expected = 0;
    for (int j = 0; j < d; ++j) expected += past[j] * data.Row(i)[j];
    const double got = rls.Update(data.Row(i), data.y[i]);
    REQUIRE(got == Approx(expected).epsilon(1e-8).margin(1e-8));
    sq += (static_cast<long double>(expected) - data.y[i]) * (expected - data.y[i]);
  }
  CHECK(rls.prequential_rmse().Value() ==
        Approx(static_cast<double>(std::sqrt(sq / n))).epsilon(1e-9));
  CHECK(rls.Predict(data.Row(0)) ==
        Approx(std::inner_product(rls.Coefficients().begin(), rls.Coefficients().end(),
                                  data.Row(0).begin(), 0.0)));
}

TEST_CASE("RLS merge of disjoint shards equals one model over all rows", "[models]") {
  for (int d : {16, 50}) {
    const size_t n = 30000;
    Dataset data = MakeDataset(d, n, 77 + d);
    RecursiveLeastSquares a = MakeModel(d), b = MakeModel(d), c = MakeModel(d), all = MakeModel(d);
    for (size_t i = 0; i < n; ++i) {
      RecursiveLeastSquares& shard = i < 5000 ? a : (i % 2 == 0 ? b : c);
      (void)shard.Update(data.Row(i), data.y[i]);
      (void)all.Update(data.Row(i), data.y[i]);
    }
    REQUIRE_OK(a.Merge(b));
    REQUIRE_OK(a.Merge(c));
    const auto reference = BatchRidge(data, 0, n, 1e-3);
    INFO("d = " << d);
    CHECK(RelativeError(a.Coefficients(), reference) < 1e-10);
    CHECK(RelativeError(a.Coefficients(), std::vector<double>(all.Coefficients().begin(),
                                                              all.Coefficients().end())) < 1e-10);
    CHECK(a.count() == n);
    CHECK(a.MinimisedObjective() == Approx(all.MinimisedObjective()).epsilon(1e-8));
  }
  RecursiveLeastSquares other = MakeModel(4);
  RecursiveLeastSquares mine = MakeModel(5);
  CHECK(mine.Merge(other).code() == StatusCode::kInvalidArgument);
}

TEST_CASE("RLS rejects bad options and skips non-finite rows", "[models]") {
  CHECK(RecursiveLeastSquares::Create({.dimension = 0}).status().code() ==
        StatusCode::kInvalidArgument);
  CHECK(RecursiveLeastSquares::Create({.dimension = 3, .forgetting_factor = 1.5}).status().code() ==
        StatusCode::kInvalidArgument);
  CHECK(RecursiveLeastSquares::Create({.dimension = 3, .ridge = 0.0}).status().code() ==
        StatusCode::kInvalidArgument);
  RecursiveLeastSquares rls = MakeModel(2);
  const double good[] = {1.0, 2.0};
  const double bad[] = {1.0, std::nan("")};
  (void)rls.Update(good, 3.0);
  CHECK(std::isnan(rls.Update(bad, 1.0)));
  CHECK(rls.count() == 1);
  CHECK(std::isfinite(rls.Coefficients()[1]));
}

TEST_CASE("RLS blob round-trips exactly and rejects damage", "[models]") {
  const int d = 8;
  Dataset data = MakeDataset(d, 300, 1);
  RecursiveLeastSquares rls = MakeModel(d, 0.995, 0.1);
  for (size_t i = 0; i < 300; ++i) (void)rls.Update(data.Row(i), data.y[i]);
  const std::string blob = rls.Serialize();
  auto back = RecursiveLeastSquares::Deserialize(blob);
  REQUIRE_OK(back);
  CHECK(back->Serialize() == blob);
  for (int j = 0; j < d; ++j) CHECK(back->Coefficients()[j] == rls.Coefficients()[j]);
  // Continuing after a restore gives the same state as never stopping.
  (void)rls.Update(data.Row(0), 1.0);
  (void)back->Update(data.Row(0), 1.0);
  CHECK(back->Serialize() == rls.Serialize());

  for (size_t cut = 0; cut < blob.size(); ++cut) {
    auto r = RecursiveLeastSquares::Deserialize(std::string_view(blob).substr(0, cut));
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == StatusCode::kCorruption);
  }
  for (size_t pos = 0; pos < blob.size(); ++pos) {
    std::string damaged = blob;
    damaged[pos] = static_cast<char>(damaged[pos] ^ 0x5A);
    CHECK(RecursiveLeastSquares::Deserialize(damaged).status().code() == StatusCode::kCorruption);
  }
  // A well-formed blob of another kind, and a sealed blob with a bad payload.
  CHECK(RecursiveLeastSquares::Deserialize(SealBlob(BlobKind::kStandardizer, 1, "x"))
            .status()
            .code() == StatusCode::kCorruption);
  CHECK(RecursiveLeastSquares::Deserialize(SealBlob(BlobKind::kRecursiveLeastSquares, 1, "abc"))
            .status()
            .code() == StatusCode::kCorruption);
}

}  // namespace
}  // namespace crmstream::models
