// Decode attention on the paged cache (compressed or fp16), split over the sequence, with the
// fp16 sink/recent tokens in the same launch; query rotation before and merge + inverse rotation
// after. See tq_attention.h for the math and paged_layout.h for the layout.
//
// Each block of 4 warps takes work items (sequence b, KV head h, split s) from a persistent loop;
// split 0 also takes the fp16 sinks and recent ring. A warp processes whole 16-token chunks with
// mma.m16n8k16 (fp16 operands, fp32 accumulators): S^T = K Q^T with the chunk's 16 keys as rows
// and the group's query heads as the 8 columns; an online softmax in fp32 per head; P^T (fp16,
// scaled by each token's V norm) moved into the B operand by two 8x8 movmatrix transposes; then
// O^T += V^T P^T. Codes become fp16 operand pairs through pair tables in shared memory,
// replicated per lane (entry c of lane L at c * 32 + L) so that table reads never conflict.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/tq_attention.h"

namespace tqlm::cuda {
namespace {

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * kWarpLanes;
constexpr int kMaxGroup = 8;  // query heads per KV head: the 8 columns of the mma tile
constexpr float kLog2e = 1.4426950408889634f;

struct AttnArgs {
  int batch, n_heads, n_kv_heads, group;
  const uint8_t* pages;
  size_t page_bytes;
  const int32_t* block_table;
  int max_chunks;
  const int32_t* seq_lens;
  int sink_tokens, recent_tokens, sink_chunks, f16_chunks;
  const uint8_t* f16_region;
  size_t f16_page_bytes;
  const __half* q_rot;
  float k_inv_alpha, v_inv_alpha;
  const uint32_t* lut_k;
  const uint32_t* lut_v;
  int chunks_per_split, n_splits;
  float* part_o;
  float2* part_ml;
};

__device__ __forceinline__ void Mma16816(float (&c)[4], uint32_t a0, uint32_t a1, uint32_t a2,
                                         uint32_t a3, uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// 8x8 fp16 transpose across the warp (mma fragment layout in and out).
__device__ __forceinline__ uint32_t Transpose8x8(uint32_t x) {
  uint32_t y;
  asm volatile("movmatrix.sync.aligned.m8n8.trans.b16 %0, %1;\n" : "=r"(y) : "r"(x));
  return y;
}

__device__ __forceinline__ uint32_t PackHalf2(float lo, float hi) {
  const __half2 h = __floats2half2_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&h);
}

template <int W>
__device__ __forceinline__ void LoadLaneWords(const uint32_t* side, int lane, uint32_t (&w)[W]) {
  constexpr int V = LoadWidth(W);
#pragma unroll
  for (int g = 0; g < W / V; ++g) {
    const uint32_t* src = side + (g * kWarpLanes + lane) * V;
    if constexpr (V == 4) {
      const uint4 x = __ldg(reinterpret_cast<const uint4*>(src));
      w[4 * g] = x.x, w[4 * g + 1] = x.y, w[4 * g + 2] = x.z, w[4 * g + 3] = x.w;
    } else if constexpr (V == 2) {
      const uint2 x = __ldg(reinterpret_cast<const uint2*>(src));
      w[2 * g] = x.x, w[2 * g + 1] = x.y;
    } else {
      w[g] = __ldg(src);
    }
  }
}

// fp16x2 operand for field f of a lane (f is a compile-time constant after unrolling).
template <int B, int W>
// lut_lane: shared-memory byte address of this lane's entry 0 (entry c is 128 c bytes further).
__device__ __forceinline__ uint32_t Field(const uint32_t (&w)[W], int f, uint32_t lut_lane) {
  if constexpr (B == kF16Bits) {
    return w[f];
  } else {
    constexpr int kFieldBits = 2 * B;
    constexpr uint32_t kMask = (1u << kFieldBits) - 1;
    const int off = f * kFieldBits, wi = off / 32, sh = off % 32;
    uint32_t code;
    if constexpr (kFieldBits == 8) {
      code = __byte_perm(w[wi], 0u, 0x4440u | uint32_t(sh / 8));  // one PRMT
    } else if (sh + kFieldBits <= 32) {
      code = (w[wi] >> sh) & kMask;
    } else {
      code = __funnelshift_r(w[wi], w[wi + 1], sh) & kMask;
    }
    // Explicit shared address: code -> LEA -> LDS, three instructions per pair with the PRMT.
    uint32_t v;
    asm("ld.shared.u32 %0, [%1];\n" : "=r"(v) : "r"(lut_lane + (code << 7)));
    return v;
  }
}

// A chunk's words and norms for one lane, loaded ahead of their use.
template <int D, int BK, int BV>
struct ChunkRegs {
  uint32_t kw[LaneWords(D, BK)];
  uint32_t vw[LaneWords(D, BV)];
  __half kn[2], vn[2];  // norms of keys gid and gid + 8
};

template <int D, int BK, int BV>
__device__ __forceinline__ void LoadChunk(const uint8_t* page, int lane, ChunkRegs<D, BK, BV>& r) {
  LoadLaneWords<LaneWords(D, BK)>(reinterpret_cast<const uint32_t*>(page), lane, r.kw);
  LoadLaneWords<LaneWords(D, BV)>(reinterpret_cast<const uint32_t*>(page + VCodesOffset(D, BK)),
                                  lane, r.vw);
  const int gid = lane >> 2;
  if constexpr (IsCompressed(BK)) {
    const __half* n = reinterpret_cast<const __half*>(page + KNormOffset(D, BK, BV));
    r.kn[0] = __ldg(n + gid), r.kn[1] = __ldg(n + 8 + gid);
  }
  if constexpr (IsCompressed(BV)) {
    const __half* n = reinterpret_cast<const __half*>(page + VNormOffset(D, BK, BV));
    r.vn[0] = __ldg(n + gid), r.vn[1] = __ldg(n + 8 + gid);
  }
}

// Running softmax state of one lane: heads 2 tig + e (e = 0, 1), O^T accumulators for
// coordinates 16 mt + gid (+ 8) of those heads.
template <int D>
struct WarpState {
  float m[2], l[2];
  float o[D / 16][4];
};

// One 16-token chunk of one KV head into the warp's state. S^T = K Q^T puts keys on the 16 rows
// of mma.m16n8k16 and the group's query heads on its 8 columns; P^T reaches the B operand of
// O^T += V^T P^T through two 8x8 transposes (movmatrix).
template <int D, int BK, int BV>
__device__ __forceinline__ void ComputeChunk(const ChunkRegs<D, BK, BV>& r, int valid, int lane,
                                             const uint32_t (&qa)[D / 16][2],
                                             uint32_t lutk_lane, uint32_t lutv_lane,
                                             float k_inv_alpha, float v_inv_alpha,
                                             WarpState<D>& st) {
  const int gid = lane >> 2;
  float kn[2] = {1, 1}, vn[2] = {1, 1};  // keys gid, gid + 8
  if constexpr (IsCompressed(BK)) {
    kn[0] = __half2float(r.kn[0]) * k_inv_alpha, kn[1] = __half2float(r.kn[1]) * k_inv_alpha;
  }
  if constexpr (IsCompressed(BV)) {
    vn[0] = __half2float(r.vn[0]) * v_inv_alpha, vn[1] = __half2float(r.vn[1]) * v_inv_alpha;
  }
  // Two accumulators (even / odd k-steps) halve the dependent mma chain.
  float s2[2][4] = {};
#pragma unroll
  for (int ks = 0; ks < D / 16; ++ks) {
    const int f = ks * 4;
    Mma16816(s2[ks & 1], Field<BK>(r.kw, f, lutk_lane), Field<BK>(r.kw, f + 1, lutk_lane),
             Field<BK>(r.kw, f + 2, lutk_lane), Field<BK>(r.kw, f + 3, lutk_lane), qa[ks][0],
             qa[ks][1]);
  }
  // s[i]: i = 2 hi + e -> key gid + 8 hi, head 2 tig + e.
  float s[4];
  const bool ok[2] = {gid < valid, gid + 8 < valid};
#pragma unroll
  for (int i = 0; i < 4; ++i) s[i] = ok[i >> 1] ? (s2[0][i] + s2[1][i]) * kn[i >> 1] : -INFINITY;
  float corr[2];
  float p[4];
#pragma unroll
  for (int e = 0; e < 2; ++e) {
    float mx = fmaxf(s[e], s[2 + e]);
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 4));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 8));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 16));
    const float m_new = fmaxf(st.m[e], mx);  // finite: valid > 0
    corr[e] = exp2f(st.m[e] - m_new);
    st.m[e] = m_new;
    p[e] = exp2f(s[e] - m_new);
    p[2 + e] = exp2f(s[2 + e] - m_new);
    st.l[e] = st.l[e] * corr[e] + p[e] + p[2 + e];
  }
  // P'^T operand: rows = keys (gid, gid + 8), columns = heads, scaled by each token's V norm.
  const uint32_t x0 = PackHalf2(ok[0] ? p[0] * vn[0] : 0.0f, ok[0] ? p[1] * vn[0] : 0.0f);
  const uint32_t x1 = PackHalf2(ok[1] ? p[2] * vn[1] : 0.0f, ok[1] ? p[3] * vn[1] : 0.0f);
  const uint32_t b0 = Transpose8x8(x0), b1 = Transpose8x8(x1);
  // Once the running maxima settle, most chunks leave them unchanged: skip the rescale then.
  if (__any_sync(0xffffffffu, corr[0] != 1.0f || corr[1] != 1.0f)) {
#pragma unroll
    for (int mt = 0; mt < D / 16; ++mt) {
      st.o[mt][0] *= corr[0], st.o[mt][2] *= corr[0];
      st.o[mt][1] *= corr[1], st.o[mt][3] *= corr[1];
    }
  }
