// Attention over an f16 KV cache: the shared flash kernel (attention_flash.cuh: tensor cores,
// split keys, one kernel for prefill and decode, batch- and chunking-invariant) with a tile
// loader (F16Tiles) that stages each tile's fp16 K and V rows.
#include <cuda_fp16.h>

#include <climits>
#include <string>

#include "backend/cuda/attention_flash.cuh"
#include "backend/cuda/kernels.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/ptx_ops.cuh"

namespace tqlm::cuda_backend {
namespace {

using namespace flash;  // NOLINT: the shared kernel's helpers
static_assert(kAttnSplit == kTilesPerSplit * kTile, "the f16 cache's splits are the kernel's");
constexpr int kThreads = 128;

__device__ __forceinline__ void LdMatrixX4Trans(uint32_t (&r)[4], const __half* p) {
  const uint32_t a = static_cast<uint32_t>(__cvta_generic_to_shared(p));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(a));
}

__global__ void F16AppendKernel(F16StepView step, int kv_dim, const float* k, const float* v) {
  const int t = blockIdx.x;
  const F16KvLayer L = step.seq_tables[step.tok_seq[t]][step.layer];
  const size_t row = size_t(step.tok_pos[t]) * kv_dim;
  for (int e = threadIdx.x; e < kv_dim; e += blockDim.x) {
    L.k[row + e] = __half_as_ushort(__float2half_rn(k[size_t(t) * kv_dim + e]));
    L.v[row + e] = __half_as_ushort(__float2half_rn(v[size_t(t) * kv_dim + e]));
  }
}

// The f16 cache's tiles: every tile's K and V rows staged whole (zeros past the block's last
// position); key fragments read as 4 neighbouring halves, value fragments by ldmatrix.trans.
template <int kDim>
struct F16Tiles {
  using Args = F16AttendArgs;
  static constexpr int kSharedBytes = 0;
  static constexpr int kStride = kDim + 8;  // halves per staged row
  static int BufBytes(const Args&) { return 2 * kTile * kStride * int(sizeof(__half)); }

  const F16StepView& step;
  const int kvh, n_heads, n_kv_heads, window, sinks = 0;
  const int gid, tig;
  const __half* kbase = nullptr;
  const __half* vbase = nullptr;

