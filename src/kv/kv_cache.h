// The KV cache as the model sees it: per layer, append the new tokens' K and V, then attend.
// Attention lives behind this interface because each storage type (f16, q8_0, TurboQuant …)
// has its own fused kernel: the model never sees how K/V are stored.
//
// Call pattern of one forward step over n new tokens (prefill chunk or one decode token):
//   for each layer: Append(layer, k, v, n); Attend(layer, q, n, out, pool);
//   then Commit(n) once: the sequence is now n tokens longer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace tqlm::kernels {
class ThreadPool;
}

namespace tqlm::kv {

// A storage type for K or V, named as on the command line (llama.cpp's names plus ours):
// f32, f16, q8_0, q4_0, tq2, tq2.5, tq3, tq3.5, tq4, tq8, and tqBp (TurboQuant-prod).
struct KvType {
  enum class Kind { kF32, kF16, kQ8_0, kQ4_0, kTurbo };
  Kind kind = Kind::kF16;
  double bits = 16;   // bits per coordinate of the quantized part (kTurbo); informative otherwise
  bool prod = false;  // kTurbo only: QJL residual variant
  static KvType Parse(const std::string& name);  // throws tqlm::Error on unknown names
  std::string Name() const;
};

struct LayerGeometry {
  int n_heads = 0;
  int n_kv_heads = 0;
  int head_dim = 0;
  int sliding_window = 0;  // 0: global layer; else keep only the last `sliding_window` tokens
};

struct KvCacheConfig {
  std::vector<LayerGeometry> layers;
  std::vector<KvType> k_types, v_types;  // per layer (profiles resolved by the caller)
  float attn_scale = 0;                   // multiplies q·k (usually 1/sqrt(head_dim))
  int max_tokens = 4096;                  // context limit
  int sink_tokens = 0;                    // first N tokens kept full precision
  int recent_tokens = 0;                  // most recent N tokens kept full precision
};

struct KvMemoryStats {
  size_t bytes_allocated = 0;  // what the cache holds from the allocator now (whole blocks)
  size_t bytes_used = 0;       // bytes occupied by cached tokens (per-token share of blocks)
  size_t bytes_f16 = 0;        // the same tokens stored as plain f16 K and V
};

class KvCache {
 public:
  static std::unique_ptr<KvCache> Create(const KvCacheConfig& config);
  virtual ~KvCache() = default;

  // Tokens committed so far (the sequence length before the current step).
  virtual int n_tokens() const = 0;

  // K (after RoPE) and V of n new tokens, each [n][n_kv_heads][head_dim] floats.
  virtual void Append(int layer, const float* k, const float* v, int n) = 0;

  // Causal attention for the n queries of the current step, q = [n][n_heads][head_dim],
  // query i at position n_tokens() + i; writes out with the same shape.
  virtual void Attend(int layer, const float* q, int n, float* out,
                      kernels::ThreadPool& pool) = 0;

  // Ends the step: the n appended tokens become part of the sequence.
  virtual void Commit(int n) = 0;

  // Drops tokens from position n on (n <= n_tokens()), e.g. to rewind a chat turn.
  virtual void Truncate(int n) = 0;

  virtual KvMemoryStats MemoryStats() const = 0;

  // The largest m <= n such that Truncate(m) keeps every remaining token exactly as stored
  // (cutting a compressed block in the middle re-stores its tokens as their decoded values, and
  // they are quantized a second time when the block is compressed again). Prefix reuse rounds
  // down to this point and recomputes the few tokens after it.
  virtual int LosslessTruncationPoint(int n) const { return n; }

  // An independent copy of the whole cache (e.g. to fork a sequence that shares a prompt).
  // The default throws tqlm::Error; the paged cache implements it.
  virtual std::unique_ptr<KvCache> Clone() const;
};

}  // namespace tqlm::kv
