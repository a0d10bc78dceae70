// GPU paged layout of the compressed KV cache (TurboQuant codes, fp16 norms) and of fp16 pages.
//
// The cache is cut into chunks of 16 tokens of one KV head; a page holds one chunk. Inside a
// chunk, K and V values are stored in the order the decode kernel's tensor-core fragments read
// them (mma.m16n8k16), so that each lane loads its share with a few 16-byte loads and every
// value it reads is one it needs:
//   * values go in pairs ("fields"), one 32-bit mma operand register: a K field is 2 consecutive
//     coordinates of one key, a V field is one coordinate of 2 consecutive tokens. A field of a b-bit side is 2b bits
//     (idx0 | idx1 << b); an fp16 side (b = 16) stores the two halves of a 32-bit word.
//   * lane L = 4 * gid + tig owns dim / 4 fields per chunk and side, packed LSB-first into
//     LaneWords(dim, b) = dim * b / 64 words; word w of lane L sits at WordIndex(), so that one
//     warp-wide vector load reads consecutive 16 B (or 8 B / 4 B) pieces of consecutive lanes.
// Page bytes for one KV head: [K codes][V codes][K norms: 16 fp16][V norms: 16 fp16] (norms only
// for b < 16). Pages of one page id for all KV heads are adjacent: page p, head h starts at
// (p * n_kv_heads + h) * PageBytes().
//
// A new page must be zero-filled before the first token is written to it: codes are OR-ed in
// (tokens of one chunk share words), and zeros keep never-written slots finite.
#pragma once

#include <cstddef>
#include <cstdint>

#if defined(__CUDACC__)
#define TQLM_HD __host__ __device__ __forceinline__
#else
#define TQLM_HD inline
#endif

namespace tqlm::cuda {

inline constexpr int kChunkTokens = 16;
inline constexpr int kWarpLanes = 32;
inline constexpr int kF16Bits = 16;  // "bits" of an fp16 side

TQLM_HD constexpr bool IsCompressed(int bits) { return bits != kF16Bits; }

// 32-bit words one lane holds for one side of one chunk.
TQLM_HD constexpr int LaneWords(int dim, int bits) { return dim * bits / 64; }
// Width (in words) of the vector loads that read a lane's words.
TQLM_HD constexpr int LoadWidth(int words) { return words % 4 == 0 ? 4 : (words % 2 == 0 ? 2 : 1); }
// Position (in words, from the start of the side) of word w of lane `lane`.
TQLM_HD constexpr int WordIndex(int words, int lane, int w) {
  return ((w / LoadWidth(words)) * kWarpLanes + lane) * LoadWidth(words) + (w % LoadWidth(words));
}
TQLM_HD constexpr size_t CodeBytes(int dim, int bits) {
  return size_t(LaneWords(dim, bits)) * kWarpLanes * 4;
}
TQLM_HD constexpr size_t NormBytes(int bits) { return IsCompressed(bits) ? kChunkTokens * 2 : 0; }
TQLM_HD constexpr size_t PageBytes(int dim, int k_bits, int v_bits) {
  return CodeBytes(dim, k_bits) + CodeBytes(dim, v_bits) + NormBytes(k_bits) + NormBytes(v_bits);
}
TQLM_HD constexpr size_t VCodesOffset(int dim, int k_bits) { return CodeBytes(dim, k_bits); }
TQLM_HD constexpr size_t KNormOffset(int dim, int k_bits, int v_bits) {
  return CodeBytes(dim, k_bits) + CodeBytes(dim, v_bits);
}
TQLM_HD constexpr size_t VNormOffset(int dim, int k_bits, int v_bits) {
  return KNormOffset(dim, k_bits, v_bits) + NormBytes(k_bits);
}

// Where value (token row r of the chunk, coordinate j) lives: lane, field, element (0 or 1).
struct FieldPos {
  int lane, field, elem;
};
// K: field f = 4 ks + 2 half + hi is the A-operand register f % 4 of S^T = K Q^T (keys x heads)
// for k-step ks: key gid + 8 hi, coordinates 16 ks + 8 half + 2 tig + {0, 1}.
TQLM_HD FieldPos KFieldPos(int dim, int r, int j) {
  (void)dim;
  const int gid = r % 8, hi = r / 8, ks = j / 16, half = (j % 16) / 8, tig = (j % 8) / 2;
  return {gid * 4 + tig, ks * 4 + half * 2 + hi, j % 2};
}
// V: field f = 4 mt + 2 half + hi is the A-operand register f % 4 of O^T = V^T P^T (coordinates x
// heads) for m-tile mt: coordinate 16 mt + gid + 8 hi, tokens 8 half + 2 tig + {0, 1}.
TQLM_HD FieldPos VFieldPos(int r, int j) {
  const int mt = j / 16, gid = j % 8, hi = (j % 16) / 8, half = r / 8, tig = (r % 8) / 2;
  return {gid * 4 + tig, mt * 4 + half * 2 + hi, r % 2};
}

}  // namespace tqlm::cuda
