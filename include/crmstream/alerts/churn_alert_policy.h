// When a churn score becomes a churn alert (crm.churn-alerts).
//
// A customer's churn probability is evaluated from time to time (the event
// processor does it once per output flush for the customers that had
// events). The policy turns that series into few, actionable alerts:
//
// - Threshold with hysteresis: an alert episode opens when the probability
//   reaches `enter_probability`; the customer is re-armed only once the
//   probability falls below the lower `exit_probability`, so a score
//   hovering around the threshold does not alert at every evaluation.
// - Cool-down, in event time: a new episode opens only when at least
//   `cooldown_ms` have passed since the customer's previous alert; a crossing
//   inside the cool-down leaves the customer armed, so it alerts as soon as
//   the cool-down is over if the score is still high.
// - Severity by probability band: warning, high, critical.
// - A stable alert id: a hash of the customer id and the episode's start
//   time (the event time of the evaluation that opened it). The same input
//   evaluated at the same points gives the same ids, so a re-processed input
//   reproduces them and a consumer can deduplicate on the id.
//
// The per-customer state is 16 bytes (CustomerAlertState) kept by the
// caller beside its other per-customer state; EncodeCustomerState /
// DecodeCustomerState and EncodeGlobalState / DecodeGlobalState give the
// checkpoint formats (versioned, exact round trip, corrupt input rejected).
//
// Thread-safety: Evaluate() mutates the given customer state and the
// policy's counters: one policy per partition task, single-threaded. Const
// methods may run concurrently with each other. Nothing allocates except the
// Encode* functions (into the caller's string).
#pragma once

#include <array>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>

#include "crmstream/common/status.h"

namespace crmstream::alerts {

enum class Severity : uint8_t { kWarning = 0, kHigh, kCritical };
inline constexpr int kSeverityCount = 3;
// Names in Severity order (alert records, metric labels).
inline constexpr std::array<std::string_view, kSeverityCount> kSeverityNames = {"warning", "high",
                                                                                "critical"};
inline constexpr std::string_view SeverityName(Severity s) {
  return kSeverityNames[static_cast<size_t>(s)];
}

struct ChurnAlertPolicyOptions {
  // An episode opens (and an alert is raised) at a probability >= this.
  // In (0, 1]. Default 0.4 (docs/outputs.md: the trade-off measured on the
  // generator's ground truth).
  double enter_probability = 0.4;
  // The customer is re-armed when the probability falls below this.
  // In [0, enter_probability]. Default 0.3.
  double exit_probability = 0.3;
  // Severity bands: warning in [enter, high), high in [high, critical),
  // critical at >= critical. enter <= high <= critical <= 1. Defaults 0.55, 0.7.
  double high_probability = 0.55;
  double critical_probability = 0.7;
  // Minimum event time between two alerts of one customer, ms, >= 0.
  // Default 7 days.
  int64_t cooldown_ms = 7LL * 86'400'000;

  // InvalidArgument naming the first bad field.
  Status Validate() const;
};

// One customer's policy state: 16 bytes, trivially copyable.
struct CustomerAlertState {
  static constexpr int64_t kNever = std::numeric_limits<int64_t>::min();
  // Event time of the evaluation that opened the current episode; kNever
  // while the customer is armed (no open episode).
  int64_t episode_start_ms = kNever;
  // Event time of the customer's latest alert; kNever if none.
  int64_t last_alert_ms = kNever;

  bool armed() const { return episode_start_ms == kNever; }
  friend bool operator==(const CustomerAlertState&, const CustomerAlertState&) = default;
};

// What one evaluation decided.
struct AlertDecision {
  bool raise = false;  // publish an alert now
  Severity severity = Severity::kWarning;
  uint64_t alert_id = 0;  // valid when raise; AlertIdHex() formats it
};

// Counters of the policy (the global state of a partition's policy).
struct AlertCounters {
  uint64_t evaluations = 0;
  uint64_t alerts = 0;
  std::array<uint64_t, kSeverityCount> by_severity{};
  // Crossings of the enter level that the cool-down held back.
  uint64_t suppressed_by_cooldown = 0;
  // Episodes closed by the probability falling below the exit level.
  uint64_t rearms = 0;
  friend bool operator==(const AlertCounters&, const AlertCounters&) = default;
};

class ChurnAlertPolicy {
 public:
  // Format version of the encoded states (first byte of each encoding).
  static constexpr uint8_t kCustomerStateVersion = 1;
  static constexpr uint8_t kGlobalStateVersion = 1;
  static constexpr size_t kEncodedCustomerStateBytes = 17;

  // InvalidArgument naming the field when the options are invalid.
  static Result<ChurnAlertPolicy> Create(const ChurnAlertPolicyOptions& options);

  // Evaluates `probability` (NaN is ignored: no change) for the customer at
  // event time `as_of_ms` and updates `state`. Does not allocate.
  AlertDecision Evaluate(std::string_view customer_id, double probability, int64_t as_of_ms,
                         CustomerAlertState* state);

  // The band of a probability at or above the enter level.
  Severity SeverityOf(double probability) const;

  // Hash64 of the customer id and the episode's start time.
  static uint64_t AlertId(std::string_view customer_id, int64_t episode_start_ms);
  // 16 lower-case hex digits, into `out` (exactly 16 chars).
  static void AlertIdHex(uint64_t id, char out[16]);

  // Checkpoint formats. Customer: kEncodedCustomerStateBytes bytes appended
  // to `out` (version, episode start, last alert; little-endian).
  static void EncodeCustomerState(const CustomerAlertState& state, std::string* out);
  // Corruption on a wrong length or version; `state` unchanged on error.
  static Status DecodeCustomerState(std::string_view bytes, CustomerAlertState* state);
  // Global: the counters and the options they were produced with, appended
  // to `out`.
  void EncodeGlobalState(std::string* out) const;
  // Corruption on bad bytes; InvalidArgument if the state was written under
  // different thresholds or cool-down (an alert history under other rules
  // would not mean the same). The policy is unchanged on error.
  Status DecodeGlobalState(std::string_view bytes);

  const ChurnAlertPolicyOptions& options() const { return options_; }
  const AlertCounters& counters() const { return counters_; }

 private:
  explicit ChurnAlertPolicy(const ChurnAlertPolicyOptions& options) : options_(options) {}

  ChurnAlertPolicyOptions options_;
  AlertCounters counters_;
};

}  // namespace crmstream::alerts
