// Attention kernels on TurboQuant-compressed KV blocks (AVX-512 VNNI), for blocks of
// kTqBlockTokens tokens of one KV head in a token-blocked layout made for SIMD:
//
// A "unit" is 64 b-bit codes (b = 1..4, or 8) stored in 8·b bytes as bit planes:
//   b = 8: 64 bytes, byte i = c[i]
//   b = 4: 32 bytes, byte i = c[i] | c[i + 32] << 4
//   b = 2: 16 bytes, byte i = c[i] | c[i + 16] << 2 | c[i + 32] << 4 | c[i + 48] << 6
//   b = 3: the b = 2 plane of the low two bits, then 8 bytes whose bit p is bit 2 of c[p]
//   b = 1: 8 bytes, bit p = c[p]
// so one broadcast, one variable shift and one AND (plus a mask op for the third bit) unpack
// a unit into 64 byte lanes, and one in-register byte shuffle maps codes to codebook values.
//
// K block (scores: SIMD lanes run across tokens): for s in 0..3 (16-token groups), for g in
//   0..dim/4-1: the unit with code p = 4t + i of token 16s + t, coordinate 4g + i; then 64 f16
//   norms. One vpdpbusd per unit and query sums 4 coordinates of 16 tokens at once.
// V block (weighted sums: lanes run across coordinates): for c in 0..dim/16-1, for s in
//   0..15: the unit with code p = 4j + i of coordinate 16c + j, token 4s + i; then 64 f16
//   norms. One vpdpbusd per unit and query adds 4 tokens' weighted values to 16 coordinates.
// Coordinates [0, n_hi) use hi_bits and codebook_hi, the rest lo_bits (n_hi multiple of 16).
//
// Codebook values enter as int8 (level / cb_scale, cb_scale = max |level| / 127), queries as
// int8 per row, softmax weights x norms as uint8 per row and block: integer dot products, exact
// and identical on every path; the float scales are applied once per 16 results.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/cpu/prefetch.h"

namespace tqlm::kernels {

inline constexpr int kTqBlockTokens = 64;

struct TqBlockLayout {
  int dim = 0;
  int n_hi = 0;
  int hi_bits = 0, lo_bits = 0;  // 1..4, or 8 for both (no split)
  size_t codes_bytes = 0;        // of one block (K or V: same size)
  size_t norms_offset = 0;       // 64 f16 norms
  size_t block_bytes = 0;
  static TqBlockLayout Make(int dim, int n_hi, int hi_bits, int lo_bits);
  int bits_of_dim(int j) const { return j < n_hi ? hi_bits : lo_bits; }
  // Bytes of one unit of b-bit codes.
  static size_t UnitBytes(int bits) { return size_t(8 * bits); }
};

// Codebook tables: the 2^bits levels of hi and lo as int8 (zero-padded; 256 entries for 8-bit
// codes).
struct TqTables {
  int8_t hi[256] = {};
  int8_t lo[256] = {};
  float cb_scale = 0;  // level = int8 value * cb_scale
};

// scores[i * stride + t] for t < 64 and query rows i < nq:
//   q_scale[i] * norm_t * (sum_j q8[i][j] * tables(code_tj))
// q8 rows are dim int8 values; q_sum[i] = sum_j q8[i][j] (the kernel's +128 offset).
void TqScores(const TqBlockLayout& layout, const TqTables& tables, const int8_t* q8,
              const float* q_scale, const int32_t* q_sum, int nq, const uint8_t* block,
              float* scores, int stride, PrefetchRange next = {});

// acc[i * dim + j] += sum_t p[i * stride + t] * norm_t * level(code_tj), in the rotated basis,
// with p * norm quantized to uint8 per row (scale = row max / 255). Both kernels prefetch
// `next` (the block the caller reads after this one) while they compute.
void TqAccumulate(const TqBlockLayout& layout, const TqTables& tables, const float* p, int nq,
                  int stride, const uint8_t* block, float* acc, PrefetchRange next = {});

// Kernel implementations, each computing the same integers: portable scalar code, AVX-512
// VNNI (code lookups by VPSHUFB), and AVX-512 VNNI + VBMI (lookups by VPERMB, no masking).
// 8-bit codes have SIMD kernels on the VBMI path only (elsewhere the portable ones run).
enum class TqKernelPath { kPortable, kVnni, kVnniVbmi };
// The best path this CPU runs (the one in use unless a test chose another).
TqKernelPath TqBestKernelPath();
const char* TqKernelPathName(TqKernelPath path);
// Tests: run `path` from now on; false (nothing changes) if this CPU cannot run it.
bool SetTqKernelPathForTest(TqKernelPath path);

}  // namespace tqlm::kernels
