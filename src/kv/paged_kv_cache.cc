#include "kv/paged_kv_cache.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "tqlm/error.h"

namespace tqlm::kv {

std::unique_ptr<KvCache> KvCache::Create(const KvCacheConfig& config) {
  return std::make_unique<PagedKvCache>(config);
}

std::unique_ptr<KvCache> KvCache::Clone() const {
  throw Error("this KV cache cannot be copied");
}

PagedKvCache::PagedKvCache(const KvCacheConfig& config) : config_(config) {
  const size_t n_layers = config.layers.size();
  if (config.k_types.size() != n_layers || config.v_types.size() != n_layers)
    throw Error(fmt::format("KV cache: {} layers but {} K types and {} V types", n_layers,
                            config.k_types.size(), config.v_types.size()));
  if (config.sink_tokens < 0 || config.recent_tokens < 0 || config.max_tokens <= 0)
    throw Error("KV cache: sink_tokens, recent_tokens must be >= 0 and max_tokens > 0");
  layers_.resize(n_layers);
  for (size_t l = 0; l < n_layers; ++l) {
    Layer& L = layers_[l];
    L.geom = config.layers[l];
    const LayerGeometry& g = L.geom;
    if (g.n_heads <= 0 || g.n_kv_heads <= 0 || g.n_heads % g.n_kv_heads != 0)
      throw Error(fmt::format("KV cache layer {}: {} query heads is not a multiple of {} KV heads",
                              l, g.n_heads, g.n_kv_heads));
    if (g.sliding_window < 0) throw Error("KV cache: negative sliding window");
    const KvType& kt = config.k_types[l];
    const KvType& vt = config.v_types[l];
    L.compress = IsCompressed(kt) || IsCompressed(vt);
    // Sliding-window layers drop old tokens anyway: no sinks there.
    L.sinks = L.compress && g.sliding_window == 0 ? config.sink_tokens : 0;
    for (auto [t, type, role] : {std::tuple{&L.k, kt, TensorRole::kKey},
                                 std::tuple{&L.v, vt, TensorRole::kValue}}) {
      t->raw = FormatFor(RawTypeFor(type), g.head_dim, role);
      t->comp = FormatFor(type, g.head_dim, role);
      MakePools(*t, g.n_kv_heads);
      t->sinks.resize(g.n_kv_heads);
      t->main.resize(g.n_kv_heads);
      t->pending.resize(g.n_kv_heads);
    }
  }
}

PagedKvCache::PagedKvCache(const PagedKvCache& other)
    : config_(other.config_), n_tokens_(other.n_tokens_), layers_(other.layers_) {
  // Same formats and pools by key; every block copied into this cache's own pools.
  for (size_t l = 0; l < layers_.size(); ++l) {
    Layer& L = layers_[l];
    const Layer& O = other.layers_[l];
    // Pending copies are not carried over: the copy's next Append encodes them again.
    L.n_pending = 0;
    for (Tensor* t : {&L.k, &L.v})
      for (auto& p : t->pending) p.clear();
    const KvType* types[2] = {&config_.k_types[l], &config_.v_types[l]};
    Tensor* mine[2] = {&L.k, &L.v};
    const Tensor* theirs[2] = {&O.k, &O.v};
    for (int x = 0; x < 2; ++x) {
      Tensor& t = *mine[x];
      const Tensor& o = *theirs[x];
      const TensorRole role = x == 0 ? TensorRole::kKey : TensorRole::kValue;
      t.raw = FormatFor(RawTypeFor(*types[x]), L.geom.head_dim, role);
      t.comp = FormatFor(*types[x], L.geom.head_dim, role);
      MakePools(t, L.geom.n_kv_heads);
      for (int h = 0; h < L.geom.n_kv_heads; ++h) {
        for (auto& id : t.sinks[h]) {
          const uint32_t src = id;
          id = t.raw_pool[h]->Allocate();
          std::copy_n(o.raw_pool[h]->data(src), t.raw->block_bytes(), t.raw_pool[h]->data(id));
        }
        for (size_t b = 0; b < t.main[h].size(); ++b) {
          uint32_t& id = t.main[h][b];
          if (id == kNoBlock) continue;
          const uint32_t src = id;
          const bool comp = int(b) < L.n_comp;
          BlockPool* pool = (comp ? t.comp_pool : t.raw_pool)[h].get();
          const BlockPool* opool = (comp ? o.comp_pool : o.raw_pool)[h].get();
          id = pool->Allocate();
          std::copy_n(opool->data(src), pool->block_bytes(), pool->data(id));
        }
      }
    }
  }
}

PagedKvCache::~PagedKvCache() = default;

std::unique_ptr<KvCache> PagedKvCache::Clone() const {
  return std::unique_ptr<KvCache>(new PagedKvCache(*this));
}

const BlockFormat* PagedKvCache::FormatFor(const KvType& type, int dim, TensorRole role) {
  auto& f = formats_[{dim, type.Name(), role}];
  if (!f) f = MakeBlockFormat(type, dim, role);
  return f.get();
}

void PagedKvCache::MakePools(Tensor& t, int n_heads) {
  t.raw_pool.clear();
  t.comp_pool.clear();
  for (int h = 0; h < n_heads; ++h) {
    t.raw_pool.push_back(std::make_shared<BlockPool>(t.raw->block_bytes()));
    t.comp_pool.push_back(t.comp == t.raw ? t.raw_pool.back()
                                          : std::make_shared<BlockPool>(t.comp->block_bytes()));
  }
}

uint32_t PagedKvCache::EncodeCompressed(Tensor& t, int head, uint32_t raw_id) {
  const int d = t.raw->dim();
  tmp_.resize(size_t(kBlockTokens) * d);
  t.raw->Decode(t.raw_pool[head]->data(raw_id), 0, kBlockTokens, tmp_.data());
  const uint32_t cid = t.comp_pool[head]->Allocate();
  t.comp->Encode(tmp_.data(), d, 0, kBlockTokens, t.comp_pool[head]->data(cid));
  return cid;
}

// `pending`: the block's copy encoded ahead (kNoBlock if none), adopted instead of encoding
// the block again (the same bytes: both encode the decoded raw block).
void PagedKvCache::CompressBlock(Tensor& t, int head, int b, uint32_t pending) {
  uint32_t& id = t.main[head][b];
  if (id == kNoBlock || t.comp == t.raw) {
    if (pending != kNoBlock) t.comp_pool[head]->Free(pending);
    return;
  }
  const uint32_t cid = pending != kNoBlock ? pending : EncodeCompressed(t, head, id);
  t.raw_pool[head]->Free(id);
  id = cid;
}

void PagedKvCache::CompressBlock(Layer& L, int b) {
  const bool adopt = L.n_pending > 0;  // pending copies start at block n_comp == b
  for (Tensor* t : {&L.k, &L.v}) {
    for (int h = 0; h < L.geom.n_kv_heads; ++h) {
      uint32_t pending = kNoBlock;
      if (adopt) {
        pending = t->pending[h].front();
        t->pending[h].erase(t->pending[h].begin());
      }
      CompressBlock(*t, h, b, pending);
    }
  }
  if (adopt) --L.n_pending;
}

void PagedKvCache::EncodePending(Layer& L, int last_query) {
  if (!L.compress) return;
  const int R = config_.recent_tokens;
  for (;;) {
    const int b = L.n_comp + L.n_pending;
    if (b >= int(L.k.main[0].size())) return;
    const int end_b = L.sinks + (b + 1) * kBlockTokens;
    if (end_b + R > last_query) return;
    for (Tensor* t : {&L.k, &L.v}) {
      for (int h = 0; h < L.geom.n_kv_heads; ++h) {
        const uint32_t id = t->main[h][b];
        t->pending[h].push_back(id == kNoBlock || t->comp == t->raw
                                    ? kNoBlock
                                    : EncodeCompressed(*t, h, id));
      }
    }
    ++L.n_pending;
  }
}

void PagedKvCache::DropPending(Layer& L) {
  for (Tensor* t : {&L.k, &L.v}) {
    for (size_t h = 0; h < t->pending.size(); ++h) {
      for (uint32_t id : t->pending[h])
        if (id != kNoBlock) t->comp_pool[h]->Free(id);
      t->pending[h].clear();
    }
  }
  L.n_pending = 0;
}

void PagedKvCache::FreeInvisible(Layer& L, int first_needed) {
  // Main block b's last position is S + 64 b + 63 (S = 0 on window layers).
  for (Tensor* t : {&L.k, &L.v}) {
    for (size_t h = 0; h < t->main.size(); ++h) {
      auto& blocks = t->main[h];
      for (size_t b = 0; b < blocks.size(); ++b) {
        if (L.sinks + int(b + 1) * kBlockTokens > first_needed) break;
        if (blocks[b] == kNoBlock) continue;
        (int(b) < L.n_comp ? t->comp_pool : t->raw_pool)[h]->Free(blocks[b]);
        blocks[b] = kNoBlock;
        const int pi = int(b) - L.n_comp;
        if (pi >= 0 && pi < L.n_pending && t->pending[h][pi] != kNoBlock) {
          t->comp_pool[h]->Free(t->pending[h][pi]);
          t->pending[h][pi] = kNoBlock;
        }
      }
    }
  }
}

uint32_t PagedKvCache::NewRawBlock(Tensor& t, int head) {
  const uint32_t id = t.raw_pool[head]->Allocate();
  std::memset(t.raw_pool[head]->data(id), 0, t.raw_pool[head]->block_bytes());
  return id;
}

void PagedKvCache::WriteTokens(Layer& L, Tensor& t, const float* x, int pos, int n) {
  const LayerGeometry& g = L.geom;
  const size_t stride = size_t(g.n_kv_heads) * g.head_dim;
  for (int i = 0; i < n;) {
    const int p = pos + i;
    const bool sink = p < L.sinks;
    const int rel = sink ? p : p - L.sinks;
    const int b = rel / kBlockTokens, off = rel % kBlockTokens;
    const int limit = sink ? L.sinks - p : kBlockTokens - off;
    const int run = std::min({n - i, limit, kBlockTokens - off});
    for (int h = 0; h < g.n_kv_heads; ++h) {
      auto& blocks = sink ? t.sinks[h] : t.main[h];
      // New raw blocks start zeroed: kernels may read a partly filled block's empty slots.
      while (int(blocks.size()) <= b) blocks.push_back(NewRawBlock(t, h));
      if (blocks[b] == kNoBlock) blocks[b] = NewRawBlock(t, h);
      t.raw->Encode(x + size_t(i) * stride + size_t(h) * g.head_dim, stride, off, run,
                    t.raw_pool[h]->data(blocks[b]));
    }
    i += run;
  }
}

void PagedKvCache::Append(int layer, const float* k, const float* v, int n) {
  if (layer < 0 || layer >= int(layers_.size()))
    throw Error(fmt::format("KV cache: layer {} out of range", layer));
  if (n <= 0) return;
  const int T = n_tokens_;
  if (T + n > config_.max_tokens)
    throw Error(fmt::format("KV cache: {} + {} tokens exceed the cache size {}", T, n,
                            config_.max_tokens));
  Layer& L = layers_[layer];
  if (L.n_written > T) TruncateLayer(L, T);  // a step that was never committed
  // Committed raw tokens leave the recent buffer one full block at a time.
  if (L.compress) {
    while (T - L.sinks - L.n_comp * kBlockTokens >= kBlockTokens + config_.recent_tokens) {
      CompressBlock(L, L.n_comp);
      ++L.n_comp;
    }
  }
  if (L.geom.sliding_window > 0) FreeInvisible(L, T - L.geom.sliding_window + 1);
  WriteTokens(L, L.k, k, T, n);
  WriteTokens(L, L.v, v, T, n);
  L.n_written = T + n;
  EncodePending(L, T + n - 1);
}

void PagedKvCache::Commit(int n) {
  if (n < 0) throw Error("KV cache: negative commit");
  for (size_t l = 0; l < layers_.size(); ++l) {
    if (layers_[l].n_written != n_tokens_ + n)
      throw Error(fmt::format("KV cache: commit of {} tokens but layer {} holds {} (expected {})",
                              n, l, layers_[l].n_written, n_tokens_ + n));
  }
  n_tokens_ += n;
}

void PagedKvCache::TruncateLayer(Layer& L, int n) {
  DropPending(L);
  const int S = L.sinks;
  const int keep_sink_blocks = (std::min(n, S) + kBlockTokens - 1) / kBlockTokens;
  const int keep_main = n > S ? (n - S + kBlockTokens - 1) / kBlockTokens : 0;
  const bool cut_compressed =
      keep_main > 0 && keep_main - 1 < L.n_comp && (n - S) % kBlockTokens != 0;
  for (Tensor* t : {&L.k, &L.v}) {
    for (int h = 0; h < L.geom.n_kv_heads; ++h) {
      auto& sinks = t->sinks[h];
      while (int(sinks.size()) > keep_sink_blocks) {
        t->raw_pool[h]->Free(sinks.back());
        sinks.pop_back();
      }
      auto& main = t->main[h];
      while (int(main.size()) > keep_main) {
        const int b = int(main.size()) - 1;
        if (main.back() != kNoBlock)
          (b < L.n_comp ? t->comp_pool : t->raw_pool)[h]->Free(main.back());
        main.pop_back();
      }
      // A compressed block cut in the middle goes back to raw storage (its decoded values).
      if (cut_compressed && t->comp != t->raw && main.back() != kNoBlock) {
        const int d = L.geom.head_dim;
        tmp_.resize(size_t(kBlockTokens) * d);
        t->comp->Decode(t->comp_pool[h]->data(main.back()), 0, kBlockTokens, tmp_.data());
        t->comp_pool[h]->Free(main.back());
        main.back() = t->raw_pool[h]->Allocate();
        t->raw->Encode(tmp_.data(), d, 0, kBlockTokens, t->raw_pool[h]->data(main.back()));
      }
    }
  }
  L.n_comp = std::min(L.n_comp, cut_compressed ? keep_main - 1 : keep_main);
  L.n_written = std::min(L.n_written, n);
  // Slots past the cut in the last kept raw blocks go back to zeros, as in a block that never
  // held those tokens: a rolled-back step (speculative decoding) leaves no trace, and the cache
  // is byte for byte what a run that never saw them holds.
  const int sink_tail = std::min(n, S) % kBlockTokens;
  const int main_tail = n > S ? (n - S) % kBlockTokens : 0;
  for (Tensor* t : {&L.k, &L.v}) {
    for (int h = 0; h < L.geom.n_kv_heads; ++h) {
      if (sink_tail > 0 && !t->sinks[h].empty()) ClearRawTail(*t, h, t->sinks[h].back(), sink_tail);
      if (main_tail > 0 && keep_main - 1 >= L.n_comp && t->main[h].back() != kNoBlock)
        ClearRawTail(*t, h, t->main[h].back(), main_tail);
    }
  }
  // The layer is left as a run that reached n one token at a time leaves it (its last step
  // started at n - 1): raw blocks that such a run has compressed by then are compressed, and a
  // window layer frees what that step no longer saw. So a rolled-back step of several tokens,
  // which compressed and freed less when it started, leaves the same blocks (speculative
  // decoding; the numbers do not depend on it either way: paged_kv_attend.cc reads a block
  // compressed by its position alone).
  if (L.compress && n > 0) {
    while (n - 1 - L.sinks - L.n_comp * kBlockTokens >= kBlockTokens + config_.recent_tokens) {
      CompressBlock(L, L.n_comp);
      ++L.n_comp;
    }
  }
  if (L.geom.sliding_window > 0) FreeInvisible(L, n - L.geom.sliding_window);
}

void PagedKvCache::ClearRawTail(Tensor& t, int head, uint32_t id, int from) {
  const int d = t.raw->dim();
  tmp_.assign(size_t(kBlockTokens - from) * d, 0.0f);
  t.raw->Encode(tmp_.data(), d, from, kBlockTokens - from, t.raw_pool[head]->data(id));
}

void PagedKvCache::Truncate(int n) {
  if (n < 0 || n > n_tokens_)
    throw Error(fmt::format("KV cache: cannot truncate {} tokens to {}", n_tokens_, n));
  // Sliding-window layers have freed what their window no longer sees; rewinding further than
  // that would need those tokens again.
  for (const Layer& L : layers_) {
    const int W = L.geom.sliding_window;
    if (W == 0 || n == 0) continue;
    const int first_needed = std::max(0, n - W + 1);
    const auto& blocks = L.k.main[0];
    for (int b = first_needed / kBlockTokens; b * kBlockTokens < n && b < int(blocks.size()); ++b)
      if (blocks[b] == kNoBlock)
        throw Error(fmt::format("KV cache: cannot rewind to {} tokens: a sliding-window layer "
                                "(window {}) has already dropped tokens from position {}",
                                n, W, b * kBlockTokens));
  }
  for (Layer& L : layers_) TruncateLayer(L, n);
  n_tokens_ = n;
}

// A cache truncated to n must hold what an uninterrupted run holds at length n: no compressed
// block cut in the middle (its tokens cannot be stored again exactly), and no block compressed
// that the run would still hold raw (block b is compressed from length end_b + recent on).
int PagedKvCache::LosslessTruncationPoint(int n) const {
  n = std::clamp(n, 0, n_tokens_);
  const int R = config_.recent_tokens;
  // The largest such point <= n for one layer.
  auto largest_exact = [&](const Layer& L, int m) {
    const int rel = m - L.sinks;
    if (rel <= 0 || L.n_comp == 0) return m;
    const int full = rel / kBlockTokens;  // main blocks entirely below m
    if (full >= L.n_comp) {               // every compressed block kept
      if (L.sinks + L.n_comp * kBlockTokens + R <= m) return m;
      return R == 0 ? m : std::min(m, L.sinks);
    }
    if (R > 0) return L.sinks;  // some compressed block would be kept too early
    return L.sinks + full * kBlockTokens;  // a block boundary (m itself when rel % 64 == 0)
  };
  // Layers whose blocks start at different offsets (sinks on global layers, none on window
  // layers) can each move the point down, so repeat until no layer does.
  for (bool moved = true; moved;) {
    moved = false;
    for (const Layer& L : layers_) {
      const int m = largest_exact(L, n);
      if (m != n) {
        n = m;
        moved = true;
      }
    }
  }
  return n;
}

KvMemoryStats PagedKvCache::MemoryStats() const {
  KvMemoryStats s;
  for (const Layer& L : layers_) {
    for (const Tensor* t : {&L.k, &L.v}) {
      for (size_t h = 0; h < t->raw_pool.size(); ++h) {
        s.bytes_allocated += t->raw_pool[h]->bytes_allocated();
        if (t->comp_pool[h] != t->raw_pool[h]) s.bytes_allocated += t->comp_pool[h]->bytes_allocated();
      }
    }
  }
  for (const Layer& L : layers_) {
    const LayerGeometry& g = L.geom;
    const int T = n_tokens_;
    // Tokens actually held: sinks, then main blocks (freed window blocks hold none).
    size_t used = 0;
    int held = 0;
    for (const Tensor* t : {&L.k, &L.v}) {
      const double raw_per_tok = double(t->raw->block_bytes()) / kBlockTokens;
      const double comp_per_tok = double(t->comp->block_bytes()) / kBlockTokens;
      const int n_sink = std::min(T, L.sinks);
      double bytes = n_sink * raw_per_tok;
      held = n_sink;
      const auto& blocks = t->main[0];
      for (size_t b = 0; b < blocks.size(); ++b) {
        const int first = L.sinks + int(b) * kBlockTokens;
        const int cnt = std::clamp(T - first, 0, kBlockTokens);
        if (blocks[b] == kNoBlock || cnt == 0) continue;
        bytes += cnt * (int(b) < L.n_comp ? comp_per_tok : raw_per_tok);
        held += cnt;
      }
      used += size_t(std::llround(bytes * g.n_kv_heads));
    }
    s.bytes_used += used;
    s.bytes_f16 += size_t(held) * g.n_kv_heads * g.head_dim * 2 * 2;
  }
  return s;
}

}  // namespace tqlm::kv
