#include "crmstream/ingest/line_reader.h"

#include <catch2/catch.hpp>
#include <fstream>
#include <string>
#include <vector>

#include "support/require_ok.h"
#include "support/test_support.h"

namespace crmstream::ingest {
namespace {

std::filesystem::path Write(const crmstream::testing::ScratchDir& dir, const std::string& bytes) {
  const auto path = dir.path() / "input.txt";
  std::ofstream(path, std::ios::binary) << bytes;
  return path;
}

std::vector<std::pair<int64_t, std::string>> ReadAll(const std::filesystem::path& path,
                                                     LineReaderOptions options = {}) {
  auto reader = LineReader::Open(path, options);
  REQUIRE_OK(reader);
  std::vector<std::pair<int64_t, std::string>> lines;
  Line line;
  for (int guard = 0; guard < 1'000'000; ++guard) {
    auto more = reader->Next(&line);
    REQUIRE_OK(more);
    if (!*more) break;
    lines.emplace_back(line.number, std::string(line.text));
  }
  return lines;
}

using Lines = std::vector<std::pair<int64_t, std::string>>;

TEST_CASE("LineReader handles CRLF, blank lines and a missing final newline", "[ingest]") {
  crmstream::testing::ScratchDir dir;
  const auto path = Write(dir, "\xEF\xBB\xBF{\"a\":1}\r\n\r\n  \n{\"b\":2}\n\n{\"c\":3}");
  CHECK(ReadAll(path) == Lines{{1, "{\"a\":1}"}, {4, "{\"b\":2}"}, {6, "{\"c\":3}"}});
  CHECK(ReadAll(Write(dir, "")).empty());
  CHECK(ReadAll(Write(dir, "\n\r\n\n")).empty());
  CHECK(ReadAll(Write(dir, "x\n")) == Lines{{1, "x"}});
  CHECK(ReadAll(Write(dir, "x\r")) == Lines{{1, "x"}});
}

TEST_CASE("LineReader joins lines across reads and grows for long lines", "[ingest]") {
  crmstream::testing::ScratchDir dir;
  std::string content;
  Lines expected;
  for (int i = 1; i <= 500; ++i) {
    std::string text = "line-" + std::to_string(i) + std::string(i % 37, '.');
    if (i == 250) text = std::string(300, 'L');  // longer than the buffer
    content += text + (i % 2 ? "\n" : "\r\n");
    expected.emplace_back(i, text);
  }
  LineReaderOptions options;
  options.read_size = 64;  // forces lines to straddle reads
  CHECK(ReadAll(Write(dir, content), options) == expected);
}

TEST_CASE("LineReader keeps the previous line in place while it reads the next", "[ingest]") {
  // Lines straddling small reads, and ones longer than the buffer (which
  // grows while the previous line must stay where it is): each line read
  // must still hold its text after the next one has been read.
  crmstream::testing::ScratchDir dir;
  std::string content;
  Lines expected;
  for (int i = 1; i <= 600; ++i) {
    std::string text = "line-" + std::to_string(i) + std::string(i * 7 % 53, '.');
    if (i % 100 == 50) text = std::string(static_cast<size_t>(100 + i), 'L');
    if (i % 100 == 51) text = std::string(700, 'M');  // two growths in one read
    content += text + (i % 2 ? "\n" : "\r\n");
    if (i % 31 == 0) content += "\n";
    expected.emplace_back(i + (i - 1) / 31, text);
  }
  LineReaderOptions options;
  options.read_size = 64;
  options.keep_previous_line = true;
  auto reader = LineReader::Open(Write(dir, content), options);
  REQUIRE_OK(reader);
  Line lines[2];
  Lines previous_seen;
  size_t current = 0;
  for (size_t i = 0; i <= expected.size(); ++i) {
    auto more = reader->Next(&lines[current]);
    REQUIRE_OK(more);
    if (i > 0) {
      // The line read before this call, as it is now.
      const Line& before = lines[current ^ 1];
      previous_seen.emplace_back(before.number, std::string(before.text));
    }
    if (!*more) break;
    current ^= 1;
  }
  CHECK(previous_seen == expected);
  CHECK(ReadAll(Write(dir, content), options) == expected);
}

TEST_CASE("LineReader reports errors with the path", "[ingest]") {
  crmstream::testing::ScratchDir dir;
  auto missing = LineReader::Open(dir.path() / "nope.jsonl");
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.status().code() == StatusCode::kIOError);
  CHECK(missing.status().message().find("nope.jsonl") != std::string::npos);

  auto directory = LineReader::Open(dir.path());  // opens, but read(2) fails: EISDIR
  REQUIRE_OK(directory);
  Line line;
  auto next = directory->Next(&line);
  REQUIRE_FALSE(next.ok());
  CHECK(next.status().code() == StatusCode::kIOError);
  CHECK(next.status().message().find(dir.path().string()) != std::string::npos);

  LineReaderOptions options;
  options.read_size = 16;
  options.max_line_bytes = 40;
  auto reader = LineReader::Open(Write(dir, "short\n" + std::string(100, 'x') + "\n"), options);
  REQUIRE_OK(reader);
  auto first = reader->Next(&line);
  REQUIRE_OK(first);
  CHECK(line.text == "short");
  auto second = reader->Next(&line);
  REQUIRE_FALSE(second.ok());
  CHECK(second.status().code() == StatusCode::kOutOfRange);
  CHECK(second.status().message().find("line 2") != std::string::npos);
}

}  // namespace
}  // namespace crmstream::ingest
