// Decode attention on the paged cache (compressed or fp16), split over the sequence, with the
// fp16 sink/recent tokens in the same launch; query rotation before and merge + inverse rotation
// after. See tq_attention.h for the math and paged_layout.h for the layout.
//
// Each block of 4 warps takes work items (sequence b, KV head h, split s) from a persistent loop.
// A warp processes whole 16-token chunks: S = Q K^T with the group's query heads as the 16 rows
// of mma.m16n8k16 (rows >= group are zero), keys as 2 n-tiles of 8; online softmax in fp32 per
// head; then O += P V with P (fp16, scaled by each token's V norm) as the A operand straight from
// the score accumulators (no shuffles). Codes become fp16 operands through pair tables in shared
// memory, replicated per lane (entry c of lane L at c * 32 + L) so table reads never conflict.
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
constexpr int kMaxGroup = 8;  // query heads per KV head: rows 0..7 of the mma tile
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

__device__ __forceinline__ void Mma16816(float (&c)[4], uint32_t a0, uint32_t a2, uint32_t b0,
                                         uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a0), "r"(0u), "r"(a2), "r"(0u), "r"(b0), "r"(b1));
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
__device__ __forceinline__ uint32_t Field(const uint32_t (&w)[W], int f, const uint32_t* lut_lane) {
  if constexpr (B == kF16Bits) {
    return w[f];
  } else {
    constexpr int kFieldBits = 2 * B;
    constexpr uint32_t kMask = (1u << kFieldBits) - 1;
    const int off = f * kFieldBits, wi = off / 32, sh = off % 32;
    uint32_t code;
    if (sh + kFieldBits <= 32) {
      code = (w[wi] >> sh) & kMask;
    } else {
      code = __funnelshift_r(w[wi], w[wi + 1], sh) & kMask;
    }
    return lut_lane[code << 5];
  }
}

// A chunk's words and norms for one lane, loaded ahead of their use.
template <int D, int BK, int BV>
struct ChunkRegs {
  uint32_t kw[LaneWords(D, BK)];
  uint32_t vw[LaneWords(D, BV)];
  __half2 kn[2], vn[2];  // norms of keys 2 tig + {0, 1} and 8 + 2 tig + {0, 1}
};

template <int D, int BK, int BV>
__device__ __forceinline__ void LoadChunk(const uint8_t* page, int lane, ChunkRegs<D, BK, BV>& r) {
  LoadLaneWords<LaneWords(D, BK)>(reinterpret_cast<const uint32_t*>(page), lane, r.kw);
  LoadLaneWords<LaneWords(D, BV)>(reinterpret_cast<const uint32_t*>(page + VCodesOffset(D, BK)),
                                  lane, r.vw);
  const int tig = lane & 3;
  if constexpr (IsCompressed(BK)) {
    const __half2* n = reinterpret_cast<const __half2*>(page + KNormOffset(D, BK, BV));
    r.kn[0] = __ldg(n + tig), r.kn[1] = __ldg(n + 4 + tig);
  }
  if constexpr (IsCompressed(BV)) {
    const __half2* n = reinterpret_cast<const __half2*>(page + VNormOffset(D, BK, BV));
    r.vn[0] = __ldg(n + tig), r.vn[1] = __ldg(n + 4 + tig);
  }
}

// One 16-token chunk of one KV head into the warp's running (m, l, o) for its query rows.
template <int D, int BK, int BV>
__device__ __forceinline__ void ComputeChunk(const ChunkRegs<D, BK, BV>& r, int valid, int lane,
                                             const uint32_t (&qa)[D / 16][2],
                                             const uint32_t* lutk_lane, const uint32_t* lutv_lane,
                                             float k_inv_alpha, float v_inv_alpha, float& m,
                                             float& l, float (&o)[D / 8][4]) {
  const int tig = lane & 3;
  // This lane's score columns are keys 2 tig + {0, 1} and 8 + 2 tig + {0, 1}.
  float kn[4] = {1, 1, 1, 1}, vn[4] = {1, 1, 1, 1};
  if constexpr (IsCompressed(BK)) {
    const float2 a = __half22float2(r.kn[0]), b = __half22float2(r.kn[1]);
    kn[0] = a.x * k_inv_alpha, kn[1] = a.y * k_inv_alpha;
    kn[2] = b.x * k_inv_alpha, kn[3] = b.y * k_inv_alpha;
  }
  if constexpr (IsCompressed(BV)) {
    const float2 a = __half22float2(r.vn[0]), b = __half22float2(r.vn[1]);
    vn[0] = a.x * v_inv_alpha, vn[1] = a.y * v_inv_alpha;
    vn[2] = b.x * v_inv_alpha, vn[3] = b.y * v_inv_alpha;
  }

  float s[2][4] = {};
#pragma unroll
  for (int ks = 0; ks < D / 16; ++ks) {
#pragma unroll
    for (int nt = 0; nt < 2; ++nt) {
      const int f = (nt * (D / 16) + ks) * 2;
      Mma16816(s[nt], qa[ks][0], qa[ks][1], Field<BK>(r.kw, f, lutk_lane),
               Field<BK>(r.kw, f + 1, lutk_lane));
    }
  }
  float mx = -INFINITY;
#pragma unroll
  for (int nt = 0; nt < 2; ++nt) {
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      const int key = 8 * nt + 2 * tig + e;
      const float x = key < valid ? s[nt][e] * kn[2 * nt + e] : -INFINITY;
      s[nt][e] = x;
      mx = fmaxf(mx, x);
    }
  }
  mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
  mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
  const float m_new = fmaxf(m, mx);  // finite: valid > 0
  const float corr = exp2f(m - m_new);
  m = m_new;
  float psum = 0;
  uint32_t pa[2];
