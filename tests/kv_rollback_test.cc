// Issue 28: speculative decoding appends proposed tokens in one step and rolls the rejected
// ones back (Truncate). Rejected tokens must leave no trace: the cache, block by block and
// byte for byte, equals a cache that only ever saw the accepted tokens one at a time, and the
// accepted positions' attention outputs of the speculative steps equal the one-at-a-time ones
// bit for bit. Every KV type family, with sinks, a recent buffer and a sliding-window layer.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/thread_pool.h"
#include "kv/paged_kv_cache.h"

namespace tqlm::kv {
namespace {

struct Case {
  const char* k;
  const char* v;
  int sinks, recent;
};

KvCacheConfig Config(const Case& c) {
  KvCacheConfig cfg;
  const int d = 64;
  cfg.layers = {LayerGeometry{4, 2, d, 0}, LayerGeometry{4, 2, d, 150}};
  cfg.k_types.assign(2, KvType::Parse(c.k));
  cfg.v_types.assign(2, KvType::Parse(c.v));
  cfg.attn_scale = 1.0f / std::sqrt(float(d));
  cfg.max_tokens = 1024;
  cfg.sink_tokens = c.sinks;
  cfg.recent_tokens = c.recent;
  return cfg;
}

// Rows of one layer's K, V and Q for `n` positions.
struct Rows {
  std::vector<float> k, v, q;
};

std::vector<Rows> MakeRows(const KvCacheConfig& cfg, int n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<Rows> out;
  for (const LayerGeometry& g : cfg.layers) {
    Rows r;
    r.k.resize(size_t(n) * g.n_kv_heads * g.head_dim);
    r.v.resize(r.k.size());
    r.q.resize(size_t(n) * g.n_heads * g.head_dim);
    for (size_t i = 0; i < r.k.size(); ++i) r.k[i] = nd(rng) + (i % g.head_dim < 8 ? 5.0f : 0.0f);
    for (auto& x : r.v) x = nd(rng);
    for (auto& x : r.q) x = nd(rng);
    out.push_back(std::move(r));
  }
  return out;
}

// One step: positions [p, p + m) from `rows` starting at row `from`; outputs into out[layer].
void Step(KvCache& cache, const KvCacheConfig& cfg, const std::vector<Rows>& rows, int from, int m,
          kernels::ThreadPool& pool, std::vector<std::vector<float>>* out) {
  for (size_t l = 0; l < cfg.layers.size(); ++l) {
    const LayerGeometry& g = cfg.layers[l];
    const size_t kw = size_t(g.n_kv_heads) * g.head_dim, qw = size_t(g.n_heads) * g.head_dim;
    (*out)[l].resize(size_t(m) * qw);
    cache.Append(int(l), rows[l].k.data() + size_t(from) * kw, rows[l].v.data() + size_t(from) * kw,
                 m);
    cache.Attend(int(l), rows[l].q.data() + size_t(from) * qw, m, (*out)[l].data(), pool);
  }
  cache.Commit(m);
}

// Every stored block of `a` equals `b`'s, byte for byte (block ids may differ).
void ExpectSameBlocks(const PagedKvCache& a, const PagedKvCache& b, const std::string& where) {
  ASSERT_EQ(a.n_tokens(), b.n_tokens()) << where;
  for (size_t l = 0; l < a.config().layers.size(); ++l) {
    const PagedKvCache::Layer& A = a.layer(int(l));
    const PagedKvCache::Layer& B = b.layer(int(l));
    ASSERT_EQ(A.n_comp, B.n_comp) << where << " layer " << l;
    for (auto [ta, tb] : {std::pair{&A.k, &B.k}, std::pair{&A.v, &B.v}}) {
      for (size_t h = 0; h < ta->main.size(); ++h) {
        ASSERT_EQ(ta->sinks[h].size(), tb->sinks[h].size()) << where;
        for (size_t i = 0; i < ta->sinks[h].size(); ++i)
          ASSERT_EQ(0, std::memcmp(ta->raw_pool[h]->data(ta->sinks[h][i]),
                                   tb->raw_pool[h]->data(tb->sinks[h][i]), ta->raw->block_bytes()))
              << where << " layer " << l << " head " << h << " sink block " << i;
        ASSERT_EQ(ta->main[h].size(), tb->main[h].size()) << where << " layer " << l;
        for (size_t i = 0; i < ta->main[h].size(); ++i) {
          ASSERT_EQ(ta->main[h][i] == kNoBlock, tb->main[h][i] == kNoBlock) << where;
          if (ta->main[h][i] == kNoBlock) continue;
          const bool comp = int(i) < A.n_comp;
          const BlockPool& pa = *(comp ? ta->comp_pool : ta->raw_pool)[h];
          const BlockPool& pb = *(comp ? tb->comp_pool : tb->raw_pool)[h];
          ASSERT_EQ(0, std::memcmp(pa.data(ta->main[h][i]), pb.data(tb->main[h][i]),
                                   pa.block_bytes()))
              << where << " layer " << l << " head " << h << " main block " << i
              << (comp ? " (compressed)" : " (raw)");
        }
      }
    }
  }
}

class KvRollback : public ::testing::TestWithParam<Case> {};

TEST_P(KvRollback, RejectedTokensLeaveNoTrace) {
  const KvCacheConfig cfg = Config(GetParam());
  const int n = 420;
  const std::vector<Rows> good = MakeRows(cfg, n, 28);
  const std::vector<Rows> junk = MakeRows(cfg, n, 1028);  // the rejected proposals
  kernels::ThreadPool pool(2);
  PagedKvCache spec(cfg), plain(cfg);
  std::vector<std::vector<float>> out_spec(cfg.layers.size()), out_plain(cfg.layers.size());

  // Both take a 100-token prompt in one chunk.
  Step(spec, cfg, good, 0, 100, pool, &out_spec);
  Step(plain, cfg, good, 0, 100, pool, &out_plain);
  // Steps of 1 + k tokens with k proposals of which `a` are accepted: the step's rows are the
  // accepted positions' (and the next one's, whose token is right in any case) then junk.
  std::mt19937 rng(7);
  std::vector<Rows> mixed = good;
  for (int p = 100; p < n;) {
    const int k = std::min(int(rng() % 9), n - p - 1);
    const int a = k == 0 ? 0 : int(rng() % (k + 1));
    mixed = good;
    for (size_t l = 0; l < cfg.layers.size(); ++l) {
      const LayerGeometry& g = cfg.layers[l];
      const size_t kw = size_t(g.n_kv_heads) * g.head_dim, qw = size_t(g.n_heads) * g.head_dim;
      for (int i = p + 1 + a; i < p + 1 + k; ++i) {
        std::copy_n(junk[l].k.data() + i * kw, kw, mixed[l].k.data() + i * kw);
        std::copy_n(junk[l].v.data() + i * kw, kw, mixed[l].v.data() + i * kw);
        std::copy_n(junk[l].q.data() + i * qw, qw, mixed[l].q.data() + i * qw);
      }
    }
    Step(spec, cfg, mixed, p, k + 1, pool, &out_spec);
    spec.Truncate(p + 1 + a);
    for (int i = 0; i <= a; ++i) {
      Step(plain, cfg, good, p + i, 1, pool, &out_plain);
      for (size_t l = 0; l < cfg.layers.size(); ++l) {
        const size_t qw = size_t(cfg.layers[l].n_heads) * cfg.layers[l].head_dim;
        ASSERT_EQ(0, std::memcmp(out_spec[l].data() + i * qw, out_plain[l].data(),
                                 qw * sizeof(float)))
            << "attention output at position " << p + i << " layer " << l;
      }
    }
    p += 1 + a;
    ExpectSameBlocks(spec, plain, "after position " + std::to_string(p));
    if (HasFatalFailure()) return;
  }
}

INSTANTIATE_TEST_SUITE_P(Types, KvRollback,
                         ::testing::Values(Case{"tq3", "tq2", 4, 16}, Case{"tq3", "tq3", 0, 0},
                                           Case{"tq4", "tq2.5", 4, 70},
                                           Case{"q8_0", "q4_0", 4, 32}, Case{"f16", "f16", 0, 0}),
                         [](const auto& info) {
                           std::string s = std::string(info.param.k) + "_" + info.param.v + "_s" +
                                           std::to_string(info.param.sinks) + "_r" +
                                           std::to_string(info.param.recent);
                           for (char& c : s)
                             if (c == '.') c = 'p';
                           return s;
                         });

}  // namespace
}  // namespace tqlm::kv
