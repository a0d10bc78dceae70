// Element-wise and row-wise ops of the transformer block that are not matrix products.
// Cheap next to the matmuls (O(n·d) per token), so plain loops that the compiler vectorizes.
#pragma once

#include <cstddef>

namespace tqlm::kernels {

// out[i] = x[i] / rms(x) * (weight[i] + weight_offset) for each of n rows of length d, with
// rms(x) = sqrt(mean(x²) + eps). weight_offset is 1 for models that store (w - 1) (Gemma), 0
// otherwise. out may equal x. Edge rows (tests/ops_reference_test.cc): a zero row gives zeros
// (also with eps = 0), a NaN makes the row NaN, an infinite entry gives NaN there and 0
// elsewhere (x/inf), subnormal and huge rows normalize like others.
void RmsNorm(const float* x, const float* weight, float weight_offset, float eps, int n, int d,
             float* out);

// RoPE on n rows of n_heads heads of head_dim; row t at position pos[t]. Only the first
// rot_dim dims rotate. inv_freq has rot_dim/2 entries (base^(-2i/rot_dim) / scaling factor).
// neox: pairs (i, i + rot_dim/2) (GPT-NeoX/Qwen/Gemma); otherwise adjacent pairs (2i, 2i+1).
void Rope(float* x, int n, int n_heads, int head_dim, int rot_dim, const int* pos,
          const float* inv_freq, bool neox);

// a[i] = silu(a[i]) * b[i], as a / (1 + exp(-a)): NaN stays NaN, silu(+inf) = inf,
// silu(-inf) = -inf/inf = NaN (finite a underflows to -0 instead).
void SiluMul(float* a, const float* b, size_t n);
// a[i] = gelu_tanh(a[i]) * b[i] = 0.5 a (1 + tanh(√(2/π) (a + 0.044715 a³))) b: NaN stays NaN,
// +inf gives inf, -inf gives NaN (-inf * 0).
void GeluMul(float* a, const float* b, size_t n);

void Add(float* a, const float* b, size_t n);           // a += b
void AddRows(float* a, const float* bias, int n, int d); // each row of a += bias
void Scale(float* a, float s, size_t n);
// a = cap * tanh(a / cap): the final-logit soft capping of Gemma 2 (cap > 0; Gemma 3 has none).
void Softcap(float* a, float cap, size_t n);

}  // namespace tqlm::kernels
