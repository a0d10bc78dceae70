#include "codec/bitpack.h"

#include <immintrin.h>

#include <bit>
#include <cstring>

namespace tqlm::codec {
namespace {

static_assert(std::endian::native == std::endian::little, "bit packing assumes little endian");

// Low `bits` bits of every byte: PEXT with it gathers 8 one-byte indices into 8*bits bits.
uint64_t ByteFieldMask(int bits) { return 0x0101010101010101ull * ((1ull << bits) - 1); }

// BMI2 (Haswell and later): one PEXT / PDEP per 8 indices.
__attribute__((target("bmi2"))) void PackGroupsBmi2(const uint8_t* idx, size_t groups, int bits,
                                                    uint8_t* out) {
  const uint64_t mask = ByteFieldMask(bits);
  for (size_t g = 0; g < groups; ++g, idx += 8, out += bits) {
    uint64_t w;
    std::memcpy(&w, idx, 8);
    const uint64_t packed = _pext_u64(w, mask);
    if ((groups - g) * size_t(bits) >= 8) {
      std::memcpy(out, &packed, 8);  // zero high bytes, overwritten by the following groups
    } else {
      for (int k = 0; k < bits; ++k) out[k] = uint8_t(packed >> (8 * k));
    }
  }
}

__attribute__((target("bmi2"))) void UnpackGroupsBmi2(const uint8_t* in, size_t groups, int bits,
                                                      uint8_t* idx) {
  const uint64_t mask = ByteFieldMask(bits);
  const uint64_t low = bits == 8 ? ~0ull : (1ull << (8 * bits)) - 1;
  for (size_t g = 0; g < groups; ++g, in += bits, idx += 8) {
    uint64_t w = 0;
    if ((groups - g) * size_t(bits) >= 8) {
      std::memcpy(&w, in, 8);  // 8 bytes of this and the following groups are readable
      w &= low;
    } else {
      for (int k = 0; k < bits; ++k) w |= uint64_t(in[k]) << (8 * k);
    }
    const uint64_t spread = _pdep_u64(w, mask);
    std::memcpy(idx, &spread, 8);
  }
}

void PackGroupsPortable(const uint8_t* idx, size_t groups, int bits, uint8_t* out) {
  for (size_t g = 0; g < groups; ++g, idx += 8, out += bits) {
    uint64_t w = 0;
    for (int k = 0; k < 8; ++k) w |= uint64_t(idx[k]) << (k * bits);
    std::memcpy(out, &w, size_t(bits));
  }
}

void UnpackGroupsPortable(const uint8_t* in, size_t groups, int bits, uint8_t* idx) {
  const uint64_t mask = (uint64_t(1) << bits) - 1;
  for (size_t g = 0; g < groups; ++g, in += bits, idx += 8) {
    uint64_t w = 0;
    std::memcpy(&w, in, size_t(bits));
    for (int k = 0; k < 8; ++k) idx[k] = uint8_t((w >> (k * bits)) & mask);
  }
}

bool HasBmi2() {
  static const bool has = __builtin_cpu_supports("bmi2");
  return has;
}

}  // namespace

void PackIndices(const uint8_t* idx, size_t n, int bits, uint8_t* out) {
  // Groups of 8 indices fill exactly `bits` bytes.
  const size_t groups = n / 8;
  if (HasBmi2()) {
    PackGroupsBmi2(idx, groups, bits, out);
  } else {
    PackGroupsPortable(idx, groups, bits, out);
  }
  idx += groups * 8;
  out += groups * size_t(bits);
  // The rest (n % 8 indices): a bit accumulator, flushing whole bytes.
  uint64_t acc = 0;
  int filled = 0;
  for (size_t i = groups * 8; i < n; ++i) {
    acc |= uint64_t(*idx++) << filled;
    filled += bits;
    while (filled >= 8) {
      *out++ = uint8_t(acc);
      acc >>= 8;
      filled -= 8;
    }
  }
  if (filled > 0) *out = uint8_t(acc);
}

void UnpackIndices(const uint8_t* in, size_t n, int bits, uint8_t* idx) {
  const size_t groups = n / 8;
  if (HasBmi2()) {
    UnpackGroupsBmi2(in, groups, bits, idx);
  } else {
    UnpackGroupsPortable(in, groups, bits, idx);
  }
  in += groups * size_t(bits);
  idx += groups * 8;
  const uint64_t mask = (uint64_t(1) << bits) - 1;
  uint64_t acc = 0;
  int filled = 0;
  for (size_t i = groups * 8; i < n; ++i) {
    while (filled < bits) {
      acc |= uint64_t(*in++) << filled;
      filled += 8;
    }
    *idx++ = uint8_t(acc & mask);
    acc >>= bits;
    filled -= bits;
  }
}

}  // namespace tqlm::codec
