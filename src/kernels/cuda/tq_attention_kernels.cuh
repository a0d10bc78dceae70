// Device code of decode attention on the paged cache: the split attention kernel, query
// rotation and merge. Included once, by tq_attention.cu (host: kernel choice, plan, launch),
// so its anonymous namespace is that file's.
//
// Decode attention on the paged cache (compressed or fp16), split over the sequence, with the
// fp16 sink/recent tokens in the same launch; query rotation before and merge + inverse rotation
// after. See tq_attention.h for the math and paged_layout.h for the layout.
//
// Each block of 8 warps takes work items (sequence b, KV head h, split s) from a persistent loop;
// split 0 also takes the fp16 sinks and recent ring. A warp processes whole 16-token chunks with
// mma.m16n8k16 (fp16 operands, fp32 accumulators): S^T = K Q^T with the chunk's 16 keys as rows
// and the group's query heads as the 8 columns; an online softmax in fp32 per head; P^T (fp16,
// scaled by each token's V norm) moved into the B operand by two 8x8 movmatrix transposes; then
// O^T += V^T P^T. Codes become fp16 operand pairs through pair tables in shared memory,
// replicated per lane so that table reads never conflict: row c (256 bytes) holds lane L's K
// entry c at byte 4 L and its V entry c at byte 128 + 4 L. A lookup's byte address is then
// (c << 8) | lane byte: one PRMT for a 4-bit pair code (the code byte and the lane byte placed
// in one instruction), SHF + LOP3 for narrower codes, then the LDS. One table per block of 8
// warps (not per 4) leaves room for the 256-byte rows at 2 blocks per SM.
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "kernels/cuda/ptx_ops.cuh"
#include "kernels/cuda/tq_attention.h"