#pragma unroll
  for (int mt = 0; mt < D / 16; ++mt) {
    const int f = mt * 4;
    Mma16816(st.o[mt], Field<BV>(r.vw, f, lutv_lane), Field<BV>(r.vw, f + 1, lutv_lane),
             Field<BV>(r.vw, f + 2, lutv_lane), Field<BV>(r.vw, f + 3, lutv_lane), b0, b1);
  }
}

// Chunks first, first + kWarps, ... < end of one KV head; page_of(c) gives a chunk's page and
// valid_of(c) its valid tokens (> 0). Compressed chunks are loaded one step ahead (fp16 chunks,
// 64 words a lane, are not: the registers would cost occupancy).
template <int D, int BK, int BV, class PageOf, class ValidOf>
__device__ __forceinline__ void ProcessChunks(int first, int end, PageOf page_of, ValidOf valid_of,
                                              int lane, const uint32_t (&qa)[D / 16][2],
                                              uint32_t lutk_lane,
                                              uint32_t lutv_lane, float k_inv_alpha,
                                              float v_inv_alpha, WarpState<D>& st) {
  constexpr bool kPrefetch = LaneWords(D, BK) + LaneWords(D, BV) <= 32;
  if constexpr (kPrefetch) {
    if (first >= end) return;
    ChunkRegs<D, BK, BV> cur, next;
    LoadChunk<D, BK, BV>(page_of(first), lane, cur);
    for (int c = first; c < end; c += kWarps) {
      if (c + kWarps < end) LoadChunk<D, BK, BV>(page_of(c + kWarps), lane, next);
      ComputeChunk<D, BK, BV>(cur, valid_of(c), lane, qa, lutk_lane, lutv_lane, k_inv_alpha,
                              v_inv_alpha, st);
      cur = next;
    }
  } else {
    for (int c = first; c < end; c += kWarps) {
      ChunkRegs<D, BK, BV> cur;
      LoadChunk<D, BK, BV>(page_of(c), lane, cur);
      ComputeChunk<D, BK, BV>(cur, valid_of(c), lane, qa, lutk_lane, lutv_lane, k_inv_alpha,
                              v_inv_alpha, st);
    }
  }
}

