// AMX tile product against a scalar reference (skips where the CPU or OS offers no AMX).
#include "kernels/cpu/attention_amx.h"

#include <gtest/gtest.h>

#include <random>
#include <vector>

namespace tqlm::kernels {
namespace {

TEST(AttentionAmx, TileDotMatchesScalarReference) {
  if (!AmxInt8Available()) GTEST_SKIP() << "no AMX-INT8 granted on this CPU/OS";
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> u8(0, 255), s8(-128, 127);
  for (int trial = 0; trial < 4; ++trial) {
    std::vector<uint8_t> a(16 * 64);
    std::vector<int8_t> b(16 * 64);
    for (auto& x : a) x = uint8_t(u8(rng));
    for (auto& x : b) x = int8_t(s8(rng));
    std::vector<int32_t> c(16 * 16, -1);
    AmxDotU8S8Tile(a.data(), b.data(), c.data());
    for (int m = 0; m < 16; ++m) {
      for (int n = 0; n < 16; ++n) {
        int32_t ref = 0;
        for (int k = 0; k < 64; ++k) ref += int32_t(a[m * 64 + k]) * b[(k / 4) * 64 + n * 4 + k % 4];
        ASSERT_EQ(c[m * 16 + n], ref) << "m " << m << " n " << n << " trial " << trial;
      }
    }
  }
}

}  // namespace
}  // namespace tqlm::kernels
