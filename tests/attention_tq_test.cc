// TurboQuant block kernels (kernels/cpu/attention_tq.h) against a scalar reference written
// from the layout's definition: every head dim and bit split, random codes, norms, queries
// and weights. The integer sums are exact on both sides, so results agree to float rounding.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <string>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/cpu/attention_tq.h"
#include "kernels/tensor_format.h"

namespace tqlm::kernels {
namespace {

// Code at position p of a unit of `bits` bits (the layout comment, read literally).
int RefCode(const uint8_t* u, int bits, int p) {
  if (bits == 8) return u[p];
  if (bits == 4) return p < 32 ? u[p] & 15 : u[p - 32] >> 4;
  if (bits == 1) return (u[p / 8] >> (p % 8)) & 1;
  int c = (u[p % 16] >> (2 * (p / 16))) & 3;
  if (bits == 3) c += 4 * ((u[16 + p / 8] >> (p % 8)) & 1);
  return c;
}

struct Ref {
  TqBlockLayout l;
  const uint8_t* block;
  // Byte offset of K unit (s, g) and V unit (c, s).
  size_t KUnit(int s, int g) const {
    size_t row = 0, off = 0;
    for (int x = 0; x < l.dim / 4; ++x) {
      if (x == g) off = row;
      row += TqBlockLayout::UnitBytes(l.bits_of_dim(4 * x));
    }
    return size_t(s) * row + off;
  }
  size_t VUnit(int c, int s) const {
    size_t off = 0;
    for (int x = 0; x < c; ++x) off += 16 * TqBlockLayout::UnitBytes(l.bits_of_dim(16 * x));
    return off + size_t(s) * TqBlockLayout::UnitBytes(l.bits_of_dim(16 * c));
  }
  int KCode(int t, int j) const {
    return RefCode(block + KUnit(t / 16, j / 4), l.bits_of_dim(j), 4 * (t % 16) + j % 4);
  }
  int VCode(int t, int j) const {
    return RefCode(block + VUnit(j / 16, t / 4), l.bits_of_dim(j), 4 * (j % 16) + t % 4);
  }
  float Norm(int t) const {
    uint16_t h;
    std::memcpy(&h, block + l.norms_offset + 2 * t, 2);
    return F16ToF32(h);
  }
};

struct Split {
  int hi, lo;
};

class TqKernels : public ::testing::TestWithParam<std::tuple<int, Split>> {};

TEST_P(TqKernels, MatchScalarReference) {
  const int dim = std::get<0>(GetParam());
  const Split sp = std::get<1>(GetParam());
  const int n_hi = sp.hi == sp.lo ? dim : (dim / 2 + 8) / 16 * 16;
  const TqBlockLayout l = TqBlockLayout::Make(dim, n_hi, sp.hi, sp.lo);
  std::mt19937 rng(dim * 100 + sp.hi * 10 + sp.lo);
  std::vector<uint8_t> block(l.block_bytes);
  for (size_t i = 0; i < l.codes_bytes; ++i) block[i] = uint8_t(rng());
  std::uniform_real_distribution<float> un(0.1f, 3.0f);
  for (int t = 0; t < 64; ++t) {
    const uint16_t h = F32ToF16(un(rng));
    std::memcpy(&block[l.norms_offset + 2 * t], &h, 2);
  }
  TqTables tb;
  for (int c = 0; c < (1 << sp.hi); ++c) tb.hi[c] = int8_t(int(rng() % 255) - 127);
  for (int c = 0; c < (1 << sp.lo); ++c) tb.lo[c] = int8_t(int(rng() % 255) - 127);
  tb.cb_scale = 0.01f;
  const Ref ref{l, block.data()};
  auto level = [&](int j, int code) { return j < n_hi ? tb.hi[code] : tb.lo[code]; };

  // Every kernel path this CPU runs, restored to the best one however the test ends.
  struct RestorePath {
    ~RestorePath() { SetTqKernelPathForTest(TqBestKernelPath()); }
  } restore;
  for (TqKernelPath path : {TqKernelPath::kPortable, TqKernelPath::kVnni, TqKernelPath::kVnniVbmi}) {
    if (!SetTqKernelPathForTest(path)) continue;
    SCOPED_TRACE(TqKernelPathName(path));
    for (int nq : {1, 2, 3, 4, 5, 6, 7, 8, 11, 17}) {
      SCOPED_TRACE(nq);
      std::vector<int8_t> q8(size_t(nq) * dim);
      std::vector<float> q_scale(nq);
      std::vector<int32_t> q_sum(nq, 0);
      for (int i = 0; i < nq; ++i) {
        q_scale[i] = un(rng);
        for (int j = 0; j < dim; ++j) {
          q8[size_t(i) * dim + j] = int8_t(int(rng() % 255) - 127);
          q_sum[i] += q8[size_t(i) * dim + j];
        }
      }
      const int stride = 70;
      std::vector<float> scores(size_t(nq) * stride, -1.0f);
      TqScores(l, tb, q8.data(), q_scale.data(), q_sum.data(), nq, block.data(), scores.data(),
               stride);
      // Prefetching a next block on the way changes nothing.
      std::vector<float> scores_pf(scores.size(), -1.0f);
      TqScores(l, tb, q8.data(), q_scale.data(), q_sum.data(), nq, block.data(), scores_pf.data(),
               stride, {reinterpret_cast<const uint8_t*>(q8.data()), q8.size()});
      ASSERT_EQ(scores_pf, scores);
      for (int i = 0; i < nq; ++i) {
        for (int t = 0; t < 64; ++t) {
          int64_t dot = 0;
          for (int j = 0; j < dim; ++j) dot += int64_t(q8[size_t(i) * dim + j]) * level(j, ref.KCode(t, j));
          const float want = float(dot) * ref.Norm(t) * q_scale[i];
          ASSERT_NEAR(scores[size_t(i) * stride + t], want, 1e-6f * std::fabs(want) + 1e-6f)
              << "row " << i << " token " << t;
        }
      }

      // Weights: some rows all zero, some with zeros inside.
      std::vector<float> p(size_t(nq) * stride, 0.0f);
      for (int i = 0; i < nq; ++i) {
        if (i == 1) continue;
        for (int t = 0; t < 64; ++t) p[size_t(i) * stride + t] = (t % 7 == 3) ? 0.0f : un(rng) / 3;
      }
      std::vector<float> acc(size_t(nq) * dim), want(size_t(nq) * dim);
      for (size_t x = 0; x < acc.size(); ++x) acc[x] = want[x] = un(rng);
      std::vector<float> acc_pf(acc);
      TqAccumulate(l, tb, p.data(), nq, stride, block.data(), acc_pf.data(),
                   {block.data(), block.size()});
      TqAccumulate(l, tb, p.data(), nq, stride, block.data(), acc.data());
      ASSERT_EQ(acc_pf, acc);
      for (int i = 0; i < nq; ++i) {
        // Weight quantization as specified: w = p * norm, u8 = round(w * 255 / max w).
        float w[64], wmax = 0;
        for (int t = 0; t < 64; ++t) {
          w[t] = p[size_t(i) * stride + t] * ref.Norm(t);
          wmax = std::max(wmax, w[t]);
        }
        if (wmax == 0) {
          for (int j = 0; j < dim; ++j) ASSERT_EQ(acc[size_t(i) * dim + j], want[size_t(i) * dim + j]);
          continue;
        }
        const float scale = wmax * (tb.cb_scale / 255.0f);
        for (int j = 0; j < dim; ++j) {
          int64_t sum = 0;
          for (int t = 0; t < 64; ++t)
            sum += int64_t(std::nearbyint(w[t] * (255.0f / wmax))) * level(j, ref.VCode(t, j));
          const float expect = std::fma(float(sum), scale, want[size_t(i) * dim + j]);
          ASSERT_NEAR(acc[size_t(i) * dim + j], expect, 1e-5f * (std::fabs(expect) + 1))
              << "row " << i << " dim " << j;
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    AllDimsAndBits, TqKernels,
    ::testing::Combine(::testing::Values(64, 80, 96, 128, 256),
                       ::testing::Values(Split{1, 1}, Split{2, 1}, Split{2, 2}, Split{3, 2},
                                         Split{3, 3}, Split{4, 3}, Split{4, 4}, Split{8, 8})),
    [](const auto& info) {
      char name[64];
      std::snprintf(name, sizeof(name), "d%d_hi%d_lo%d", std::get<0>(info.param),
                    std::get<1>(info.param).hi, std::get<1>(info.param).lo);
      return std::string(name);
    });

TEST(TqKernels, LayoutBytesAreExact) {
  // 64 tokens x bits: tq4 at d=128 is 4096 code bytes + 128 norm bytes (66 B/token).
  EXPECT_EQ(TqBlockLayout::Make(128, 128, 4, 4).block_bytes, 64u * 66);
  EXPECT_EQ(TqBlockLayout::Make(128, 128, 3, 3).block_bytes, 64u * 50);
  EXPECT_EQ(TqBlockLayout::Make(128, 64, 4, 3).block_bytes, 64u * 58);
  EXPECT_EQ(TqBlockLayout::Make(128, 64, 3, 2).block_bytes, 64u * 42);
}

}  // namespace
}  // namespace tqlm::kernels
