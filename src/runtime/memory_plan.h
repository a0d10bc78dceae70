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

// Bytes of K and V per cached token summed over layers when every token is stored in `types`
// (rounded up to whole blocks at `ctx`), and the same at full precision.
MemoryEstimate EstimateMemory(const model::ModelInfo& info, const KvPolicy& policy, int ctx,
                              int batch);

// Candidate configurations from most to least precise (the order `tqlm plan` tries them).
std::vector<KvPolicy> PlanCandidates(const KvPolicy& base);

// Largest context (≤ limit) whose estimate fits in `budget` bytes; 0 if none.
int MaxContextThatFits(const model::ModelInfo& info, const KvPolicy& policy, size_t budget,
                       int batch, int limit);

}  // namespace tqlm::runtime
