// AMX detection (see amx.h).
#include "kernels/cpu/amx.h"

#if defined(__x86_64__) && defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace tqlm::kernels {

#if defined(__x86_64__) && defined(__linux__)
namespace {

constexpr long kArchReqXcompPerm = 0x1023;  // arch_prctl codes (asm/prctl.h)
constexpr long kArchGetXcompPerm = 0x1022;
constexpr long kXfeatureXtiledata = 18;

struct CpuidRegs {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
};

CpuidRegs Cpuid(unsigned leaf, unsigned subleaf) {
  CpuidRegs r;
  __asm__ volatile("cpuid"
                   : "=a"(r.eax), "=b"(r.ebx), "=c"(r.ecx), "=d"(r.edx)
                   : "a"(leaf), "c"(subleaf));
  return r;
}

// CPUID leaf 7 (not every compiler's __builtin_cpu_supports knows the AMX names): subleaf 0
// EDX bit 24 AMX-TILE, 25 AMX-INT8.
struct AmxFeatures {
  bool tile = false, int8 = false;
};

AmxFeatures CpuAmxFeatures() {
  AmxFeatures f;
  if (Cpuid(0, 0).eax < 7) return f;
  const CpuidRegs l70 = Cpuid(7, 0);
  f.tile = (l70.edx >> 24) & 1u;
  f.int8 = (l70.edx >> 25) & 1u;
  return f;
}

bool RequestTileState() {
  if (syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) != 0) return false;
  unsigned long bits = 0;
  if (syscall(SYS_arch_prctl, kArchGetXcompPerm, &bits) != 0) return false;
  return (bits >> kXfeatureXtiledata) & 1ul;
}

bool TilesGranted() {
  static const bool ok = CpuAmxFeatures().tile && RequestTileState();
  return ok;
}

}  // namespace

bool AmxInt8Available() {
  static const bool ok = CpuAmxFeatures().int8 && TilesGranted();
  return ok;
}

#else

bool AmxInt8Available() { return false; }

#endif

}  // namespace tqlm::kernels