  __device__ F16Tiles(const Args& a, int kvh_, unsigned char*)
      : step(a.step), kvh(kvh_), n_heads(a.n_heads), n_kv_heads(a.n_kv_heads), window(a.window),
        gid(threadIdx.x % 32 / 4), tig(threadIdx.x % 4) {}
  __device__ void Bind(int t0) {
    const F16KvLayer L = step.seq_tables[step.tok_seq[t0]][step.layer];
    kbase = reinterpret_cast<const __half*>(L.k) + size_t(kvh) * kDim;
    vbase = reinterpret_cast<const __half*>(L.v) + size_t(kvh) * kDim;
  }
  __device__ int CompFrom(int) const { return INT_MAX; }
  __device__ void Stage(int tile, int passes, unsigned char* buf, int hi_max, int tid,
                        int nt) const {
    if (!passes) return;
    __half* k = reinterpret_cast<__half*>(buf);
    __half* v = k + kTile * kStride;
    const size_t row_stride = size_t(n_kv_heads) * kDim;
    for (int i = tid; i < kTile * kDim / 8; i += nt) {
      const int j = i / (kDim / 8), c = (i % (kDim / 8)) * 8, key = tile * kTile + j;
      const bool valid = key <= hi_max;  // later rows are not written yet
      const size_t off = valid ? size_t(key) * row_stride + c : 0;
      CpAsync16(k + j * kStride + c, kbase + off, valid);
      CpAsync16(v + j * kStride + c, vbase + off, valid);
    }
  }
  __device__ void Scores(float (&s)[8][4], const __half* qs, int, int, const unsigned char* buf,
                         int) const {
    const __half* k = reinterpret_cast<const __half*>(buf);
#pragma unroll
    for (int ks = 0; ks < kDim / 16; ++ks) {
      uint32_t a[4];
      LoadA<kDim>(a, qs, ks, gid, tig);
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        const uint2 b = Ld64(k + KeyOfColumn(j, gid) * kStride + 16 * ks + 4 * tig);
        ptx::Mma16816(s[j], a[0], a[1], a[2], a[3], b.x, b.y);
      }
    }
  }
  __device__ void PackP(uint32_t (&pa)[4][4], const float (&s)[8][4], int,
                        const unsigned char*) const {
#pragma unroll
    for (int ks = 0; ks < kTile / 16; ++ks) {
      pa[ks][0] = ptx::PackHalf2(s[2 * ks][0], s[2 * ks][1]);
      pa[ks][1] = ptx::PackHalf2(s[2 * ks][2], s[2 * ks][3]);
      pa[ks][2] = ptx::PackHalf2(s[2 * ks + 1][0], s[2 * ks + 1][1]);
      pa[ks][3] = ptx::PackHalf2(s[2 * ks + 1][2], s[2 * ks + 1][3]);
    }
  }
  __device__ void PV(float (&o)[kDim / 8][4], const uint32_t (&pa)[4][4], int, int,
                     const unsigned char* buf, int) const {
    const __half* v = reinterpret_cast<const __half*>(buf) + kTile * kStride;
    // ldmatrix x4: lane l gives the row of matrix l / 8 (0, 1: b0, b1 of n-tile d; 2, 3: of
    // d + 1), row l % 8; the matrices' rows are P's k order of keys.
    const int m = (threadIdx.x % 32) / 8, lk = (m % 2) * 8 + threadIdx.x % 8;
    const int key = lk < 8 ? 4 * (lk / 2) + lk % 2 : 4 * ((lk - 8) / 2) + 2 + lk % 2;
#pragma unroll
    for (int ks = 0; ks < kTile / 16; ++ks) {
#pragma unroll
      for (int d = 0; d < kDim / 8; d += 2) {
        uint32_t b[4];
        LdMatrixX4Trans(b, v + (16 * ks + key) * kStride + 8 * (d + m / 2));
        ptx::Mma16816(o[d], pa[ks][0], pa[ks][1], pa[ks][2], pa[ks][3], b[0], b[1]);
        ptx::Mma16816(o[d + 1], pa[ks][0], pa[ks][1], pa[ks][2], pa[ks][3], b[2], b[3]);
      }
    }
  }
};

// One block per (token, head): the row's non-empty splits, merged in ascending order.
__global__ void F16MergeKernel(F16AttendArgs a, int n_splits) {
  const int t = blockIdx.x, head = blockIdx.y;
  const int pos = a.step.tok_pos[t];
  const int first = TileOf(KeyBegin(pos, a.window), 0) / kTilesPerSplit;
  const int last = TileOf(pos, 0) / kTilesPerSplit;
  MergeRow(a.partial, n_splits, a.head_dim, t, head, a.n_heads, first, last,
           a.out + (size_t(t) * a.n_heads + head) * a.head_dim);
}

template <int kDim>
void LaunchFlash(const F16AttendArgs& a, int n_splits, cudaStream_t s) {
  using Tiles = F16Tiles<kDim>;
  const LaunchShape shape = MakeShape(a.step.n, a.n_heads / a.n_kv_heads, a.one_sequence);
  const SmemPlan plan = MakePlan<kDim>(Tiles::kSharedBytes, Tiles::BufBytes(a), shape.warps);
  const int smem = plan.Bytes(shape.warps);
  static int configured = 0;  // per instantiation: the dynamic shared memory limit raised so far
  if (smem > configured) {
    TQLM_CUDA_CHECK(cudaFuncSetAttribute(FlashKernel<kDim, Tiles>,
                                         cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    configured = smem;
  }
  FlashKernel<kDim, Tiles><<<dim3(shape.blocks, a.n_kv_heads, n_splits), 32 * shape.warps, smem,
                             s>>>(a, a.q, a.partial, n_splits, shape.tokens_per_block, plan);
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
  return size_t(n) * n_heads * Splits(max_pos, 0) * (head_dim + 2);
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
  const int n_splits = Splits(a.max_pos, 0);
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
