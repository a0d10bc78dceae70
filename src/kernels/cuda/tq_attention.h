// CUDA kernels for a TurboQuant-compressed, paged KV cache: append/encode of new K/V vectors and
// fused decode attention for a batch of sequences of different lengths (layout: paged_layout.h).
//
// Math (the codec's, see include/tqlm/codec.h): a vector x is stored as the fp16 norm |x| and, per
// coordinate of the rotated unit vector u = R x / |x|, the index of its Lloyd–Max level (decision
// thresholds of the codec's codebook). Decoding gives x̂ = |x| R^T levels[idx]. The GPU takes R as a
// dense matrix (rows of Rotate(e_i)), so any orthogonal rotation of the codec works unchanged.
//
// Attention works in the rotated domain: q_r = R_k q, scores q_r · (|k| levels[idx_k]), values
// accumulated as Σ p |v| levels[idx_v], and one inverse rotation R_v^T per output head at the end.
// Per sequence, tokens [0, sink) and the last `recent` tokens are kept in fp16 (rotated) and are
// attended in the same launch as the compressed pages; every non-sink token is also encoded into
// its page when appended, so the recent window needs no eviction step.
//
// Precision: tensor cores take fp16 operands and accumulate in fp32. Codebook levels are scaled by
// a per-side factor alpha (undone in fp32) chosen so that alpha * level is almost exactly
// representable in fp16 (ChooseAlpha), which keeps the codebook the codec's to ~1e-5.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "kernels/cuda/paged_layout.h"

namespace tqlm::cuda {

// One side (K or V) of the cache: an fp16 side (bits = 16) or a b-bit codebook (b = 1..4).
struct SideTables {
  int bits = kF16Bits;
  std::vector<float> levels;      // 2^bits, ascending (the codec's codebook)
  std::vector<float> thresholds;  // 2^bits - 1, ascending: idx = #{t : t < u}
  float alpha = 1;                // fp16 scale of the levels (ChooseAlpha)
};

struct CodecTables {
  int dim = 128;
  std::vector<float> rot_k, rot_v;  // dim x dim row-major, y = R x (orthogonal)
  SideTables k, v;
};

// Picks alpha in [1, 2) minimising the largest relative fp16 rounding error of alpha * level.
float ChooseAlpha(const std::vector<float>& levels);
// Largest relative error of fp16(alpha * level) / alpha against level (for reports).
double LevelRoundingError(const SideTables& side);
// Pair table: entry c = fp16x2(alpha * levels[c & m], alpha * levels[c >> b]), m = 2^b - 1.
std::vector<uint32_t> PairTable(const SideTables& side);
// Fills alpha of both sides; throws tqlm::Error for bit widths the GPU does not support.
void FinishTables(CodecTables* tables);

// Device copies of the tables (owned; freed by the destructor).
class DeviceTables {
 public:
  explicit DeviceTables(const CodecTables& tables);
  ~DeviceTables();
  DeviceTables(const DeviceTables&) = delete;
  DeviceTables& operator=(const DeviceTables&) = delete;

