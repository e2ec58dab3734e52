#include "crmstream/ingest/dedup_window.h"

#include <catch2/catch.hpp>
#include <cstring>
#include <deque>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>

#include "support/dedup_rings.h"
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
  auto decoded = DedupWindow::Decode(payload, 50);
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
  auto empty_decoded = DedupWindow::Decode(empty_payload, 10);
  REQUIRE_OK(empty_decoded);
  CHECK(empty_decoded->size() == 0);
}

TEST_CASE("DedupWindow::Decode rejects damaged payloads", "[ingest]") {
  DedupWindow window(8);
  for (int i = 0; i < 5; ++i) (void)window.SeenBefore(Id(i));
  std::string payload;
  window.EncodeTo(&payload);
  for (size_t cut = 0; cut < payload.size(); ++cut) {
    CHECK_FALSE(DedupWindow::Decode(std::string_view(payload).substr(0, cut), 8).ok());
  }
  CHECK_FALSE(DedupWindow::Decode(payload + "x", 8).ok());
  std::string repeated = payload;
  repeated.replace(repeated.size() - 8, 8, repeated.substr(repeated.size() - 16, 8));
  CHECK(DedupWindow::Decode(repeated, 8).status().code() == StatusCode::kCorruption);
  std::string too_many = payload;
  too_many[0] = 2;  // capacity 2 < 5 stored hashes
  CHECK_FALSE(DedupWindow::Decode(too_many, 8).ok());
}

// The store of the chunked encoding: the head and each chunk's latest bytes.
struct ChunkStore {
  std::string head;
  std::map<size_t, std::string> chunks;
  size_t written = 0;  // chunks written by the last Save
  // What a checkpoint writes: the head and the unsaved chunks.
  void Save(DedupWindow* w) {
    head.clear();
    w->EncodeHead(&head);
    written = 0;
    w->ForEachUnsavedChunk([&](size_t c) {
      chunks[c].clear();
      w->EncodeChunk(c, &chunks[c]);
      ++written;
    });
    w->MarkSaved();
  }
  // At the saved capacity unless `capacity` is given.
  Result<DedupWindow> Load(std::optional<size_t> capacity = std::nullopt) const {
    uint64_t saved = 0;
    std::memcpy(&saved, head.data(), std::min(head.size(), sizeof saved));
    return DedupWindow::DecodeChunked(
        head,
        [this](size_t c) -> Result<std::string> {
          const auto it = chunks.find(c);
          if (it == chunks.end()) return Status::Corruption("missing chunk");
          return it->second;
        },
        capacity.value_or(static_cast<size_t>(saved)));
  }
};

TEST_CASE("DedupWindow round-trips through its chunked encoding, empty, partial, full and wrapped",
          "[ingest]") {
  constexpr size_t kCapacity = DedupWindow::kChunkIds * 3 + 100;  // a short last chunk
  for (const size_t ids :
       {size_t{0}, size_t{10}, DedupWindow::kChunkIds + 5, kCapacity, kCapacity * 2 + 1234}) {
    DedupWindow window(kCapacity);
    std::set<uint64_t> present;
    std::deque<uint64_t> order;
    for (uint64_t i = 0; i < ids; ++i) {
      (void)window.SeenBefore(Id(i));
      if (order.size() == kCapacity) {
        present.erase(order.front());
        order.pop_front();
      }
      order.push_back(i);
      present.insert(i);
    }
    ChunkStore store;
    store.Save(&window);
    // A first save writes every chunk holding ids.
    CHECK(store.written ==
          (std::min(ids, kCapacity) + DedupWindow::kChunkIds - 1) / DedupWindow::kChunkIds);
    REQUIRE_OK_AND_ASSIGN(DedupWindow restored, store.Load());
    testing::CheckSameDedupRing(window, restored);
    for (uint64_t i = 0; i < ids + 10; ++i) REQUIRE(restored.Contains(Id(i)) == present.count(i));
    // Afterwards both forget the same ids in the same order.
    for (uint64_t i = 0; i < kCapacity / 2; ++i) {
      const uint64_t id = 1'000'000 + i;
      REQUIRE(restored.SeenBefore(Id(id)) == window.SeenBefore(Id(id)));
    }
    testing::CheckSameDedupRing(window, restored);
  }
}

TEST_CASE("DedupWindow saved after N new ids writes the one or two chunks they went to",
          "[ingest]") {
  constexpr size_t kCapacity = DedupWindow::kChunkIds * 5 + 7;
  DedupWindow window(kCapacity);
  ChunkStore store;
  std::mt19937_64 rng(11);
  uint64_t next = 0;
  size_t saves = 0, wide_saves = 0;
  for (int round = 0; round < 60; ++round) {
    // Some new ids, some repeats (which write nothing).
    const size_t n = 1 + rng() % 3000;
    size_t fresh = 0;
    for (size_t k = 0; k < n; ++k) {
      if (next > 0 && rng() % 4 == 0) {
        (void)window.SeenBefore(Id(next - 1 - rng() % std::min<uint64_t>(next, 100)));
      } else {
        (void)window.SeenBefore(Id(next++));
        ++fresh;
      }
    }
    store.Save(&window);
    ++saves;
    // `fresh` consecutive slots span at most fresh / chunk + 2 chunks, one
    // more when they wrap through the short last chunk.
    REQUIRE(store.written <= fresh / DedupWindow::kChunkIds + 3);
    wide_saves += store.written > fresh / DedupWindow::kChunkIds + 2;
    REQUIRE_OK_AND_ASSIGN(DedupWindow restored, store.Load());
    testing::CheckSameDedupRing(window, restored);
  }
  CHECK(next > kCapacity);  // the ring wrapped
  CHECK(saves == 60);
  CHECK(wide_saves <= next / kCapacity);  // at most one a wrap
  // Nothing new: the head only.
  store.Save(&window);
  CHECK(store.written == 0);
  // As many new ids as the capacity: every chunk.
  for (size_t k = 0; k < kCapacity; ++k) (void)window.SeenBefore(Id(next++));
  store.Save(&window);
  CHECK(store.written == window.chunk_count());
  REQUIRE_OK_AND_ASSIGN(DedupWindow restored, store.Load());
  testing::CheckSameDedupRing(window, restored);
}