template <int D, int BK, int BV>
__host__ __device__ constexpr int LutWords() {
  return (IsCompressed(BK) ? (1 << (2 * BK)) * kWarpLanes : 0) +
         (IsCompressed(BV) ? (1 << (2 * BV)) * kWarpLanes : 0);
}
// Pair tables, then the warps' partial results for the group's heads.
template <int D, int BK, int BV>
size_t AttnSmemBytes(int group) {
  return size_t(LutWords<D, BK, BV>()) * 4 + size_t(kWarps) * group * D * 4 +
         size_t(kWarps) * group * sizeof(float2);
}

template <int D, int BK, int BV>
__global__ void __launch_bounds__(kThreads, D <= 128 ? 4 : 2) AttendSplitKernel(AttnArgs a) {
  extern __shared__ __align__(16) uint32_t smem[];
  constexpr int kLutK = IsCompressed(BK) ? (1 << (2 * BK)) * kWarpLanes : 0;
  constexpr int kLutWords = LutWords<D, BK, BV>();
  uint32_t* lutk = smem;
  uint32_t* lutv = smem + kLutK;
  float* red_o = reinterpret_cast<float*>(smem + kLutWords);             // [warp][head][D]
  float2* red_ml = reinterpret_cast<float2*>(red_o + kWarps * a.group * D);  // [warp][head]
  if constexpr (IsCompressed(BK)) {
    for (int i = threadIdx.x; i < kLutK; i += kThreads) lutk[i] = a.lut_k[i / kWarpLanes];
  }
  if constexpr (IsCompressed(BV)) {
    for (int i = threadIdx.x; i < kLutWords - kLutK; i += kThreads) lutv[i] = a.lut_v[i / kWarpLanes];
  }
  __syncthreads();

  const int lane = threadIdx.x % kWarpLanes, warp = threadIdx.x / kWarpLanes;
  const int gid = lane / 4, tig = lane % 4;
  const uint32_t lutk_lane = uint32_t(__cvta_generic_to_shared(lutk)) + 4 * lane;
  const uint32_t lutv_lane = uint32_t(__cvta_generic_to_shared(lutv)) + 4 * lane;
  const int n_items = a.batch * a.n_kv_heads * a.n_splits;
  for (int item = blockIdx.x; item < n_items; item += gridDim.x) {
    const int split = item % a.n_splits;
    const int bh = item / a.n_splits;
    const int h = bh % a.n_kv_heads, b = bh / a.n_kv_heads;
    const int len = a.seq_lens[b];

    uint32_t qa[D / 16][2];
    const bool row_used = gid < a.group;
    const __half* q = a.q_rot + (size_t(b) * a.n_heads + h * a.group + (row_used ? gid : 0)) * D;
#pragma unroll
    for (int ks = 0; ks < D / 16; ++ks) {
      qa[ks][0] = row_used ? *reinterpret_cast<const uint32_t*>(q + 16 * ks + 2 * tig) : 0u;
      qa[ks][1] = row_used ? *reinterpret_cast<const uint32_t*>(q + 16 * ks + 8 + 2 * tig) : 0u;
    }
    WarpState<D> st;
    st.m[0] = st.m[1] = -INFINITY;
    st.l[0] = st.l[1] = 0;
#pragma unroll
    for (int mt = 0; mt < D / 16; ++mt) st.o[mt][0] = st.o[mt][1] = st.o[mt][2] = st.o[mt][3] = 0;

    // Split 0 also takes the fp16 sinks and recent ring (a few chunks at most).
    if (split == 0) {
      const int sink_valid = min(a.sink_tokens, len);
      const int ring_valid = min(a.recent_tokens, max(0, len - a.sink_tokens));
      const int sink_chunks = a.sink_chunks;
      // Only chunks holding tokens: sinks [0, ceil(sink_valid / 16)), then the ring's.
      const int sink_used = (sink_valid + kChunkTokens - 1) / kChunkTokens;
      const int ring_used = (ring_valid + kChunkTokens - 1) / kChunkTokens;
      const uint8_t* region = a.f16_region + size_t(b) * a.f16_chunks * a.n_kv_heads * a.f16_page_bytes;
      const size_t page_bytes = a.f16_page_bytes;
      const int n_kv = a.n_kv_heads;
      // Index u over used chunks: u < sink_used are sink chunks, the rest ring chunks.
      auto chunk_of = [=](int u) { return u < sink_used ? u : sink_chunks + (u - sink_used); };
      ProcessChunks<D, kF16Bits, kF16Bits>(
          warp, sink_used + ring_used,
          [=](int u) { return region + (size_t(chunk_of(u)) * n_kv + h) * page_bytes; },
          [=](int u) {
            return u < sink_used ? sink_valid - u * kChunkTokens
                                 : ring_valid - (u - sink_used) * kChunkTokens;
          },
          lane, qa, lutk_lane, lutv_lane, 1.0f, 1.0f, st);
    }
    {
      const int n_comp = max(0, len - a.sink_tokens - a.recent_tokens);
      const int c_end = min((split + 1) * a.chunks_per_split, (n_comp + kChunkTokens - 1) / kChunkTokens);
      const int32_t* table = a.block_table + size_t(b) * a.max_chunks;
      const uint8_t* pages = a.pages;
      const size_t page_bytes = a.page_bytes;
      const int n_kv = a.n_kv_heads;
      ProcessChunks<D, BK, BV>(
          split * a.chunks_per_split + warp, c_end,
          [=](int c) { return pages + (size_t(__ldg(table + c)) * n_kv + h) * page_bytes; },
          [=](int c) { return n_comp - c * kChunkTokens; }, lane, qa, lutk_lane, lutv_lane,
          a.k_inv_alpha, a.v_inv_alpha, st);
    }
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      st.l[e] += __shfl_xor_sync(0xffffffffu, st.l[e], 4);
      st.l[e] += __shfl_xor_sync(0xffffffffu, st.l[e], 8);
      st.l[e] += __shfl_xor_sync(0xffffffffu, st.l[e], 16);
    }
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      const int head = 2 * tig + e;
      if (head < a.group) {
        float* dst = red_o + (warp * a.group + head) * D;
#pragma unroll
        for (int mt = 0; mt < D / 16; ++mt) {
          dst[16 * mt + gid] = st.o[mt][e];
          dst[16 * mt + gid + 8] = st.o[mt][2 + e];
        }
        if (gid == 0) red_ml[warp * a.group + head] = make_float2(st.m[e], st.l[e]);
      }
    }
    __syncthreads();
    for (int idx = threadIdx.x; idx < a.group * D; idx += kThreads) {
      const int g = idx / D, j = idx % D;
      float mm = -INFINITY;
#pragma unroll
      for (int w = 0; w < kWarps; ++w) mm = fmaxf(mm, red_ml[w * a.group + g].x);
      float acc = 0, ll = 0;
#pragma unroll
      for (int w = 0; w < kWarps; ++w) {
        const float2 ml = red_ml[w * a.group + g];
        if (ml.x == -INFINITY) continue;
        const float wgt = exp2f(ml.x - mm);
        acc += wgt * red_o[(w * a.group + g) * D + j];
        ll += wgt * ml.y;
      }
      const size_t row = size_t(item) * a.group + g;
      a.part_o[row * D + j] = acc;
      if (j == 0) a.part_ml[row] = make_float2(mm, ll);
    }
    __syncthreads();
  }
}

