// Fast non-cryptographic 64-bit hashing for keys on the hot path (event ids,
// customer ids, hashed categoricals). Stable across runs and builds: values
// may be persisted, so the function must never change.
#pragma once

#include <cstdint>
#include <cstring>
#include <string_view>

namespace crmstream {

// FNV-1a over 8-byte words followed by a murmur-style finaliser: good
// avalanche, no dependency, deterministic.
inline uint64_t Hash64(std::string_view s, uint64_t seed = 0x9E3779B97F4A7C15ull) {
  uint64_t h = seed ^ (s.size() * 0xFF51AFD7ED558CCDull);
  const char* p = s.data();
  size_t n = s.size();
  while (n >= 8) {
    uint64_t w;
    std::memcpy(&w, p, 8);
    h = (h ^ w) * 0x100000001B3ull;
    h ^= h >> 29;
    p += 8;
    n -= 8;
  }
  uint64_t tail = 0;
  std::memcpy(&tail, p, n);
  h = (h ^ tail) * 0x100000001B3ull;
  h ^= h >> 33;
  h *= 0xFF51AFD7ED558CCDull;
  h ^= h >> 33;
  h *= 0xC4CEB9FE1A85EC53ull;
  h ^= h >> 33;
  return h;
}

}  // namespace crmstream
