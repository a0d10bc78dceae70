// Runtime detection of Intel AMX for the CPU kernels. Linux hands out the AMX tile registers
// only to a process that asks for them (arch_prctl(ARCH_REQ_XCOMP_PERM, XTILEDATA)); a CPU that
// lists AMX but whose kernel refuses keeps the AVX-512 paths.
#pragma once

#include <cstdint>

namespace tqlm::kernels {

// True when this CPU has AMX-TILE and AMX-INT8 and the OS granted the tile state to this
// process. The request is made once (thread-safe) and holds for all threads.
bool AmxInt8Available();

// LDTILECFG's 64-byte operand: palette 1, rows and bytes per row of tiles 0..7.
struct alignas(64) AmxTileConfig {
  uint8_t palette = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};
static_assert(sizeof(AmxTileConfig) == 64);

}  // namespace tqlm::kernels