// q_rot[b][head] = fp16(scale * log2(e) * R_k q): one block per (sequence, head), D threads.
__global__ void RotateQueriesKernel(const float* q, const float* rot_t, float scale, int dim,
                                    __half* q_rot) {
  extern __shared__ float xs[];
  const int t = threadIdx.x;
  xs[t] = q[size_t(blockIdx.x) * dim + t];
  __syncthreads();
  float acc = 0;
  for (int i = 0; i < dim; ++i) acc = fmaf(rot_t[size_t(i) * dim + t], xs[i], acc);
  q_rot[size_t(blockIdx.x) * dim + t] = __float2half_rn(acc * scale);
}

// Combines the splits of one (sequence, head) and rotates back: out = R_v^T (O / L). 256 threads:
// 8 slices of a warp each take every 8th split (lane: dim / 32 coordinates), then one sum.
constexpr int kMergeThreads = 256;
constexpr int kMergeSlices = kMergeThreads / kWarpLanes;
__global__ void __launch_bounds__(kMergeThreads)
MergeKernel(const float* part_o, const float2* part_ml, int n_splits, int group, int n_heads,
            int n_kv_heads, int dim, const float* rot_v, float* out) {
  extern __shared__ float sm[];  // [kMergeSlices][dim] partial sums, then orot[dim]
  __shared__ float red[kMergeThreads / kWarpLanes];
  __shared__ float mm_sh;
  const int b = blockIdx.x / n_heads, qh = blockIdx.x % n_heads;
  const int h = qh / group, g = qh % group, t = threadIdx.x;
  const int lane = t % kWarpLanes, slice = t / kWarpLanes;
  const size_t first = (size_t(b) * n_kv_heads + h) * n_splits;
  auto ml_of = [&](int s) { return part_ml[(first + s) * group + g]; };
  float mm = -INFINITY;
  for (int s = t; s < n_splits; s += kMergeThreads) mm = fmaxf(mm, ml_of(s).x);
  for (int o = 16; o > 0; o >>= 1) mm = fmaxf(mm, __shfl_xor_sync(0xffffffffu, mm, o));
  if (lane == 0) red[slice] = mm;
  __syncthreads();
  if (t == 0) {
    float x = -INFINITY;
    for (int i = 0; i < kMergeSlices; ++i) x = fmaxf(x, red[i]);
    mm_sh = x;
  }
  __syncthreads();
  mm = mm_sh;
  float ll = 0;
  float acc[8] = {};  // dim / 32 <= 8 coordinates per lane
  const int per_lane = dim / kWarpLanes;
  for (int s = slice; s < n_splits; s += kMergeSlices) {
    const float2 ml = ml_of(s);
    if (ml.x == -INFINITY) continue;
    const float w = exp2f(ml.x - mm);
    if (lane == 0) ll += w * ml.y;
    const float* src = part_o + ((first + s) * group + g) * dim + lane * per_lane;
#pragma unroll
    for (int i = 0; i < 8; ++i)
      if (i < per_lane) acc[i] += w * src[i];
  }
#pragma unroll
  for (int i = 0; i < 8; ++i)
    if (i < per_lane) sm[slice * dim + lane * per_lane + i] = acc[i];
  __syncthreads();
  if (lane == 0) red[slice] = ll;
  __syncthreads();
  float l_total = 0;
  for (int i = 0; i < kMergeSlices; ++i) l_total += red[i];
  float* orot = sm + kMergeSlices * dim;
  for (int j = t; j < dim; j += kMergeThreads) {
    float x = 0;
    for (int i = 0; i < kMergeSlices; ++i) x += sm[i * dim + j];
    orot[j] = l_total > 0 ? x / l_total : 0.0f;
  }
  __syncthreads();
  for (int i = t; i < dim; i += kMergeThreads) {
    float y = 0;
    for (int j = 0; j < dim; ++j) y = fmaf(rot_v[size_t(j) * dim + i], orot[j], y);
    out[size_t(blockIdx.x) * dim + i] = y;
  }
}

