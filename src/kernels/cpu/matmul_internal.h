// Kernels behind MatMul (kernels/cpu/matmul.h); not for use outside src/kernels/cpu and tests.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "kernels/cpu/quant_act.h"
#include "kernels/cpu/thread_pool.h"
#include "kernels/tensor_format.h"

namespace tqlm::kernels::internal {

// Highway (runtime-dispatched) float dot products of one weight row with n_tokens activation
// rows: out[t * out_stride] = sum_c w[c] * x[t * x_stride + c]. The weight row is F32, F16
// or BF16 (raw little-endian bits, possibly unaligned).
void DotRowF32(const float* w, const float* x, size_t x_stride, int n_tokens, size_t cols,
               float* out, size_t out_stride);
void DotRowF16(const uint16_t* w, const float* x, size_t x_stride, int n_tokens, size_t cols,
               float* out, size_t out_stride);
void DotRowBF16(const uint16_t* w, const float* x, size_t x_stride, int n_tokens, size_t cols,
                float* out, size_t out_stride);

// MatMul without the integer kernels (rows decoded to float, Highway dot products): what
// CPUs without AVX-512 VNNI run, callable directly so tests cover it everywhere.
void MatMulPortable(TensorType type, const void* data, int64_t rows, int64_t cols,
                    size_t row_bytes, const float* x, int n_tokens, float* y, ThreadPool& pool);

// MatMul for TurboQuant weights (matmul_tq.cc), every CPU: activations rotated once per call,
// rows decoded in the rotated basis, Highway float dot products (batch-invariant per token).
void MatMulTq(TensorType type, const uint8_t* w, size_t row_bytes, int64_t rows, int64_t cols,
              const float* x, int n_tokens, float* y, ThreadPool& pool);

// Integer-dot kernels for quantized weights against ActQ8 activations, for rows [r0, r1) and
// tokens [t0, t1): y[t * rows + r]. Exist only where the CPU has AVX-512 VNNI (x86-64).
bool HaveVnniKernels();
bool VnniSupports(TensorType type);
// QuantizeActivations, vectorized (bit-identical results); call only if HaveVnniKernels().
void VnniQuantize(const float* x, int n_tokens, int64_t cols, ActScale scale, ActQ8* out);
void VnniMatMul(TensorType type, const uint8_t* w, size_t row_bytes, int64_t rows, int64_t r0,
                int64_t r1, const ActQ8& act, int t0, int t1, float* y);
// The k-quant part of VnniMatMul (matmul_vnni_kquant.cc): Q4_K, Q5_K and Q6_K, computing the
// integer-first result that the int16 prefill engine computes too, bit for bit.
bool VnniKQuantSupports(TensorType type);
void VnniMatMulKQuant(TensorType type, const uint8_t* w, size_t row_bytes, int64_t rows,
                      int64_t r0, int64_t r1, const ActQ8& act, int t0, int t1, float* y);
// A Q4_K, Q5_K or Q6_K row of `super_blocks` 256-value super-blocks as int16 products of the
// integer sub-block scales and quants: w16[k] = sc_j * q_k (Q4_K, Q5_K), sc_g * (q_k - 32)
// (Q6_K), with d[sb] the super-block scale, so value k = d * w16[k] (Q6_K) or d * w16[k] -
// dmin[sb] * mins[8 sb + j] (Q4_K/Q5_K, j = sub-block of 32; dmin and mins untouched for
// Q6_K). |w16| <= 4096.
// False for other formats or without VNNI.
bool VnniDecodeRowI16(TensorType type, const uint8_t* row, int64_t super_blocks, int16_t* w16,
                      float* d, float* dmin, int16_t* mins);
// The same rows as int8 quants and their integer sub-block scales: q8[k] = q_k (Q4_K, Q5_K) or
// q_k - 32 (Q6_K), sc[16 sb + s] the scale of sub-block s (8 of 32 values for Q4_K/Q5_K,
// entries 8-15 untouched; 16 of 16 values for Q6_K), wsum[sb] = sum over the super-block of
// the int16 products above (sum_k w16[k]); d, dmin and mins as above.
bool VnniDecodeRowI8(TensorType type, const uint8_t* row, int64_t super_blocks, int8_t* q8,
                     int32_t* sc, int32_t* wsum, float* d, float* dmin, int16_t* mins);

// Prefill engines for k-quants at 20 tokens and more (matmul_prefill.cc): a panel of 32
// weight rows is decoded once per call and multiplied with the tokens 32 at a time, computing
// the integer-first sums of matmul_vnni_kquant.cc bit for bit:
//  - AMX-INT8 tiles (where CPU and OS grant AMX-INT8 and TQLM_NO_AMX is unset): each weight's
//    int16 product w16 = sc * q split into two int8 planes, w16 = 2^s hi + lo, multiplied
//    with the tokens' 8-bit values by TDPBSSD over a whole super-block per plane;
//  - VNNI int8 (otherwise): the int8 quants against the tokens' values offset to uint8 by
//    VPDPBUSD, sub-block by sub-block, each partial sum times its integer scale, the offset
//    taken back once per super-block (64 products per instruction; it replaced an engine of
//    int16 products w16 against tokens widened to int16 by VPDPWSSD, 32 per instruction).
// Other formats stay on the VNNI tiles for every token count (their result is defined by the
// tiles' lanes; see matmul_vnni.cc).
enum class PrefillEngine { kNone, kAmxInt8, kVnniI8 };
// In MatMul's order of preference (tests walk them all).
constexpr PrefillEngine kAllPrefillEngines[] = {PrefillEngine::kAmxInt8, PrefillEngine::kVnniI8};
const char* PrefillEngineName(PrefillEngine engine);
constexpr int kAmxTile = 16;          // rows and tokens of one tile
constexpr int kAmxPanelRows = 2 * kAmxTile;
bool HaveAmxKernels();        // AMX-INT8 granted by CPU and OS, and TQLM_NO_AMX unset
bool HaveVnniI8Kernels();     // VNNI kernels present, and TQLM_NO_I8_PREFILL unset
bool PrefillSupports(PrefillEngine engine, TensorType type);
// The engine MatMul uses for n_tokens tokens of `type` weights, or kNone (VNNI tiles etc.).
PrefillEngine PrefillEngineFor(TensorType type, int n_tokens);
// Activations, zero-padded to a multiple of 32 tokens, from their 8-bit k-quant form (one
// scale per 256 values): int8 quads (xq; offset to uint8 for VNNI int8), the
// tokens' scales per super-block (dxi) and their 32-value sums (si).
struct PrefillActs {
  std::vector<uint32_t> xq, si;
  std::vector<float> dxi;
  int n_tokens = 0, padded_tokens = 0;
  int64_t cols = 0, super_blocks = 0;
};
void PrefillPrepare(PrefillEngine engine, const float* x, int n_tokens, int64_t cols,
                    PrefillActs* out);
// Rows [r0, r1) for all tokens: y[t * rows + r], in panels of kAmxPanelRows from r0. Call
// only with an engine for which PrefillSupports(engine, type) holds, and acts prepared for it.
void PrefillMatMul(PrefillEngine engine, TensorType type, const uint8_t* w, size_t row_bytes,
                   int64_t rows, int64_t r0, int64_t r1, const PrefillActs& act, float* y);

}  // namespace tqlm::kernels::internal
