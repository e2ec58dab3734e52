// Test helper: whether two dedup windows hold the same ids in the same ring
// slots (so that they forget them in the same order), compared through the
// chunked encoding a checkpoint writes.
#pragma once

#include <catch2/catch.hpp>
#include <string>

#include "crmstream/ingest/dedup_window.h"

namespace crmstream::testing {

inline void CheckSameDedupRing(const ingest::DedupWindow& a, const ingest::DedupWindow& b) {
  REQUIRE(a.capacity() == b.capacity());
  REQUIRE(a.size() == b.size());
  std::string x, y;
  a.EncodeHead(&x);
  b.EncodeHead(&y);
  CHECK(x == y);
  for (size_t c = 0; c < a.chunk_count(); ++c) {
    x.clear();
    y.clear();
    a.EncodeChunk(c, &x);
    b.EncodeChunk(c, &y);
    // Slots never used are 0 in both: a partial window's chunks compare whole.
    REQUIRE(x == y);
  }
}

}  // namespace crmstream::testing
