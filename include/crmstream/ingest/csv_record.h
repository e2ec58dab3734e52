// RFC 4180 record splitting shared by every CSV reader of the project (the
// event decoder and the data-set feeds): quoted cells with embedded commas
// and doubled quotes, unescaped in place so that no cell is copied.
//
// Stateless; safe from any thread on distinct buffers.
#pragma once

#include <cstddef>
#include <string_view>

namespace crmstream::ingest {

struct CsvCell {
  std::string_view text;
  bool quoted = false;
};

// Splits one record held in [data, data + n) (no line terminator),
// unescaping quoted cells in place (an unescaped cell is never longer than
// its source), and calls on_cell(column, cell) for each cell. Returns
// nullptr on success or a static description of the syntax error.
template <typename OnCell>
const char* SplitCsvInPlace(char* data, size_t n, OnCell&& on_cell) {
  size_t pos = 0;
  size_t column = 0;
  while (true) {
    CsvCell cell;
    if (pos < n && data[pos] == '"') {
      cell.quoted = true;
      size_t write = pos;  // unescaped text is written from here
      const size_t start = write;
      ++pos;
      while (true) {
        if (pos >= n) return "unterminated quoted field";
        if (data[pos] == '"') {
          if (pos + 1 < n && data[pos + 1] == '"') {
            data[write++] = '"';
            pos += 2;
            continue;
          }
          ++pos;  // closing quote
          break;
        }
        data[write++] = data[pos++];
      }
      if (pos < n && data[pos] != ',') return "characters after a closing quote";
      cell.text = std::string_view(data + start, write - start);
    } else {
      const size_t start = pos;
      while (pos < n && data[pos] != ',') {
        if (data[pos] == '"') return "a quote inside an unquoted field";
        ++pos;
      }
      cell.text = std::string_view(data + start, pos - start);
    }
    on_cell(column, cell);
    ++column;
    if (pos >= n) return nullptr;
    ++pos;  // the comma; a record ending in a comma has an empty last cell
  }
}

}  // namespace crmstream::ingest
