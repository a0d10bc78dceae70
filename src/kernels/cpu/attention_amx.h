// AMX groundwork for the compressed-KV attention kernels (docs/PERF_NOTES.md, "v6"):
// one tile product on top of the runtime detection in amx.h, so a later TDPBUSD
// scores/accumulate kernel can rely on both.
#pragma once

#include <cstdint>

#include "kernels/cpu/amx.h"

namespace tqlm::kernels {

// c[m * 16 + n] = sum_k a[m * 64 + k] * b[k / 4][n * 4 + k % 4] over k < 64, for a 16 x 64
// uint8 tile a and a 16 x 64 int8 tile b in VNNI layout (b row r holds coordinates 4r..4r+3
// of each of the 16 columns n), i.e. one TDPBUSD into a zeroed 16 x 16 int32 tile. Only call
// when AmxInt8Available() returned true.
void AmxDotU8S8Tile(const uint8_t* a, const int8_t* b, int32_t* c);

}  // namespace tqlm::kernels
