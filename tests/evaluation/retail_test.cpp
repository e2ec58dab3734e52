#include "crmstream/evaluation/retail.h"

#include <catch2/catch.hpp>
#include <cmath>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "support/require_ok.h"
#include "support/test_support.h"

namespace crmstream::evaluation {
namespace {

TEST_CASE("retail CSV parsing handles quotes, CRLF, other encodings and bad lines",
          "[evaluation][retail]") {
  const std::string csv =
      "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"
      "536365,85123A,\"HEART, WHITE \"\"BIG\"\"\",6,2010-12-01 08:26:00,2.55,17850.0,United "
      "Kingdom\r\n"
      "536366,71053,caf\xe9 \xc3\xa9,2,12/9/2011 12:50,1.5,17850.0,France\n"
      "C536367,71053,x,-3,2011-12-09 10:00:00,1.5,17850.0,France\n"
      "536368,1,y,1,2011-12-09 10:00:00,1.0,,France\n"
      "garbage line\n"
      "536369,1,\"unterminated,1,2011-12-09 10:00:00,1.0,12345.0,France\n"
      "536366,71053,same invoice again,1,2011-12-09 12:50:00,1.0,17850.0,France\n"
      "536370,1,z,4,2011-12-10 12:50:00,0.5,12346.0,UK";  // no final newline
  auto t = BuildRfmTable(csv);
  REQUIRE_OK(t);
  CHECK(t->counts.lines == 8);
  CHECK(t->counts.missing_customer == 1);
  CHECK(t->counts.negative_quantity == 1);
  CHECK(t->counts.malformed == 2);
  CHECK(t->counts.kept == 4);
  REQUIRE(t->size() == 2);
  CHECK(t->customer_ids == std::vector<int64_t>{12346, 17850});
  // 17850: last purchase 2011-12-09 12:50 -> 1 day; invoices 536365, 536366;
  // 6 * 2.55 + 2 * 1.5 + 1 * 1.0.
  CHECK(t->recency_days[1] == 1.0);
  CHECK(t->frequency[1] == 2.0);
  CHECK(t->monetary[1] == Approx(19.3));
  CHECK(t->recency_days[0] == 0.0);
  CHECK(t->frequency[0] == 1.0);
  CHECK(t->monetary[0] == Approx(2.0));
  // The single pass streams customers by their latest purchase: 17850's
  // (2011-12-09 12:50) is exactly one day before 12346's.
  REQUIRE(t->last_purchase_minutes.size() == 2);
  CHECK(t->last_purchase_minutes[0] - t->last_purchase_minutes[1] == 1440);
  // Two customers, standardised with the population sd: every column is -1 / +1.
  for (int c = 0; c < 3; ++c) {
    CHECK(t->features[c] == Approx(-1.0));
    CHECK(t->features[3 + c] == Approx(1.0));
  }
  CHECK(!BuildRfmTable("InvoiceNo,StockCode\n\x01\x02,\xff\n").ok());
  CHECK(!BuildRfmTable("").ok());
}

// Independent reference: Lloyd's k-means with k-means++ seeding, best of
// n_init runs, written here from the textbook.
double FullKMeansInertia(const std::vector<double>& x, int k, int n_init, uint64_t seed) {
  const size_t n = x.size() / 3;
  std::mt19937_64 rng(seed);
  double best = 1e300;
  auto d2 = [&](size_t i, const std::vector<double>& c, size_t j) {
    double s = 0.0;
    for (int t = 0; t < 3; ++t) s += (x[i * 3 + t] - c[j * 3 + t]) * (x[i * 3 + t] - c[j * 3 + t]);
    return s;
  };
  for (int run = 0; run < n_init; ++run) {
    std::vector<double> c;
    const size_t first = std::uniform_int_distribution<size_t>(0, n - 1)(rng);
    c.insert(c.end(), x.begin() + first * 3, x.begin() + first * 3 + 3);
    std::vector<double> closest(n);
    while (static_cast<int>(c.size() / 3) < k) {
      double total = 0.0;
      for (size_t i = 0; i < n; ++i) {
        closest[i] = 1e300;
        for (size_t j = 0; j < c.size() / 3; ++j) closest[i] = std::min(closest[i], d2(i, c, j));
        total += closest[i];
      }
      double r = std::uniform_real_distribution<double>(0.0, total)(rng);
      size_t pick = n - 1;
      for (size_t i = 0; i < n; ++i) {
        r -= closest[i];
        if (r < 0.0) {
          pick = i;
          break;
        }
      }
      c.insert(c.end(), x.begin() + pick * 3, x.begin() + pick * 3 + 3);
    }
    double inertia = 0.0;
    for (int iter = 0; iter < 300; ++iter) {
      std::vector<double> sum(k * 3, 0.0), count(k, 0.0);
      inertia = 0.0;
      for (size_t i = 0; i < n; ++i) {
        size_t bj = 0;
        double b = 1e300;
        for (int j = 0; j < k; ++j) {
          const double s = d2(i, c, j);
          if (s < b) {
            b = s;
            bj = j;
          }
        }
        inertia += b;
        for (int t = 0; t < 3; ++t) sum[bj * 3 + t] += x[i * 3 + t];
        count[bj] += 1.0;
      }
      double moved = 0.0;
      for (int j = 0; j < k; ++j) {
        if (count[j] == 0.0) continue;
        for (int t = 0; t < 3; ++t) {
          const double v = sum[j * 3 + t] / count[j];
          moved = std::max(moved, std::fabs(v - c[j * 3 + t]));
          c[j * 3 + t] = v;
        }
      }
      if (moved == 0.0) break;
    }
    best = std::min(best, inertia);
  }
  return best;
}

// The k-means objective of `centres` (k x 3, row-major) on the points `x`
// (n x 3), written here from its definition.
double NearestCentreInertia(const std::vector<double>& x, const std::vector<double>& centres) {
  const size_t k = centres.size() / 3;
  double total = 0.0;
  for (size_t i = 0; i + 2 < x.size(); i += 3) {
    double nearest = std::numeric_limits<double>::infinity();
    for (size_t j = 0; j < k; ++j) {
      double d = 0.0;
      for (size_t t = 0; t < 3; ++t)
        d += (x[i + t] - centres[j * 3 + t]) * (x[i + t] - centres[j * 3 + t]);
      nearest = std::min(nearest, d);
    }
    total += nearest;
  }
  return total;
}

TEST_CASE("mini-batch k-means on Online Retail RFM is within 2% of full k-means (10 epochs)",
          "[evaluation][retail][data]") {
  SKIP_WITHOUT_DATA(data_dir);
  auto table = LoadRetailRfm(data_dir);
  REQUIRE_OK(table);
  // The data set's documented counts, and the recipe's customer count.
  CHECK(table->counts.lines == 541'909);
  CHECK(table->counts.missing_customer == 135'080);
  CHECK(table->counts.malformed == 0);
  REQUIRE(table->size() == 4'339);

  auto report = EvaluateRetail(data_dir);
  REQUIRE_OK(report);
  REQUIRE(report->customers == 4'339);
  REQUIRE(report->results.size() == 5);
  REQUIRE(report->single_pass_results.size() == 5);
  std::ostringstream printed;
  PrintRetailReport(*report, printed);
  WARN(printed.str());

  std::ostringstream references;
  for (size_t i = 0; i < report->results.size(); ++i) {
    const RetailClusteringResult& r = report->results[i];
    const RetailClusteringResult& single = report->single_pass_results[i];
    // Our preprocessing reproduces the published figures: an independent
    // full k-means (n_init = 10) lands within 0.5% of them.
    const double reference = FullKMeansInertia(table->features, r.k, 10, 1000 + r.k);
    INFO("k = " << r.k << ": mini-batch " << r.inertia << ", reference full k-means " << reference
                << ", published " << r.published_inertia);
    references << "k = " << r.k << ": reference full k-means " << reference << ", mini-batch "
               << r.inertia << " (" << 100.0 * (r.inertia / reference - 1.0)
               << "% vs reference), single pass " << single.inertia << " ("
               << 100.0 * (single.inertia / reference - 1.0) << "%)\n";
    CHECK(std::fabs(reference / r.published_inertia - 1.0) < 0.005);
    CHECK(r.inertia <= 1.02 * r.published_inertia);
    CHECK(r.inertia <= 1.02 * reference);
    // And no better than a local optimum can be (a sanity bound).
    CHECK(r.inertia >= 0.97 * r.published_inertia);
    // The reported inertia is the one of the reported centres, recomputed
    // here: each customer's squared distance to its nearest centre.
    CHECK(r.inertia == Approx(NearestCentreInertia(table->features, r.centres)).epsilon(1e-9));
    // What a stream sees (each customer once, by latest purchase): within
    // 50% of the independent full k-means (measured:
    // +29% to +43%; sorted by recency, the stream seeds on lapsed customers).
    INFO("single pass " << single.inertia);
    CHECK(single.k == r.k);
    CHECK(single.inertia <= 1.5 * reference);
    CHECK(single.inertia >= 0.97 * reference);
    CHECK(single.inertia ==
          Approx(NearestCentreInertia(table->features, single.centres)).epsilon(1e-9));
  }
  WARN(references.str());
}

}  // namespace
}  // namespace crmstream::evaluation
