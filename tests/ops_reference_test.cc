// Every op of kernels/cpu/ops.h against a float64 reference of its definition, over random
// shapes (odd, tail and model sizes), every RoPE pair, both pair conventions and partial
// rotary dimensions, plus the edge values each op is documented to handle.
//
// Tolerances are counted roundings, not tuned: each float operation rounds once (relative
// u = 2^-24), libm's expf/tanhf are within 2 ulp, and the bound of a chain is the sum.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "kernels/cpu/ops.h"

namespace tqlm::kernels {
namespace {

constexpr double kU = 1.0 / (1 << 24);
constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
// Results below the smallest normal float keep only absolute precision.
constexpr double kTiny = 1.2e-38;

std::vector<float> Normal(std::mt19937& rng, size_t n, float sigma = 1.0f) {
  std::normal_distribution<float> nd(0.0f, sigma);
  std::vector<float> v(n);
  for (float& x : v) x = nd(rng);
  return v;
}

const int kDims[] = {1, 2, 3, 5, 16, 17, 64, 100, 576, 640, 1536};

TEST(OpsReference, RmsNorm) {
  std::mt19937 rng(1);
  for (int d : kDims) {
    for (int n : {1, 2, 7}) {
      for (float offset : {0.0f, 1.0f}) {
        for (float eps : {0.0f, 1e-6f, 1e-5f}) {
          for (bool in_place : {false, true}) {
            SCOPED_TRACE(::testing::Message() << "d " << d << " n " << n << " offset " << offset
                                              << " eps " << eps << " in place " << in_place);
            // Rows of very different scales (RmsNorm is scale invariant up to eps).
            std::vector<float> x = Normal(rng, size_t(n) * d), w = Normal(rng, size_t(d), 0.3f);
            for (int t = 0; t < n; ++t)
              for (int i = 0; i < d; ++i) x[size_t(t) * d + i] *= std::pow(10.0f, float(t % 3) * 3 - 3);
            std::vector<float> out(x.size() + 1, -7.0f);
            std::vector<float> in = x;
            float* dst = in_place ? in.data() : out.data();
            RmsNorm(in.data(), w.data(), offset, eps, n, d, dst);
            if (!in_place) {
              ASSERT_EQ(out[x.size()], -7.0f);
            }
            for (int t = 0; t < n; ++t) {
              double ss = 0;
              for (int i = 0; i < d; ++i) ss += double(x[size_t(t) * d + i]) * x[size_t(t) * d + i];
              const double scale = 1 / std::sqrt(ss / d + eps);
              for (int i = 0; i < d; ++i) {
                const double xi = x[size_t(t) * d + i];
                const double want = xi * scale * (double(w[i]) + offset);
                // scale rounded to float, w + offset rounded, two products: 4u of the terms.
                const double tol = 4 * kU * std::fabs(xi * scale) * (std::fabs(w[i]) + offset) + kTiny;
                ASSERT_NEAR(dst[size_t(t) * d + i], want, tol) << "row " << t << " i " << i;
              }
            }
          }
        }
      }
    }
  }
}

// A zero row is zero (also with eps = 0, where 0/0 would be NaN); a NaN anywhere in a row makes
// the whole row NaN; an infinite entry makes its own output NaN (inf/inf) and the row's others
// 0 (x/inf); subnormal rows normalize like any other (no overflow of 1/rms).
TEST(OpsReference, RmsNormEdgeRows) {
  const int d = 33;
  std::vector<float> w(d, 0.5f), out(d);
  for (float eps : {0.0f, 1e-6f}) {
    std::vector<float> zero(d, 0.0f);
    RmsNorm(zero.data(), w.data(), 0.0f, eps, 1, d, out.data());
    for (float v : out) ASSERT_EQ(v, 0.0f) << "eps " << eps;
  }
  std::vector<float> x(d, 1.0f);
  x[20] = kNaN;
  RmsNorm(x.data(), w.data(), 0.0f, 1e-6f, 1, d, out.data());
  for (float v : out) ASSERT_TRUE(std::isnan(v));
  x[20] = kInf;
  RmsNorm(x.data(), w.data(), 0.0f, 1e-6f, 1, d, out.data());
  for (int i = 0; i < d; ++i) {
    if (i == 20) ASSERT_TRUE(std::isnan(out[i]));
    else ASSERT_EQ(out[i], 0.0f) << i;
  }
  // Subnormal entries with eps = 0: 1/rms ~ 1e40 is beyond float, the result is not.
  std::vector<float> tiny(d);
  for (int i = 0; i < d; ++i) tiny[i] = float(i % 5 + 1) * 1e-40f;
  RmsNorm(tiny.data(), w.data(), 0.0f, 0.0f, 1, d, out.data());
  double ss = 0;
  for (float v : tiny) ss += double(v) * v;
  for (int i = 0; i < d; ++i) {
    const double want = tiny[i] / std::sqrt(ss / d) * 0.5;
    ASSERT_NEAR(out[i], want, 4 * kU * std::fabs(want)) << i;
  }
  // Huge finite entries: the double sum of squares does not overflow.
  std::vector<float> huge(d, 3e38f);
  huge[0] = -3e38f;
  RmsNorm(huge.data(), w.data(), 1.0f, 1e-6f, 1, d, out.data());
  for (int i = 0; i < d; ++i) ASSERT_NEAR(out[i], (i == 0 ? -1.0 : 1.0) * 1.5, 4 * kU * 1.5) << i;
}

struct RopeCase {
  int head_dim, rot_dim, n_heads;
};

TEST(OpsReference, RopeEveryPairBothConventionsPartialDims) {
  std::mt19937 rng(2);
  const RopeCase cases[] = {{8, 8, 1},    {64, 64, 9},   {64, 32, 3},  {128, 128, 12},
                            {128, 64, 2}, {256, 256, 4}, {256, 128, 1}, {80, 80, 5},
                            {96, 32, 2},  {16, 2, 3}};
  for (const RopeCase& rc : cases) {
    for (float base : {10000.0f, 1e6f}) {
      for (float factor : {1.0f, 8.0f}) {
        for (bool neox : {false, true}) {
          SCOPED_TRACE(::testing::Message() << "head_dim " << rc.head_dim << " rot_dim " << rc.rot_dim
                                            << " heads " << rc.n_heads << " base " << base
                                            << " factor " << factor << " neox " << neox);
          const int half = rc.rot_dim / 2, n = 5;
          std::vector<float> inv_freq(half);
          for (int i = 0; i < half; ++i)
            inv_freq[i] = float(std::pow(double(base), -2.0 * i / rc.rot_dim) / factor);
          const int pos[n] = {0, 1, 17, 4095, 131071};
          std::vector<float> x = Normal(rng, size_t(n) * rc.n_heads * rc.head_dim);
          std::vector<float> y = x;
          Rope(y.data(), n, rc.n_heads, rc.head_dim, rc.rot_dim, pos, inv_freq.data(), neox);
          for (int t = 0; t < n; ++t) {
            for (int h = 0; h < rc.n_heads; ++h) {
              const size_t row = (size_t(t) * rc.n_heads + h) * rc.head_dim;
              std::vector<bool> seen(rc.head_dim, false);
              for (int i = 0; i < half; ++i) {
                const int i0 = neox ? i : 2 * i, i1 = neox ? i + half : 2 * i + 1;
                seen[i0] = seen[i1] = true;
                const double angle = double(pos[t]) * inv_freq[i];
                const double c = std::cos(angle), s = std::sin(angle);
                const double a = x[row + i0], b = x[row + i1];
                // cos and sin rounded to float, two products and a sum, each rounded.
                const double tol = 4 * kU * (std::fabs(a) + std::fabs(b)) + kTiny;
                ASSERT_NEAR(y[row + i0], a * c - b * s, tol) << "t " << t << " h " << h << " pair " << i;
                ASSERT_NEAR(y[row + i1], a * s + b * c, tol) << "t " << t << " h " << h << " pair " << i;
              }
              // Dimensions past rot_dim are not touched, bit for bit.
              for (int j = 0; j < rc.head_dim; ++j) {
                if (!seen[j]) {
                  ASSERT_EQ(y[row + j], x[row + j]) << "dim " << j << " is not rotary";
                }
              }
            }
          }
        }
      }
    }
  }
}

TEST(OpsReference, SiluMul) {
  std::mt19937 rng(3);
  for (size_t n : {size_t(1), size_t(3), size_t(17), size_t(1000)}) {
    std::vector<float> a = Normal(rng, n, 4.0f), b = Normal(rng, n);
    a[0] = n > 1 ? -100.0f : a[0];  // exp(100) overflows float: a / inf = -0
    std::vector<float> got = a;
    SiluMul(got.data(), b.data(), n);
    for (size_t i = 0; i < n; ++i) {
      const double want = double(a[i]) / (1 + std::exp(-double(a[i]))) * b[i];
      // expf within 2 ulp, then +1, /, *: 5u of the result; results below FLT_MIN absolute.
      ASSERT_NEAR(got[i], want, 5 * kU * std::fabs(want) + kTiny) << "a " << a[i];
    }
  }
  // Non-finite: NaN propagates; silu(+inf) = inf; silu(-inf) is NaN (-inf/inf), documented.
  std::vector<float> a = {kNaN, kInf, -kInf, 0.0f}, b(4, 2.0f);
  SiluMul(a.data(), b.data(), 4);
  EXPECT_TRUE(std::isnan(a[0]));
  EXPECT_EQ(a[1], kInf);
  EXPECT_TRUE(std::isnan(a[2]));
  EXPECT_EQ(a[3], 0.0f);
}

TEST(OpsReference, GeluMul) {
  std::mt19937 rng(4);
  const double k = std::sqrt(2 / 3.14159265358979323846);
  for (size_t n : {size_t(1), size_t(3), size_t(17), size_t(1000)}) {
    std::vector<float> a = Normal(rng, n, 3.0f), b = Normal(rng, n);
    if (n > 3) {
      a[1] = 1e13f;   // v³ overflows float: tanh(inf) = 1, gelu(v) = v
      a[2] = -1e13f;  // gelu(v) = -0
    }
    std::vector<float> got = a;
    GeluMul(got.data(), b.data(), n);
    for (size_t i = 0; i < n; ++i) {
      const double v = a[i];
      const double th = std::tanh(k * (v + 0.044715 * v * v * v));
      const double want = 0.5 * v * (1 + th) * b[i];
      // 1 + tanh cancels for v < 0: its absolute error (tanhf 2 ulp, the argument's roundings
      // times tanh' <= 1, the sum) is ~6u, times 0.5 |v b|; the rest 4u relative.
      const double arg = std::fabs(k * (v + 0.044715 * v * v * v));
      const double tol = 0.5 * std::fabs(v * b[i]) * kU * (6 + 4 * std::min(arg, 1e30) * (1 - th * th)) +
                         4 * kU * std::fabs(want) + kTiny;
      ASSERT_NEAR(got[i], want, tol) << "v " << v;
    }
  }
  std::vector<float> a = {kNaN, kInf, 0.0f}, b(3, 2.0f);
  GeluMul(a.data(), b.data(), 3);
  EXPECT_TRUE(std::isnan(a[0]));
  EXPECT_EQ(a[1], kInf);
  EXPECT_EQ(a[2], 0.0f);
}

// Softcap: cap * tanh(a / cap). The quotient's rounding (tanh' = 1 - th^2 carries it), tanhf's
// 2 ulp and the product's one: (|x/cap| (1 - th^2) + 3 |th|) u relative to cap (bounded with a
// factor 2 on the first term), and the
// saturation at ±cap for huge or infinite inputs; NaN stays NaN.
TEST(OpsReference, Softcap) {
  std::mt19937 rng(6);
  for (float cap : {30.0f, 50.0f, 1.5f}) {
    for (size_t n : {size_t(1), size_t(5), size_t(257)}) {
      std::vector<float> a = Normal(rng, n, 2 * cap);
      std::vector<float> got = a;
      Softcap(got.data(), cap, n);
      for (size_t i = 0; i < n; ++i) {
        const double x = double(a[i]) / cap, th = std::tanh(x);
        const double want = cap * th;
        const double tol = cap * kU * (2 * std::fabs(x) * (1 - th * th) + 3 * std::fabs(th)) + kTiny;
        ASSERT_NEAR(got[i], want, tol) << "x " << a[i] << " cap " << cap;
      }
    }
  }
  std::vector<float> a = {kNaN, kInf, -kInf, 1e30f, 0.0f};
  Softcap(a.data(), 30.0f, a.size());
  EXPECT_TRUE(std::isnan(a[0]));
  EXPECT_EQ(a[1], 30.0f);
  EXPECT_EQ(a[2], -30.0f);
  EXPECT_EQ(a[3], 30.0f);
  EXPECT_EQ(a[4], 0.0f);
}

// Add, AddRows and Scale round once: bit-exact with the correctly rounded double result
// (the double sum or product of two floats is exact).
TEST(OpsReference, AddAddRowsScaleAreCorrectlyRounded) {
  std::mt19937 rng(5);
  for (int d : kDims) {
    for (int n : {1, 3}) {
      std::vector<float> a = Normal(rng, size_t(n) * d, 100.0f), b = Normal(rng, size_t(n) * d);
      std::vector<float> bias = Normal(rng, size_t(d));
      std::vector<float> sum = a, rows = a, scaled = a;
      Add(sum.data(), b.data(), sum.size());
      AddRows(rows.data(), bias.data(), n, d);
      const float s = std::uniform_real_distribution<float>(-3, 3)(rng);
      Scale(scaled.data(), s, scaled.size());
      for (size_t i = 0; i < a.size(); ++i) {
        ASSERT_EQ(sum[i], float(double(a[i]) + b[i])) << i;
        ASSERT_EQ(rows[i], float(double(a[i]) + bias[i % d])) << i;
        ASSERT_EQ(scaled[i], float(double(a[i]) * s)) << i;
      }
    }
  }
  // Empty ranges touch nothing.
  float x = 1.0f, y = 2.0f;
  Add(&x, &y, 0);
  AddRows(&x, &y, 0, 1);
  Scale(&x, 5.0f, 0);
  EXPECT_EQ(x, 1.0f);
}

}  // namespace
}  // namespace tqlm::kernels
