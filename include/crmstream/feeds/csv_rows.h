// Reads a CSV file with a header row, row by row, for the data-set feeds:
// columns are found by name once, and each row's cells are views into a
// buffer reused for every row (no allocation per row once it has grown).
//
// Not thread-safe; one reader per file.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "crmstream/common/status.h"
#include "crmstream/ingest/line_reader.h"

namespace crmstream::feeds {

class CsvRows {
 public:
  // Opens `path` and reads its header. IOError if it cannot be read,
  // Corruption if it has no header.
  static Result<CsvRows> Open(const std::filesystem::path& path);

  // The index of the column named `name`; InvalidArgument naming the file,
  // the column and the columns it has when there is none.
  Result<size_t> Column(std::string_view name) const;

  // The next row; false at end of file. A row with a CSV syntax error or a
  // different number of cells than the header is still returned, with
  // error() describing it (a feed sends it to its dead letters or fails).
  Result<bool> Next();

  // Cells of the current row (valid until the next Next()).
  std::string_view cell(size_t column) const { return cells_[column]; }
  size_t cell_count() const { return cells_.size(); }
  // The current row as it is in the file, and its 1-based line number.
  std::string_view raw() const { return raw_; }
  int64_t line_number() const { return line_number_; }
  // Empty when the current row is well-formed.
  const std::string& error() const { return error_; }

  const std::vector<std::string>& header() const { return header_; }
  const std::string& path() const { return reader_.path(); }
  // Bytes of the file consumed so far and its size, for progress bars.
  uint64_t bytes_read() const { return bytes_read_; }
  uint64_t file_size() const { return file_size_; }

 private:
  explicit CsvRows(ingest::LineReader reader) : reader_(std::move(reader)) {}

  ingest::LineReader reader_;
  std::vector<std::string> header_;
  std::string buffer_;  // the current row, unescaped in place
  std::vector<std::string_view> cells_;
  std::string_view raw_;
  std::string error_;
  int64_t line_number_ = 0;
  uint64_t bytes_read_ = 0;
  uint64_t file_size_ = 0;
};

// Parses a whole cell as a finite number; false when it is empty or not a
// number (leading and trailing spaces are allowed).
bool ParseNumber(std::string_view cell, double* out);

}  // namespace crmstream::feeds
