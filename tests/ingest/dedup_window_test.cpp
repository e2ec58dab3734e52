#include "crmstream/ingest/dedup_window.h"

#include <catch2/catch.hpp>
#include <deque>
#include <random>
#include <set>
#include <string>

#include "support/require_ok.h"

namespace crmstream::ingest {
namespace {

std::string Id(uint64_t i) { return "evt-" + std::to_string(i); }

TEST_CASE("DedupWindow counts a repeated event id once", "[ingest]") {
  DedupWindow window(100);
  CHECK_FALSE(window.SeenBefore("a"));
  CHECK(window.SeenBefore("a"));
  CHECK(window.SeenBefore("a"));
  CHECK_FALSE(window.SeenBefore("b"));
  CHECK(window.size() == 2);
  CHECK(window.Contains("b"));
  CHECK_FALSE(window.Contains("c"));
  CHECK(window.size() == 2);
}

TEST_CASE("DedupWindow forgets the oldest ids beyond its capacity", "[ingest]") {
  DedupWindow window(3);
  for (const char* id : {"1", "2", "3"}) CHECK_FALSE(window.SeenBefore(id));
  CHECK_FALSE(window.SeenBefore("4"));  // forgets "1"
  CHECK_FALSE(window.Contains("1"));
  CHECK(window.SeenBefore("2"));        // a repeat does not refresh "2"
  CHECK_FALSE(window.SeenBefore("5"));  // forgets "2"
  CHECK_FALSE(window.Contains("2"));
  CHECK(window.Contains("3"));
  CHECK(window.size() == 3);

  DedupWindow disabled(0);
  CHECK_FALSE(disabled.SeenBefore("x"));
  CHECK_FALSE(disabled.SeenBefore("x"));
}

// Reference model: a set plus a FIFO of the last `capacity` distinct ids.
TEST_CASE("DedupWindow matches a set-and-queue model on a random stream", "[ingest]") {
  constexpr size_t kCapacity = 1000;
  DedupWindow window(kCapacity);
  std::set<uint64_t> present;
  std::deque<uint64_t> order;
  std::mt19937_64 rng(7);
  size_t duplicates = 0;
  for (int step = 0; step < 200'000; ++step) {
    const uint64_t id = rng() % 3000;  // many repeats, many evictions
    const bool expected = present.count(id) > 0;
    if (!expected) {
      if (order.size() == kCapacity) {
        present.erase(order.front());
        order.pop_front();
      }
      order.push_back(id);
      present.insert(id);
    }
    duplicates += expected;
    REQUIRE(window.SeenBefore(Id(id)) == expected);
  }
  CHECK(duplicates > 10'000);
  CHECK(window.size() == kCapacity);
}

TEST_CASE("DedupWindow round-trips through its encoding", "[ingest]") {
  DedupWindow window(50);
  for (int i = 0; i < 80; ++i) (void)window.SeenBefore(Id(i));  // ids 30..79 remain
  std::string payload;
  window.EncodeTo(&payload);
  auto decoded = DedupWindow::Decode(payload);
  REQUIRE_OK(decoded);
  CHECK(decoded->capacity() == 50);
  CHECK(decoded->size() == 50);
  CHECK_FALSE(decoded->Contains(Id(29)));
  for (int i = 30; i < 80; ++i) CHECK(decoded->Contains(Id(i)));
  // The restored window evicts in the original order: id 30 goes first.
  CHECK_FALSE(decoded->SeenBefore(Id(1000)));
  CHECK_FALSE(decoded->Contains(Id(30)));
  CHECK(decoded->Contains(Id(31)));

  DedupWindow empty(10);
  std::string empty_payload;
  empty.EncodeTo(&empty_payload);
  auto empty_decoded = DedupWindow::Decode(empty_payload);
  REQUIRE_OK(empty_decoded);
  CHECK(empty_decoded->size() == 0);
}

TEST_CASE("DedupWindow::Decode rejects damaged payloads", "[ingest]") {
  DedupWindow window(8);
  for (int i = 0; i < 5; ++i) (void)window.SeenBefore(Id(i));
  std::string payload;
  window.EncodeTo(&payload);
  for (size_t cut = 0; cut < payload.size(); ++cut) {
    CHECK_FALSE(DedupWindow::Decode(std::string_view(payload).substr(0, cut)).ok());
  }
  CHECK_FALSE(DedupWindow::Decode(payload + "x").ok());
  std::string repeated = payload;
  repeated.replace(repeated.size() - 8, 8, repeated.substr(repeated.size() - 16, 8));
  CHECK(DedupWindow::Decode(repeated).status().code() == StatusCode::kCorruption);
  std::string too_many = payload;
  too_many[0] = 2;  // capacity 2 < 5 stored hashes
  CHECK_FALSE(DedupWindow::Decode(too_many).ok());
}

}  // namespace
}  // namespace crmstream::ingest
