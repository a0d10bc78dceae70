// Attention over the TurboQuant KV cache (tq_kv_kernels.h): the shared flash kernel
// (attention_flash.cuh) with a tile loader (TqTiles) that reads the cache's blocks.
//
// Tiles: the sinks [0, S) in tiles of 64 positions, then main block b = tile nST + b
// (nST = ceil(S / 64)); a split is 4 tiles at fixed tile indices, so a query's reduction order
// depends only on its position (batch- and chunking-invariant, as for the f16 cache). For each
// tile a row sees either the raw rows (fp16) or the compressed block, by the CPU's rule
// p >= end_b + recent; a tile that some rows of a block see raw and others compressed is run
// twice (pass 0 raw, pass 1 compressed) with the other rows masked. Compressed blocks are staged
// whole into shared memory with cp.async and their codes decoded straight into mma fragments
// (see "Decoding codes" below); raw rows are read from global memory.
//
// TurboQuant tensors live in the codec's rotated basis: queries are rotated by R_k before the
// kernel (q·k = Rq·Rk), values are summed rotated and the merge rotates each output back by R_v^T.
#include <cuda_fp16.h>

#include <climits>
#include <string>

#include "backend/cuda/attention_flash.cuh"
#include "backend/cuda/kernels.h"
#include "backend/cuda/tq_block.cuh"
#include "backend/cuda/tq_kv_kernels.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/ptx_ops.cuh"
#include "tqlm/error.h"

