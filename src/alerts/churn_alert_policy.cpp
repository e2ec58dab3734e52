#include "crmstream/alerts/churn_alert_policy.h"

#include <cmath>
#include <cstring>

#include "crmstream/common/binary_io.h"
#include "crmstream/common/hash.h"

namespace crmstream::alerts {
namespace {

bool InUnit(double v) { return v >= 0.0 && v <= 1.0; }

}  // namespace

Status ChurnAlertPolicyOptions::Validate() const {
  auto bad = [](std::string_view field, std::string_view rule, double value) {
    return Status::InvalidArgument("ChurnAlertPolicyOptions." + std::string(field) + " must be " +
                                   std::string(rule) + ", got " + std::to_string(value));
  };
  if (!(enter_probability > 0.0 && enter_probability <= 1.0)) {
    return bad("enter_probability", "in (0, 1]", enter_probability);
  }
  if (!(InUnit(exit_probability) && exit_probability <= enter_probability)) {
    return bad("exit_probability", "in [0, enter_probability]", exit_probability);
  }
  if (!(InUnit(high_probability) && high_probability >= enter_probability)) {
    return bad("high_probability", "in [enter_probability, 1]", high_probability);
  }
  if (!(InUnit(critical_probability) && critical_probability >= high_probability)) {
    return bad("critical_probability", "in [high_probability, 1]", critical_probability);
  }
  if (cooldown_ms < 0) return bad("cooldown_ms", ">= 0", static_cast<double>(cooldown_ms));
  return Status::OK();
}

Result<ChurnAlertPolicy> ChurnAlertPolicy::Create(const ChurnAlertPolicyOptions& options) {
  CRM_RETURN_NOT_OK(options.Validate());
  return ChurnAlertPolicy(options);
}

Severity ChurnAlertPolicy::SeverityOf(double probability) const {
  if (probability >= options_.critical_probability) return Severity::kCritical;
  if (probability >= options_.high_probability) return Severity::kHigh;
  return Severity::kWarning;
}

AlertDecision ChurnAlertPolicy::Evaluate(std::string_view customer_id, double probability,
                                         int64_t as_of_ms, CustomerAlertState* state) {
  AlertDecision d;
  if (std::isnan(probability)) return d;
  ++counters_.evaluations;
  if (!state->armed()) {
    // Inside an episode: only a fall below the exit level ends it.
    if (probability < options_.exit_probability) {
      state->episode_start_ms = CustomerAlertState::kNever;
      ++counters_.rearms;
    }
    return d;
  }
  if (probability < options_.enter_probability) return d;
  if (state->last_alert_ms != CustomerAlertState::kNever &&
      as_of_ms - state->last_alert_ms < options_.cooldown_ms) {
    // Stays armed: the alert comes at the first evaluation after the
    // cool-down if the score is still high then.
    ++counters_.suppressed_by_cooldown;
    return d;
  }
  state->episode_start_ms = as_of_ms;
  state->last_alert_ms = as_of_ms;
  d.raise = true;
  d.severity = SeverityOf(probability);
  d.alert_id = AlertId(customer_id, as_of_ms);
  ++counters_.alerts;
  ++counters_.by_severity[static_cast<size_t>(d.severity)];
  return d;
}

uint64_t ChurnAlertPolicy::AlertId(std::string_view customer_id, int64_t episode_start_ms) {
  // The time seeds the hash of the id: no concatenation, no allocation.
  return Hash64(customer_id,
                Hash64(std::string_view(reinterpret_cast<const char*>(&episode_start_ms),
                                        sizeof(episode_start_ms))));
}

void ChurnAlertPolicy::AlertIdHex(uint64_t id, char out[16]) {
  static constexpr char kDigits[] = "0123456789abcdef";
  for (int i = 15; i >= 0; --i) {
    out[i] = kDigits[id & 0xF];
    id >>= 4;
  }
}

void ChurnAlertPolicy::EncodeCustomerState(const CustomerAlertState& state, std::string* out) {
  BinaryWriter w(out);
  w.Put<uint8_t>(kCustomerStateVersion);
  w.Put<int64_t>(state.episode_start_ms);
  w.Put<int64_t>(state.last_alert_ms);
}

Status ChurnAlertPolicy::DecodeCustomerState(std::string_view bytes, CustomerAlertState* state) {
  if (bytes.size() != kEncodedCustomerStateBytes) {
    return Status::Corruption("churn alert customer state: " + std::to_string(bytes.size()) +
                              " bytes, expected " + std::to_string(kEncodedCustomerStateBytes));
  }
  BinaryReader r(bytes);
  uint8_t version = 0;
  CustomerAlertState s;
  CRM_RETURN_NOT_OK(r.Get(&version));
  if (version != kCustomerStateVersion) {
    return Status::Corruption("churn alert customer state: unknown version " +
                              std::to_string(version));
  }
  CRM_RETURN_NOT_OK(r.Get(&s.episode_start_ms));
  CRM_RETURN_NOT_OK(r.Get(&s.last_alert_ms));
  if (s.episode_start_ms != CustomerAlertState::kNever &&
      (s.last_alert_ms == CustomerAlertState::kNever || s.episode_start_ms > s.last_alert_ms)) {
    // An episode always starts with an alert at its start time.
    return Status::Corruption("churn alert customer state: episode without its alert");
  }
  *state = s;
  return Status::OK();
}

void ChurnAlertPolicy::EncodeGlobalState(std::string* out) const {
  const size_t start = out->size();
  BinaryWriter w(out);
  w.Put<uint8_t>(kGlobalStateVersion);
  w.Put<double>(options_.enter_probability);
  w.Put<double>(options_.exit_probability);
  w.Put<double>(options_.high_probability);
  w.Put<double>(options_.critical_probability);
  w.Put<int64_t>(options_.cooldown_ms);
  w.Put<uint64_t>(counters_.evaluations);
  w.Put<uint64_t>(counters_.alerts);
  for (uint64_t n : counters_.by_severity) w.Put<uint64_t>(n);
  w.Put<uint64_t>(counters_.suppressed_by_cooldown);
  w.Put<uint64_t>(counters_.rearms);
  w.Put<uint32_t>(Crc32c(out->data() + start, out->size() - start));
}

Status ChurnAlertPolicy::DecodeGlobalState(std::string_view bytes) {
  constexpr size_t kBody = 1 + 5 * 8 + (4 + kSeverityCount) * 8;  // version, options, counters
  if (bytes.size() != kBody + 4) {
    return Status::Corruption("churn alert policy state: " + std::to_string(bytes.size()) +
                              " bytes, expected " + std::to_string(kBody + 4));
  }
  BinaryReader r(bytes);
  uint8_t version = 0;
  CRM_RETURN_NOT_OK(r.Get(&version));
  if (version != kGlobalStateVersion) {
    return Status::Corruption("churn alert policy state: unknown version " +
                              std::to_string(version));
  }
  ChurnAlertPolicyOptions o;
  AlertCounters c;
  CRM_RETURN_NOT_OK(r.Get(&o.enter_probability));
  CRM_RETURN_NOT_OK(r.Get(&o.exit_probability));
  CRM_RETURN_NOT_OK(r.Get(&o.high_probability));
  CRM_RETURN_NOT_OK(r.Get(&o.critical_probability));
  CRM_RETURN_NOT_OK(r.Get(&o.cooldown_ms));
  CRM_RETURN_NOT_OK(r.Get(&c.evaluations));
  CRM_RETURN_NOT_OK(r.Get(&c.alerts));
  for (uint64_t& n : c.by_severity) CRM_RETURN_NOT_OK(r.Get(&n));
  CRM_RETURN_NOT_OK(r.Get(&c.suppressed_by_cooldown));
  CRM_RETURN_NOT_OK(r.Get(&c.rearms));
  uint32_t check = 0;
  CRM_RETURN_NOT_OK(r.Get(&check));
  if (check != Crc32c(bytes.data(), kBody)) {
    return Status::Corruption("churn alert policy state: checksum mismatch");
  }
  if (o.enter_probability != options_.enter_probability ||
      o.exit_probability != options_.exit_probability ||
      o.high_probability != options_.high_probability ||
      o.critical_probability != options_.critical_probability ||
      o.cooldown_ms != options_.cooldown_ms) {
    return Status::InvalidArgument(
        "churn alert policy state was written with other thresholds or cool-down");
  }
  counters_ = c;
  return Status::OK();
}

}  // namespace crmstream::alerts
