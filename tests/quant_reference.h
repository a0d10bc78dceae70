// Scalar references for the ggml formats, written per element (value i of a block from a
// direct index formula) rather than per block like src/kernels/cpu/dequant.cc, in double.
// Also random block generators for tests.
#pragma once

#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/tensor_format.h"

namespace tqlm::testing {

inline double RefHalf(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return kernels::F16ToF32(h);
}

// 6-bit (scale, min) j of the packed 12 bytes of Q4_K/Q5_K: j < 4 low 6 bits of bytes j and
// j+4; otherwise 4 bits of byte j+4 plus the top 2 bits of bytes j-4 / j.
inline void RefScaleMin(const uint8_t* s, int j, int* sc, int* m) {
  if (j < 4) {
    *sc = s[j] % 64;
    *m = s[j + 4] % 64;
  } else {
    *sc = s[j + 4] % 16 + (s[j - 4] / 64) * 16;
    *m = s[j + 4] / 16 + (s[j] / 64) * 16;
  }
}

// Value i of the block at p.
inline double RefValue(kernels::TensorType type, const uint8_t* p, int i) {
  using kernels::TensorType;
  switch (type) {
    case TensorType::kF32: {
      float f;
      std::memcpy(&f, p + 4 * i, 4);
      return f;
    }
    case TensorType::kF16: return RefHalf(p + 2 * i);
    case TensorType::kBF16: {
      uint16_t h;
      std::memcpy(&h, p + 2 * i, 2);
      uint32_t bits = uint32_t(h) << 16;
      float f;
      std::memcpy(&f, &bits, 4);
      return f;
    }
    case TensorType::kQ4_0: {
      const int nib = i < 16 ? p[2 + i] % 16 : p[2 + i - 16] / 16;
      return (nib - 8) * RefHalf(p);
    }
    case TensorType::kQ4_1: {
      const int nib = i < 16 ? p[4 + i] % 16 : p[4 + i - 16] / 16;
      return nib * RefHalf(p) + RefHalf(p + 2);
    }
    case TensorType::kQ5_0: {
      const int nib = i < 16 ? p[6 + i] % 16 : p[6 + i - 16] / 16;
      const int bit = (p[2 + i / 8] >> (i % 8)) & 1;
      return (nib + 16 * bit - 16) * RefHalf(p);
    }
    case TensorType::kQ5_1: {
      const int nib = i < 16 ? p[8 + i] % 16 : p[8 + i - 16] / 16;
      const int bit = (p[4 + i / 8] >> (i % 8)) & 1;
      return (nib + 16 * bit) * RefHalf(p) + RefHalf(p + 2);
    }
    case TensorType::kQ8_0: return double(int8_t(p[2 + i])) * RefHalf(p);
    case TensorType::kQ2_K: {
      // scales[16] qs[64] d dmin; value i: half i/128, 2-bit field (i%128)/32, byte
      // 32*half + i%32.
      const int half = i / 128, field = (i % 128) / 32;
      const int q = (p[16 + 32 * half + i % 32] >> (2 * field)) & 3;
      const int sc = p[i / 16];
      return RefHalf(p + 80) * (sc % 16) * q - RefHalf(p + 82) * (sc / 16);
    }
    case TensorType::kQ3_K: {
      // hmask[32] qs[64] scales[12] d
      const int half = i / 128, field = (i % 128) / 32;
      const int low = (p[32 + 32 * half + i % 32] >> (2 * field)) & 3;
      const int high = (p[i % 32] >> (4 * half + field)) & 1;
      const int j = i / 16;
      const uint8_t* s = p + 96;
      const int sc6 = (j < 8 ? s[j] % 16 : s[j - 8] / 16) + 16 * ((s[8 + j % 4] >> (2 * (j / 4))) & 3);
      return RefHalf(p + 108) * (sc6 - 32) * (low - (high ? 0 : 4));
    }
    case TensorType::kQ4_K:
    case TensorType::kQ5_K: {
      const bool five = type == TensorType::kQ5_K;
      const uint8_t* qs = p + (five ? 48 : 16);
      const int sub = i / 32;
      int q = (qs[32 * (i / 64) + i % 32] >> (4 * (sub % 2))) & 15;
      if (five) q += 16 * ((p[16 + i % 32] >> sub) & 1);
      int sc, m;
      RefScaleMin(p + 4, sub, &sc, &m);
      return RefHalf(p) * sc * q - RefHalf(p + 2) * m;
    }
    case TensorType::kQ6_K: {
      // ql[128] qh[64] scales[16] d
      const int half = i / 128, k = (i % 128) / 32, l = i % 32;
      const uint8_t lb = p[64 * half + l + 32 * (k % 2)];
      const int nib = k >= 2 ? lb / 16 : lb % 16;
      const int hb = (p[128 + 32 * half + l] >> (2 * k)) & 3;
      return RefHalf(p + 208) * double(int8_t(p[192 + i / 16])) * (nib + 16 * hb - 32);
    }
    default: return 0;
  }
}

// Row c of a row-major matrix, decoded in double.
inline std::vector<double> RefRow(kernels::TensorType type, const uint8_t* row, int64_t cols) {
  const auto& tr = kernels::Traits(type);
  std::vector<double> out(static_cast<size_t>(cols));
  for (int64_t c = 0; c < cols; ++c) {
    out[size_t(c)] = RefValue(type, row + size_t(c / tr.block_size) * tr.block_bytes,
                              int(c % tr.block_size));
  }
  return out;
}

// Random bytes for `rows` rows of `cols` values, with every fp16 scale field set to a finite
// value of moderate size (random bytes there would give inf/nan).
inline std::vector<uint8_t> RandomMatrix(kernels::TensorType type, int64_t rows, int64_t cols,
                                         std::mt19937* rng) {
  using kernels::TensorType;
  const auto& tr = kernels::Traits(type);
  const size_t row_bytes = kernels::RowBytes(type, cols);
  std::vector<uint8_t> m(size_t(rows) * row_bytes);
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_real_distribution<float> scale(-0.05f, 0.05f), unit(-1.0f, 1.0f);
  for (auto& b : m) b = uint8_t(byte(*rng));
  auto put_half = [&](uint8_t* at, float v) {
    const uint16_t h = kernels::F32ToF16(v);
    std::memcpy(at, &h, 2);
  };
  const size_t blocks = m.size() / tr.block_bytes;
  for (size_t b = 0; b < blocks; ++b) {
    uint8_t* p = m.data() + b * tr.block_bytes;
    switch (type) {
      case TensorType::kF32:
        for (int i = 0; i < 1; ++i) {
          const float v = unit(*rng);
          std::memcpy(p, &v, 4);
        }
        break;
      case TensorType::kF16: put_half(p, unit(*rng)); break;
      case TensorType::kBF16: {
        const uint16_t h = kernels::F32ToBF16(unit(*rng));
        std::memcpy(p, &h, 2);
        break;
      }
      case TensorType::kQ4_0:
      case TensorType::kQ5_0:
      case TensorType::kQ8_0: put_half(p, scale(*rng)); break;
      case TensorType::kQ4_1:
      case TensorType::kQ5_1:
      case TensorType::kQ4_K:
      case TensorType::kQ5_K:
        put_half(p, scale(*rng));
        put_half(p + 2, scale(*rng));
        break;
      case TensorType::kQ2_K:
        put_half(p + 80, scale(*rng));
        put_half(p + 82, scale(*rng));
        break;
      case TensorType::kQ3_K: put_half(p + 108, scale(*rng)); break;
      case TensorType::kQ6_K: put_half(p + 208, scale(*rng)); break;
      default: break;
    }
  }
  return m;
}

}  // namespace tqlm::testing
