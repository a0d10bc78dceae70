// AMX groundwork for the compressed-KV attention kernels (docs/PERF_NOTES.md, "v6"): runtime
// detection of usable AMX-INT8 and one tile product, so a later TDPBUSD scores/accumulate kernel
// can rely on both. Linux hands out the AMX tile registers only to a process that asks for them
// (arch_prctl(ARCH_REQ_XCOMP_PERM, XTILEDATA)); a CPU that lists AMX but whose kernel refuses
// gets the existing AVX-512 VNNI path.
#pragma once

#include <cstdint>

namespace tqlm::kernels {

// True when this CPU has AMX-TILE and AMX-INT8 and the OS granted the tile state to this
// process. The request is made once (thread-safe) and holds for all threads.
bool AmxInt8Available();

// c[m * 16 + n] = sum_k a[m * 64 + k] * b[k / 4][n * 4 + k % 4] over k < 64, for a 16 x 64
// uint8 tile a and a 16 x 64 int8 tile b in VNNI layout (b row r holds coordinates 4r..4r+3
// of each of the 16 columns n), i.e. one TDPBUSD into a zeroed 16 x 16 int32 tile. Only call
// when AmxInt8Available() returned true.
void AmxDotU8S8Tile(const uint8_t* a, const int8_t* b, int32_t* c);

}  // namespace tqlm::kernels
