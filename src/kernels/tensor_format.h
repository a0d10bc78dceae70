// ggml tensor types as GGUF stores them: the type ids, the block layouts (bit-exact with ggml,
// little-endian) and their sizes. Shared by the GGUF reader and every backend's kernels.
//
// A quantized row of n values is n / block_size consecutive blocks; values inside a block are
// reconstructed as documented next to each struct.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>

namespace tqlm::kernels {

static_assert(std::endian::native == std::endian::little, "GGUF data is little-endian");

// Ids are ggml's (enum ggml_type); gaps are ids ggml retired.
enum class TensorType : uint32_t {
  kF32 = 0,
  kF16 = 1,
  kQ4_0 = 2,
  kQ4_1 = 3,
  kQ5_0 = 6,
  kQ5_1 = 7,
  kQ8_0 = 8,
  kQ8_1 = 9,
  kQ2_K = 10,
  kQ3_K = 11,
  kQ4_K = 12,
  kQ5_K = 13,
  kQ6_K = 14,
  kQ8_K = 15,
  kIQ2_XXS = 16,
  kIQ2_XS = 17,
  kIQ3_XXS = 18,
  kIQ1_S = 19,
  kIQ4_NL = 20,
  kIQ3_S = 21,
  kIQ2_S = 22,
  kIQ4_XS = 23,
  kI8 = 24,
  kI16 = 25,
  kI32 = 26,
  kI64 = 27,
  kF64 = 28,
  kIQ1_M = 29,
  kBF16 = 30,
  kTQ1_0 = 34,
  kTQ2_0 = 35,
  kMXFP4 = 39,
  // tqlm's TurboQuant weight formats (docs/FORMAT.md): ids far above ggml's range so that no
  // ggml type can ever take them; other engines refuse a file that holds them.
  kTQW2 = 7102,
  kTQW3 = 7103,
  kTQW4 = 7104,
};

struct TypeTraits {
  TensorType type;
  const char* name;      // ggml's name, e.g. "Q4_K"
  int64_t block_size;    // values per block (1 for plain scalar types)
  size_t block_bytes;    // bytes per block
};

inline constexpr TypeTraits kTypeTraits[] = {
    {TensorType::kF32, "F32", 1, 4},         {TensorType::kF16, "F16", 1, 2},
    {TensorType::kQ4_0, "Q4_0", 32, 18},     {TensorType::kQ4_1, "Q4_1", 32, 20},
    {TensorType::kQ5_0, "Q5_0", 32, 22},     {TensorType::kQ5_1, "Q5_1", 32, 24},
    {TensorType::kQ8_0, "Q8_0", 32, 34},     {TensorType::kQ8_1, "Q8_1", 32, 40},
    {TensorType::kQ2_K, "Q2_K", 256, 84},    {TensorType::kQ3_K, "Q3_K", 256, 110},
    {TensorType::kQ4_K, "Q4_K", 256, 144},   {TensorType::kQ5_K, "Q5_K", 256, 176},
    {TensorType::kQ6_K, "Q6_K", 256, 210},   {TensorType::kQ8_K, "Q8_K", 256, 292},
    {TensorType::kIQ2_XXS, "IQ2_XXS", 256, 66}, {TensorType::kIQ2_XS, "IQ2_XS", 256, 74},
    {TensorType::kIQ3_XXS, "IQ3_XXS", 256, 98}, {TensorType::kIQ1_S, "IQ1_S", 256, 50},
    {TensorType::kIQ4_NL, "IQ4_NL", 32, 18}, {TensorType::kIQ3_S, "IQ3_S", 256, 110},
    {TensorType::kIQ2_S, "IQ2_S", 256, 82},  {TensorType::kIQ4_XS, "IQ4_XS", 256, 136},
    {TensorType::kI8, "I8", 1, 1},           {TensorType::kI16, "I16", 1, 2},
    {TensorType::kI32, "I32", 1, 4},         {TensorType::kI64, "I64", 1, 8},
    {TensorType::kF64, "F64", 1, 8},         {TensorType::kIQ1_M, "IQ1_M", 256, 56},
    {TensorType::kBF16, "BF16", 1, 2},       {TensorType::kTQ1_0, "TQ1_0", 256, 54},
    {TensorType::kTQ2_0, "TQ2_0", 256, 66},  {TensorType::kMXFP4, "MXFP4", 32, 17},
    {TensorType::kTQW2, "TQW2", 64, 18},     {TensorType::kTQW3, "TQW3", 64, 26},
    {TensorType::kTQW4, "TQW4", 64, 34},
};

// Traits of a ggml type id, or nullptr when the id is not a type we know the layout of.
inline const TypeTraits* FindTypeTraits(uint32_t type_id) {
  for (const TypeTraits& t : kTypeTraits) {
    if (uint32_t(t.type) == type_id) return &t;
  }
  return nullptr;
}
// Same for a TensorType; never null for the enumerators above.
inline const TypeTraits& Traits(TensorType type) { return *FindTypeTraits(uint32_t(type)); }
inline const char* TypeName(TensorType type) {
  const TypeTraits* t = FindTypeTraits(uint32_t(type));
  return t ? t->name : "unknown";
}

// Bytes of a row of n values, or SIZE_MAX when the type is unknown, n is negative or not a
// multiple of the block size, or the size overflows.
inline size_t RowBytes(TensorType type, int64_t n) {
  const TypeTraits* t = FindTypeTraits(uint32_t(type));
  if (t == nullptr || n < 0 || n % t->block_size != 0) return SIZE_MAX;
  const uint64_t blocks = uint64_t(n / t->block_size);
  if (blocks > SIZE_MAX / t->block_bytes) return SIZE_MAX;
  return size_t(blocks) * t->block_bytes;
}

// --- Scalar conversions ------------------------------------------------------------------

// IEEE binary16 -> float, exact (subnormals, inf, nan included).
inline float F16ToF32(uint16_t h) {
  // Place exponent and mantissa in a float, rescale by 2^112 (fixes the exponent bias and
  // handles subnormals through the float multiply), and patch up inf/nan.
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  const uint32_t em = uint32_t(h & 0x7fffu) << 13;
  float f;
  if ((h & 0x7c00u) == 0x7c00u) {
    const uint32_t bits = sign | 0x7f800000u | (uint32_t(h & 0x3ffu) << 13);
    std::memcpy(&f, &bits, 4);
    return f;
  }
  std::memcpy(&f, &em, 4);
  f *= 0x1p112f;
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  bits |= sign;
  std::memcpy(&f, &bits, 4);
  return f;
}

// float -> binary16, round to nearest even (used by tests and quantizers, not hot paths).
inline uint16_t F32ToF16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint16_t sign = uint16_t((x >> 16) & 0x8000u);
  const uint32_t ax = x & 0x7fffffffu;
  if (ax > 0x7f800000u) return uint16_t(sign | 0x7e00u);  // nan
  if (ax >= 0x477ff000u) return uint16_t(sign | 0x7c00u);  // rounds to >= 65520: inf
  if (ax < 0x38800000u) {  // below 2^-14: subnormal half (or zero)
    // Adding 0.5 shifts the value so that float rounding does the half rounding for us.
    float a;
    std::memcpy(&a, &ax, 4);
    a += 0.5f;
    uint32_t bits;
    std::memcpy(&bits, &a, 4);
    return uint16_t(sign | uint16_t(bits - 0x3f000000u));
  }
  const uint32_t mant_odd = (ax >> 13) & 1u;
  const uint32_t r = ax + 0xfffu + mant_odd - (112u << 23);  // rebias and round to nearest even
  return uint16_t(sign | uint16_t(r >> 13));
}

