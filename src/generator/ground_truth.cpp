#include "crmstream/generator/ground_truth.h"

#include "crmstream/common/json_writer.h"
#include "generator/world_state.h"

namespace crmstream::generator {

std::string_view SegmentName(Segment s) {
  switch (s) {
    case Segment::kBargainHunter:
      return "bargain_hunter";
    case Segment::kLoyalHighValue:
      return "loyal_high_value";
    case Segment::kOccasional:
      return "occasional";
    case Segment::kNewcomer:
      return "newcomer";
    case Segment::kAtRisk:
      return "at_risk";
  }
  return "unknown";
}

std::string_view AnomalyKindName(AnomalyKind k) {
  switch (k) {
    case AnomalyKind::kRefundBurst:
      return "refund_burst";
    case AnomalyKind::kOutage:
      return "outage";
    case AnomalyKind::kRevenueDrop:
      return "revenue_drop";
  }
  return "unknown";
}

std::string_view MalformedReasonName(MalformedReason r) {
  switch (r) {
    case MalformedReason::kMissingCustomerId:
      return "missing_customer_id";
    case MalformedReason::kAmountAsString:
      return "amount_as_string";
    case MalformedReason::kUnknownType:
      return "unknown_type";
    case MalformedReason::kBadTimestamp:
      return "bad_timestamp";
    case MalformedReason::kNotJson:
      return "not_json";
    case MalformedReason::kNegativeAmount:
      return "negative_amount";
  }
  return "unknown";
}

std::string_view ExpectedRejectReasonName(MalformedReason r) {
  switch (r) {
    case MalformedReason::kMissingCustomerId:
      return "missing_field";
    case MalformedReason::kAmountAsString:
      return "wrong_type";
    case MalformedReason::kUnknownType:
      return "unknown_event_type";
    case MalformedReason::kBadTimestamp:
      return "bad_timestamp";
    case MalformedReason::kNotJson:
      return "not_json";
    case MalformedReason::kNegativeAmount:
      return "out_of_range";
  }
  return "unknown";
}

namespace {

void WriteChurners(JsonWriter* w, const std::vector<ChurnerTruth>& list) {
  w->BeginArray();
  for (const ChurnerTruth& c : list) {
    w->BeginObject();
    w->Field("customer_id", std::string_view(c.customer_id));
    w->Field("fade_start_ms", c.fade_start_ms);
    w->Field("closed_ms", c.closed_ms);
    w->EndObject();
  }
  w->EndArray();
}

}  // namespace

void WorldState::GroundTruthJson(std::string* out) const {
  out->clear();
  JsonWriter w(out);
  w.BeginObject();
  w.Field("seed", static_cast<int64_t>(options_.seed));
  w.Field("start_ms", options_.start_ms);
  w.Field("now_ms", now_ms_);
  w.Field("records", truth_.records);
  w.Field("events", truth_.events);
  w.Field("duplicates", truth_.duplicates);

  w.Key("malformed");
  w.BeginObject();
  w.Field("total", static_cast<int64_t>(truth_.malformed.size()));
  w.Key("by_reason");
  w.BeginObject();
  for (int r = 0; r < kMalformedReasonCount; ++r) {
    w.Field(MalformedReasonName(static_cast<MalformedReason>(r)), truth_.malformed_by_reason[r]);
  }
  w.EndObject();
  w.Key("records");
  w.BeginArray();
  std::string id;
  for (size_t i = 0; i < truth_.malformed.size(); ++i) {
    const MalformedTruth& m = truth_.malformed[i];
    id = "m-" + std::to_string(options_.seed) + "-" + std::to_string(i + 1);
    w.BeginObject();
    w.Field("record_index", m.record_index);
    w.Field("event_id", std::string_view(id));
    w.Field("reason", MalformedReasonName(m.reason));
    w.Field("expected_reject", ExpectedRejectReasonName(m.reason));
    w.EndObject();
  }
  w.EndArray();
  w.EndObject();

  w.Key("churners");
  WriteChurners(&w, truth_.churners);
  w.Key("fading");
  WriteChurners(&w, FadingCustomers());

  w.Key("anomalies");
  w.BeginArray();
  for (const AnomalyTruth& a : truth_.anomalies) {
    w.BeginObject();
    w.Field("kind", AnomalyKindName(a.kind));
    w.Field("scope", a.customer_id.empty() ? "global" : "customer");
    if (!a.customer_id.empty()) w.Field("customer_id", std::string_view(a.customer_id));
    w.Field("start_ms", a.start_ms);
    w.Field("end_ms", a.end_ms);
    w.EndObject();
  }
  w.EndArray();

  w.Key("customers");
  w.BeginArray();
  for (const CustomerTruth& c : Customers()) {
    w.BeginObject();
    w.Field("customer_id", std::string_view(c.customer_id));
    w.Field("segment", SegmentName(c.segment));
    w.Field("joined_ms", c.joined_ms);
    w.EndObject();
  }
  w.EndArray();
  w.EndObject();
}

}  // namespace crmstream::generator
