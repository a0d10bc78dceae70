// How much memory a model plus its KV cache needs at a given context, computed from the block
// layouts the cache really allocates, and the search `tqlm plan` runs over KV configurations.
#pragma once

#include <string>
#include <vector>

#include "model/model.h"
#include "runtime/kv_policy.h"

namespace tqlm::runtime {

struct MemoryEstimate {
  size_t weights = 0;        // mapped tensor bytes
  size_t kv_compressed = 0;  // compressed blocks
  size_t kv_full = 0;        // sinks + recent buffer at full precision
  size_t kv_f16 = 0;         // the same context as plain f16 K and V
  size_t activations = 0;    // one prefill chunk's scratch and the logits
  size_t total() const { return weights + kv_compressed + kv_full + activations; }
};

// Which cache is planned: the CPU's paged cache, or the CUDA backend's (kv on the GPU: the f16
// cache, or the compressed one, which keeps every full block's compressed copy, raw rows for
// the sinks and a ring for the recent buffer and the prefill chunk, and every token of
// sliding-window layers; plus the attention workspace of a prefill chunk).
enum class PlanDevice { kCpu, kCuda };

// Bytes of K and V per cached token summed over layers when every token is stored in `types`
// (rounded up to whole blocks at `ctx`), and the same at full precision.
MemoryEstimate EstimateMemory(const model::ModelInfo& info, const KvPolicy& policy, int ctx,
                              int batch, PlanDevice device = PlanDevice::kCpu);

// Whether the GPU cache takes every layer's K and V type of `policy` (f16 and the TurboQuant
// types tq2..tq4, tq2.5, tq3.5, tq8; not q8_0, q4_0, f32 or tqBp).
bool GpuTakesKv(const model::ModelInfo& info, const KvPolicy& policy);

// Candidate configurations from most to least precise (the order `tqlm plan` tries them).
std::vector<KvPolicy> PlanCandidates(const KvPolicy& base);

// Largest context (≤ limit) whose estimate fits in `budget` bytes; 0 if none.
int MaxContextThatFits(const model::ModelInfo& info, const KvPolicy& policy, size_t budget,
                       int batch, int limit, PlanDevice device = PlanDevice::kCpu);

}  // namespace tqlm::runtime