namespace tqlm::cuda {
namespace {

using namespace ptx;  // NOLINT: the kernels read as PTX mnemonics

constexpr int kWarps = 8;
constexpr int kThreads = kWarps * kWarpLanes;
constexpr int kMaxGroup = 8;  // query heads per KV head: the 8 columns of the mma tile
constexpr float kLog2e = 1.4426950408889634f;
constexpr int kLutRowBytes = 256;    // one pair code: 32 lanes' K entries, then their V entries
constexpr uint32_t kVLaneByte = 128;  // V entries' offset inside a row

// Dynamic shared memory of the attention kernel: pair tables at offset 0, then the block's
// partial results. A lookup reads LDS [(code << 8 | lane byte) + kSmemBase]: the table's shared
// address as an immediate, so no add per lookup (ptxas otherwise adds the base in a register).
// kSmemBase is where dynamic shared memory starts in a kernel without static shared memory and
// launched without clusters (after the 1 KB the system reserves per block); SmemBaseOk()
// checks it on the device before the first launch, and each block checks it again.
extern __shared__ __align__(16) uint8_t g_smem[];
constexpr uint32_t kSmemBase = 1024;

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
  const float* q_f32;  // when R_k is the identity: raw queries, scaled here (no rotation launch)
  float q_scale;
  float k_inv_alpha, v_inv_alpha;
  const uint32_t* lut_k;
  const uint32_t* lut_v;
  int chunks_per_split, n_splits;
  int l2_prefetch;  // as AttendPlan::l2_prefetch
  float* part_o;
  float2* part_ml;
  // Fused merge (null: a separate MergeKernel): arrivals per (sequence, KV head), reset to 0 by
  // the last block to arrive, which merges the splits, rotates back (rot_v; null: identity) and
  // writes out.
  int* counters;
  const float* rot_v;
  float* out;
};

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
// lane_byte: this lane's byte inside a table row (4 lane); kSide: 0 for K, kVLaneByte for V,
// added as part of the LDS immediate (a V lane byte in a register cost one more LOP3 per lookup:
// ptxas rebuilt it from the K one to save the register).
template <int B, uint32_t kSide, int W>
__device__ __forceinline__ uint32_t Field(const uint32_t (&w)[W], int f, uint32_t lane_byte) {
  if constexpr (B == kF16Bits) {
    return w[f];
  } else {
    constexpr int kFieldBits = 2 * B;
    constexpr uint32_t kRowMask = ((1u << kFieldBits) - 1) << 8;
    const int off = f * kFieldBits, wi = off / 32, sh = off % 32;
    uint32_t addr;  // (code << 8) | lane_byte
    if constexpr (kFieldBits == 8) {
      // byte 0 = lane byte (selector 4), byte 1 = code byte, bytes 2-3 = zero bytes of lane_byte.
      addr = __byte_perm(w[wi], lane_byte, 0x5504u | (uint32_t(sh / 8) << 4));
    } else {
      uint32_t x;
      if (sh + kFieldBits > 32) {
        x = __funnelshift_r(w[wi], w[wi + 1], sh - 8);  // sh > 26: a field across two words
      } else if (sh >= 8) {
        x = w[wi] >> (sh - 8);
      } else {
        x = w[wi] << (8 - sh);
      }
      addr = (x & kRowMask) | lane_byte;  // one LOP3
    }
    uint32_t v;
    asm("ld.shared.u32 %0, [%1+%2];\n" : "=r"(v) : "r"(addr), "n"(kSmemBase + kSide));
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
                                             const uint32_t (&qa)[D / 16][2], float k_inv_alpha,
                                             float v_inv_alpha, WarpState<D>& st) {
  const int gid = lane >> 2;
  // This lane's byte in a table row, from %laneid rather than from threadIdx: ptxas otherwise
  // drops the register and rebuilds it from threadIdx * 4 with one more LOP3 (& 0x7c) per lookup.
  uint32_t lane_id;
  asm("mov.u32 %0, %%laneid;\n" : "=r"(lane_id));
  const uint32_t lane_k = lane_id * 4;
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
    Mma16816(s2[ks & 1], Field<BK, 0>(r.kw, f, lane_k), Field<BK, 0>(r.kw, f + 1, lane_k),
             Field<BK, 0>(r.kw, f + 2, lane_k), Field<BK, 0>(r.kw, f + 3, lane_k), qa[ks][0],
             qa[ks][1]);
  }
  // s[i]: i = 2 hi + e -> key gid + 8 hi, head 2 tig + e.
  float s[4];
  const bool ok[2] = {gid < valid, gid + 8 < valid};
#pragma unroll
  for (int i = 0; i < 4; ++i) s[i] = ok[i >> 1] ? (s2[0][i] + s2[1][i]) * kn[i >> 1] : -INFINITY;
  float p[4];
  // Once the running maxima settle, almost no chunk holds a score above its head's maximum: then
  // one vote replaces the three-shuffle max reductions and the accumulators need no rescale
  // (the same arithmetic as the full path, whose m_new would equal m).
  const bool grows = s[0] > st.m[0] || s[1] > st.m[1] || s[2] > st.m[0] || s[3] > st.m[1];
  if (__any_sync(0xffffffffu, grows)) {
    float corr[2];
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      float mx = fmaxf(s[e], s[2 + e]);
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 4));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 8));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 16));
      const float m_new = fmaxf(st.m[e], mx);  // finite: valid > 0
      corr[e] = Exp2(st.m[e] - m_new);
      st.m[e] = m_new;
      st.l[e] *= corr[e];
    }
#pragma unroll
    for (int mt = 0; mt < D / 16; ++mt) {
      st.o[mt][0] *= corr[0], st.o[mt][2] *= corr[0];
      st.o[mt][1] *= corr[1], st.o[mt][3] *= corr[1];
    }
  }
#pragma unroll
  for (int i = 0; i < 4; ++i) p[i] = Exp2(s[i] - st.m[i & 1]);
  st.l[0] += p[0] + p[2];
  st.l[1] += p[1] + p[3];
  // P'^T operand: rows = keys (gid, gid + 8), columns = heads, scaled by each token's V norm
  // (masked keys have p = 0).
  const uint32_t x0 = PackHalf2(p[0] * vn[0], p[1] * vn[0]);
  const uint32_t x1 = PackHalf2(p[2] * vn[1], p[3] * vn[1]);
  const uint32_t b0 = Transpose8x8(x0), b1 = Transpose8x8(x1);
#pragma unroll
  for (int mt = 0; mt < D / 16; ++mt) {
    const int f = mt * 4;
    Mma16816(st.o[mt], Field<BV, kVLaneByte>(r.vw, f, lane_k),
             Field<BV, kVLaneByte>(r.vw, f + 1, lane_k), Field<BV, kVLaneByte>(r.vw, f + 2, lane_k),
             Field<BV, kVLaneByte>(r.vw, f + 3, lane_k), b0, b1);
  }
}

