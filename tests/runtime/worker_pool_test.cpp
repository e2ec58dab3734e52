// WorkerPool: every worker runs each batch once, worker 0 on the caller's
// thread, and what the workers wrote is the caller's to read after the
// batch (run under ThreadSanitizer by the tsan preset).
#include "runtime/worker_pool.h"

#include <catch2/catch.hpp>
#include <thread>
#include <vector>

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

}  // namespace

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
