// Restore errors end up in the engine's error log: they locate the broken
// customer without naming it (customer ids are personal data).
#include <catch2/catch.hpp>

#include "crmstream/pipeline/event_processor.h"
#include "crmstream/pipeline/partition_checkpoint.h"
#include "crmstream/state/state_store.h"
#include "recording_sink.h"
#include "support/require_ok.h"
#include "support/test_support.h"

namespace crmstream::pipeline {
namespace {

TEST_CASE("a corrupt customer record fails the restore without naming the customer", "[pipeline]") {
  crmstream::testing::ScratchDir dir;
  state::StateStoreOptions options;
  options.path = dir.path() / "store";
  REQUIRE_OK_AND_ASSIGN(auto store, state::StateStore::Open(options));
  const state::PartitionKey key{1, 0};
  const std::string customer = "jane.doe@example.com";
  state::CheckpointBatch batch = store->NewBatch();
  batch.PutFeatures(key, customer, "not a features blob");
  REQUIRE_OK(store->Commit(&batch));

  RecordingSink sink;
  REQUIRE_OK_AND_ASSIGN(auto processor, EventProcessor::Create(ProcessorOptions{}, &sink));
  auto restored = RestoreProcessor(*store, key, processor.get());
  REQUIRE_FALSE(restored.ok());
  const std::string message = restored.status().ToString();
  INFO(message);
  CHECK(message.find("customer #1") != std::string::npos);
  CHECK(message.find("jane") == std::string::npos);
  CHECK(message.find("example.com") == std::string::npos);
}

}  // namespace
}  // namespace crmstream::pipeline
