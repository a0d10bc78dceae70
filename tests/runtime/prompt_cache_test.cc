// The prefix cache (src/runtime/prompt_cache.h) over real paged KV caches: longest-prefix
// lookup leaving one token to run, copies independent of the cached entry, prefix entries
// superseded, LRU eviction under the byte cap.
#include <gtest/gtest.h>

#include <numeric>

#include "runtime/prompt_cache.h"

namespace tqlm::runtime {
namespace {

kv::KvCacheConfig Config() {
  kv::KvCacheConfig c;
  c.layers.assign(2, kv::LayerGeometry{2, 1, 64, 0});
  c.k_types.assign(2, kv::KvType::Parse("f16"));
  c.v_types.assign(2, kv::KvType::Parse("f16"));
  c.attn_scale = 0.125f;
  c.max_tokens = 1024;
  return c;
}

std::unique_ptr<kv::KvCache> Filled(int n) {
  auto cache = kv::KvCache::Create(Config());
  std::vector<float> k(64 * size_t(n)), v(64 * size_t(n));
  std::iota(k.begin(), k.end(), 0.0f);
  std::iota(v.begin(), v.end(), 1.0f);
  for (int l = 0; l < 2; ++l) cache->Append(l, k.data(), v.data(), n);
  cache->Commit(n);
  return cache;
}

std::vector<int> Tokens(int n, int first = 0) {
  std::vector<int> t(n);
  std::iota(t.begin(), t.end(), first);
  return t;
}

TEST(PromptCache, LongestPrefixLeavesOneTokenToRun) {
  PromptCache pc(size_t(64) << 20);
  pc.Insert(Tokens(10), *Filled(10));
  std::vector<int> prompt = Tokens(6);
  prompt.push_back(999);  // diverges after 6 tokens
  PromptCache::Hit hit = pc.Lookup(prompt);
  ASSERT_TRUE(hit.cache);
  EXPECT_EQ(hit.tokens, 6);
  EXPECT_EQ(hit.cache->n_tokens(), 6);
  hit = pc.Lookup(Tokens(10));  // the whole entry: one token is left to run
  EXPECT_EQ(hit.tokens, 9);
  EXPECT_EQ(pc.Lookup(Tokens(5, 100)).cache, nullptr);  // nothing in common
  EXPECT_EQ(pc.stats().lookups, 3u);
  EXPECT_EQ(pc.stats().hits, 2u);
  EXPECT_EQ(pc.stats().tokens_reused, 15u);
}

TEST(PromptCache, CopiesAreIndependent) {
  PromptCache pc(size_t(64) << 20);
  pc.Insert(Tokens(20), *Filled(20));
  PromptCache::Hit a = pc.Lookup(Tokens(21));
  a.cache->Truncate(3);  // the caller's copy changes, the cached entry does not
  EXPECT_EQ(pc.Lookup(Tokens(21)).tokens, 20);
}

TEST(PromptCache, LongerEntrySupersedesItsPrefix) {
  PromptCache pc(size_t(64) << 20);
  pc.Insert(Tokens(5), *Filled(5));
  pc.Insert(Tokens(12), *Filled(12));
  EXPECT_EQ(pc.stats().entries, 1u);
  pc.Insert(Tokens(8), *Filled(8));  // already covered by the longer one
  EXPECT_EQ(pc.stats().entries, 1u);
  pc.Insert(Tokens(8, 50), *Filled(8));
  EXPECT_EQ(pc.stats().entries, 2u);
}

TEST(PromptCache, EvictsLeastRecentlyUsedUnderTheCap) {
  const size_t one = Filled(64)->MemoryStats().bytes_allocated;
  PromptCache pc(2 * one + one / 2);  // room for two entries
  pc.Insert(Tokens(64, 0), *Filled(64));
  pc.Insert(Tokens(64, 1000), *Filled(64));
  EXPECT_EQ(pc.Lookup(Tokens(65, 0)).tokens, 64);  // touch the first: the second is now oldest
  pc.Insert(Tokens(64, 2000), *Filled(64));
  EXPECT_EQ(pc.stats().entries, 2u);
  EXPECT_EQ(pc.stats().evictions, 1u);
  EXPECT_LE(pc.stats().bytes, pc.max_bytes());
  EXPECT_EQ(pc.Lookup(Tokens(65, 1000)).cache, nullptr);
  EXPECT_EQ(pc.Lookup(Tokens(65, 0)).tokens, 64);
  PromptCache tiny(one / 2);  // an entry larger than the cap is not kept
  tiny.Insert(Tokens(64), *Filled(64));
  EXPECT_EQ(tiny.stats().entries, 0u);
}

}  // namespace
}  // namespace tqlm::runtime
