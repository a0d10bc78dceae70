// KvType names: llama.cpp's (f32, f16, q8_0, q4_0) and ours (tqB, tqBp).
#include <fmt/format.h>

#include <cmath>
#include <string>

#include "kv/kv_cache.h"
#include "tqlm/error.h"

namespace tqlm::kv {
namespace {

constexpr double kTurboBits[] = {2, 2.5, 3, 3.5, 4, 8};

bool ParseTurboBits(const std::string& s, double* bits) {
  for (double b : kTurboBits) {
    if (s == fmt::format("{}", b)) {
      *bits = b;
      return true;
    }
  }
  return false;
}

}  // namespace

KvType KvType::Parse(const std::string& name) {
  KvType t;
  if (name == "f32") {
    t.kind = Kind::kF32;
    t.bits = 32;
  } else if (name == "f16") {
    t.kind = Kind::kF16;
    t.bits = 16;
  } else if (name == "q8_0") {
    t.kind = Kind::kQ8_0;
    t.bits = 8.5;
  } else if (name == "q4_0") {
    t.kind = Kind::kQ4_0;
    t.bits = 4.5;
  } else if (name.size() > 2 && name.compare(0, 2, "tq") == 0) {
    std::string rest = name.substr(2);
    t.kind = Kind::kTurbo;
    if (!rest.empty() && rest.back() == 'p') {
      t.prod = true;
      rest.pop_back();
    }
    if (!ParseTurboBits(rest, &t.bits))
      throw Error(fmt::format("unknown KV cache type '{}': TurboQuant types are tqB or tqBp with "
                              "B one of 2, 2.5, 3, 3.5, 4, 8",
                              name));
    if (t.prod && t.bits < 2)
      throw Error(fmt::format("KV cache type '{}': tqBp needs B >= 2", name));
  } else {
    throw Error(fmt::format("unknown KV cache type '{}' (known: f32, f16, q8_0, q4_0, tq2, tq2.5, "
                            "tq3, tq3.5, tq4, tq8, and tqBp for TurboQuant-prod)",
                            name));
  }
  return t;
}

std::string KvType::Name() const {
  switch (kind) {
    case Kind::kF32: return "f32";
    case Kind::kF16: return "f16";
    case Kind::kQ8_0: return "q8_0";
    case Kind::kQ4_0: return "q4_0";
    case Kind::kTurbo: return fmt::format("tq{}{}", bits, prod ? "p" : "");
  }
  return "?";
}

}  // namespace tqlm::kv
