#include "crmstream/feeds/csv_rows.h"

#include <charconv>
#include <cmath>

#include "crmstream/ingest/csv_record.h"

namespace crmstream::feeds {

Result<CsvRows> CsvRows::Open(const std::filesystem::path& path) {
  CRM_ASSIGN_OR_RETURN(ingest::LineReader reader, ingest::LineReader::Open(path));
  CsvRows rows(std::move(reader));
  std::error_code ec;
  rows.file_size_ = std::filesystem::file_size(path, ec);
  CRM_ASSIGN_OR_RETURN(bool has_header, rows.Next());
  if (!has_header) return Status::Corruption(path.string() + ": empty file, expected a header row");
  if (!rows.error_.empty()) {
    return Status::Corruption(path.string() + ": header: " + rows.error_);
  }
  for (size_t i = 0; i < rows.cells_.size(); ++i) rows.header_.emplace_back(rows.cells_[i]);
  return rows;
}

Result<size_t> CsvRows::Column(std::string_view name) const {
  for (size_t i = 0; i < header_.size(); ++i) {
    if (header_[i] == name) return i;
  }
  std::string have;
  for (const auto& h : header_) have += (have.empty() ? "" : ", ") + h;
  return Status::InvalidArgument(path() + ": no column '" + std::string(name) +
                                 "' (the header has: " + have + ")");
}

Result<bool> CsvRows::Next() {
  ingest::Line line;
  CRM_ASSIGN_OR_RETURN(bool more, reader_.Next(&line));
  if (!more) return false;
  line_number_ = line.number;
  bytes_read_ += line.text.size() + 1;
  std::string_view text = line.text;
  if (!text.empty() && text.back() == '\r') text.remove_suffix(1);
  raw_ = text;
  buffer_.assign(text);
  cells_.clear();
  error_.clear();
  const char* syntax = ingest::SplitCsvInPlace(
      buffer_.data(), buffer_.size(),
      [&](size_t, const ingest::CsvCell& cell) { cells_.push_back(cell.text); });
  if (syntax != nullptr) {
    error_ = syntax;
  } else if (!header_.empty() && cells_.size() != header_.size()) {
    error_ =
        std::to_string(cells_.size()) + " cells, the header has " + std::to_string(header_.size());
  }
  // Keep cell() in range for a short malformed row.
  if (!header_.empty() && cells_.size() < header_.size()) cells_.resize(header_.size());
  return true;
}

bool ParseNumber(std::string_view cell, double* out) {
  while (!cell.empty() && cell.front() == ' ') cell.remove_prefix(1);
  while (!cell.empty() && cell.back() == ' ') cell.remove_suffix(1);
  if (cell.empty()) return false;
  if (cell.front() == '+') cell.remove_prefix(1);
  double v = 0;
  auto [ptr, ec] = std::from_chars(cell.data(), cell.data() + cell.size(), v);
  if (ec != std::errc() || ptr != cell.data() + cell.size() || !std::isfinite(v)) return false;
  *out = v;
  return true;
}

}  // namespace crmstream::feeds
