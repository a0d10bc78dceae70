#include "ref_codec.h"

#include <cuda_fp16.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <random>
#include <utility>

namespace tqlm::cuda::ref {
namespace {

double Phi(double x) { return 0.5 * std::erfc(-x / std::sqrt(2.0)); }
double phi(double x) { return std::exp(-0.5 * x * x) / std::sqrt(2 * M_PI); }

SideTables GaussianLloydMax(int dim, int bits) {
  SideTables s;
  s.bits = bits;
  if (bits == kF16Bits) return s;
  const int n = 1 << bits;
  std::vector<double> l(n);
  for (int i = 0; i < n; ++i) l[i] = -2.5 + 5.0 * (i + 0.5) / n;
  std::vector<double> t(n - 1);
  for (int it = 0; it < 2000; ++it) {
    for (int i = 0; i + 1 < n; ++i) t[i] = 0.5 * (l[i] + l[i + 1]);
    for (int i = 0; i < n; ++i) {
      const double a = i == 0 ? -INFINITY : t[i - 1], b = i == n - 1 ? INFINITY : t[i];
      const double pa = std::isinf(a) ? 0 : phi(a), pb = std::isinf(b) ? 0 : phi(b);
      const double mass = (std::isinf(b) ? 1 : Phi(b)) - (std::isinf(a) ? 0 : Phi(a));
      l[i] = (pa - pb) / mass;
    }
  }
  const double sigma = 1.0 / std::sqrt(double(dim));
  for (int i = 0; i < n; ++i) s.levels.push_back(float(l[i] * sigma));
  for (int i = 0; i + 1 < n; ++i) s.thresholds.push_back(0.5f * (s.levels[i] + s.levels[i + 1]));
  return s;
}

// H D / sqrt(d): Walsh–Hadamard times random signs (d a power of two).
std::vector<float> RandomRotation(int d, uint64_t seed, bool identity) {
  std::vector<float> r(size_t(d) * d, 0.0f);
  if (identity) {
    for (int i = 0; i < d; ++i) r[size_t(i) * d + i] = 1;
    return r;
  }
  std::mt19937_64 rng(seed);
  std::vector<int> sign(d);
  for (int& s : sign) s = (rng() & 1) ? 1 : -1;
  const float scale = 1.0f / std::sqrt(float(d));
  for (int i = 0; i < d; ++i)
    for (int j = 0; j < d; ++j)
      r[size_t(i) * d + j] = (__builtin_popcount(unsigned(i & j)) & 1 ? -scale : scale) * sign[j];
  return r;
}

std::vector<double> Rotate(const std::vector<float>& r, int d, const float* x) {
  std::vector<double> y(d, 0.0);
  for (int i = 0; i < d; ++i)
    for (int j = 0; j < d; ++j) y[i] += double(r[size_t(i) * d + j]) * x[j];
  return y;
}

void InverseRotate(const std::vector<float>& r, int d, const std::vector<double>& y, double* x) {
  for (int j = 0; j < d; ++j) x[j] = 0;
  for (int i = 0; i < d; ++i)
    for (int j = 0; j < d; ++j) x[j] += double(r[size_t(i) * d + j]) * y[i];
}

// The codec's tables, exported by export_codec_tables.cc: key (dim, 0) = rotation, (dim, bits) =
// levels then thresholds.
using ExportedTables = std::map<std::pair<int, int>, std::vector<float>>;

const ExportedTables* LoadExported() {
  static ExportedTables tables;
  static bool tried = false, ok = false;
  if (tried) return ok ? &tables : nullptr;
  tried = true;
  const char* path = std::getenv("TQLM_CODEC_TABLES");
#ifdef TQLM_CUDA_CODEC_TABLES
  if (!path) path = TQLM_CUDA_CODEC_TABLES;
#endif
  if (!path) return nullptr;
  std::FILE* f = std::fopen(path, "rb");
  if (!f) return nullptr;
  char magic[6];
  if (std::fread(magic, 1, 6, f) != 6 || std::memcmp(magic, "TQCT1\n", 6) != 0) {
    std::fclose(f);
    return nullptr;
  }
  int32_t head[3];
  while (std::fread(head, 4, 3, f) == 3) {
    std::vector<float> v(static_cast<size_t>(head[2]));
    if (std::fread(v.data(), 4, v.size(), f) != v.size()) break;
    tables[{head[0], head[1]}] = std::move(v);
  }
  std::fclose(f);
  ok = !tables.empty();
  return ok ? &tables : nullptr;
}

SideTables ExportedSide(const ExportedTables& t, int dim, int bits) {
  SideTables s;
  s.bits = bits;
  if (bits == kF16Bits) return s;
  const std::vector<float>& v = t.at({dim, bits});
  const size_t n = size_t(1) << bits;
  s.levels.assign(v.begin(), v.begin() + n);
  s.thresholds.assign(v.begin() + n, v.end());
  return s;
}

}  // namespace

float RoundF16(float x) { return __half2float(__float2half_rn(x)); }

CodecTables MakeTables(int dim, int k_bits, int v_bits, bool identity_rotation) {
  const ExportedTables* ex = LoadExported();
  if (ex && !identity_rotation && ex->count({dim, 0})) {
    CodecTables t;
    t.dim = dim;
    t.rot_k = t.rot_v = ex->at({dim, 0});
    t.k = ExportedSide(*ex, dim, k_bits);
    t.v = ExportedSide(*ex, dim, v_bits);
    FinishTables(&t);
    return t;
  }
  CodecTables t;
  t.dim = dim;
  t.rot_k = RandomRotation(dim, 0x7451'4d5f'726f'7431ull, identity_rotation);
  t.rot_v = t.rot_k;
  t.k = GaussianLloydMax(dim, k_bits);
  t.v = GaussianLloydMax(dim, v_bits);
  FinishTables(&t);
  return t;
}

const char* TablesSource() {
  return LoadExported() ? "tqlm::codec::TurboQuantCodec (rotation and sphere Lloyd-Max codebooks "
                          "exported to codec_tables.bin)"
                        : "host stand-in (randomized Walsh-Hadamard, Gaussian Lloyd-Max)";
}

void DecodeCompressed(const CodecTables& t, bool is_k, const float* x, double* out,
                      std::vector<int>* idx, float* norm_out) {
  const int d = t.dim;
  const SideTables& s = is_k ? t.k : t.v;
  const std::vector<float>& r = is_k ? t.rot_k : t.rot_v;
  std::vector<double> y = Rotate(r, d, x);
  double n2 = 0;
  for (int i = 0; i < d; ++i) n2 += double(x[i]) * x[i];
  const float norm = float(std::sqrt(n2));
  const float nh = RoundF16(norm);
  idx->assign(d, 0);
  for (int i = 0; i < d; ++i) {
    const float u = norm > 0 ? float(y[i] / norm) : 0.0f;
    int k = 0;
    for (float th : s.thresholds) k += th < u ? 1 : 0;
    (*idx)[i] = k;
    y[i] = double(nh) * s.levels[k];
  }
  *norm_out = nh;
  InverseRotate(r, d, y, out);
}

void DecodeF16(const CodecTables& t, bool is_k, const float* x, double* out) {
  const std::vector<float>& r = is_k ? t.rot_k : t.rot_v;
  std::vector<double> y = Rotate(r, t.dim, x);
  for (double& v : y) v = RoundF16(float(v));
  InverseRotate(r, t.dim, y, out);
}

}  // namespace tqlm::cuda::ref
