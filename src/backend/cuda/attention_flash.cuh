// The attention kernel of both CUDA KV caches (attention_f16.cu, attention_tq.cu): flash
// attention on tensor cores (mma.m16n8k16, fp16 in, fp32 accumulators) with split keys as in
// flash-decoding, written once over a tile-loader policy that says where a tile's keys and
// values come from (plain fp16 rows, or TurboQuant blocks decoded into the mma fragments).
//
// Rows of the problem are (token, query head of the KV head's group) pairs. A block takes the
// rows of 1 warp (decode steps: more blocks in flight) or 4 warps (prefill chunks), one KV head
// and one split of 4 tiles of 64 keys at fixed tile indices; every warp owns 16 rows and walks
// the split's tiles in ascending order with an online softmax (scores in base 2), and writes
// unnormalized partial results; a merge kernel combines each row's non-empty splits in
// ascending order. The block stages each tile once into shared memory (cp.async, the next tile
// while the current one is used); each warp then reads its own fragments from there.
//
// Determinism: every row's arithmetic depends only on its own query, its sequence's keys and
// values and its position: mma computes each output element from its own row and column, a
// masked key leaves a row's state bit-identical (its score is -inf and the running max starts
// finite), a tile or pass that none of a row's keys is in is thus a no-op for it, and split
// boundaries are absolute. So batch composition, prefill chunking and the block's warp count
// do not change a token's attention output.
//
// mma k order: the k index of a k-step is permuted so that a lane's fragment values are 4
// neighbours in memory: the score k pair (2 tig, 2 tig + 1) / (2 tig + 8, 2 tig + 9) of k-step ks
// is the dimensions 16 ks + 4 tig + {0, 1} / {2, 3} (queries are loaded the same way), and score
// column n of n-tile j is the tile's key KeyOfColumn(j, n), so that P's k pairs in P V are the
// keys 16 ks + 4 tig + {0, 1} / {2, 3}.
//
// A policy (Tiles) provides: Args; kSharedBytes (block-wide tables) and BufBytes(args) (one
// tile's staging buffer); a constructor (args, kv head, shared tables; run by every thread,
// followed by a barrier); Geometry fields n_heads, n_kv_heads, window, sinks; Bind(t0) (the
// block's sequence); CompFrom(tile) (positions from which a row sees the tile in pass 1);
// Stage(tile, passes, buf, hi_max, tid, nthreads); Scores(s, qs, tile, pass, buf, hi_max);
// PackP(pa, s, pass, buf); PV(o, pa, tile, pass, buf, hi_max).
#pragma once

#include <cuda_fp16.h>

#include <climits>
#include <cstdint>

#include "kernels/cuda/ptx_ops.cuh"

