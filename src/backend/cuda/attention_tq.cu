// Attention over the TurboQuant KV cache (tq_kv_kernels.h), one kernel for prefill and decode,
// flash-attention style on tensor cores (mma.m16n8k16) with split keys as in flash-decoding.
//
// Tiles: the sinks [0, S) in tiles of 64 positions, then main block b = tile nST + b
// (nST = ceil(S / 64)); a split is 4 tiles at fixed tile indices, so a query's reduction order
// depends only on its position (batch- and chunking-invariant, as for the f16 cache). Each warp
// owns 16 query rows and one split and walks the split's tiles alone (a block holds one warp in
// decode steps, four in prefill chunks): a row's arithmetic never depends on the other rows of
// its block. For each tile a row sees either the raw rows (fp16) or the compressed block, by the
// CPU's rule p >= end_b + recent; a tile that some of a warp's rows see raw and others
// compressed is run twice with the other rows masked (a masked row's state is left
// bit-identical, see attention_f16.cu). Compressed blocks are staged whole into the warp's
// shared memory with cp.async, the next one while the current one is used, and their codes are
// decoded straight into mma fragments (see "Decoding codes" below).
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

// --- Decoding codes straight into mma fragments ---------------------------------------------
// A warp owns 16 query rows and walks one split's tiles with an online softmax. The tensor-core
// k index is permuted so that a lane's fragment values are 4 codes that sit together in a unit:
//   scores:  logical k pair (2 tig, 2 tig + 1) / (2 tig + 8, 2 tig + 9) of k-step ks are the
//            dimensions 16 ks + 4 tig + {0, 1} / {2, 3} (queries are loaded the same way);
//   keys:    score column n of n-tile j is the tile's key 16 (j / 2) + 4 (n / 2) + 2 (j % 2) + n % 2,
//            so that P's k pairs in P V are the keys 16 ks + 4 tig + {0, 1} / {2, 3}: one value
//            unit's 4 tokens at one coordinate.
// Fragments hold bare levels (one table lookup per two codes); the key norms and the center
// (q . center, an extra n-tile) are applied to the fp32 scores, the value norms to P.

constexpr int kWarpRows = 16;  // query rows per warp (the mma M dimension)
constexpr int kMaxWarps = 4;   // warps per block in prefill chunks; decode steps use one
constexpr int kTableBytes = 4 * 256 * 4;  // level tables: K hi, K lo, V hi, V lo
constexpr int kTwoBufferSmem = 110 * 1024;  // above this, one staging buffer per warp

// Shared memory of a block: the tables, then per warp its query rows (fp16) and `nbuf` staging
// buffers of one K block (k_bytes) and one V block (v_bytes).
struct TqSmemPlan {
  int warp_bytes = 0, k_bytes = 0, v_bytes = 0, nbuf = 1;
};

__device__ __forceinline__ uint32_t Lds32(const uint8_t* p) {
  return *reinterpret_cast<const uint32_t*>(p);
}
__device__ __forceinline__ uint2 Ld64(const void* p) { return *reinterpret_cast<const uint2*>(p); }

