// Matrix products with GGUF-format weights on tensor cores, and the embedding lookup.
//
// Both matmul kernels compute every output element the same way: weights of one 32-value chunk
// decoded to float (weight_chunk.h) and rounded to fp16, activations rounded to fp16, and
// mma.m16n8k16 steps over k = 0, 16, 32, ... accumulated in one fp32 register in that order.
// They differ only in how many rows and tokens a block covers:
//   * MatVecKernel (n <= 8 tokens, decode): each warp owns 16 rows and the whole (zero-padded)
//     8-token tile, walks k on its own (no block barriers) and reads every weight byte once;
//   * MatMulTileKernel (n > 8, prefill): a block of 4 warps owns 64 rows x 64 tokens and
//     decodes each weight chunk once for all 64 tokens.
// mma computes each output column from its own B column only, so a token's result is the same
// whatever else is in the call: batch composition and prefill chunking do not change it.
#include <cuda_fp16.h>

#include <string>

#include "backend/cuda/kernels.h"
#include "backend/cuda/weight_chunk.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/ptx_ops.cuh"

namespace tqlm::cuda_backend {
namespace {

namespace ptx = ::tqlm::cuda::ptx;

using kernels::TensorType;

constexpr int kKStep = 128;                 // k values staged in shared memory per step
constexpr int kStride = kKStep + 8;         // halves per staged row (pad: no bank conflicts)
constexpr int kWarps = 4;
constexpr int kTileRows = 16 * kWarps;      // rows per block
constexpr int kDecodeTokens = 8;            // MatVecKernel's token tile (one mma n8)
constexpr int kTileTokens = 64;             // MatMulTileKernel's token tile

__device__ __forceinline__ void StoreHalves32(__half* dst, const float* v) {
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    uint4 u;
    u.x = ptx::PackHalf2(v[8 * i + 0], v[8 * i + 1]);
    u.y = ptx::PackHalf2(v[8 * i + 2], v[8 * i + 3]);
    u.z = ptx::PackHalf2(v[8 * i + 4], v[8 * i + 5]);
    u.w = ptx::PackHalf2(v[8 * i + 6], v[8 * i + 7]);
    *reinterpret_cast<uint4*>(dst + 8 * i) = u;
  }
}

// Decodes chunk (k0 / 32 + ch) of weight row `row` (zeros past the last row) into w_s.
template <TensorType T>
__device__ __forceinline__ void StageWeightChunk(const uint8_t* w, size_t row_bytes, int rows,
                                                 int row, int k0, int ch, __half* dst) {
  float v[kChunk];
  if (row < rows) {
    DecodeChunk<T>(w + size_t(row) * row_bytes, k0 / kChunk + ch, v);
  } else {
#pragma unroll
    for (int j = 0; j < kChunk; ++j) v[j] = 0.0f;
  }
  StoreHalves32(dst, v);
}

// Four activations x[token][k0 + off, +4) as halves (zeros for tokens >= n).
__device__ __forceinline__ void StageActivations4(const float* x, int cols, int n, int token,
                                                  int k, __half* dst) {
  uint2 u = make_uint2(0, 0);
  if (token < n) {
    const float4 f = *reinterpret_cast<const float4*>(x + size_t(token) * cols + k);
    u.x = ptx::PackHalf2(f.x, f.y);
    u.y = ptx::PackHalf2(f.z, f.w);
  }
  *reinterpret_cast<uint2*>(dst) = u;
}

// acc[nt] += W_s[16 rows][kk] * X_s[nt tile of 8 tokens][kk]^T, in k-steps of 16.
template <int kNTiles>
__device__ __forceinline__ void MmaSteps(const __half* w_s, const __half* x_s, int kk, int lane,
                                         float (&acc)[kNTiles][4]) {
  const int gid = lane / 4, tig = lane % 4;
  for (int ks = 0; ks < kk / 16; ++ks) {
    const __half* a_lo = w_s + gid * kStride + ks * 16 + 2 * tig;
    const __half* a_hi = a_lo + 8 * kStride;
    const uint32_t a0 = *reinterpret_cast<const uint32_t*>(a_lo);
    const uint32_t a1 = *reinterpret_cast<const uint32_t*>(a_hi);
    const uint32_t a2 = *reinterpret_cast<const uint32_t*>(a_lo + 8);
    const uint32_t a3 = *reinterpret_cast<const uint32_t*>(a_hi + 8);
#pragma unroll
    for (int nt = 0; nt < kNTiles; ++nt) {
      const __half* b = x_s + (nt * 8 + gid) * kStride + ks * 16 + 2 * tig;
      ptx::Mma16816(acc[nt], a0, a1, a2, a3, *reinterpret_cast<const uint32_t*>(b),
                    *reinterpret_cast<const uint32_t*>(b + 8));
    }
  }
}

// Writes a warp's 16 rows x (8 kNTiles) tokens of accumulators to y[token][row].
template <int kNTiles>
__device__ __forceinline__ void StoreOutputs(const float (&acc)[kNTiles][4], int r0, int t0,
                                             int rows, int n, int lane, float* y) {
  const int gid = lane / 4, tig = lane % 4;
#pragma unroll
  for (int nt = 0; nt < kNTiles; ++nt) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int row = r0 + gid + 8 * (e / 2);
      const int token = t0 + nt * 8 + 2 * tig + (e % 2);
      if (row < rows && token < n) y[size_t(token) * rows + row] = acc[nt][e];
    }
  }
}

