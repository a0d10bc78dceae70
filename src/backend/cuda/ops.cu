// The transformer block's element-wise and row-wise ops on the GPU. Each follows the CPU
// kernel's formula (kernels/cpu/ops.cc) in the same operation order, with explicit
// round-to-nearest intrinsics where the compiler would otherwise fuse a multiply and an add, so
// that norms and RoPE agree with the CPU to the last bit wherever the math library does.
#include <cuda_runtime.h>

#include "backend/cuda/kernels.h"
#include "kernels/cuda/cuda_check.h"

namespace tqlm::cuda_backend {
namespace {

constexpr int kThreads = 256;

int Blocks(size_t n) { return int((n + kThreads - 1) / kThreads); }

// out = x / rms(x) * (w + offset) for one row per block; the sum of squares in double, as on
// the CPU.
__global__ void RmsNormKernel(const float* x, const float* w, float offset, float eps, int d,
                              float* out) {
  const float* xr = x + size_t(blockIdx.x) * d;
  float* o = out + size_t(blockIdx.x) * d;
  double ss = 0;
  for (int i = threadIdx.x; i < d; i += blockDim.x) ss += double(xr[i]) * double(xr[i]);
  __shared__ double part[kThreads / 32];
  for (int off = 16; off > 0; off /= 2) ss += __shfl_xor_sync(0xffffffffu, ss, off);
  if (threadIdx.x % 32 == 0) part[threadIdx.x / 32] = ss;
  __syncthreads();
  double total = 0;
  for (int i = 0; i < int(blockDim.x / 32); ++i) total += part[i];
  const float scale = float(1.0 / sqrt(total / d + double(eps)));
  for (int i = threadIdx.x; i < d; i += blockDim.x)
    o[i] = __fmul_rn(__fmul_rn(xr[i], scale), __fadd_rn(w[i], offset));
}

// One thread per (token, rotated pair); it rotates that pair in every head.
__global__ void RopeKernel(float* x, int n, int n_heads, int head_dim, int rot_dim,
                           const int32_t* pos, const float* inv_freq, bool neox) {
  const int half = rot_dim / 2;
  const int idx = blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= n * half) return;
  const int t = idx / half, i = idx % half;
  const double angle = double(pos[t]) * double(inv_freq[i]);
  const float c = float(cos(angle)), s = float(sin(angle));
  const int i0 = neox ? i : 2 * i;
  const int i1 = neox ? i + half : 2 * i + 1;
  for (int h = 0; h < n_heads; ++h) {
    float* v = x + (size_t(t) * n_heads + h) * head_dim;
    const float a = v[i0], b = v[i1];
    v[i0] = __fsub_rn(__fmul_rn(a, c), __fmul_rn(b, s));
    v[i1] = __fadd_rn(__fmul_rn(a, s), __fmul_rn(b, c));
  }
}

__global__ void SiluMulKernel(float* a, const float* b, size_t n) {
  const size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) a[i] = __fmul_rn(__fdiv_rn(a[i], __fadd_rn(1.0f, expf(-a[i]))), b[i]);
}

__global__ void GeluMulKernel(float* a, const float* b, size_t n) {
  const size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  constexpr float kSqrt2OverPi = 0.7978845608028654f;
  const float v = a[i];
  const float inner =
      __fmul_rn(kSqrt2OverPi, __fadd_rn(v, __fmul_rn(__fmul_rn(__fmul_rn(0.044715f, v), v), v)));
  a[i] = __fmul_rn(__fmul_rn(__fmul_rn(0.5f, v), __fadd_rn(1.0f, tanhf(inner))), b[i]);
}

__global__ void AddKernel(float* a, const float* b, size_t n) {
  const size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) a[i] = __fadd_rn(a[i], b[i]);
}

__global__ void AddRowsKernel(float* a, const float* bias, size_t n, int d) {
  const size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) a[i] = __fadd_rn(a[i], bias[i % d]);
}

__global__ void SoftcapKernel(float* a, float cap, size_t n) {
  const size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) a[i] = __fmul_rn(cap, tanhf(__fdiv_rn(a[i], cap)));
}

cudaStream_t S(void* stream) { return static_cast<cudaStream_t>(stream); }

}  // namespace

void LaunchRmsNorm(const float* x, const float* weight, float offset, float eps, int rows, int d,
                   float* out, void* stream) {
  if (rows <= 0) return;
  RmsNormKernel<<<rows, kThreads, 0, S(stream)>>>(x, weight, offset, eps, d, out);
  TQLM_CUDA_CHECK(cudaGetLastError());
}

void LaunchRope(float* x, int n, int n_heads, int head_dim, int rot_dim, const int32_t* pos,
                const float* inv_freq, bool neox, void* stream) {
  const size_t items = size_t(n) * (rot_dim / 2);
  if (items == 0) return;
  RopeKernel<<<Blocks(items), kThreads, 0, S(stream)>>>(x, n, n_heads, head_dim, rot_dim, pos,
                                                        inv_freq, neox);
  TQLM_CUDA_CHECK(cudaGetLastError());
}

void LaunchSiluMul(float* a, const float* b, size_t n, void* stream) {
  if (n == 0) return;
  SiluMulKernel<<<Blocks(n), kThreads, 0, S(stream)>>>(a, b, n);
  TQLM_CUDA_CHECK(cudaGetLastError());
}

void LaunchGeluMul(float* a, const float* b, size_t n, void* stream) {
  if (n == 0) return;
  GeluMulKernel<<<Blocks(n), kThreads, 0, S(stream)>>>(a, b, n);
  TQLM_CUDA_CHECK(cudaGetLastError());
}

void LaunchAdd(float* a, const float* b, size_t n, void* stream) {
  if (n == 0) return;
  AddKernel<<<Blocks(n), kThreads, 0, S(stream)>>>(a, b, n);
  TQLM_CUDA_CHECK(cudaGetLastError());
}

void LaunchAddRows(float* a, const float* bias, int n, int d, void* stream) {
  const size_t count = size_t(n) * d;
  if (count == 0) return;
  AddRowsKernel<<<Blocks(count), kThreads, 0, S(stream)>>>(a, bias, count, d);
  TQLM_CUDA_CHECK(cudaGetLastError());
}

void LaunchSoftcap(float* a, float cap, size_t n, void* stream) {
  if (n == 0) return;
  SoftcapKernel<<<Blocks(n), kThreads, 0, S(stream)>>>(a, cap, n);
  TQLM_CUDA_CHECK(cudaGetLastError());
}

}  // namespace tqlm::cuda_backend
