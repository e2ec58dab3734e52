#include "retail_csv.h"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <memory>

namespace crmstream::evaluation::internal {
namespace {

// Reads an unsigned decimal of 1..max_digits digits at s[*pos].
bool ReadNumber(std::string_view s, size_t* pos, int max_digits, int64_t* out) {
  int64_t v = 0;
  int digits = 0;
  while (*pos < s.size() && s[*pos] >= '0' && s[*pos] <= '9' && digits < max_digits) {
    v = v * 10 + (s[*pos] - '0');
    ++*pos;
    ++digits;
  }
  *out = v;
  return digits > 0;
}

bool Expect(std::string_view s, size_t* pos, char c) {
  if (*pos < s.size() && s[*pos] == c) {
    ++*pos;
    return true;
  }
  return false;
}

}  // namespace

// Splits one CSV line (no line terminator) into fields. Quoted fields may hold
// commas and doubled quotes; the views keep the quotes' contents raw (no
// un-escaping: none of the numeric fields we read are quoted). Returns the
// number of fields, or -1 for an unterminated quote.
int SplitCsvLine(std::string_view line, std::string_view* fields, int max_fields) {
  int n = 0;
  size_t i = 0;
  while (true) {
    if (n == max_fields) return max_fields + 1;  // too many fields
    if (i < line.size() && line[i] == '"') {
      const size_t start = ++i;
      while (true) {
        const size_t q = line.find('"', i);
        if (q == std::string_view::npos) return -1;
        if (q + 1 < line.size() && line[q + 1] == '"') {
          i = q + 2;
          continue;
        }
        fields[n++] = line.substr(start, q - start);
        i = q + 1;
        break;
      }
      if (i == line.size()) return n;
      if (line[i] != ',') return -1;
      ++i;
    } else {
      const size_t comma = line.find(',', i);
      if (comma == std::string_view::npos) {
        fields[n++] = line.substr(i);
        return n;
      }
      fields[n++] = line.substr(i, comma - i);
      i = comma + 1;
    }
  }
}

bool ParseInt(std::string_view s, int64_t* out) {
  const auto r = std::from_chars(s.data(), s.data() + s.size(), *out);
  return r.ec == std::errc() && r.ptr == s.data() + s.size();
}

bool ParseDouble(std::string_view s, double* out) {
  const auto r = std::from_chars(s.data(), s.data() + s.size(), *out);
  return r.ec == std::errc() && r.ptr == s.data() + s.size() && std::isfinite(*out);
}

// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
// days_from_civil).
int64_t DaysFromCivil(int64_t y, int64_t m, int64_t d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const int64_t yoe = y - era * 400;
  const int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

// Minutes since the epoch of "YYYY-MM-DD HH:MM[:SS]" (this copy of the data)
// or "M/D/YYYY H:MM" (the UCI original). Seconds are ignored: both sources
// have minute resolution.
bool ParseInvoiceMinutes(std::string_view s, int64_t* minutes) {
  size_t p = 0;
  int64_t a = 0, b = 0, c = 0, hour = 0, minute = 0;
  int64_t year = 0, month = 0, day = 0;
  if (!ReadNumber(s, &p, 4, &a)) return false;
  if (p < s.size() && s[p] == '-') {
    year = a;
    ++p;
    if (!ReadNumber(s, &p, 2, &month) || !Expect(s, &p, '-') || !ReadNumber(s, &p, 2, &day)) {
      return false;
    }
  } else {
    if (!Expect(s, &p, '/') || !ReadNumber(s, &p, 2, &b) || !Expect(s, &p, '/') ||
        !ReadNumber(s, &p, 4, &c)) {
      return false;
    }
    month = a;
    day = b;
    year = c;
  }
  if (!Expect(s, &p, ' ') && !Expect(s, &p, 'T')) return false;
  if (!ReadNumber(s, &p, 2, &hour) || !Expect(s, &p, ':') || !ReadNumber(s, &p, 2, &minute)) {
    return false;
  }
  if (month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59) return false;
  *minutes = DaysFromCivil(year, month, day) * 1440 + hour * 60 + minute;
  return true;
}

// "17850.0" or "17850" -> 17850.
bool ParseCustomerId(std::string_view s, int64_t* id) {
  const size_t dot = s.find('.');
  if (dot != std::string_view::npos) {
    for (size_t i = dot + 1; i < s.size(); ++i) {
      if (s[i] != '0') return false;
    }
    s = s.substr(0, dot);
  }
  return ParseInt(s, id) && *id >= 0;
}

std::filesystem::path RetailFile(const std::filesystem::path& data_dir) {
  std::filesystem::path file = data_dir / "online-retail" / "online_retail.csv";
  std::error_code ec;
  if (!std::filesystem::exists(file, ec)) file = data_dir / "online_retail.csv";
  return file;
}

Result<std::string> ReadFileBytes(const std::filesystem::path& file) {
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(file.c_str(), "rb"), &std::fclose);
  if (!f) return Status::IOError("cannot open " + file.string());
  std::string bytes;
  if (std::fseek(f.get(), 0, SEEK_END) == 0) {
    const long size = std::ftell(f.get());
    if (size > 0) bytes.reserve(static_cast<size_t>(size));
    std::rewind(f.get());
  }
  char buf[1 << 16];
  size_t got = 0;
  while ((got = std::fread(buf, 1, sizeof(buf), f.get())) > 0) bytes.append(buf, got);
  if (std::ferror(f.get())) return Status::IOError("error reading " + file.string());
  return bytes;
}

}  // namespace crmstream::evaluation::internal
