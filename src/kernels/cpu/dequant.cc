// Format definitions, one block decoder per ggml type. Plain loops: the layouts read here
// are documented next to the block structs in kernels/tensor_format.h.
#include "kernels/cpu/dequant.h"

#include <cstring>

#include "kernels/cpu/tq_weights.h"

namespace tqlm::kernels {
namespace {

template <typename Block>
const Block* Blocks(const void* src) {
  return static_cast<const Block*>(src);
}

uint32_t Load32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

void DecodeQ4_0(const BlockQ4_0& b, float* y) {
  const float d = F16ToF32(b.d);
  for (int j = 0; j < 16; ++j) {
    y[j] = float((b.qs[j] & 0xF) - 8) * d;
    y[j + 16] = float((b.qs[j] >> 4) - 8) * d;
  }
}

void DecodeQ4_1(const BlockQ4_1& b, float* y) {
  const float d = F16ToF32(b.d), m = F16ToF32(b.m);
  for (int j = 0; j < 16; ++j) {
    y[j] = float(b.qs[j] & 0xF) * d + m;
    y[j + 16] = float(b.qs[j] >> 4) * d + m;
  }
}

void DecodeQ5_0(const BlockQ5_0& b, float* y) {
  const float d = F16ToF32(b.d);
  const uint32_t qh = Load32(b.qh);
  for (int j = 0; j < 16; ++j) {
    const int lo = (b.qs[j] & 0xF) | int(((qh >> j) & 1u) << 4);
    const int hi = (b.qs[j] >> 4) | int(((qh >> (j + 16)) & 1u) << 4);
    y[j] = float(lo - 16) * d;
    y[j + 16] = float(hi - 16) * d;
  }
}

void DecodeQ5_1(const BlockQ5_1& b, float* y) {
  const float d = F16ToF32(b.d), m = F16ToF32(b.m);
  const uint32_t qh = Load32(b.qh);
  for (int j = 0; j < 16; ++j) {
    const int lo = (b.qs[j] & 0xF) | int(((qh >> j) & 1u) << 4);
    const int hi = (b.qs[j] >> 4) | int(((qh >> (j + 16)) & 1u) << 4);
    y[j] = float(lo) * d + m;
    y[j + 16] = float(hi) * d + m;
  }
}

void DecodeQ8_0(const BlockQ8_0& b, float* y) {
  const float d = F16ToF32(b.d);
  for (int j = 0; j < 32; ++j) y[j] = float(b.qs[j]) * d;
}

// Q2_K: 2 halves of 128 values; within a half, shift s (0,2,4,6) selects 32 values, each
// 16 of them with their own scale byte.
void DecodeQ2_K(const BlockQ2_K& b, float* y) {
  const float d = F16ToF32(b.d), dmin = F16ToF32(b.dmin);
  int is = 0;
  for (int half = 0; half < 2; ++half) {
    const uint8_t* q = b.qs + 32 * half;
    for (int shift = 0; shift < 8; shift += 2) {
      for (int part = 0; part < 2; ++part) {
        const uint8_t sc = b.scales[is++];
        const float dl = d * float(sc & 0xF), ml = dmin * float(sc >> 4);
        for (int l = 0; l < 16; ++l) *y++ = dl * float((q[16 * part + l] >> shift) & 3) - ml;
      }
    }
  }
}

// Q3_K: like Q2_K's traversal; the high bit comes from hmask bit m (one bit per 32 values).
void DecodeQ3_K(const BlockQ3_K& b, float* y) {
  const float d = F16ToF32(b.d);
  int8_t scales[16];
  UnpackScalesQ3K(b.scales, scales);
  int is = 0;
  int bit = 0;
  for (int half = 0; half < 2; ++half) {
    const uint8_t* q = b.qs + 32 * half;
    for (int shift = 0; shift < 8; shift += 2, ++bit) {
      for (int part = 0; part < 2; ++part) {
        const float dl = d * float(scales[is++]);
        for (int l = 0; l < 16; ++l) {
          const int idx = 16 * part + l;
          const int low = (q[idx] >> shift) & 3;
          const int high = (b.hmask[idx] >> bit) & 1;
          *y++ = dl * float(low - (high ? 0 : 4));
        }
      }
    }
  }
}

// Q4_K: 4 chunks of 64 values: 32 low nibbles then 32 high nibbles of 32 bytes.
void DecodeQ4_K(const BlockQ4_K& b, float* y) {
  const float d = F16ToF32(b.d), dmin = F16ToF32(b.dmin);
  uint8_t sm[16];
  UnpackScalesMinsK4(b.scales, sm);
  for (int chunk = 0; chunk < 4; ++chunk) {
    const uint8_t* q = b.qs + 32 * chunk;
    for (int nib = 0; nib < 2; ++nib) {
      const int sub = 2 * chunk + nib;
      const float dl = d * float(sm[sub]), ml = dmin * float(sm[8 + sub]);
      for (int l = 0; l < 32; ++l) *y++ = dl * float((q[l] >> (4 * nib)) & 0xF) - ml;
    }
  }
}

// Q5_K: Q4_K plus bit (2*chunk + nib) of qh[l] as bit 4.
void DecodeQ5_K(const BlockQ5_K& b, float* y) {
  const float d = F16ToF32(b.d), dmin = F16ToF32(b.dmin);
  uint8_t sm[16];
  UnpackScalesMinsK4(b.scales, sm);
  for (int chunk = 0; chunk < 4; ++chunk) {
    const uint8_t* q = b.qs + 32 * chunk;
    for (int nib = 0; nib < 2; ++nib) {
      const int sub = 2 * chunk + nib;
      const float dl = d * float(sm[sub]), ml = dmin * float(sm[8 + sub]);
      for (int l = 0; l < 32; ++l) {
        const int v = ((q[l] >> (4 * nib)) & 0xF) | (((b.qh[l] >> sub) & 1) << 4);
        *y++ = dl * float(v) - ml;
      }
    }
  }
}

// Q6_K: 2 halves of 128; value l + 32*k of a half takes a nibble of ql (k even: low, odd:
// high; k < 2: ql[l], else ql[l+32]) and 2 bits (2k) of qh[l].
void DecodeQ6_K(const BlockQ6_K& b, float* y) {
  const float d = F16ToF32(b.d);
  for (int half = 0; half < 2; ++half) {
    const uint8_t* ql = b.ql + 64 * half;
    const uint8_t* qh = b.qh + 32 * half;
    const int8_t* sc = b.scales + 8 * half;
    for (int l = 0; l < 32; ++l) {
      const int is = l / 16;
      const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
      const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
      const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
      const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
      y[l] = d * float(sc[is]) * float(q1);
      y[l + 32] = d * float(sc[is + 2]) * float(q2);
      y[l + 64] = d * float(sc[is + 4]) * float(q3);
      y[l + 96] = d * float(sc[is + 6]) * float(q4);
    }
    y += 128;
  }
}

template <typename Block, void (*Decode)(const Block&, float*)>
void DecodeAll(const void* src, int64_t n, int block_size, float* out) {
  const Block* b = Blocks<Block>(src);
  for (int64_t i = 0; i < n / block_size; ++i) Decode(b[i], out + i * block_size);
}

}  // namespace

bool DequantizeSupports(TensorType type) {
  switch (type) {
    case TensorType::kF32:
    case TensorType::kF16:
    case TensorType::kBF16:
    case TensorType::kQ4_0:
    case TensorType::kQ4_1:
    case TensorType::kQ5_0:
    case TensorType::kQ5_1:
    case TensorType::kQ8_0:
    case TensorType::kQ2_K:
    case TensorType::kQ3_K:
    case TensorType::kQ4_K:
    case TensorType::kQ5_K:
    case TensorType::kQ6_K:
    case TensorType::kTQW2:
    case TensorType::kTQW3:
    case TensorType::kTQW4:
      return true;
    default:
      return false;
  }
}

bool DequantizeValues(TensorType type, const void* src, int64_t n, float* out) {
  switch (type) {
    case TensorType::kF32:
      std::memcpy(out, src, size_t(n) * 4);
      return true;
    case TensorType::kF16:
    case TensorType::kBF16: {
      const uint8_t* p = static_cast<const uint8_t*>(src);
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, p + 2 * i, 2);
        out[i] = type == TensorType::kF16 ? F16ToF32(h) : BF16ToF32(h);
      }
      return true;
    }
    case TensorType::kQ4_0: DecodeAll<BlockQ4_0, DecodeQ4_0>(src, n, kQK, out); return true;
    case TensorType::kQ4_1: DecodeAll<BlockQ4_1, DecodeQ4_1>(src, n, kQK, out); return true;
    case TensorType::kQ5_0: DecodeAll<BlockQ5_0, DecodeQ5_0>(src, n, kQK, out); return true;
    case TensorType::kQ5_1: DecodeAll<BlockQ5_1, DecodeQ5_1>(src, n, kQK, out); return true;
    case TensorType::kQ8_0: DecodeAll<BlockQ8_0, DecodeQ8_0>(src, n, kQK, out); return true;
    case TensorType::kQ2_K: DecodeAll<BlockQ2_K, DecodeQ2_K>(src, n, kQKK, out); return true;
    case TensorType::kQ3_K: DecodeAll<BlockQ3_K, DecodeQ3_K>(src, n, kQKK, out); return true;
    case TensorType::kQ4_K: DecodeAll<BlockQ4_K, DecodeQ4_K>(src, n, kQKK, out); return true;
    case TensorType::kQ5_K: DecodeAll<BlockQ5_K, DecodeQ5_K>(src, n, kQKK, out); return true;
    case TensorType::kQ6_K: DecodeAll<BlockQ6_K, DecodeQ6_K>(src, n, kQKK, out); return true;
    case TensorType::kTQW2:
    case TensorType::kTQW3:
    case TensorType::kTQW4: TqwDequantize(type, src, n, out); return true;
    default:
      return false;
  }
}

}  // namespace tqlm::kernels
