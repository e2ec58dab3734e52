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

}  // namespace crmstream::evaluation::internal