template <TensorType T>
__global__ void __launch_bounds__(kWarps * 32)
    MatVecKernel(const uint8_t* w, size_t row_bytes, int rows, int cols, const float* x, int n,
                 float* y) {
  __shared__ __align__(16) __half w_s[kWarps][16 * kStride];
  __shared__ __align__(16) __half x_s[kWarps][kDecodeTokens * kStride];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int r0 = (blockIdx.x * kWarps + warp) * 16;
  if (r0 >= rows) return;  // whole warps leave; the kernel has no block-wide barrier
  __half* ws = w_s[warp];
  __half* xs = x_s[warp];
  float acc[1][4] = {{0, 0, 0, 0}};
  for (int k0 = 0; k0 < cols; k0 += kKStep) {
    const int kk = min(kKStep, cols - k0), chunks = kk / kChunk;
    for (int idx = lane; idx < 16 * chunks; idx += 32) {
      const int row = idx / chunks, ch = idx % chunks;
      StageWeightChunk<T>(w, row_bytes, rows, r0 + row, k0, ch, ws + row * kStride + ch * kChunk);
    }
    const int quads = kk / 4;
    for (int idx = lane; idx < kDecodeTokens * quads; idx += 32) {
      const int token = idx / quads, off = (idx % quads) * 4;
      StageActivations4(x, cols, n, token, k0 + off, xs + token * kStride + off);
    }
    __syncwarp();
    MmaSteps<1>(ws, xs, kk, lane, acc);
    __syncwarp();
  }
  StoreOutputs<1>(acc, r0, 0, rows, n, lane, y);
}

template <TensorType T>
__global__ void __launch_bounds__(kWarps * 32)
    MatMulTileKernel(const uint8_t* w, size_t row_bytes, int rows, int cols, const float* x,
                     int n, float* y) {
  __shared__ __align__(16) __half w_s[kTileRows * kStride];
  __shared__ __align__(16) __half x_s[kTileTokens * kStride];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int rb = blockIdx.x * kTileRows, t0 = blockIdx.y * kTileTokens;
  const float* xt = x + size_t(t0) * cols;
  const int nt_here = min(kTileTokens, n - t0);
  constexpr int kNT = kTileTokens / 8;
  float acc[kNT][4] = {};
  for (int k0 = 0; k0 < cols; k0 += kKStep) {
    const int kk = min(kKStep, cols - k0), chunks = kk / kChunk;
    __syncthreads();  // the previous step's reads are done
    for (int idx = threadIdx.x; idx < kTileRows * chunks; idx += kWarps * 32) {
      const int row = idx / chunks, ch = idx % chunks;
      StageWeightChunk<T>(w, row_bytes, rows, rb + row, k0, ch, w_s + row * kStride + ch * kChunk);
    }
    const int quads = kk / 4;
    for (int idx = threadIdx.x; idx < kTileTokens * quads; idx += kWarps * 32) {
      const int token = idx / quads, off = (idx % quads) * 4;
      StageActivations4(xt, cols, nt_here, token, k0 + off, x_s + token * kStride + off);
    }
    __syncthreads();
    MmaSteps<kNT>(w_s + warp * 16 * kStride, x_s, kk, lane, acc);
  }
  StoreOutputs<kNT>(acc, rb + warp * 16, t0, rows, n, lane, y);
}

