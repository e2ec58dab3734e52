#include "crmstream/generator/world_options.h"

#include <catch2/catch.hpp>

#include "crmstream/generator/world_generator.h"
#include "support/require_ok.h"

namespace crmstream::generator {
namespace {

// The message must name the field so that a user can fix the configuration.
void RequireRejectedNaming(const WorldOptions& options, const std::string& field) {
  const Status st = options.Validate();
  REQUIRE_FALSE(st.ok());
  CHECK(st.code() == StatusCode::kInvalidArgument);
  CHECK_THAT(st.message(), Catch::Contains(field));
}

TEST_CASE("WorldOptions defaults are valid and bad values name their field", "[generator]") {
  REQUIRE_OK(WorldOptions{}.Validate());
  WorldOptions with_everything;
  with_everything.anomalies.enabled = true;
  with_everything.malformed_rate = 0.5;
  with_everything.duplicate_rate = 0.5;
  REQUIRE_OK(with_everything.Validate());

  WorldOptions o;
  o.customers = 0;
  RequireRejectedNaming(o, "WorldOptions.customers");
  o = {};
  o.churn_rate = 1.5;
  RequireRejectedNaming(o, "WorldOptions.churn_rate");
  o = {};
  o.churn_rate = std::nan("");
  RequireRejectedNaming(o, "WorldOptions.churn_rate");
  o = {};
  o.fade_min_days = 30;
  o.fade_max_days = 20;
  RequireRejectedNaming(o, "WorldOptions.fade_max_days");
  o = {};
  o.start_ms = -1;
  RequireRejectedNaming(o, "WorldOptions.start_ms");
  o = {};
  o.malformed_rate = 1.0;
  RequireRejectedNaming(o, "WorldOptions.malformed_rate");
  o = {};
  o.duplicate_rate = -0.1;
  RequireRejectedNaming(o, "WorldOptions.duplicate_rate");
  o = {};
  o.diurnal_amplitude = 1.0;
  RequireRejectedNaming(o, "WorldOptions.diurnal_amplitude");
  o = {};
  o.anomalies.outage_activity_factor = 2.0;
  RequireRejectedNaming(o, "outage_activity_factor");
  o = {};
  o.anomalies.refund_burst_min_refunds = 5;
  o.anomalies.refund_burst_max_refunds = 3;
  RequireRejectedNaming(o, "refund_burst_max_refunds");
  o = {};
  o.anomalies.outage_min_hours = 0;
  RequireRejectedNaming(o, "outage_min_hours");
}

TEST_CASE("WorldGenerator refuses invalid options", "[generator]") {
  WorldOptions o;
  o.customers = -5;
  auto created = WorldGenerator::Create(o);
  REQUIRE_FALSE(created.ok());
  CHECK(created.status().code() == StatusCode::kInvalidArgument);
  CHECK_THAT(created.status().message(), Catch::Contains("WorldOptions.customers"));

  o.customers = 3;
  auto small = WorldGenerator::Create(o);
  REQUIRE_OK(small);
  CHECK((*small)->now_ms() == o.start_ms);
}

}  // namespace
}  // namespace crmstream::generator