__device__ __forceinline__ void CpAsync16(void* dst, const void* src) {
  const uint32_t d = static_cast<uint32_t>(__cvta_generic_to_shared(dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(d), "l"(src) : "memory");
}
__device__ __forceinline__ void CpAsyncCommit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void CpAsyncWait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

// The 4 bits of h, one to each byte's bit 0.
__device__ __forceinline__ uint32_t Spread4(uint32_t h) {
  return (h & 1u) | ((h & 2u) << 7) | ((h & 4u) << 14) | ((h & 8u) << 21);
}

// Codes 4 q .. 4 q + 3 of a unit of B-bit codes (UnitCode's packing), one per byte.
template <int B>
__device__ __forceinline__ uint32_t Codes4(const uint8_t* unit, int q) {
  if constexpr (B == 8) {
    return Lds32(unit + 4 * q);
  } else if constexpr (B == 4) {
    return (Lds32(unit + 4 * (q & 7)) >> (4 * (q >> 3))) & 0x0F0F0F0Fu;
  } else if constexpr (B == 2 || B == 3) {
    uint32_t x = (Lds32(unit + 4 * (q & 3)) >> (2 * (q >> 2))) & 0x03030303u;
    if constexpr (B == 3)
      x |= Spread4((Lds32(unit + 16 + 4 * (q >> 3)) >> (4 * (q & 7))) & 15u) << 2;
    return x;
  } else {
    return Spread4((Lds32(unit + 4 * (q >> 3)) >> (4 * (q & 7))) & 15u);
  }
}

// Table entry i: B <= 4, the fp16 pair (level[i % 2^B], level[i / 2^B]); B = 8, one fp16 level.
__device__ __forceinline__ uint32_t TableEntry(const float* lev, int bits, int i) {
  if (bits == 8) return __half_as_ushort(__float2half_rn(lev[i]));
  if (i >= (1 << (2 * bits))) return 0;
  return ptx::PackHalf2(lev[i & ((1 << bits) - 1)], lev[i >> bits]);
}

// The fp16 level pairs of codes (0, 1) and (2, 3) of x's bytes.
template <int B>
__device__ __forceinline__ void Levels4(const uint32_t* tab, uint32_t x, uint32_t& b0,
                                        uint32_t& b1) {
  if constexpr (B == 8) {
    b0 = __byte_perm(tab[x & 255u], tab[(x >> 8) & 255u], 0x5410);
    b1 = __byte_perm(tab[(x >> 16) & 255u], tab[x >> 24], 0x5410);
  } else {
    constexpr uint32_t kMask = (1u << (2 * B)) - 1;
    const uint32_t y = x | (x >> (8 - B));
    b0 = tab[y & kMask];
    b1 = tab[(y >> 16) & kMask];
  }
}

template <int H, int L>
struct Bits {
  static constexpr int kHi = H, kLo = L;
};
// Calls fn(Bits<hi, lo>{}) for the format's widths (the TurboQuant types' pairs).
template <class F>
__device__ __forceinline__ void WithBits(const TqFormat& f, F&& fn) {
  switch (f.hi_bits * 16 + f.lo_bits) {
    case 8 * 16 + 8: fn(Bits<8, 8>{}); break;
    case 4 * 16 + 4: fn(Bits<4, 4>{}); break;
    case 4 * 16 + 3: fn(Bits<4, 3>{}); break;
    case 3 * 16 + 3: fn(Bits<3, 3>{}); break;
    case 3 * 16 + 2: fn(Bits<3, 2>{}); break;
    default: fn(Bits<2, 2>{}); break;
  }
}

// The A fragment of k-step ks (permuted k, see above) of the warp's 16 query rows.
template <int kDim>
__device__ __forceinline__ void LoadA(uint32_t (&a)[4], const __half* qs, int ks, int gid, int tig) {
  constexpr int kS = kDim + 8;
  const uint2 lo = Ld64(qs + gid * kS + 16 * ks + 4 * tig);
  const uint2 hi = Ld64(qs + (gid + 8) * kS + 16 * ks + 4 * tig);
  a[0] = lo.x;
  a[1] = hi.x;
  a[2] = lo.y;
  a[3] = hi.y;
}

template <int B>
__device__ __forceinline__ void KeyCodeStep(float (&s)[8][4], const uint32_t (&a)[4],
                                            const uint8_t* unit, int row_bytes,
                                            const uint32_t* tab, int q0) {
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    uint32_t b0, b1;
    Levels4<B>(tab, Codes4<B>(unit + (j / 2) * row_bytes, q0 + 2 * (j % 2)), b0, b1);
    ptx::Mma16816(s[j], a[0], a[1], a[2], a[3], b0, b1);
  }
}

// Scores against a key block's levels (s) and against its center (cc, when centered).
template <int kDim, class BitsT>
__device__ __forceinline__ void KeyCodeScores(float (&s)[8][4], float (&cc)[4], const __half* qs,
                                              const uint8_t* kb, const TqFormat& f,
                                              const uint32_t* tab, int gid, int tig) {
  constexpr int HB = BitsT::kHi, LB = BitsT::kLo;
  const int q0 = 4 * (gid / 2) + gid % 2;
  const int hi_groups = f.n_hi / 4;
  const __half* center = reinterpret_cast<const __half*>(kb + f.center_offset);
#pragma unroll
  for (int ks = 0; ks < kDim / 16; ++ks) {
    uint32_t a[4];
    LoadA<kDim>(a, qs, ks, gid, tig);
    const int g = 4 * ks + tig;
    if (HB == LB || g < hi_groups) {
      KeyCodeStep<HB>(s, a, kb + g * UnitBytes(HB), f.k_row_bytes, tab, q0);
    } else {
      KeyCodeStep<LB>(s, a, kb + hi_groups * UnitBytes(HB) + (g - hi_groups) * UnitBytes(LB),
                      f.k_row_bytes, tab + 256, q0);
    }
    if (f.centered) {
      const uint2 c = Ld64(center + 16 * ks + 4 * tig);
      ptx::Mma16816(cc, a[0], a[1], a[2], a[3], c.x, c.y);
    }
  }
}