template <TensorType T>
__global__ void EmbedKernel(const uint8_t* table, size_t row_bytes, int cols,
                            const int32_t* tokens, float scale, float* x) {
  const int t = blockIdx.x;
  const uint8_t* row = table + size_t(tokens[t]) * row_bytes;
  for (int c = threadIdx.x; c < cols / kChunk; c += blockDim.x) {
    float v[kChunk];
    DecodeChunk<T>(row, c, v);
    float* out = x + size_t(t) * cols + size_t(c) * kChunk;
#pragma unroll
    for (int j = 0; j < kChunk; ++j) out[j] = scale == 1.0f ? v[j] : __fmul_rn(v[j], scale);
  }
}

void CheckShape(const kernels::WeightView& w) {
  if (w.cols % kChunk != 0)
    throw Error("CUDA matmul: row length " + std::to_string(w.cols) + " is not a multiple of 32");
  if (w.rows > (int64_t(1) << 31) - 1 || w.cols > (int64_t(1) << 31) - 1)
    throw Error("CUDA matmul: matrix too large");
}

}  // namespace

bool FormatSupported(TensorType type) {
  return DispatchFormat(type, [](auto) {});
}

void LaunchMatMul(const kernels::WeightView& w, const float* x, int n, float* y, void* stream) {
  if (n <= 0) return;
  CheckShape(w);
  auto s = static_cast<cudaStream_t>(stream);
  const auto* data = static_cast<const uint8_t*>(w.data);
  const int rows = int(w.rows), cols = int(w.cols);
  const bool ok = DispatchFormat(w.type, [&](auto tag) {
    constexpr TensorType T = decltype(tag)::value;
    if (n <= kDecodeTokens) {
      const int blocks = (rows + kTileRows - 1) / kTileRows;
      MatVecKernel<T><<<blocks, kWarps * 32, 0, s>>>(data, w.row_bytes, rows, cols, x, n, y);
    } else {
      const dim3 grid((rows + kTileRows - 1) / kTileRows, (n + kTileTokens - 1) / kTileTokens);
      MatMulTileKernel<T><<<grid, kWarps * 32, 0, s>>>(data, w.row_bytes, rows, cols, x, n, y);
    }
  });
  if (!ok)
    throw Error(std::string("CUDA matmul: weight format ") + TypeName(w.type) + " not supported");
  TQLM_CUDA_CHECK(cudaGetLastError());
}

void LaunchEmbed(const kernels::WeightView& table, const int32_t* tokens, int n, float scale,
                 float* x, void* stream) {
  if (n <= 0) return;
  CheckShape(table);
  auto s = static_cast<cudaStream_t>(stream);
  const auto* data = static_cast<const uint8_t*>(table.data);
  const bool ok = DispatchFormat(table.type, [&](auto tag) {
    constexpr TensorType T = decltype(tag)::value;
    EmbedKernel<T><<<n, 128, 0, s>>>(data, table.row_bytes, int(table.cols), tokens, scale, x);
  });
  if (!ok)
    throw Error(std::string("CUDA embedding: format ") + TypeName(table.type) + " not supported");
  TQLM_CUDA_CHECK(cudaGetLastError());
}

}  // namespace tqlm::cuda_backend
