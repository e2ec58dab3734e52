#include "crmstream/ingest/line_reader.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

namespace crmstream::ingest {
namespace {

bool IsBlank(std::string_view s) {
  for (char c : s) {
    if (c != ' ' && c != '\t') return false;
  }
  return true;
}

}  // namespace

Result<LineReader> LineReader::Open(const std::filesystem::path& path, LineReaderOptions options) {
  if (options.read_size == 0 || options.max_line_bytes == 0) {
    return Status::InvalidArgument("LineReaderOptions: read_size and max_line_bytes must be > 0");
  }
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return Status::IOError("cannot open " + path.string() + ": " + std::strerror(errno));
  }
  return LineReader(fd, path.string(), options);
}

LineReader::LineReader(int fd, std::string path, LineReaderOptions options)
    : fd_(fd), path_(std::move(path)), options_(options) {}

LineReader::~LineReader() {
  if (fd_ >= 0) ::close(fd_);
}

LineReader::LineReader(LineReader&& other) noexcept { *this = std::move(other); }

LineReader& LineReader::operator=(LineReader&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = std::exchange(other.fd_, -1);
    path_ = std::move(other.path_);
    options_ = other.options_;
    buf_ = std::move(other.buf_);
    buf_size_ = std::exchange(other.buf_size_, 0);
    spare_ = std::move(other.spare_);
    spare_size_ = std::exchange(other.spare_size_, 0);
    holds_returned_ = std::exchange(other.holds_returned_, false);
    begin_ = std::exchange(other.begin_, 0);
    end_ = std::exchange(other.end_, 0);
    eof_ = other.eof_;
    at_start_ = other.at_start_;
    line_number_ = other.line_number_;
  }
  return *this;
}

// Moves the unconsumed bytes to the front and reads after them, growing the
// buffer only when one line is longer than it (amortised: it doubles).
Status LineReader::Fill() {
  const size_t unconsumed = end_ - begin_;
  // With keep_previous_line the line last returned may lie in buf_ before
  // begin_: buf_ is then never written to again until after the next line
  // has been returned.
  const bool keep = options_.keep_previous_line && holds_returned_;
  if (!buf_ || unconsumed == buf_size_) {
    size_t size = options_.read_size;
    if (buf_) {
      if (buf_size_ >= options_.max_line_bytes + 2) {  // + CRLF
        return Status::OutOfRange(path_ + ": line " + std::to_string(line_number_ + 1) +
                                  " is longer than " + std::to_string(options_.max_line_bytes) +
                                  " bytes");
      }
      size = std::min(buf_size_ * 2, options_.max_line_bytes + 2);
    }
    std::unique_ptr<char[]> bigger(new char[size]);
    if (unconsumed != 0) std::memcpy(bigger.get(), buf_.get() + begin_, unconsumed);
    if (keep) {
      spare_ = std::move(buf_);
      spare_size_ = buf_size_;
    }
    buf_ = std::move(bigger);
    buf_size_ = size;
    holds_returned_ = false;
  } else if (keep) {
    if (spare_size_ < buf_size_) {
      spare_.reset(new char[buf_size_]);
      spare_size_ = buf_size_;
    }
    if (unconsumed != 0) std::memcpy(spare_.get(), buf_.get() + begin_, unconsumed);
    std::swap(buf_, spare_);
    std::swap(buf_size_, spare_size_);
    holds_returned_ = false;
  } else if (begin_ > 0) {
    std::memmove(buf_.get(), buf_.get() + begin_, unconsumed);
  }
  begin_ = 0;
  end_ = unconsumed;
  while (true) {
    const size_t want = std::min(options_.read_size, buf_size_ - end_);
    const ssize_t n = ::read(fd_, buf_.get() + end_, want);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::IOError("reading " + path_ + ": " + std::strerror(errno));
    }
    if (n == 0) eof_ = true;
    end_ += static_cast<size_t>(n);
    return Status::OK();
  }
}

Result<bool> LineReader::Next(Line* line) {
  if (fd_ < 0) return Status::IOError(path_ + ": reader is closed");
  while (true) {
    const char* data = buf_ ? buf_.get() : nullptr;
    const void* newline = data ? std::memchr(data + begin_, '\n', end_ - begin_) : nullptr;
    std::string_view text;
    if (newline != nullptr) {
      const size_t stop = static_cast<const char*>(newline) - data;
      text = std::string_view(data + begin_, stop - begin_);
      begin_ = stop + 1;
    } else if (!eof_) {
      CRM_RETURN_NOT_OK(Fill());
      continue;
    } else if (begin_ < end_) {  // last line without a newline
      text = std::string_view(data + begin_, end_ - begin_);
      begin_ = end_;
    } else {
      return false;
    }
    ++line_number_;
    if (at_start_) {
      at_start_ = false;
      if (text.substr(0, 3) == "\xEF\xBB\xBF") text.remove_prefix(3);
    }
    if (!text.empty() && text.back() == '\r') text.remove_suffix(1);
    if (text.size() > options_.max_line_bytes) {
      return Status::OutOfRange(path_ + ": line " + std::to_string(line_number_) +
                                " is longer than " + std::to_string(options_.max_line_bytes) +
                                " bytes");
    }
    if (IsBlank(text)) continue;
    line->text = text;
    line->number = line_number_;
    holds_returned_ = true;
    return true;
  }
}

}  // namespace crmstream::ingest
