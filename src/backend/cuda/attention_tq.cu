// Attention over the TurboQuant KV cache (tq_kv_kernels.h), one kernel for prefill and decode:
// the f16 cache's flash kernel (attention_f16.cu) with key tiles that are the cache's blocks.
//
// Tiles: the sinks [0, S) in tiles of 64 positions, then main block b = tile nST + b
// (nST = ceil(S / 64)); a split is 4 tiles at fixed tile indices, so a query's reduction order
// depends only on its position (batch- and chunking-invariant, as for the f16 cache). For each
// tile a row sees either the raw rows (fp16) or the compressed block (decoded into the same
// shared-memory tiles as fp16), by the CPU's rule p >= end_b + recent; a tile that some rows of
// a prefill chunk see raw and others compressed is run twice with the other rows masked (a
// masked row's state is left bit-identical, see attention_f16.cu).
//
// TurboQuant tensors live in the codec's rotated basis: queries are rotated by R_k before the
// kernel (q·k = Rq·Rk), values are summed rotated and the merge rotates each output back by R_v^T.
#include <cuda_fp16.h>

#include <climits>
#include <string>

#include "backend/cuda/kernels.h"
#include "backend/cuda/tq_block.cuh"
#include "backend/cuda/tq_kv_kernels.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/ptx_ops.cuh"
#include "tqlm/error.h"