inline float BF16ToF32(uint16_t h) {
  const uint32_t bits = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// float -> bfloat16, round to nearest even (nan kept quiet).
inline uint16_t F32ToBF16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  if ((x & 0x7fffffffu) > 0x7f800000u) return uint16_t((x >> 16) | 0x40u);
  return uint16_t((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

// --- Block layouts -------------------------------------------------------------------------
// d, dmin: fp16 scales. "q" values are unsigned unless said otherwise.

constexpr int kQK = 32;    // values per block of the simple formats
constexpr int kQKK = 256;  // values per super-block of the k-quants

// x[j] = (lo4(qs[j]) - 8) * d, x[j+16] = (hi4(qs[j]) - 8) * d, j < 16.
struct BlockQ4_0 {
  uint16_t d;
  uint8_t qs[kQK / 2];
};
// x[j] = lo4(qs[j]) * d + m, x[j+16] = hi4(qs[j]) * d + m.
struct BlockQ4_1 {
  uint16_t d;
  uint16_t m;
  uint8_t qs[kQK / 2];
};
// Like Q4_0 with a fifth bit: bit j of qh (32-bit LE) is bit 4 of value j; offset 16.
struct BlockQ5_0 {
  uint16_t d;
  uint8_t qh[4];
  uint8_t qs[kQK / 2];
};
// Like Q4_1 with a fifth bit from qh.
struct BlockQ5_1 {
  uint16_t d;
  uint16_t m;
  uint8_t qh[4];
  uint8_t qs[kQK / 2];
};
// x[j] = qs[j] * d, qs signed.
struct BlockQ8_0 {
  uint16_t d;
  int8_t qs[kQK];
};
// 16 sub-blocks of 16; scales[i]: low nibble scale, high nibble min; 2-bit values.
struct BlockQ2_K {
  uint8_t scales[kQKK / 16];
  uint8_t qs[kQKK / 4];
  uint16_t d;
  uint16_t dmin;
};
// 16 sub-blocks of 16; 6-bit signed scales (offset 32) packed in 12 bytes; 2 low bits in qs,
// the third bit in hmask (value - 4 when the bit is clear).
struct BlockQ3_K {
  uint8_t hmask[kQKK / 8];
  uint8_t qs[kQKK / 4];
  uint8_t scales[12];
  uint16_t d;
};
// 8 sub-blocks of 32; 6-bit scales and mins packed in 12 bytes; x = d*sc*q - dmin*m.
struct BlockQ4_K {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[12];
  uint8_t qs[kQKK / 2];
};
// Q4_K plus a fifth bit per value in qh.
struct BlockQ5_K {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[12];
  uint8_t qh[kQKK / 8];
  uint8_t qs[kQKK / 2];
};
// 16 sub-blocks of 16 with int8 scales; 6-bit values (4 in ql, 2 in qh), offset 32.
struct BlockQ6_K {
  uint8_t ql[kQKK / 2];
  uint8_t qh[kQKK / 4];
  int8_t scales[kQKK / 16];
  uint16_t d;
};

// TurboQuant weights (kTQW2/3/4): a group of kTqwGroup consecutive input columns, rotated by
// the codec's fixed rotation R of dimension kTqwGroup; value j of the rotated group is
// d * kTqwLevelsN[index_j] (levels: kernels/cpu/tq_weights.h), and the group's weights are
// R^T of those values. Index layout (every group byte-aligned, no bits shared across groups):
//  TQW4: index j (j < 32) = lo4(qs[j]), index j + 32 = hi4(qs[j]).
//  TQW2: index j + 16k = (qs[j] >> 2k) & 3, j < 16, k < 4.
//  TQW3: TQW2's layout in ql for the low 2 bits; bit 2 of index j + 8k = (qh[j] >> k) & 1,
//        j < 8, k < 8.
constexpr int kTqwGroup = 64;
struct BlockTqW2 {
  uint16_t d;
  uint8_t qs[kTqwGroup / 4];
};
struct BlockTqW3 {
  uint16_t d;
  uint8_t ql[kTqwGroup / 4];
  uint8_t qh[kTqwGroup / 8];
};
struct BlockTqW4 {
  uint16_t d;
  uint8_t qs[kTqwGroup / 2];
};
static_assert(sizeof(BlockTqW2) == 18);
static_assert(sizeof(BlockTqW3) == 26);
static_assert(sizeof(BlockTqW4) == 34);

inline bool IsTqWeight(TensorType t) {
  return t == TensorType::kTQW2 || t == TensorType::kTQW3 || t == TensorType::kTQW4;
}
// Index bits of a TurboQuant weight type (2, 3, 4), 0 for any other type.
inline int TqWeightBits(TensorType t) {
  return t == TensorType::kTQW2 ? 2 : t == TensorType::kTQW3 ? 3 : t == TensorType::kTQW4 ? 4 : 0;
}

static_assert(sizeof(BlockQ4_0) == 18);
static_assert(sizeof(BlockQ4_1) == 20);
static_assert(sizeof(BlockQ5_0) == 22);
static_assert(sizeof(BlockQ5_1) == 24);
static_assert(sizeof(BlockQ8_0) == 34);
static_assert(sizeof(BlockQ2_K) == 84);
static_assert(sizeof(BlockQ3_K) == 110);
static_assert(sizeof(BlockQ4_K) == 144);
static_assert(sizeof(BlockQ5_K) == 176);
static_assert(sizeof(BlockQ6_K) == 210);

// The eight 6-bit (scale, min) pairs of a Q4_K/Q5_K block's packed 12 scale bytes, as four
// words of four bytes each: scales 0-3, scales 4-7, mins 0-3, mins 4-7. Read as words A, B, C
// (bytes 0-3, 4-7, 8-11): scales 0-3 are A's low 6 bits per byte, mins 0-3 B's; scales 4-7 take
// their low nibble from C and their top 2 bits from A's top bits, mins 4-7 C's high nibble and
// B's top bits. Word arithmetic does all 16 at once (the SIMD matmul unpacks a block per 256
// values on its hot path).
struct ScalesMinsK4Words {
  uint32_t sc_lo, sc_hi, mn_lo, mn_hi;
};

inline ScalesMinsK4Words UnpackScalesMinsK4(const uint8_t* s) {
  uint32_t a, b, c;
  std::memcpy(&a, s, 4);
  std::memcpy(&b, s + 4, 4);
  std::memcpy(&c, s + 8, 4);
  constexpr uint32_t kLow6 = 0x3F3F3F3Fu, kLow4 = 0x0F0F0F0Fu, kLow2 = 0x03030303u;
  return {a & kLow6, (c & kLow4) | (((a >> 6) & kLow2) << 4), b & kLow6,
          ((c >> 4) & kLow4) | (((b >> 6) & kLow2) << 4)};
}

// The same as bytes: out[j] scale j, out[8 + j] min j.
inline void UnpackScalesMinsK4(const uint8_t* s, uint8_t out[16]) {
  const ScalesMinsK4Words w = UnpackScalesMinsK4(s);
  std::memcpy(out, &w, 16);
}

// The 16 signed 6-bit scales (already minus 32) of a Q3_K block.
inline void UnpackScalesQ3K(const uint8_t* s, int8_t out[16]) {
  for (int i = 0; i < 16; ++i) {
    const int low = i < 8 ? (s[i] & 0xF) : (s[i - 8] >> 4);
    const int high = (s[8 + (i & 3)] >> (2 * (i >> 2))) & 3;
    out[i] = int8_t((low | (high << 4)) - 32);
  }
}

}  // namespace tqlm::kernels
