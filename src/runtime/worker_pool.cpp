#include "runtime/worker_pool.h"

#include <pthread.h>

#include <string>

namespace crmstream::runtime {

WorkerPool::WorkerPool(int workers) {
  threads_.reserve(static_cast<size_t>(workers > 1 ? workers - 1 : 0));
  for (int w = 1; w < workers; ++w) threads_.emplace_back([this, w] { ThreadLoop(w); });
}

WorkerPool::~WorkerPool() {
  exit_.store(true, std::memory_order_relaxed);
  epoch_.fetch_add(1, std::memory_order_release);
  epoch_.notify_all();
  for (auto& t : threads_) t.join();
}

void WorkerPool::RunBatch(BatchJob* job) {
  if (threads_.empty()) {
    job->RunWorker(0);
    return;
  }
  job_ = job;
  running_.store(static_cast<int>(threads_.size()), std::memory_order_relaxed);
  // Release: the job and everything the loop wrote before (the batch, the
  // tasks) happen before the workers read them.
  epoch_.fetch_add(1, std::memory_order_release);
  epoch_.notify_all();
  job->RunWorker(0);
  // Acquire: what the workers wrote is visible once their count is 0.
  for (int left = running_.load(std::memory_order_acquire); left != 0;
       left = running_.load(std::memory_order_acquire)) {
    running_.wait(left, std::memory_order_acquire);
  }
}

void WorkerPool::ThreadLoop(int worker) {
  // Named, so that per-thread CPU (top -H, perf, /proc) tells the workers
  // from librdkafka's and RocksDB's threads (at most 15 characters).
  const std::string name = "crm:worker" + std::to_string(worker);
  pthread_setname_np(pthread_self(), name.c_str());
  uint64_t seen = 0;
  while (true) {
    epoch_.wait(seen, std::memory_order_acquire);
    seen = epoch_.load(std::memory_order_acquire);
    if (exit_.load(std::memory_order_relaxed)) return;
    job_->RunWorker(worker);
    if (running_.fetch_sub(1, std::memory_order_acq_rel) == 1) running_.notify_one();
  }
}

}  // namespace crmstream::runtime