using AttnKernel = void (*)(AttnArgs);
struct KernelInfo {
  AttnKernel fn = nullptr;
  size_t smem = 0;
};

template <int D, int BK, int BV>
KernelInfo Info(int group) {
  return {AttendSplitKernel<D, BK, BV>, AttnSmemBytes<D, BK, BV>(group)};
}

template <int D>
KernelInfo SelectForDim(int bk, int bv, int group) {
  const int key = bk * 100 + bv;
  switch (key) {
    case 1616: return Info<D, 16, 16>(group);
    case 101: return Info<D, 1, 1>(group);
    case 202: return Info<D, 2, 2>(group);
    case 303: return Info<D, 3, 3>(group);
    case 404: return Info<D, 4, 4>(group);
    case 403: return Info<D, 4, 3>(group);
    case 402: return Info<D, 4, 2>(group);
    case 302: return Info<D, 3, 2>(group);
    default: break;
  }
  throw Error("cuda: unsupported K/V bit widths " + std::to_string(bk) + "/" + std::to_string(bv) +
              " (supported: f16/f16, b/b for b = 1..4, 4/3, 4/2, 3/2)");
}

KernelInfo SelectKernel(int dim, int bk, int bv, int group) {
  KernelInfo k;
  switch (dim) {
    case 64: k = SelectForDim<64>(bk, bv, group); break;
    case 128: k = SelectForDim<128>(bk, bv, group); break;
    case 256: k = SelectForDim<256>(bk, bv, group); break;
    default: throw Error("cuda: head dim must be 64, 128 or 256");
  }
  TQLM_CUDA_CHECK(cudaFuncSetAttribute(k.fn, cudaFuncAttributeMaxDynamicSharedMemorySize, int(k.smem)));
  return k;
}

