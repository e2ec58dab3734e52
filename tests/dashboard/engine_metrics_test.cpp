// Reading throughput and lag out of Prometheus text, checked against values
// worked out by hand from the sample exposition below.
#include "crmstream/dashboard/engine_metrics.h"

#include <catch2/catch.hpp>

namespace crmstream::dashboard {
namespace {

std::string Exposition(double records, double lag0, double lag1) {
  return "# HELP crmstream_input_records_total Records read from the input topics.\n"
         "# TYPE crmstream_input_records_total counter\n"
         "crmstream_input_records_total " +
         std::to_string(records) +
         "\n"
         "# TYPE crmstream_consumer_lag_records gauge\n"
         "crmstream_consumer_lag_records{topic=\"crm.interactions\",partition=\"0\"} " +
         std::to_string(lag0) +
         "\n"
         "crmstream_consumer_lag_records{topic=\"crm.interactions\",partition=\"1\"} " +
         std::to_string(lag1) +
         " 1700000000000\n"
         "crmstream_event_to_output_latency_seconds_bucket{le=\"+Inf\"} 12\n"
         "process_cpu_seconds_total 3.5\n";
}

TEST_CASE("Prometheus text: names, labels, values, timestamps", "[dashboard]") {
  const std::string text =
      "# TYPE crmstream_x gauge\n"
      "crmstream_x{reason=\"a}b\",type=\"q\\\"uote\"} 1.5e+03\r\n"
      "crmstream_y +Inf\n"
      "crmstream_z NaN\n"
      "crmstream_broken{label=\"unterminated 3\n"
      "other_metric 4\n";
  auto samples = ParsePrometheusText(text);
  REQUIRE(samples.size() == 2);
  CHECK(samples[0].name == "crmstream_x");
  CHECK(samples[0].labels == "reason=\"a}b\",type=\"q\\\"uote\"");
  CHECK(samples[0].value == 1500.0);
  CHECK(samples[1].name == "crmstream_y");
  CHECK(std::isinf(samples[1].value));
}

TEST_CASE("engine rates: records per second from successive scrapes, lag summed", "[dashboard]") {
  EngineRateTracker tracker;
  auto first = tracker.Update(10'000, ParsePrometheusText(Exposition(1000, 7, 5)));
  CHECK_FALSE(first.events_per_second.has_value());  // one reading is not a rate
  REQUIRE(first.lag.has_value());
  CHECK(*first.lag == 12.0);
  // 3000 more records in 2 seconds: 1500/s.
  auto second = tracker.Update(12'000, ParsePrometheusText(Exposition(4000, 0, 1)));
  REQUIRE(second.events_per_second.has_value());
  CHECK(*second.events_per_second == Approx(1500.0));
  CHECK(*second.lag == 1.0);
  // The engine restarted: its counter starts again from zero. No negative rate.
  auto restarted = tracker.Update(13'000, ParsePrometheusText(Exposition(200, 0, 0)));
  CHECK_FALSE(restarted.events_per_second.has_value());
  auto after = tracker.Update(14'000, ParsePrometheusText(Exposition(700, 0, 0)));
  REQUIRE(after.events_per_second.has_value());
  CHECK(*after.events_per_second == Approx(500.0));
}

TEST_CASE("engine rates: names outside the candidate list are found by pattern", "[dashboard]") {
  EngineRateTracker tracker;
  const std::string a =
      "crmstream_pipeline_records_received_total{partition=\"0\"} 100\n"
      "crmstream_pipeline_records_received_bytes_total 99999\n"
      "crmstream_kafka_partition_lag{partition=\"0\"} 40\n"
      "crmstream_kafka_partition_lag{partition=\"1\"} 2\n";
  const std::string b =
      "crmstream_pipeline_records_received_total{partition=\"0\"} 400\n"
      "crmstream_pipeline_records_received_bytes_total 1\n"
      "crmstream_kafka_partition_lag{partition=\"0\"} 0\n";
  CHECK(*tracker.Update(0, ParsePrometheusText(a)).lag == 42.0);
  auto r = tracker.Update(1000, ParsePrometheusText(b));
  CHECK(*r.events_per_second == Approx(300.0));
  // Nothing that looks like an input counter: unknown, not zero.
  EngineRateTracker none;
  CHECK_FALSE(none.Update(0, ParsePrometheusText("crmstream_build_info 1\n")).lag.has_value());
}

TEST_CASE("engine rates: infinite or overflowing values are no reading, never NaN", "[dashboard]") {
  // Values another process sent: +Inf parses, and two huge lags sum to inf.
  EngineRateTracker tracker;
  const auto inf = tracker.Update(
      0, ParsePrometheusText("crmstream_input_records_total +Inf\n"
                             "crmstream_consumer_lag_records{partition=\"0\"} 1e308\n"
                             "crmstream_consumer_lag_records{partition=\"1\"} 1e308\n"));
  CHECK_FALSE(inf.lag.has_value());
  CHECK_FALSE(inf.events_per_second.has_value());
  // inf - inf was NaN records per second; now no rate until two finite readings.
  const auto again =
      tracker.Update(1000, ParsePrometheusText("crmstream_input_records_total +Inf\n"));
  CHECK_FALSE(again.events_per_second.has_value());
  (void)tracker.Update(2000, ParsePrometheusText("crmstream_input_records_total 1e308\n"));
  const auto huge =
      tracker.Update(2001, ParsePrometheusText("crmstream_input_records_total 1.7e308\n"));
  CHECK_FALSE(huge.events_per_second.has_value());  // 7e307 per ms overflows
  (void)tracker.Update(3000, ParsePrometheusText("crmstream_input_records_total 10\n"));
  const auto fine = tracker.Update(4000, ParsePrometheusText("crmstream_input_records_total 30\n"));
  REQUIRE(fine.events_per_second.has_value());
  CHECK(*fine.events_per_second == Approx(20.0));
}

}  // namespace
}  // namespace crmstream::dashboard
