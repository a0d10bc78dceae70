#include "model/weights.h"

#include <fmt/format.h>

#include <cstdint>

#include "tqlm/error.h"

namespace tqlm::model {

kernels::WeightView Matrix(const GgufTensor& t, int64_t cols, int64_t rows) {
  if (t.n_dims != 2 || t.ne[0] != cols || (rows >= 0 && t.ne[1] != rows))
    throw Error(fmt::format("tensor '{}' has shape [{}, {}], expected [{}, {}]", t.name, t.ne[0],
                            t.ne[1], cols, rows < 0 ? std::string("*") : std::to_string(rows)));
  if (!kernels::MatMulSupports(t.type))
    throw Error(fmt::format("tensor '{}': type {} is not supported for matrix products", t.name,
                            kernels::TypeName(t.type)));
  return kernels::WeightView{t.type, t.data, t.ne[1], t.ne[0], t.row_bytes()};
}

const float* F32Vector(const GgufTensor& t, int64_t len) {
  if (t.type != kernels::TensorType::kF32 || t.elements() != len)
    throw Error(fmt::format("tensor '{}' must be F32 with {} elements", t.name, len));
  if (reinterpret_cast<uintptr_t>(t.data) % alignof(float) != 0)
    throw Error(fmt::format("tensor '{}' data is not 4-byte aligned", t.name));
  return static_cast<const float*>(t.data);
}

}  // namespace tqlm::model
