#include "crmstream/models/standardizer.h"

#include <catch2/catch.hpp>
#include <cmath>
#include <random>
#include <vector>

#include "crmstream/common/binary_io.h"
#include "support/require_ok.h"

namespace crmstream::models {
namespace {

// Two-pass reference in long double.
void TwoPass(const std::vector<std::vector<double>>& rows, int column, double* mean,
             double* variance) {
  long double sum = 0;
  size_t n = 0;
  for (const auto& r : rows) {
    if (std::isnan(r[column])) continue;
    sum += r[column];
    ++n;
  }
  const long double m = sum / n;
  long double ss = 0;
  for (const auto& r : rows) {
    if (std::isnan(r[column])) continue;
    ss += (r[column] - m) * (r[column] - m);
  }
  *mean = static_cast<double>(m);
  *variance = static_cast<double>(ss / n);
}

std::vector<std::vector<double>> MakeRows(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> z(0.0, 1.0);
  std::vector<std::vector<double>> rows(n, std::vector<double>(4));
  for (size_t i = 0; i < n; ++i) {
    rows[i][0] = z(rng);
    rows[i][1] = 1e9 + 0.5 * z(rng);  // large offset: naive sum of squares fails here
    rows[i][2] = i % 7 == 0 ? std::nan("") : 3.0 * z(rng) - 2.0;
    rows[i][3] = 42.0;  // constant
  }
  return rows;
}

TEST_CASE("Standardizer matches a two-pass mean and variance", "[models]") {
  const auto rows = MakeRows(20000, 1);
  auto s = Standardizer::Create(4);
  REQUIRE_OK(s);
  for (const auto& r : rows) s->Update(r);
  for (int j = 0; j < 3; ++j) {
    double mean = 0, var = 0;
    TwoPass(rows, j, &mean, &var);
    INFO("column " << j);
    CHECK(s->mean(j) == Approx(mean).epsilon(1e-14).margin(1e-12));
    CHECK(s->variance(j) == Approx(var).epsilon(1e-12));
  }
  CHECK(s->count(2) == 20000 - (20000 + 6) / 7);
  CHECK(s->sample_variance(0) == Approx(s->variance(0) * 20000.0 / 19999.0));

  std::vector<double> z(4);
  const std::vector<double> x = {1.0, 1e9 + 1.0, std::nan(""), 42.0};
  s->Transform(x, z);
  CHECK(z[0] == Approx((1.0 - s->mean(0)) / std::sqrt(s->variance(0))));
  CHECK(z[1] == Approx((1.0 - (s->mean(1) - 1e9)) / std::sqrt(s->variance(1))).epsilon(1e-6));
  CHECK(z[2] == 0.0);  // missing maps to the mean
  CHECK(z[3] == 0.0);  // zero variance guarded
}

TEST_CASE("Standardizer merge equals one pass over all rows", "[models]") {
  const auto rows = MakeRows(9000, 2);
  auto a = Standardizer::Create(4).value();
  auto b = Standardizer::Create(4).value();
  auto empty = Standardizer::Create(4).value();
  for (size_t i = 0; i < rows.size(); ++i) (i < 2000 ? a : b).Update(rows[i]);
  REQUIRE_OK(a.Merge(b));
  REQUIRE_OK(a.Merge(empty));
  REQUIRE_OK(empty.Merge(a));
  for (int j = 0; j < 4; ++j) {
    double mean = 0, var = 0;
    TwoPass(rows, j, &mean, &var);
    CHECK(a.mean(j) == Approx(mean).epsilon(1e-14).margin(1e-12));
    CHECK(a.variance(j) == Approx(var).epsilon(1e-12).margin(1e-20));
    CHECK(empty.mean(j) == a.mean(j));
  }
  CHECK(a.Merge(Standardizer::Create(3).value()).code() == StatusCode::kInvalidArgument);
  CHECK(Standardizer::Create(0).status().code() == StatusCode::kInvalidArgument);
}

TEST_CASE("Standardizer blob round-trips exactly and rejects damage", "[models]") {
  const auto rows = MakeRows(100, 3);
  auto s = Standardizer::Create(4).value();
  for (const auto& r : rows) s.Update(r);
  const std::string blob = s.Serialize();
  auto back = Standardizer::Deserialize(blob);
  REQUIRE_OK(back);
  CHECK(back->Serialize() == blob);
  for (int j = 0; j < 4; ++j) CHECK(back->TransformOne(j, 0.5) == s.TransformOne(j, 0.5));
  for (size_t cut = 0; cut < blob.size(); ++cut) {
    CHECK(Standardizer::Deserialize(std::string_view(blob).substr(0, cut)).status().code() ==
          StatusCode::kCorruption);
  }
  for (size_t pos = 0; pos < blob.size(); ++pos) {
    std::string damaged = blob;
    damaged[pos] = static_cast<char>(damaged[pos] ^ 0x21);
    CHECK_FALSE(Standardizer::Deserialize(damaged).ok());
  }
  CHECK_FALSE(Standardizer::Deserialize(SealBlob(BlobKind::kStandardizer, 1, "")).ok());
  CHECK_FALSE(Standardizer::Deserialize(SealBlob(BlobKind::kLogisticRegression, 1, "")).ok());
}

}  // namespace
}  // namespace crmstream::models
