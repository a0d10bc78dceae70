// Decoding of GGUF weight rows 32 values at a time, for the CUDA matmul and embedding kernels.
//
// Every supported format's rows split into "chunks" of 32 consecutive values that decode on
// their own: a whole block of the 32-value formats, one eighth of a 256-value k-quant
// super-block (which brings its super-block's scales along). A kernel hands each lane whole
// chunks, so any row length that is a multiple of 32 works. A chunk's bytes are read with the
// widest loads its format's alignment allows (ChunkAlignment: blocks of 18, 22, 34 or 210 bytes
// leave them 2-byte aligned, k-quant super-blocks of 144 and 176 bytes 16-byte aligned).
//
// Host and device code: the same functions run in the CUDA kernels and, compiled by the host
// compiler, in tests/cuda_chunk_test.cc against the CPU's format definitions (kernels/cpu/
// dequant.cc). The arithmetic per value follows the CPU decoders' (d * q, or dl * q - ml).
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "kernels/tensor_format.h"

#if defined(__CUDACC__)
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#define TQLM_CHUNK_FN __host__ __device__ __forceinline__
#else
#define TQLM_CHUNK_FN inline
#endif
#if defined(__CUDA_ARCH__)  // the device pass only: the host compiler knows no such pragma
#define TQLM_UNROLL _Pragma("unroll")
#else
#define TQLM_UNROLL
#endif

namespace tqlm::cuda_backend {

inline constexpr int kChunk = 32;

TQLM_CHUNK_FN float HalfToFloat(uint16_t bits) {
#if defined(__CUDA_ARCH__)
  return __half2float(__ushort_as_half(bits));
#else
  return kernels::F16ToF32(bits);
#endif
}
TQLM_CHUNK_FN float Bf16ToFloat(uint16_t bits) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(uint32_t(bits) << 16);
#else
  return kernels::BF16ToF32(bits);
#endif
}
// Signed scale i (i < 16, minus 32) of a Q3_K super-block's 12 packed bytes.
TQLM_CHUNK_FN int ScaleQ3K(const uint8_t* s, int i) {
  const int low = i < 8 ? (s[i] & 0xF) : (s[i - 8] >> 4);
  const int high = (s[8 + (i & 3)] >> (2 * (i >> 2))) & 3;
  return (low | (high << 4)) - 32;
}

// Aligned loads (the GPU reads whole words; callers guarantee the alignment named) and, on the
// host, the same bytes through memcpy.
template <typename W>
TQLM_CHUNK_FN W LoadAligned(const uint8_t* p) {
#if defined(__CUDA_ARCH__)
  return *reinterpret_cast<const W*>(p);
#else
  W w;
  std::memcpy(&w, p, sizeof(W));
  return w;
#endif
}
// Byte j of little-endian words w (j a compile-time constant once unrolled).
TQLM_CHUNK_FN int ByteOf(const uint32_t* w, int j) {
  return int((w[j >> 2] >> (8 * (j & 3))) & 0xFF);
}
TQLM_CHUNK_FN int ByteOf16(const uint16_t* w, int j) {
  return int((w[j >> 1] >> (8 * (j & 1))) & 0xFF);
}
// kWords words at p, 4-byte aligned (with 16-byte loads when kAlign16: p 16-byte aligned).
template <int kWords, bool kAlign16 = false>
TQLM_CHUNK_FN void LoadWords(const uint8_t* p, uint32_t* w) {
  if constexpr (kAlign16 && kWords % 4 == 0) {
    TQLM_UNROLL
    for (int i = 0; i < kWords / 4; ++i) {
#if defined(__CUDA_ARCH__)
      const uint4 u = LoadAligned<uint4>(p + 16 * i);
      w[4 * i] = u.x, w[4 * i + 1] = u.y, w[4 * i + 2] = u.z, w[4 * i + 3] = u.w;
#else
      std::memcpy(w + 4 * i, p + 16 * i, 16);
#endif
    }
  } else {
    TQLM_UNROLL
    for (int i = 0; i < kWords; ++i) w[i] = LoadAligned<uint32_t>(p + 4 * i);
  }
}
template <int kHalves>
TQLM_CHUNK_FN void LoadHalfWords(const uint8_t* p, uint16_t* w) {
  TQLM_UNROLL
  for (int i = 0; i < kHalves; ++i) w[i] = LoadAligned<uint16_t>(p + 2 * i);
}