namespace tqlm::cuda_backend::flash {

namespace ptx = ::tqlm::cuda::ptx;

constexpr int kWarpRows = 16;  // query rows per warp (the mma M dimension)
constexpr int kMaxWarps = 4;   // warps per block in prefill chunks; decode steps use one
constexpr int kTile = 64;      // keys per tile
constexpr int kTilesPerSplit = 4;
constexpr int kTwoBufferSmem = 110 * 1024;  // above this, one staging buffer
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kNoMax = -1e30f;  // a row's running max before any key: finite (see above)

__host__ __device__ __forceinline__ int SinkTiles(int sinks) { return (sinks + kTile - 1) / kTile; }
__host__ __device__ __forceinline__ int TileOf(int pos, int sinks) {
  return pos < sinks ? pos / kTile : SinkTiles(sinks) + (pos - sinks) / kTile;
}
__device__ __forceinline__ int TileStart(int i, int sinks) {
  const int nst = SinkTiles(sinks);
  return i < nst ? i * kTile : sinks + (i - nst) * kTile;
}
__device__ __forceinline__ int TileEnd(int i, int sinks) {
  const int nst = SinkTiles(sinks);
  return i < nst ? min(i * kTile + kTile, sinks) : TileStart(i, sinks) + kTile;
}
__host__ __device__ __forceinline__ int KeyBegin(int pos, int window) {
  return window > 0 ? (pos - window + 1 > 0 ? pos - window + 1 : 0) : 0;
}
__host__ __device__ __forceinline__ int Splits(int max_pos, int sinks) {
  return TileOf(max_pos - 1, sinks) / kTilesPerSplit + 1;
}
__device__ __forceinline__ float* PartialAt(float* partial, int n_splits, int dim, int t,
                                            int head, int n_heads, int split) {
  return partial + ((size_t(t) * n_heads + head) * n_splits + split) * (dim + 2);
}
// The tile key (0..63) of score column n of n-tile j (see "mma k order").
__device__ __forceinline__ int KeyOfColumn(int j, int n) {
  return 16 * (j / 2) + 4 * (n / 2) + 2 * (j % 2) + n % 2;
}

__device__ __forceinline__ uint2 Ld64(const void* p) { return *reinterpret_cast<const uint2*>(p); }
__device__ __forceinline__ uint32_t Lds32(const uint8_t* p) {
  return *reinterpret_cast<const uint32_t*>(p);
}
// 16 bytes from global to shared memory, asynchronously; zeros when !valid.
__device__ __forceinline__ void CpAsync16(void* dst, const void* src, bool valid = true) {
  const uint32_t d = static_cast<uint32_t>(__cvta_generic_to_shared(dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(d), "l"(src),
               "r"(valid ? 16 : 0)
               : "memory");
}
__device__ __forceinline__ void CpAsyncCommit() {
  asm volatile("cp.async.commit_group;\n" ::: "memory");
}
template <int N>
__device__ __forceinline__ void CpAsyncWait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

// The A fragment of k-step ks of a warp's 16 query rows (fp16, row stride kDim + 8).
template <int kDim>
__device__ __forceinline__ void LoadA(uint32_t (&a)[4], const __half* qs, int ks, int gid,
                                     int tig) {
  constexpr int kS = kDim + 8;
  const uint2 lo = Ld64(qs + gid * kS + 16 * ks + 4 * tig);
  const uint2 hi = Ld64(qs + (gid + 8) * kS + 16 * ks + 4 * tig);
  a[0] = lo.x;
  a[1] = hi.x;
  a[2] = lo.y;
  a[3] = hi.y;
}

// Shared memory of a block: the policy's tables, then per warp its 16 query rows, then nbuf
// staging buffers.
struct SmemPlan {
  int tables = 0, warp_q = 0, buf = 0, nbuf = 1;
  int Bytes(int warps) const { return tables + warps * warp_q + nbuf * buf; }
};
template <int kDim>
SmemPlan MakePlan(int tables, int buf, int warps) {
  SmemPlan p;
  p.tables = tables;
  p.warp_q = kWarpRows * (kDim + 8) * int(sizeof(__half));
  p.buf = (buf + 15) / 16 * 16;
  p.nbuf = 2;
  if (p.Bytes(warps) > kTwoBufferSmem) p.nbuf = 1;
  return p;
}

// Launch shape: one warp per block when a block's rows fit one warp, else four.
struct LaunchShape {
  int warps = 1, tokens_per_block = 1, blocks = 1;
};
inline LaunchShape MakeShape(int n, int group, bool one_sequence) {
  LaunchShape s;
  s.warps = !one_sequence || n * group <= kWarpRows ? 1 : kMaxWarps;
  s.tokens_per_block = one_sequence ? s.warps * kWarpRows / group : 1;
  s.blocks = (n + s.tokens_per_block - 1) / s.tokens_per_block;
  return s;
}

template <int kDim, class Tiles>
__global__ void __launch_bounds__(kMaxWarps * 32)
    FlashKernel(typename Tiles::Args args, const float* q, float* partial, int n_splits,
                int tokens_per_block, SmemPlan plan) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  constexpr int kS = kDim + 8;
  const int kvh = blockIdx.y, split = blockIdx.z;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, gid = lane / 4, tig = lane % 4;
  Tiles tiles(args, kvh, smem_raw);
  __syncthreads();
  const auto& step = args.step;
  const int G = tiles.n_heads / tiles.n_kv_heads, S = tiles.sinks;

  const int t0 = blockIdx.x * tokens_per_block;
  const int t_end = min(step.n, t0 + tokens_per_block);
  int lo_min = INT_MAX, hi_max = -1;
  for (int t = t0; t < t_end; ++t) {
    const int p = step.tok_pos[t];
    lo_min = min(lo_min, KeyBegin(p, tiles.window));
    hi_max = max(hi_max, p);
  }
  const int i_first = max(split * kTilesPerSplit, TileOf(lo_min, S));
  const int i_last = min(split * kTilesPerSplit + kTilesPerSplit - 1, TileOf(hi_max, S));
  if (i_first > i_last) return;  // the whole block: no barrier follows for anyone
  tiles.Bind(t0);

  const int r0 = warp * kWarpRows;
  const int n_rows = min(kWarpRows, (t_end - t0) * G - r0);
  __half* qs = reinterpret_cast<__half*>(smem_raw + plan.tables + warp * plan.warp_q);
  unsigned char* bufs = smem_raw + plan.tables + int(blockDim.x / 32) * plan.warp_q;

  // Queries, scaled into base 2, as halves (zeros for rows past the warp's).
  const float qscale = args.scale * kLog2e;
  for (int i = lane; i < kWarpRows * kDim / 2; i += 32) {
    const int r = i / (kDim / 2), c = (i % (kDim / 2)) * 2;
    float2 f = make_float2(0, 0);
    if (r < n_rows) {
      const int row = r0 + r, t = t0 + row / G, head = kvh * G + row % G;
      f = *reinterpret_cast<const float2*>(q + (size_t(t) * tiles.n_heads + head) * kDim + c);
    }
    *reinterpret_cast<uint32_t*>(&qs[r * kS + c]) = ptx::PackHalf2(f.x * qscale, f.y * qscale);
  }
  // This lane's two rows: their positions and key ranges.
  int p_row[2], lo_row[2];
  for (int h = 0; h < 2; ++h) {
    const int r = gid + 8 * h;
    if (r < n_rows) {
      p_row[h] = step.tok_pos[t0 + (r0 + r) / G];
      lo_row[h] = KeyBegin(p_row[h], tiles.window);
    } else {
      p_row[h] = -1;  // no key is visible: the row stays empty
      lo_row[h] = 0;
    }
  }
  // Which views of a tile the block's rows need: bit 0 raw rows, bit 1 pass 1 (compressed).
  auto passes_of = [&](int tile) {
    const int ts = TileStart(tile, S), te = TileEnd(tile, S), comp_from = tiles.CompFrom(tile);
    int m = 0;
    for (int t = t0; t < t_end; ++t) {
      const int p = step.tok_pos[t];
      if (p < ts || KeyBegin(p, tiles.window) >= te) continue;
      m |= p >= comp_from ? 2 : 1;
    }
    return m;
  };

  constexpr int kDT = kDim / 8;  // output n-tiles of 8 dims
  float o[kDT][4];
#pragma unroll
  for (int d = 0; d < kDT; ++d) o[d][0] = o[d][1] = o[d][2] = o[d][3] = 0;
  float m_row[2] = {kNoMax, kNoMax}, l_row[2] = {0, 0};

  int passes = passes_of(i_first);
  tiles.Stage(i_first, passes, bufs, hi_max, threadIdx.x, blockDim.x);
  CpAsyncCommit();
  for (int tile = i_first, k = 0; tile <= i_last; ++tile, ++k) {
    const unsigned char* buf = bufs + (k % plan.nbuf) * plan.buf;
    const int next = tile < i_last ? passes_of(tile + 1) : 0;
    if (plan.nbuf == 2) {
      if (next) tiles.Stage(tile + 1, next, bufs + ((k + 1) % 2) * plan.buf, hi_max, threadIdx.x,
                            blockDim.x);
      CpAsyncCommit();
      CpAsyncWait<1>();
    } else {
      CpAsyncWait<0>();
    }
    __syncthreads();  // the tile is staged for every warp
    const int ts = TileStart(tile, S), te = TileEnd(tile, S), comp_from = tiles.CompFrom(tile);
    for (int pass = 0; pass < 2 && n_rows > 0; ++pass) {
      if (!((passes >> pass) & 1)) continue;
      float s[8][4];
#pragma unroll
      for (int j = 0; j < 8; ++j) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0;
      tiles.Scores(s, qs, tile, pass, buf, hi_max);
      // Mask (the row's keys, and whether the row sees the tile in this pass), then the online
      // softmax per row (the 4 lanes of a quad share a row).
      float tile_max[2] = {kNoMax, kNoMax};
#pragma unroll
      for (int j = 0; j < 8; ++j) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int h = e / 2, key = ts + KeyOfColumn(j, 2 * tig + e % 2);
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
      // O += P V: P from the score registers (the C layout of S is the A layout of P).
      uint32_t pa[kTile / 16][4];
      tiles.PackP(pa, s, pass, buf);
      tiles.PV(o, pa, tile, pass, buf, hi_max);
    }
    __syncthreads();  // every warp is done with buf before it is staged again
    if (plan.nbuf == 1 && next) {
      tiles.Stage(tile + 1, next, bufs, hi_max, threadIdx.x, blockDim.x);
      CpAsyncCommit();
    }
    passes = next;
  }
  if (n_rows <= 0) return;
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
    float* part = PartialAt(partial, n_splits, kDim, t, head, tiles.n_heads, split);
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

// Row (t, head)'s splits [first, last] merged in ascending order into dst[0, dim) (the block's
// threads each take dimensions).
__device__ __forceinline__ void MergeRow(float* partial, int n_splits, int dim, int t, int head,
                                         int n_heads, int first, int last, float* dst) {
  float m = kNoMax;
  for (int s = first; s <= last; ++s)
    m = fmaxf(m, PartialAt(partial, n_splits, dim, t, head, n_heads, s)[dim]);
  for (int d = threadIdx.x; d < dim; d += blockDim.x) {
    float acc = 0, l = 0;
    for (int s = first; s <= last; ++s) {
      const float* part = PartialAt(partial, n_splits, dim, t, head, n_heads, s);
      const float w = exp2f(part[dim] - m);
      acc = fmaf(w, part[d], acc);
      l = fmaf(w, part[dim + 1], l);
    }
    dst[d] = acc / l;
  }
}

}  // namespace tqlm::cuda_backend::flash
