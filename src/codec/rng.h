// A small deterministic random generator (xoshiro256**, seeded through SplitMix64) and
// Box–Muller normals. The codec's random signs and QJL matrix must not depend on the standard
// library (std::normal_distribution's output differs between implementations); the signs are
// bit-exact everywhere, the normals up to the last ulp of libm's log/sin/cos.
#pragma once

#include <cmath>
#include <cstdint>
#include <numbers>

namespace tqlm::codec {

inline uint64_t SplitMix64(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

class Rng {
 public:
  explicit Rng(uint64_t seed) {
    for (auto& w : s_) w = SplitMix64(seed);
  }
  uint64_t Next() {
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
  // Uniform in (0, 1): never exactly 0, so log() below is safe.
  double Uniform() { return (double(Next() >> 11) + 0.5) * (1.0 / 9007199254740992.0); }
  double Normal() {
    if (have_spare_) {
      have_spare_ = false;
      return spare_;
    }
    const double r = std::sqrt(-2 * std::log(Uniform()));
    const double a = 2 * std::numbers::pi * Uniform();
    spare_ = r * std::sin(a);
    have_spare_ = true;
    return r * std::cos(a);
  }

 private:
  static uint64_t Rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  uint64_t s_[4];
  double spare_ = 0;
  bool have_spare_ = false;
};

}  // namespace tqlm::codec