#pragma unroll
  for (int nt = 0; nt < 2; ++nt) {
    const float p0 = exp2f(s[nt][0] - m_new), p1 = exp2f(s[nt][1] - m_new);
    psum += p0 + p1;
    const int key = 8 * nt + 2 * tig;
    pa[nt] = PackHalf2(key < valid ? p0 * vn[2 * nt] : 0.0f,
                       key + 1 < valid ? p1 * vn[2 * nt + 1] : 0.0f);
  }
  l = l * corr + psum;
#pragma unroll
  for (int nt = 0; nt < D / 8; ++nt) {
    o[nt][0] *= corr;
    o[nt][1] *= corr;
    Mma16816(o[nt], pa[0], pa[1], Field<BV>(r.vw, 2 * nt, lutv_lane),
             Field<BV>(r.vw, 2 * nt + 1, lutv_lane));
  }
}

// Chunks first, first + kWarps, ... < end of one KV head; page_of(c) gives a chunk's page and
// valid_of(c) its valid tokens (> 0). Small chunks (compressed) are prefetched one step ahead.
template <int D, int BK, int BV, class PageOf, class ValidOf>
__device__ __forceinline__ void ProcessChunks(int first, int end, PageOf page_of, ValidOf valid_of,
                                              int lane, const uint32_t (&qa)[D / 16][2],
                                              const uint32_t* lutk_lane,
                                              const uint32_t* lutv_lane, float k_inv_alpha,
                                              float v_inv_alpha, float& m, float& l,
                                              float (&o)[D / 8][4]) {
  constexpr bool kPrefetch = LaneWords(D, BK) + LaneWords(D, BV) <= 32;
  if constexpr (kPrefetch) {
    if (first >= end) return;
    ChunkRegs<D, BK, BV> cur, next;
    LoadChunk<D, BK, BV>(page_of(first), lane, cur);
    for (int c = first; c < end; c += kWarps) {
      if (c + kWarps < end) LoadChunk<D, BK, BV>(page_of(c + kWarps), lane, next);
      ComputeChunk<D, BK, BV>(cur, valid_of(c), lane, qa, lutk_lane, lutv_lane, k_inv_alpha,
                              v_inv_alpha, m, l, o);
      cur = next;
    }
  } else {
    for (int c = first; c < end; c += kWarps) {
      ChunkRegs<D, BK, BV> cur;
      LoadChunk<D, BK, BV>(page_of(c), lane, cur);
      ComputeChunk<D, BK, BV>(cur, valid_of(c), lane, qa, lutk_lane, lutv_lane, k_inv_alpha,
                              v_inv_alpha, m, l, o);
    }
  }
}

template <int D, int BK, int BV>
__host__ __device__ constexpr int LutWords() {
  return (IsCompressed(BK) ? (1 << (2 * BK)) * kWarpLanes : 0) +
         (IsCompressed(BV) ? (1 << (2 * BV)) * kWarpLanes : 0);
}
template <int D, int BK, int BV>
__host__ __device__ constexpr size_t AttnSmemBytes() {
  return size_t(LutWords<D, BK, BV>()) * 4 + size_t(kWarps) * kMaxGroup * D * 4 +
         size_t(kWarps) * kMaxGroup * sizeof(float2);
}

