// Activations quantized to 8-bit blocks of 32 (one scale per block), once per MatMul, so the
// inner products with quantized weights become integer dot products. Besides the int8 values
// the layout keeps, per token, the block scales and block sums in the forms the kernels
// consume directly (pre-broadcast to vector lanes), so a kernel never re-derives them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace tqlm::kernels {

struct ActQ8 {
  int n_tokens = 0;
  int64_t cols = 0;     // multiple of 32
  int64_t blocks = 0;   // cols / 32
  int64_t pairs = 0;    // blocks rounded up to even, / 2
  // Per token: stride_q int8 values (pairs * 64, zero padded); token t at q + t * stride_q.
  size_t stride_q = 0;
  std::vector<int8_t> q;
  // Per token, per pair of blocks: 16 floats, lanes 0-7 for the first block, 8-15 the second:
  // d_x = the block scale d; s_x = d * sum(q) / 8 (lanes of a pair add up to d*sum per block).
  std::vector<float> d_x, s_x;
  // Per token, per pair: 16 floats, lanes 4g..4g+3 = d * sum(q of 16-value group g) / 4.
  std::vector<float> s16_x;
  // Per token: d * sum(q) for each block of 32 (s32) and each half-block of 16 (s16).
  std::vector<float> s32, s16;
  // Per token: d per block (for scalar tails and references).
  std::vector<float> d;

  const int8_t* q_at(int t) const { return q.data() + size_t(t) * stride_q; }
  const float* dx_at(int t) const { return d_x.data() + size_t(t) * size_t(pairs) * 16; }
  const float* sx_at(int t) const { return s_x.data() + size_t(t) * size_t(pairs) * 16; }
  const float* s16x_at(int t) const { return s16_x.data() + size_t(t) * size_t(pairs) * 16; }
  const float* s32_at(int t) const { return s32.data() + size_t(t) * size_t(pairs) * 2; }
  const float* s16_at(int t) const { return s16.data() + size_t(t) * size_t(pairs) * 4; }
  const float* d_at(int t) const { return d.data() + size_t(t) * size_t(pairs) * 2; }
};

// Quantizes x[t * cols + c] (cols a multiple of 32): per block d = max|x| / 127 and
// q = round-to-nearest-even(x / d), as ggml's Q8_0 does.
void QuantizeActivations(const float* x, int n_tokens, int64_t cols, ActQ8* out);

}  // namespace tqlm::kernels
