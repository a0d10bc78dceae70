// Host side of the GPU codec tables: fp16 scale of the codebooks, pair tables, device copies.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstring>
#include <string>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/tq_attention.h"
#include "tqlm/error.h"

namespace tqlm::cuda {
namespace {

float RoundF16(float x) { return __half2float(__float2half_rn(x)); }

uint32_t PackHalf2(float lo, float hi) {
  const __half a = __float2half_rn(lo), b = __float2half_rn(hi);
  uint16_t ua, ub;
  std::memcpy(&ua, &a, 2);
  std::memcpy(&ub, &b, 2);
  return uint32_t(ua) | (uint32_t(ub) << 16);
}

template <class T>
T* Upload(const std::vector<T>& host) {
  if (host.empty()) return nullptr;
  T* dev = nullptr;
  TQLM_CUDA_CHECK(cudaMalloc(&dev, host.size() * sizeof(T)));
  TQLM_CUDA_CHECK(cudaMemcpy(dev, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice));
  return dev;
}

bool IsIdentity(const std::vector<float>& m, int d) {
  for (int i = 0; i < d; ++i)
    for (int j = 0; j < d; ++j)
      if (m[size_t(i) * d + j] != (i == j ? 1.0f : 0.0f)) return false;
  return true;
}

std::vector<float> Transpose(const std::vector<float>& m, int d) {
  std::vector<float> t(m.size());
  for (int i = 0; i < d; ++i)
    for (int j = 0; j < d; ++j) t[size_t(j) * d + i] = m[size_t(i) * d + j];
  return t;
}

void CheckSide(const SideTables& s, const char* name) {
  if (s.bits == kF16Bits) return;
  if (s.bits < 1 || s.bits > 4) {
    throw Error(std::string("cuda: ") + name + " side: the GPU kernels support 1..4-bit codebooks"
                " and fp16, got " + std::to_string(s.bits) + " bits");
  }
  if (s.levels.size() != (size_t(1) << s.bits) || s.thresholds.size() != s.levels.size() - 1) {
    throw Error(std::string("cuda: ") + name + " side: codebook size does not match its bits");
  }
}

}  // namespace

float ChooseAlpha(const std::vector<float>& levels) {
  // 2^17 candidates in [1, 2): with <= 8 distinct magnitudes the best one cuts the worst
  // rounding error about 4x (4-bit) to 20x (3-bit) below fp16's 2^-11.
  float best_alpha = 1;
  double best_err = 1e30;
  for (int k = 0; k < (1 << 17); ++k) {
    const float a = 1.0f + float(k) / float(1 << 17);
    double worst = 0;
    for (float l : levels) {
      if (l == 0) continue;
      const double x = double(a) * double(l);
      worst = std::max(worst, std::fabs(double(RoundF16(float(x))) - x) / std::fabs(x));
      if (worst >= best_err) break;
    }
    if (worst < best_err) {
      best_err = worst;
      best_alpha = a;
    }
  }
  return best_alpha;
}

double LevelRoundingError(const SideTables& side) {
  double worst = 0;
  for (float l : side.levels) {
    if (l == 0) continue;
    const double r = double(RoundF16(side.alpha * l)) / double(side.alpha);
    worst = std::max(worst, std::fabs(r - double(l)) / std::fabs(double(l)));
  }
  return worst;
}

std::vector<uint32_t> PairTable(const SideTables& side) {
  if (side.bits == kF16Bits) return {};
  const int n = 1 << side.bits;
  std::vector<uint32_t> t(size_t(n) * n);
  for (int c = 0; c < n * n; ++c)
    t[c] = PackHalf2(side.alpha * side.levels[c % n], side.alpha * side.levels[c / n]);
  return t;
}

void FinishTables(CodecTables* t) {
  if (t->dim != 64 && t->dim != 128 && t->dim != 256) {
    throw Error("cuda: head dim must be 64, 128 or 256, got " + std::to_string(t->dim));
  }
  CheckSide(t->k, "K");
  CheckSide(t->v, "V");
  const size_t dd = size_t(t->dim) * t->dim;
  if (t->rot_k.size() != dd || t->rot_v.size() != dd) throw Error("cuda: rotation is not dim x dim");
  t->k.alpha = t->k.bits == kF16Bits ? 1.0f : ChooseAlpha(t->k.levels);
  t->v.alpha = t->v.bits == kF16Bits ? 1.0f : ChooseAlpha(t->v.levels);
}

DeviceTables::DeviceTables(const CodecTables& t)
    : dim(t.dim), k_bits(t.k.bits), v_bits(t.v.bits), k_alpha(t.k.alpha), v_alpha(t.v.alpha) {
  k_identity = IsIdentity(t.rot_k, t.dim);
  v_identity = IsIdentity(t.rot_v, t.dim);
  rot_k_t = Upload(Transpose(t.rot_k, t.dim));
  rot_v_t = Upload(Transpose(t.rot_v, t.dim));
  rot_v = Upload(t.rot_v);
  thr_k = Upload(t.k.thresholds);
  thr_v = Upload(t.v.thresholds);
  lut_k = Upload(PairTable(t.k));
  lut_v = Upload(PairTable(t.v));
}

DeviceTables::~DeviceTables() {
  for (void* p : {static_cast<void*>(rot_k_t), static_cast<void*>(rot_v_t),
                  static_cast<void*>(rot_v), static_cast<void*>(thr_k), static_cast<void*>(thr_v),
                  static_cast<void*>(lut_k), static_cast<void*>(lut_v)}) {
    if (p) cudaFree(p);
  }
}

}  // namespace tqlm::cuda
