// A simulated CRM world that emits customer interaction events as JSON
// records (docs/generator.md): customers with latent segments, value and
// churn hazard; churners whose activity fades before they close their
// account; optional anomalies, malformed records and duplicates, all
// recorded in a ground truth.
//
// The generator knows nothing of Kafka or files: Next() writes one record's
// key (the customer id) and value (JSON) into caller-owned strings, and the
// caller sends them where it likes. Records come in non-decreasing event time
// and as fast as they are asked for; pacing in wall time is the caller's job.
// The stream is a pure function of the WorldOptions (seed included).
//
// Steady state allocates nothing per event (the ground truth grows by one
// entry per churner, anomaly or malformed record). Not thread-safe: one
// generator per thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "crmstream/common/status.h"
#include "crmstream/generator/ground_truth.h"
#include "crmstream/generator/world_options.h"

namespace crmstream::generator {

class WorldState;  // the simulation; defined in src/generator

class WorldGenerator {
 public:
  // Validates the options (InvalidArgument naming the field) and builds the
  // initial population.
  static Result<std::unique_ptr<WorldGenerator>> Create(WorldOptions options);
  ~WorldGenerator();
  WorldGenerator(const WorldGenerator&) = delete;
  WorldGenerator& operator=(const WorldGenerator&) = delete;

  // Replaces `*key` with the next record's Kafka key (its customer id; for
  // a malformed record, that of the event it follows) and `*value` with the
  // record, and returns its event time (epoch ms). Never fails, never ends.
  int64_t Next(std::string* key, std::string* value);

  // Event time of the last record returned; start_ms before the first.
  int64_t now_ms() const;
  const WorldOptions& options() const;
  const GroundTruth& ground_truth() const;

  // Customers whose fade has begun but whose account is still open, with
  // their planned closing time (what a churn model should be alerting on).
  std::vector<ChurnerTruth> FadingCustomers() const;
  // Every customer created so far (closed ones included) with its segment.
  std::vector<CustomerTruth> Customers() const;

  // Called with one JSON line (no trailing newline) per ground-truth item as
  // soon as it is known: {"record":"churner",...}, {"record":"anomaly",...},
  // {"record":"malformed",...}. Duplicates are only counted, not streamed.
  // Empty function: no streaming (the default).
  void SetGroundTruthSink(std::function<void(std::string_view json_line)> sink);

  // The whole ground truth as one JSON document (schema in docs/generator.md).
  void GroundTruthJson(std::string* out) const;
  // Writes GroundTruthJson() to `path` (replacing it); IOError on failure.
  Status WriteGroundTruth(const std::string& path) const;

 private:
  explicit WorldGenerator(std::unique_ptr<WorldState> state);
  std::unique_ptr<WorldState> state_;
};

}  // namespace crmstream::generator