// Alignment (bytes) of every chunk of a row of format T when the row starts 16-byte aligned
// and rows are a whole number of blocks apart: the loads below rely on it.
template <kernels::TensorType T>
constexpr int ChunkAlignment() {
  using kernels::TensorType;
  switch (T) {
    case TensorType::kF32: case TensorType::kF16: case TensorType::kBF16:
    case TensorType::kQ4_K: case TensorType::kQ5_K: return 16;
    case TensorType::kQ4_1: case TensorType::kQ5_1: case TensorType::kQ2_K: return 4;
    default: return 2;
  }
}

// y[0, 32) = values [32 c, 32 c + 32) of the row starting at `row`.
template <kernels::TensorType T>
TQLM_CHUNK_FN void DecodeChunk(const uint8_t* row, int c, float* y) {
  using kernels::TensorType;
  if constexpr (T == TensorType::kF32) {
    uint32_t w[32];
    LoadWords<32, true>(row + size_t(c) * 128, w);
    TQLM_UNROLL
    for (int j = 0; j < 32; ++j) {
#if defined(__CUDA_ARCH__)
      y[j] = __uint_as_float(w[j]);
#else
      std::memcpy(&y[j], &w[j], 4);
#endif
    }
  } else if constexpr (T == TensorType::kF16 || T == TensorType::kBF16) {
    uint32_t w[16];
    LoadWords<16, true>(row + size_t(c) * 64, w);
    TQLM_UNROLL
    for (int j = 0; j < 32; ++j) {
      const uint16_t h = uint16_t(w[j / 2] >> (16 * (j % 2)));
      y[j] = T == TensorType::kF16 ? HalfToFloat(h) : Bf16ToFloat(h);
    }
  } else if constexpr (T == TensorType::kQ4_0) {
    const uint8_t* b = row + size_t(c) * 18;
    const float d = HalfToFloat(LoadAligned<uint16_t>(b));
    uint16_t q[8];
    LoadHalfWords<8>(b + 2, q);
    TQLM_UNROLL
    for (int j = 0; j < 16; ++j) {
      y[j] = float((ByteOf16(q, j) & 0xF) - 8) * d;
      y[j + 16] = float((ByteOf16(q, j) >> 4) - 8) * d;
    }
  } else if constexpr (T == TensorType::kQ4_1) {
    const uint8_t* b = row + size_t(c) * 20;
    const uint32_t dm = LoadAligned<uint32_t>(b);
    const float d = HalfToFloat(uint16_t(dm)), m = HalfToFloat(uint16_t(dm >> 16));
    uint32_t q[4];
    LoadWords<4>(b + 4, q);
    TQLM_UNROLL
    for (int j = 0; j < 16; ++j) {
      y[j] = float(ByteOf(q, j) & 0xF) * d + m;
      y[j + 16] = float(ByteOf(q, j) >> 4) * d + m;
    }
  } else if constexpr (T == TensorType::kQ5_0) {
    const uint8_t* b = row + size_t(c) * 22;
    const float d = HalfToFloat(LoadAligned<uint16_t>(b));
    const uint32_t qh = uint32_t(LoadAligned<uint16_t>(b + 2)) |
                        (uint32_t(LoadAligned<uint16_t>(b + 4)) << 16);
    uint16_t q[8];
    LoadHalfWords<8>(b + 6, q);
    TQLM_UNROLL
    for (int j = 0; j < 16; ++j) {
      const int lo = (ByteOf16(q, j) & 0xF) | int(((qh >> j) & 1u) << 4);
      const int hi = (ByteOf16(q, j) >> 4) | int(((qh >> (j + 16)) & 1u) << 4);
      y[j] = float(lo - 16) * d;
      y[j + 16] = float(hi - 16) * d;
    }
  } else if constexpr (T == TensorType::kQ5_1) {
    const uint8_t* b = row + size_t(c) * 24;
    const uint32_t dm = LoadAligned<uint32_t>(b);
    const float d = HalfToFloat(uint16_t(dm)), m = HalfToFloat(uint16_t(dm >> 16));
    const uint32_t qh = LoadAligned<uint32_t>(b + 4);
    uint32_t q[4];
    LoadWords<4>(b + 8, q);
    TQLM_UNROLL
    for (int j = 0; j < 16; ++j) {
      const int lo = (ByteOf(q, j) & 0xF) | int(((qh >> j) & 1u) << 4);
      const int hi = (ByteOf(q, j) >> 4) | int(((qh >> (j + 16)) & 1u) << 4);
      y[j] = float(lo) * d + m;
      y[j + 16] = float(hi) * d + m;
    }
  } else if constexpr (T == TensorType::kQ8_0) {
    const uint8_t* b = row + size_t(c) * 34;
    const float d = HalfToFloat(LoadAligned<uint16_t>(b));
    uint16_t q[16];
    LoadHalfWords<16>(b + 2, q);
    TQLM_UNROLL
    for (int j = 0; j < 32; ++j) y[j] = float(int8_t(ByteOf16(q, j))) * d;
  } else if constexpr (T == TensorType::kQ2_K) {
    // Layout (84 bytes): scales[16], qs[64], d, dmin. Chunk i of the super-block: half i / 4,
    // shift 2 (i % 4); its two 16-value parts use scale bytes 2i and 2i + 1.
    const uint8_t* b = row + size_t(c / 8) * 84;
    const int i = c % 8;
    const uint32_t dd = LoadAligned<uint32_t>(b + 80);
    const float d = HalfToFloat(uint16_t(dd)), dmin = HalfToFloat(uint16_t(dd >> 16));
    uint32_t q[8];
    LoadWords<8>(b + 16 + 32 * (i / 4), q);
    const int shift = 2 * (i % 4);
    const uint32_t sc2 = LoadAligned<uint16_t>(b + 2 * i);
    TQLM_UNROLL
    for (int part = 0; part < 2; ++part) {
      const uint32_t sc = (sc2 >> (8 * part)) & 0xFF;
      const float dl = d * float(sc & 0xF), ml = dmin * float(sc >> 4);
      TQLM_UNROLL
      for (int l = 0; l < 16; ++l)
        y[16 * part + l] = dl * float((ByteOf(q, 16 * part + l) >> shift) & 3) - ml;
    }
  } else if constexpr (T == TensorType::kQ3_K) {
    // Layout (110 bytes): hmask[32], qs[64], scales[12], d. Chunk i: half i / 4, shift
    // 2 (i % 4), high bit i of hmask; scales 2i and 2i + 1.
    const uint8_t* b = row + size_t(c / 8) * 110;
    const int i = c % 8;
    const float d = HalfToFloat(LoadAligned<uint16_t>(b + 108));
    uint16_t q[16], hm[16];
    LoadHalfWords<16>(b + 32 + 32 * (i / 4), q);
    LoadHalfWords<16>(b, hm);
    const int shift = 2 * (i % 4);
    TQLM_UNROLL
    for (int part = 0; part < 2; ++part) {
      const float dl = d * float(ScaleQ3K(b + 96, 2 * i + part));
      TQLM_UNROLL
      for (int l = 0; l < 16; ++l) {
        const int idx = 16 * part + l;
        const int low = (ByteOf16(q, idx) >> shift) & 3;
        const int high = (ByteOf16(hm, idx) >> i) & 1;
        y[idx] = dl * float(low - (high ? 0 : 4));
      }
    }
  } else if constexpr (T == TensorType::kQ4_K || T == TensorType::kQ5_K) {
    // Layout: d, dmin, scales[12], (Q5_K: qh[32],) qs[128]. Chunk i (= sub-block i) is nibble
    // i % 2 of qs[32 (i / 2) + l]; Q5_K adds bit i of qh[l] as bit 4.
    constexpr bool k5 = T == TensorType::kQ5_K;
    const uint8_t* b = row + size_t(c / 8) * (k5 ? 176 : 144);
    const int i = c % 8;
    uint32_t head[4];  // d, dmin, scales
    LoadWords<4, true>(b, head);
    const float d = HalfToFloat(uint16_t(head[0])), dmin = HalfToFloat(uint16_t(head[0] >> 16));
    // Scale and min i from the packed bytes s[0..11] = words head[1..3], with word shifts (a
    // byte array indexed by the run-time i would live in local memory on the GPU).
    const int j = i & 3, sh = 8 * j;
    int sc, mn;
    if (i < 4) {
      sc = int((head[1] >> sh) & 63);
      mn = int((head[2] >> sh) & 63);
    } else {
      sc = int(((head[3] >> sh) & 0xF) | (((head[1] >> sh) >> 6 & 3) << 4));
      mn = int(((head[3] >> sh) >> 4 & 0xF) | (((head[2] >> sh) >> 6 & 3) << 4));
    }
    const float dl = d * float(sc), ml = dmin * float(mn);
    uint32_t q[8];
    LoadWords<8, true>(b + (k5 ? 48 : 16) + 32 * (i / 2), q);
    uint32_t qh[8] = {};
    if constexpr (k5) LoadWords<8, true>(b + 16, qh);
    const int shift = 4 * (i % 2);
    TQLM_UNROLL
    for (int l = 0; l < 32; ++l) {
      int v = (ByteOf(q, l) >> shift) & 0xF;
      if constexpr (k5) v |= ((ByteOf(qh, l) >> i) & 1) << 4;
      y[l] = dl * float(v) - ml;
    }
  } else if constexpr (T == TensorType::kQ6_K) {
    // Layout (210 bytes): ql[128], qh[64], scales[16] (int8), d. Chunk i: half h = i / 4,
    // k = i % 4; value l takes nibble k / 2 of ql[64 h + l + 32 (k % 2)] and bits 2k of
    // qh[32 h + l]; scale 8 h + 2k + l / 16.
    const uint8_t* b = row + size_t(c / 8) * 210;
    const int i = c % 8, h = i / 4, k = i % 4;
    const float d = HalfToFloat(LoadAligned<uint16_t>(b + 208));
    uint16_t ql[16], qh[16];
    LoadHalfWords<16>(b + 64 * h + 32 * (k % 2), ql);
    LoadHalfWords<16>(b + 128 + 32 * h, qh);
    const uint16_t sc2 = LoadAligned<uint16_t>(b + 192 + 8 * h + 2 * k);
    const float ds[2] = {d * float(int8_t(sc2 & 0xFF)), d * float(int8_t(sc2 >> 8))};
    TQLM_UNROLL
    for (int l = 0; l < 32; ++l) {
      const int q = ((ByteOf16(ql, l) >> (4 * (k / 2))) & 0xF) |
                    (((ByteOf16(qh, l) >> (2 * k)) & 3) << 4);
      y[l] = ds[l / 16] * float(q - 32);
    }
  }
}