// Chunks first, first + kWarps, ... < end of one KV head. idx_of(c) gives a chunk's page index
// (may read the block table: it is read two steps before the page is needed, so no load waits
// on it), ptr_of(index) the page, valid_of(c) the chunk's valid tokens (> 0). Compressed chunks
// are loaded into registers one step ahead (two buffers, no copies); fp16 chunks (64 words a
// lane) are not: the registers would cost occupancy. With l2_prefetch (> 0), lane 0 brings the
// page two steps ahead into L2; fp16 chunks: l2_prefetch steps ahead (1 or 2).
template <int D, int BK, int BV, class IdxOf, class PtrOf, class ValidOf>
__device__ __forceinline__ void ProcessChunks(int first, int end, IdxOf idx_of, PtrOf ptr_of,
                                              ValidOf valid_of, uint32_t page_bytes,
                                              int l2_prefetch, int lane,
                                              const uint32_t (&qa)[D / 16][2], float k_inv_alpha,
                                              float v_inv_alpha, WarpState<D>& st) {
  if (first >= end) return;
  constexpr bool kRegPrefetch = LaneWords(D, BK) + LaneWords(D, BV) <= 32;
  // idx1, idx2: page indices of chunks c + kWarps, c + 2 kWarps (0 past the end).
  int idx1 = first + kWarps < end ? idx_of(first + kWarps) : 0;
  int idx0 = idx_of(first);
  int idx2 = first + 2 * kWarps < end ? idx_of(first + 2 * kWarps) : 0;
  if constexpr (kRegPrefetch) {
    ChunkRegs<D, BK, BV> r0, r1;
    LoadChunk<D, BK, BV>(ptr_of(idx0), lane, r0);
    // Two steps per iteration, so that the buffers swap roles without register copies.
    for (int c = first;;) {
      if (c + kWarps < end) LoadChunk<D, BK, BV>(ptr_of(idx1), lane, r1);
      if (l2_prefetch && lane == 0 && c + 2 * kWarps < end) PrefetchL2(ptr_of(idx2), page_bytes);
      idx1 = idx2;
      idx2 = c + 3 * kWarps < end ? idx_of(c + 3 * kWarps) : 0;
      ComputeChunk<D, BK, BV>(r0, valid_of(c), lane, qa, k_inv_alpha, v_inv_alpha, st);
      c += kWarps;
      if (c >= end) break;
      if (c + kWarps < end) LoadChunk<D, BK, BV>(ptr_of(idx1), lane, r0);
      if (l2_prefetch && lane == 0 && c + 2 * kWarps < end) PrefetchL2(ptr_of(idx2), page_bytes);
      idx1 = idx2;
      idx2 = c + 3 * kWarps < end ? idx_of(c + 3 * kWarps) : 0;
      ComputeChunk<D, BK, BV>(r1, valid_of(c), lane, qa, k_inv_alpha, v_inv_alpha, st);
      c += kWarps;
      if (c >= end) break;
    }
  } else {
    if (l2_prefetch == 2 && lane == 0 && first + kWarps < end) PrefetchL2(ptr_of(idx1), page_bytes);
    for (int c = first; c < end; c += kWarps) {
      ChunkRegs<D, BK, BV> cur;
      LoadChunk<D, BK, BV>(ptr_of(idx0), lane, cur);
      if (lane == 0) {
        if (l2_prefetch == 1 && c + kWarps < end) PrefetchL2(ptr_of(idx1), page_bytes);
        if (l2_prefetch == 2 && c + 2 * kWarps < end) PrefetchL2(ptr_of(idx2), page_bytes);
      }
      idx0 = idx1, idx1 = idx2;
      idx2 = c + 3 * kWarps < end ? idx_of(c + 3 * kWarps) : 0;
      ComputeChunk<D, BK, BV>(cur, valid_of(c), lane, qa, k_inv_alpha, v_inv_alpha, st);
    }
  }
}

// fp16 chunk words of one lane from a staged page in shared memory (same layout as LoadChunk).
template <int D>
__device__ __forceinline__ void LoadChunkShared(const uint8_t* page, int lane,
                                                ChunkRegs<D, kF16Bits, kF16Bits>& r) {
  constexpr int W = LaneWords(D, kF16Bits);
  const uint4* k = reinterpret_cast<const uint4*>(page);
  const uint4* v = reinterpret_cast<const uint4*>(page + VCodesOffset(D, kF16Bits));
#pragma unroll
  for (int g = 0; g < W / 4; ++g) {
    const uint4 x = k[g * kWarpLanes + lane], y = v[g * kWarpLanes + lane];
    r.kw[4 * g] = x.x, r.kw[4 * g + 1] = x.y, r.kw[4 * g + 2] = x.z, r.kw[4 * g + 3] = x.w;
    r.vw[4 * g] = y.x, r.vw[4 * g + 1] = y.y, r.vw[4 * g + 2] = y.z, r.vw[4 * g + 3] = y.w;
  }
}

