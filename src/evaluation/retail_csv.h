// Internal to the evaluation module: reading the UCI Online Retail CSV
// (InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,
// Country), shared by the segmentation, recommendation, value and
// association-rule evaluations. Stateless functions; thread-safe.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

#include "crmstream/common/status.h"
#include "crmstream/evaluation/retail.h"

namespace crmstream::evaluation::internal {

inline constexpr int kColumns = 8;
inline constexpr int kInvoiceNo = 0;
inline constexpr int kStockCode = 1;
inline constexpr int kQuantity = 3;
inline constexpr int kInvoiceDate = 4;
inline constexpr int kUnitPrice = 5;
inline constexpr int kCustomerId = 6;

// Splits one CSV line (no line terminator) into fields. Quoted fields may hold
// commas and doubled quotes; the views keep the quotes' contents raw (no
// un-escaping: none of the numeric fields we read are quoted). Returns the
// number of fields, -1 for an unterminated quote, max_fields + 1 for too many.
int SplitCsvLine(std::string_view line, std::string_view* fields, int max_fields);

bool ParseInt(std::string_view s, int64_t* out);
bool ParseDouble(std::string_view s, double* out);

// Days since 1970-01-01 of a proleptic Gregorian date.
int64_t DaysFromCivil(int64_t y, int64_t m, int64_t d);

// Minutes since the epoch of "YYYY-MM-DD HH:MM[:SS]" (this copy of the data)
// or "M/D/YYYY H:MM" (the UCI original). Seconds are ignored: both sources
// have minute resolution.
bool ParseInvoiceMinutes(std::string_view s, int64_t* minutes);

// "17850.0" or "17850" -> 17850.
bool ParseCustomerId(std::string_view s, int64_t* id);

// <data_dir>/online-retail/online_retail.csv, or <data_dir>/online_retail.csv.
std::filesystem::path RetailFile(const std::filesystem::path& data_dir);

// The whole file; IOError naming it when it cannot be read.
Result<std::string> ReadFileBytes(const std::filesystem::path& file);

// One line with a CustomerID, its fields parsed.
struct ParsedRetailLine {
  std::string_view invoice;
  std::string_view stock_code;  // may be empty
  int64_t customer = 0;
  int64_t quantity = 0;
  int64_t minutes = 0;  // InvoiceDate, minutes since the epoch
  double unit_price = 0.0;
};

// Calls on_line(const ParsedRetailLine&) for every data line of the file's
// bytes that has a CustomerID and parses; counts the data lines, the lines
// without a CustomerID and the malformed ones in *counts. Skips the header,
// blank lines and CR before LF.
template <typename OnLine>
void ForEachRetailLine(std::string_view csv, RetailLoadCounts* counts, OnLine on_line) {
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
    ++counts->lines;
    if (SplitCsvLine(line, fields, kColumns + 1) != kColumns) {
      ++counts->malformed;
      continue;
    }
    if (fields[kCustomerId].empty()) {
      ++counts->missing_customer;
      continue;
    }
    ParsedRetailLine l;
    l.invoice = fields[kInvoiceNo];
    l.stock_code = fields[kStockCode];
    if (!ParseCustomerId(fields[kCustomerId], &l.customer) ||
        !ParseInt(fields[kQuantity], &l.quantity) ||
        !ParseDouble(fields[kUnitPrice], &l.unit_price) ||
        !ParseInvoiceMinutes(fields[kInvoiceDate], &l.minutes) || l.invoice.empty()) {
      ++counts->malformed;
      continue;
    }
    on_line(l);
  }
}

}  // namespace crmstream::evaluation::internal