namespace tqlm::cuda_backend {
namespace {

namespace ptx = ::tqlm::cuda::ptx;

constexpr int kThreads = 128;
constexpr int kRows = 64;
constexpr int kTilesPerSplit = 4;
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kNoMax = -1e30f;

__host__ __device__ __forceinline__ int SinkTiles(int sinks) { return (sinks + kTqBlock - 1) / kTqBlock; }
__host__ __device__ __forceinline__ int TileOf(int pos, int sinks) {
  return pos < sinks ? pos / kTqBlock : SinkTiles(sinks) + (pos - sinks) / kTqBlock;
}
__device__ __forceinline__ int TileStart(int i, int sinks) {
  const int nst = SinkTiles(sinks);
  return i < nst ? i * kTqBlock : sinks + (i - nst) * kTqBlock;
}
__device__ __forceinline__ int TileEnd(int i, int sinks) {
  const int nst = SinkTiles(sinks);
  return i < nst ? min(i * kTqBlock + kTqBlock, sinks) : TileStart(i, sinks) + kTqBlock;
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
struct TqSmem {
  static constexpr int kStride = kDim + 8;
  static constexpr int kVStride = kTqBlock + 8;
  __half q[kRows * kStride];
  __half k[kTqBlock * kStride];
  __half vt[kDim * kVStride];
  float lev[4][256];  // K hi, K lo, V hi, V lo
  float normk[kTqBlock], normv[kTqBlock];
  float center[kDim];
};

__device__ __forceinline__ uint2 Pack4(float a, float b, float c, float d) {
  return make_uint2(ptx::PackHalf2(a, b), ptx::PackHalf2(c, d));
}

template <int B, int kDim>
__device__ void DecodeKeyUnit(TqSmem<kDim>& sm, const uint8_t* unit, const float* lev, int s,
                              int g) {
  uint32_t w[2 * B];
#pragma unroll
  for (int i = 0; i < B; ++i) {
    const uint2 x = reinterpret_cast<const uint2*>(unit)[i];
    w[2 * i] = x.x;
    w[2 * i + 1] = x.y;
  }
  const float* c = sm.center + 4 * g;
#pragma unroll
  for (int tt = 0; tt < 16; ++tt) {
    const float n = sm.normk[16 * s + tt];
    float v[4];
#pragma unroll
    for (int jj = 0; jj < 4; ++jj) v[jj] = fmaf(lev[UnitCode<B>(w, 4 * tt + jj)], n, c[jj]);
    *reinterpret_cast<uint2*>(&sm.k[(16 * s + tt) * TqSmem<kDim>::kStride + 4 * g]) =
        Pack4(v[0], v[1], v[2], v[3]);
  }
}

template <int B, int kDim>
__device__ void DecodeValueUnit(TqSmem<kDim>& sm, const uint8_t* unit, const float* lev, int c,
                                int u) {
  uint32_t w[2 * B];
#pragma unroll
  for (int i = 0; i < B; ++i) {
    const uint2 x = reinterpret_cast<const uint2*>(unit)[i];
    w[2 * i] = x.x;
    w[2 * i + 1] = x.y;
  }
  const float* n = sm.normv + 4 * u;
#pragma unroll
  for (int jj = 0; jj < 16; ++jj) {
    float v[4];
#pragma unroll
    for (int tt = 0; tt < 4; ++tt) v[tt] = lev[UnitCode<B>(w, 4 * jj + tt)] * n[tt];
    *reinterpret_cast<uint2*>(&sm.vt[(16 * c + jj) * TqSmem<kDim>::kVStride + 4 * u]) =
        Pack4(v[0], v[1], v[2], v[3]);
  }
}

// Decodes one K or V block (rotated basis) into the shared tiles. All threads take part.
template <int kDim>
__device__ void DecodeBlock(TqSmem<kDim>& sm, const TqFormat& f, const uint8_t* blk, bool key) {
  float* norm = key ? sm.normk : sm.normv;
  const __half* nh = reinterpret_cast<const __half*>(blk + f.norms_offset);
  for (int t = threadIdx.x; t < kTqBlock; t += kThreads) norm[t] = __half2float(nh[t]);
  if (key) {
    const __half* ch = reinterpret_cast<const __half*>(blk + f.center_offset);
    for (int j = threadIdx.x; j < kDim; j += kThreads)
      sm.center[j] = f.centered ? __half2float(ch[j]) : 0.0f;
  }
  __syncthreads();
  for (int u = threadIdx.x; u < kDim; u += kThreads) {
    if (key) {
      const int s = u / (kDim / 4), g = u % (kDim / 4);
      const bool hi = 4 * g < f.n_hi;
      const int bits = hi ? f.hi_bits : f.lo_bits;
      const float* lev = sm.lev[hi ? 0 : 1];
      const uint8_t* unit = blk + KeyUnitOffset(f, s, g);
      switch (bits) {
        case 8: DecodeKeyUnit<8>(sm, unit, lev, s, g); break;
        case 4: DecodeKeyUnit<4>(sm, unit, lev, s, g); break;
        case 3: DecodeKeyUnit<3>(sm, unit, lev, s, g); break;
        case 2: DecodeKeyUnit<2>(sm, unit, lev, s, g); break;
        default: DecodeKeyUnit<1>(sm, unit, lev, s, g); break;
      }
    } else {
      const int c = u / 16, q = u % 16;
      const bool hi = 16 * c < f.n_hi;
      const int bits = hi ? f.hi_bits : f.lo_bits;
      const float* lev = sm.lev[hi ? 2 : 3];
      const uint8_t* unit = blk + ValueUnitOffset(f, c, q);
      switch (bits) {
        case 8: DecodeValueUnit<8>(sm, unit, lev, c, q); break;
        case 4: DecodeValueUnit<4>(sm, unit, lev, c, q); break;
        case 3: DecodeValueUnit<3>(sm, unit, lev, c, q); break;
        case 2: DecodeValueUnit<2>(sm, unit, lev, c, q); break;
        default: DecodeValueUnit<1>(sm, unit, lev, c, q); break;
      }
    }
  }
}

template <int kDim>
__global__ void __launch_bounds__(kThreads)
    TqFlashKernel(TqAttendArgs a, const float* q, int n_splits, int tokens_per_tile) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  using Smem = TqSmem<kDim>;
  Smem& sm = *reinterpret_cast<Smem*>(smem_raw);
  constexpr int kS = Smem::kStride, kVS = Smem::kVStride;
  const TqLayerParams& P = a.p;
  const int G = P.n_heads / P.n_kv_heads, S = P.sinks;
  const int kvh = blockIdx.y, split = blockIdx.z;
  const int t0 = blockIdx.x * tokens_per_tile;
  const int t_end = min(a.step.n, t0 + tokens_per_tile);
  const int n_rows = (t_end - t0) * G;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, gid = lane / 4, tig = lane % 4;

  int lo_min = INT_MAX, hi_max = -1;
  for (int t = t0; t < t_end; ++t) {
    const int p = a.step.tok_pos[t];
    lo_min = min(lo_min, KeyBegin(p, P.window));
    hi_max = max(hi_max, p);
  }
  const int i_first = max(split * kTilesPerSplit, TileOf(lo_min, S));
  const int i_last = min(split * kTilesPerSplit + kTilesPerSplit - 1, TileOf(hi_max, S));
  if (i_first > i_last) return;

  const TqKvLayer L = a.step.seq_tables[a.step.tok_seq[t0]][a.step.layer];
  const size_t row_stride = size_t(P.n_kv_heads) * kDim;
  const __half* kraw = reinterpret_cast<const __half*>(L.raw_k) + size_t(kvh) * kDim;
  const __half* vraw = reinterpret_cast<const __half*>(L.raw_v) + size_t(kvh) * kDim;
  const bool comp_layer = P.k_comp || P.v_comp;

  for (int i = threadIdx.x; i < 256; i += kThreads) {
    if (P.k_comp) {
      sm.lev[0][i] = i < (1 << P.kf.hi_bits) ? P.kf.levels_hi[i] : 0.0f;
      sm.lev[1][i] = i < (1 << P.kf.lo_bits) ? P.kf.levels_lo[i] : 0.0f;
    }
    if (P.v_comp) {
      sm.lev[2][i] = i < (1 << P.vf.hi_bits) ? P.vf.levels_hi[i] : 0.0f;
      sm.lev[3][i] = i < (1 << P.vf.lo_bits) ? P.vf.levels_lo[i] : 0.0f;
    }
  }
  const float qscale = a.scale * kLog2e;
  for (int i = threadIdx.x; i < kRows * kDim / 2; i += kThreads) {
    const int r = i / (kDim / 2), c = (i % (kDim / 2)) * 2;
    float2 f = make_float2(0, 0);
    if (r < n_rows) {
      const int t = t0 + r / G, head = kvh * G + r % G;
      f = *reinterpret_cast<const float2*>(q + (size_t(t) * P.n_heads + head) * kDim + c);
    }
    *reinterpret_cast<uint32_t*>(&sm.q[r * kS + c]) = ptx::PackHalf2(f.x * qscale, f.y * qscale);
  }

  const int r_lo = warp * 16 + gid, r_hi = r_lo + 8;
  const bool warp_active = warp * 16 < n_rows;
  int p_row[2], lo_row[2];
  for (int h = 0; h < 2; ++h) {
    const int r = h == 0 ? r_lo : r_hi;
    if (r < n_rows) {
      p_row[h] = a.step.tok_pos[t0 + r / G];
      lo_row[h] = KeyBegin(p_row[h], P.window);
    } else {
      p_row[h] = -1;
      lo_row[h] = 0;
    }
  }

  constexpr int kDT = kDim / 8;
  float o[kDT][4];
#pragma unroll
  for (int d = 0; d < kDT; ++d) o[d][0] = o[d][1] = o[d][2] = o[d][3] = 0;
  float m_row[2] = {kNoMax, kNoMax}, l_row[2] = {0, 0};

  for (int tile = i_first; tile <= i_last; ++tile) {
    const int ts = TileStart(tile, S), te = TileEnd(tile, S);
    const int nst = SinkTiles(S);
    const int b = tile - nst;
    // Rows at or past this position see the tile compressed.
    const int comp_from = comp_layer && tile >= nst ? S + (b + 1) * kTqBlock + P.recent : INT_MAX;
    bool any_raw = false, any_comp = false;
    for (int t = t0; t < t_end; ++t) {
      const int p = a.step.tok_pos[t];
      if (p < ts || KeyBegin(p, P.window) >= te) continue;
      if (p >= comp_from) any_comp = true;
      else any_raw = true;
    }
    for (int pass = 0; pass < 2; ++pass) {
      if (pass == 0 ? !any_raw : !any_comp) continue;
      __syncthreads();  // the previous tile's reads (and the query staging) are done
      const bool dec_k = pass == 1 && P.k_comp, dec_v = pass == 1 && P.v_comp;
      if (dec_k)
        DecodeBlock<kDim>(sm, P.kf, L.comp_k + (size_t(b) * P.n_kv_heads + kvh) * P.kf.block_stride,
                          true);
      if (dec_v) {
        __syncthreads();
        DecodeBlock<kDim>(sm, P.vf, L.comp_v + (size_t(b) * P.n_kv_heads + kvh) * P.vf.block_stride,
                          false);
      }
      if (!dec_k || !dec_v) {
        for (int i = threadIdx.x; i < kTqBlock * kDim / 8; i += kThreads) {
          const int j = i / (kDim / 8), c = (i % (kDim / 8)) * 8;
          const int key = ts + j;
          const bool valid = key < te && key <= hi_max;
          if (!dec_k) {
            uint4 ku = make_uint4(0, 0, 0, 0);
            if (valid) ku = *reinterpret_cast<const uint4*>(
                           kraw + RawRow(key, S, L.ring_k) * row_stride + c);
            *reinterpret_cast<uint4*>(&sm.k[j * kS + c]) = ku;
          }
          if (!dec_v) {
            uint4 vu = make_uint4(0, 0, 0, 0);
            if (valid) vu = *reinterpret_cast<const uint4*>(
                           vraw + RawRow(key, S, L.ring_v) * row_stride + c);
            const __half* vh = reinterpret_cast<const __half*>(&vu);
#pragma unroll
            for (int e = 0; e < 8; ++e) sm.vt[(c + e) * kVS + j] = vh[e];
          }
        }
      }
      __syncthreads();
      if (!warp_active) continue;

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
      float tile_max[2] = {kNoMax, kNoMax};
#pragma unroll
      for (int j = 0; j < 8; ++j) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int h = e / 2, key = ts + j * 8 + 2 * tig + (e % 2);
          const bool seen = key < te && key >= lo_row[h] && key <= p_row[h] &&
                            ((p_row[h] >= comp_from) == (pass == 1));
          if (!seen) s[j][e] = -INFINITY;
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
#pragma unroll
      for (int ks = 0; ks < kTqBlock / 16; ++ks) {
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
    float* part = PartialAt(a.workspace, n_splits, kDim, t, head, P.n_heads, split);
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

// One block per (token, head): the row's non-empty splits merged in ascending order, then
// rotated back by R_v^T when values are TurboQuant.
__global__ void TqMergeKernel(TqAttendArgs a, int n_splits) {
  extern __shared__ float merged[];
  const TqLayerParams& P = a.p;
  const int t = blockIdx.x, head = blockIdx.y, dim = P.dim;
  const int pos = a.step.tok_pos[t];
  const int first = TileOf(KeyBegin(pos, P.window), P.sinks) / kTilesPerSplit;
  const int last = TileOf(pos, P.sinks) / kTilesPerSplit;
  float m = kNoMax;
  for (int s = first; s <= last; ++s)
    m = fmaxf(m, PartialAt(a.workspace, n_splits, dim, t, head, P.n_heads, s)[dim]);
  float* out = a.out + (size_t(t) * P.n_heads + head) * dim;
  for (int d = threadIdx.x; d < dim; d += blockDim.x) {
    float acc = 0, l = 0;
    for (int s = first; s <= last; ++s) {
      const float* part = PartialAt(a.workspace, n_splits, dim, t, head, P.n_heads, s);
      const float w = exp2f(part[dim] - m);
      acc = fmaf(w, part[d], acc);
      l = fmaf(w, part[dim + 1], l);
    }
    merged[d] = acc / l;
  }
  __syncthreads();
  for (int j = threadIdx.x; j < dim; j += blockDim.x) {
    float x = merged[j];
    if (P.v_comp) {
      x = 0;
      for (int i = 0; i < dim; ++i) x = fmaf(P.vf.rot[size_t(i) * dim + j], merged[i], x);
    }
    out[j] = x;
  }
}

// y = R x per row (R given as R^T, row-major): the queries in the keys' rotated basis.
__global__ void RotateRowsKernel(const float* x, const float* rot_t, int dim, float* y) {
  extern __shared__ float xs[];
  const size_t row = blockIdx.x;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) xs[i] = x[row * dim + i];
  __syncthreads();
  for (int j = threadIdx.x; j < dim; j += blockDim.x) {
    float acc = 0;
    for (int i = 0; i < dim; ++i) acc = fmaf(rot_t[size_t(i) * dim + j], xs[i], acc);
    y[row * dim + j] = acc;
  }
}

int Splits(int max_pos, int sinks) { return TileOf(max_pos - 1, sinks) / kTilesPerSplit + 1; }

size_t QRotFloats(int n, const TqLayerParams& p) {
  return p.k_comp ? (size_t(n) * p.n_heads * p.dim + 63) / 64 * 64 : 0;
}

template <int kDim>
void LaunchFlash(const TqAttendArgs& a, const float* q, int n_splits, cudaStream_t s) {
  const int G = a.p.n_heads / a.p.n_kv_heads;
  const int tokens_per_tile = a.one_sequence ? kRows / G : 1;
  const int tiles = (a.step.n + tokens_per_tile - 1) / tokens_per_tile;
  const size_t smem = sizeof(TqSmem<kDim>);
  static bool configured = false;
  if (!configured) {
    TQLM_CUDA_CHECK(cudaFuncSetAttribute(TqFlashKernel<kDim>,
                                         cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
    configured = true;
  }
  TqAttendArgs b = a;
  b.workspace = a.workspace + QRotFloats(a.step.n, a.p);
  TqFlashKernel<kDim><<<dim3(tiles, a.p.n_kv_heads, n_splits), kThreads, smem, s>>>(
      b, q, n_splits, tokens_per_tile);
}

}  // namespace

size_t TqAttendWorkspaceFloats(int n, const TqLayerParams& p, int max_pos) {
  return QRotFloats(n, p) + size_t(n) * p.n_heads * Splits(max_pos, p.sinks) * (p.dim + 2);
}

void LaunchTqAttend(const TqAttendArgs& a, void* stream) {
  if (a.step.n <= 0) return;
  const TqLayerParams& P = a.p;
  if (!AttentionHeadDimSupported(P.dim))
    throw Error("CUDA attention: head size " + std::to_string(P.dim) +
                " not supported (64, 128, 256)");
  if (P.n_kv_heads <= 0 || P.n_heads % P.n_kv_heads != 0 || P.n_heads / P.n_kv_heads > kMaxGroup)
    throw Error("CUDA attention: " + std::to_string(P.n_heads) + " query heads over " +
                std::to_string(P.n_kv_heads) + " KV heads not supported");
  auto s = static_cast<cudaStream_t>(stream);
  const int n_splits = Splits(a.max_pos, P.sinks);
  if (n_splits > 65535) throw Error("CUDA attention: context too long");
  const float* q = a.q;
  if (P.k_comp) {
    RotateRowsKernel<<<a.step.n * P.n_heads, P.dim, P.dim * sizeof(float), s>>>(
        a.q, P.kf.rot_t, P.dim, a.workspace);
    TQLM_CUDA_CHECK(cudaGetLastError());
    q = a.workspace;
  }
  switch (P.dim) {
    case 64: LaunchFlash<64>(a, q, n_splits, s); break;
    case 128: LaunchFlash<128>(a, q, n_splits, s); break;
    default: LaunchFlash<256>(a, q, n_splits, s); break;
  }
  TQLM_CUDA_CHECK(cudaGetLastError());
  TqAttendArgs m = a;
  m.workspace = a.workspace + QRotFloats(a.step.n, P);
  TqMergeKernel<<<dim3(a.step.n, P.n_heads), 128, P.dim * sizeof(float), s>>>(m, n_splits);
  TQLM_CUDA_CHECK(cudaGetLastError());
}

}  // namespace tqlm::cuda_backend
