// MatMul entry point: checks the view, then dispatches to the format's kernel.
#include "kernels/cpu/matmul.h"

#include <fmt/format.h>

#include <algorithm>
#include <vector>

#include "kernels/cpu/dequant.h"
#include "tqlm/error.h"

namespace tqlm::kernels {

bool MatMulSupports(TensorType type) { return DequantizeSupports(type); }

WeightView MakeWeightView(TensorType type, const void* data, int64_t rows, int64_t cols) {
  if (!MatMulSupports(type)) {
    throw Error(fmt::format("matmul: tensor type {} is not supported", TypeName(type)));
  }
  const size_t row_bytes = RowBytes(type, cols);
  if (row_bytes == SIZE_MAX || rows < 0) {
    throw Error(fmt::format("matmul: {} x {} is not a valid {} matrix", rows, cols,
                            TypeName(type)));
  }
  return WeightView{type, data, rows, cols, row_bytes};
}

void DequantizeRow(const WeightView& w, int64_t row, float* out) {
  const auto* p = static_cast<const uint8_t*>(w.data) + size_t(row) * w.row_bytes;
  if (!DequantizeValues(w.type, p, w.cols, out)) {
    throw Error(fmt::format("dequantize: tensor type {} is not supported", TypeName(w.type)));
  }
}

void MatMul(const WeightView& w, const float* x, int n_tokens, float* y, ThreadPool& pool) {
  if (!MatMulSupports(w.type)) {
    throw Error(fmt::format("matmul: tensor type {} is not supported", TypeName(w.type)));
  }
  pool.ParallelFor(size_t(w.rows), 16, [&](size_t begin, size_t end, int) {
    std::vector<float> row(size_t(w.cols));
    for (size_t r = begin; r < end; ++r) {
      DequantizeRow(w, int64_t(r), row.data());
      for (int t = 0; t < n_tokens; ++t) {
        const float* xt = x + size_t(t) * size_t(w.cols);
        float s = 0;
        for (int64_t c = 0; c < w.cols; ++c) s += row[size_t(c)] * xt[c];
        y[size_t(t) * size_t(w.rows) + r] = s;
      }
    }
  });
}

}  // namespace tqlm::kernels
