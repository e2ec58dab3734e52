// Outputs larger than the producer accepts (ProcessorOptions::
// max_output_bytes): the run with a bound is compared, output by output, with
// the same input run without one.
#include <simdjson.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "crmstream/generator/world_generator.h"
#include "crmstream/pipeline/event_processor.h"
#include "recording_sink.h"
#include "support/require_ok.h"

namespace crmstream::pipeline {
namespace {

constexpr int64_t kHour = 3'600'000;

// A generated world (customer ids padded to the longest the decoder takes,
// which makes its outputs large) run through one processor, flushed hourly
// as the engine's commits; `max_output_bytes` bounds the outputs, `by_kind`
// (max_output_bytes_by_kind) those of some kinds more tightly.
std::vector<RecordedOutput> RunWorld(size_t max_output_bytes,
                                     std::array<size_t, kOutputKindCount> by_kind = {}) {
  generator::WorldOptions wo;
  wo.seed = 5;
  wo.customers = 60;
  wo.anomalies.enabled = true;
  wo.malformed_rate = 0.02;
  REQUIRE_OK_AND_ASSIGN(auto gen, generator::WorldGenerator::Create(wo));
  ProcessorOptions options;
  options.max_output_bytes = max_output_bytes;
  options.max_output_bytes_by_kind = by_kind;
  RecordingSink sink;
  REQUIRE_OK_AND_ASSIGN(auto p, EventProcessor::Create(options, &sink));
  ingest::SourcePosition pos{"crm.interactions", 0, 0};
  std::string key, value;
  int64_t next_flush = 0;
  for (int i = 0; i < 20000; ++i) {
    const int64_t ts = gen->Next(&key, &value);
    if (next_flush == 0) next_flush = ts + kHour;
    if (ts >= next_flush) {
      p->FlushOutputs();
      next_flush += kHour;
    }
    (void)p->Process(value, pos, ts);
    ++pos.offset;
  }
  p->FlushOutputs();
  return sink.records;
}

TEST_CASE("An output over max_output_bytes becomes an output_too_large dead letter", "[pipeline]") {
  const std::vector<RecordedOutput> free_run = RunWorld(0);
  // The bound: the smallest allowed, or below the largest outputs.
  std::vector<size_t> sizes;
  for (const auto& r : free_run) {
    if (r.kind != OutputKind::kDeadLetter) sizes.push_back(r.key.size() + r.value.size());
  }
  REQUIRE(!sizes.empty());
  std::sort(sizes.begin(), sizes.end());
  const size_t bound =
      std::max(ProcessorOptions::kMinOutputBytes, sizes[sizes.size() - sizes.size() / 50 - 1]);
  INFO("largest output " << sizes.back() << " bytes, bound " << bound);
  REQUIRE(sizes.back() > bound);

  const std::vector<RecordedOutput> bounded_run = RunWorld(bound);
  // Output by output: the same, except that an output over the bound is a
  // dead letter naming its kind and size, with the output's start.
  REQUIRE(bounded_run.size() == free_run.size());
  simdjson::dom::parser parser;
  size_t replaced = 0;
  for (size_t i = 0; i < free_run.size(); ++i) {
    const RecordedOutput& want = free_run[i];
    const RecordedOutput& got = bounded_run[i];
    const size_t size = want.key.size() + want.value.size();
    CHECK(got.key.size() + got.value.size() <= bound);
    if (size <= bound) {
      CHECK(got.kind == want.kind);
      CHECK(got.key == want.key);
      CHECK(got.value == want.value);
      continue;
    }
    ++replaced;
    REQUIRE(got.kind == OutputKind::kDeadLetter);
    CHECK(got.key.empty());
    simdjson::dom::element doc = parser.parse(got.value);
    if (want.kind == OutputKind::kDeadLetter) {
      // A rejected record's dead letter keeps its reason, with less of the
      // original.
      simdjson::dom::element before = parser.parse(want.value);
      CHECK(std::string_view(doc["reason"]) == std::string(std::string_view(before["reason"])));
      CHECK(bool(doc["original_truncated"]));
      continue;
    }
    CHECK(std::string_view(doc["reason"]) == "output_too_large");
    CHECK(std::string_view(doc["field"]) == OutputKindName(want.kind));
    CHECK_THAT(std::string(std::string_view(doc["detail"])),
               Catch::Contains(std::to_string(size) + " bytes"));
    CHECK(std::string_view(doc["source"]["topic"]) == "crm.interactions");
    CHECK(int64_t(doc["source"]["offset"]) >= 0);
    CHECK(uint64_t(doc["original_size"]) == want.value.size());
    const std::string_view original = doc["original"];
    CHECK(!original.empty());
    CHECK(want.value.compare(0, original.size(), original) == 0);
  }
  CHECK(replaced > 0);
}

TEST_CASE("A kind's own bound replaces its larger outputs only", "[pipeline]") {
  // As an output topic whose max.message.bytes is below the producer's: the
  // segments records over their bound (the centroid snapshots, not the
  // segment changes) become dead letters; every other output is as without
  // bounds, however large.
  const std::vector<RecordedOutput> free_run = RunWorld(0);
  std::vector<size_t> segments;
  size_t largest_other = 0;
  for (const auto& r : free_run) {
    const size_t size = r.key.size() + r.value.size();
    if (r.kind == OutputKind::kSegments) {
      segments.push_back(size);
    } else {
      largest_other = std::max(largest_other, size);
    }
  }
  REQUIRE(segments.size() > 10);
  std::sort(segments.begin(), segments.end());
  const size_t bound = (segments.front() + segments.back()) / 2;
  INFO("segments bound " << bound << ", largest other output " << largest_other);
  REQUIRE(largest_other > bound);  // other kinds are not held to it

  std::array<size_t, kOutputKindCount> by_kind{};
  by_kind[static_cast<size_t>(OutputKind::kSegments)] = bound;
  const std::vector<RecordedOutput> bounded_run = RunWorld(1'000'000, by_kind);
  REQUIRE(bounded_run.size() == free_run.size());
  simdjson::dom::parser parser;
  size_t replaced = 0;
  for (size_t i = 0; i < free_run.size(); ++i) {
    const RecordedOutput& want = free_run[i];
    const RecordedOutput& got = bounded_run[i];
    const size_t size = want.key.size() + want.value.size();
    if (want.kind != OutputKind::kSegments || size <= bound) {
      CHECK(got.kind == want.kind);
      CHECK(got.key == want.key);
      CHECK(got.value == want.value);
      continue;
    }
    ++replaced;
    REQUIRE(got.kind == OutputKind::kDeadLetter);
    simdjson::dom::element doc = parser.parse(got.value);
    CHECK(std::string_view(doc["reason"]) == "output_too_large");
    CHECK(std::string_view(doc["field"]) == "segments");
    CHECK_THAT(std::string(std::string_view(doc["detail"])),
               Catch::Contains(std::to_string(size) + " bytes is over the " +
                               std::to_string(bound) + " bytes"));
    CHECK(uint64_t(doc["original_size"]) == want.value.size());
  }
  CHECK(replaced > 0);
  CHECK(replaced == static_cast<size_t>(std::count_if(segments.begin(), segments.end(),
                                                      [&](size_t s) { return s > bound; })));
}

TEST_CASE("A dead-letter bound below the smallest useful one is refused", "[pipeline]") {
  ProcessorOptions options;
  options.max_output_bytes = 1'000'000;
  options.max_output_bytes_by_kind[static_cast<size_t>(OutputKind::kDeadLetter)] =
      ProcessorOptions::kMinOutputBytes - 1;
  CHECK(options.Validate().code() == StatusCode::kInvalidArgument);
  CHECK_THAT(options.Validate().ToString(), Catch::Contains("dead letters"));
  // Other kinds may be bounded tighter: their outputs become dead letters.
  options.max_output_bytes_by_kind = {};
  options.max_output_bytes_by_kind[static_cast<size_t>(OutputKind::kSegments)] = 100;
  CHECK(options.Validate().ok());
  CHECK(options.OutputBound(OutputKind::kSegments) == 100);
  CHECK(options.OutputBound(OutputKind::kAnomalies) == 1'000'000);
}

TEST_CASE("max_output_bytes below the smallest useful bound is refused", "[pipeline]") {
  ProcessorOptions options;
  options.max_output_bytes = ProcessorOptions::kMinOutputBytes - 1;
  CHECK(options.Validate().code() == StatusCode::kInvalidArgument);
  CHECK_THAT(options.Validate().ToString(), Catch::Contains("max_output_bytes"));
}

}  // namespace
}  // namespace crmstream::pipeline
