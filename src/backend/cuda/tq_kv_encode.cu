// TurboQuant KV cache on the GPU: raw rows of new tokens (rotated, fp16), block encoding and
// decoding in the CPU's block layout (tq_block.cuh).
//
// The encoder follows TurboBlockFormat::Encode (kv/block_format_turbo.cc) step by step, in the
// same precisions (double sums of squares and errors, float divisions, fp16 norms and center):
// per token the norm of (y - c) and each coordinate's Lloyd-Max index (the number of
// thresholds below y / |y|, the codebook's Quantize); keys are encoded plain and around the
// block's fp16 mean, and the encoding whose error varies less between the block's keys is
// kept. Its input is the CPU's: the CPU encodes the float rotation of its fp16 raw rows, so the
// GPU keeps, besides the rotated fp16 rows that attention reads, the input rows rounded to fp16
// before the rotation (the second raw plane, tq_layout.h SourcePlane) and rotates those in float
// when a block fills. What remains different is the rotation's float arithmetic (the CPU's fast
// Walsh-Hadamard transform, here a dense fp32 product: a few float ulps), so only a coordinate
// within that of a threshold takes the neighbouring level (cuda_backend_test bounds such flips).
#include <cuda_fp16.h>

#include <algorithm>
#include <cfloat>

#include "backend/cuda/tq_block.cuh"
#include "backend/cuda/tq_kv_kernels.h"
#include "kernels/cuda/cuda_check.h"
#include "tqlm/error.h"

