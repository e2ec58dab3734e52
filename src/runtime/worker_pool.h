// Processing threads for the run loop: the loop hands each consumed batch
// to N workers at once and waits for them all (fork-join per batch). The
// calling thread is worker 0, so one worker is the loop alone, with no
// thread and no hand-over. Between two batches every worker is parked: the
// loop's other steps (rebalance callbacks, checkpoints, queries) see the
// tasks as one thread would, with no lock on the tasks themselves.
//
// One hand-over per batch: an atomic epoch bumped and waited on (futex),
// never a lock nor an allocation per batch or per event.
//
// Thread-safety: RunBatch from one thread (the loop's) at a time.
#pragma once

#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

namespace crmstream::runtime {

// What each worker does with a batch.
class BatchJob {
 public:
  virtual ~BatchJob() = default;
  // Worker `worker` (0 .. workers - 1) processes its share.
  virtual void RunWorker(int worker) = 0;
};

class WorkerPool {
 public:
  // `workers` >= 1; workers - 1 threads are started.
  explicit WorkerPool(int workers);
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  int workers() const { return static_cast<int>(threads_.size()) + 1; }
  // Every worker runs `job` once (worker 0 on the calling thread); returns
  // when all have finished. What the workers wrote is visible after it.
  void RunBatch(BatchJob* job);

 private:
  void ThreadLoop(int worker);

  std::vector<std::thread> threads_;
  BatchJob* job_ = nullptr;  // written before the epoch is bumped
  std::atomic<uint64_t> epoch_{0};
  std::atomic<int> running_{0};  // helper threads still in the current batch
  std::atomic<bool> exit_{false};
};

}  // namespace crmstream::runtime
