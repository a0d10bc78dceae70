#include "kernels/cpu/quant_act.h"

#include <cmath>

namespace tqlm::kernels {

void QuantizeActivations(const float* x, int n_tokens, int64_t cols, ActQ8* out) {
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
  for (size_t t = 0; t < T; ++t) {
    const float* xt = x + t * size_t(cols);
    int8_t* q = out->q.data() + t * out->stride_q;
    float* dx = out->d_x.data() + t * P * 16;
    float* sx = out->s_x.data() + t * P * 16;
    float* s16x = out->s16_x.data() + t * P * 16;
    float* s32 = out->s32.data() + t * P * 2;
    float* s16 = out->s16.data() + t * P * 4;
    float* dd = out->d.data() + t * P * 2;
    for (int64_t b = 0; b < out->blocks; ++b) {
      const float* xb = xt + b * 32;
      float amax = 0;
      for (int j = 0; j < 32; ++j) amax = std::fmax(amax, std::fabs(xb[j]));
      const float d = amax / 127.0f;
      const float inv = d != 0 ? 1.0f / d : 0.0f;
      int sum_lo = 0, sum_hi = 0;
      for (int j = 0; j < 32; ++j) {
        // Clamped and NaN-safe: converting a NaN or huge float to int is undefined.
        const float r = std::nearbyint(xb[j] * inv);
        const int v = r >= 127.0f ? 127 : r <= -127.0f ? -127 : r == r ? int(r) : 0;
        q[b * 32 + j] = int8_t(v);
        (j < 16 ? sum_lo : sum_hi) += v;
      }
      dd[b] = d;
      s32[b] = d * float(sum_lo + sum_hi);
      s16[2 * b] = d * float(sum_lo);
      s16[2 * b + 1] = d * float(sum_hi);
      for (int l = 0; l < 8; ++l) {
        dx[b * 8 + l] = d;
        sx[b * 8 + l] = s32[b] / 8.0f;
        s16x[b * 8 + l] = s16[2 * b + l / 4] / 4.0f;
      }
    }
  }
}

}  // namespace tqlm::kernels
