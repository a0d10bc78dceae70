// Device-only helpers for the CPU's TurboQuant block layout (the layout functions themselves
// are in tq_layout.h, host and device), shared by the encoder (tq_kv_encode.cu) and the
// attention (attention_tq.cu):
//   keys:   unit (s, g) holds tokens [16 s, 16 s + 16) x coordinates [4 g, 4 g + 4), code
//           p = 4 (t % 16) + j % 4, at s * k_row_bytes + (units of groups before g);
//   values: unit (c, u) holds coordinates [16 c, 16 c + 16) x tokens [4 u, 4 u + 4), code
//           p = 4 (j % 16) + t % 4, at (units of chunks before c) + u * unit bytes;
// a unit of b-bit codes is 8 b bytes (64 codes), packed as GetCode/SetCode of the CPU file.
#pragma once

#include <cuda_fp16.h>

#include <cstdint>

#include "backend/cuda/tq_kv_kernels.h"
#include "backend/cuda/tq_layout.h"

namespace tqlm::cuda_backend {

// ORs code c into position p of the unit at byte offset `unit` of a block image held as words
// (shared memory; threads share words, hence the atomics).
__device__ __forceinline__ void OrByte(uint32_t* img, int byte, uint32_t bits) {
  atomicOr(img + byte / 4, bits << (8 * (byte % 4)));
}
__device__ __forceinline__ void SetCode(uint32_t* img, int unit, int bits, int p, int c) {
  int byte[2];
  uint32_t val[2];
  const int n = CodeBits(unit, bits, p, c, byte, val);
  for (int i = 0; i < n; ++i) OrByte(img, byte[i], val[i]);
}


}  // namespace tqlm::cuda_backend
