// Matrix products with GGUF-format weights on tensor cores, and the embedding lookup.
//
// Arithmetic, the same in both matmul kernels: weights of one 32-value chunk decoded to float
// (weight_chunk.h) and activations, both rounded to tf32 (fp32 range: large activations cannot
// overflow, 10-bit mantissa as fp16), multiplied by mma.m16n8k8; k runs in segments of 256
// values, each accumulated from zero in k order in fp32, and the segment sums are added in
// ascending order. The kernels differ only in how they cover the output:
//   * MatVecKernel (n <= 8 tokens, decode): a block owns 16 rows and the whole (zero-padded)
//     8-token tile, its warps take the segments round-robin (so that short and long rows
//     alike spread over many warps) and one pass adds the segment sums; every weight byte is
//     read once;
//   * MatMulTileKernel (n > 8, prefill): a block of 4 warps owns 64 rows x 64 tokens and
//     decodes each weight chunk once for all 64 tokens.
// mma computes each output column from its own B column only, so a token's result is the same
// whatever else is in the call: batch composition and prefill chunking do not change it. The
// file is compiled without FMA contraction so that the decoders round alike in both kernels.
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdint>
#include <string>

#include "backend/cuda/kernels.h"
#include "backend/cuda/weight_chunk.h"
#include "kernels/cuda/cuda_check.h"

