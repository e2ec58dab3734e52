#include "crmstream/scoring/customer_segmenter.h"

#include <array>
#include <catch2/catch.hpp>
#include <cmath>
#include <memory>
#include <random>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "crmstream/features/feature_store.h"
#include "scoring/scoring_test_support.h"
#include "support/require_ok.h"

namespace crmstream::scoring {
namespace {

using ingest::EventType;

constexpr int64_t kDay = 86'400'000;
constexpr int64_t kStart = 1'767'225'600'000;  // 2026-01-01T00:00:00Z

// A feature store and a segmenter fed as CustomerModels feeds it.
class SegmentStream {
 public:
  explicit SegmentStream(const SegmenterOptions& options)
      : store_(std::move(features::FeatureStore::Create(features::FeatureSpec{})).value()),
        segmenter_(std::move(CustomerSegmenter::Create(options, store_->spec())).value()) {}

  const features::CustomerFeatures& Send(const std::string& customer, int64_t ts, EventType type,
                                         double amount = 0.0) {
    event_id_ = "e" + std::to_string(++count_);
    customer_ = customer;
    return Send(testing::HandEvent(event_id_, customer_, ts, type, amount));
  }
  const features::CustomerFeatures& Send(const ingest::Event& e) {
    const features::CustomerFeatures& f = store_->Update(e);
    segmenter_.OnEvent(f, &unsaved_);
    return f;
  }
  // Segment moves (a change with a previous segment) since the last call.
  int Refresh() {
    int moves = 0;
    for (uint32_t slot : unsaved_.slots()) {
      SegmentChange change;
      segmenter_.Refresh(slot, &unsaved_, &change);
      if (change.changed && change.from >= 0) ++moves;
    }
    unsaved_.Clear();
    return moves;
  }

  const CustomerSegmenter& segmenter() const { return segmenter_; }