namespace tqlm::cuda_backend {
namespace {

constexpr float kF16Max = 65504.0f;

// One block per (token, KV head), then (with q_rot) one per (token, query head) that rotates
// the query; blockDim = dim.
__global__ void AppendRawKernel(TqStepView step, TqLayerParams p, const float* k, const float* v,
                                const float* q, float* q_rot) {
  extern __shared__ float xs[];
  const int t = blockIdx.x, h = blockIdx.y, j = threadIdx.x, d = p.dim;
  if (h >= p.n_kv_heads) {  // y = R_k q, as the attention's query rotation
    const size_t row = (size_t(t) * p.n_heads + (h - p.n_kv_heads)) * d;
    xs[j] = q[row + j];
    __syncthreads();
    float y = 0;
    for (int i = 0; i < d; ++i) y = fmaf(p.kf.rot_t[size_t(i) * d + j], xs[i], y);
    q_rot[row + j] = y;
    return;
  }
  const TqKvLayer L = step.seq_tables[step.tok_seq[t]][step.layer];
  const int pos = step.tok_pos[t];
  for (int side = 0; side < 2; ++side) {
    const float* x = (side == 0 ? k : v) + (size_t(t) * p.n_kv_heads + h) * d;
    const bool rotate = side == 0 ? p.k_comp : p.v_comp;
    const TqFormat& f = side == 0 ? p.kf : p.vf;
    xs[j] = x[j];
    __syncthreads();
    float y = xs[j];
    uint16_t* raw = side == 0 ? L.raw_k : L.raw_v;
    const int ring = side == 0 ? L.ring_k : L.ring_v;
    const size_t row = (RawRow(pos, p.sinks, ring) * p.n_kv_heads + h) * d + j;
    if (rotate) {
      // The encoder's input: the row rounded to fp16 as the CPU stores it, unrotated.
      raw[SourcePlane(p.sinks, ring, p.n_kv_heads, d) + row] =
          __half_as_ushort(__float2half_rn(xs[j]));
      y = 0;
      for (int i = 0; i < d; ++i) y = fmaf(f.rot_t[size_t(i) * d + j], xs[i], y);
    }
    raw[row] = __half_as_ushort(__float2half_rn(y));
    __syncthreads();  // xs is reused by the V side
  }
}

__device__ int Quantize(const float* thr, int n_levels, float u) {
  int idx = 0;
  for (int step = n_levels / 2; step >= 1; step /= 2)
    if (u > thr[idx + step - 1]) idx += step;
  return idx;
}

struct EncodeSmem {
  float* x;       // [64][dim] rotated rows
  float* center;  // [dim]
  float* lev;     // [2][256] levels hi, lo
  float* thr;     // [2][256] thresholds hi, lo
  float* stored;  // [64] fp16 norms as floats
  float* norm;    // [64]
  int* ok;        // [64]
  double* red;    // [blockDim / 32]
  uint32_t* img;  // block image
};

__device__ double BlockSum(double v, double* red) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  __syncthreads();
  if (threadIdx.x % 32 == 0) red[threadIdx.x / 32] = v;
  __syncthreads();
  double s = 0;
  for (int w = 0; w < int(blockDim.x) / 32; ++w) s += red[w];
  return s;
}

// EncodeAround of the CPU: codes and norms of (x - center) into img (zeroed here up to the
// center bytes) and the error that varies between tokens, sum_t |e_t - mean(e)|^2.
__device__ double EncodeAround(const TqFormat& f, const EncodeSmem& s, const float* center) {
  const int d = f.dim, words = f.block_stride / 4;
  for (int i = threadIdx.x; i < words; i += blockDim.x)
    if (i * 4 < f.center_offset) s.img[i] = 0;
  __syncthreads();
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, n_warps = blockDim.x / 32;
  for (int t = warp; t < kTqBlock; t += n_warps) {
    double sq = 0;
    for (int j = lane; j < d; j += 32) {
      const float y = s.x[t * d + j] - center[j];
      sq += double(y) * y;
    }
    for (int o = 16; o > 0; o >>= 1) sq += __shfl_xor_sync(0xffffffffu, sq, o);
    if (lane == 0) {
      const float norm = float(sqrt(sq));
      const bool ok = norm > 0 && isfinite(norm);
      const __half h = __float2half_rn(ok ? fminf(norm, kF16Max) : 0.0f);
      reinterpret_cast<__half*>(reinterpret_cast<uint8_t*>(s.img) + f.norms_offset)[t] = h;
      s.stored[t] = __half2float(h);
      s.norm[t] = norm;
      s.ok[t] = ok;
    }
  }
  __syncthreads();
  double varying = 0;
  for (int j = threadIdx.x; j < d; j += blockDim.x) {
    const int hi = j < f.n_hi ? 1 : 0;
    const int bits = hi ? f.hi_bits : f.lo_bits;
    const float* lev = s.lev + (hi ? 0 : 256);
    const float* thr = s.thr + (hi ? 0 : 256);
    double mean = 0;
    for (int t = 0; t < kTqBlock; ++t) {
      const float y = s.x[t * d + j] - center[j];
      const int code = s.ok[t] ? Quantize(thr, 1 << bits, y / s.norm[t]) : 0;
      if (s.ok[t]) {
        int unit, p;
        CodeAt(f, t, j, &unit, &p);
        SetCode(s.img, unit, bits, p, code);
      }
      mean += (double(lev[code]) * s.stored[t] - y) / kTqBlock;
    }
    for (int t = 0; t < kTqBlock; ++t) {
      const float y = s.x[t * d + j] - center[j];
      const int code = s.ok[t] ? Quantize(thr, 1 << bits, y / s.norm[t]) : 0;
      const double e = double(lev[code]) * s.stored[t] - y - mean;
      varying += e * e;
    }
  }
  varying = BlockSum(varying, s.red);
  return isfinite(varying) ? varying : DBL_MAX;
}

struct BlockJob {
  const uint16_t* raw;
  int ring;
  uint8_t* comp;
  TqFormat f;
};

// grid (nb, n_kv_heads, tensors); blockDim 256.
__global__ void EncodeKernel(BlockJob jk, BlockJob jv, int use_k, TqLayerParams p, int b0) {
  const BlockJob& job = (blockIdx.z == 0 && use_k) ? jk : jv;
  const TqFormat& f = job.f;
  const int b = b0 + blockIdx.x, h = blockIdx.y, d = f.dim;
  extern __shared__ __align__(16) unsigned char smem[];
  EncodeSmem s;
  s.img = reinterpret_cast<uint32_t*>(smem);
  s.red = reinterpret_cast<double*>(smem + f.block_stride);
  s.x = reinterpret_cast<float*>(smem + f.block_stride + 8 * 32);
  s.center = s.x + kTqBlock * d;
  s.lev = s.center + d;
  s.thr = s.lev + 512;
  s.stored = s.thr + 512;
  s.norm = s.stored + kTqBlock;
  s.ok = reinterpret_cast<int*>(s.norm + kTqBlock);
  __shared__ int all_finite;
  __shared__ double plain_err;
  if (threadIdx.x == 0) all_finite = 1;
  for (int i = threadIdx.x; i < 256; i += blockDim.x) {
    s.lev[i] = i < (1 << f.hi_bits) ? f.levels_hi[i] : 0.0f;
    s.lev[256 + i] = i < (1 << f.lo_bits) ? f.levels_lo[i] : 0.0f;
    s.thr[i] = i + 1 < (1 << f.hi_bits) ? f.thr_hi[i] : 0.0f;
    s.thr[256 + i] = i + 1 < (1 << f.lo_bits) ? f.thr_lo[i] : 0.0f;
  }
  __syncthreads();
  // The fp16 input rows (unrotated) into s.x, then rotated in place token by token through
  // s.center as scratch (y = R x as AppendRawKernel computes it).
  const uint16_t* src = job.raw + SourcePlane(p.sinks, job.ring, p.n_kv_heads, d);
  for (int i = threadIdx.x; i < kTqBlock * d; i += blockDim.x) {
    const int t = i / d, j = i % d;
    const int pos = p.sinks + b * kTqBlock + t;
    const float x = __half2float(
        __ushort_as_half(src[(RawRow(pos, p.sinks, job.ring) * p.n_kv_heads + h) * d + j]));
    s.x[i] = x;
    if (!isfinite(x)) all_finite = 0;
  }
  __syncthreads();
  for (int t = 0; t < kTqBlock; ++t) {
    float* xt = s.x + t * d;
    for (int j = threadIdx.x; j < d; j += blockDim.x) s.center[j] = xt[j];
    __syncthreads();
    for (int j = threadIdx.x; j < d; j += blockDim.x) {
      float y = 0;
      for (int i = 0; i < d; ++i) y = fmaf(f.rot_t[size_t(i) * d + j], s.center[i], y);
      xt[j] = y;
    }
    __syncthreads();
  }
  for (int j = threadIdx.x; j < d; j += blockDim.x) s.center[j] = 0;
  __syncthreads();
  uint8_t* out = job.comp + (size_t(b) * p.n_kv_heads + h) * f.block_stride;
  const double err0 = EncodeAround(f, s, s.center);
  if (threadIdx.x == 0) plain_err = err0;
  // Center bytes: zero unless the centered encoding wins.
  const int words = f.block_stride / 4;
  if (!f.centered || !all_finite) {
    for (int i = threadIdx.x; i < words; i += blockDim.x) {
      if (i * 4 >= f.center_offset) s.img[i] = 0;
      reinterpret_cast<uint32_t*>(out)[i] = s.img[i];
    }
    return;
  }
  // Keep the plain image in global memory while the centered one is built.
  for (int i = threadIdx.x; i < words; i += blockDim.x)
    reinterpret_cast<uint32_t*>(out)[i] = i * 4 >= f.center_offset ? 0u : s.img[i];
  __syncthreads();
  for (int j = threadIdx.x; j < d; j += blockDim.x) {
    double sum = 0;
    for (int t = 0; t < kTqBlock; ++t) sum += s.x[t * d + j];
    const float m = fminf(fmaxf(float(sum / kTqBlock), -kF16Max), kF16Max);
    s.center[j] = __half2float(__float2half_rn(m));
  }
  __syncthreads();
  const double err1 = EncodeAround(f, s, s.center);
  if (!(err1 < plain_err)) return;  // uniform across the block
  __syncthreads();
  for (int i = threadIdx.x; i < words; i += blockDim.x) {
    if (i * 4 < f.center_offset) reinterpret_cast<uint32_t*>(out)[i] = s.img[i];
  }
  __half* c = reinterpret_cast<__half*>(out + f.center_offset);
  for (int j = threadIdx.x; j < d; j += blockDim.x) c[j] = __float2half_rn(s.center[j]);
}

// grid (nb, n_kv_heads, tensors); blockDim = dim.
__global__ void DecodeKernel(BlockJob jk, BlockJob jv, int use_k, TqLayerParams p, int b0) {
  const BlockJob& job = (blockIdx.z == 0 && use_k) ? jk : jv;
  const TqFormat& f = job.f;
  const int b = b0 + blockIdx.x, h = blockIdx.y, d = f.dim, j = threadIdx.x;
  const uint8_t* blk = job.comp + (size_t(b) * p.n_kv_heads + h) * f.block_stride;
  const __half* norms = reinterpret_cast<const __half*>(blk + f.norms_offset);
  const float center =
      f.centered ? __half2float(reinterpret_cast<const __half*>(blk + f.center_offset)[j]) : 0.0f;
  const float* lev = j < f.n_hi ? f.levels_hi : f.levels_lo;
  const int bits = BitsOf(f, j);
  uint16_t* raw = const_cast<uint16_t*>(job.raw);
  const size_t src = SourcePlane(p.sinks, job.ring, p.n_kv_heads, d);
  extern __shared__ float ys[];
  for (int t = 0; t < kTqBlock; ++t) {
    int unit, pc;
    CodeAt(f, t, j, &unit, &pc);
    const float y = lev[GetCode(blk + unit, bits, pc)] * __half2float(norms[t]) + center;
    const int pos = p.sinks + b * kTqBlock + t;
    const size_t row = (RawRow(pos, p.sinks, job.ring) * p.n_kv_heads + h) * d + j;
    raw[row] = __half_as_ushort(__float2half_rn(y));
    // The unrotated row R^T y in fp16, as the CPU re-stores a cut block's decoded rows.
    ys[j] = y;
    __syncthreads();
    float x = 0;
    for (int i = 0; i < d; ++i) x = fmaf(f.rot[size_t(i) * d + j], ys[i], x);
    raw[src + row] = __half_as_ushort(__float2half_rn(x));
    __syncthreads();
  }
}

void Jobs(const TqKvLayer& L, const TqLayerParams& p, BlockJob* jk, BlockJob* jv, int* n) {
  *jk = {L.raw_k, L.ring_k, L.comp_k, p.kf};
  *jv = {L.raw_v, L.ring_v, L.comp_v, p.vf};
  *n = (p.k_comp ? 1 : 0) + (p.v_comp ? 1 : 0);
}

}  // namespace

