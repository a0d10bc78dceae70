#include "kernels/cpu/quant_act.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "codec/half.h"

namespace tqlm::kernels {
namespace {

// ggml keeps activation block scales and sums as fp16; tqlm rounds them the same way so its
// int8 rounding matches llama.cpp's. Beyond fp16's range (a scale above 65504, i.e. an
// activation above ~8.3e6, or a block sum above 65504) fp16 would turn every output of the
// token into inf or NaN while the float paths stay finite, so there only the mantissa is
// rounded to fp16's 11 bits and the float exponent kept.
float RoundToF16(float v) {
  if (std::fabs(v) <= 65504.0f) return codec::F16ToF32(codec::F32ToF16(v));
  if (!std::isfinite(v)) return v;
  uint32_t bits;
  std::memcpy(&bits, &v, 4);
  bits += 0xfffu + ((bits >> 13) & 1u);  // round to nearest even at bit 13
  bits &= ~0x1fffu;
  std::memcpy(&v, &bits, 4);
  return v;
}

}  // namespace

ActScale ActScaleFor(TensorType weights) {
  switch (weights) {
    case TensorType::kQ2_K:
    case TensorType::kQ3_K:
    case TensorType::kQ4_K:
    case TensorType::kQ5_K:
    case TensorType::kQ6_K:
      return ActScale::kBlock256;
    case TensorType::kQ4_1:
    case TensorType::kQ5_1:
      return ActScale::kBlock32F16Sum;
    default:
      return ActScale::kBlock32F16;
  }
}

void StoreBlockScales(ActScale scale, ActQ8* out, size_t t, int64_t b, float d, int sum_lo,
                      int sum_hi) {
  const size_t P = size_t(out->pairs);
  float* dx = out->d_x.data() + t * P * 16;
  float* sx = out->s_x.data() + t * P * 16;
  float* s16x = out->s16_x.data() + t * P * 16;
  float* s32 = out->s32.data() + t * P * 2;
  float* s16 = out->s16.data() + t * P * 4;
  float* dd = out->d.data() + t * P * 2;
  int16_t* is16 = out->isum16.data() + t * P * 4;
  is16[2 * b] = int16_t(sum_lo);
  is16[2 * b + 1] = int16_t(sum_hi);
  if (scale == ActScale::kBlock32F16Sum) {
    // Q8_1 keeps d and d·sum as fp16, both rounded from the fp32 d.
    dd[b] = RoundToF16(d);
    s32[b] = RoundToF16(d * float(sum_lo + sum_hi));
    s16[2 * b] = RoundToF16(d * float(sum_lo));
    s16[2 * b + 1] = RoundToF16(d * float(sum_hi));
  } else if (scale == ActScale::kBlock32F16) {
    dd[b] = RoundToF16(d);
    s32[b] = dd[b] * float(sum_lo + sum_hi);
    s16[2 * b] = dd[b] * float(sum_lo);
    s16[2 * b + 1] = dd[b] * float(sum_hi);
  } else {
    dd[b] = d;
    s32[b] = d * float(sum_lo + sum_hi);
    s16[2 * b] = d * float(sum_lo);
    s16[2 * b + 1] = d * float(sum_hi);
  }
  for (int l = 0; l < 8; ++l) {
    dx[b * 8 + l] = dd[b];
    sx[b * 8 + l] = s32[b] / 8.0f;
    s16x[b * 8 + l] = s16[2 * b + l / 4] / 4.0f;
  }
}

void QuantizeActivations(const float* x, int n_tokens, int64_t cols, ActScale scale,
                         ActQ8* out) {
  out->n_tokens = n_tokens;
  out->cols = cols;
  out->blocks = cols / 32;
  out->pairs = (out->blocks + 1) / 2;
  out->stride_q = size_t(out->pairs) * 64;
  const size_t T = size_t(n_tokens), P = size_t(out->pairs);
  out->q.assign(T * out->stride_q, 0);
  out->d_x.assign(T * P * 16, 0.0f);
  out->s_x.assign(T * P * 16, 0.0f);
  out->s16_x.assign(T * P * 16, 0.0f);
  out->s32.assign(T * P * 2, 0.0f);
  out->s16.assign(T * P * 4, 0.0f);
  out->d.assign(T * P * 2, 0.0f);
  out->isum16.assign(T * P * 4, 0);
  const int64_t group = act_scale::GroupBlocks(scale);
  for (size_t t = 0; t < T; ++t) {
    const float* xt = x + t * size_t(cols);
    int8_t* q = out->q.data() + t * out->stride_q;
    for (int64_t g0 = 0; g0 < out->blocks; g0 += group) {
      const int64_t g1 = std::min(out->blocks, g0 + group);
      float amax = 0;
      for (int64_t j = g0 * 32; j < g1 * 32; ++j) amax = std::fmax(amax, std::fabs(xt[j]));
      float inv = 0, d = 0;
      act_scale::FromAmax(scale, amax, &inv, &d);
      for (int64_t b = g0; b < g1; ++b) {
        const float* xb = xt + b * 32;
        int sum_lo = 0, sum_hi = 0;
        for (int j = 0; j < 32; ++j) {
          // Clamped and NaN-safe: converting a NaN or huge float to int is undefined.
          const float r = std::nearbyint(xb[j] * inv);
          const int v = r >= 127.0f ? 127 : r <= -127.0f ? -127 : r == r ? int(r) : 0;
          q[b * 32 + j] = int8_t(v);
          (j < 16 ? sum_lo : sum_hi) += v;
        }
        StoreBlockScales(scale, out, t, b, d, sum_lo, sum_hi);
      }
    }
  }
}

}  // namespace tqlm::kernels