 private:
  std::unique_ptr<features::FeatureStore> store_;
  CustomerSegmenter segmenter_;
  UnsavedSlots unsaved_;
  std::string event_id_, customer_;
  uint64_t count_ = 0;
};

std::array<double, 4> PublishedCentre(const CustomerSegmenter& s, int c) {
  std::array<double, 4> out{};
  s.Centre(c, out);
  return out;
}

TEST_CASE("Published centroids are days, counts and currency: the log-space mean of the points",
          "[scoring][segments]") {
  // With one segment and no decay the k-means centre is the mean of every
  // point it learnt (one per customer and day), whatever the running
  // standardisation did meanwhile; published, it is that mean in log1p
  // units mapped back by expm1. The reference is computed here in batch.
  SegmenterOptions o;
  o.k = 1;
  SegmentStream stream(o);
  std::mt19937_64 rng(11);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  constexpr int kCustomers = 150;
  constexpr int kDays = 60;
  std::vector<double> buy_rate(kCustomers), basket(kCustomers);
  for (int c = 0; c < kCustomers; ++c) {
    buy_rate[c] = 0.02 + 0.6 * u(rng);
    basket[c] = std::exp(2.0 + 3.0 * u(rng));
  }
  std::array<double, 4> sum{};
  int points = 0;
  std::unordered_map<int, int64_t> learnt_day;
  for (int d = 0; d < kDays; ++d) {
    for (int c = 0; c < kCustomers; ++c) {
      if (u(rng) > 0.5) continue;  // active on about half the days
      const int64_t ts = kStart + d * kDay + c * (kDay / 2 / kCustomers);
      const std::string id = "C" + std::to_string(c);
      const bool buys = u(rng) < buy_rate[c];
      const features::CustomerFeatures& f =
          buys ? stream.Send(id, ts, EventType::kPurchase, basket[c] * (0.5 + u(rng)))
               : stream.Send(id, ts, u(rng) < 0.3 ? EventType::kSupportTicket : EventType::kLogin);
      if (learnt_day.count(c) != 0 && learnt_day[c] == d) continue;
      learnt_day[c] = d;
      // The segmentation point as documented: recency (tenure before any
      // purchase), frequency, net spend and the 30-day window's events.
      const double recency = std::isnan(f.recency_days()) ? f.tenure_days() : f.recency_days();
      const features::WindowAggregates w = f.window(1);
      REQUIRE(features::FeatureSpec{}.window_days[1] == 30);
      const double events = static_cast<double>(w.purchases) + w.logins + w.page_views +
                            w.support_tickets + w.complaints + w.refunds;
      sum[0] += std::log1p(std::max(0.0, recency));
      sum[1] += std::log1p(static_cast<double>(f.frequency()));
      sum[2] += std::log1p(std::max(0.0, f.monetary()));
      sum[3] += std::log1p(events);
      ++points;
    }
  }
  REQUIRE(stream.segmenter().seeded());
  REQUIRE(points > 2000);
  const std::array<double, 4> centre = PublishedCentre(stream.segmenter(), 0);
  for (size_t j = 0; j < centre.size(); ++j) {
    INFO(kSegmentFeatureNames[j]);
    CHECK(centre[j] == Approx(std::expm1(sum[j] / points)).epsilon(1e-9));
  }
  // Plausible units: days within the run, spend in the baskets' range.
  CHECK(centre[0] < kDays);
  CHECK(centre[2] > 10.0);
  CHECK(kSegmentFeatureNames[0] == "recency_days");

  // The published units survive a checkpoint (the scale snapshot is part of
  // the partition state) and a version-1 state still decodes.
  std::string blob;
  stream.segmenter().EncodePartition(&blob);
  REQUIRE_OK_AND_ASSIGN(CustomerSegmenter restored,
                        CustomerSegmenter::Create(o, features::FeatureSpec{}));
  REQUIRE_OK(restored.DecodePartition(blob));
  CHECK(PublishedCentre(restored, 0) == centre);
}

TEST_CASE("Hysteresis cuts segment moves without touching what k-means learns",
          "[scoring][segments]") {
  // The same generated stream through a segmenter that reports the nearest
  // centre (margin 0, one day) and one with the default hysteresis.
  generator::WorldOptions wo;
  wo.seed = 9;
  wo.customers = 400;
  auto run = [&](double margin, int days) {
    SegmenterOptions o;
    o.move_margin = margin;
    o.move_after_days = days;
    SegmentStream stream(o);
    testing::EventSource source(wo);
    int moves = 0;
    int64_t day = INT64_MIN;
    for (int n = 0; n < 80'000; ++n) {
      const ingest::Event& e = source.Next();
      stream.Send(e);
      if (e.timestamp_ms / kDay != day) {  // a flush per simulated day
        day = e.timestamp_ms / kDay;
        moves += stream.Refresh();
      }
    }
    moves += stream.Refresh();
    return std::make_pair(moves, stream.segmenter().quality());
  };
  const auto [nearest_moves, nearest_quality] = run(0.0, 1);
  const auto [margin_moves, margin_quality] =
      run(SegmenterOptions{}.move_margin, SegmenterOptions{}.move_after_days);
  INFO("moves: nearest " << nearest_moves << ", with margin " << margin_moves);
  REQUIRE(nearest_moves > 100);
  CHECK(margin_moves * 2 < nearest_moves);
  // k-means learns from the nearest centre either way: identical models.
  CHECK(margin_quality.kmeans_points == nearest_quality.kmeans_points);
  CHECK(margin_quality.kmeans_mean_squared_distance ==
        nearest_quality.kmeans_mean_squared_distance);
}

TEST_CASE("A centre the data moved away from is re-seeded where the data are",
          "[scoring][segments]") {
  // Two kinds of customers, then only a third kind (new, heavy buyers) is
  // active: the centre of the customers who never buy wins no point any
  // more. With re-seeding it moves among the heavy buyers; without, it stays
  // a segment of nobody.
  auto run = [](uint64_t reseed_after) {
    SegmenterOptions o;
    o.k = 2;
    o.reseed_after_points = reseed_after;
    SegmentStream stream(o);
    for (int d = 0; d < 30; ++d) {
      for (int c = 0; c < 100; ++c) {
        const int64_t ts = kStart + d * kDay + c * 60'000;
        if (c % 2 == 0) {
          stream.Send("buyer" + std::to_string(c), ts, EventType::kPurchase, 20.0 + c);
        } else {
          stream.Send("browser" + std::to_string(c), ts, EventType::kPageView);
        }
      }
    }
    for (int d = 30; d < 60; ++d) {
      for (int c = 0; c < 100; ++c) {
        const int64_t ts = kStart + d * kDay + c * 60'000;
        stream.Send("heavy" + std::to_string(c), ts, EventType::kPurchase, 5000.0 + 10.0 * c);
      }
    }
    return stream;
  };
  const SegmentStream with = run(500);
  CHECK(with.segmenter().quality().reseeded_centres >= 1);
  for (int c = 0; c < 2; ++c) {
    const std::array<double, 4> centre = PublishedCentre(with.segmenter(), c);
    INFO("segment " << c << " monetary " << centre[2] << " frequency " << centre[1]);
    // Every heavy buyer has bought at least once for 5,000 or more.
    CHECK(centre[1] >= 1.0);
    CHECK(centre[2] >= 1000.0);
  }
  const SegmentStream without = run(0);
  CHECK(without.segmenter().quality().reseeded_centres == 0);
  int never_bought = 0;
  for (int c = 0; c < 2; ++c) {
    if (PublishedCentre(without.segmenter(), c)[1] < 0.5) ++never_bought;
  }
  CHECK(never_bought == 1);
}

TEST_CASE("Segmenter options are validated", "[scoring][segments]") {
  SegmenterOptions o;
  o.move_margin = 1.0;
  CHECK(o.Validate().message().find("move_margin") != std::string::npos);
  o.move_margin = -0.1;
  CHECK_FALSE(o.Validate().ok());
  o.move_margin = 0.0;
  CHECK(o.Validate().ok());
}

}  // namespace
}  // namespace crmstream::scoring