// Scores against raw fp16 rows (krow: element offsets of the lane's 8 keys, -1 for none).
template <int kDim>
__device__ __forceinline__ void KeyRawScores(float (&s)[8][4], const __half* qs,
                                             const __half* kraw, const int (&krow)[8], int gid,
                                             int tig) {
#pragma unroll
  for (int ks = 0; ks < kDim / 16; ++ks) {
    uint32_t a[4];
    LoadA<kDim>(a, qs, ks, gid, tig);
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      uint2 u = make_uint2(0, 0);
      if (krow[j] >= 0) u = __ldg(reinterpret_cast<const uint2*>(kraw + krow[j] + 16 * ks + 4 * tig));
      ptx::Mma16816(s[j], a[0], a[1], a[2], a[3], u.x, u.y);
    }
  }
}

// O += P V over a value block's levels (P already scaled by the value norms).
template <int kDim, class BitsT>
__device__ __forceinline__ void ValueCodePV(float (&o)[kDim / 8][4], const uint32_t (&pa)[4][4],
                                            const uint8_t* vb, const TqFormat& f,
                                            const uint32_t* tab, int gid, int tig) {
  constexpr int HB = BitsT::kHi, LB = BitsT::kLo;
  const int hi_chunks = f.n_hi / 16;
#pragma unroll
  for (int d = 0; d < kDim / 8; ++d) {
    const int c = d / 2, qv = 8 * (d % 2) + gid;
    const bool hi = HB == LB || c < hi_chunks;
    const int ub = hi ? UnitBytes(HB) : UnitBytes(LB);
    const uint8_t* chunk = vb + (hi ? c * 16 * UnitBytes(HB)
                                    : hi_chunks * 16 * UnitBytes(HB) +
                                          (c - hi_chunks) * 16 * UnitBytes(LB));
#pragma unroll
    for (int ks = 0; ks < kTqBlock / 16; ++ks) {
      const uint8_t* unit = chunk + (4 * ks + tig) * ub;
      uint32_t b0, b1;
      if (hi) Levels4<HB>(tab, Codes4<HB>(unit, qv), b0, b1);
      else Levels4<LB>(tab + 256, Codes4<LB>(unit, qv), b0, b1);
      ptx::Mma16816(o[d], pa[ks][0], pa[ks][1], pa[ks][2], pa[ks][3], b0, b1);
    }
  }
}

// O += P V over raw fp16 rows (vrow[4 ks + e]: element offset of key 16 ks + 4 tig + e, or -1).
template <int kDim>
__device__ __forceinline__ void ValueRawPV(float (&o)[kDim / 8][4], const uint32_t (&pa)[4][4],
                                           const __half* vraw, const int (&vrow)[16], int gid) {
  const unsigned short* v = reinterpret_cast<const unsigned short*>(vraw);
#pragma unroll
  for (int d = 0; d < kDim / 8; ++d) {
#pragma unroll
    for (int ks = 0; ks < kTqBlock / 16; ++ks) {
      uint32_t h[4];
#pragma unroll
      for (int e = 0; e < 4; ++e)
        h[e] = vrow[4 * ks + e] >= 0 ? __ldg(v + vrow[4 * ks + e] + 8 * d + gid) : 0u;
      ptx::Mma16816(o[d], pa[ks][0], pa[ks][1], pa[ks][2], pa[ks][3], h[0] | (h[1] << 16),
                    h[2] | (h[3] << 16));
    }
  }
}

