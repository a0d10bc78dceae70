// Constructors of the concrete block formats (one file each), for MakeBlockFormat.
#pragma once

#include <memory>

#include "kv/block_format.h"

namespace tqlm::kv {

std::unique_ptr<BlockFormat> MakeF32Format(int dim, TensorRole role);
std::unique_ptr<BlockFormat> MakeF16Format(int dim, TensorRole role);
std::unique_ptr<BlockFormat> MakeGgmlFormat(int dim, bool q8);
// TurboQuant: the SIMD block layout of kernels/cpu/attention_tq.h for MSE types of at most
// 4 bits per coordinate, the codec's per-vector layout otherwise (tq8, tqBp).
std::unique_ptr<BlockFormat> MakeTurboFormat(const KvType& type, int dim, TensorRole role);

}  // namespace tqlm::kv
