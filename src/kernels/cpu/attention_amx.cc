// One TDPBUSD tile product (see attention_amx.h).
#include "kernels/cpu/attention_amx.h"

#if defined(__x86_64__) && defined(__linux__)
#include <immintrin.h>
#endif

namespace tqlm::kernels {

#if defined(__x86_64__) && defined(__linux__)

__attribute__((target("amx-tile,amx-int8"))) void AmxDotU8S8Tile(const uint8_t* a,
                                                                   const int8_t* b, int32_t* c) {
  AmxTileConfig cfg;
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

void AmxDotU8S8Tile(const uint8_t*, const int8_t*, int32_t*) {}

#endif

}  // namespace tqlm::kernels
