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

TEST_CASE("a corrupt customer record fails its first load without naming the customer",
          "[pipeline]") {
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
  // Customers load on first touch: the restore itself reads none of them.
  REQUIRE_OK(RestoreProcessor(*store, key, processor.get()));
  processor->Process(
      R"({"event_id":"e1","customer_id":"jane.doe@example.com","timestamp":1767225600000,)"
      R"("type":"login"})",
      {"crm.events", 0, 0}, 0);
  REQUIRE_FALSE(processor->storage_status().ok());
  // No checkpoint may cover the state built on the failed load.
  std::string scratch;
  state::CheckpointBatch checkpoint = store->NewBatch();
  const Status added = AddToCheckpoint(*processor, 1, key, &checkpoint, &scratch);
  REQUIRE_FALSE(added.ok());
  for (const std::string& message : {processor->storage_status().ToString(), added.ToString()}) {
    INFO(message);
    CHECK(message.find("saved customer") != std::string::npos);
    CHECK(message.find("jane") == std::string::npos);
    CHECK(message.find("example.com") == std::string::npos);
  }
}

}  // namespace
}  // namespace crmstream::pipeline
