// The layout numbers of a TurboQuant KV format (TqFormat, device pointers left null) from the
// CPU's definitions (kv/block_format_turbo.cc, kernels/cpu/attention_tq.h): host code only,
// shared by the GPU cache (which adds the device tables) and tests/cuda_tq_layout_test.cc.
#pragma once

#include <algorithm>
#include <cmath>

#include "backend/cuda/tq_kv_kernels.h"
#include "kernels/cpu/attention_tq.h"
#include "kv/block_format.h"

namespace tqlm::cuda_backend {

// Fractional widths give hi bits to the first n_hi coordinates (a multiple of 16 near dim / 2);
// key blocks store their fp16 center after the norms when centering is on.
inline TqFormat MakeTqFormat(const kv::KvType& type, int dim, kv::TensorRole role) {
  const int whole = int(std::floor(type.bits));
  const int hi = type.bits == whole ? whole : whole + 1;
  const int n_hi = type.bits == whole ? dim : std::clamp((dim / 2 + 8) / 16 * 16, 16, dim);
  const kernels::TqBlockLayout layout = kernels::TqBlockLayout::Make(dim, n_hi, hi, whole);
  TqFormat f;
  f.dim = dim;
  f.n_hi = n_hi;
  f.hi_bits = hi;
  f.lo_bits = whole;
  f.k_row_bytes = 2 * (n_hi * hi + (dim - n_hi) * whole);
  f.norms_offset = int(layout.norms_offset);
  f.key = role == kv::TensorRole::kKey;
  f.centered = f.key && kv::KeyCenteringEnabled();
  f.center_offset =
      f.centered ? int((layout.block_bytes + 1) & ~size_t(1)) : int(layout.block_bytes);
  f.block_bytes = f.centered ? f.center_offset + 2 * dim : int(layout.block_bytes);
  f.block_stride = (f.block_bytes + 15) / 16 * 16;
  return f;
}

}  // namespace tqlm::cuda_backend