// fp16 chunks first, first + kWarps, ... < end through S shared-memory stages of this warp
// (buf: generic pointer, buf_sa / bar: shared addresses of stage 0 and its mbarrier). n counts
// the warp's staged chunks over the whole launch (stage n % S, phase parity (n / S) & 1); every
// call waits for all the copies it issues.
template <int D, int S, class IdxOf, class PtrOf, class ValidOf>
__device__ __forceinline__ void ProcessChunksStaged(int first, int end, IdxOf idx_of,
                                                    PtrOf ptr_of, ValidOf valid_of,
                                                    uint32_t page_bytes, int lane,
                                                    const uint32_t (&qa)[D / 16][2],
                                                    WarpState<D>& st, const uint8_t* buf,
                                                    uint32_t buf_sa, uint32_t bar, uint32_t& n) {
  int issue = first;  // next chunk to copy (lane 0)
  if (lane == 0) {
    for (uint32_t k = 0; k < S && issue < end; ++k, issue += kWarps) {
      const uint32_t s = (n + k) % S;
      BulkLoad(buf_sa + s * page_bytes, ptr_of(idx_of(issue)), page_bytes, bar + 8 * s);
    }
  }
  for (int c = first; c < end; c += kWarps, ++n) {
    const uint32_t s = n % S;
    BarWait(bar + 8 * s, (n / S) & 1);
    ChunkRegs<D, kF16Bits, kF16Bits> cur;
    LoadChunkShared<D>(buf + s * page_bytes, lane, cur);
    __syncwarp();
    if (lane == 0 && issue < end) {
      BulkLoad(buf_sa + s * page_bytes, ptr_of(idx_of(issue)), page_bytes, bar + 8 * s);
      issue += kWarps;
    }
    ComputeChunk<D, kF16Bits, kF16Bits>(cur, valid_of(c), lane, qa, 1.0f, 1.0f, st);
  }
}

// Rows of the pair table: 2^(2b) for the wider compressed side (0 for fp16/fp16).
template <int BK, int BV>
__host__ __device__ constexpr int LutRows() {
  const int rk = IsCompressed(BK) ? 1 << (2 * BK) : 0, rv = IsCompressed(BV) ? 1 << (2 * BV) : 0;
  return rk > rv ? rk : rv;
}
// Shared memory after the pair tables, in floats (group = query heads per KV head):
//   red:   the warps' partial O [warp][head][D]; later the rotation's slice sums, which need
//          (kThreads * 4 / D) slices x group x D = 1024 group floats;
//   ml:    the warps' (m, l) [warp][head] (float2);
//   xs:    the merged, normalized O of the group's heads [head][D];
//   stats: per head (max, 1 / sum) of the merge (float2), then one int: "this block merges".
struct SmemLayout {
  int red, ml, xs, stats, flag, total;
  __host__ __device__ SmemLayout(int d, int group) {
    const int red_floats = kWarps * group * d > 1024 * group ? kWarps * group * d : 1024 * group;
    red = 0, ml = red_floats, xs = ml + 2 * kWarps * group, stats = xs + group * d;
    flag = stats + 2 * kMaxGroup, total = flag + 4;
  }
};
template <int D, int BK, int BV>
size_t AttnSmemBytes(int group) {
  return size_t(LutRows<BK, BV>()) * kLutRowBytes + size_t(SmemLayout(D, group).total) * 4;
}
// Staged fp16 kernels (S > 0): S mbarriers per warp, then S page buffers per warp, after the
// rest (128-byte aligned).
__host__ __device__ constexpr uint32_t StageBarOffset(uint32_t base_bytes) {
  return (base_bytes + 127) / 128 * 128;
}
__host__ __device__ constexpr uint32_t StageBufOffset(uint32_t base_bytes, int s) {
  return StageBarOffset(base_bytes) + (uint32_t(kWarps * s * 8) + 127) / 128 * 128;
}
template <int D, int BK, int BV, int S>
size_t AttnSmemBytesStaged(int group) {
  const uint32_t base = uint32_t(AttnSmemBytes<D, BK, BV>(group));
  return S == 0 ? base : StageBufOffset(base, S) + size_t(kWarps) * S * 64 * D;
}