template <int kDim>
__global__ void __launch_bounds__(kMaxWarps * 32)
    TqFlashKernel(TqAttendArgs a, const float* q, int n_splits, int tokens_per_cta,
                  TqSmemPlan plan) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  constexpr int kS = kDim + 8;
  const TqLayerParams& P = a.p;
  const int G = P.n_heads / P.n_kv_heads, S = P.sinks;
  const int kvh = blockIdx.y, split = blockIdx.z;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, gid = lane / 4, tig = lane % 4;

  uint32_t* tab = reinterpret_cast<uint32_t*>(smem_raw);
  for (int i = threadIdx.x; i < 256; i += blockDim.x) {
    if (P.k_comp) {
      tab[i] = TableEntry(P.kf.levels_hi, P.kf.hi_bits, i);
      tab[256 + i] = TableEntry(P.kf.levels_lo, P.kf.lo_bits, i);
    }
    if (P.v_comp) {
      tab[512 + i] = TableEntry(P.vf.levels_hi, P.vf.hi_bits, i);
      tab[768 + i] = TableEntry(P.vf.levels_lo, P.vf.lo_bits, i);
    }
  }
  __syncthreads();  // the only block-wide barrier: from here on each warp works alone

  const int t0 = blockIdx.x * tokens_per_cta;
  const int t_end = min(a.step.n, t0 + tokens_per_cta);
  const int r0 = warp * kWarpRows;
  const int n_rows = min(kWarpRows, (t_end - t0) * G - r0);
  if (n_rows <= 0) return;
  const int wt0 = t0 + r0 / G, wt1 = t0 + (r0 + n_rows - 1) / G;  // the warp's tokens
  int lo_min = INT_MAX, hi_max = -1;
  for (int t = wt0; t <= wt1; ++t) {
    const int p = a.step.tok_pos[t];
    lo_min = min(lo_min, KeyBegin(p, P.window));
    hi_max = max(hi_max, p);
  }
  const int i_first = max(split * kTilesPerSplit, TileOf(lo_min, S));
  const int i_last = min(split * kTilesPerSplit + kTilesPerSplit - 1, TileOf(hi_max, S));
  if (i_first > i_last) return;

  const TqKvLayer L = a.step.seq_tables[a.step.tok_seq[t0]][a.step.layer];
  const int row_stride = P.n_kv_heads * kDim;
  const __half* kraw = reinterpret_cast<const __half*>(L.raw_k) + size_t(kvh) * kDim;
  const __half* vraw = reinterpret_cast<const __half*>(L.raw_v) + size_t(kvh) * kDim;
  const bool comp_layer = P.k_comp || P.v_comp;
  const int nst = SinkTiles(S);

  unsigned char* wbase = smem_raw + kTableBytes + warp * plan.warp_bytes;
  __half* qs = reinterpret_cast<__half*>(wbase);
  unsigned char* bufs = wbase + kWarpRows * kS * int(sizeof(__half));
  const int buf_bytes = plan.k_bytes + plan.v_bytes;

  const float qscale = a.scale * kLog2e;
  for (int i = lane; i < kWarpRows * kDim / 2; i += 32) {
    const int r = i / (kDim / 2), c = (i % (kDim / 2)) * 2;
    float2 f = make_float2(0, 0);
    if (r < n_rows) {
      const int row = r0 + r, t = t0 + row / G, head = kvh * G + row % G;
      f = *reinterpret_cast<const float2*>(q + (size_t(t) * P.n_heads + head) * kDim + c);
    }
    *reinterpret_cast<uint32_t*>(&qs[r * kS + c]) = ptx::PackHalf2(f.x * qscale, f.y * qscale);
  }
  int p_row[2], lo_row[2];
  for (int h = 0; h < 2; ++h) {
    const int r = gid + 8 * h;
    if (r < n_rows) {
      p_row[h] = a.step.tok_pos[t0 + (r0 + r) / G];
      lo_row[h] = KeyBegin(p_row[h], P.window);
    } else {
      p_row[h] = -1;
      lo_row[h] = 0;
    }
  }

  // Which views of a tile the warp's rows need: bit 0 raw, bit 1 compressed.
  auto passes_of = [&](int tile) {
    const int ts = TileStart(tile, S), te = TileEnd(tile, S);
    const int comp_from =
        comp_layer && tile >= nst ? S + (tile - nst + 1) * kTqBlock + P.recent : INT_MAX;
    int m = 0;
    for (int t = wt0; t <= wt1; ++t) {
      const int p = a.step.tok_pos[t];
      if (p < ts || KeyBegin(p, P.window) >= te) continue;
      m |= p >= comp_from ? 2 : 1;
    }
    return m;
  };
  auto copy = [&](unsigned char* dst, const uint8_t* src, int bytes) {
    for (int off = 16 * lane; off < bytes; off += 16 * 32) CpAsync16(dst + off, src + off);
  };
  auto stage = [&](int tile, unsigned char* buf) {
    const size_t b = size_t(tile - nst);
    if (P.k_comp) copy(buf, L.comp_k + (b * P.n_kv_heads + kvh) * P.kf.block_stride, plan.k_bytes);
    if (P.v_comp)
      copy(buf + plan.k_bytes, L.comp_v + (b * P.n_kv_heads + kvh) * P.vf.block_stride,
           plan.v_bytes);
  };

  constexpr int kDT = kDim / 8;
  float o[kDT][4];