TEST_CASE("DedupWindow::DecodeChunked rejects damaged heads and chunks", "[ingest]") {
  DedupWindow window(DedupWindow::kChunkIds + 10);
  for (int i = 0; i < 5000; ++i) (void)window.SeenBefore(Id(i));
  ChunkStore store;
  store.Save(&window);
  REQUIRE_OK(store.Load());
  for (size_t cut = 0; cut < store.head.size(); ++cut) {
    ChunkStore damaged = store;
    damaged.head.resize(cut);
    CHECK_FALSE(damaged.Load().ok());
  }
  {
    ChunkStore damaged = store;
    damaged.chunks.erase(1);
    CHECK_FALSE(damaged.Load().ok());
  }
  {
    ChunkStore damaged = store;
    damaged.chunks[0].resize(damaged.chunks[0].size() - 8);
    CHECK_FALSE(damaged.Load().ok());
  }
  {
    ChunkStore damaged = store;  // a repeated hash
    damaged.chunks[0].replace(4 + 8, 8, damaged.chunks[0].substr(4, 8));
    CHECK(damaged.Load().status().code() == StatusCode::kCorruption);
  }
  {
    ChunkStore damaged = store;  // size beyond the capacity
    damaged.head[16] = static_cast<char>(0xff);
    damaged.head[17] = static_cast<char>(0xff);
    CHECK_FALSE(damaged.Load().ok());
  }
}

TEST_CASE("A decoded dedup window takes the capacity it is given, keeping the newest ids that fit",
          "[ingest]") {
  constexpr size_t kSaved = DedupWindow::kChunkIds * 2 + 300;
  // Ids 0..n-1 went in; a window of c remembers the last min(n, c) of them
  // (a deque of the same ids is the reference).
  for (const size_t ids : {size_t{0}, size_t{100}, kSaved, kSaved * 2 + 4321}) {
    DedupWindow window(kSaved);
    for (uint64_t i = 0; i < ids; ++i) (void)window.SeenBefore(Id(i));
    std::string whole;
    window.EncodeTo(&whole);
    ChunkStore store;
    store.Save(&window);
    for (const size_t capacity :
         {size_t{0}, size_t{50}, DedupWindow::kChunkIds + 1, kSaved - 1, kSaved * 3}) {
      CAPTURE(ids, capacity);
      REQUIRE_OK_AND_ASSIGN(DedupWindow from_chunks, store.Load(capacity));
      REQUIRE_OK_AND_ASSIGN(DedupWindow from_whole, DedupWindow::Decode(whole, capacity));
      for (DedupWindow* w : {&from_chunks, &from_whole}) {
        const size_t held = std::min(ids, kSaved);
        const size_t kept = std::min(held, capacity);
        CHECK(w->capacity() == capacity);
        CHECK(w->size() == kept);
        for (uint64_t i = 0; i < ids; ++i) REQUIRE(w->Contains(Id(i)) == (i + kept >= ids));
        // They leave oldest first: one new id forgets exactly the oldest
        // kept one once the window is full.
        if (capacity > 0 && kept == capacity) {
          (void)w->SeenBefore(Id(1'000'000));
          CHECK_FALSE(w->Contains(Id(ids - kept)));
          if (kept > 1) CHECK(w->Contains(Id(ids - kept + 1)));
        }
      }
      // Not the saved layout: the first save writes every chunk again, and
      // what it saves loads back as it is.
      ChunkStore again;
      again.Save(&from_chunks);
      CHECK(again.written == from_chunks.chunk_count());
      REQUIRE_OK_AND_ASSIGN(DedupWindow reloaded, again.Load());
      testing::CheckSameDedupRing(from_chunks, reloaded);
    }
  }
}

TEST_CASE("A dedup payload claiming the largest capacity allocates only the capacity given",
          "[ingest]") {
  DedupWindow window(4);
  for (int i = 0; i < 3; ++i) (void)window.SeenBefore(Id(i));
  std::string whole;
  window.EncodeTo(&whole);
  const uint64_t huge = DedupWindow::kMaxCapacity;
  whole.replace(0, 8, reinterpret_cast<const char*>(&huge), 8);
  REQUIRE_OK_AND_ASSIGN(DedupWindow decoded, DedupWindow::Decode(whole, 16));
  CHECK(decoded.capacity() == 16);
  CHECK(decoded.memory_bytes() < 1024);
  CHECK(decoded.Contains(Id(2)));
  ChunkStore store;
  store.Save(&window);
  store.head.replace(0, 8, reinterpret_cast<const char*>(&huge), 8);
  // The head now says 3 ids of a huge ring, whose first chunk is short.
  CHECK_FALSE(store.Load(16).ok());
}

}  // namespace
}  // namespace crmstream::ingest
