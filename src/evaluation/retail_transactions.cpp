#include "crmstream/evaluation/retail_transactions.h"

#include <algorithm>
#include <limits>

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
  std::string_view fields[kColumns + 1];
  size_t pos = 0;
  bool header = true;
  while (pos < csv.size()) {
    size_t end = csv.find('\n', pos);
    if (end == std::string_view::npos) end = csv.size();
    std::string_view line = csv.substr(pos, end - pos);
    pos = end + 1;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (header) {
      header = false;
      if (line.substr(0, 9) == "InvoiceNo") continue;
    }
    if (line.empty()) continue;
    ++counts.lines;
    if (SplitCsvLine(line, fields, kColumns + 1) != kColumns) {
      ++counts.malformed;
      continue;
    }
    if (fields[kCustomerId].empty()) {
      ++counts.missing_customer;
      continue;
    }
    RetailLine l;
    int64_t quantity = 0, minutes = 0;
    if (!ParseCustomerId(fields[kCustomerId], &l.customer) ||
        !ParseInt(fields[kQuantity], &quantity) ||
        !ParseDouble(fields[kUnitPrice], &l.unit_price) ||
        !ParseInvoiceMinutes(fields[kInvoiceDate], &minutes) || fields[kInvoiceNo].empty() ||
        fields[kStockCode].empty() || quantity < std::numeric_limits<int32_t>::min() ||
        quantity > std::numeric_limits<int32_t>::max()) {
      ++counts.malformed;
      continue;
    }
    if (quantity < 0) ++counts.negative_quantity;
    ++counts.kept;
    l.quantity = static_cast<int32_t>(quantity);
    l.timestamp_ms = minutes * kMsPerMinute;
    l.invoice = fields[kInvoiceNo];
    l.stock_code = fields[kStockCode];
    t.first_ms = std::min(t.first_ms, l.timestamp_ms);
    t.last_ms = std::max(t.last_ms, l.timestamp_ms);
    t.lines.push_back(l);
  }
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

}  // namespace crmstream::evaluation
