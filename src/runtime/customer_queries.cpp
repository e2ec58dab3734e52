#include "crmstream/runtime/customer_queries.h"

namespace crmstream::runtime {

Result<std::shared_ptr<const CustomerQuery>> CustomerQueries::Submit(std::string customer_id,
                                                                     QueryKind kind) {
  auto query = std::make_shared<CustomerQuery>(std::move(customer_id), kind);
  std::lock_guard lock(mutex_);
  if (!open_) return Status::Unavailable("engine loop is not running");
  if (queued_.size() >= kMaxQueued) return Status::Unavailable("too many queries waiting");
  queued_.push_back(query);
  pending_.store(true, std::memory_order_relaxed);
  return std::shared_ptr<const CustomerQuery>(std::move(query));
}

std::vector<std::shared_ptr<CustomerQuery>> CustomerQueries::Take() {
  std::vector<std::shared_ptr<CustomerQuery>> taken;
  std::lock_guard lock(mutex_);
  taken.swap(queued_);
  pending_.store(false, std::memory_order_relaxed);
  return taken;
}

void CustomerQueries::Open() {
  std::lock_guard lock(mutex_);
  open_ = true;
}

void CustomerQueries::Close() {
  std::lock_guard lock(mutex_);
  open_ = false;
  for (auto& q : queued_) q->Finish(Status::Unavailable("engine loop stopped"));
  queued_.clear();
  pending_.store(false, std::memory_order_relaxed);
}

}  // namespace crmstream::runtime
