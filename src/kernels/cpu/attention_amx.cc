// AMX detection and one TDPBUSD tile product (see attention_amx.h).
#include "kernels/cpu/attention_amx.h"

#if defined(__x86_64__) && defined(__linux__)
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>
#endif

namespace tqlm::kernels {

#if defined(__x86_64__) && defined(__linux__)
namespace {

constexpr long kArchReqXcompPerm = 0x1023;  // arch_prctl codes (asm/prctl.h)
constexpr long kArchGetXcompPerm = 0x1022;
constexpr long kXfeatureXtiledata = 18;

bool CpuHasAmxInt8() {
  // CPUID leaf 7, subleaf 0, EDX: bit 24 AMX-TILE, bit 25 AMX-INT8 (not every compiler's
  // __builtin_cpu_supports knows the AMX names).
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  __asm__ volatile("cpuid" : "=a"(eax), "=b"(ebx), "=c"(ecx), "=d"(edx) : "a"(0), "c"(0));
  if (eax < 7) return false;
  __asm__ volatile("cpuid" : "=a"(eax), "=b"(ebx), "=c"(ecx), "=d"(edx) : "a"(7), "c"(0));
  return ((edx >> 24) & 1u) && ((edx >> 25) & 1u);
}

bool RequestTileState() {
  if (syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) != 0) return false;
  unsigned long bits = 0;
  if (syscall(SYS_arch_prctl, kArchGetXcompPerm, &bits) != 0) return false;
  return (bits >> kXfeatureXtiledata) & 1ul;
}

// LDTILECFG's 64-byte operand: palette 1, rows and bytes per row of tiles 0..7.
struct alignas(64) TileConfig {
  uint8_t palette = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};
static_assert(sizeof(TileConfig) == 64);

}  // namespace

bool AmxInt8Available() {
  static const bool ok = CpuHasAmxInt8() && RequestTileState();
  return ok;
}

__attribute__((target("amx-tile,amx-int8"))) void AmxDotU8S8Tile(const uint8_t* a,
                                                                   const int8_t* b, int32_t* c) {
  TileConfig cfg;
  for (int t = 0; t < 3; ++t) {
    cfg.rows[t] = 16;
    cfg.colsb[t] = 64;
  }
  _tile_loadconfig(&cfg);
  _tile_zero(0);
  _tile_loadd(1, a, 64);
  _tile_loadd(2, b, 64);
  _tile_dpbusd(0, 1, 2);
  _tile_stored(0, c, 64);
  _tile_release();
}

#else

bool AmxInt8Available() { return false; }
void AmxDotU8S8Tile(const uint8_t*, const int8_t*, int32_t*) {}

#endif

}  // namespace tqlm::kernels
