// The codec's SIMD kernels (Highway, compiled for every x86 target and dispatched at runtime).
// Internal to src/codec; tests/codec_reference.h holds the scalar references they are checked
// against.
#pragma once

#include <cstddef>
#include <cstdint>

namespace tqlm::codec::kernels {

// out = blockwise-WHT(in ∘ scale) (scale_after = false) or scale ∘ blockwise-WHT(in)
// (scale_after = true): an unnormalized Walsh–Hadamard transform on each of the dim / block
// consecutive blocks. in == out allowed. dim, block: multiples of 16.
void ScaledFwht(const float* in, const float* scale, bool scale_after, float* out, size_t dim,
                size_t block);

// out = x / ‖x‖ and returns ‖x‖ (to float rounding, also for subnormal inputs); out = 0 and
// returns 0 when ‖x‖ is 0, not finite (an Inf or NaN in x) or above FLT_MAX.
float Normalize(const float* x, size_t n, float* out);

// out[r] = Σ_c m[r * cols + c] x[c]. cols: multiple of 16.
void MatVec(const float* m, const float* x, size_t rows, size_t cols, float* out);

// out[v * rows + r] = Σ_c mt[c * rows + r] x[v * cols + c] for v < n: n products with a matrix
// given transposed (mt is cols x rows), register-blocked over 8 vectors so that the matrix is
// read once per 8 vectors. rows: multiple of 16.
void MatVecBatchT(const float* mt, const float* x, size_t n, size_t rows, size_t cols, float* out);

// idx[j] = number of thresholds (2^bits - 1, ascending) below y[j]. n: multiple of 8.
void QuantizeIndices(const float* y, size_t n, const float* thresholds, int bits, uint8_t* idx);

// Everything DotBatch needs to read one encoded vector (see src/codec/layout.h).
struct DotPlan {
  const float* query = nullptr;   // rotated query, dim floats
  const float* sketch = nullptr;  // S · rotated query (prod), else nullptr
  // Codebook levels, zero-padded to 256 entries so that full-vector loads and gathers of any
  // index stay in bounds.
  const float* levels_hi = nullptr;
  const float* levels_lo = nullptr;
  int dim = 0, n_hi = 0, hi_bits = 0, lo_bits = 0;
  bool norm_f16 = true;
  size_t stride = 0;  // bytes per vector
  size_t norm_offset = 0, codes_offset = 0, lo_offset = 0;  // lo_offset: from codes_offset
  size_t rnorm_offset = 0, qjl_offset = 0;
  float qjl_scale = 0;  // sqrt(π/2) / dim
};

// out[i] = <q, x̂_i> for n consecutive encoded vectors, straight from the packed bits.
void DotBatch(const DotPlan& plan, const uint8_t* codes, size_t n, float* out);

// out[i] = Σ_j a[i * dim + j] q[j] with a in IEEE fp16: the uncompressed baseline that the
// codec report compares DotBatch with. dim: multiple of 16.
void DotF16Batch(const uint16_t* a, const float* q, size_t n, size_t dim, float* out);

}  // namespace tqlm::codec::kernels