// Merges the n_splits partial results of KV head bh (part_o / part_ml, written by other blocks of
// this launch: read through L2) into xs = O / L per head of the group. One pass: each thread
// keeps its own running max, weight sum and four output coordinates, taking the splits in
// batches of kBatch whose (m, l) and O loads are all issued before any is used: one L2 round trip
// per batch (the head's version, max, then sum, then weighted O, waited on three; and a loop with
// a data-dependent rescale per split let ptxas issue one O load per round trip). The weight sum
// is computed redundantly by each thread of a head.
template <int D>
__device__ __forceinline__ void MergeSplits(const AttnArgs& a, int bh, float* xs) {
  constexpr int kBatch = 8, kQuads = D / 4;
  const int group = a.group, t = threadIdx.x;
  const size_t first = size_t(bh) * a.n_splits;
  for (int qi = t; qi < group * kQuads; qi += kThreads) {
    const int g = qi / kQuads, j4 = qi % kQuads;
    float m = -INFINITY, l = 0;
    float4 acc = make_float4(0, 0, 0, 0);
    for (int s0 = 0; s0 < a.n_splits; s0 += kBatch) {
      float2 ml[kBatch];
      float4 o[kBatch];
#pragma unroll
      for (int k = 0; k < kBatch; ++k) {
        ml[k] = make_float2(-INFINITY, 0.0f), o[k] = make_float4(0, 0, 0, 0);
        if (s0 + k < a.n_splits) {
          const size_t row = (first + s0 + k) * group + g;
          o[k] = __ldcg(reinterpret_cast<const float4*>(a.part_o + row * D) + j4);
          ml[k] = __ldcg(a.part_ml + row);
        }
      }
      float bm = m;
#pragma unroll
      for (int k = 0; k < kBatch; ++k) bm = fmaxf(bm, ml[k].x);
      if (bm > m) {  // a new maximum (m = -inf at first: scale 0)
        const float c = exp2f(m - bm);
        acc.x *= c, acc.y *= c, acc.z *= c, acc.w *= c, l *= c;
        m = bm;
      }
#pragma unroll
      for (int k = 0; k < kBatch; ++k) {
        const float w = ml[k].x == -INFINITY ? 0.0f : exp2f(ml[k].x - m);
        acc.x = fmaf(w, o[k].x, acc.x), acc.y = fmaf(w, o[k].y, acc.y);
        acc.z = fmaf(w, o[k].z, acc.z), acc.w = fmaf(w, o[k].w, acc.w);
        l = fmaf(w, ml[k].y, l);
      }
    }
    const float inv = l > 0 ? 1.0f / l : 0.0f;
    reinterpret_cast<float4*>(xs + g * D)[j4] =
        make_float4(acc.x * inv, acc.y * inv, acc.z * inv, acc.w * inv);
  }
}

// out rows of KV head (b, h) = R_v^T xs per head (rot_v null: xs). Thread t takes outputs
// 4 (t % (D / 4)) .. + 3 of every head over a slice of D^2 / 1024 rows j of R_v, all its 16-byte
// loads of R_v issued together; the slices are summed through `part` (1024 group floats).
template <int D>
__device__ __forceinline__ void RotateOut(const AttnArgs& a, int b, int h, const float* xs,
                                          float* part) {
  const int group = a.group, t = threadIdx.x;
  float* out = a.out + (size_t(b) * a.n_heads + size_t(h) * group) * D;
  if (!a.rot_v) {
    for (int i = t; i < group * D; i += kThreads) out[i] = xs[i];
    return;
  }
  constexpr int kQuads = D / 4, kSlices = kThreads / kQuads, kRows = D / kSlices;
  const int q = t % kQuads, slice = t / kQuads;
  float4 acc[kMaxGroup];
#pragma unroll
  for (int g = 0; g < kMaxGroup; ++g) acc[g] = make_float4(0, 0, 0, 0);
#pragma unroll 8
  for (int r = 0; r < kRows; ++r) {
    const int j = slice * kRows + r;
    const float4 w = __ldg(reinterpret_cast<const float4*>(a.rot_v + size_t(j) * D) + q);
#pragma unroll
    for (int g = 0; g < kMaxGroup; ++g) {
      if (g < group) {
        const float x = xs[g * D + j];
        acc[g].x = fmaf(w.x, x, acc[g].x), acc[g].y = fmaf(w.y, x, acc[g].y);
        acc[g].z = fmaf(w.z, x, acc[g].z), acc[g].w = fmaf(w.w, x, acc[g].w);
      }
    }
  }
#pragma unroll
  for (int g = 0; g < kMaxGroup; ++g)
    if (g < group) reinterpret_cast<float4*>(part + (slice * group + g) * D)[q] = acc[g];
  __syncthreads();
  for (int i = t; i < group * D; i += kThreads) {
    const int g = i / D, j = i % D;
    float y = 0;
#pragma unroll
    for (int sl = 0; sl < kSlices; ++sl) y += part[(sl * group + g) * D + j];
    out[i] = y;
  }
}

