// Shared by the prefill engines (matmul_prefill.cc: engine choice; matmul_prefill_shared.cc:
// token layout, panel decode, float fold; matmul_prefill_i8.cc: VNNI int8;
// matmul_prefill_amx8.cc: AMX-INT8). x86-64 only; not for use outside them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "kernels/cpu/matmul_internal.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define TQLM_HAVE_PREFILL_KERNELS 1
#include <immintrin.h>
#else
#define TQLM_HAVE_PREFILL_KERNELS 0
#endif

#if TQLM_HAVE_PREFILL_KERNELS

#define TQLM_PREFILL_BASE __attribute__((target("avx512f,avx512bw")))

namespace tqlm::kernels::internal::prefill {

// Dword offsets kk * 16 (kk = 0..15): one dword per row of a 16 x 16-dword tile block.
TQLM_PREFILL_BASE inline __m512i ScatterIndex() {
  return _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                            _mm512_set1_epi32(kAmxTile));
}

// y[t * y_stride + j] = acc[j * tp + t] for t < n_tokens, j < nr <= 32 (matmul_prefill.cc).
void StoreTransposed(const float* acc, int tp, int n_tokens, int nr, float* y, size_t y_stride);

// How PrepareActivations lays out the tokens' 8-bit values in xq: int8 quads (AMX-INT8), or
// the same quads offset by +128 to uint8 (VNNI int8).
enum class ActLayout { kInt8Quads, kUint8Quads };

// Tokens into out->xq by `layout`, and dxi/si (n_tokens, padded_tokens and cols already set;
// matmul_prefill_shared.cc).
void PrepareActivations(const float* x, int n_tokens, int64_t cols, ActLayout layout,
                        PrefillActs* out);

// A panel of kAmxPanelRows k-quant rows in the int16 form of VnniDecodeRowI16 (zero rows past
// the matrix), for the AMX-INT8 engine; its d, dmin and mins serve FoldSuperBlock in both.
struct PanelI16 {
  std::vector<int16_t> w, mins;  // w[j][cols]; mins[j][sb][8] (Q4_K, Q5_K)
  std::vector<float> d, dmin;    // [j][sb]
};
void DecodePanelI16(TensorType type, const uint8_t* w, size_t row_bytes, int64_t p0, int64_t p1,
                    int64_t cols, PanelI16* pn);
// The float steps of one super-block for panel row j and tokens t0..t0+31 (c0, c1: their exact
// integer sums), into acc[j * padded_tokens + t]: the same in every k-quant engine.
// (Declared with the AVX-512 target of its definition: it takes __m512i by value, and clang
// refuses such a call across differing targets.)
__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni"))) void FoldSuperBlock(
    const PanelI16& pn, bool has_mins, const PrefillActs& act, size_t j, int64_t sb, int t0,
    __m512i c0, __m512i c1, float* acc);

// The VNNI int8 engine (matmul_prefill_i8.cc): activations prepared with kUint8Quads.
void MatMulRowsI8(TensorType type, const uint8_t* w, size_t row_bytes, int64_t rows, int64_t r0,
                  int64_t r1, const PrefillActs& act, float* y);

// The AMX-INT8 engine (matmul_prefill_amx8.cc), for k-quants: activations prepared by
// PrepareActivationsI16 with amx_layout.
void MatMulRowsAmx8(TensorType type, const uint8_t* w, size_t row_bytes, int64_t rows,
                    int64_t r0, int64_t r1, const PrefillActs& act, float* y);

}  // namespace tqlm::kernels::internal::prefill

#endif
