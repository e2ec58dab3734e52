// The simulation behind WorldGenerator: customer slots with their pending
// actions in an indexed heap, thinned Poisson processes for each event type,
// fades before churn, anomaly windows and injected faults. Private to the
// generator module. Not thread-safe.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "crmstream/common/json_writer.h"
#include "crmstream/generator/ground_truth.h"
#include "crmstream/generator/world_options.h"
#include "generator/random.h"
#include "generator/slot_heap.h"

namespace crmstream::generator {

// One customer slot. A slot holds an active customer, or is vacant while
// waiting for the arrival of the replacement of a closed account.
struct Customer {
  // Pending actions (epoch ms; kNever when none). Every one is < close_ms.
  int64_t next_candidate_ms;  // next candidate of the thinned process
  int64_t next_page_ms;       // next page view of the current session
  int64_t next_burst_ms;      // next refund of an injected burst
  int64_t downgrade_ms;       // the fade's plan downgrade
  int64_t close_ms;           // account_closed (or, when vacant, the arrival)
  int64_t fade_start_ms;
  int64_t bad_start_ms;  // the current or next bad week
  int64_t bad_end_ms;
  int64_t mature_ms;  // when a newcomer takes its mature segment
  int64_t burst_start_ms;
  int64_t burst_span_ms;
  double activity;      // multiplies every rate of this customer
  double bound_per_ms;  // thinning bound: >= the sum of all rates, always
  double log_value;     // shifts the log of this customer's amounts
  float app_share;      // of digital events, the share from the app (else web)
  float store_share;    // of purchases, the share in store
  uint32_t number;      // the customer id is "C" + this, zero-padded to 8 digits
  int32_t pages_left;   // page views left in the current session
  int16_t burst_index;  // next refund of the burst, of burst_total
  int16_t burst_total;  // 0: no burst in progress
  uint8_t segment;
  uint8_t mature_segment;
  uint8_t plan;      // 0 basic, 1 plus, 2 premium
  uint8_t currency;  // index into the currency table
  bool vacant;
  uint8_t id_len;
  char id[14];

  std::string_view customer_id() const { return {id, id_len}; }
};

class WorldState {
 public:
  // `options` must be valid.
  explicit WorldState(const WorldOptions& options);

  int64_t Next(std::string* key, std::string* value);
  int64_t now_ms() const { return now_ms_; }
  const WorldOptions& options() const { return options_; }
  const GroundTruth& ground_truth() const { return truth_; }
  std::vector<ChurnerTruth> FadingCustomers() const;
  std::vector<CustomerTruth> Customers() const;
  void SetGroundTruthSink(std::function<void(std::string_view)> sink) { sink_ = std::move(sink); }
  void GroundTruthJson(std::string* out) const;

 private:
  // A global anomaly process: the current or next window [start, end).
  struct Window {
    int64_t start_ms;
    int64_t end_ms;
    bool recorded;
  };
  struct CustomerRecord {
    int64_t joined_ms;
    uint8_t segment;
  };

  void CreateCustomer(uint32_t slot, int64_t now, bool initial);
  double ComputeBound(const Customer& c) const;
  int64_t NextActionTime(const Customer& c) const;
  int64_t CandidateAfter(const Customer& c, int64_t t);
  // The event type accepted at candidate time t, or -1 when thinned away.
  int Evaluate(Customer& c, int64_t t);
  void Mature(Customer& c);
  void AdvanceWindows(int64_t t);
  void AdvanceWindow(Window* w, AnomalyKind kind, double per_day, double min_h, double max_h,
                     int64_t t);
  void TriggerRefundBurst(int64_t t);
  int64_t BurstRefundTime(const Customer& c, int index);
  void CloseAccount(uint32_t slot, int64_t t);

  int DrawChannel(const Customer& c, int type);
  double DrawAmount(const Customer& c);
  // Writes the event, counts it, and decides whether a duplicate or a
  // malformed record follows.
  int64_t Emit(const Customer& c, int64_t t, int type, std::string* key, std::string* value);
  void WriteEvent(const Customer& c, int64_t t, int type, int channel, double amount, int plan,
                  std::string* value);
  int64_t EmitMalformed(std::string* key, std::string* value);
  void WriteTimestamp(JsonWriter* w, int64_t t) const;
  void RecordAnomaly(AnomalyKind kind, std::string_view customer_id, int64_t start, int64_t end);
  void Publish();  // sends sink_line_ to the sink

  WorldOptions options_;
  Rng rng_;    // the world
  Rng noise_;  // duplicates and malformed records, so they never change the world
  std::vector<Customer> slots_;
  SlotHeap heap_;
  std::array<double, 24> diurnal_{};
  double base_hazard_per_day_ = 0;
  uint32_t next_number_ = 1;
  int64_t now_ms_;

  Window outage_{};
  Window revenue_drop_{};
  int64_t next_burst_trigger_ms_;

  std::string event_id_prefix_;      // "e-<seed>-"
  std::string malformed_id_prefix_;  // "m-<seed>-"
  bool pending_duplicate_ = false;
  std::string duplicate_key_;
  std::string duplicate_value_;
  bool pending_malformed_ = false;
  std::string malformed_customer_;

  GroundTruth truth_;
  std::vector<CustomerRecord> customers_;  // by customer number - the first
  std::function<void(std::string_view)> sink_;
  std::string sink_line_;
};

}  // namespace crmstream::generator