template <int D, int BK, int BV>
__global__ void __launch_bounds__(kThreads, D <= 128 ? 3 : 1) AttendSplitKernel(AttnArgs a) {
  extern __shared__ __align__(16) uint32_t smem[];
  constexpr int kLutK = IsCompressed(BK) ? (1 << (2 * BK)) * kWarpLanes : 0;
  constexpr int kLutWords = LutWords<D, BK, BV>();
  uint32_t* lutk = smem;
  uint32_t* lutv = smem + kLutK;
  float* red_o = reinterpret_cast<float*>(smem + kLutWords);        // [warp][row][D]
  float2* red_ml = reinterpret_cast<float2*>(red_o + kWarps * kMaxGroup * D);  // [warp][row]
  if constexpr (IsCompressed(BK)) {
    for (int i = threadIdx.x; i < kLutK; i += kThreads) lutk[i] = a.lut_k[i / kWarpLanes];
  }
  if constexpr (IsCompressed(BV)) {
    for (int i = threadIdx.x; i < kLutWords - kLutK; i += kThreads) lutv[i] = a.lut_v[i / kWarpLanes];
  }
  __syncthreads();

  const int lane = threadIdx.x % kWarpLanes, warp = threadIdx.x / kWarpLanes;
  const int gid = lane / 4, tig = lane % 4;
  const uint32_t* lutk_lane = lutk + lane;
  const uint32_t* lutv_lane = lutv + lane;
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
    float m = -INFINITY, l = 0;
    float o[D / 8][4] = {};

    if (split < a.n_splits - 1) {
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
          a.k_inv_alpha, a.v_inv_alpha, m, l, o);
    } else {
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
          lane, qa, lutk_lane, lutv_lane, 1.0f, 1.0f, m, l, o);
    }
    l += __shfl_xor_sync(0xffffffffu, l, 1);
    l += __shfl_xor_sync(0xffffffffu, l, 2);
    if (row_used) {
      float* dst = red_o + (warp * kMaxGroup + gid) * D;
#pragma unroll
      for (int nt = 0; nt < D / 8; ++nt) {
        dst[8 * nt + 2 * tig] = o[nt][0];
        dst[8 * nt + 2 * tig + 1] = o[nt][1];
      }
      if (tig == 0) red_ml[warp * kMaxGroup + gid] = make_float2(m, l);
    }
    __syncthreads();
    for (int idx = threadIdx.x; idx < a.group * D; idx += kThreads) {
      const int g = idx / D, j = idx % D;
      float mm = -INFINITY;
#pragma unroll
      for (int w = 0; w < kWarps; ++w) mm = fmaxf(mm, red_ml[w * kMaxGroup + g].x);
      float acc = 0, ll = 0;
#pragma unroll
      for (int w = 0; w < kWarps; ++w) {
        const float2 ml = red_ml[w * kMaxGroup + g];
        if (ml.x == -INFINITY) continue;
        const float wgt = exp2f(ml.x - mm);
        acc += wgt * red_o[(w * kMaxGroup + g) * D + j];
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
KernelInfo Info() {
  return {AttendSplitKernel<D, BK, BV>, AttnSmemBytes<D, BK, BV>()};
}

template <int D>
KernelInfo SelectForDim(int bk, int bv) {
  const int key = bk * 100 + bv;
  switch (key) {
    case 1616: return Info<D, 16, 16>();
    case 101: return Info<D, 1, 1>();
    case 202: return Info<D, 2, 2>();
    case 303: return Info<D, 3, 3>();
    case 404: return Info<D, 4, 4>();
    case 403: return Info<D, 4, 3>();
    case 402: return Info<D, 4, 2>();
    case 302: return Info<D, 3, 2>();
    default: break;
  }
  throw Error("cuda: unsupported K/V bit widths " + std::to_string(bk) + "/" + std::to_string(bv) +
              " (supported: f16/f16, b/b for b = 1..4, 4/3, 4/2, 3/2)");
}

KernelInfo SelectKernel(int dim, int bk, int bv) {
  KernelInfo k;
  switch (dim) {
    case 64: k = SelectForDim<64>(bk, bv); break;
    case 128: k = SelectForDim<128>(bk, bv); break;
    case 256: k = SelectForDim<256>(bk, bv); break;
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
  const KernelInfo k = SelectKernel(c.dim, c.k_bits, c.v_bits);
  int per_sm = 0;
  TQLM_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, k.fn, kThreads, k.smem));
  const int resident = std::max(1, per_sm) * sm_count;
  const int max_comp = std::max(0, max_seq_len - c.sink_tokens - c.recent_tokens);
  const int chunks = (max_comp + kChunkTokens - 1) / kChunkTokens;
  // About 4 work items per resident block keeps the static round-robin's tail short; at least
  // 2 chunks per warp and item, so that the prefetch has something to overlap.
  const long long total = (long long)chunks * c.batch * c.n_kv_heads;
  const long long target = 4LL * resident;
  int cps = int(std::max<long long>(2 * kWarps, (total + target - 1) / target));
  cps = (cps + kWarps - 1) / kWarps * kWarps;
  AttendPlan p;
  p.chunks_per_split = cps;
  p.n_splits = (chunks + cps - 1) / cps + 1;
  const long long items = (long long)c.batch * c.n_kv_heads * p.n_splits;
  p.grid = int(std::min<long long>(resident, items));
  return p;
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

  static thread_local int cached_dim = -1, cached_bk = -1, cached_bv = -1;
  static thread_local KernelInfo cached;
  if (cached_dim != c.dim || cached_bk != c.k_bits || cached_bv != c.v_bits) {
    cached = SelectKernel(c.dim, c.k_bits, c.v_bits);
    cached_dim = c.dim, cached_bk = c.k_bits, cached_bv = c.v_bits;
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
