// How one KV storage type lays out a block of kBlockTokens tokens of one KV head, and the
// attention kernels that read that layout. The cache (kv_cache.cc) only moves blocks around;
// everything that depends on the bytes inside a block is behind this interface.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "kernels/cpu/prefetch.h"
#include "kv/kv_cache.h"
#include "tqlm/codec.h"

namespace tqlm::kv {

inline constexpr int kBlockTokens = 64;

// K blocks are read by Scores, V blocks by Accumulate; some layouts differ between the two.
enum class TensorRole { kKey, kValue };

// Queries of one KV head (a tile of rows), prepared once for a K format.
struct PreparedQueries {
  int nq = 0;
  int dim = 0;
  std::vector<float> f32;      // [nq][dim] queries times the attention scale
  // TurboQuant: rotated queries quantized to int8 (one scale per row) and their code sums.
  std::vector<int8_t> i8;      // [nq][dim]
  std::vector<float> i8_scale; // [nq]: (row scale) x (codebook scale)
  std::vector<int32_t> i8_sum; // [nq]: sum of the row's int8 values
  std::vector<codec::PreparedQuery> codec;  // codec per-vector formats: one per row
};

// Per-thread scratch the kernels may use (dequantized rows and the like).
struct KernelScratch {
  std::vector<float> rows;
  std::vector<uint8_t> bytes;
  // The block the caller reads next (K before Scores, V before Accumulate): kernels that can
  // prefetch it while they compute do.
  kernels::PrefetchRange next;
};

class BlockFormat {
 public:
  virtual ~BlockFormat() = default;

  int dim() const { return dim_; }
  // Bytes of one block (kBlockTokens tokens of one KV head), exactly as allocated.
  size_t block_bytes() const { return block_bytes_; }
  // True when Accumulate sums values in the codec's rotated basis; FinishAccumulator maps the
  // (already merged) accumulator back.
  bool rotated() const { return rotated_; }
  // True when tokens can be written one run at a time into a partly filled block; compressed
  // formats take whole blocks only (first = 0, n = kBlockTokens).
  bool partial_writes() const { return partial_writes_; }

  // Tokens [first, first + n) of the block from n rows of dim floats, row i at rows + i*stride.
  virtual void Encode(const float* rows, size_t stride, int first, int n, uint8_t* block) const = 0;
  // Tokens [first, first + n) of the block as n contiguous rows of dim floats.
  virtual void Decode(const uint8_t* block, int first, int n, float* rows) const = 0;

  // q: nq rows of dim floats, already multiplied by the attention scale.
  virtual void PrepareQueries(const float* q, int nq, PreparedQueries* out) const;
  // scores[i * stride + t] = q_i . k_t for the block's first n_tok tokens.
  virtual void Scores(const PreparedQueries& q, const uint8_t* block, int n_tok, float* scores,
                      int stride, KernelScratch& scratch) const = 0;
  // acc[i * dim + j] += sum_t p[i * stride + t] * v_t[j] (in the rotated basis if rotated()).
  virtual void Accumulate(const float* p, int nq, int stride, const uint8_t* block, int n_tok,
                          float* acc, KernelScratch& scratch) const = 0;
  virtual void FinishAccumulator(float* /*acc*/, int /*nq*/) const {}

 protected:
  int dim_ = 0;
  size_t block_bytes_ = 0;
  bool rotated_ = false;
  bool partial_writes_ = false;
};

// The layout of `type` at head_dim for K or V. RawTypeFor is the full-precision type a cache
// of `type` uses for sinks and the recent buffer (f32 for f32, f16 for everything else).
std::unique_ptr<BlockFormat> MakeBlockFormat(const KvType& type, int head_dim, TensorRole role);
KvType RawTypeFor(const KvType& type);
// TurboQuant key blocks of at most 4 bits are stored around their mean when that keeps the keys
// apart better (block_format_turbo.cc). TQLM_KV_NO_CENTER=1 turns this off, for A/B
// measurements of the effect (evaluation rows record the setting).
bool KeyCenteringEnabled();
// Whether tokens of this type are encoded when they leave the recent buffer.
inline bool IsCompressed(const KvType& t) {
  return t.kind != KvType::Kind::kF32 && t.kind != KvType::Kind::kF16;
}

}  // namespace tqlm::kv
