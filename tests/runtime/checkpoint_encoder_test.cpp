// CheckpointEncoder: partition tasks' checkpoints encoded on worker threads
// hold the bytes one thread encoding task after task gives, so the store
// and the changelog (mirrored from the batch's entries) do not depend on
// the worker count. No Kafka, so these run under ThreadSanitizer (the tsan
// preset) too.
#include "runtime/checkpoint_encoder.h"

#include <catch2/catch.hpp>
#include <memory>
#include <string>
#include <vector>

#include "crmstream/generator/world_generator.h"
#include "crmstream/pipeline/partition_checkpoint.h"
#include "crmstream/schema/output_kind.h"
#include "support/require_ok.h"
#include "support/test_support.h"

namespace crmstream::runtime {
namespace {

class DiscardingSink final : public pipeline::OutputSink {
 public:
  void Emit(schema::OutputKind, std::string_view, std::string_view) override { ++outputs; }
  size_t outputs = 0;
};

constexpr int kPartitions = 6;

}  // namespace

TEST_CASE("Checkpoints encoded on worker threads are the bytes one thread encodes", "[runtime]") {
  testing::ScratchDir dir;
  state::StateStoreOptions options;
  options.path = dir.path() / "store";
  options.memory_cap_bytes = size_t{32} << 20;
  options.identity = "crm-engine/crm-pipeline";
  REQUIRE_OK_AND_ASSIGN(auto store, state::StateStore::Open(options));

  // Partitions of different sizes (the generator's events by customer), so
  // that the workers finish their tasks in no fixed order.
  generator::WorldOptions world;
  world.customers = 400;
  world.malformed_rate = 0.01;
  REQUIRE_OK_AND_ASSIGN(auto gen, generator::WorldGenerator::Create(world));
  DiscardingSink sink;
  std::vector<std::unique_ptr<pipeline::EventProcessor>> processors;
  std::vector<CheckpointPart> parts;
  for (int p = 0; p < kPartitions; ++p) {
    REQUIRE_OK_AND_ASSIGN(auto processor, pipeline::EventProcessor::Create({}, &sink));
    processors.push_back(std::move(processor));
    REQUIRE_OK_AND_ASSIGN(const state::PartitionKey key, store->Partition("in", p));
    parts.push_back({processors.back().get(), static_cast<uint64_t>(100 + p), key});
  }
  std::string key, value;
  for (int64_t i = 0; i < 12000; ++i) {
    gen->Next(&key, &value);
    const size_t p = std::hash<std::string>{}(key) % (2 * kPartitions);
    processors[p < kPartitions ? p : 0]->Process(value, {"in", static_cast<int32_t>(p), i}, 0);
  }
  // A checkpoint is taken at a refresh boundary.
  for (auto& processor : processors) processor->FlushOutputs();
  REQUIRE(sink.outputs > 1000);
  const auto offsets = [&](size_t i, state::CheckpointBatch* batch) {
    batch->SetInputOffset(parts[i].key, 1000 + static_cast<int64_t>(i));
  };

  state::CheckpointBatch one = store->NewBatch();
  CheckpointEncoder serial(store.get(), nullptr);
  REQUIRE_OK(serial.Encode(parts, &one, offsets));
  // Every task's customers, models, schedules, dedup window and offset.
  REQUIRE(one.entry_count() > 800);
  const std::string expected(one.bytes());

  for (int workers : {2, 3, 4}) {
    INFO(workers << " workers");
    WorkerPool pool(workers);
    CheckpointEncoder encoder(store.get(), &pool);
    state::CheckpointBatch many = store->NewBatch();
    // Twice: the second reuses the tasks' batches of the first.
    for (int round = 0; round < 2; ++round) {
      REQUIRE_OK(encoder.Encode(parts, &many, offsets));
      CHECK(many.entry_count() == one.entry_count());
      CHECK(many.bytes() == expected);
      many.Clear();
    }
    // Fewer tasks than workers.
    REQUIRE_OK(encoder.Encode(std::span(parts).first(1), &many, offsets));
    state::CheckpointBatch first = store->NewBatch();
    REQUIRE_OK(serial.Encode(std::span(parts).first(1), &first, offsets));
    CHECK(many.bytes() == first.bytes());
  }

  // What the workers encoded is a checkpoint a task restores from.
  WorkerPool pool(3);
  CheckpointEncoder encoder(store.get(), &pool);
  state::CheckpointBatch batch = store->NewBatch();
  REQUIRE_OK(encoder.Encode(parts, &batch, offsets));
  REQUIRE_OK(store->Commit(&batch));
  for (auto& processor : processors) pipeline::MarkCheckpointed(processor.get());
  REQUIRE_OK_AND_ASSIGN(auto restored, pipeline::EventProcessor::Create({}, &sink));
  REQUIRE_OK_AND_ASSIGN(const uint64_t sequence,
                        pipeline::RestoreProcessor(*store, parts[3].key, restored.get()));
  CHECK(sequence == 103);
  REQUIRE_OK_AND_ASSIGN(const state::PartitionState partition, store->GetPartition(parts[3].key));
  CHECK(partition.input_offset == 1003);
}

}  // namespace crmstream::runtime
