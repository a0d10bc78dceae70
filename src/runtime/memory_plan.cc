#include "runtime/memory_plan.h"

#include <algorithm>

#include "kv/block_format.h"

namespace tqlm::runtime {
namespace {

// Bytes of `tokens` tokens of one KV head in `type` for one tensor role (the per-token share
// of its block layout, as the cache accounts used bytes).
size_t TensorBytes(const kv::KvType& type, int head_dim, kv::TensorRole role, int tokens) {
  const size_t block = kv::MakeBlockFormat(type, head_dim, role)->block_bytes();
  return size_t(tokens) * block / kv::kBlockTokens;
}

bool GpuType(const kv::KvType& t) {
  return t.kind == kv::KvType::Kind::kF16 ||
         (t.kind == kv::KvType::Kind::kTurbo && !t.prod && (t.bits <= 4 || t.bits == 8));
}

// The GPU cache (backend/cuda/cuda_tq_kv_cache.h): per layer and tensor, a TurboQuant tensor
// holds the compressed copy of every full main block and raw fp16 rows for the sinks and a
// ring (a power of two of blocks covering the recent buffer, a prefill chunk and the block
// being filled); an f16 tensor holds raw rows for every token. Window layers keep every token.
void AddGpuLayer(const kv::LayerGeometry& g, const kv::KvType& kt, const kv::KvType& vt,
                 const ResolvedKv& kv, int ctx, int batch, MemoryEstimate* m) {
  const bool comp_layer = kv::IsCompressed(kt) || kv::IsCompressed(vt);
  const int sinks = comp_layer && g.sliding_window == 0 ? std::min(ctx, kv.sink_tokens) : 0;
  // Compressed blocks are allocated for every block the context touches.
  const int full_blocks = (ctx - sinks + kv::kBlockTokens - 1) / kv::kBlockTokens;
  int ring = 1;
  while (ring < (batch + kv.recent_tokens) / kv::kBlockTokens + 2) ring *= 2;
  const int ring_tokens = std::min(ring * kv::kBlockTokens, ctx - sinks + kv::kBlockTokens);
  for (auto [type, role] : {std::pair{kt, kv::TensorRole::kKey}, std::pair{vt, kv::TensorRole::kValue}}) {
    if (kv::IsCompressed(type)) {
      m->kv_compressed += size_t(g.n_kv_heads) *
                          TensorBytes(type, g.head_dim, role, full_blocks * kv::kBlockTokens);
      m->kv_full += size_t(sinks + ring_tokens) * g.n_kv_heads * g.head_dim * 2;
    } else {
      m->kv_full += size_t(ctx) * g.n_kv_heads * g.head_dim * 2;
    }
  }
  m->kv_f16 += size_t(ctx) * g.n_kv_heads * g.head_dim * 2 * 2;
}

}  // namespace

bool GpuTakesKv(const model::ModelInfo& info, const KvPolicy& policy) {
  const ResolvedKv kv = ResolveKvPolicy(policy, info.layers, 0);
  for (size_t l = 0; l < kv.k_types.size(); ++l)
    if (!GpuType(kv.k_types[l]) || !GpuType(kv.v_types[l])) return false;
  return true;
}

MemoryEstimate EstimateMemory(const model::ModelInfo& info, const KvPolicy& policy, int ctx,
                              int batch, PlanDevice device) {
  MemoryEstimate m;
  m.weights = info.weight_bytes;
  const ResolvedKv kv = ResolveKvPolicy(policy, info.layers, ctx);
  for (int l = 0; l < info.n_layer; ++l) {
    const kv::LayerGeometry& g = info.layers[l];
    if (device == PlanDevice::kCuda) {
      AddGpuLayer(g, kv.k_types[l], kv.v_types[l], kv, ctx, batch, &m);
      continue;
    }
    const int held = g.sliding_window > 0 ? std::min(ctx, g.sliding_window) : ctx;
    // The cache compresses whole blocks of 64 tokens once `recent_tokens` newer tokens follow
    // them, so between recent and recent + 63 tokens after the sinks stay full precision.
    const int sinks = std::min(held, kv.sink_tokens);
    const int main = held - sinks;
    const int comp = std::max(0, main - kv.recent_tokens) / kv::kBlockTokens * kv::kBlockTokens;
    for (auto [type, role] : {std::pair{kv.k_types[l], kv::TensorRole::kKey},
                              std::pair{kv.v_types[l], kv::TensorRole::kValue}}) {
      const bool compressed = kv::IsCompressed(type);
      const kv::KvType raw = kv::RawTypeFor(type);
      const int comp_tokens = compressed ? comp : 0;
      m.kv_compressed += g.n_kv_heads * TensorBytes(type, g.head_dim, role, comp_tokens);
      m.kv_full += g.n_kv_heads * TensorBytes(raw, g.head_dim, role, held - comp_tokens);
    }
    m.kv_f16 += size_t(held) * g.n_kv_heads * g.head_dim * 2 * 2;
  }
  // Prefill scratch of one chunk: residual, normed input, q/k/v, attention output, FFN gate/up
  // (floats), plus the 8-bit copy of the widest activation and one row of logits.
  const auto& g0 = info.layers.empty() ? kv::LayerGeometry{} : info.layers[0];
  const size_t qd = size_t(g0.n_heads) * g0.head_dim, kvd = size_t(g0.n_kv_heads) * g0.head_dim;
  const size_t ff = size_t(info.n_ff);
  m.activations = size_t(batch) * 4 * (2 * info.n_embd + 2 * qd + 2 * kvd + 2 * ff) +
                  size_t(batch) * ff + size_t(info.n_vocab) * 4;
  // The GPU attention's workspace for a prefill chunk: per query row and split of 256 keys,
  // dim + 2 floats (plus the rotated queries).
  if (device == PlanDevice::kCuda)
    m.activations += size_t(batch) * g0.n_heads * (size_t(ctx) / 256 + 2) * (g0.head_dim + 2) * 4 +
                     size_t(batch) * qd * 4;
  return m;
}

std::vector<KvPolicy> PlanCandidates(const KvPolicy& base) {
  const char* pairs[][2] = {{"f16", "f16"},   {"q8_0", "q8_0"}, {"tq8", "tq8"},
                            {"tq4", "tq4"},   {"tq4", "tq3.5"}, {"tq4", "tq3"},
                            {"tq3.5", "tq3"}, {"tq3", "tq3"},   {"tq3", "tq2.5"},
                            {"tq2.5", "tq2"}, {"tq2", "tq2"}};
  std::vector<KvPolicy> out;
  for (const auto& p : pairs) {
    KvPolicy c = base;
    c.k_type = p[0];
    c.v_type = p[1];
    out.push_back(c);
  }
  return out;
}

int MaxContextThatFits(const model::ModelInfo& info, const KvPolicy& policy, size_t budget,
                       int batch, int limit, PlanDevice device) {
  int lo = 0, hi = limit;
  while (lo < hi) {  // largest ctx with total() <= budget (monotone in ctx)
    const int mid = lo + (hi - lo + 1) / 2;
    if (EstimateMemory(info, policy, mid, batch, device).total() <= budget) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

}  // namespace tqlm::runtime
