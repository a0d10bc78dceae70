#include "runtime/prompt_cache.h"

#include <algorithm>

namespace tqlm::runtime {
namespace {
size_t CommonPrefix(std::span<const int> a, std::span<const int> b) {
  const size_t n = std::min(a.size(), b.size());
  size_t i = 0;
  while (i < n && a[i] == b[i]) ++i;
  return i;
}
}  // namespace

PromptCache::Hit PromptCache::Lookup(std::span<const int> prompt) {
  ++stats_.lookups;
  const size_t usable = prompt.empty() ? 0 : prompt.size() - 1;
  auto best = entries_.end();
  size_t best_len = 0;
  for (auto it = entries_.begin(); it != entries_.end(); ++it) {
    const size_t len = std::min(CommonPrefix(it->tokens, prompt), usable);
    if (len > best_len) best = it, best_len = len;
  }
  if (best == entries_.end()) return {};
  entries_.splice(entries_.begin(), entries_, best);  // most recently used
  // Never cut a compressed block: its tokens would be quantized twice.
  best_len = size_t(best->cache->LosslessTruncationPoint(int(best_len)));
  if (best_len == 0) return {};
  Hit hit;
  hit.cache = best->cache->Clone();
  hit.cache->Truncate(int(best_len));
  hit.tokens = int(best_len);
  ++stats_.hits;
  stats_.tokens_reused += best_len;
  return hit;
}

void PromptCache::Insert(std::span<const int> tokens, const kv::KvCache& cache) {
  tokens = tokens.first(std::min(tokens.size(), size_t(cache.n_tokens())));
  if (tokens.empty() || max_bytes_ == 0) return;
  for (auto it = entries_.begin(); it != entries_.end();) {
    const auto next = std::next(it);
    const size_t common = CommonPrefix(it->tokens, tokens);
    if (common == tokens.size() && it->tokens.size() >= tokens.size()) {
      entries_.splice(entries_.begin(), entries_, it);  // already covered: just touch it
      return;
    }
    if (common == it->tokens.size()) Remove(it);  // the new entry covers this one
    it = next;
  }
  const kv::KvMemoryStats mem = cache.MemoryStats();
  if (mem.bytes_allocated > max_bytes_) return;
  Entry e;
  e.tokens.assign(tokens.begin(), tokens.end());
  e.cache = cache.Clone();
  e.cache->Truncate(int(tokens.size()));
  e.mem = e.cache->MemoryStats();
  entries_.push_front(std::move(e));
  UpdateTotals();
  while (stats_.bytes > max_bytes_ && entries_.size() > 1) {
    Remove(std::prev(entries_.end()));
    ++stats_.evictions;
  }
}

void PromptCache::Clear() {
  entries_.clear();
  UpdateTotals();
}

void PromptCache::Remove(std::list<Entry>::iterator it) {
  entries_.erase(it);
  UpdateTotals();
}

void PromptCache::UpdateTotals() {
  stats_.entries = entries_.size();
  stats_.bytes = stats_.bytes_used = stats_.bytes_f16 = 0;
  for (const Entry& e : entries_) {
    stats_.bytes += e.mem.bytes_allocated;
    stats_.bytes_used += e.mem.bytes_used;
    stats_.bytes_f16 += e.mem.bytes_f16;
  }
}

}  // namespace tqlm::runtime
