// Every Highway kernel on every SIMD target this binary contains and this CPU runs (AVX3_SPR,
// AVX3_ZEN4, AVX3, AVX2, SSE4, SSSE3, EMU128: whichever apply), against float64 references
// written here from each kernel's contract (not from its code). Each test is instantiated once
// per target, so `ctest -R '/AVX2$'` runs the AVX2 build of everything, and a user on an AVX2
// laptop runs code the suite has run.
//
// Error bounds are derived, not tuned: a float sum of n products, however it is ordered or
// split into lanes, is within n·u·Σ|terms| of the exact sum (u = 2^-24, n counts every
// rounding a term can go through, plus a few for the horizontal reduction); the checks use
// (n + 8)·u·Σ|terms|. A skipped, doubled or mis-scaled term is far outside that.
#include <gtest/gtest-spi.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "codec/kernels.h"
#include "hwy_target_scope.h"
#include "kernels/cpu/attention_raw.h"
#include "kernels/cpu/matmul_internal.h"
#include "tqlm/codec.h"

namespace tqlm {
namespace {

using testing::AllTargets;
using testing::TargetScope;

constexpr double kU = 1.0 / (1 << 24);  // unit roundoff of float
constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
// Relative error of the softmax's 2^x (attention_raw.cc: 1.6e-7 evaluated in float) plus its
// final rounding.
constexpr double kExp2Err = 1.6e-7 + 1.0 / (1 << 24);

// IEEE binary16 and bfloat16 from their definitions (independent of the engine's converters).
double Half(uint16_t h) {
  const int e = (h >> 10) & 31, m = h & 1023;
  const double s = h & 0x8000 ? -1.0 : 1.0;
  if (e == 0) return s * std::ldexp(m, -24);
  if (e == 31) return m ? std::numeric_limits<double>::quiet_NaN() : s * HUGE_VAL;
  return s * std::ldexp(1024 + m, e - 25);
}
double BFloat(uint16_t h) {
  const uint32_t bits = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}
// Sum of n float products: |computed - exact| <= bound.
double SumBound(double abs_sum, size_t n) { return (double(n) + 8) * kU * abs_sum + 1e-30; }

class SimdTarget : public ::testing::TestWithParam<int64_t> {
 protected:
  void SetUp() override { scope_.emplace(GetParam()); }
  void TearDown() override { scope_.reset(); }  // runs after a failed ASSERT too

