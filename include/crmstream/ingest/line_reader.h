// Reads a JSON-lines or CSV file line by line for replay and backfill,
// with large buffered reads (1 MiB by default) and no allocation per line.
// Lines end with LF or CRLF; the last line may lack its newline; empty lines
// (and lines of only spaces and tabs) are skipped but still counted, so line
// numbers match an editor's. A UTF-8 byte-order mark at the start is skipped.
//
// Not thread-safe. Movable; closes its file on destruction.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

#include "crmstream/common/status.h"

namespace crmstream::ingest {

struct LineReaderOptions {
  // Bytes read from the file per read(2).
  size_t read_size = 1 << 20;
  // A line longer than this, in bytes, is an error (OutOfRange) rather
  // than a reason to grow the buffer without bound.
  size_t max_line_bytes = 64 << 20;
  // Each line stays valid until the second Next() after the one that
  // returned it, not just until the next one: a caller can read one line
  // ahead of the one it works on. Costs a second buffer, which takes the
  // unconsumed bytes at each refill while the first keeps the line in use;
  // no copy per line. Default false.
  bool keep_previous_line = false;
};

struct Line {
  std::string_view text;  // without its terminator; valid until the next Next() (see
                          // LineReaderOptions::keep_previous_line)
  int64_t number = 0;     // 1-based physical line number
};

class LineReader {
 public:
  // IOError naming `path` if it cannot be opened.
  static Result<LineReader> Open(const std::filesystem::path& path, LineReaderOptions options = {});

  ~LineReader();
  LineReader(LineReader&& other) noexcept;
  LineReader& operator=(LineReader&& other) noexcept;
  LineReader(const LineReader&) = delete;
  LineReader& operator=(const LineReader&) = delete;

  // Fills `*line` with the next non-empty line and returns true; returns
  // false at end of file. Read errors are IOError, naming the path.
  Result<bool> Next(Line* line);

  const std::string& path() const { return path_; }

 private:
  LineReader(int fd, std::string path, LineReaderOptions options);
  Status Fill();  // reads more bytes after the unconsumed ones

  int fd_ = -1;
  std::string path_;
  LineReaderOptions options_;
  std::unique_ptr<char[]> buf_;
  size_t buf_size_ = 0;
  // keep_previous_line: the other buffer, and whether buf_ holds the line
  // last returned (then a refill must not move it).
  std::unique_ptr<char[]> spare_;
  size_t spare_size_ = 0;
  bool holds_returned_ = false;
  size_t begin_ = 0;  // first unconsumed byte
  size_t end_ = 0;    // one past the last byte read
  bool eof_ = false;
  bool at_start_ = true;
  int64_t line_number_ = 0;
};

}  // namespace crmstream::ingest
