#include "crmstream/alerts/churn_gate.h"

#include <catch2/catch.hpp>
#include <cmath>
#include <string>

#include "support/require_ok.h"

namespace crmstream::alerts {
namespace {

TEST_CASE("Churn gate: closed without closings, below the floor, open once earned", "[alerts]") {
  ChurnGateOptions o;
  o.min_positive_labels = 20;
  o.min_negative_labels = 100;
  o.auc_floor = 0.7;
  REQUIRE_OK(o.Validate());
  // Thousands of "stayed" labels and no closing: a model that never saw one
  // cannot alert, whatever its AUC says.
  CHECK(EvaluateChurnGate(o, {0, 5000, 0.5}) == ChurnGateState::kWarmingUp);
  CHECK(EvaluateChurnGate(o, {19, 5000, 0.95}) == ChurnGateState::kWarmingUp);
  CHECK(EvaluateChurnGate(o, {200, 99, 0.95}) == ChurnGateState::kWarmingUp);
  CHECK(EvaluateChurnGate(o, {20, 100, 0.69}) == ChurnGateState::kBelowFloor);
  CHECK(EvaluateChurnGate(o, {20, 100, 0.7}) == ChurnGateState::kOpen);
  CHECK(EvaluateChurnGate(o, {20, 100, std::nan("")}) == ChurnGateState::kBelowFloor);
  CHECK(DescribeChurnGate(ChurnGateState::kWarmingUp, {3, 409, 0.612}) ==
        "warming up: 412 labels (3 closings), AUC 0.61");
  CHECK(ChurnGateStateName(ChurnGateState::kOpen) == "open");
}

TEST_CASE("Churn gate options name the bad field", "[alerts]") {
  ChurnGateOptions o;
  o.min_positive_labels = 0;
  CHECK(o.Validate().message().find("min_positive_labels") != std::string::npos);
  o = {};
  o.min_negative_labels = -1;
  CHECK(o.Validate().message().find("min_negative_labels") != std::string::npos);
  o = {};
  o.auc_floor = 0.4;
  CHECK(o.Validate().message().find("auc_floor") != std::string::npos);
}

}  // namespace
}  // namespace crmstream::alerts