namespace tqlm::cuda_backend {
namespace {

using namespace flash;  // NOLINT: the shared kernel's helpers

// --- Decoding codes straight into mma fragments ---------------------------------------------
// With the shared kernel's mma k order (attention_flash.cuh), a lane's four values of a key
// fragment are one key unit's 4 coordinates of one token (4 codes in a row), and those of a value
// fragment one value unit's 4 tokens at one coordinate: one 32-bit shared load, a shift and a
// mask give 4 codes, and one lookup in a table of fp16 level pairs a fragment register (two
// lookups and a byte permute for 8-bit codes).
// Fragments hold bare levels (one table lookup per two codes); the key norms and the center
// (q . center, an extra n-tile) are applied to the fp32 scores, the value norms to P.

// The 4 bits of h, one to each byte's bit 0.
__device__ __forceinline__ uint32_t Spread4(uint32_t h) {
  return (h & 1u) | ((h & 2u) << 7) | ((h & 4u) << 14) | ((h & 8u) << 21);
}

// Four fp16 norms as floats.
__device__ __forceinline__ void Norms4(const __half* p, float (&n)[4]) {
  const uint2 u = Ld64(p);
  const __half2 a = *reinterpret_cast<const __half2*>(&u.x);
  const __half2 b = *reinterpret_cast<const __half2*>(&u.y);
  n[0] = __low2float(a);
  n[1] = __high2float(a);
  n[2] = __low2float(b);
  n[3] = __high2float(b);
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

// The TurboQuant cache's tiles: pass 0 reads the raw fp16 rows straight from global memory
// (the sinks, the recent ring: few tiles), pass 1 the compressed K and V blocks staged whole.
template <int kDim>
struct TqTiles {
  using Args = TqAttendArgs;
  static constexpr int kSharedBytes = 4 * 256 * 4;  // level tables: K hi, K lo, V hi, V lo
  static int BufBytes(const Args& a) {
    return (a.p.k_comp ? a.p.kf.block_stride : 0) + (a.p.v_comp ? a.p.vf.block_stride : 0);
  }

  const TqLayerParams& P;
  const TqStepView& step;
  const int kvh;
  const uint32_t* tab;
  const int n_heads, n_kv_heads, window, sinks;
  const int gid, tig, k_bytes;
  TqKvLayer L;

  __device__ TqTiles(const Args& a, int kvh_, unsigned char* smem)
      : P(a.p), step(a.step), kvh(kvh_), tab(reinterpret_cast<const uint32_t*>(smem)),
        n_heads(a.p.n_heads), n_kv_heads(a.p.n_kv_heads), window(a.p.window),
        sinks(a.p.sinks), gid(threadIdx.x % 32 / 4), tig(threadIdx.x % 4),
        k_bytes(a.p.k_comp ? a.p.kf.block_stride : 0) {
    uint32_t* t = reinterpret_cast<uint32_t*>(smem);
    for (int i = threadIdx.x; i < 256; i += blockDim.x) {
      if (P.k_comp) {
        t[i] = TableEntry(P.kf.levels_hi, P.kf.hi_bits, i);
        t[256 + i] = TableEntry(P.kf.levels_lo, P.kf.lo_bits, i);
      }
      if (P.v_comp) {
        t[512 + i] = TableEntry(P.vf.levels_hi, P.vf.hi_bits, i);
        t[768 + i] = TableEntry(P.vf.levels_lo, P.vf.lo_bits, i);
      }
    }
  }
  __device__ void Bind(int t0) { L = step.seq_tables[step.tok_seq[t0]][step.layer]; }
  // Rows at or past this position see the tile compressed.
  __device__ int CompFrom(int tile) const {
    const int nst = SinkTiles(sinks);
    return (P.k_comp || P.v_comp) && tile >= nst ? sinks + (tile - nst + 1) * kTqBlock + P.recent
                                                 : INT_MAX;
  }
  __device__ void Stage(int tile, int passes, unsigned char* buf, int, int tid, int nt) const {
    if (!(passes & 2)) return;
    const size_t b = size_t(tile - SinkTiles(sinks));
    auto copy = [&](unsigned char* dst, const uint8_t* src, int bytes) {
      for (int off = 16 * tid; off < bytes; off += 16 * nt) CpAsync16(dst + off, src + off);
    };
    if (P.k_comp)
      copy(buf, L.comp_k + (b * n_kv_heads + kvh) * P.kf.block_stride, P.kf.block_stride);
    if (P.v_comp)
      copy(buf + k_bytes, L.comp_v + (b * n_kv_heads + kvh) * P.vf.block_stride,
           P.vf.block_stride);
  }
  __device__ int RowOffset(int key, int te, int hi_max, int ring) const {
    return key < te && key <= hi_max ? int(RawRow(key, sinks, ring)) * n_kv_heads * kDim : -1;
  }
  __device__ void Scores(float (&s)[8][4], const __half* qs, int tile, int pass,
                         const unsigned char* buf, int hi_max) const {
    if (pass == 1 && P.k_comp) {
      float cc[4] = {0, 0, 0, 0};
      WithBits(P.kf, [&](auto bits) {
        KeyCodeScores<kDim, decltype(bits)>(s, cc, qs, buf, P.kf, tab, gid, tig);
      });
      const __half* nk = reinterpret_cast<const __half*>(buf + P.kf.norms_offset);
#pragma unroll
      for (int sb = 0; sb < 4; ++sb) {
        float nn[4];
        Norms4(nk + 16 * sb + 4 * tig, nn);
#pragma unroll
        for (int h = 0; h < 2; ++h)
#pragma unroll
          for (int e = 0; e < 4; ++e)
            s[2 * sb + h][e] = fmaf(nn[2 * h + e % 2], s[2 * sb + h][e], cc[e & 2]);
      }
    } else {
      const int ts = TileStart(tile, sinks), te = TileEnd(tile, sinks);
      int krow[8];
#pragma unroll
      for (int j = 0; j < 8; ++j) krow[j] = RowOffset(ts + KeyOfColumn(j, gid), te, hi_max, L.ring_k);
      KeyRawScores<kDim>(s, qs, reinterpret_cast<const __half*>(L.raw_k) + size_t(kvh) * kDim,
                         krow, gid, tig);
    }
  }
  __device__ void PackP(uint32_t (&pa)[4][4], const float (&s)[8][4], int pass,
                        const unsigned char* buf) const {
#pragma unroll
    for (int ks = 0; ks < kTqBlock / 16; ++ks) {
      float nv[4] = {1, 1, 1, 1};
      if (pass == 1 && P.v_comp)
        Norms4(reinterpret_cast<const __half*>(buf + k_bytes + P.vf.norms_offset) + 16 * ks +
                   4 * tig, nv);
      pa[ks][0] = ptx::PackHalf2(s[2 * ks][0] * nv[0], s[2 * ks][1] * nv[1]);
      pa[ks][1] = ptx::PackHalf2(s[2 * ks][2] * nv[0], s[2 * ks][3] * nv[1]);
      pa[ks][2] = ptx::PackHalf2(s[2 * ks + 1][0] * nv[2], s[2 * ks + 1][1] * nv[3]);
      pa[ks][3] = ptx::PackHalf2(s[2 * ks + 1][2] * nv[2], s[2 * ks + 1][3] * nv[3]);
    }
  }
  __device__ void PV(float (&o)[kDim / 8][4], const uint32_t (&pa)[4][4], int tile, int pass,
                     const unsigned char* buf, int hi_max) const {
    if (pass == 1 && P.v_comp) {
      WithBits(P.vf, [&](auto bits) {
        ValueCodePV<kDim, decltype(bits)>(o, pa, buf + k_bytes, P.vf, tab + 512, gid, tig);
      });
    } else {
      const int ts = TileStart(tile, sinks), te = TileEnd(tile, sinks);
      int vrow[16];
#pragma unroll
      for (int i = 0; i < 16; ++i)
        vrow[i] = RowOffset(ts + 16 * (i / 4) + 4 * tig + i % 4, te, hi_max, L.ring_v);
      ValueRawPV<kDim>(o, pa, reinterpret_cast<const __half*>(L.raw_v) + size_t(kvh) * kDim,
                       vrow, gid);
    }
  }
};

// One block per (token, head): the row's non-empty splits merged in ascending order, then
// rotated back by R_v^T when values are TurboQuant.
__global__ void TqMergeKernel(TqAttendArgs a, int n_splits) {
  extern __shared__ float merged[];
  const TqLayerParams& P = a.p;
  const int t = blockIdx.x, head = blockIdx.y, dim = P.dim;
  const int pos = a.step.tok_pos[t];
  const int first = TileOf(KeyBegin(pos, P.window), P.sinks) / kTilesPerSplit;
  const int last = TileOf(pos, P.sinks) / kTilesPerSplit;
  MergeRow(a.workspace, n_splits, dim, t, head, P.n_heads, first, last, merged);
  float* out = a.out + (size_t(t) * P.n_heads + head) * dim;
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

size_t QRotFloats(int n, const TqLayerParams& p) {
  return p.k_comp ? (size_t(n) * p.n_heads * p.dim + 63) / 64 * 64 : 0;
}

template <int kDim>
void LaunchFlash(const TqAttendArgs& a, const float* q, int n_splits, cudaStream_t s) {
  using Tiles = TqTiles<kDim>;
  const LaunchShape shape = MakeShape(a.step.n, a.p.n_heads / a.p.n_kv_heads, a.one_sequence);
  const SmemPlan plan = MakePlan<kDim>(Tiles::kSharedBytes, Tiles::BufBytes(a), shape.warps);
  const int smem = plan.Bytes(shape.warps);
  static int configured = 0;  // per instantiation: the dynamic shared memory limit raised so far
  if (smem > configured) {
    TQLM_CUDA_CHECK(cudaFuncSetAttribute(FlashKernel<kDim, Tiles>,
                                         cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    configured = smem;
  }
  FlashKernel<kDim, Tiles><<<dim3(shape.blocks, a.p.n_kv_heads, n_splits), 32 * shape.warps, smem,
                             s>>>(a, q, a.workspace + QRotFloats(a.step.n, a.p), n_splits,
                                  shape.tokens_per_block, plan);
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
  if (P.k_comp && !a.q_rotated) {
    RotateRowsKernel<<<a.step.n * P.n_heads, P.dim, P.dim * sizeof(float), s>>>(
        a.q, P.kf.rot_t, P.dim, TqRotatedQueries(a.workspace));
    TQLM_CUDA_CHECK(cudaGetLastError());
    q = TqRotatedQueries(a.workspace);
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
