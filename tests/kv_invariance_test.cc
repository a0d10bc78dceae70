// Issue 22: the attention output of a query depends only on the tokens before it, bit for bit:
// not on how the sequence was split into steps (one token at a time, chunks of 7, 64, 100 …),
// the thread count, or whether the cache was cloned and truncated (the prompt cache) in
// between. Every KV type family, with sinks, a recent buffer and a sliding-window layer.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/thread_pool.h"
#include "kv/kv_cache.h"

namespace tqlm::kv {
namespace {

struct Case {
  const char* k;
  const char* v;
  int sinks, recent;
};

std::string Name(const Case& c, int d) {
  return std::string(c.k) + "/" + c.v + " sinks " + std::to_string(c.sinks) + " recent " +
         std::to_string(c.recent) + " d " + std::to_string(d);
}

KvCacheConfig Config(const Case& c, int d, int window = 150) {
  KvCacheConfig cfg;
  // A global layer and a sliding-window one (no sinks there), 6 query heads per KV head.
  cfg.layers = {LayerGeometry{12, 2, d, 0}, LayerGeometry{12, 2, d, window}};
  cfg.k_types.assign(2, KvType::Parse(c.k));
  cfg.v_types.assign(2, KvType::Parse(c.v));
  cfg.attn_scale = 1.0f / std::sqrt(float(d));
  cfg.max_tokens = 1024;
  cfg.sink_tokens = c.sinks;
  cfg.recent_tokens = c.recent;
  return cfg;
}

// Deterministic K, V, Q of every position and layer.
struct Inputs {
  int n = 0;
  std::vector<std::vector<float>> k, v, q;  // [layer][pos * width]
};

Inputs MakeInputs(const KvCacheConfig& cfg, int n) {
  std::mt19937 rng(2201);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  Inputs in;
  in.n = n;
  for (const LayerGeometry& g : cfg.layers) {
    const size_t kv = size_t(n) * g.n_kv_heads * g.head_dim, qs = size_t(n) * g.n_heads * g.head_dim;
    std::vector<float> k(kv), v(kv), q(qs);
    // A shared key component (as Qwen's key biases give) so that key centering is exercised.
    for (size_t i = 0; i < kv; ++i) k[i] = nd(rng) + (i % g.head_dim < 8 ? 6.0f : 0.0f);
    for (auto& x : v) x = nd(rng);
    for (auto& x : q) x = nd(rng) * 1.5f;
    in.k.push_back(std::move(k));
    in.v.push_back(std::move(v));
    in.q.push_back(std::move(q));
  }
  return in;
}

// Feeds positions [from, to) in steps of `chunk`; out[layer] receives each position's output.
void Feed(KvCache& cache, const KvCacheConfig& cfg, const Inputs& in, int from, int to, int chunk,
          kernels::ThreadPool& pool, std::vector<std::vector<float>>* out) {
  for (int p = from; p < to; p += chunk) {
    const int m = std::min(chunk, to - p);
    for (size_t l = 0; l < cfg.layers.size(); ++l) {
      const LayerGeometry& g = cfg.layers[l];
      const size_t kw = size_t(g.n_kv_heads) * g.head_dim, qw = size_t(g.n_heads) * g.head_dim;
      cache.Append(int(l), in.k[l].data() + size_t(p) * kw, in.v[l].data() + size_t(p) * kw, m);
      cache.Attend(int(l), in.q[l].data() + size_t(p) * qw, m, (*out)[l].data() + size_t(p) * qw,
                   pool);
    }
    cache.Commit(m);
  }
}

std::vector<std::vector<float>> Outputs(const KvCacheConfig& cfg, int n) {
  std::vector<std::vector<float>> out;
  for (const LayerGeometry& g : cfg.layers) out.emplace_back(size_t(n) * g.n_heads * g.head_dim);
  return out;
}

void ExpectSame(const KvCacheConfig& cfg, const std::vector<std::vector<float>>& got,
                const std::vector<std::vector<float>>& want, int from, int n,
                const std::string& what) {
  for (size_t l = 0; l < cfg.layers.size(); ++l) {
    const size_t qw = size_t(cfg.layers[l].n_heads) * cfg.layers[l].head_dim;
    for (int p = from; p < n; ++p) {
      const float* a = got[l].data() + p * qw;
      const float* b = want[l].data() + p * qw;
      if (std::memcmp(a, b, qw * 4) != 0) {
        size_t j = 0;
        while (std::memcmp(a + j, b + j, 4) == 0) ++j;
        FAIL() << what << ": layer " << l << " position " << p << " differs at " << j << " ("
               << a[j] << " vs " << b[j] << ")";
      }
    }
  }
}

const Case kCases[] = {
    {"f16", "f16", 0, 0},      {"tq4", "tq3", 4, 0},  {"tq3", "tq2", 4, 0},
    {"tq4", "tq3", 4, 32},     {"tq8", "tq3", 70, 0}, {"q8_0", "q8_0", 4, 0},
    {"f16", "tq3", 4, 0},      {"tq2.5", "tq3.5", 0, 100},
};

TEST(KvInvariance, StepSplitAndThreadsDoNotChangeOutputs) {
  const int n = 460;
  kernels::ThreadPool pool1(1), pool2(2), pool3(3);
  for (const Case& c : kCases) {
    for (int d : {64, 128}) {
      const KvCacheConfig cfg = Config(c, d);
      const Inputs in = MakeInputs(cfg, n);
      // Reference: one query at a time (decode), two threads.
      auto want = Outputs(cfg, n);
      {
        auto cache = KvCache::Create(cfg);
        Feed(*cache, cfg, in, 0, n, 1, pool2, &want);
      }
      for (int chunk : {7, 64, 100, 256, 460}) {
        for (kernels::ThreadPool* pool : {&pool1, &pool3}) {
          auto got = Outputs(cfg, n);
          auto cache = KvCache::Create(cfg);
          Feed(*cache, cfg, in, 0, n, chunk, *pool, &got);
          ExpectSame(cfg, got, want, 0, n,
                     Name(c, d) + " chunks of " + std::to_string(chunk) + " on " +
                         std::to_string(pool->num_threads()) + " threads");
        }
      }
    }
  }
}

// A prefix reused the way the prompt cache does (clone, truncate to the lossless point,
// continue) gives the outputs of an uninterrupted run.
TEST(KvInvariance, ClonedAndTruncatedPrefixContinuesIdentically) {
  const int n = 400;
  kernels::ThreadPool pool(2);
  int reused = 0;
  // Two global layers (blocks aligned: truncation points inside the compressed region exist
  // when there is no recent buffer), or a global and a window layer wider than the run.
  for (int window : {0, 1000})
  for (const Case& c : kCases) {
    const KvCacheConfig cfg = Config(c, 64, window);
    const Inputs in = MakeInputs(cfg, n);
    auto want = Outputs(cfg, n);
    {
      auto cache = KvCache::Create(cfg);
      Feed(*cache, cfg, in, 0, n, 64, pool, &want);
    }
    auto source = KvCache::Create(cfg);
    auto scratch = Outputs(cfg, n);
    Feed(*source, cfg, in, 0, 300, 128, pool, &scratch);
    for (int cut : {100, 131, 250, 300}) {
      auto copy = source->Clone();
      const int keep = copy->LosslessTruncationPoint(cut);
      copy->Truncate(keep);
      if (keep > 0 && keep < 300) ++reused;
      auto got = Outputs(cfg, n);
      Feed(*copy, cfg, in, keep, n, 50, pool, &got);
      ExpectSame(cfg, got, want, keep, n, Name(c, 64) + " reused to " + std::to_string(keep));
    }
  }
  EXPECT_GT(reused, 10);  // the cases do exercise truncation inside the sequence
}

}  // namespace
}  // namespace tqlm::kv
