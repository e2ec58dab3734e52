// WorkerPool: every worker runs each batch once, worker 0 on the caller's
// thread, and what the workers wrote is the caller's to read after the
// batch; partition processors on workers, writing to their OutputBuffers,
// give what one thread gives. No Kafka, so these run under ThreadSanitizer
// (the tsan preset) too, where librdkafka's own threads do not.
#include "runtime/worker_pool.h"

#include <catch2/catch.hpp>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "crmstream/generator/world_generator.h"
#include "crmstream/pipeline/event_processor.h"
#include "runtime/at_least_once_delivery.h"
#include "support/require_ok.h"

namespace crmstream::runtime {
namespace {

// Each worker adds its slice of the batch's numbers into its own slot.
class SumJob final : public BatchJob {
 public:
  explicit SumJob(int workers) : sums_(static_cast<size_t>(workers)) {}
  void RunWorker(int worker) override {
    const auto w = static_cast<size_t>(worker);
    threads_[w] = std::this_thread::get_id();
    for (size_t i = w; i < input.size(); i += sums_.size()) sums_[w] += input[i];
    ++runs_[w];
  }
  std::vector<uint64_t> input;  // written by the caller between batches
  uint64_t Total() const {
    uint64_t t = 0;
    for (uint64_t s : sums_) t += s;
    return t;
  }
  std::vector<uint64_t> sums_;
  std::vector<int> runs_ = std::vector<int>(sums_.size());
  std::vector<std::thread::id> threads_ = std::vector<std::thread::id>(sums_.size());
};

// Every output forwarded to it, as "kind\tkey\tvalue", in order.
class RecordingSink final : public pipeline::OutputSink {
 public:
  void Emit(OutputKind kind, std::string_view key, std::string_view value) override {
    records.push_back(std::string(OutputKindName(kind)) + "\t" + std::string(key) + "\t" +
                      std::string(value));
  }
  std::vector<std::string> records;
};

// Partitions of generated events processed batch by batch, as the engine
// does at least once: each batch's records, then every task's scores
// refreshed, then the buffered outputs forwarded (engine thread).
class PartitionsJob final : public BatchJob {
 public:
  static constexpr int kPartitions = 6;

  PartitionsJob(int workers, const std::vector<std::vector<std::string>>& input)
      : workers_(workers), input_(input) {
    for (int p = 0; p < kPartitions; ++p) {
      buffers_.push_back(std::make_unique<OutputBuffer>());
      auto processor = pipeline::EventProcessor::Create({}, buffers_.back().get());
      REQUIRE_OK(processor);
      processors_.push_back(std::move(processor).value());
    }
  }
  // Batch after batch of `batch` records a partition, on `pool`.
  void Run(WorkerPool* pool, size_t batch, std::array<RecordingSink, kPartitions>* out) {
    batch_ = batch;
    for (begin_ = 0; begin_ < input_[0].size(); begin_ += batch_) {
      pool->RunBatch(this);
      for (int p = 0; p < kPartitions; ++p) buffers_[p]->ForwardTo(&(*out)[p]);
    }
    for (int p = 0; p < kPartitions; ++p) {
      processors_[p]->FlushOutputs();
      buffers_[p]->ForwardTo(&(*out)[p]);
    }
  }
  void RunWorker(int worker) override {
    for (int p = worker; p < kPartitions; p += workers_) {
      const auto& records = input_[static_cast<size_t>(p)];
      for (size_t i = begin_; i < std::min(records.size(), begin_ + batch_); ++i) {
        processors_[p]->Process(records[i], {"in", p, static_cast<int64_t>(i)}, 0);
      }
      processors_[p]->RefreshScores();
    }
  }

 private:
  int workers_;
  const std::vector<std::vector<std::string>>& input_;
  std::vector<std::unique_ptr<OutputBuffer>> buffers_;
  std::vector<std::unique_ptr<pipeline::EventProcessor>> processors_;
  size_t begin_ = 0, batch_ = 0;
};

}  // namespace

TEST_CASE("Partition processors on worker threads give the outputs of one thread", "[runtime]") {
  // 6 partitions of the same length (the generator's events by customer).
  generator::WorldOptions world;
  world.customers = 300;
  world.malformed_rate = 0.01;
  REQUIRE_OK_AND_ASSIGN(auto gen, generator::WorldGenerator::Create(world));
  std::vector<std::vector<std::string>> input(PartitionsJob::kPartitions);
  std::string key, value;
  while (input[0].size() < 3000 || input.back().size() < 3000) {
    gen->Next(&key, &value);
    auto& partition = input[std::hash<std::string>{}(key) % input.size()];
    if (partition.size() < 3000) partition.push_back(value);
  }
  std::array<RecordingSink, PartitionsJob::kPartitions> one;
  {
    WorkerPool pool(1);
    PartitionsJob(1, input).Run(&pool, 128, &one);
  }
  size_t outputs = 0;
  for (const auto& sink : one) outputs += sink.records.size();
  REQUIRE(outputs > 3000);
  for (int workers : {2, 3}) {
    INFO(workers << " workers");
    std::array<RecordingSink, PartitionsJob::kPartitions> many;
    WorkerPool pool(workers);
    PartitionsJob(workers, input).Run(&pool, 128, &many);
    // Each partition's outputs, byte for byte and in order.
    for (int p = 0; p < PartitionsJob::kPartitions; ++p) CHECK(many[p].records == one[p].records);
  }
}

TEST_CASE("WorkerPool runs every worker once per batch and hands their results back", "[runtime]") {
  for (int workers : {1, 2, 3, 5}) {
    INFO(workers << " workers");
    WorkerPool pool(workers);
    CHECK(pool.workers() == workers);
    SumJob job(workers);
    uint64_t expected = 0;
    constexpr int kBatches = 2000;
    for (int b = 0; b < kBatches; ++b) {
      job.input.assign(static_cast<size_t>(1 + b % 97), static_cast<uint64_t>(b));
      expected += job.input.size() * static_cast<uint64_t>(b);
      pool.RunBatch(&job);
      // Read right after the batch, with no other synchronisation.
      REQUIRE(job.Total() == expected);
    }
    for (int w = 0; w < workers; ++w) CHECK(job.runs_[static_cast<size_t>(w)] == kBatches);
    // Worker 0 is the caller; the others are threads of their own.
    CHECK(job.threads_[0] == std::this_thread::get_id());
    for (int w = 1; w < workers; ++w) {
      CHECK(job.threads_[static_cast<size_t>(w)] != std::this_thread::get_id());
      CHECK(job.threads_[static_cast<size_t>(w)] != job.threads_[0]);
    }
  }
}

}  // namespace crmstream::runtime
