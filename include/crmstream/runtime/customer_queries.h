// Reads of one customer's current record on behalf of other threads (the
// admin server's /api/customers/{id}, /api/customers/{id}/recommendations, and
// /api/associations?item=X for an item's co-purchase rules). The customer's state belongs to the
// engine thread, so a reader queues a CustomerQuery and the engine thread
// answers the queue between batches.
//
// Thread-safety: Submit() from any thread; Open/Close/Take from the engine
// thread. A CustomerQuery's status() and json() are set before done() turns
// true (release/acquire) and never change afterwards.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "crmstream/common/status.h"

namespace crmstream::runtime {

// What a query reads.
enum class QueryKind : uint8_t {
  kCustomer,         // the customer's crm.customer-scores record
  kRecommendations,  // the customer's recommendations (EventProcessor::WriteRecommendations)
  kAssociations,     // the rules of an item, customer_id() being the item (WriteAssociationsFor)
};

class CustomerQuery {
 public:
  explicit CustomerQuery(std::string customer_id, QueryKind kind = QueryKind::kCustomer)
      : customer_id_(std::move(customer_id)), kind_(kind) {}
  const std::string& customer_id() const { return customer_id_; }
  QueryKind kind() const { return kind_; }
  bool done() const { return done_.load(std::memory_order_acquire); }
  // OK, NotFound (unknown customer) or Unavailable (engine stopped, state
  // being rebuilt).
  const Status& status() const { return status_; }
  // The customer's record: the JSON of its crm.customer-scores record plus
  // "topic" and "partition" of the task that owns it.
  const std::string& json() const { return json_; }

  // The engine thread's answer (json first, then Finish).
  std::string* mutable_json() { return &json_; }
  void Finish(Status status) {
    status_ = std::move(status);
    done_.store(true, std::memory_order_release);
  }

 private:
  std::string customer_id_;
  QueryKind kind_;
  Status status_;
  std::string json_;
  std::atomic<bool> done_{false};
};

class CustomerQueries {
 public:
  static constexpr size_t kMaxQueued = 64;

  // Queues a read. Unavailable while the engine loop is not running or when
  // kMaxQueued reads are already waiting.
  Result<std::shared_ptr<const CustomerQuery>> Submit(std::string customer_id,
                                                      QueryKind kind = QueryKind::kCustomer);
  // One relaxed load: whether Take() would return anything.
  bool pending() const { return pending_.load(std::memory_order_relaxed); }
  // The queued reads, for the engine thread to answer.
  std::vector<std::shared_ptr<CustomerQuery>> Take();
  // The loop runs: Submit accepts reads.
  void Open();
  // The loop stopped: every waiting read is answered Unavailable, and later
  // ones are refused.
  void Close();

 private:
  std::mutex mutex_;
  bool open_ = false;
  std::vector<std::shared_ptr<CustomerQuery>> queued_;
  std::atomic<bool> pending_{false};
};

}  // namespace crmstream::runtime