  int dim = 0, k_bits = 0, v_bits = 0;
  float k_alpha = 1, v_alpha = 1;
  bool k_identity = false, v_identity = false;  // rotation is exactly I: its launch/loop skipped
  float* rot_k_t = nullptr;  // R_k^T (for y = R_k x with coalesced reads)
  float* rot_v_t = nullptr;  // R_v^T
  float* rot_v = nullptr;    // R_v (inverse rotation of the output)
  float* thr_k = nullptr;
  float* thr_v = nullptr;
  uint32_t* lut_k = nullptr;
  uint32_t* lut_v = nullptr;
};

// Geometry and device memory of a paged cache for a batch of sequences (all device pointers).
struct CacheView {
  int batch = 0, n_heads = 0, n_kv_heads = 0, dim = 0;
  int k_bits = kF16Bits, v_bits = kF16Bits;
  uint8_t* pages = nullptr;          // page pool, PageBytes(dim, k_bits, v_bits) per (page, head)
  const int32_t* block_table = nullptr;  // [batch][max_chunks]: page of compressed chunk c
  int max_chunks = 0;
  int sink_tokens = 0, recent_tokens = 0;
  uint8_t* f16_region = nullptr;     // [batch][F16Chunks()][n_kv_heads] fp16 pages (sinks, ring)
  int SinkChunks() const { return (sink_tokens + kChunkTokens - 1) / kChunkTokens; }
  int F16Chunks() const {
    return SinkChunks() + (recent_tokens + kChunkTokens - 1) / kChunkTokens;
  }
  size_t PageBytes() const { return tqlm::cuda::PageBytes(dim, k_bits, v_bits); }
  size_t F16PageBytes() const { return tqlm::cuda::PageBytes(dim, kF16Bits, kF16Bits); }
};

// Appends n tokens: token i of sequence seq[i] at position pos[i], k/v = [n][n_kv_heads][dim]
// floats; seq_lens[b] = length of sequence b after this append (decides which tokens are among
// the last `recent_tokens`). Writes sinks / recent ring (fp16, rotated) and, for every non-sink
// token, its compressed (or fp16) page; the pages of the chunks it touches must exist in the
// block table and have been zero-filled when allocated.
void LaunchAppend(const CacheView& cache, const DeviceTables& tables, int n, const int32_t* seq,
                  const int32_t* pos, const int32_t* seq_lens, const float* k, const float* v,
                  void* stream);

// Workspace for LaunchAttend, sized by AttendWorkspaceBytes.
struct AttendPlan {
  int chunks_per_split = 0;  // compressed chunks per work item
  int n_splits = 0;          // per (sequence, kv head), the last one is the fp16 region
  int grid = 0;              // persistent blocks
  // > 0: pages are bulk-prefetched into L2 ahead of their loads (sm_90): compressed pages two
  // steps ahead, fp16 pages l2_prefetch (1 or 2) steps ahead; 0: off.
  int l2_prefetch = 1;
  // 1: the last block to finish a (sequence, KV head) merges its splits and rotates back inside
  // the attention launch (a counter per (sequence, KV head) that resets itself); 0: a separate
  // merge launch (kept for comparison).
  int fused_merge = 1;
  // 1: programmatic dependent launch (sm_90): a launch may start (and fill its tables) while
  // the previous kernel of the stream finishes; it waits for it before touching its data.
  int pdl = 1;
  // fp16/fp16 caches, head dim <= 128, sm_90: 2 or 3 = each warp stages that many pages in
  // shared memory by bulk async copies (one block per SM); 0: pages loaded into registers.
  int f16_stages = 0;
};
// force_splits > 0: that split count (at most one split per 8 chunks), not the planner's choice
// (for measurements).
AttendPlan PlanAttend(const CacheView& cache, int max_seq_len, int sm_count, int force_splits = 0);
// The workspace must be zero-filled once after allocation: it starts with one merge counter per
// (sequence, KV head), which every launch leaves at zero again. It may be reused by any plan for
// the same batch size and KV heads whose AttendWorkspaceBytes it covers.
size_t AttendWorkspaceBytes(const CacheView& cache, const AttendPlan& plan);

// One decode step: q = [batch][n_heads][dim] floats, seq_lens[b] = tokens of sequence b (all
// appended already), out = [batch][n_heads][dim] floats. Launches: query rotation (none when R_k
// is the identity), then split attention with the merge + inverse rotation fused into it (or a
// separate merge launch when plan.fused_merge is 0).
void LaunchAttend(const CacheView& cache, const DeviceTables& tables, const AttendPlan& plan,
                  const float* q, const int32_t* seq_lens, float attn_scale, float* out,
                  void* workspace, void* stream);

}  // namespace tqlm::cuda
