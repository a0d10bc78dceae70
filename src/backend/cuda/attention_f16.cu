// Attention over an f16 KV cache on tensor cores, one kernel for prefill and decode alike
// (flash-attention style, with split keys as in flash-decoding).
//
// Rows of the problem are (token, query head of the KV head's group) pairs; a block takes 64
// rows of one sequence (16 per warp), one KV head and one split of kAttnSplit keys at absolute
// positions [256 s, 256 s + 256), walks the split's key tiles of 64 in ascending order with an
// online softmax (scores in base 2), and writes unnormalized partial results; a merge kernel
// combines each row's non-empty splits in ascending order.
//
// Determinism: every row's arithmetic depends only on its own query, its sequence's keys and
// values and its position: mma computes each output element from its own row and column, a
// masked key leaves a row's state bit-identical (its score is -inf and the running max starts
// finite), and split boundaries are absolute. So batch composition and prefill chunking do not
// change a token's attention output.
#include <cuda_fp16.h>

#include <string>

#include "backend/cuda/kernels.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/ptx_ops.cuh"

namespace tqlm::cuda_backend {
namespace {

namespace ptx = ::tqlm::cuda::ptx;

constexpr int kThreads = 128;
constexpr int kRowsPerBlock = 64;
constexpr int kKeyTile = 64;
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kNoMax = -1e30f;  // a row's running max before any key: finite (see above)

__global__ void F16AppendKernel(F16StepView step, int kv_dim, const float* k, const float* v) {
  const int t = blockIdx.x;
  const F16KvLayer L = step.seq_tables[step.tok_seq[t]][step.layer];
  const size_t row = size_t(step.tok_pos[t]) * kv_dim;
  for (int e = threadIdx.x; e < kv_dim; e += blockDim.x) {
    L.k[row + e] = __half_as_ushort(__float2half_rn(k[size_t(t) * kv_dim + e]));
    L.v[row + e] = __half_as_ushort(__float2half_rn(v[size_t(t) * kv_dim + e]));
  }
}

__device__ __forceinline__ int KeyBegin(int pos, int window) {
  return window > 0 ? max(0, pos - window + 1) : 0;
}

__device__ __forceinline__ float* PartialAt(float* partial, int n_splits, int dim, int t,
                                            int head, int n_heads, int split) {
  return partial + ((size_t(t) * n_heads + head) * n_splits + split) * (dim + 2);
}

__device__ __forceinline__ uint32_t Ld32(const __half* p) {
  return *reinterpret_cast<const uint32_t*>(p);
}

template <int kDim>
struct FlashSmem {
  static constexpr int kStride = kDim + 8;      // halves per Q / K row
  static constexpr int kVStride = kKeyTile + 8; // halves per transposed V row
  __half q[kRowsPerBlock * kStride];
  __half k[kKeyTile * kStride];
  __half vt[kDim * kVStride];
};

template <int kDim>
__global__ void __launch_bounds__(kThreads)
    F16FlashSplitKernel(F16AttendArgs a, int n_splits, int tokens_per_tile) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  using Smem = FlashSmem<kDim>;
  Smem& sm = *reinterpret_cast<Smem*>(smem_raw);
  constexpr int kS = Smem::kStride, kVS = Smem::kVStride;
  const int G = a.n_heads / a.n_kv_heads;
  const int kvh = blockIdx.y, split = blockIdx.z;
  const int t0 = blockIdx.x * tokens_per_tile;
  const int t_end = min(a.step.n, t0 + tokens_per_tile);
  const int n_rows = (t_end - t0) * G;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, gid = lane / 4, tig = lane % 4;

  // The block's key range: the union of its rows' ranges, cut to the split.
  int lo_min = 1 << 30, hi_max = -1;
  for (int t = t0; t < t_end; ++t) {
    const int p = a.step.tok_pos[t];
    lo_min = min(lo_min, KeyBegin(p, a.window));
    hi_max = max(hi_max, p);
  }
  const int k_first = max(split * kAttnSplit, lo_min);
  const int k_last = min(split * kAttnSplit + kAttnSplit - 1, hi_max);
  if (k_first > k_last) return;

