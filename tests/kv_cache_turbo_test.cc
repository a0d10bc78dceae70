// TurboQuant caches end to end: attention over compressed blocks must equal attention over
// the values those blocks decode to (the remaining difference is the kernels' int8 query,
// int8 codebook and uint8 weight quantization), with sinks and the recent buffer exact (f16).
#include <gtest/gtest.h>

#include <cmath>
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
    // What the cache holds now: sinks and raw tokens as f16, compressed blocks decoded.
    int n_comp = 0;
    while (T - S - n_comp * 64 >= 64 + R) ++n_comp;
    std::vector<float> ek(all_k.size()), ev(all_v.size());
    for (size_t i = 0; i < ek.size(); ++i) {
      ek[i] = RoundF16(all_k[i]);
      ev[i] = RoundF16(all_v[i]);
    }
    std::vector<uint8_t> kb(kf->block_bytes()), vb(vf->block_bytes());
    std::vector<float> dec(64 * d);
    for (int b = 0; b < n_comp; ++b) {
      for (int h = 0; h < G; ++h) {
        const size_t base = size_t(S + 64 * b) * row + size_t(h) * d;
        kf->Encode(all_k.data() + base, row, 0, 64, kb.data());
        kf->Decode(kb.data(), 0, 64, dec.data());
        for (int t = 0; t < 64; ++t) std::copy_n(&dec[t * d], d, &ek[base + t * row]);
        vf->Encode(all_v.data() + base, row, 0, 64, vb.data());
        vf->Decode(vb.data(), 0, 64, dec.data());
        for (int t = 0; t < 64; ++t) std::copy_n(&dec[t * d], d, &ev[base + t * row]);
      }
    }
    testing::ReferenceKvCache ref(c);
    if (T > 0) {
      ref.Append(0, ek.data(), ev.data(), T);
      ref.Commit(T);
    }
    ref.Append(0, ek.data() + T * row, ev.data() + T * row, n);
    ref.Attend(0, q.data(), n, want.data(), pool);
    cache->Commit(n);
    return RelErr(out, want);
  };
  double worst = step(300);  // prefill: no block compressed yet (all committed tokens are new)
  EXPECT_LT(worst, 1e-3);
  for (int i = 0; i < 3; ++i) worst = std::max(worst, step(1));
  worst = std::max(worst, step(40));
  worst = std::max(worst, step(1));
  // Measured 1-3% (int8 queries and codebook, uint8 weights); prod keys go through the codec's
  // own estimator, which differs more from a dot with the decoded vector.
  EXPECT_LT(worst, c.k_types[0].prod ? 0.08 : 0.04) << tc.kt << "/" << tc.vt;
  const KvMemoryStats s = cache->MemoryStats();
  const int T = cache->n_tokens();
  const double raw = 2.0 * d * 2 * G;  // K + V f16 per token
  const double comp = double(kf->block_bytes() + vf->block_bytes()) * G / 64;
  int nc = 0;  // compressed blocks as of the last Append (T - 1 tokens committed then)
  while ((T - 1) - S - nc * 64 >= 64 + R) ++nc;
  const double want_bytes = (T - 64.0 * nc) * raw + 64.0 * nc * comp;
  EXPECT_NEAR(double(s.bytes_used), want_bytes, want_bytes * 0.01);
  EXPECT_EQ(s.bytes_f16, size_t(T) * G * d * 2 * 2);
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
