// A small, fast, portable random number generator for the simulation
// (xoshiro256**, seeded through splitmix64) and the few distributions it
// needs. The standard library's distributions are implementation-defined,
// so they would make the stream differ between standard libraries; these do
// not. Not thread-safe: one instance per generator.
#pragma once

#include <cmath>
#include <cstdint>

namespace crmstream::generator {

class Rng {
 public:
  explicit Rng(uint64_t seed) {
    uint64_t x = seed;
    for (auto& s : s_) s = SplitMix64(&x);
  }

  uint64_t NextU64() {
    const uint64_t result = Rotl(s_[1] * 5, 7) * 9;
    const uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = Rotl(s_[3], 45);
    return result;
  }
  // Uniform in [0, 1).
  double Uniform() { return static_cast<double>(NextU64() >> 11) * 0x1.0p-53; }
  // Uniform in (0, 1): safe to take the logarithm of.
  double UniformOpen() { return (static_cast<double>(NextU64() >> 11) + 0.5) * 0x1.0p-53; }
  double Uniform(double lo, double hi) { return lo + (hi - lo) * Uniform(); }
  bool Bernoulli(double p) { return Uniform() < p; }
  // Uniform integer in [0, n), n > 0 (Lemire's multiply-shift; the bias is
  // below 2^-32 for the small n used here).
  uint32_t Below(uint32_t n) {
    return static_cast<uint32_t>(((NextU64() >> 32) * static_cast<uint64_t>(n)) >> 32);
  }
  // Exponential with the given mean.
  double ExponentialMean(double mean) { return -std::log(UniformOpen()) * mean; }
  // Standard normal (Box-Muller, one value per call: simpler than caching
  // the pair and cheap enough for the per-purchase use).
  double Normal() {
    const double r = std::sqrt(-2.0 * std::log(UniformOpen()));
    return r * std::cos(6.283185307179586 * Uniform());
  }
  // Geometric count k >= 0 with the given mean.
  int GeometricMean(double mean) {
    if (mean <= 0) return 0;
    const double q = 1.0 / (mean + 1.0);  // stop probability per step
    return static_cast<int>(std::floor(std::log(UniformOpen()) / std::log1p(-q)));
  }

 private:
  static uint64_t Rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  static uint64_t SplitMix64(uint64_t* x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  uint64_t s_[4];
};

}  // namespace crmstream::generator