  const F16KvLayer L = a.step.seq_tables[a.step.tok_seq[t0]][a.step.layer];
  const size_t row_stride = size_t(a.n_kv_heads) * kDim;
  const __half* kbase = reinterpret_cast<const __half*>(L.k) + size_t(kvh) * kDim;
  const __half* vbase = reinterpret_cast<const __half*>(L.v) + size_t(kvh) * kDim;

  // Queries, scaled into base 2, as halves (zeros for rows past the block's).
  const float qscale = a.scale * kLog2e;
  for (int i = threadIdx.x; i < kRowsPerBlock * kDim / 2; i += kThreads) {
    const int r = i / (kDim / 2), c = (i % (kDim / 2)) * 2;
    float2 f = make_float2(0, 0);
    if (r < n_rows) {
      const int t = t0 + r / G, head = kvh * G + r % G;
      f = *reinterpret_cast<const float2*>(a.q + (size_t(t) * a.n_heads + head) * kDim + c);
    }
    *reinterpret_cast<uint32_t*>(&sm.q[r * kS + c]) = ptx::PackHalf2(f.x * qscale, f.y * qscale);
  }

  // This lane's two rows: their positions and key ranges.
  const int r_lo = warp * 16 + gid, r_hi = r_lo + 8;
  const bool warp_active = warp * 16 < n_rows;
  int p_row[2], lo_row[2];
  for (int h = 0; h < 2; ++h) {
    const int r = h == 0 ? r_lo : r_hi;
    if (r < n_rows) {
      p_row[h] = a.step.tok_pos[t0 + r / G];
      lo_row[h] = KeyBegin(p_row[h], a.window);
    } else {
      p_row[h] = -1;  // no key is visible: the row stays empty
      lo_row[h] = 0;
    }
  }

  constexpr int kDT = kDim / 8;  // output n-tiles of 8 dims
  float o[kDT][4];
#pragma unroll
  for (int d = 0; d < kDT; ++d) o[d][0] = o[d][1] = o[d][2] = o[d][3] = 0;
  float m_row[2] = {kNoMax, kNoMax}, l_row[2] = {0, 0};

  const int tile_first = k_first / kKeyTile * kKeyTile;
  for (int kt0 = tile_first; kt0 <= k_last; kt0 += kKeyTile) {
    __syncthreads();  // the previous tile's reads (and the query staging) are done
    // Stage K rows and V transposed; keys past hi_max (not written yet) as zeros.
    for (int i = threadIdx.x; i < kKeyTile * kDim / 8; i += kThreads) {
      const int j = i / (kDim / 8), c = (i % (kDim / 8)) * 8;
      const int key = kt0 + j;
      uint4 ku = make_uint4(0, 0, 0, 0), vu = make_uint4(0, 0, 0, 0);
      if (key <= hi_max) {
        ku = *reinterpret_cast<const uint4*>(kbase + size_t(key) * row_stride + c);
        vu = *reinterpret_cast<const uint4*>(vbase + size_t(key) * row_stride + c);
      }
      *reinterpret_cast<uint4*>(&sm.k[j * kS + c]) = ku;
      const __half* vh = reinterpret_cast<const __half*>(&vu);
#pragma unroll
      for (int e = 0; e < 8; ++e) sm.vt[(c + e) * kVS + j] = vh[e];
    }
    __syncthreads();
    if (!warp_active) continue;

    // Scores S = Q K^T for the warp's 16 rows x 64 keys.
    float s[8][4];
#pragma unroll
    for (int j = 0; j < 8; ++j) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0;
    const __half* qa = sm.q + (warp * 16 + gid) * kS + 2 * tig;
#pragma unroll
    for (int ks = 0; ks < kDim / 16; ++ks) {
      const uint32_t a0 = Ld32(qa + ks * 16), a1 = Ld32(qa + 8 * kS + ks * 16);
      const uint32_t a2 = Ld32(qa + ks * 16 + 8), a3 = Ld32(qa + 8 * kS + ks * 16 + 8);
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        const __half* kb = sm.k + (j * 8 + gid) * kS + ks * 16 + 2 * tig;
        ptx::Mma16816(s[j], a0, a1, a2, a3, Ld32(kb), Ld32(kb + 8));
      }
    }
    // Mask, then the online softmax per row (the 4 lanes of a quad share a row).
    float tile_max[2] = {kNoMax, kNoMax};
#pragma unroll
    for (int j = 0; j < 8; ++j) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int h = e / 2, key = kt0 + j * 8 + 2 * tig + (e % 2);
        if (key < lo_row[h] || key > p_row[h]) s[j][e] = -INFINITY;
        tile_max[h] = fmaxf(tile_max[h], s[j][e]);
      }
    }
    float corr[2];
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      tile_max[h] = fmaxf(tile_max[h], __shfl_xor_sync(0xffffffffu, tile_max[h], 1));
      tile_max[h] = fmaxf(tile_max[h], __shfl_xor_sync(0xffffffffu, tile_max[h], 2));
      const float m_new = fmaxf(m_row[h], tile_max[h]);
      corr[h] = exp2f(m_row[h] - m_new);
      m_row[h] = m_new;
      l_row[h] *= corr[h];
    }
