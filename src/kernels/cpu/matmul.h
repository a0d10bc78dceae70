// Matrix products with weights kept in their GGUF storage format (F32, F16, BF16 and the ggml
// block quantizations): weights are decoded block by block inside the dot products, never
// dequantized as whole matrices.
//
// Decode (n_tokens == 1) is a matrix-vector product and memory-bound; prefill (n_tokens > 1)
// reuses each weight block across a batch of tokens. For quantized weights the activations are
// quantized once per call to 8-bit blocks and the inner products are integer dot products, as
// llama.cpp does. Work is split over output rows with the shared ThreadPool.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "kernels/cpu/thread_pool.h"
#include "kernels/tensor_format.h"

namespace tqlm::kernels {

// A 2-D weight matrix in storage format: `rows` output features (GGUF ne[1]) of `cols` input
// features (ne[0]) each, row r starting at data + r * row_bytes.
struct WeightView {
  TensorType type = TensorType::kF32;
  const void* data = nullptr;
  int64_t rows = 0;
  int64_t cols = 0;
  size_t row_bytes = 0;
};

// True when MatMul / DequantizeRow support `type`.
bool MatMulSupports(TensorType type);

// A view of a contiguous rows x cols matrix of `type`; throws tqlm::Error if the type is not
// supported or cols is not a multiple of its block size.
WeightView MakeWeightView(TensorType type, const void* data, int64_t rows, int64_t cols);

// y[t * rows + r] = sum_c W[r, c] * x[t * cols + c] for t < n_tokens, r < rows.
// x and y must not overlap. Throws tqlm::Error for an unsupported type.
void MatMul(const WeightView& w, const float* x, int n_tokens, float* y, ThreadPool& pool);

// The CPU kernels MatMul uses in this process, for result provenance (timings depend on them),
// e.g. "prefill amx-int8 (k-quants), else vnni".
std::string MatMulKernelSummary();

// What the bits of a result depend on in this process, beyond the model and its inputs: the
// instruction-set path of the matmuls (int8 activations on AVX-512 VNNI, float otherwise) and
// the Highway target of the float kernels (norms aside, their sums are as wide as its
// vectors). Engines that differ only in speed (AMX-INT8, int16, VNNI tiles) compute the same
// bits and share a signature; see docs/RESULTS.md "Same request, same tokens".
std::string NumericsSignature();

// The activations' side of the matmuls in this process. kNative (the default): int8 activations
// where the CPU has AVX-512 VNNI, as above. kFloat: float activations on every CPU (the portable
// path, slower). Per-token int8 rounding makes a model's logits a discontinuous function of its
// inputs: two runs that differ by a tiny amount upstream (a KV cache of 8 bits against one of
// 16) round some activations to different steps, and on a model with large activations (Gemma 3)
// that alone moves predictions by ~0.01 nats per token. Evaluations that measure what a KV
// cache itself changes (eval ppl --numerics float, calibrate) use kFloat. Set it between
// forward passes only; NumericsSignature and MatMulKernelSummary report it.
enum class MatMulNumerics { kNative, kFloat };
void SetMatMulNumerics(MatMulNumerics numerics);
MatMulNumerics GetMatMulNumerics();
// "native" / "float"; ParseMatMulNumerics throws tqlm::Error for anything else.
const char* MatMulNumericsName(MatMulNumerics numerics);
MatMulNumerics ParseMatMulNumerics(const std::string& name);

// out[c] = W[row, c] for c < cols (embedding lookup).
void DequantizeRow(const WeightView& w, int64_t row, float* out);

}  // namespace tqlm::kernels