// Calls f(FormatTag<T>{}) for the format of `type` (in f, decltype(tag)::value is T); returns
// false for a format without a chunk decoder.
template <kernels::TensorType T>
using FormatTag = std::integral_constant<kernels::TensorType, T>;

template <typename F>
bool DispatchFormat(kernels::TensorType type, F&& f) {
  using kernels::TensorType;
  switch (type) {
    case TensorType::kF32: f(FormatTag<TensorType::kF32>{}); return true;
    case TensorType::kF16: f(FormatTag<TensorType::kF16>{}); return true;
    case TensorType::kBF16: f(FormatTag<TensorType::kBF16>{}); return true;
    case TensorType::kQ4_0: f(FormatTag<TensorType::kQ4_0>{}); return true;
    case TensorType::kQ4_1: f(FormatTag<TensorType::kQ4_1>{}); return true;
    case TensorType::kQ5_0: f(FormatTag<TensorType::kQ5_0>{}); return true;
    case TensorType::kQ5_1: f(FormatTag<TensorType::kQ5_1>{}); return true;
    case TensorType::kQ8_0: f(FormatTag<TensorType::kQ8_0>{}); return true;
    case TensorType::kQ2_K: f(FormatTag<TensorType::kQ2_K>{}); return true;
    case TensorType::kQ3_K: f(FormatTag<TensorType::kQ3_K>{}); return true;
    case TensorType::kQ4_K: f(FormatTag<TensorType::kQ4_K>{}); return true;
    case TensorType::kQ5_K: f(FormatTag<TensorType::kQ5_K>{}); return true;
    case TensorType::kQ6_K: f(FormatTag<TensorType::kQ6_K>{}); return true;
    default: return false;
  }
}

}  // namespace tqlm::cuda_backend
