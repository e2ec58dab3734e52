#include "crmstream/evaluation/retail_transactions.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "crmstream/common/json_writer.h"
#include "retail_csv.h"

namespace crmstream::evaluation {

Result<RetailTransactions> ParseRetailTransactions(std::string bytes) {
  using namespace internal;
  RetailTransactions t;
  auto owned = std::make_unique<const std::string>(std::move(bytes));
  const std::string_view csv(*owned);
  t.bytes = std::move(owned);
  t.lines.reserve(csv.size() / 96);
  RetailLoadCounts& counts = t.counts;
  t.first_ms = std::numeric_limits<int64_t>::max();
  t.last_ms = std::numeric_limits<int64_t>::min();
  ForEachRetailLine(csv, &counts, [&](const ParsedRetailLine& p) {
    if (p.stock_code.empty() || p.quantity < std::numeric_limits<int32_t>::min() ||
        p.quantity > std::numeric_limits<int32_t>::max()) {
      ++counts.malformed;
      return;
    }
    if (p.quantity < 0) ++counts.negative_quantity;
    ++counts.kept;
    RetailLine l;
    l.customer = p.customer;
    l.quantity = static_cast<int32_t>(p.quantity);
    l.unit_price = p.unit_price;
    l.timestamp_ms = p.minutes * kMsPerMinute;
    l.invoice = p.invoice;
    l.stock_code = p.stock_code;
    t.first_ms = std::min(t.first_ms, l.timestamp_ms);
    t.last_ms = std::max(t.last_ms, l.timestamp_ms);
    t.lines.push_back(l);
  });
  if (t.lines.empty()) return Status::InvalidArgument("online retail: no usable lines");
  return t;
}

Result<RetailTransactions> LoadRetailTransactions(const std::filesystem::path& data_dir) {
  const std::filesystem::path file = internal::RetailFile(data_dir);
  CRM_ASSIGN_OR_RETURN(std::string bytes, internal::ReadFileBytes(file));
  auto t = ParseRetailTransactions(std::move(bytes));
  if (!t.ok()) return t.status().WithContext(file.string());
  return t;
}

std::string RetailEventJson(const RetailLine& line, size_t index) {
  std::string out;
  JsonWriter w(&out);
  w.BeginObject();
  w.Field("event_id", "line-" + std::to_string(index));
  w.Field("customer_id", std::to_string(line.customer));
  w.Field("timestamp", line.timestamp_ms);
  w.Field("type", std::string_view(line.purchase() ? "purchase" : "refund"));
  w.Field("amount", std::fabs(line.amount()));
  w.Field("currency", std::string_view("GBP"));
  w.Field("order_id", line.invoice);
  w.Field("item_id", line.stock_code);
  w.EndObject();
  return out;
}

}  // namespace crmstream::evaluation