 private:
  std::optional<TargetScope> scope_;
};

std::string TargetParamName(const ::testing::TestParamInfo<int64_t>& info) {
  return testing::TargetName(info.param);
}

// ---------------------------------------------------------------- matmul_hwy.cc: DotRow*

enum class WType { kF32, kF16, kBF16 };

void CheckDotRow(WType wt, std::mt19937& rng) {
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (size_t cols : {1, 2, 3, 7, 8, 15, 16, 17, 31, 33, 64, 65, 127, 200, 576}) {
    for (int n_tokens : {1, 2, 3, 4, 5, 7, 8, 9}) {
      SCOPED_TRACE(::testing::Message() << "cols " << cols << " tokens " << n_tokens);
      const size_t x_stride = cols + 3, out_stride = 3;
      std::vector<float> x(x_stride * size_t(n_tokens));
      for (float& v : x) v = nd(rng);
      std::vector<float> wf(cols);
      std::vector<uint16_t> wh(cols + 1);  // +1: the row starts unaligned, at wh.data() + 1
      std::vector<double> w(cols);
      for (size_t c = 0; c < cols; ++c) {
        wf[c] = nd(rng);
        if (wt == WType::kF16) {
          wh[c + 1] = uint16_t(std::uniform_int_distribution<int>(0, 0xfbff)(rng) & 0xbbff);
          w[c] = Half(wh[c + 1]);  // any finite half with |w| < 2 (exponent bit 14 clear)
        } else if (wt == WType::kBF16) {
          uint32_t bits;
          std::memcpy(&bits, &wf[c], 4);
          wh[c + 1] = uint16_t(bits >> 16);
          w[c] = BFloat(wh[c + 1]);
        } else {
          w[c] = wf[c];
        }
      }
      std::vector<float> out(out_stride * size_t(n_tokens) + 1, -7.0f);
      switch (wt) {
        case WType::kF32:
          kernels::internal::DotRowF32(wf.data(), x.data(), x_stride, n_tokens, cols, out.data(),
                                       out_stride);
          break;
        case WType::kF16:
          kernels::internal::DotRowF16(wh.data() + 1, x.data(), x_stride, n_tokens, cols,
                                       out.data(), out_stride);
          break;
        case WType::kBF16:
          kernels::internal::DotRowBF16(wh.data() + 1, x.data(), x_stride, n_tokens, cols,
                                        out.data(), out_stride);
          break;
      }
      for (size_t i = 0; i < out.size(); ++i) {
        if (i % out_stride == 0 && i / out_stride < size_t(n_tokens)) {
          const size_t t = i / out_stride;
          double want = 0, abs_sum = 0;
          for (size_t c = 0; c < cols; ++c) {
            want += w[c] * x[t * x_stride + c];
            abs_sum += std::fabs(w[c] * x[t * x_stride + c]);
          }
          ASSERT_NEAR(out[i], want, SumBound(abs_sum, cols)) << "token " << t;
        } else {
          ASSERT_EQ(out[i], -7.0f) << "wrote outside its outputs at " << i;
        }
      }
    }
  }
}

TEST_P(SimdTarget, DotRowF32) {
  std::mt19937 rng(1);
  CheckDotRow(WType::kF32, rng);
}
TEST_P(SimdTarget, DotRowF16) {
  std::mt19937 rng(2);
  CheckDotRow(WType::kF16, rng);
}
TEST_P(SimdTarget, DotRowBF16) {
  std::mt19937 rng(3);
  CheckDotRow(WType::kBF16, rng);
}

// Non-finite weights or activations reach exactly the outputs that use them.
TEST_P(SimdTarget, DotRowPropagatesNonFinite) {
  const size_t cols = 37;
  const int n_tokens = 6;
  std::vector<float> w(cols, 0.5f), x(cols * n_tokens, 1.0f), out(n_tokens);
  x[2 * cols + 3] = kNaN;   // token 2: NaN
  x[4 * cols + 36] = kInf;  // token 4: +inf in the scalar tail
  kernels::internal::DotRowF32(w.data(), x.data(), cols, n_tokens, cols, out.data(), 1);
  for (int t = 0; t < n_tokens; ++t) {
    if (t == 2) EXPECT_TRUE(std::isnan(out[t]));
    else if (t == 4) EXPECT_EQ(out[t], kInf);
    else EXPECT_EQ(out[t], 0.5f * cols) << t;
  }
  // BF16: a NaN weight poisons every token; an infinite one gives inf, or NaN times 0.
  std::vector<uint16_t> wh(cols, 0x3f00);  // 0.5
  wh[20] = 0x7fc0;                         // NaN
  std::fill(x.begin(), x.end(), 1.0f);
  kernels::internal::DotRowBF16(wh.data(), x.data(), cols, n_tokens, cols, out.data(), 1);
  for (int t = 0; t < n_tokens; ++t) EXPECT_TRUE(std::isnan(out[t])) << t;
  wh[20] = 0x7f80;  // +inf
  x[3 * cols + 20] = 0.0f;
  kernels::internal::DotRowBF16(wh.data(), x.data(), cols, n_tokens, cols, out.data(), 1);
  for (int t = 0; t < n_tokens; ++t) {
    if (t == 3) EXPECT_TRUE(std::isnan(out[t]));
    else EXPECT_EQ(out[t], kInf) << t;
  }
}

// The same for F16 weight rows (on targets without F16C, SSE4 and below, Highway's emulated
// promotion read exponent 31 as finite; matmul_hwy.cc widens those halves itself).
TEST_P(SimdTarget, DotRowF16PropagatesNonFinite) {
  const size_t cols = 37;
  const int n_tokens = 6;
  std::vector<float> x(cols * n_tokens, 1.0f), out(n_tokens);
  std::vector<uint16_t> wh(cols, 0x3800);  // 0.5
  wh[20] = 0x7e00;                         // NaN
  kernels::internal::DotRowF16(wh.data(), x.data(), cols, n_tokens, cols, out.data(), 1);
  for (int t = 0; t < n_tokens; ++t) EXPECT_TRUE(std::isnan(out[t])) << t;
  wh[20] = 0x7c00;  // +inf
  x[3 * cols + 20] = 0.0f;
  kernels::internal::DotRowF16(wh.data(), x.data(), cols, n_tokens, cols, out.data(), 1);
  for (int t = 0; t < n_tokens; ++t) {
    if (t == 3) EXPECT_TRUE(std::isnan(out[t]));
    else EXPECT_EQ(out[t], kInf) << t;
  }
}

// Subnormal and largest-finite f16 weights are decoded exactly.
TEST_P(SimdTarget, DotRowF16ExtremeValues) {
  const size_t cols = 48;
  const uint16_t values[] = {0x0001, 0x03ff, 0x0400, 0x7bff, 0xfbff, 0x8001, 0x0000, 0x8000};
  for (uint16_t h : values) {
    std::vector<uint16_t> w(cols, 0);
    std::vector<float> x(cols, 0.0f), out(1);
    for (size_t c = 0; c < cols; c += 5) {  // lane positions 0, 5, 10, ... and the tail
      std::fill(w.begin(), w.end(), uint16_t(0));
      std::fill(x.begin(), x.end(), 0.0f);
      w[c] = h;
      x[c] = 1.0f;
      kernels::internal::DotRowF16(w.data(), x.data(), cols, 1, cols, out.data(), 1);
      ASSERT_EQ(double(out[0]), Half(h)) << std::hex << h << std::dec << " at " << c;
    }
  }
}

// ---------------------------------------------------------------- attention_raw.cc

struct RawBlock {
  int d, n_tok;
  std::vector<float> k, kt;          // row-major [64][d], transposed [d][64]
  std::vector<uint16_t> kh, kht;
  std::vector<double> kd, khd;       // exact values of the f32 and f16 keys
};

RawBlock MakeBlock(int d, int n_tok, std::mt19937& rng) {
  std::normal_distribution<float> nd(0.0f, 1.0f);
  RawBlock b{d, n_tok, {}, {}, {}, {}, {}, {}};
  const size_t n = 64 * size_t(d);
  b.k.assign(n, 0.0f);
  b.kt.assign(n, 0.0f);
  b.kh.assign(n, 0);
  b.kht.assign(n, 0);
  b.kd.assign(n, 0.0);
  b.khd.assign(n, 0.0);
  for (int t = 0; t < 64; ++t) {
    for (int j = 0; j < d; ++j) {
      const float x = t < n_tok ? nd(rng) : 0.0f;
      const uint16_t h = uint16_t(std::uniform_int_distribution<int>(0, 0xfbff)(rng) & 0xbbff);
      const size_t r = size_t(t) * d + j, c = size_t(j) * 64 + t;
      b.k[r] = b.kt[c] = x;
      b.kd[r] = x;
      b.kh[r] = b.kht[c] = t < n_tok ? h : 0;
      b.khd[r] = Half(b.kh[r]);
    }
  }
  return b;
}

TEST_P(SimdTarget, AttnScores) {
  std::mt19937 rng(4);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (int d : {16, 32, 48, 64, 80, 96, 128, 256}) {
    for (int n_tok : {1, 2, 3, 17, 37, 63, 64}) {
      const RawBlock b = MakeBlock(d, n_tok, rng);
      for (int nq : {1, 2, 3, 4, 5, 6, 7, 8, 9, 13}) {
        SCOPED_TRACE(::testing::Message() << "d " << d << " n_tok " << n_tok << " nq " << nq);
        const int stride = 67;
        std::vector<float> q(size_t(nq) * d);
        for (float& v : q) v = nd(rng);
        std::vector<float> s32(size_t(nq) * stride + 64, -7.0f), s16(s32), s32t(s32), s16t(s32);
        kernels::AttnScoresF32(q.data(), nq, b.k.data(), n_tok, d, s32.data(), stride);
        kernels::AttnScoresF16(q.data(), nq, b.kh.data(), n_tok, d, s16.data(), stride);
        kernels::AttnScoresF32T(q.data(), nq, b.kt.data(), d, s32t.data(), stride);
        kernels::AttnScoresF16T(q.data(), nq, b.kht.data(), d, s16t.data(), stride);
        for (int i = 0; i < nq; ++i) {
          for (int t = 0; t < 64; ++t) {
            double w32 = 0, w16 = 0, a32 = 0, a16 = 0;
            for (int j = 0; j < d; ++j) {
              const double qj = q[size_t(i) * d + j];
              w32 += qj * b.kd[size_t(t) * d + j];
              w16 += qj * b.khd[size_t(t) * d + j];
              a32 += std::fabs(qj * b.kd[size_t(t) * d + j]);
              a16 += std::fabs(qj * b.khd[size_t(t) * d + j]);
            }
            const size_t at = size_t(i) * stride + t;
            // The transposed kernels score all 64 slots; the row-major ones n_tok only.
            ASSERT_NEAR(s32t[at], w32, SumBound(a32, d)) << "F32T row " << i << " tok " << t;
            ASSERT_NEAR(s16t[at], w16, SumBound(a16, d)) << "F16T row " << i << " tok " << t;
            if (t < n_tok) {
              ASSERT_NEAR(s32[at], w32, SumBound(a32, d)) << "F32 row " << i << " tok " << t;
              ASSERT_NEAR(s16[at], w16, SumBound(a16, d)) << "F16 row " << i << " tok " << t;
            } else {
              ASSERT_EQ(s32[at], -7.0f) << "F32 wrote past n_tok";
              ASSERT_EQ(s16[at], -7.0f) << "F16 wrote past n_tok";
            }
          }
        }
        // Nothing written outside each row's 64 slots.
        for (size_t x = 0; x < s32.size(); ++x) {
          if (x % stride < 64 && x / stride < size_t(nq)) continue;
          ASSERT_EQ(s32t[x], -7.0f) << x;
          ASSERT_EQ(s16t[x], -7.0f) << x;
          ASSERT_EQ(s32[x], -7.0f) << x;
          ASSERT_EQ(s16[x], -7.0f) << x;
        }
      }
    }
  }
}

// f16 keys and values that overflowed to +-inf, or are NaN, read as such on every target: the
// scores and sums that use them are inf or NaN exactly where IEEE arithmetic says.
TEST_P(SimdTarget, AttnF16NonFiniteEntries) {
  for (int d : {16, 64, 80}) {
    for (int n_tok : {1, 5, 64}) {
      SCOPED_TRACE(::testing::Message() << "d " << d << " n_tok " << n_tok);
      std::vector<uint16_t> k(64 * size_t(d), 0x3c00), kt(k.size(), 0x3c00);  // 1.0
      const int t_inf = n_tok - 1, t_nan = n_tok / 2, j_bad = d - 3;
      k[size_t(t_inf) * d + j_bad] = kt[size_t(j_bad) * 64 + t_inf] = 0x7c00;  // +inf
      if (t_nan != t_inf) k[size_t(t_nan) * d + 1] = kt[64 + t_nan] = 0xfe00;  // NaN
      std::vector<float> q(size_t(d), 0.5f), s(64, -7.0f), st(64, -7.0f);
      kernels::AttnScoresF16(q.data(), 1, k.data(), n_tok, d, s.data(), 64);
      kernels::AttnScoresF16T(q.data(), 1, kt.data(), d, st.data(), 64);
      for (int t = 0; t < n_tok; ++t) {
        for (float got : {s[t], st[t]}) {
          if (t == t_inf) ASSERT_EQ(got, kInf) << t;
          else if (t == t_nan) ASSERT_TRUE(std::isnan(got)) << t;
          else ASSERT_EQ(got, 0.5f * d) << t;
        }
      }
      std::vector<float> p(64, 0.25f), acc(size_t(d), 0.0f);
      kernels::AttnAccumF16(p.data(), 1, 64, k.data(), n_tok, d, acc.data());
      for (int j = 0; j < d; ++j) {
        if (j == j_bad) ASSERT_EQ(acc[j], kInf) << j;
        else if (j == 1 && t_nan != t_inf) ASSERT_TRUE(std::isnan(acc[j])) << j;
        else ASSERT_EQ(acc[j], 0.25f * n_tok) << j;
      }
    }
  }
}

TEST_P(SimdTarget, AttnAccum) {
  std::mt19937 rng(5);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (int d : {16, 32, 48, 64, 80, 96, 128, 256}) {
    for (int n_tok : {1, 2, 3, 17, 37, 63, 64}) {
      const RawBlock b = MakeBlock(d, n_tok, rng);
      for (int nq : {1, 2, 3, 4, 5, 6, 7, 8, 9, 13}) {
        SCOPED_TRACE(::testing::Message() << "d " << d << " n_tok " << n_tok << " nq " << nq);
        const int stride = 67;
        std::vector<float> p(size_t(nq) * stride), acc0(size_t(nq) * d + 16);
        for (float& v : p) v = std::fabs(nd(rng));
        for (float& v : acc0) v = nd(rng);
        std::vector<float> a32 = acc0, a16 = acc0;
        kernels::AttnAccumF32(p.data(), nq, stride, b.k.data(), n_tok, d, a32.data());
        kernels::AttnAccumF16(p.data(), nq, stride, b.kh.data(), n_tok, d, a16.data());
        for (int i = 0; i < nq; ++i) {
          for (int j = 0; j < d; ++j) {
            const size_t at = size_t(i) * d + j;
            double w32 = acc0[at], w16 = acc0[at], s32 = std::fabs(acc0[at]), s16 = s32;
            for (int t = 0; t < n_tok; ++t) {
              const double pt = p[size_t(i) * stride + t];
              w32 += pt * b.kd[size_t(t) * d + j];
              w16 += pt * b.khd[size_t(t) * d + j];
              s32 += std::fabs(pt * b.kd[size_t(t) * d + j]);
              s16 += std::fabs(pt * b.khd[size_t(t) * d + j]);
            }
            ASSERT_NEAR(a32[at], w32, SumBound(s32, n_tok)) << "F32 row " << i << " dim " << j;
            ASSERT_NEAR(a16[at], w16, SumBound(s16, n_tok)) << "F16 row " << i << " dim " << j;
          }
        }
        for (size_t x = size_t(nq) * d; x < acc0.size(); ++x) {
          ASSERT_EQ(a32[x], acc0[x]) << "wrote past the accumulator";
          ASSERT_EQ(a16[x], acc0[x]) << "wrote past the accumulator";
        }
      }
    }
  }
}

// The online softmax update against its definition (base 2, masked = -inf), from fresh and
// running states, at every tail length.
TEST_P(SimdTarget, AttnSoftmaxUpdate) {
  std::mt19937 rng(6);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  const int d = 32, stride = 70;
  for (int n_tok : {1, 2, 3, 5, 8, 15, 16, 17, 31, 33, 63, 64}) {
    for (int nq : {1, 3, 8}) {
      SCOPED_TRACE(::testing::Message() << "n_tok " << n_tok << " nq " << nq);
      std::vector<float> s(size_t(nq) * stride), m(nq), l(nq), acc(size_t(nq) * d);
      for (int i = 0; i < nq; ++i) {
        for (int t = 0; t < n_tok; ++t) s[size_t(i) * stride + t] = (t % 5 == 2) ? -kInf : 4 * nd(rng);
        // Row 0 fresh; others running, with a max above or below the block's.
        m[i] = i == 0 ? -kInf : 4 * nd(rng);
        l[i] = i == 0 ? 0.0f : 1.5f;
      }
      for (float& v : acc) v = nd(rng);
      const std::vector<float> s0 = s, m0 = m, l0 = l, acc0 = acc;
      kernels::AttnSoftmaxUpdate(s.data(), nq, stride, n_tok, m.data(), l.data(), acc.data(), d);
      for (int i = 0; i < nq; ++i) {
        double bmax = -HUGE_VAL;
        for (int t = 0; t < n_tok; ++t) bmax = std::max(bmax, double(s0[size_t(i) * stride + t]));
        if (bmax == -HUGE_VAL) {  // all masked: state unchanged, weights 0
          ASSERT_EQ(m[i], m0[i]);
          ASSERT_EQ(l[i], l0[i]);
          for (int t = 0; t < n_tok; ++t) ASSERT_EQ(s[size_t(i) * stride + t], 0.0f);
          continue;
        }
        const double mn = std::max(double(m0[i]), bmax);
        const double corr = m0[i] == -kInf ? 0.0 : std::exp2(double(m0[i]) - mn);
        ASSERT_EQ(m[i], float(mn));
        double sum = 0;
        for (int t = 0; t < n_tok; ++t) {
          const double x = double(s0[size_t(i) * stride + t]) - mn;
          if (x < -126) {  // masked (-inf), or below 2^-126: exactly 0, never a denormal
            ASSERT_EQ(s[size_t(i) * stride + t], 0.0f) << "row " << i << " tok " << t;
            continue;
          }
          const double want = std::exp2(x);
          sum += want;
          // 2^x of a float difference: x is rounded once (relative error ln2·|x|·u in 2^x),
          // then the polynomial (documented: 1.6e-7 relative, evaluated in float).
          ASSERT_NEAR(s[size_t(i) * stride + t], want, want * (kExp2Err + std::fabs(x) * kU))
              << "row " << i << " tok " << t;
        }
        const double lw = double(l0[i]) * corr + sum;
        const double dm = std::isinf(m0[i]) ? 0.0 : std::fabs(double(m0[i]) - mn);
        ASSERT_NEAR(l[i], lw, lw * (kExp2Err + (n_tok + 8 + dm) * kU) + 1e-30) << "row " << i;
        for (int j = 0; j < d; ++j) {
          const double aw = double(acc0[size_t(i) * d + j]) * corr;
          ASSERT_NEAR(acc[size_t(i) * d + j], aw, std::fabs(aw) * ((dm + 4) * kU) + 1e-30)
              << "row " << i;
        }
      }
      for (int i = 0; i < nq; ++i)
        for (int t = n_tok; t < stride; ++t) ASSERT_EQ(s[size_t(i) * stride + t], s0[size_t(i) * stride + t]);
    }
  }
}

// Non-finite scores (documented in attention_raw.h): -inf is a masked entry (weight 0); a NaN
// or +inf score makes that row's denominator NaN, so its attention output is NaN on every
// target, whatever the position of the bad score (vector body or scalar tail) and whatever the
// state. Rows without one are untouched by it.
TEST_P(SimdTarget, AttnSoftmaxNonFiniteScores) {
  const int d = 16, stride = 64;
  for (int n_tok : {1, 3, 16, 17, 64}) {
    for (int bad_at = 0; bad_at < n_tok; bad_at += std::max(1, n_tok / 5)) {
      for (float bad : {kNaN, kInf}) {
        for (bool others_masked : {false, true}) {
          for (float m_start : {-kInf, 0.5f}) {
            SCOPED_TRACE(::testing::Message() << "n_tok " << n_tok << " bad " << bad << " at "
                                              << bad_at << " masked " << others_masked
                                              << " m " << m_start);
            const int nq = 2;
            std::vector<float> s(size_t(nq) * stride), m(nq, m_start), l(nq, m_start == -kInf ? 0.0f : 1.0f),
                acc(size_t(nq) * d, 1.0f);
            for (int i = 0; i < nq; ++i)
              for (int t = 0; t < n_tok; ++t) s[size_t(i) * stride + t] = others_masked ? -kInf : 0.25f * t;
            s[size_t(bad_at)] = bad;  // row 0 only
            kernels::AttnSoftmaxUpdate(s.data(), nq, stride, n_tok, m.data(), l.data(), acc.data(), d);
            ASSERT_TRUE(std::isnan(l[0])) << "row 0 l = " << l[0];
            // Row 1 is computed as without the bad row.
            if (others_masked) {
              ASSERT_EQ(l[1], m_start == -kInf ? 0.0f : 1.0f);
            } else {
              ASSERT_TRUE(std::isfinite(l[1]));
              ASSERT_GT(l[1], 0.0f);
            }
            for (int j = 0; j < d; ++j) ASSERT_TRUE(std::isfinite(acc[size_t(d) + j]));
          }
        }
      }
    }
  }
}

// Scores with extreme finite values: the largest dominates; nothing overflows.
TEST_P(SimdTarget, AttnSoftmaxExtremeFiniteScores) {
  const int d = 16, n_tok = 40;
  std::vector<float> s(n_tok), acc(d, 1.0f);
  for (int t = 0; t < n_tok; ++t) s[t] = t % 2 ? -3e38f : 3e38f - float(t) * 1e32f;
  s[7] = std::numeric_limits<float>::denorm_min();
  float m = -kInf, l = 0;
  kernels::AttnSoftmaxUpdate(s.data(), 1, n_tok, n_tok, &m, &l, acc.data(), d);
  EXPECT_EQ(m, 3e38f);
  EXPECT_NEAR(s[0], 1.0, kExp2Err);  // the polynomial's 2^0 is 1 - 7.5e-8
  for (int t = 1; t < n_tok; ++t) EXPECT_EQ(s[t], 0.0f) << t;
  EXPECT_EQ(l, s[0]);
}

// ---------------------------------------------------------------- codec kernels

TEST_P(SimdTarget, CodecNormalize) {
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (size_t n : {1, 2, 3, 7, 15, 16, 17, 31, 32, 33, 64, 80, 128, 1000}) {
    for (float scale : {1.0f, 1e-20f, 1e-40f, 1e18f, 3e37f}) {
      SCOPED_TRACE(::testing::Message() << "n " << n << " scale " << scale);
      std::vector<float> x(n), out(n + 1, -7.0f);
      for (float& v : x) v = nd(rng) * scale;
      double sq = 0;
      for (float v : x) sq += double(v) * v;
      const double norm = std::sqrt(sq);
      const float got = codec::kernels::Normalize(x.data(), n, out.data());
      ASSERT_EQ(out[n], -7.0f);
      if (!(norm > 0) || float(norm) == 0 || !std::isfinite(float(norm))) {
        // Documented: a zero (or unrepresentable) norm gives u = 0 and 0.
        ASSERT_EQ(got, 0.0f);
        for (size_t j = 0; j < n; ++j) ASSERT_EQ(out[j], 0.0f);
        continue;
      }
      // The norm rounded to float (a subnormal float norm: half its spacing, 2^-150).
      ASSERT_NEAR(got, norm, norm * (n + 8) * kU + 0x1p-150);
      double usq = 0;
      for (size_t j = 0; j < n; ++j) {
        ASSERT_NEAR(out[j], x[j] / norm, std::fabs(x[j] / norm) * (n + 8) * kU + 1e-30) << j;
        usq += double(out[j]) * out[j];
      }
      ASSERT_NEAR(usq, 1.0, (3.0 * n + 16) * kU);  // each out[j]^2 within 2(n+8)u, summed
    }
  }
}

TEST_P(SimdTarget, CodecNormalizeNonFinite) {
  for (size_t n : {1, 16, 17, 64, 128}) {
    for (float bad : {kNaN, kInf, -kInf}) {
      for (size_t at : {size_t(0), n / 2, n - 1}) {
        std::vector<float> x(n, 0.25f), out(n, -7.0f);
        x[at] = bad;
        ASSERT_EQ(codec::kernels::Normalize(x.data(), n, out.data()), 0.0f) << n << " " << at;
        for (float v : out) ASSERT_EQ(v, 0.0f);
      }
    }
    std::vector<float> zero(n, 0.0f), out(n, -7.0f);
    ASSERT_EQ(codec::kernels::Normalize(zero.data(), n, out.data()), 0.0f);
    for (float v : out) ASSERT_EQ(v, 0.0f);
    // Every entry at the float maximum: the norm overflows float (the squares overflowed too).
    std::vector<float> big(n, 3.4e38f);
    const float got = codec::kernels::Normalize(big.data(), n, out.data());
    if (n == 1) {
      ASSERT_EQ(got, 3.4e38f);
      ASSERT_EQ(out[0], 1.0f);
    } else {
      ASSERT_EQ(got, 0.0f) << "a norm above FLT_MAX is not representable";
    }
  }
}

TEST_P(SimdTarget, CodecQuantizeIndices) {
  std::mt19937 rng(8);
  for (int bits = 1; bits <= 8; ++bits) {
    const auto& cb = codec::LloydMaxCodebook::Get(64, bits, codec::CodebookKind::kSphere);
    const std::vector<float>& th = cb.thresholds;
    for (size_t n : {1, 5, 8, 15, 16, 17, 24, 40, 64, 100}) {
      SCOPED_TRACE(::testing::Message() << "bits " << bits << " n " << n);
      std::vector<float> y(n);
      std::normal_distribution<float> nd(0.0f, 0.2f);
      for (size_t j = 0; j < n; ++j) {
        // Random values, exact thresholds, their neighbours, and the extremes.
        const size_t k = std::uniform_int_distribution<size_t>(0, th.size() - 1)(rng);
        switch (j % 5) {
          case 0: y[j] = th[k]; break;
          case 1: y[j] = std::nextafter(th[k], 1.0f); break;
          case 2: y[j] = std::nextafter(th[k], -1.0f); break;
          case 3: y[j] = j % 4 == 3 ? kNaN : nd(rng); break;  // NaN: no threshold below it
          default: y[j] = j % 2 ? 1e30f : -1e30f; break;
        }
      }
      std::vector<uint8_t> idx(n + 1, 0xee);
      codec::kernels::QuantizeIndices(y.data(), n, th.data(), bits, idx.data());
      ASSERT_EQ(idx[n], 0xee);
      for (size_t j = 0; j < n; ++j) {
        int want = 0;  // number of thresholds strictly below y
        for (float t : th) want += y[j] > t;
        ASSERT_EQ(idx[j], want) << "y = " << y[j];
      }
    }
  }
}

TEST_P(SimdTarget, CodecMatVec) {
  std::mt19937 rng(9);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (size_t rows : {1, 2, 3, 4, 5, 7, 16, 33}) {
    for (size_t cols : {16, 32, 48, 128}) {
      std::vector<float> m(rows * cols), x(cols), out(rows + 1, -7.0f);
      for (float& v : m) v = nd(rng);
      for (float& v : x) v = nd(rng);
      codec::kernels::MatVec(m.data(), x.data(), rows, cols, out.data());
      ASSERT_EQ(out[rows], -7.0f);
      for (size_t r = 0; r < rows; ++r) {
        double want = 0, abs_sum = 0;
        for (size_t c = 0; c < cols; ++c) {
          want += double(m[r * cols + c]) * x[c];
          abs_sum += std::fabs(double(m[r * cols + c]) * x[c]);
        }
        ASSERT_NEAR(out[r], want, SumBound(abs_sum, cols)) << rows << "x" << cols << " row " << r;
      }
    }
  }
}

TEST_P(SimdTarget, CodecMatVecBatchT) {
  std::mt19937 rng(10);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (size_t n : {1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 15, 17}) {
    for (size_t rows : {16, 32, 48, 64}) {
      for (size_t cols : {1, 5, 16, 64}) {
        std::vector<float> mt(cols * rows), x(n * cols), out(n * rows + 1, -7.0f);
        for (float& v : mt) v = nd(rng);
        for (float& v : x) v = nd(rng);
        codec::kernels::MatVecBatchT(mt.data(), x.data(), n, rows, cols, out.data());
        ASSERT_EQ(out[n * rows], -7.0f);
        for (size_t v = 0; v < n; ++v) {
          for (size_t r = 0; r < rows; ++r) {
            double want = 0, abs_sum = 0;
            for (size_t c = 0; c < cols; ++c) {
              want += double(mt[c * rows + r]) * x[v * cols + c];
              abs_sum += std::fabs(double(mt[c * rows + r]) * x[v * cols + c]);
            }
            ASSERT_NEAR(out[v * rows + r], want, SumBound(abs_sum, cols))
                << "n " << n << " " << rows << "x" << cols << " v " << v << " r " << r;
          }
        }
      }
    }
  }
}

TEST_P(SimdTarget, CodecDotF16Batch) {
  std::mt19937 rng(11);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (size_t dim : {16, 32, 48, 64, 80, 128, 256}) {
    for (size_t n : {1, 2, 3, 5}) {
      std::vector<uint16_t> a(n * dim);
      std::vector<float> q(dim), out(n + 1, -7.0f);
      for (auto& h : a) h = uint16_t(std::uniform_int_distribution<int>(0, 0xfbff)(rng) & 0xbbff);
      for (float& v : q) v = nd(rng);
      codec::kernels::DotF16Batch(a.data(), q.data(), n, dim, out.data());
      ASSERT_EQ(out[n], -7.0f);
      for (size_t i = 0; i < n; ++i) {
        double want = 0, abs_sum = 0;
        for (size_t j = 0; j < dim; ++j) {
          want += Half(a[i * dim + j]) * q[j];
          abs_sum += std::fabs(Half(a[i * dim + j]) * q[j]);
        }
        ASSERT_NEAR(out[i], want, SumBound(abs_sum, dim)) << "dim " << dim << " i " << i;
      }
    }
  }
}

// The blockwise Walsh–Hadamard transform behind the rotation, against H[i][j] =
// (-1)^popcount(i & j), both scale placements, in place, every block size.
TEST_P(SimdTarget, CodecScaledFwht) {
  std::mt19937 rng(12);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (size_t block : {16, 32, 64, 128, 256, 512, 1024}) {
    for (size_t nb : {1, 3}) {
      const size_t dim = block * nb;
      if (dim > 1024) continue;
      for (bool after : {false, true}) {
        SCOPED_TRACE(::testing::Message() << "block " << block << " dim " << dim << " after " << after);
        std::vector<float> x(dim), scale(dim), out(dim + 1, -7.0f);
        for (float& v : x) v = nd(rng);
        for (float& v : scale) v = nd(rng);
        codec::kernels::ScaledFwht(x.data(), scale.data(), after, out.data(), dim, block);
        ASSERT_EQ(out[dim], -7.0f);
        std::vector<float> inplace = x;
        codec::kernels::ScaledFwht(inplace.data(), scale.data(), after, inplace.data(), dim, block);
        for (size_t b0 = 0; b0 < dim; b0 += block) {
          for (size_t i = 0; i < block; ++i) {
            double want = 0, abs_sum = 0;
            for (size_t j = 0; j < block; ++j) {
              const double sign = __builtin_popcountll(i & j) % 2 ? -1.0 : 1.0;
              const double term = sign * x[b0 + j] * (after ? 1.0 : double(scale[b0 + j]));
              want += term;
              abs_sum += std::fabs(term);
            }
            if (after) {
              want *= scale[b0 + i];
              abs_sum *= std::fabs(scale[b0 + i]);
            }
            // log2(block) butterfly stages, each one rounding, plus the scaling.
            const double tol = (std::log2(double(block)) + 4) * kU * abs_sum * 2;
            ASSERT_NEAR(out[b0 + i], want, tol) << "coordinate " << b0 + i;
            ASSERT_EQ(inplace[b0 + i], out[b0 + i]);
          }
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Targets, SimdTarget, ::testing::ValuesIn(AllTargets()), TargetParamName);

// The scope guard itself: a failing assertion inside a TargetScope leaves no mock behind.
TEST(TargetScope, RestoresAfterAFatalFailure) {
  const std::vector<int64_t> all = AllTargets();
  ASSERT_FALSE(all.empty());
  auto fails_inside = [&] {
    TargetScope scope(all.back());
    ASSERT_EQ(hwy::SupportedAndGeneratedTargets().size(), 1u);
    FAIL() << "expected failure inside the scope";
  };
  ::testing::TestPartResultArray failures;
  {
    ::testing::ScopedFakeTestPartResultReporter reporter(
        ::testing::ScopedFakeTestPartResultReporter::INTERCEPT_ONLY_CURRENT_THREAD, &failures);
    fails_inside();
  }
  ASSERT_EQ(failures.size(), 1);
  EXPECT_EQ(hwy::SupportedAndGeneratedTargets(), all);
}

}  // namespace
}  // namespace tqlm