#pragma unroll
    for (int j = 0; j < 8; ++j) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int h = e / 2;
        s[j][e] = exp2f(s[j][e] - m_row[h]);
        l_row[h] += s[j][e];
      }
    }
#pragma unroll
    for (int d = 0; d < kDT; ++d) {
      o[d][0] *= corr[0];
      o[d][1] *= corr[0];
      o[d][2] *= corr[1];
      o[d][3] *= corr[1];
    }
    // O += P V: P from the score registers (the C layout of S is the A layout of P).
#pragma unroll
    for (int ks = 0; ks < kKeyTile / 16; ++ks) {
      const uint32_t a0 = ptx::PackHalf2(s[2 * ks][0], s[2 * ks][1]);
      const uint32_t a1 = ptx::PackHalf2(s[2 * ks][2], s[2 * ks][3]);
      const uint32_t a2 = ptx::PackHalf2(s[2 * ks + 1][0], s[2 * ks + 1][1]);
      const uint32_t a3 = ptx::PackHalf2(s[2 * ks + 1][2], s[2 * ks + 1][3]);
#pragma unroll
      for (int d = 0; d < kDT; ++d) {
        const __half* vb = sm.vt + (d * 8 + gid) * kVS + ks * 16 + 2 * tig;
        ptx::Mma16816(o[d], a0, a1, a2, a3, Ld32(vb), Ld32(vb + 8));
      }
    }
  }
  if (!warp_active) return;
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    l_row[h] += __shfl_xor_sync(0xffffffffu, l_row[h], 1);
    l_row[h] += __shfl_xor_sync(0xffffffffu, l_row[h], 2);
  }
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int r = h == 0 ? r_lo : r_hi;
    if (r >= n_rows) continue;
    const int t = t0 + r / G, head = kvh * G + r % G;
    float* part = PartialAt(a.partial, n_splits, kDim, t, head, a.n_heads, split);
#pragma unroll
    for (int d = 0; d < kDT; ++d) {
      part[d * 8 + 2 * tig] = o[d][2 * h];
      part[d * 8 + 2 * tig + 1] = o[d][2 * h + 1];
    }
    if (tig == 0) {
      part[kDim] = m_row[h];
      part[kDim + 1] = l_row[h];
    }
  }
}

