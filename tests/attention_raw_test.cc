// Full-precision attention kernels (kernels/cpu/attention_raw.h) against scalar references at
// every supported head dim and several query-tile sizes.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include <hwy/targets.h>

#include "hwy_target_scope.h"

#include "kernels/cpu/attention_raw.h"
#include "kernels/tensor_format.h"

namespace tqlm::kernels {
namespace {

class AttnRaw : public ::testing::TestWithParam<int> {};

TEST_P(AttnRaw, ScoresAccumulateSoftmaxMatchScalar) {
  const int d = GetParam(), stride = 72;
  std::mt19937 rng(d);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (int nq : {1, 2, 4, 5, 6, 7, 8, 13}) {
    for (int n_tok : {64, 37, 1}) {
      SCOPED_TRACE(::testing::Message() << "nq " << nq << " n_tok " << n_tok);
      std::vector<float> q(size_t(nq) * d), k(64 * size_t(d)), kt(64 * size_t(d), 0.0f);
      std::vector<uint16_t> kh(k.size()), kht(k.size(), 0);
      for (auto& x : q) x = nd(rng);
      for (int t = 0; t < 64; ++t) {
        for (int j = 0; j < d; ++j) {
          const float x = t < n_tok ? nd(rng) : 0.0f;
          k[size_t(t) * d + j] = x;
          kh[size_t(t) * d + j] = F32ToF16(x);
          kt[size_t(j) * 64 + t] = x;
          kht[size_t(j) * 64 + t] = F32ToF16(x);
        }
      }
      std::vector<float> s32(size_t(nq) * stride), s16(s32.size()), s32t(s32.size()),
          s16t(s32.size());
      AttnScoresF32(q.data(), nq, k.data(), n_tok, d, s32.data(), stride);
      AttnScoresF16(q.data(), nq, kh.data(), n_tok, d, s16.data(), stride);
      AttnScoresF32T(q.data(), nq, kt.data(), d, s32t.data(), stride);
      AttnScoresF16T(q.data(), nq, kht.data(), d, s16t.data(), stride);
      // Prefetching a next block on the way changes nothing.
      std::vector<float> s16t_pf(s32.size());
      AttnScoresF16T(q.data(), nq, kht.data(), d, s16t_pf.data(), stride,
                     {reinterpret_cast<const uint8_t*>(kh.data()), kh.size() * 2});
      ASSERT_EQ(s16t_pf, s16t);
      for (int i = 0; i < nq; ++i) {
        for (int t = 0; t < n_tok; ++t) {
          double want = 0, want16 = 0;
          for (int j = 0; j < d; ++j) {
            want += double(q[size_t(i) * d + j]) * k[size_t(t) * d + j];
            want16 += double(q[size_t(i) * d + j]) * F16ToF32(kh[size_t(t) * d + j]);
          }
          const double tol = 1e-4 * std::sqrt(double(d));
          const size_t at = size_t(i) * stride + t;
          ASSERT_NEAR(s32[at], want, tol);
          ASSERT_NEAR(s32t[at], want, tol);
          ASSERT_NEAR(s16[at], want16, tol);
          ASSERT_NEAR(s16t[at], want16, tol);
        }
      }

      // Softmax update from a running state, with some masked entries.
      std::vector<float> sc(size_t(nq) * stride), m(nq), l(nq), acc(size_t(nq) * d);
      std::vector<float> m0(nq), l0(nq), acc0(acc.size());
      for (int i = 0; i < nq; ++i) {
        for (int t = 0; t < n_tok; ++t)
          sc[size_t(i) * stride + t] =
              (t % 5 == 2) ? -std::numeric_limits<float>::infinity() : 3 * nd(rng);
        m[i] = m0[i] = i == 0 ? -std::numeric_limits<float>::infinity() : nd(rng);
        l[i] = l0[i] = i == 0 ? 0.0f : 2.0f;
      }
      for (size_t x = 0; x < acc.size(); ++x) acc[x] = acc0[x] = nd(rng);
      const std::vector<float> sc0 = sc;
      AttnSoftmaxUpdate(sc.data(), nq, stride, n_tok, m.data(), l.data(), acc.data(), d);
      for (int i = 0; i < nq; ++i) {
        double bmax = -INFINITY;
        for (int t = 0; t < n_tok; ++t) bmax = std::max(bmax, double(sc0[size_t(i) * stride + t]));
        if (bmax == -INFINITY) continue;
        const double mn = std::max(double(m0[i]), bmax);
        const double corr = std::isinf(m0[i]) ? 0.0 : std::exp2(m0[i] - mn);
        double sum = 0;
        for (int t = 0; t < n_tok; ++t) {
          const double p = std::exp2(double(sc0[size_t(i) * stride + t]) - mn);
          sum += p;
          ASSERT_NEAR(sc[size_t(i) * stride + t], p, 1e-6 * p + 1e-30);
        }
        ASSERT_FLOAT_EQ(m[i], float(mn));
        ASSERT_NEAR(l[i], l0[i] * corr + sum, 1e-5 * (l0[i] * corr + sum));
        for (int j = 0; j < d; ++j)
          ASSERT_NEAR(acc[size_t(i) * d + j], acc0[size_t(i) * d + j] * corr,
                      1e-6 * std::fabs(acc0[size_t(i) * d + j]) + 1e-7);
      }

      // Weighted sums of V rows.
      std::vector<float> p(size_t(nq) * stride);
      for (auto& x : p) x = std::fabs(nd(rng));
      std::vector<float> a32(acc0), a16(acc0);
      AttnAccumF32(p.data(), nq, stride, k.data(), n_tok, d, a32.data());
      AttnAccumF16(p.data(), nq, stride, kh.data(), n_tok, d, a16.data());
      std::vector<float> a16_pf(acc0);
      AttnAccumF16(p.data(), nq, stride, kh.data(), n_tok, d, a16_pf.data(),
                   {reinterpret_cast<const uint8_t*>(kht.data()), kht.size() * 2});
      ASSERT_EQ(a16_pf, a16);
      for (int i = 0; i < nq; ++i) {
        for (int j = 0; j < d; ++j) {
          double w32 = acc0[size_t(i) * d + j], w16 = w32;
          for (int t = 0; t < n_tok; ++t) {
            w32 += double(p[size_t(i) * stride + t]) * k[size_t(t) * d + j];
            w16 += double(p[size_t(i) * stride + t]) * F16ToF32(kh[size_t(t) * d + j]);
          }
          ASSERT_NEAR(a32[size_t(i) * d + j], w32, 1e-4);
          ASSERT_NEAR(a16[size_t(i) * d + j], w16, 1e-4);
        }
      }
    }
  }
}

// The softmax's exp2 on every compiled SIMD target, over the whole range a block can hold:
// within 1e-6 relative of exp2 down to 2^-126, exactly 0 below (never a denormal, which would
// slow the weighted sums ~100x) and for masked (-inf) entries.
TEST(AttnSoftmax, Exp2OverTheFullRangeOnEveryTarget) {
  constexpr int kTok = 64 * 40, kDim = 64;
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  std::vector<float> s0(kTok);
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (int t = 0; t < kTok; ++t) {
    // 0 down to -160 in steps, with jitter, exact integers and the -126 boundary around them.
    const float base = -160.0f * float(t) / kTok;
    s0[size_t(t)] = t % 7 == 0 ? std::floor(base) : t % 11 == 0 ? kNegInf : base + 0.01f * u(rng);
  }
  s0[1] = -126.0f;
  s0[2] = std::nextafter(-126.0f, -200.0f);
  s0[3] = -0.0f;
  s0[4] = 0.0f;  // the row max: every entry is exp2(s - 0)
  for (int64_t target : tqlm::testing::AllTargets()) {
    const tqlm::testing::TargetScope scope(target);  // restored however the body ends
    std::vector<float> s = s0, acc(kDim, 1.0f);
    float m = kNegInf, l = 0;
    AttnSoftmaxUpdate(s.data(), 1, kTok, kTok, &m, &l, acc.data(), kDim);
    ASSERT_EQ(m, 0.0f) << hwy::TargetName(target);
    double sum = 0;
    for (int t = 0; t < kTok; ++t) {
      const float x = s0[size_t(t)], got = s[size_t(t)];
      if (x < -126.0f) {
        ASSERT_EQ(got, 0.0f) << hwy::TargetName(target) << " x=" << x;
        continue;
      }
      const double want = std::exp2(double(x));
      sum += want;
      ASSERT_NEAR(got, want, 1e-6 * want) << hwy::TargetName(target) << " x=" << x;
      ASSERT_TRUE(std::isnormal(got)) << hwy::TargetName(target) << " x=" << x;
    }
    ASSERT_NEAR(l, sum, 1e-5 * sum) << hwy::TargetName(target);  // float summation order
  }
}

INSTANTIATE_TEST_SUITE_P(HeadDims, AttnRaw, ::testing::Values(64, 80, 96, 128, 256));

}  // namespace
}  // namespace tqlm::kernels

namespace tqlm::kernels {
namespace {

// The trickle reaches the end of its range within the iterations it was given, whatever the
// ratio of lines to iterations; an empty range is done at once.
TEST(PrefetchTrickle, CoversTheRangeInTheGivenIterations) {
  std::vector<uint8_t> buf(20000);
  for (size_t bytes : {size_t(1), size_t(64), size_t(65), size_t(4224), size_t(16384), size_t(20000)}) {
    for (int iters : {1, 7, 64, 128, 256, 1000}) {
      PrefetchTrickle pf({buf.data(), bytes}, iters);
      ASSERT_FALSE(pf.done());
      for (int i = 0; i < iters; ++i) pf.Step();
      ASSERT_TRUE(pf.done()) << bytes << " bytes, " << iters << " iterations";
    }
  }
  PrefetchTrickle none({}, 10);
  EXPECT_TRUE(none.done());
}

}  // namespace
}  // namespace tqlm::kernels
