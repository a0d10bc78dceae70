// Prefix (prompt) cache shared across requests: KV caches of prompts already run, so a new
// prompt that starts with the same tokens (a system prompt, tool definitions, the earlier turns
// of a conversation) runs only its new suffix. Entries are independent copies
// (KvCache::Clone) of compressed caches, bounded by a byte cap and evicted least recently used.
// Not thread-safe: the scheduler's inference thread owns it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <span>
#include <vector>

#include "kv/kv_cache.h"

namespace tqlm::runtime {

struct PromptCacheStats {
  uint64_t lookups = 0;
  uint64_t hits = 0;           // lookups that reused at least one token
  uint64_t tokens_reused = 0;  // prompt tokens not recomputed thanks to the cache
  uint64_t evictions = 0;
  size_t entries = 0;
  size_t bytes = 0;            // allocated bytes of the cached KV caches
  size_t bytes_used = 0;       // bytes their tokens occupy
  size_t bytes_f16 = 0;        // the same tokens as plain f16
};

class PromptCache {
 public:
  explicit PromptCache(size_t max_bytes) : max_bytes_(max_bytes) {}

  struct Hit {
    std::unique_ptr<kv::KvCache> cache;  // a copy truncated to `tokens` (null on a miss)
    int tokens = 0;                      // length of the reused prefix
  };
  // The longest cached prefix of `prompt`, leaving at least one prompt token to run (the
  // model must produce logits for the last one). A miss returns {nullptr, 0}.
  Hit Lookup(std::span<const int> prompt);

  // Remembers `cache` (whose first tokens are `tokens`) as a copy. Entries that are a prefix
  // of `tokens` are dropped (the new one serves them too); the least recently used entries go
  // until the total fits the cap. A cache larger than the cap is not kept.
  void Insert(std::span<const int> tokens, const kv::KvCache& cache);

  void Clear();
  const PromptCacheStats& stats() const { return stats_; }
  size_t max_bytes() const { return max_bytes_; }

 private:
  struct Entry {
    std::vector<int> tokens;
    std::unique_ptr<kv::KvCache> cache;
    kv::KvMemoryStats mem;
  };
  void Remove(std::list<Entry>::iterator it);
  void UpdateTotals();

  size_t max_bytes_;
  std::list<Entry> entries_;  // most recently used first
  PromptCacheStats stats_;
};

}  // namespace tqlm::runtime
