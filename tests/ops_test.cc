#include "kernels/cpu/ops.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

namespace tqlm::kernels {
namespace {

TEST(Ops, RmsNormMatchesDefinition) {
  std::vector<float> x = {1, -2, 3, -4}, w = {1, 2, 0.5f, 1}, out(4);
  RmsNorm(x.data(), w.data(), 0.0f, 0.0f, 1, 4, out.data());
  const float rms = std::sqrt((1 + 4 + 9 + 16) / 4.0f);
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(out[i], x[i] / rms * w[i], 1e-6);
  RmsNorm(x.data(), w.data(), 1.0f, 0.0f, 1, 4, out.data());  // Gemma-style (1 + w)
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(out[i], x[i] / rms * (1 + w[i]), 1e-6);
}

TEST(Ops, RopeRotatesPairsAndPreservesNorm) {
  const int dim = 8;
  std::vector<float> inv_freq = {1.0f, 0.1f, 0.01f, 0.001f};
  for (bool neox : {false, true}) {
    std::vector<float> x = {1, 2, 3, 4, 5, 6, 7, 8};
    const std::vector<float> orig = x;
    const int pos[1] = {3};
    Rope(x.data(), 1, 1, dim, dim, pos, inv_freq.data(), neox);
    double n0 = 0, n1 = 0;
    for (int i = 0; i < dim; ++i) n0 += orig[i] * orig[i], n1 += x[i] * x[i];
    EXPECT_NEAR(n0, n1, 1e-4);
    // Pair 0 rotates by angle 3 · inv_freq[0].
    const int a = 0, b = neox ? dim / 2 : 1;
    EXPECT_NEAR(x[a], orig[a] * std::cos(3.0f) - orig[b] * std::sin(3.0f), 1e-5);
    EXPECT_NEAR(x[b], orig[a] * std::sin(3.0f) + orig[b] * std::cos(3.0f), 1e-5);
  }
}

TEST(Ops, RopeAtPositionZeroIsIdentity) {
  std::vector<float> x = {1, 2, 3, 4}, inv = {1.0f, 0.5f};
  const int pos[1] = {0};
  Rope(x.data(), 1, 1, 4, 4, pos, inv.data(), false);
  EXPECT_EQ(x, (std::vector<float>{1, 2, 3, 4}));
}

TEST(Ops, SiluMul) {
  std::vector<float> a = {0.0f, 1.0f, -1.0f}, b = {2, 2, 2};
  SiluMul(a.data(), b.data(), 3);
  EXPECT_NEAR(a[0], 0.0f, 1e-7);
  EXPECT_NEAR(a[1], 2.0f / (1 + std::exp(-1.0f)), 1e-6);
  EXPECT_NEAR(a[2], -2.0f / (1 + std::exp(1.0f)), 1e-6);
}

}  // namespace
}  // namespace tqlm::kernels