size_t AlignUp(size_t x) { return (x + 255) / 256 * 256; }

struct WorkspaceParts {
  size_t q_rot = 0, part_o = 0, part_ml = 0, total = 0;
};
WorkspaceParts Parts(const CacheView& c, const AttendPlan& p) {
  const int group = c.n_heads / c.n_kv_heads;
  const size_t rows = size_t(c.batch) * c.n_kv_heads * p.n_splits * group;
  WorkspaceParts w;
  w.q_rot = 0;
  w.part_o = AlignUp(size_t(c.batch) * c.n_heads * c.dim * sizeof(__half));
  w.part_ml = w.part_o + AlignUp(rows * c.dim * sizeof(float));
  w.total = w.part_ml + AlignUp(rows * sizeof(float2));
  return w;
}

void CheckGeometry(const CacheView& c, const DeviceTables& t) {
  if (c.n_kv_heads <= 0 || c.n_heads % c.n_kv_heads != 0 || c.n_heads / c.n_kv_heads > kMaxGroup) {
    throw Error("cuda: n_heads must be a multiple of n_kv_heads with at most 8 query heads per KV head");
  }
  if (c.dim != t.dim || c.k_bits != t.k_bits || c.v_bits != t.v_bits) {
    throw Error("cuda: cache geometry does not match the codec tables");
  }
}

}  // namespace

