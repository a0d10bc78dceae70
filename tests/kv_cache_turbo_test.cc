// TurboQuant caches end to end: attention over compressed blocks must equal attention over
// the values those blocks decode to (the remaining difference is the kernels' int8 query,
// int8 codebook and uint8 weight quantization), with sinks and the recent buffer exact (f16).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/thread_pool.h"
#include "kernels/tensor_format.h"
#include "kv/block_format.h"
#include "kv/kv_cache.h"
#include "reference_kv_cache.h"

namespace tqlm::kv {
namespace {

double RelErr(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num += double(a[i] - b[i]) * (a[i] - b[i]);
    den += double(b[i]) * b[i];
  }
  return std::sqrt(num / std::max(den, 1e-30));
}

float RoundF16(float x) { return kernels::F16ToF32(kernels::F32ToF16(x)); }

struct TurboCase {
  const char* kt;
  const char* vt;
  int d;
};

class KvCacheTurbo : public ::testing::TestWithParam<TurboCase> {};

TEST_P(KvCacheTurbo, EqualsAttentionOverDecodedValues) {
  const TurboCase tc = GetParam();
  const int H = 8, G = 2, d = tc.d, S = 4, R = 16;
  KvCacheConfig c;
  c.layers = {LayerGeometry{H, G, d, 0}};
  c.k_types = {KvType::Parse(tc.kt)};
  c.v_types = {KvType::Parse(tc.vt)};
  c.attn_scale = 1.0f / std::sqrt(float(d));
  c.max_tokens = 1024;
  c.sink_tokens = S;
  c.recent_tokens = R;
  auto cache = KvCache::Create(c);
  auto kf = MakeBlockFormat(c.k_types[0], d, TensorRole::kKey);
  auto vf = MakeBlockFormat(c.v_types[0], d, TensorRole::kValue);
  kernels::ThreadPool pool(2);
  std::mt19937 rng(11 + d);
  std::normal_distribution<float> nd(0.0f, 1.0f);

  const size_t row = size_t(G) * d;
  std::vector<float> all_k, all_v;  // [T][G][d] as appended
  auto step = [&](int n) {
    const int T = cache->n_tokens();
    std::vector<float> k(n * row), v(n * row), q(size_t(n) * H * d);
    for (auto& x : k) x = nd(rng);
    for (auto& x : v) x = nd(rng);
    for (auto& x : q) x = nd(rng) * 2.0f;
    all_k.insert(all_k.end(), k.begin(), k.end());
    all_v.insert(all_v.end(), v.begin(), v.end());
    std::vector<float> out(q.size()), want(q.size());
    cache->Append(0, k.data(), v.data(), n);
    cache->Attend(0, q.data(), n, out.data(), pool);
    // What the query at position p reads: sinks and raw tokens as f16, and main block b decoded
    // from its compressed form once p >= end_b + R (end_b = S + 64 (b + 1)).
    std::vector<float> ek(all_k.size()), ev(all_v.size());
    for (size_t i = 0; i < ek.size(); ++i) {
      ek[i] = RoundF16(all_k[i]);
      ev[i] = RoundF16(all_v[i]);
    }
    std::vector<uint8_t> kb(kf->block_bytes()), vb(vf->block_bytes());
    std::vector<float> dec(64 * d);
    int n_comp = 0;  // blocks of ek/ev replaced by their decoded form so far
    for (int i = 0; i < n; ++i) {
      const int p = T + i;
      for (; p >= S + 64 * (n_comp + 1) + R; ++n_comp) {
        for (int h = 0; h < G; ++h) {
          const size_t base = size_t(S + 64 * n_comp) * row + size_t(h) * d;
          kf->Encode(ek.data() + base, row, 0, 64, kb.data());  // the cache encodes f16 rows
          kf->Decode(kb.data(), 0, 64, dec.data());
          for (int t = 0; t < 64; ++t) std::copy_n(&dec[t * d], d, &ek[base + t * row]);
          vf->Encode(ev.data() + base, row, 0, 64, vb.data());
          vf->Decode(vb.data(), 0, 64, dec.data());
          for (int t = 0; t < 64; ++t) std::copy_n(&dec[t * d], d, &ev[base + t * row]);
        }
      }
      testing::ReferenceKvCache ref(c);
      if (p > 0) {
        ref.Append(0, ek.data(), ev.data(), p);
        ref.Commit(p);
      }
      ref.Append(0, ek.data() + size_t(p) * row, ev.data() + size_t(p) * row, 1);
      ref.Attend(0, q.data() + size_t(i) * H * d, 1, want.data() + size_t(i) * H * d, pool);
    }
    cache->Commit(n);
    return RelErr(out, want);
  };
  // A prefill whose later queries already read blocks [4, 68) .. compressed (from position
  // 84 on), as decoding them one by one would.
  double worst = step(300);
  for (int i = 0; i < 3; ++i) worst = std::max(worst, step(1));
  worst = std::max(worst, step(40));
  worst = std::max(worst, step(1));
  // Measured 0.8-1.9% (int8 queries and codebook, uint8 weights), prod keys (the codec's own
  // estimator) included.
  EXPECT_LT(worst, 0.03) << tc.kt << "/" << tc.vt;
  const KvMemoryStats s = cache->MemoryStats();
  const int T = cache->n_tokens();
  const double raw = 2.0 * d * 2 * G;  // K + V f16 per token
  const double comp = double(kf->block_bytes() + vf->block_bytes()) * G / 64;
  int nc = 0;  // compressed blocks as of the last Append (T - 1 tokens committed then)
  while ((T - 1) - S - nc * 64 >= 64 + R) ++nc;  // (pending copies are not counted as used)
  const double want_bytes = (T - 64.0 * nc) * raw + 64.0 * nc * comp;
  EXPECT_NEAR(double(s.bytes_used), want_bytes, want_bytes * 0.01);
  EXPECT_EQ(s.bytes_f16, size_t(T) * G * d * 2 * 2);
}

// Keys sharing a large common component (Qwen2.5's key biases make the mean key ~98% of the
// norm in some layers) must cost no more accuracy than keys without it: the cache stores keys
// centered, and attention is invariant to the shared part.
TEST(KvCacheTurboCentering, SharedKeyOffsetDoesNotCostAccuracy) {
  const int H = 8, G = 2, d = 128, S = 4, R = 16, T = 600;
  auto attention_error = [&](float offset) {
    KvCacheConfig c;
    c.layers = {LayerGeometry{H, G, d, 0}};
    c.k_types = {KvType::Parse("tq4")};
    c.v_types = {KvType::Parse("tq3")};
    c.attn_scale = 1.0f / std::sqrt(float(d));
    c.max_tokens = 1024;
    c.sink_tokens = S;
    c.recent_tokens = R;
    auto cache = KvCache::Create(c);
    testing::ReferenceKvCache ref(c);
    kernels::ThreadPool pool(2);
    std::mt19937 rng(5);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    std::vector<float> shared(size_t(G) * d);
    for (auto& x : shared) x = offset * nd(rng);
    std::vector<float> k(size_t(T) * G * d), v(k.size());
    for (size_t i = 0; i < k.size(); ++i) k[i] = nd(rng) + shared[i % shared.size()];
    for (auto& x : v) x = nd(rng);
    for (KvCache* kc : {cache.get(), static_cast<KvCache*>(&ref)}) {
      // Prefill in chunks of 200 (compression starts at the second chunk).
      for (int t = 0; t < T; t += 200) {
        kc->Append(0, k.data() + size_t(t) * G * d, v.data() + size_t(t) * G * d, 200);
        std::vector<float> sink(size_t(200) * H * d);
        kc->Attend(0, sink.data(), 200, sink.data(), pool);
        kc->Commit(200);
      }
    }
    // 32 new tokens attend causally over everything: 256 query rows in all.
    const int n = 32;
    std::vector<float> k1(size_t(n) * G * d), v1(k1.size()), q1(size_t(n) * H * d);
    for (size_t j = 0; j < k1.size(); ++j) k1[j] = nd(rng) + shared[j % shared.size()];
    for (auto& x : v1) x = nd(rng);
    for (auto& x : q1) x = nd(rng) * 2.0f;
    std::vector<float> out(q1.size()), want(q1.size());
    cache->Append(0, k1.data(), v1.data(), n);
    cache->Attend(0, q1.data(), n, out.data(), pool);
    ref.Append(0, k1.data(), v1.data(), n);
    ref.Attend(0, q1.data(), n, want.data(), pool);
    return RelErr(out, want);
  };
  const double plain = attention_error(0.0f), shifted = attention_error(10.0f);
  // Without centering the shifted keys' quantization error grows with their norm (~10x).
  std::printf("[ centering ] relative attention error: %.4f plain keys, %.4f with offset\n",
              plain, shifted);
  EXPECT_LT(shifted, 1.5 * plain + 1e-3);
  // Measured 0.2447 (plain keys) and 0.2480 (offset): tq3 values alone give ~0.18 (√(d·D) of
  // the 3-bit codebook); bound 25% above the measurement. The block-level distortion bounds
  // are in kv_turbo_reference_test.cc.
  EXPECT_LT(plain, 0.2447 * 1.25);
}

// Prefix reuse must leave the cache as an uninterrupted run of that length holds it: no
// compressed block cut (its tokens would be quantized twice), and with a recent buffer no block
// compressed that the run would still hold raw.
TEST(KvCacheTurboTruncation, LosslessPointIsTheStartOfACutCompressedBlock) {
  const int H = 4, G = 2, d = 64, S = 4;
  KvCacheConfig c;
  c.layers = {LayerGeometry{H, G, d, 0}};
  c.k_types = {KvType::Parse("tq4")};
  c.v_types = {KvType::Parse("tq3")};
  c.max_tokens = 512;
  c.sink_tokens = S;
  kernels::ThreadPool pool(1);
  std::vector<float> kv(size_t(200) * G * d, 0.5f), q(size_t(200) * H * d, 0.1f);
  auto filled = [&](int recent) {
    c.recent_tokens = recent;
    auto cache = KvCache::Create(c);
    // The second Append compresses [4, 68), [68, 132) and (recent 0) [132, 196).
    for (int n : {200, 100}) {
      cache->Append(0, kv.data(), kv.data(), n);
      cache->Attend(0, q.data(), n, q.data(), pool);
      cache->Commit(n);
    }
    return cache;
  };
  auto cache = filled(0);
  EXPECT_EQ(cache->LosslessTruncationPoint(100), 68);
  EXPECT_EQ(cache->LosslessTruncationPoint(131), 68);
  EXPECT_EQ(cache->LosslessTruncationPoint(132), 132);  // a block boundary
  EXPECT_EQ(cache->LosslessTruncationPoint(150), 132);
  EXPECT_EQ(cache->LosslessTruncationPoint(200), 200);  // past the compressed blocks
  EXPECT_EQ(cache->LosslessTruncationPoint(3), 3);      // sinks
  EXPECT_EQ(cache->LosslessTruncationPoint(1000), 300);
  // Recent buffer 16: at length m a run holds [68, 132) raw until m = 148, so between the
  // sinks and 148 no point keeps the compressed blocks exactly.
  cache = filled(16);
  EXPECT_EQ(cache->LosslessTruncationPoint(100), 4);
  EXPECT_EQ(cache->LosslessTruncationPoint(132), 4);
  EXPECT_EQ(cache->LosslessTruncationPoint(147), 4);
  EXPECT_EQ(cache->LosslessTruncationPoint(148), 148);
  EXPECT_EQ(cache->LosslessTruncationPoint(3), 3);
  c.k_types = c.v_types = {KvType::Parse("f16")};
  auto plain = KvCache::Create(c);
  EXPECT_EQ(plain->LosslessTruncationPoint(0), 0);
}

INSTANTIATE_TEST_SUITE_P(
    Types, KvCacheTurbo,
    ::testing::Values(TurboCase{"tq4", "tq3", 128}, TurboCase{"tq3", "tq3", 64},
                      TurboCase{"tq2.5", "tq2", 80}, TurboCase{"tq3.5", "tq4", 96},
                      TurboCase{"tq2", "tq2.5", 256}, TurboCase{"tq8", "tq4", 128},
                      TurboCase{"tq4p", "tq3", 64}, TurboCase{"q8_0", "tq3.5", 128}),
    [](const auto& info) {
      std::string s = std::string(info.param.kt) + "_" + info.param.vt + "_d" +
                      std::to_string(info.param.d);
      for (auto& ch : s)
        if (ch == '.') ch = 'p';
      return s;
    });

}  // namespace
}  // namespace tqlm::kv
