// The UCI Online Retail invoice lines as a time-ordered transaction stream,
// for the evaluations that replay it (recommendations, customer value,
// co-purchase rules). Lines without a CustomerID are left out, as the
// engine's feed sends them to the dead letters; the file is in invoice-time
// order and the order is kept.
//
// Stateless functions; safe to call from several threads.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "crmstream/common/status.h"
#include "crmstream/evaluation/retail.h"

namespace crmstream::evaluation {

inline constexpr int64_t kMsPerMinute = 60'000;
inline constexpr int64_t kMsPerDay = 86'400'000;

struct RetailLine {
  int64_t timestamp_ms = 0;  // the invoice's time (minute resolution, UTC)
  int64_t customer = 0;
  std::string_view invoice;     // InvoiceNo ("C..." for a cancellation)
  std::string_view stock_code;  // StockCode
  int32_t quantity = 0;         // negative on cancellations
  double unit_price = 0.0;

  bool cancellation() const { return !invoice.empty() && invoice.front() == 'C'; }
  // A purchase line: positive quantity on an invoice that is not a cancellation.
  bool purchase() const { return quantity > 0 && !cancellation(); }
  // Products have stock codes starting with a digit; the others are postage,
  // fees, discounts and manual adjustments (POST, DOT, M, D, BANK CHARGES...).
  bool product() const {
    return !stock_code.empty() && stock_code.front() >= '0' && stock_code.front() <= '9';
  }
  // Quantity * UnitPrice (negative for returned goods).
  double amount() const { return static_cast<double>(quantity) * unit_price; }
};

struct RetailTransactions {
  std::unique_ptr<const std::string> bytes;  // the file: the lines' views point into it
  std::vector<RetailLine> lines;             // with a CustomerID, in file (time) order
  RetailLoadCounts counts;                   // `negative_quantity` counts, but keeps, them
  int64_t first_ms = 0;
  int64_t last_ms = 0;
};

// Parses the file's bytes (any bytes: unparseable lines are counted as
// malformed). InvalidArgument when no line is usable.
Result<RetailTransactions> ParseRetailTransactions(std::string bytes);
// Reads <data_dir>/online-retail/online_retail.csv (or <data_dir>/online_retail.csv).
Result<RetailTransactions> LoadRetailTransactions(const std::filesystem::path& data_dir);

// The line as an input event, as pipelines/online-retail.yaml maps it: a
// purchase (or a refund), InvoiceNo the order, StockCode the item; event id
// "line-<index>".
std::string RetailEventJson(const RetailLine& line, size_t index);

}  // namespace crmstream::evaluation
