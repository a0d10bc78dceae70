// TurboQuant weights: levels, rotation, scalar decoding and the encoder (see tq_weights.h).
#include "kernels/cpu/tq_weights.h"

#include <fmt/format.h>

#include <array>
#include <cmath>
#include <cstring>
#include <mutex>

#include "codec/rotation.h"
#include "tqlm/codec.h"
#include "tqlm/error.h"

namespace tqlm::kernels {
namespace {

const codec::Rotation& GroupRotation() {
  static const codec::Rotation r(kTqwGroup, kTqwRotationSeed);
  return r;
}

size_t BlockBytes(TensorType type) { return Traits(type).block_bytes; }

void CheckArgs(TensorType type, int64_t n, const char* what) {
  if (!IsTqWeight(type) || n < 0 || n % kTqwGroup != 0) {
    throw Error(fmt::format("{}: {} values of {} (need a TQW type, a multiple of {})", what, n,
                            TypeName(type), kTqwGroup));
  }
}

// Index of value j (< kTqwGroup) of a block, per the layouts in tensor_format.h.
int IndexAt(int bits, const uint8_t* b, int j) {
  const uint8_t* q = b + 2;
  switch (bits) {
    case 4: return j < 32 ? (q[j] & 0xF) : (q[j - 32] >> 4);
    case 2: return (q[j % 16] >> (2 * (j / 16))) & 3;
    default: {
      const int lo = (q[j % 16] >> (2 * (j / 16))) & 3;
      const int hi = (q[16 + j % 8] >> (j / 8)) & 1;
      return lo | (hi << 2);
    }
  }
}

void SetIndex(int bits, uint8_t* b, int j, int idx) {
  uint8_t* q = b + 2;
  switch (bits) {
    case 4:
      if (j < 32) q[j] = uint8_t((q[j] & 0xF0) | idx);
      else q[j - 32] = uint8_t((q[j - 32] & 0x0F) | (idx << 4));
      return;
    case 2: q[j % 16] |= uint8_t(idx << (2 * (j / 16))); return;
    default:
      q[j % 16] |= uint8_t((idx & 3) << (2 * (j / 16)));
      q[16 + j % 8] |= uint8_t(((idx >> 2) & 1) << (j / 8));
      return;
  }
}

// Nearest level to v / d for d > 0: levels ascending, so count the midpoints below.
struct Quantizer {
  int n = 0;
  float level[16];
  float mid[15];
  explicit Quantizer(int bits) : n(1 << bits) {
    const int8_t* l = TqwLevels(bits);
    for (int i = 0; i < n; ++i) level[i] = float(l[i]);
    for (int i = 0; i + 1 < n; ++i) mid[i] = 0.5f * (level[i] + level[i + 1]);
  }
  int Nearest(float v) const {
    int k = 0;
    for (int i = 0; i + 1 < n; ++i) k += v > mid[i];
    return k;
  }
  // Squared error of y against d * levels with nearest indices; fills idx; also returns the
  // least-squares scale for these indices through *ls.
  double Assign(const float* y, float d, int* idx, float* ls) const {
    const float inv = 1.0f / d;
    double err = 0, yl = 0, ll = 0;
    for (int j = 0; j < kTqwGroup; ++j) {
      idx[j] = Nearest(y[j] * inv);
      const double q = level[idx[j]];
      const double e = double(y[j]) - double(d) * q;
      err += e * e;
      yl += double(y[j]) * q;
      ll += q * q;
    }
    *ls = ll > 0 ? float(yl / ll) : d;
    return err;
  }
};

void EncodeGroup(int bits, const Quantizer& qz, const float* w, uint8_t* block) {
  float y[kTqwGroup];
  GroupRotation().Apply(w, y);
  float amax = 0;
  for (float v : y) amax = std::max(amax, std::fabs(v));
  std::memset(block, 0, BlockBytes(bits == 2   ? TensorType::kTQW2
                                    : bits == 3 ? TensorType::kTQW3
                                                : TensorType::kTQW4));
  int idx[kTqwGroup];
  if (!(amax > 0)) {  // all zero: scale 0, any indices decode to 0
    return;
  }
  // Lloyd–Max levels clip the tails, so the best scale maps the largest value somewhere below
  // or at the outer level: try a grid, refine each candidate by one least-squares step.
  const float top = qz.level[qz.n - 1];
  double best_err = INFINITY;
  float best_d = amax / top;
  for (int s = 0; s < 10; ++s) {
    const float d0 = amax / top * (0.60f + 0.05f * float(s));
    float ls;
    const double e0 = qz.Assign(y, d0, idx, &ls);
    if (e0 < best_err) best_err = e0, best_d = d0;
    if (ls > 0) {
      float ls2;
      const double e1 = qz.Assign(y, ls, idx, &ls2);
      if (e1 < best_err) best_err = e1, best_d = ls;
    }
  }
  const uint16_t dh = F32ToF16(best_d);
  const float d = F16ToF32(dh);
  std::memcpy(block, &dh, 2);
  if (!(d > 0)) return;  // underflowed to zero: the group decodes to 0
  float unused;
  qz.Assign(y, d, idx, &unused);
  for (int j = 0; j < kTqwGroup; ++j) SetIndex(bits, block, j, idx[j]);
}

}  // namespace

const int8_t* TqwLevels(int bits) {
  static std::once_flag once;
  static std::array<std::array<int8_t, 16>, 5> tables{};
  std::call_once(once, [] {
    for (int b = 2; b <= 4; ++b) {
      const auto& cb = codec::LloydMaxCodebook::Get(kTqwGroup, b, codec::CodebookKind::kSphere);
      const float cmax = cb.levels.back();
      for (size_t i = 0; i < cb.levels.size(); ++i) {
        tables[size_t(b)][i] = int8_t(std::lround(127.0f * cb.levels[i] / cmax));
      }
    }
  });
  if (bits < 2 || bits > 4) throw Error(fmt::format("tqw: no levels for {} bits", bits));
  return tables[size_t(bits)].data();
}

void TqwRotate(const float* x, int n_tokens, int64_t cols, float* out) {
  if (cols % kTqwGroup != 0) throw Error("tqw: activation length is not a multiple of 64");
  const codec::Rotation& r = GroupRotation();
  const size_t total = size_t(n_tokens) * size_t(cols);
  for (size_t i = 0; i < total; i += kTqwGroup) r.Apply(x + i, out + i);
}

void TqwRotateInverse(const float* x, int64_t n, float* out) {
  const codec::Rotation& r = GroupRotation();
  for (int64_t i = 0; i < n; i += kTqwGroup) r.ApplyInverse(x + i, out + i);
}

void TqwEncode(TensorType type, const float* w, int64_t n, void* out) {
  CheckArgs(type, n, "tqw encode");
  for (int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(w[i])) {
      throw Error(fmt::format("tqw encode: weight {} is not finite ({})", i, w[i]));
    }
  }
  const int bits = TqWeightBits(type);
  const Quantizer qz(bits);
  auto* dst = static_cast<uint8_t*>(out);
  const size_t bb = BlockBytes(type);
  for (int64_t g = 0; g < n / kTqwGroup; ++g) {
    EncodeGroup(bits, qz, w + g * kTqwGroup, dst + size_t(g) * bb);
  }
}

void TqwDecodeRotatedScalar(TensorType type, const void* src, int64_t n, float* out) {
  CheckArgs(type, n, "tqw decode");
  const int bits = TqWeightBits(type);
  const int8_t* levels = TqwLevels(bits);
  const auto* p = static_cast<const uint8_t*>(src);
  const size_t bb = BlockBytes(type);
  for (int64_t g = 0; g < n / kTqwGroup; ++g) {
    const uint8_t* b = p + size_t(g) * bb;
    uint16_t dh;
    std::memcpy(&dh, b, 2);
    const float d = F16ToF32(dh);
    for (int j = 0; j < kTqwGroup; ++j) out[g * kTqwGroup + j] = d * float(levels[IndexAt(bits, b, j)]);
  }
}

void TqwDequantize(TensorType type, const void* src, int64_t n, float* out) {
  TqwDecodeRotated(type, src, n, out);
  TqwRotateInverse(out, n, out);
}

}  // namespace tqlm::kernels
