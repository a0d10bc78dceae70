// PagedKvCache against the scalar reference cache (tests/reference_kv_cache.h): f32/f16 must
// match closely, quantized types within their quantization error; plus paging, sinks, the
// recent buffer, sliding windows, truncation, cloning and memory accounting.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <random>
#include <vector>

#include "kernels/cpu/thread_pool.h"
#include "kv/kv_cache.h"
#include "reference_kv_cache.h"
#include "tqlm/error.h"

namespace tqlm::kv {
namespace {

KvCacheConfig MakeConfig(const std::string& kt, const std::string& vt, int d, int sinks,
                         int recent, int window_layer_window = 0) {
  KvCacheConfig c;
  c.layers = {LayerGeometry{8, 2, d, 0}, LayerGeometry{8, 2, d, window_layer_window}};
  c.k_types.assign(2, KvType::Parse(kt));
  c.v_types.assign(2, KvType::Parse(vt));
  c.attn_scale = 1.0f / std::sqrt(float(d));
  c.max_tokens = 2048;
  c.sink_tokens = sinks;
  c.recent_tokens = recent;
  return c;
}

// Relative RMS difference of a and b.
double RelErr(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num += double(a[i] - b[i]) * (a[i] - b[i]);
    den += double(b[i]) * b[i];
  }
  return std::sqrt(num / std::max(den, 1e-30));
}

// Feeds the same random steps to both caches and returns the worst relative error of Attend.
double RunSteps(KvCache& cache, KvCache& ref, const KvCacheConfig& c,
                const std::vector<int>& steps, std::mt19937& rng, kernels::ThreadPool& pool) {
  std::normal_distribution<float> nd(0.0f, 1.0f);
  double worst = 0;
  for (int n : steps) {
    for (size_t l = 0; l < c.layers.size(); ++l) {
      const auto& g = c.layers[l];
      std::vector<float> k(size_t(n) * g.n_kv_heads * g.head_dim);
      std::vector<float> v(k.size()), q(size_t(n) * g.n_heads * g.head_dim);
      for (auto& x : k) x = nd(rng) * 2.0f;
      for (auto& x : v) x = nd(rng);
      for (auto& x : q) x = nd(rng) * 2.0f;
      std::vector<float> out(q.size()), want(q.size());
      cache.Append(int(l), k.data(), v.data(), n);
      ref.Append(int(l), k.data(), v.data(), n);
      cache.Attend(int(l), q.data(), n, out.data(), pool);
      ref.Attend(int(l), q.data(), n, want.data(), pool);
      worst = std::max(worst, RelErr(out, want));
    }
    cache.Commit(n);
    ref.Commit(n);
  }
  return worst;
}

// Appends n random tokens to every layer and commits them (no attention).
void Fill(KvCache& cache, const KvCacheConfig& c, int n, std::mt19937& rng) {
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (size_t l = 0; l < c.layers.size(); ++l) {
    std::vector<float> k(size_t(n) * c.layers[l].n_kv_heads * c.layers[l].head_dim), v(k.size());
    for (auto& x : k) x = nd(rng);
    for (auto& x : v) x = nd(rng);
    cache.Append(int(l), k.data(), v.data(), n);
  }
  cache.Commit(n);
}

TEST(KvType, ParseAndName) {
  for (const char* name : {"f32", "f16", "q8_0", "q4_0", "tq2", "tq2.5", "tq3", "tq3.5", "tq4",
                           "tq8", "tq3p", "tq4p", "tq2.5p"}) {
    EXPECT_EQ(KvType::Parse(name).Name(), name);
  }
  EXPECT_EQ(KvType::Parse("tq3.5").bits, 3.5);
  EXPECT_TRUE(KvType::Parse("tq4p").prod);
  EXPECT_THROW(KvType::Parse("tq5"), Error);
  EXPECT_THROW(KvType::Parse("q5_1"), Error);
  EXPECT_THROW(KvType::Parse("tq"), Error);
}

struct PlainCase {
  const char* kt;
  const char* vt;
  int d;
  double tol;
};

class KvCachePlain : public ::testing::TestWithParam<PlainCase> {};

TEST_P(KvCachePlain, MatchesReference) {
  const PlainCase pc = GetParam();
  for (int window : {0, 100}) {
    SCOPED_TRACE(window);
    const KvCacheConfig c = MakeConfig(pc.kt, pc.vt, pc.d, 4, 32, window);
    auto cache = KvCache::Create(c);
    testing::ReferenceKvCache ref(c);
    kernels::ThreadPool pool(2);
    std::mt19937 rng(1234 + pc.d + window);
    // Prefill chunks, block-straddling steps, then decode.
    EXPECT_LT(RunSteps(*cache, ref, c, {37, 64, 100, 1, 1, 3, 1}, rng, pool), pc.tol);
    std::vector<int> decode(40, 1);
    EXPECT_LT(RunSteps(*cache, ref, c, decode, rng, pool), pc.tol);
    // Rewind into the compressed region and continue.
    // (A window layer keeps its last `window` tokens plus at most one block.)
    if (window > 0) {
      EXPECT_THROW(cache->Truncate(60), Error);
    }
    const int cut = window > 0 ? cache->n_tokens() - 20 : 150;
    cache->Truncate(cut);
    ref.Truncate(cut);
    EXPECT_EQ(cache->n_tokens(), cut);
    EXPECT_LT(RunSteps(*cache, ref, c, {5, 1, 1, 80, 1}, rng, pool), pc.tol);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Types, KvCachePlain,
    ::testing::Values(PlainCase{"f32", "f32", 64, 1e-5}, PlainCase{"f32", "f32", 80, 1e-5},
                      PlainCase{"f32", "f32", 96, 1e-5}, PlainCase{"f16", "f32", 256, 2e-3},
                      PlainCase{"f16", "f16", 128, 2e-3},
                      PlainCase{"f16", "f32", 64, 2e-3}, PlainCase{"q8_0", "q8_0", 64, 4e-2},
                      PlainCase{"q4_0", "q8_0", 64, 0.4}, PlainCase{"q8_0", "f16", 96, 4e-2}),
    [](const auto& info) {
      std::string s = std::string(info.param.kt) + "_" + info.param.vt + "_d" +
                      std::to_string(info.param.d);
      for (auto& ch : s)
        if (ch == '.') ch = 'p';
      return s;
    });

TEST(KvCache, CloneIsIndependent) {
  const KvCacheConfig c = MakeConfig("q8_0", "f16", 64, 4, 16);
  auto cache = KvCache::Create(c);
  testing::ReferenceKvCache ref(c);
  kernels::ThreadPool pool(2);
  std::mt19937 rng(7);
  RunSteps(*cache, ref, c, {200}, rng, pool);
  auto copy = cache->Clone();
  testing::ReferenceKvCache ref_copy = ref;
  std::mt19937 rng_copy = rng;
  const double a = RunSteps(*cache, ref, c, {3, 1, 1}, rng, pool);
  const double b = RunSteps(*copy, ref_copy, c, {3, 1, 1}, rng_copy, pool);
  EXPECT_EQ(a, b);
  EXPECT_LT(a, 4e-2);
  copy.reset();
  EXPECT_LT(RunSteps(*cache, ref, c, {1}, rng, pool), 4e-2);
}

TEST(KvCache, MemoryMatchesLayout) {
  // f16: 2 layers x 2 KV heads x (K + V) x d x 2 bytes per token.
  const KvCacheConfig c = MakeConfig("f16", "f16", 128, 0, 0);
  auto cache = KvCache::Create(c);
  std::mt19937 rng(3);
  Fill(*cache, c, 1000, rng);
  const KvMemoryStats s = cache->MemoryStats();
  EXPECT_EQ(s.bytes_used, size_t(1000) * 2 * 2 * 2 * 128 * 2);
  EXPECT_EQ(s.bytes_f16, s.bytes_used);
  EXPECT_GE(s.bytes_allocated, s.bytes_used);
  EXPECT_LT(s.bytes_allocated, s.bytes_used + size_t(2 * 2 * 2) * 64 * 128 * 2);
  // q8_0 K and V beyond sinks/buffer: 34 bytes per 32 values.
  const KvCacheConfig c8 = MakeConfig("q8_0", "q8_0", 128, 0, 0);
  auto cache8 = KvCache::Create(c8);
  Fill(*cache8, c8, 64 * 20, rng);
  Fill(*cache8, c8, 1, rng);  // its Append compresses the committed full blocks
  const KvMemoryStats s8 = cache8->MemoryStats();
  const double per_tok_q8 = 2 * 2 * 2 * 128 / 32 * 34.0;
  const double per_tok_f16 = 2 * 2 * 2 * 128 * 2.0;
  // With no recent buffer all 20 committed blocks are compressed; the new token is raw.
  const double want = 20 * 64 * per_tok_q8 + 1 * per_tok_f16;
  EXPECT_NEAR(double(s8.bytes_used), want, want * 0.01);
}

TEST(KvCache, SlidingWindowFreesBlocks) {
  KvCacheConfig c = MakeConfig("f16", "f16", 64, 0, 0, 128);
  c.layers[0].sliding_window = 128;
  auto cache = KvCache::Create(c);
  testing::ReferenceKvCache ref(c);
  kernels::ThreadPool pool(2);
  std::mt19937 rng(5);
  EXPECT_LT(RunSteps(*cache, ref, c, {500, 1, 1}, rng, pool), 2e-3);
  const KvMemoryStats s = cache->MemoryStats();
  // At most window + 2 blocks of tokens per layer remain.
  EXPECT_LE(s.bytes_used, size_t(2) * (128 + 128) * 2 * 2 * 64 * 2);
}

TEST(KvCache, RejectsBadUse) {
  const KvCacheConfig c = MakeConfig("f16", "f16", 64, 0, 0);
  auto cache = KvCache::Create(c);
  std::vector<float> x(8 * 64);
  kernels::ThreadPool pool(1);
  EXPECT_THROW(cache->Attend(0, x.data(), 1, x.data(), pool), Error);
  EXPECT_THROW(cache->Truncate(5), Error);
  EXPECT_THROW(cache->Append(7, x.data(), x.data(), 1), Error);
  KvCacheConfig bad = c;
  bad.layers[0].head_dim = 72;
  EXPECT_THROW(KvCache::Create(bad), Error);
}

}  // namespace
}  // namespace tqlm::kv
