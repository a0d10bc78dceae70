// Scalar decoding of ggml storage formats to float, block by block. This is the definition of
// each format (bit-exact with ggml) and serves embedding lookups and the generic MatMul path;
// the fast kernels in matmul_*.cc decode inside integer dot products instead.
#pragma once

#include <cstdint>

#include "kernels/tensor_format.h"

namespace tqlm::kernels {

// Decodes n values (a multiple of the type's block size) starting at `src` into out[0, n).
// Returns false for a type without a decoder.
bool DequantizeValues(TensorType type, const void* src, int64_t n, float* out);

// Types DequantizeValues handles.
bool DequantizeSupports(TensorType type);

}  // namespace tqlm::kernels