AttendPlan PlanAttend(const CacheView& c, int max_seq_len, int sm_count) {
  const KernelInfo k = SelectKernel(c.dim, c.k_bits, c.v_bits, c.n_heads / c.n_kv_heads);
  int per_sm = 0;
  TQLM_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, k.fn, kThreads, k.smem));
  const int resident = std::max(1, per_sm) * sm_count;
  const int max_comp = std::max(0, max_seq_len - c.sink_tokens - c.recent_tokens);
  const int chunks = std::max(1, (max_comp + kChunkTokens - 1) / kChunkTokens);
  const long long heads = (long long)c.batch * c.n_kv_heads;
  // Items of equal size go round-robin to the persistent blocks: pick the split size with the
  // shortest makespan, counting each item's fixed cost (query load, block merge, first load
  // latency) as about 8 chunk steps of a warp.
  AttendPlan best;
  double best_cost = 1e300;
  for (int waves = 1; waves <= 16; ++waves) {
    const long long target = (long long)waves * resident;
    int cps = int(std::max<long long>(2 * kWarps, (chunks * heads + target - 1) / target));
    cps = (cps + kWarps - 1) / kWarps * kWarps;
    const int splits = (chunks + cps - 1) / cps;
    const long long items = heads * splits;
    const long long rounds = (items + resident - 1) / resident;
    const double cost = double(rounds) * (double(cps) / kWarps + 8.0);
    if (cost < best_cost) {
      best_cost = cost;
      best.chunks_per_split = cps;
      best.n_splits = splits;
      best.grid = int(std::min<long long>(resident, items));
    }
  }
  return best;
}