void LaunchTqAppendRaw(const TqStepView& step, const TqLayerParams& p, const float* k,
                       const float* v, void* stream, const float* q, float* q_rot) {
  if (step.n <= 0) return;
  const bool rot_q = q_rot != nullptr && p.k_comp;
  AppendRawKernel<<<dim3(step.n, p.n_kv_heads + (rot_q ? p.n_heads : 0)), p.dim,
                    p.dim * sizeof(float), static_cast<cudaStream_t>(stream)>>>(step, p, k, v, q,
                                                                                 q_rot);
  TQLM_CUDA_CHECK(cudaGetLastError());
}

void LaunchTqEncodeBlocks(const TqKvLayer& L, const TqLayerParams& p, int b0, int nb,
                          void* stream) {
  BlockJob jk, jv;
  int tensors = 0;
  Jobs(L, p, &jk, &jv, &tensors);
  if (nb <= 0 || tensors == 0) return;
  const int stride = std::max(p.k_comp ? p.kf.block_stride : 0, p.v_comp ? p.vf.block_stride : 0);
  const size_t smem = size_t(stride) + 8 * 32 +
                      (size_t(kTqBlock) * p.dim + p.dim + 1024 + 3 * kTqBlock) * sizeof(float);
  static size_t configured = 48 * 1024;
  if (smem > configured) {
    TQLM_CUDA_CHECK(cudaFuncSetAttribute(EncodeKernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         int(smem)));
    configured = smem;
  }
  EncodeKernel<<<dim3(nb, p.n_kv_heads, tensors), 256, smem, static_cast<cudaStream_t>(stream)>>>(
      jk, jv, p.k_comp, p, b0);
  TQLM_CUDA_CHECK(cudaGetLastError());
}

void LaunchTqDecodeBlocks(const TqKvLayer& L, const TqLayerParams& p, int b0, int nb,
                          void* stream) {
  BlockJob jk, jv;
  int tensors = 0;
  Jobs(L, p, &jk, &jv, &tensors);
  if (nb <= 0 || tensors == 0) return;
  DecodeKernel<<<dim3(nb, p.n_kv_heads, tensors), p.dim, p.dim * sizeof(float),
                 static_cast<cudaStream_t>(stream)>>>(
      jk, jv, p.k_comp, p, b0);
  TQLM_CUDA_CHECK(cudaGetLastError());
}

}  // namespace tqlm::cuda_backend