template <int D, int BK, int BV, int S = 0>
__global__ void __launch_bounds__(kThreads, S > 0 ? 1 : (D <= 128 ? 2 : 1))
    AttendSplitKernel(AttnArgs a) {
  static_assert(S == 0 || (BK == kF16Bits && BV == kF16Bits), "staging is for fp16 pages");
  constexpr int kLutBytes = LutRows<BK, BV>() * kLutRowBytes;
  if (uint32_t(__cvta_generic_to_shared(g_smem)) != kSmemBase) __trap();  // see kSmemBase
  AllowDependents();
  const SmemLayout lay(D, a.group);
  float* const sm = reinterpret_cast<float*>(g_smem + kLutBytes);
  float* red_o = sm + lay.red;                                  // [warp][head][D]
  float2* red_ml = reinterpret_cast<float2*>(sm + lay.ml);      // [warp][head]
  float* xs = sm + lay.xs;                                      // [head][D]
  int* flag = reinterpret_cast<int*>(sm + lay.flag);
  // Thread r fills row r (rows <= 256 = threads): one global load per side, then 16 16-byte
  // stores in an order rotated by the thread, so a warp's stores spread over the banks. (A
  // word-per-thread loop waits on a global load every few words: ~8 us per block.)
  static_assert(LutRows<BK, BV>() <= kThreads, "one table row per thread");
  if constexpr (kLutBytes > 0) {
    constexpr int kRowsK = IsCompressed(BK) ? 1 << (2 * BK) : 0;
    constexpr int kRowsV = IsCompressed(BV) ? 1 << (2 * BV) : 0;
    const int row = threadIdx.x;
    if (row < LutRows<BK, BV>()) {
      const uint32_t kv = row < kRowsK ? a.lut_k[row] : 0u, vv = row < kRowsV ? a.lut_v[row] : 0u;
      const uint4 k4 = make_uint4(kv, kv, kv, kv), v4 = make_uint4(vv, vv, vv, vv);
      uint4* dst = reinterpret_cast<uint4*>(g_smem + row * kLutRowBytes);
#pragma unroll
      for (int j = 0; j < kLutRowBytes / 16; ++j) {
        const int q = (j + row) % (kLutRowBytes / 16);
        dst[q] = q < kLutRowBytes / 32 ? k4 : v4;
      }
    }
  }
  // The tables are the codec's (written long before); everything else may come from the
  // previous kernel in the stream.
  GridWait();
  __syncthreads();

  const int lane = threadIdx.x % kWarpLanes, warp = threadIdx.x / kWarpLanes;
  const int gid = lane / 4, tig = lane % 4;
  const int n_items = a.batch * a.n_kv_heads * a.n_splits;
  [[maybe_unused]] uint32_t n_staged = 0;
  [[maybe_unused]] uint32_t stage_bar = 0, stage_sa = 0;
  [[maybe_unused]] const uint8_t* stage_buf = nullptr;
  if constexpr (S > 0) {
    const uint32_t base = uint32_t(kLutBytes + lay.total * 4);
    stage_bar = kSmemBase + StageBarOffset(base) + uint32_t(warp * S * 8);
    const uint32_t buf_off = StageBufOffset(base, S) + uint32_t(warp * S * 64 * D);
    stage_sa = kSmemBase + buf_off;
    stage_buf = g_smem + buf_off;
    if (lane == 0) {
      for (int k = 0; k < S; ++k) BarInit(stage_bar + 8 * k);
      BarInitFence();
    }
    __syncwarp();
  }
  for (int item = blockIdx.x; item < n_items; item += gridDim.x) {
    const int split = item % a.n_splits;
    const int bh = item / a.n_splits;
    const int h = bh % a.n_kv_heads, b = bh / a.n_kv_heads;
    const int len = a.seq_lens[b];

    uint32_t qa[D / 16][2];
    const bool row_used = gid < a.group;
    const size_t q_row = (size_t(b) * a.n_heads + h * a.group + (row_used ? gid : 0)) * D;
    if (a.q_f32) {  // identity rotation: q * scale straight to fp16
      // Every load first, then the conversions: with loads and conversions in one loop, ptxas
      // reused two registers and waited on each load in turn (8 L2 round trips per item at
      // d = 128, several us at batch 1).
      const float* q = a.q_f32 + q_row;
      float2 lo[D / 16], hi[D / 16];
#pragma unroll
      for (int ks = 0; ks < D / 16; ++ks) {
        lo[ks] = __ldg(reinterpret_cast<const float2*>(q + 16 * ks + 2 * tig));
        hi[ks] = __ldg(reinterpret_cast<const float2*>(q + 16 * ks + 8 + 2 * tig));
      }
#pragma unroll
      for (int ks = 0; ks < D / 16; ++ks) {
        qa[ks][0] = row_used ? PackHalf2(lo[ks].x * a.q_scale, lo[ks].y * a.q_scale) : 0u;
        qa[ks][1] = row_used ? PackHalf2(hi[ks].x * a.q_scale, hi[ks].y * a.q_scale) : 0u;
      }
    } else {
      const __half* q = a.q_rot + q_row;
#pragma unroll
      for (int ks = 0; ks < D / 16; ++ks) {
        qa[ks][0] = row_used ? *reinterpret_cast<const uint32_t*>(q + 16 * ks + 2 * tig) : 0u;
        qa[ks][1] = row_used ? *reinterpret_cast<const uint32_t*>(q + 16 * ks + 8 + 2 * tig) : 0u;
      }
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
      const size_t page_bytes = a.f16_page_bytes;
      const size_t stride = size_t(a.n_kv_heads) * page_bytes;
      const uint8_t* base = a.f16_region + size_t(b) * a.f16_chunks * stride + size_t(h) * page_bytes;
      // Index u over used chunks: u < sink_used are sink chunks, the rest ring chunks.
      ProcessChunks<D, kF16Bits, kF16Bits>(
          warp, sink_used + ring_used,
          [=](int u) { return u < sink_used ? u : sink_chunks + (u - sink_used); },
          [=](int idx) { return base + size_t(idx) * stride; },
          [=](int u) {
            return u < sink_used ? sink_valid - u * kChunkTokens
                                 : ring_valid - (u - sink_used) * kChunkTokens;
          },
          uint32_t(page_bytes), 0, lane, qa, 1.0f, 1.0f, st);
    }
    {
      const int n_comp = max(0, len - a.sink_tokens - a.recent_tokens);
      const int n_chunks = (n_comp + kChunkTokens - 1) / kChunkTokens;
      const int32_t* table = a.block_table + size_t(b) * a.max_chunks;
      const size_t stride = size_t(a.n_kv_heads) * a.page_bytes;
      const uint8_t* base = a.pages + size_t(h) * a.page_bytes;
      const int first = split * a.chunks_per_split + warp;
      const int end = min((split + 1) * a.chunks_per_split, n_chunks);
      const auto idx_of = [=](int c) { return __ldg(table + c); };
      const auto ptr_of = [=](int idx) { return base + size_t(idx) * stride; };
      const auto valid_of = [=](int c) { return n_comp - c * kChunkTokens; };
      if constexpr (S > 0) {
        ProcessChunksStaged<D, S>(first, end, idx_of, ptr_of, valid_of, uint32_t(a.page_bytes),
                                  lane, qa, st, stage_buf, stage_sa, stage_bar, n_staged);
      } else {
        ProcessChunks<D, BK, BV>(first, end, idx_of, ptr_of, valid_of, uint32_t(a.page_bytes),
                                 a.l2_prefetch, lane, qa, a.k_inv_alpha, a.v_inv_alpha, st);
      }
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
    {
    // (sequence, KV head) again from an opaque copy of item: kept live across the chunk loops,
    // they cost the loops registers (the loops run at the 128-register cap).
    int item_again;
    asm volatile("mov.b32 %0, %1;\n" : "=r"(item_again) : "r"(item));
    const int bh = item_again / a.n_splits;
    const int h = bh % a.n_kv_heads, b = bh / a.n_kv_heads;
    // One split alone (fused): its block result is the answer, no trip through global memory.
    const bool direct = a.counters && a.n_splits == 1;
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
      if (direct) {
        xs[idx] = ll > 0 ? acc / ll : 0.0f;
      } else {
        const size_t row = size_t(item) * a.group + g;
        a.part_o[row * D + j] = acc;
        if (j == 0) a.part_ml[row] = make_float2(mm, ll);
      }
    }
    if (a.counters && !direct) {
      // Publish this split, then count it; the block that brings the count to n_splits merges
      // (threadfence-reduction pattern: each writer fences, one atomic per block).
      __threadfence();
      __syncthreads();
      if (threadIdx.x == 0) {
        const int prev = atomicAdd(a.counters + bh, 1);
        const int last = prev == a.n_splits - 1;
        if (last) atomicExch(a.counters + bh, 0);  // ready for the next launch
        *flag = last;
      }
      __syncthreads();
      const bool last = *flag != 0;
      if (last) {
        __threadfence();
        MergeSplits<D>(a, bh, xs);
      }
      __syncthreads();  // xs written, red_o free; every thread has read the flag
      if (last) {
        RotateOut<D>(a, b, h, xs, red_o);
        __syncthreads();
      }
    } else if (direct) {
      __syncthreads();
      RotateOut<D>(a, b, h, xs, red_o);
      __syncthreads();
    } else {
      __syncthreads();
    }
    }
  }
}