size_t AttendWorkspaceBytes(const CacheView& c, const AttendPlan& p) { return Parts(c, p).total; }

void LaunchAttend(const CacheView& c, const DeviceTables& t, const AttendPlan& p, const float* q,
                  const int32_t* seq_lens, float attn_scale, float* out, void* workspace,
                  void* stream_ptr) {
  CheckGeometry(c, t);
  cudaStream_t stream = static_cast<cudaStream_t>(stream_ptr);
  const WorkspaceParts w = Parts(c, p);
  uint8_t* ws = static_cast<uint8_t*>(workspace);
  __half* q_rot = reinterpret_cast<__half*>(ws + w.q_rot);
  float* part_o = reinterpret_cast<float*>(ws + w.part_o);
  float2* part_ml = reinterpret_cast<float2*>(ws + w.part_ml);
  const int group = c.n_heads / c.n_kv_heads;

  RotateQueriesKernel<<<c.batch * c.n_heads, c.dim, c.dim * sizeof(float), stream>>>(
      q, t.rot_k_t, attn_scale * kLog2e, c.dim, q_rot);
  TQLM_CUDA_CHECK(cudaGetLastError());

  static thread_local int cached_key = -1;
  static thread_local KernelInfo cached;
  const int key = ((c.dim * 32 + c.k_bits) * 32 + c.v_bits) * 16 + group;
  if (cached_key != key) {
    cached = SelectKernel(c.dim, c.k_bits, c.v_bits, group);
    cached_key = key;
  }
  AttnArgs a{};
  a.batch = c.batch, a.n_heads = c.n_heads, a.n_kv_heads = c.n_kv_heads, a.group = group;
  a.pages = c.pages, a.page_bytes = c.PageBytes();
  a.block_table = c.block_table, a.max_chunks = c.max_chunks;
  a.seq_lens = seq_lens;
  a.sink_tokens = c.sink_tokens, a.recent_tokens = c.recent_tokens;
  a.sink_chunks = c.SinkChunks(), a.f16_chunks = c.F16Chunks();
  a.f16_region = c.f16_region, a.f16_page_bytes = c.F16PageBytes();
  a.q_rot = q_rot;
  a.k_inv_alpha = 1.0f / t.k_alpha, a.v_inv_alpha = 1.0f / t.v_alpha;
  a.lut_k = t.lut_k, a.lut_v = t.lut_v;
  a.chunks_per_split = p.chunks_per_split, a.n_splits = p.n_splits;
  a.part_o = part_o, a.part_ml = part_ml;
  cached.fn<<<p.grid, kThreads, cached.smem, stream>>>(a);
  TQLM_CUDA_CHECK(cudaGetLastError());

  MergeKernel<<<c.batch * c.n_heads, kMergeThreads, (kMergeSlices + 1) * c.dim * sizeof(float),
                stream>>>(
      part_o, part_ml, p.n_splits, group, c.n_heads, c.n_kv_heads, c.dim, t.rot_v, out);
  TQLM_CUDA_CHECK(cudaGetLastError());
}

}  // namespace tqlm::cuda