#pragma unroll
  for (int d = 0; d < kDT; ++d) o[d][0] = o[d][1] = o[d][2] = o[d][3] = 0;
  float m_row[2] = {kNoMax, kNoMax}, l_row[2] = {0, 0};

  int passes = passes_of(i_first);
  if (passes & 2) stage(i_first, bufs);
  CpAsyncCommit();
  for (int tile = i_first, k = 0; tile <= i_last; ++tile, ++k) {
    unsigned char* buf = bufs + (k % plan.nbuf) * buf_bytes;
    const int next = tile < i_last ? passes_of(tile + 1) : 0;
    if (plan.nbuf == 2) {
      if (next & 2) stage(tile + 1, bufs + ((k + 1) % 2) * buf_bytes);
      CpAsyncCommit();
      CpAsyncWait<1>();
    } else {
      CpAsyncWait<0>();
    }
    __syncwarp();
    const int ts = TileStart(tile, S), te = TileEnd(tile, S);
    const int comp_from =
        comp_layer && tile >= nst ? S + (tile - nst + 1) * kTqBlock + P.recent : INT_MAX;
    for (int pass = 0; pass < 2; ++pass) {
      if (!((passes >> pass) & 1)) continue;
      const bool kc = pass == 1 && P.k_comp, vc = pass == 1 && P.v_comp;
      const uint8_t* kb = buf;
      const uint8_t* vb = buf + plan.k_bytes;
      float s[8][4];
#pragma unroll
      for (int j = 0; j < 8; ++j) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0;
      if (kc) {
        float cc[4] = {0, 0, 0, 0};
        WithBits(P.kf, [&](auto bits) {
          KeyCodeScores<kDim, decltype(bits)>(s, cc, qs, kb, P.kf, tab, gid, tig);
        });
        const __half* nk = reinterpret_cast<const __half*>(kb + P.kf.norms_offset);
#pragma unroll
        for (int sb = 0; sb < 4; ++sb) {
          const uint2 n4 = Ld64(nk + 16 * sb + 4 * tig);
          const __half2 n01 = *reinterpret_cast<const __half2*>(&n4.x);
          const __half2 n23 = *reinterpret_cast<const __half2*>(&n4.y);
          const float nn[4] = {__low2float(n01), __high2float(n01), __low2float(n23),
                               __high2float(n23)};
#pragma unroll
          for (int h = 0; h < 2; ++h)
#pragma unroll
            for (int e = 0; e < 4; ++e)
              s[2 * sb + h][e] = fmaf(nn[2 * h + e % 2], s[2 * sb + h][e], cc[e & 2]);
        }
      } else {
        int krow[8];
#pragma unroll
        for (int j = 0; j < 8; ++j) {
          const int key = ts + 16 * (j / 2) + 4 * (gid / 2) + 2 * (j % 2) + gid % 2;
          krow[j] = key < te && key <= hi_max ? int(RawRow(key, S, L.ring_k)) * row_stride : -1;
        }
        KeyRawScores<kDim>(s, qs, kraw, krow, gid, tig);
      }
      // Mask (the row's keys, and the rows that see this tile in this pass), online softmax.
      float tile_max[2] = {kNoMax, kNoMax};
#pragma unroll
      for (int j = 0; j < 8; ++j) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int h = e / 2, key = ts + 16 * (j / 2) + 4 * tig + 2 * (j % 2) + (e % 2);
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
      // P as A fragments (the C layout of S is the A layout of P), times the value norms.
      uint32_t pa[4][4];
#pragma unroll
      for (int ks = 0; ks < kTqBlock / 16; ++ks) {
        float nv[4] = {1, 1, 1, 1};
        if (vc) {
          const uint2 n4 = Ld64(reinterpret_cast<const __half*>(vb + P.vf.norms_offset) + 16 * ks +
                                4 * tig);
          const __half2 n01 = *reinterpret_cast<const __half2*>(&n4.x);
          const __half2 n23 = *reinterpret_cast<const __half2*>(&n4.y);
          nv[0] = __low2float(n01);
          nv[1] = __high2float(n01);
          nv[2] = __low2float(n23);
          nv[3] = __high2float(n23);
        }
        pa[ks][0] = ptx::PackHalf2(s[2 * ks][0] * nv[0], s[2 * ks][1] * nv[1]);
        pa[ks][1] = ptx::PackHalf2(s[2 * ks][2] * nv[0], s[2 * ks][3] * nv[1]);
        pa[ks][2] = ptx::PackHalf2(s[2 * ks + 1][0] * nv[2], s[2 * ks + 1][1] * nv[3]);
        pa[ks][3] = ptx::PackHalf2(s[2 * ks + 1][2] * nv[2], s[2 * ks + 1][3] * nv[3]);
      }
      if (vc) {
        WithBits(P.vf, [&](auto bits) {
          ValueCodePV<kDim, decltype(bits)>(o, pa, vb, P.vf, tab + 512, gid, tig);
        });
      } else {
        int vrow[16];
#pragma unroll
        for (int i = 0; i < 16; ++i) {
          const int key = ts + 16 * (i / 4) + 4 * tig + i % 4;
          vrow[i] = key < te && key <= hi_max ? int(RawRow(key, S, L.ring_v)) * row_stride : -1;
        }
        ValueRawPV<kDim>(o, pa, vraw, vrow, gid);
      }
    }
    __syncwarp();  // every lane is done with buf before it is staged again
    if (plan.nbuf == 1 && (next & 2)) {
      stage(tile + 1, bufs);
      CpAsyncCommit();
    }
    passes = next;
  }
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    l_row[h] += __shfl_xor_sync(0xffffffffu, l_row[h], 1);
    l_row[h] += __shfl_xor_sync(0xffffffffu, l_row[h], 2);
  }
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int r = gid + 8 * h;
    if (r >= n_rows) continue;
    const int row = r0 + r, t = t0 + row / G, head = kvh * G + row % G;
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
  const TqLayerParams& P = a.p;
  const int G = P.n_heads / P.n_kv_heads;
  // One warp per block when the block's rows fit one warp (decode steps: more blocks in
  // flight), four in prefill chunks. A row's arithmetic is its warp's alone either way.
  const bool narrow = !a.one_sequence || a.step.n * G <= kWarpRows;
  const int warps = narrow ? 1 : kMaxWarps;
  const int tokens_per_cta = a.one_sequence ? warps * kWarpRows / G : 1;
  const int ctas = (a.step.n + tokens_per_cta - 1) / tokens_per_cta;
  TqSmemPlan plan;
  plan.k_bytes = P.k_comp ? P.kf.block_stride : 0;
  plan.v_bytes = P.v_comp ? P.vf.block_stride : 0;
  const int q_bytes = kWarpRows * (kDim + 8) * int(sizeof(__half));
  plan.nbuf = 2;
  plan.warp_bytes = q_bytes + 2 * (plan.k_bytes + plan.v_bytes);
  if (kTableBytes + warps * plan.warp_bytes > kTwoBufferSmem) {
    plan.nbuf = 1;
    plan.warp_bytes = q_bytes + plan.k_bytes + plan.v_bytes;
  }
  const int smem = kTableBytes + warps * plan.warp_bytes;
  static int configured = 0;  // per instantiation: the dynamic shared memory limit raised so far
  if (smem > configured) {
    TQLM_CUDA_CHECK(cudaFuncSetAttribute(TqFlashKernel<kDim>,
                                         cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    configured = smem;
  }
  TqAttendArgs b = a;
  b.workspace = a.workspace + QRotFloats(a.step.n, a.p);
  TqFlashKernel<kDim><<<dim3(ctas, P.n_kv_heads, n_splits), 32 * warps, smem, s>>>(
      b, q, n_splits, tokens_per_cta, plan);
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
  for (const TqFormat* f : {&P.kf, &P.vf})
    if (f->norms_offset % 8 != 0 || f->center_offset % 8 != 0 || f->block_stride % 16 != 0)
      throw Error("CUDA attention: TurboQuant block layout not 8-byte aligned");
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