constexpr int kMergeThreads = 256;
constexpr int kMergeSlices = kMergeThreads / kWarpLanes;

// y[i] = sum_j m[j * dim + i] x[j] for one block of kMergeThreads: thread t takes outputs
// 4 (t % (dim / 4)) .. + 3 over a slice of dim^2 / 1024 rows j, all its 16-byte loads issued
// together (one L2 latency, not one per row), then the slices are summed through `part`
// (kMergeThreads * 4 floats). x and part in shared memory; returns y for i = t < dim, else 0.
__device__ __forceinline__ float MatVecT(const float* m, const float* x, float* part, int dim) {
  const int t = threadIdx.x, quads = dim / 4, slices = kMergeThreads / quads;
  const int q = t % quads, slice = t / quads, rows = dim / slices;
  float4 acc = make_float4(0, 0, 0, 0);
#pragma unroll 16
  for (int r = 0; r < rows; ++r) {
    const int j = slice * rows + r;
    const float4 w = __ldg(reinterpret_cast<const float4*>(m + size_t(j) * dim) + q);
    const float xj = x[j];
    acc.x = fmaf(w.x, xj, acc.x), acc.y = fmaf(w.y, xj, acc.y);
    acc.z = fmaf(w.z, xj, acc.z), acc.w = fmaf(w.w, xj, acc.w);
  }
  reinterpret_cast<float4*>(part)[slice * quads + q] = acc;
  __syncthreads();
  float y = 0;
  if (t < dim) {
    for (int sl = 0; sl < slices; ++sl) y += part[sl * dim + t];
  }
  return y;
}

