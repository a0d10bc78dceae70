#include "kernels/cpu/ops.h"

#include <algorithm>
#include <cmath>

namespace tqlm::kernels {

void RmsNorm(const float* x, const float* weight, float weight_offset, float eps, int n, int d,
             float* out) {
  for (int t = 0; t < n; ++t) {
    const float* xr = x + size_t(t) * d;
    float* o = out + size_t(t) * d;
    double ss = 0;
    for (int i = 0; i < d; ++i) ss += double(xr[i]) * xr[i];
    const double ms = ss / d + eps;
    if (ms == 0) {  // a zero row (eps = 0): zero, not 0/0
      std::fill(o, o + d, 0.0f);
      continue;
    }
    const double scale = 1.0 / std::sqrt(ms);
    if (scale >= 0x1p-126 && scale <= 0x1p127) {  // a normal float: the fast path
      const float s = float(scale);
      for (int i = 0; i < d; ++i) o[i] = xr[i] * s * (weight[i] + weight_offset);
    } else {
      // 1/rms beyond float (tiny rows with eps = 0, huge rows) or not finite (an Inf or NaN
      // in the row: x/inf = 0, inf/inf and NaN give NaN): in double.
      for (int i = 0; i < d; ++i) o[i] = float(double(xr[i]) * scale * (weight[i] + weight_offset));
    }
  }
}

void Rope(float* x, int n, int n_heads, int head_dim, int rot_dim, const int* pos,
          const float* inv_freq, bool neox) {
  const int half = rot_dim / 2;
  for (int t = 0; t < n; ++t) {
    for (int i = 0; i < half; ++i) {
      const double angle = double(pos[t]) * inv_freq[i];
      const float c = float(std::cos(angle)), s = float(std::sin(angle));
      for (int h = 0; h < n_heads; ++h) {
        float* v = x + (size_t(t) * n_heads + h) * head_dim;
        const int i0 = neox ? i : 2 * i;
        const int i1 = neox ? i + half : 2 * i + 1;
        const float a = v[i0], b = v[i1];
        v[i0] = a * c - b * s;
        v[i1] = a * s + b * c;
      }
    }
  }
}

void SiluMul(float* a, const float* b, size_t n) {
  for (size_t i = 0; i < n; ++i) a[i] = a[i] / (1.0f + std::exp(-a[i])) * b[i];
}

void GeluMul(float* a, const float* b, size_t n) {
  constexpr float kSqrt2OverPi = 0.7978845608028654f;
  for (size_t i = 0; i < n; ++i) {
    const float v = a[i];
    a[i] = 0.5f * v * (1.0f + std::tanh(kSqrt2OverPi * (v + 0.044715f * v * v * v))) * b[i];
  }
}

void Add(float* a, const float* b, size_t n) {
  for (size_t i = 0; i < n; ++i) a[i] += b[i];
}

void AddRows(float* a, const float* bias, int n, int d) {
  for (int t = 0; t < n; ++t)
    for (int i = 0; i < d; ++i) a[size_t(t) * d + i] += bias[i];
}

void Scale(float* a, float s, size_t n) {
  for (size_t i = 0; i < n; ++i) a[i] *= s;
}

void Softcap(float* a, float cap, size_t n) {
  for (size_t i = 0; i < n; ++i) a[i] = cap * std::tanh(a[i] / cap);
}

}  // namespace tqlm::kernels