namespace tqlm::cuda_backend {
namespace {

using kernels::TensorType;

constexpr int kKStep = 64;                  // k values staged in shared memory per step
constexpr int kStride = kKStep + 4;         // words per staged row (pad: no bank conflicts)
constexpr int kSegment = 256;               // k values per separately accumulated segment
constexpr int kDecodeWarps = 12;            // MatVecKernel: warps per block (at most)
constexpr int kDecodeTokens = 8;            // MatVecKernel's token tile (one mma n8)
constexpr int kTileWarps = 4;               // MatMulTileKernel
constexpr int kTileRows = 16 * kTileWarps;  // rows per block
constexpr int kTileTokens = 64;             // tokens per block

__device__ __forceinline__ uint32_t Tf32(float f) {
  uint32_t r;
  asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(r) : "f"(f));
  return r;
}

__device__ __forceinline__ void MmaTf32(float (&c)[4], uint32_t a0, uint32_t a1, uint32_t a2,
                                        uint32_t a3, uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// Decodes chunk (k0 / 32 + ch) of weight row `row` (zeros past the last row) into dst as tf32.
template <TensorType T>
__device__ __forceinline__ void StageWeightChunk(const uint8_t* w, size_t row_bytes, int rows,
                                                 int row, int k0, int ch, uint32_t* dst) {
  float v[kChunk];
  if (row < rows) {
    DecodeChunk<T>(w + size_t(row) * row_bytes, k0 / kChunk + ch, v);
  } else {
#pragma unroll
    for (int j = 0; j < kChunk; ++j) v[j] = 0.0f;
  }
#pragma unroll
  for (int i = 0; i < kChunk / 4; ++i)
    *reinterpret_cast<uint4*>(dst + 4 * i) =
        make_uint4(Tf32(v[4 * i]), Tf32(v[4 * i + 1]), Tf32(v[4 * i + 2]), Tf32(v[4 * i + 3]));
}

// Four activations x[token][k, k + 4) as tf32 (zeros for tokens >= n).
__device__ __forceinline__ void StageActivations4(const float* x, int cols, int n, int token,
                                                  int k, uint32_t* dst) {
  uint4 u = make_uint4(0, 0, 0, 0);
  if (token < n) {
    const float4 f = *reinterpret_cast<const float4*>(x + size_t(token) * cols + k);
    u = make_uint4(Tf32(f.x), Tf32(f.y), Tf32(f.z), Tf32(f.w));
  }
  *reinterpret_cast<uint4*>(dst) = u;
}

// acc[nt] += W_s[16 rows][kk] * X_s[nt tile of 8 tokens][kk]^T, in k-steps of 8.
template <int kNTiles>
__device__ __forceinline__ void MmaSteps(const uint32_t* w_s, const uint32_t* x_s, int kk,
                                         int lane, float (&acc)[kNTiles][4]) {
  const int gid = lane / 4, tig = lane % 4;
  for (int ks = 0; ks < kk / 8; ++ks) {
    const uint32_t* a = w_s + gid * kStride + ks * 8 + tig;
    const uint32_t a0 = a[0], a1 = a[8 * kStride], a2 = a[4], a3 = a[8 * kStride + 4];
#pragma unroll
    for (int nt = 0; nt < kNTiles; ++nt) {
      const uint32_t* b = x_s + (nt * 8 + gid) * kStride + ks * 8 + tig;
      MmaTf32(acc[nt], a0, a1, a2, a3, b[0], b[4]);
    }
  }
}

template <int kNTiles>
__device__ __forceinline__ void ZeroAcc(float (&acc)[kNTiles][4]) {
#pragma unroll
  for (int nt = 0; nt < kNTiles; ++nt) acc[nt][0] = acc[nt][1] = acc[nt][2] = acc[nt][3] = 0;
}

// Shared memory of MatVecKernel: per warp a weight and an activation stage, then the segment
// sums [segment][16 rows][8 tokens].
struct MatVecSmem {
  static size_t Bytes(int warps, int segments) {
    return size_t(warps) * (16 + kDecodeTokens) * kStride * 4 +
           size_t(segments) * 16 * kDecodeTokens * 4;
  }
};

template <TensorType T>
__global__ void MatVecKernel(const uint8_t* w, size_t row_bytes, size_t seg_bytes, int rows,
                             int cols, const float* x, int n, float* y) {
  extern __shared__ __align__(16) uint32_t smem[];
  const int warps = blockDim.x / 32;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int gid = lane / 4, tig = lane % 4;
  const int r0 = blockIdx.x * 16;
  const int segments = (cols + kSegment - 1) / kSegment;
  uint32_t* ws = smem + warp * (16 + kDecodeTokens) * kStride;
  uint32_t* xs = ws + 16 * kStride;
  float* sums = reinterpret_cast<float*>(smem + warps * (16 + kDecodeTokens) * kStride);
  // Ask for every weight byte this warp will read, up front: the stage loop below is a chain
  // of dependent steps (load, decode, mma), and with its loads already on their way to L2 each
  // step waits for L2 instead of device memory.
  {
    for (int seg = warp; seg < segments; seg += warps) {
      const size_t from = size_t(seg) * seg_bytes;
      const size_t to = row_bytes < from + seg_bytes ? row_bytes : from + seg_bytes;
      const int lines = int((to - from + 127) / 128) + 1;
      for (int i = lane; i < 16 * lines; i += 32) {
        const int row = r0 + i / lines;
        if (row >= rows) continue;
        const size_t line = from + size_t(i % lines) * 128;
        const size_t at = line < to ? line : to - 1;
        asm volatile("prefetch.global.L2 [%0];" ::"l"(w + size_t(row) * row_bytes + at));
      }
    }
  }
  for (int seg = warp; seg < segments; seg += warps) {
    float acc[1][4];
    ZeroAcc<1>(acc);
    const int seg_end = min(cols, (seg + 1) * kSegment);
    for (int k0 = seg * kSegment; k0 < seg_end; k0 += kKStep) {
      const int kk = min(kKStep, seg_end - k0), chunks = kk / kChunk;
      if (lane < 16 * chunks) {
        const int row = lane / chunks, ch = lane % chunks;
        StageWeightChunk<T>(w, row_bytes, rows, r0 + row, k0, ch,
                            ws + row * kStride + ch * kChunk);
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
    float* out = sums + seg * 16 * kDecodeTokens;
#pragma unroll
    for (int e = 0; e < 4; ++e)
      out[(gid + 8 * (e / 2)) * kDecodeTokens + 2 * tig + e % 2] = acc[0][e];
  }
  __syncthreads();
  for (int o = threadIdx.x; o < 16 * kDecodeTokens; o += blockDim.x) {
    const int r = o / kDecodeTokens, t = o % kDecodeTokens;
    if (t >= n || r0 + r >= rows) continue;
    float total = 0;
    for (int seg = 0; seg < segments; ++seg) total += sums[seg * 16 * kDecodeTokens + o];
    y[size_t(t) * rows + r0 + r] = total;
  }
}

template <TensorType T>
__global__ void __launch_bounds__(kTileWarps * 32)
    MatMulTileKernel(const uint8_t* w, size_t row_bytes, int rows, int cols, const float* x,
                     int n, float* y) {
  __shared__ __align__(16) uint32_t w_s[kTileRows * kStride];
  __shared__ __align__(16) uint32_t x_s[kTileTokens * kStride];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int gid = lane / 4, tig = lane % 4;
  const int rb = blockIdx.x * kTileRows, t0 = blockIdx.y * kTileTokens;
  const float* xt = x + size_t(t0) * cols;
  const int nt_here = min(kTileTokens, n - t0);
  constexpr int kNT = kTileTokens / 8;
  float total[kNT][4], acc[kNT][4];
  ZeroAcc<kNT>(total);
  ZeroAcc<kNT>(acc);
  for (int k0 = 0; k0 < cols; k0 += kKStep) {
    const int seg_end = min(cols, (k0 / kSegment + 1) * kSegment);
    const int kk = min(kKStep, seg_end - k0), chunks = kk / kChunk;
    __syncthreads();  // the previous step's reads are done
    for (int idx = threadIdx.x; idx < kTileRows * chunks; idx += kTileWarps * 32) {
      const int row = idx / chunks, ch = idx % chunks;
      StageWeightChunk<T>(w, row_bytes, rows, rb + row, k0, ch,
                          w_s + row * kStride + ch * kChunk);
    }
    const int quads = kk / 4;
    for (int idx = threadIdx.x; idx < kTileTokens * quads; idx += kTileWarps * 32) {
      const int token = idx / quads, off = (idx % quads) * 4;
      StageActivations4(xt, cols, nt_here, token, k0 + off, x_s + token * kStride + off);
    }
    __syncthreads();
    MmaSteps<kNT>(w_s + warp * 16 * kStride, x_s, kk, lane, acc);
    if (k0 + kk == seg_end) {  // a segment ends: add its sum, start the next from zero
#pragma unroll
      for (int nt = 0; nt < kNT; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          total[nt][e] += acc[nt][e];
          acc[nt][e] = 0;
        }
    }
  }
  const int r0 = rb + warp * 16;
#pragma unroll
  for (int nt = 0; nt < kNT; ++nt) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int row = r0 + gid + 8 * (e / 2);
      const int token = t0 + nt * 8 + 2 * tig + (e % 2);
      if (row < rows && token < n) y[size_t(token) * rows + row] = total[nt][e];
    }
  }
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
    constexpr int kAlign = ChunkAlignment<T>();
    if (reinterpret_cast<uintptr_t>(data) % 16 != 0 || w.row_bytes % kAlign != 0)
      throw Error("CUDA matmul: weight rows are not aligned for their format");
    if (n <= kDecodeTokens) {
      const int segments = (cols + kSegment - 1) / kSegment;
      const int warps = std::min(kDecodeWarps, segments);
      const size_t smem = MatVecSmem::Bytes(warps, segments);
      static size_t raised = 48 * 1024;  // per format: the dynamic shared memory limit set
      if (smem > raised) {
        TQLM_CUDA_CHECK(cudaFuncSetAttribute(MatVecKernel<T>,
                                             cudaFuncAttributeMaxDynamicSharedMemorySize,
                                             int(smem)));
        raised = smem;
      }
      const size_t seg_bytes = kernels::RowBytes(T, kSegment);
      MatVecKernel<T><<<(rows + 15) / 16, warps * 32, smem, s>>>(data, w.row_bytes, seg_bytes,
                                                                rows, cols, x, n, y);
    } else {
      const dim3 grid((rows + kTileRows - 1) / kTileRows, (n + kTileTokens - 1) / kTileTokens);
      MatMulTileKernel<T><<<grid, kTileWarps * 32, 0, s>>>(data, w.row_bytes, rows, cols, x, n,
                                                           y);
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
