// TurboQuant weight formats (TQW2, TQW3, TQW4; block layouts in kernels/tensor_format.h, bytes
// in docs/FORMAT.md): the format's definition (levels, rotation, scalar decoding), its encoder,
// and the activation rotation that lets the matmul work on codes without undoing the rotation:
// y = W x = (W R^T)(R x), with R applied to each kTqwGroup-column group of x once per call.
//
// Levels and rotation are the codec's (codec::LloydMaxCodebook for the sphere density at
// dimension kTqwGroup, codec::Rotation with kTqwRotationSeed); the levels are rounded to int8
// so that the kernels can look them up with byte shuffles. Tests pin both, since files depend
// on them.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/tensor_format.h"

namespace tqlm::kernels {

inline constexpr uint64_t kTqwRotationSeed = 0x7451'4d5f'726f'7431ull;

// The 2^bits int8 levels of width `bits` (2, 3 or 4), ascending, padded with zeros to 16
// entries: round(127 * c_i / c_max) of the codec's Lloyd–Max levels c.
const int8_t* TqwLevels(int bits);

// out[t * cols + g * 64 + j] = (R x_g)[j] for every token t and group g: the activations in the
// rotated basis the codes live in. cols: a multiple of kTqwGroup. in == out allowed.
void TqwRotate(const float* x, int n_tokens, int64_t cols, float* out);
// The inverse: R^T per group (for dequantizing weights back to their own basis).
void TqwRotateInverse(const float* x, int64_t n, float* out);

// Encodes n weights (a multiple of kTqwGroup) of one row: per group, the rotated values y, a
// scale d (fp16) and the indices minimizing ||y - d * L[idx]||^2 over a grid of scales refined
// by least squares. Throws tqlm::Error on a non-finite weight.
void TqwEncode(TensorType type, const float* w, int64_t n, void* out);

// The rotated-basis values d * L[idx], scalar reference of the SIMD decoder.
void TqwDecodeRotatedScalar(TensorType type, const void* src, int64_t n, float* out);
// The same through the Highway kernels (runtime-dispatched; bit-identical: one multiply each).
void TqwDecodeRotated(TensorType type, const void* src, int64_t n, float* out);

// out[t * out_stride] = Σ_c v_c · xr[t * x_stride + c] for one row of rotated-basis values v
// (d * L[idx], as TqwDecodeRotated) and n_tokens rotated activation rows (TqwRotate), decoding
// the row once for up to 4 tokens (Highway; a token's sum does not depend on n_tokens).
void TqwDotRows(TensorType type, const uint8_t* row, int64_t cols, const float* xr,
                size_t x_stride, int n_tokens, float* out, size_t out_stride);

// The weights themselves (R^T of the rotated values), for embedding lookups and conversions.
void TqwDequantize(TensorType type, const void* src, int64_t n, float* out);

}  // namespace tqlm::kernels