// q_rot[b][head] = fp16(scale * log2(e) * R_k q): one block of kMergeThreads per (sequence, head).
__global__ void __launch_bounds__(kMergeThreads)
RotateQueriesKernel(const float* q, const float* rot_t, float scale, int dim, __half* q_rot) {
  extern __shared__ float xs[];  // x[dim], then part[kMergeThreads * 4]
  AllowDependents();
  GridWait();
  const int t = threadIdx.x;
  if (t < dim) xs[t] = q[size_t(blockIdx.x) * dim + t];
  __syncthreads();
  const float y = MatVecT(rot_t, xs, xs + dim, dim);
  if (t < dim) q_rot[size_t(blockIdx.x) * dim + t] = __float2half_rn(y * scale);
}

// Combines the splits of one (sequence, head) and rotates back: out = R_v^T (O / L) (rot_v null:
// identity). 256 threads:
// 8 slices of a warp each take every 8th split (lane: dim / 32 coordinates), then one sum.
__global__ void __launch_bounds__(kMergeThreads)
MergeKernel(const float* part_o, const float2* part_ml, int n_splits, int group, int n_heads,
            int n_kv_heads, int dim, const float* rot_v, float* out) {
  extern __shared__ float sm[];  // [kMergeSlices][dim] partial sums, orot[dim], MatVecT's part
  __shared__ float red[kMergeThreads / kWarpLanes];
  __shared__ float mm_sh;
  AllowDependents();
  GridWait();
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
  if (rot_v) {
    const float y = MatVecT(rot_v, orot, orot + dim, dim);
    if (t < dim) out[size_t(blockIdx.x) * dim + t] = y;
  } else {  // identity rotation
    if (t < dim) out[size_t(blockIdx.x) * dim + t] = orot[t];
  }
}

// Writes where dynamic shared memory starts (same shape as the attention kernel: no static
// shared memory, no cluster).
__global__ void SmemBaseKernel(uint32_t* out) { *out = uint32_t(__cvta_generic_to_shared(g_smem)); }
}  // namespace
}  // namespace tqlm::cuda