// One block per (token, head): the row's non-empty splits, merged in ascending order.
__global__ void F16MergeKernel(F16AttendArgs a, int n_splits) {
  const int t = blockIdx.x, head = blockIdx.y, dim = a.head_dim;
  const int pos = a.step.tok_pos[t];
  const int first = KeyBegin(pos, a.window) / kAttnSplit, last = pos / kAttnSplit;
  float m = kNoMax;
  for (int s = first; s <= last; ++s)
    m = fmaxf(m, PartialAt(a.partial, n_splits, dim, t, head, a.n_heads, s)[dim]);
  float* out = a.out + (size_t(t) * a.n_heads + head) * dim;
  for (int d = threadIdx.x; d < dim; d += blockDim.x) {
    float acc = 0, l = 0;
    for (int s = first; s <= last; ++s) {
      const float* part = PartialAt(a.partial, n_splits, dim, t, head, a.n_heads, s);
      const float w = exp2f(part[dim] - m);
      acc = fmaf(w, part[d], acc);
      l = fmaf(w, part[dim + 1], l);
    }
    out[d] = acc / l;
  }
}

int Splits(int max_pos) { return (max_pos + kAttnSplit - 1) / kAttnSplit; }

template <int kDim>
void LaunchFlash(const F16AttendArgs& a, int n_splits, cudaStream_t s) {
  const int G = a.n_heads / a.n_kv_heads;
  const int tokens_per_tile = a.one_sequence ? kRowsPerBlock / G : 1;
  const int tiles = (a.step.n + tokens_per_tile - 1) / tokens_per_tile;
  const size_t smem = sizeof(FlashSmem<kDim>);
  static bool configured = false;  // per instantiation: raise the dynamic shared memory limit
  if (!configured) {
    TQLM_CUDA_CHECK(cudaFuncSetAttribute(F16FlashSplitKernel<kDim>,
                                         cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
    configured = true;
  }
  const dim3 grid(tiles, a.n_kv_heads, n_splits);
  F16FlashSplitKernel<kDim><<<grid, kThreads, smem, s>>>(a, n_splits, tokens_per_tile);
}

}  // namespace

bool AttentionHeadDimSupported(int head_dim) {
  return head_dim == 64 || head_dim == 128 || head_dim == 256;
}

void LaunchF16Append(const F16StepView& step, int kv_dim, const float* k, const float* v,
                     void* stream) {
  if (step.n <= 0) return;
  F16AppendKernel<<<step.n, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(step, kv_dim, k, v);
  TQLM_CUDA_CHECK(cudaGetLastError());
}

size_t F16AttendWorkspaceFloats(int n, int n_heads, int head_dim, int max_pos) {
  return size_t(n) * n_heads * Splits(max_pos) * (head_dim + 2);
}

void LaunchF16Attend(const F16AttendArgs& a, void* stream) {
  if (a.step.n <= 0) return;
  if (!AttentionHeadDimSupported(a.head_dim))
    throw Error("CUDA attention: head size " + std::to_string(a.head_dim) +
                " not supported (64, 128, 256)");
  if (a.n_kv_heads <= 0 || a.n_heads % a.n_kv_heads != 0 ||
      a.n_heads / a.n_kv_heads > kMaxGroup)
    throw Error("CUDA attention: " + std::to_string(a.n_heads) + " query heads over " +
                std::to_string(a.n_kv_heads) + " KV heads not supported");
  auto s = static_cast<cudaStream_t>(stream);
  const int n_splits = Splits(a.max_pos);
  if (n_splits > 65535) throw Error("CUDA attention: context too long");
  switch (a.head_dim) {
    case 64: LaunchFlash<64>(a, n_splits, s); break;
    case 128: LaunchFlash<128>(a, n_splits, s); break;
    default: LaunchFlash<256>(a, n_splits, s); break;
  }
  TQLM_CUDA_CHECK(cudaGetLastError());
  F16MergeKernel<<<dim3(a.step.n, a.n_heads), 128, 0, s>>>(a, n_splits);
  TQLM_CUDA_CHECK(cudaGetLastError());
}

}  // namespace tqlm::cuda_backend
