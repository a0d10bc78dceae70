// Activations quantized to 8-bit blocks of 32 (one scale per block), once per MatMul, so the
// inner products with quantized weights become integer dot products. Besides the int8 values
// the layout keeps, per token, the block scales and block sums in the forms the kernels
// consume directly (pre-broadcast to vector lanes), so a kernel never re-derives them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "kernels/tensor_format.h"

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
  // Per token: the exact int8 sums of each 16-value half-block (pairs * 4 entries). The
  // k-quant kernels fold minimums and offsets in the integer domain with them, so every
  // engine reaches the same integers before the first float step (matmul_vnni_kquant.cc).
  std::vector<int16_t> isum16;

  const int8_t* q_at(int t) const { return q.data() + size_t(t) * stride_q; }
  const float* dx_at(int t) const { return d_x.data() + size_t(t) * size_t(pairs) * 16; }
  const float* sx_at(int t) const { return s_x.data() + size_t(t) * size_t(pairs) * 16; }
  const float* s16x_at(int t) const { return s16_x.data() + size_t(t) * size_t(pairs) * 16; }
  const float* s32_at(int t) const { return s32.data() + size_t(t) * size_t(pairs) * 2; }
  const float* s16_at(int t) const { return s16.data() + size_t(t) * size_t(pairs) * 4; }
  const float* d_at(int t) const { return d.data() + size_t(t) * size_t(pairs) * 2; }
  const int16_t* isum16_at(int t) const {
    return isum16.data() + size_t(t) * size_t(pairs) * 4;
  }
};

// How the int8 scales are chosen. tqlm rounds exactly as llama.cpp's CPU backend does for
// the same weight format, so the two engines' outputs differ only by summation order (the
// engine test compares them token for token; with a different scale rule the int8 rounding
// noise of the two engines is independent, and on a small model that alone flips a few
// percent of greedy next-token choices).
enum class ActScale {
  kBlock32F16,  // ggml Q8_0 (for Q4_0, Q5_0, Q8_0 weights): d = max|x| / 127 per 32
                // values, q = round(x · (1 / d)), d then rounded to fp16
  kBlock32F16Sum,  // ggml Q8_1 (for Q4_1, Q5_1): as Q8_0, plus d·sum(q) kept as fp16 (the
                   // weights' minimum multiplies it)
  kBlock256,    // ggml Q8_K (for k-quant weights): one fp32 scale per 256 values,
                // s = 127 / max|x|, q = round(x · s), d = 1 / s
};

// The activation format ggml pairs with each weight format.
ActScale ActScaleFor(TensorType weights);

// Quantizes x[t * cols + c] (cols a multiple of 32; of 256 for kBlock256 unless the last
// group is shorter). Rounding is to nearest even; NaN becomes 0.
void QuantizeActivations(const float* x, int n_tokens, int64_t cols, ActScale scale,
                         ActQ8* out);

namespace act_scale {
// The multiplier applied to x and the scale d the int8 values stand for, from max|x| over
// the scale's group.
inline void FromAmax(ActScale scale, float amax, float* inv, float* d) {
  if (scale == ActScale::kBlock256) {
    *inv = amax != 0 ? 127.0f / amax : 0.0f;
    *d = *inv != 0 ? 1.0f / *inv : 0.0f;
  } else {
    *d = amax / 127.0f;
    *inv = *d != 0 ? 1.0f / *d : 0.0f;
  }
}
// Values of 32 per scale group.
inline int64_t GroupBlocks(ActScale scale) { return scale == ActScale::kBlock256 ? 8 : 1; }
}  // namespace act_scale

// Fills the per-block scale fields of `out` for token t, block b, from the unrounded scale d
// and the int8 sums of the block's two halves.
void StoreBlockScales(ActScale scale, ActQ8* out, size_t t, int64_t b, float d, int sum_lo,
                      int sum_hi);

}  // namespace tqlm::kernels
