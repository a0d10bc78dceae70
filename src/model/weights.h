// Checked views of GGUF tensors as the forward pass needs them: a matrix of a given shape for
// the matmul kernels, or a plain f32 vector (norm weights, biases). Shape or type mismatches
// throw tqlm::Error naming the tensor, so a wrong file fails at load, not mid-inference.
#pragma once

#include "kernels/cpu/matmul.h"
#include "model/gguf.h"

namespace tqlm::model {

// A 2-D tensor with ne[0] == cols and, unless rows < 0, ne[1] == rows.
kernels::WeightView Matrix(const GgufTensor& t, int64_t cols, int64_t rows);

// A 1-D F32 tensor of exactly `len` elements.
const float* F32Vector(const GgufTensor& t, int64_t len);

}  // namespace tqlm::model
