// Host-side entry points of the CUDA backend's TurboQuant KV cache kernels (tq_kv_encode.cu,
// attention_tq.cu), used by CudaTqKvCache (cuda_tq_kv_cache.h).
//
// Storage (per sequence, layer and tensor K or V):
//   * raw rows in fp16, [S + ring][n_kv_heads][dim]: the sinks [0, S) at rows [0, S), main
//     position p >= S at row S + (p - S) % ring. A TurboQuant tensor keeps its raw rows in the
//     codec's rotated basis (R x, then rounded to fp16), an f16 tensor as they are; its ring
//     then covers every position (it is never compressed). A TurboQuant tensor has a second
//     plane of the same shape right after the first (tq_layout.h SourcePlane): the input rows
//     rounded to fp16, unrotated, which the block encoder rotates (the CPU's encoder input).
//   * compressed blocks, main block b (positions [S + 64 b, S + 64 b + 64)) of KV head h at
//     (b * n_kv_heads + h) * block_stride: the CPU cache's bytes exactly (block_format_turbo.cc:
//     codes in units, fp16 norms, the rotated fp16 key center), so that a block is checked
//     against the CPU's decoder and both caches agree on what a block means.
// A query at position p sees main block b compressed exactly when p >= end_b + recent (the CPU
// rule, paged_kv_cache.h), and raw otherwise; blocks are encoded on the GPU as soon as their
// 64 tokens are written, from the fp16 raw rows.
#pragma once

#include <cstddef>
#include <cstdint>

namespace tqlm::cuda_backend {

inline constexpr int kTqBlockTokens = 64;  // tokens per block (kv::kBlockTokens)

// One TurboQuant tensor format (K or V) as the kernels read it. Device pointers.
struct TqFormat {
  int dim = 0;
  int n_hi = 0, hi_bits = 0, lo_bits = 0;  // coordinates [0, n_hi) hi_bits, the rest lo_bits
  int k_row_bytes = 0;      // keys: bytes of one 16-token row of units
  int norms_offset = 0;     // 64 fp16 norms
  int center_offset = 0;    // keys: dim fp16 center coordinates (rotated), if centered
  int block_bytes = 0;      // as on the CPU
  int block_stride = 0;     // block_bytes rounded up to 16 (device spacing of blocks)
  int centered = 0;         // keys: blocks may store a center
  int key = 0;              // 1: key layout, 0: value layout
  const float* levels_hi = nullptr;  // 2^hi_bits
  const float* levels_lo = nullptr;
  const float* thr_hi = nullptr;     // 2^hi_bits - 1
  const float* thr_lo = nullptr;
  const float* rot_t = nullptr;      // R^T, dim x dim row-major (y = R x reads it coalesced)
  const float* rot = nullptr;        // R (x = R^T y)
};

// One sequence's buffers of one layer.
struct TqKvLayer {
  uint16_t* raw_k = nullptr;
  uint16_t* raw_v = nullptr;
  uint8_t* comp_k = nullptr;  // null for an f16 tensor
  uint8_t* comp_v = nullptr;
  int ring_k = 0, ring_v = 0;  // tokens of the main region's raw ring (multiple of 64)
};

// A step's tokens: token t belongs to sequence tok_seq[t] (tables seq_tables[s], one entry per
// layer) at position tok_pos[t].
struct TqStepView {
  const TqKvLayer* const* seq_tables = nullptr;
  const int32_t* tok_seq = nullptr;
  const int32_t* tok_pos = nullptr;
  int n = 0;
  int layer = 0;
};

// Layer constants shared by every sequence of a step.
struct TqLayerParams {
  int n_heads = 0, n_kv_heads = 0, dim = 0;
  int sinks = 0;         // S (0 on sliding-window layers and uncompressed layers)
  int recent = 0;        // R
  int window = 0;        // > 0: keys in (p - window, p] only
  int k_comp = 0, v_comp = 0;  // tensor is TurboQuant (rotated raw rows, compressed blocks)
  TqFormat kf, vf;       // formats of the compressed tensors
};

// Raw rows of the step's n tokens: k, v = [n][n_kv_heads][dim] floats, rotated where the
// tensor is TurboQuant, stored as fp16. With q_rot (keys TurboQuant), the same launch also
// writes the step's queries q ([n][n_heads][dim]) rotated by R_k to q_rot (the attention's
// input when TqAttendArgs::q_rotated).
void LaunchTqAppendRaw(const TqStepView& step, const TqLayerParams& p, const float* k,
                       const float* v, void* stream, const float* q = nullptr,
                       float* q_rot = nullptr);

// Encodes main blocks [b0, b0 + nb) of one sequence's layer (every KV head, every TurboQuant
// tensor) from its raw rows. `layer` is a host copy of the sequence's layer entry.
void LaunchTqEncodeBlocks(const TqKvLayer& layer, const TqLayerParams& p, int b0, int nb,
                          void* stream);

// The inverse, for a cache cut inside a block whose raw rows were dropped: main blocks
// [b0, b0 + nb) decoded (rotated basis, fp16) into their raw ring rows.
void LaunchTqDecodeBlocks(const TqKvLayer& layer, const TqLayerParams& p, int b0, int nb,
                          void* stream);

// Attention of the step's n queries ([n][n_heads][dim] floats) over their sequences' caches.
struct TqAttendArgs {
  TqStepView step;
  TqLayerParams p;
  bool one_sequence = true;  // every token belongs to sequence 0 (a prefill chunk)
  int max_pos = 0;           // the largest tok_pos + 1
  float scale = 1;
  const float* q = nullptr;
  bool q_rotated = false;      // q is already in the keys' rotated basis (LaunchTqAppendRaw)
  float* out = nullptr;
  float* workspace = nullptr;  // TqAttendWorkspaceFloats floats; rotated queries first
};
// Where LaunchTqAttend keeps the rotated queries: the workspace's first floats.
inline float* TqRotatedQueries(float* workspace) { return workspace; }
size_t TqAttendWorkspaceFloats(int n, const TqLayerParams& p, int max_pos);
void LaunchTqAttend(const TqAttendArgs& args, void* stream);

}  // namespace tqlm::cuda_backend
