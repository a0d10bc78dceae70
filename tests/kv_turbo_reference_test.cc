// TurboQuant KV blocks (src/kv/block_format_turbo.cc) against an independent float64 reference
// written in this file from the definitions (docs/CODEC.md, kernels/cpu/attention_tq.h), not
// from the format's Encode/Decode:
//
//   rotation    y = R x from the rotation's plan (H/√B blocks, ±1 signs, permutation), in
//               double (tests/codec_reference.h);
//   centering   keys: c = fp16(mean of the block's rotated keys), each key encoded as y - c,
//               kept when that loses less of what differs between the keys (the variance of the
//               reconstruction error over tokens) than encoding around 0;
//   norms       ν = ‖y - c‖ as fp16, saturated at 65504; 0 (and codes 0) for a non-finite or
//               zero vector, and no centering for a block with a non-finite value;
//   codes       the nearest Lloyd–Max level of each coordinate of (y - c)/ν, by linear scan;
//   layout      bit planes of 64 codes per unit, K and V unit orders, norms, center: the
//               layout comment of attention_tq.h read literally;
//   attention   scores = (q scale)(codebook scale) ν Σ q8 · level8 + q·c and weighted sums
//               with uint8 weights, the kernels' documented integer arithmetic.
//
// Tolerances: codes, norms, centers and the centering choice must equal the reference's except
// where the rotated coordinate lies within the float rotation's error bound of a decision
// threshold (counted, and required to be rare), so one wrong bit in the encoder fails. The
// accuracy against exact attention is checked against a prediction from the codebooks'
// distortion D (per coordinate): for a direction uniform on the sphere and a fixed query,
// E[(q·k̂ - q·k)²] = ν² Σ_j (Rq)_j² D_j exactly (cross terms vanish by the quantizer's sign
// symmetry), plus the kernels' int8 rounding terms; the mean of the normalized squared errors
// must be 1 within 5 standard errors of its own sample.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "codec/rotation.h"
#include "codec_reference.h"
#include "kv/block_format.h"
#include "kv/kv_cache.h"
#include "tqlm/codec.h"

namespace tqlm::kv {
namespace {

namespace ref = codec::reference;
constexpr int kTok = 64;
constexpr double kU = 1.0 / (1 << 24);

// ---------------------------------------------------------------- binary16 by definition

double HalfValue(uint16_t h) {
  const int e = (h >> 10) & 31, m = h & 1023;
  const double s = h & 0x8000 ? -1.0 : 1.0;
  if (e == 0) return s * std::ldexp(m, -24);
  if (e == 31) return m ? std::numeric_limits<double>::quiet_NaN() : s * HUGE_VAL;
  return s * std::ldexp(1024 + m, e - 25);
}

// Nearest binary16, ties to even; |v| >= 65520 rounds to infinity.
uint16_t HalfBits(double v) {
  const uint16_t sign = std::signbit(v) ? 0x8000 : 0;
  const double a = std::fabs(v);
  if (std::isnan(v)) return 0x7e00;
  if (a >= 65520) return sign | 0x7c00;
  if (a < std::ldexp(1, -14)) return uint16_t(sign | uint16_t(std::nearbyint(std::ldexp(a, 24))));
  int e;
  std::frexp(a, &e);  // a = f 2^e, f in [0.5, 1): exponent e - 1, 11 significant bits
  double mant = std::nearbyint(std::ldexp(a, 11 - e));  // in [1024, 2048]
  if (mant == 2048) {
    mant = 1024;
    ++e;
  }
  return uint16_t(sign | uint16_t((e - 1 + 15) << 10) | uint16_t(int(mant) - 1024));
}

// ---------------------------------------------------------------- geometry and layout

struct Geometry {
  int dim = 0, n_hi = 0, hi_bits = 0, lo_bits = 0;
  int bits(int j) const { return j < n_hi ? hi_bits : lo_bits; }
  size_t codes_bytes() const { return size_t(8) * (size_t(n_hi) * hi_bits + size_t(dim - n_hi) * lo_bits); }
  size_t norms_offset() const { return codes_bytes(); }
  size_t center_offset() const { return codes_bytes() + 2 * kTok; }
};

// b bits per coordinate, b + 1 on the n_hi coordinates nearest dim/2 in multiples of 16 for a
// fractional b (ties up).
Geometry GeometryOf(double type_bits, int dim) {
  Geometry g;
  g.dim = dim;
  g.lo_bits = int(std::floor(type_bits));
  const bool split = type_bits != g.lo_bits;
  g.hi_bits = split ? g.lo_bits + 1 : g.lo_bits;
  g.n_hi = split ? std::clamp(16 * int(std::floor(dim / 32.0 + 0.5)), 16, dim) : dim;
  return g;
}

// Unit of 64 codes of b bits (attention_tq.h): b = 8 bytes; b = 4 low/high nibbles of bytes
// 0..31 for codes 0..31/32..63; b = 2 four 2-bit fields of bytes 0..15 for codes i, i+16,
// i+32, i+48; b = 3 that plane for the low bits, then 8 bytes of bit 2; b = 1 one bit each.
int UnitCode(const uint8_t* u, int bits, int p) {
  switch (bits) {
    case 8: return u[p];
    case 4: return p < 32 ? u[p] & 15 : u[p - 32] >> 4;
    case 1: return (u[p / 8] >> (p % 8)) & 1;
    default: {
      int c = (u[p % 16] >> (2 * (p / 16))) & 3;
      if (bits == 3) c |= ((u[16 + p / 8] >> (p % 8)) & 1) << 2;
      return c;
    }
  }
}
void PutUnitCode(uint8_t* u, int bits, int p, int c) {
  switch (bits) {
    case 8: u[p] = uint8_t(c); break;
    case 4: u[p % 32] = uint8_t(u[p % 32] | (c << (p < 32 ? 0 : 4))); break;
    case 1: u[p / 8] = uint8_t(u[p / 8] | (c << (p % 8))); break;
    default:
      u[p % 16] = uint8_t(u[p % 16] | ((c & 3) << (2 * (p / 16))));
      if (bits == 3) u[16 + p / 8] = uint8_t(u[16 + p / 8] | (((c >> 2) & 1) << (p % 8)));
  }
}

// Byte offset of the unit holding code (t, j), and its position p in it.
struct Where {
  size_t offset;
  int p;
};
Where Locate(const Geometry& g, TensorRole role, int t, int j) {
  auto unit = [&](int bits) { return size_t(8 * bits); };
  if (role == TensorRole::kKey) {
    // for s (16-token group), for g (4-coordinate group): p = 4 (t % 16) + j % 4
    size_t row = 0, before = 0;
    for (int x = 0; x < g.dim / 4; ++x) {
      if (x == j / 4) before = row;
      row += unit(g.bits(4 * x));
    }
    return {size_t(t / 16) * row + before, 4 * (t % 16) + j % 4};
  }
  // for c (16-coordinate chunk), for s (4-token group): p = 4 (j % 16) + t % 4
  size_t before = 0;
  for (int x = 0; x < j / 16; ++x) before += 16 * unit(g.bits(16 * x));
  return {before + size_t(t / 4) * unit(g.bits(j)), 4 * (j % 16) + t % 4};
}

// What a block holds, read with the reference layout.
struct Contents {
  std::vector<int> codes;        // [kTok][dim]
  std::vector<uint16_t> norms;   // [kTok]
  std::vector<uint16_t> center;  // [dim] (keys with centering), else empty
};

Contents Read(const Geometry& g, TensorRole role, bool has_center, const uint8_t* block) {
  Contents c;
  c.codes.resize(size_t(kTok) * g.dim);
  for (int t = 0; t < kTok; ++t)
    for (int j = 0; j < g.dim; ++j) {
      const Where w = Locate(g, role, t, j);
      c.codes[size_t(t) * g.dim + j] = UnitCode(block + w.offset, g.bits(j), w.p);
    }
  c.norms.resize(kTok);
  std::memcpy(c.norms.data(), block + g.norms_offset(), 2 * kTok);
  if (has_center) {
    c.center.resize(g.dim);
    std::memcpy(c.center.data(), block + g.center_offset(), 2 * size_t(g.dim));
  }
  return c;
}

std::vector<uint8_t> Write(const Geometry& g, TensorRole role, const Contents& c, size_t bytes) {
  std::vector<uint8_t> block(bytes, 0);
  for (int t = 0; t < kTok; ++t)
    for (int j = 0; j < g.dim; ++j) {
      const Where w = Locate(g, role, t, j);
      PutUnitCode(block.data() + w.offset, g.bits(j), w.p, c.codes[size_t(t) * g.dim + j]);
    }
  std::memcpy(block.data() + g.norms_offset(), c.norms.data(), 2 * kTok);
  if (!c.center.empty()) std::memcpy(block.data() + g.center_offset(), c.center.data(), 2 * size_t(g.dim));
  return block;
}

// ---------------------------------------------------------------- reference encoding

struct Codebooks {
  const codec::LloydMaxCodebook* hi;
  const codec::LloydMaxCodebook* lo;
  const codec::LloydMaxCodebook& of(const Geometry& g, int j) const { return j < g.n_hi ? *hi : *lo; }
};

Codebooks CodebooksOf(const Geometry& g) {
  const auto kind = codec::CodecConfig{}.codebook;
  return {&codec::LloydMaxCodebook::Get(g.dim, g.hi_bits, kind),
          &codec::LloydMaxCodebook::Get(g.dim, g.lo_bits, kind)};
}

// The reference encoding of one block around a center, with, per code, whether the format may
// pick the neighbouring level (coordinate within the float rotation's error of the midpoint).
struct Encoding {
  Contents c;
  std::vector<double> nu;             // exact norm of each token's (y - c)
  std::vector<uint8_t> ambiguous;     // [kTok][dim]
  std::vector<int> alternative;       // [kTok][dim]: the other acceptable code
  double varying = 0;                 // Σ_t Σ_j (e_tj - mean_t e_j)², e = level·ν16 - (y - c)
};

// rot: [kTok][dim] rotated rows (double); l1: Σ|x| of each input row (for the error bound).
Encoding EncodeAround(const Geometry& g, const Codebooks& cb, const std::vector<double>& rot,
                      const std::vector<double>& l1, const std::vector<double>& center) {
  const int d = g.dim;
  Encoding e;
  e.c.codes.assign(size_t(kTok) * d, 0);
  e.c.norms.assign(kTok, 0);
  e.nu.assign(kTok, 0.0);
  e.ambiguous.assign(size_t(kTok) * d, 0);
  e.alternative.assign(size_t(kTok) * d, 0);
  // Float error of a rotated coordinate: 2 log2(d) + 4 rounding stages over terms |x_j|/√B.
  const double stages = 2 * std::log2(double(d)) + 4;
  std::vector<double> err(size_t(kTok) * d), mean(d, 0.0);
  double c_l1 = 0;
  for (double v : center) c_l1 += std::fabs(v);
  for (int t = 0; t < kTok; ++t) {
    std::vector<double> r(d);
    double sq = 0;
    for (int j = 0; j < d; ++j) {
      r[j] = rot[size_t(t) * d + j] - center[j];
      sq += r[j] * r[j];
    }
    const double nu = std::sqrt(sq);
    const bool ok = nu > 0 && std::isfinite(nu) && float(nu) > 0 && std::isfinite(float(nu));
    e.nu[t] = ok ? nu : 0.0;
    e.c.norms[t] = ok ? HalfBits(std::min(nu, 65504.0)) : 0;
    const double stored = HalfValue(e.c.norms[t]);
    for (int j = 0; j < d; ++j) {
      const codec::LloydMaxCodebook& book = cb.of(g, j);
      int code = 0;
      if (ok) {
        const double u = r[j] / nu;
        for (int k = 1; k < int(book.levels.size()); ++k)
          if (std::fabs(u - book.levels[k]) < std::fabs(u - book.levels[code])) code = k;
        // The neighbour on u's side of the nearest level, and the midpoint between them.
        const int other = u > book.levels[code] ? code + 1 : code - 1;
        if (other >= 0 && other < int(book.levels.size())) {
          const double mid = 0.5 * (double(book.levels[code]) + book.levels[other]);
          const double tol = (stages * kU * (l1[t] + c_l1) / std::sqrt(double(d)) +
                              kU * (std::fabs(rot[size_t(t) * d + j]) + std::fabs(center[j]))) / nu +
                             std::fabs(u) * (d + 12) * kU;
          if (std::fabs(u - mid) <= tol) {
            e.ambiguous[size_t(t) * d + j] = 1;
            e.alternative[size_t(t) * d + j] = other;
          }
        }
      }
      e.c.codes[size_t(t) * d + j] = code;
      const double x = double(book.levels[code]) * stored - r[j];
      err[size_t(t) * d + j] = x;
      mean[j] += x / kTok;
    }
  }
  for (int t = 0; t < kTok; ++t)
    for (int j = 0; j < d; ++j) {
      const double x = err[size_t(t) * d + j] - mean[j];
      e.varying += x * x;
    }
  if (!std::isfinite(e.varying)) e.varying = HUGE_VAL;
  return e;
}

struct BlockCase {
  Geometry g;
  TensorRole role;
  bool centering;  // the format may center (keys, TQLM_KV_NO_CENTER unset)
  std::unique_ptr<BlockFormat> format;
  Codebooks cb;
  codec::Rotation rotation;
};

BlockCase MakeCase(const char* type, int dim, TensorRole role) {
  const KvType t = KvType::Parse(type);
  const Geometry g = GeometryOf(t.bits, dim);
  return {g, role, role == TensorRole::kKey && KeyCenteringEnabled(), MakeBlockFormat(t, dim, role),
          CodebooksOf(g), codec::Rotation(dim, codec::CodecConfig{}.seed)};
}

// What the reference expects of one encoded block, and how the format's block compares.
struct Checked {
  Encoding want;          // the reference's encoding (its own centering choice)
  Contents got;           // the format's block, read with the reference layout
  bool centered = false;  // the format's choice
  int ambiguous_codes = 0;
};

// Encodes rows with the format and checks every code, norm, center byte and the centering
// choice against the reference.
Checked EncodeAndCheck(const BlockCase& bc, const std::vector<float>& rows, std::vector<uint8_t>* block) {
  const Geometry& g = bc.g;
  const int d = g.dim;
  block->assign(bc.format->block_bytes(), 0xA5);  // garbage in: every byte must be written
  bc.format->Encode(rows.data(), size_t(d), 0, kTok, block->data());
  Checked out;
  out.got = Read(g, bc.role, bc.centering, block->data());

  std::vector<double> rot(size_t(kTok) * d), l1(kTok, 0.0), sum(d, 0.0);
  bool finite = true;
  for (int t = 0; t < kTok; ++t) {
    const std::vector<double> y = ref::Rotate(bc.rotation, rows.data() + size_t(t) * d);
    for (int j = 0; j < d; ++j) {
      rot[size_t(t) * d + j] = y[j];
      finite = finite && std::isfinite(rows[size_t(t) * d + j]);
      l1[t] += std::fabs(rows[size_t(t) * d + j]);
      sum[j] += y[j];
    }
  }
  const std::vector<double> zero(d, 0.0);
  const Encoding plain = EncodeAround(g, bc.cb, rot, l1, zero);
  bool want_centered = false, tie = false;
  Encoding centered;
  std::vector<uint16_t> want_center;
  if (bc.centering && finite) {
    want_center.resize(d);
    for (int j = 0; j < d; ++j) {
      const double m = sum[j] / kTok;
      want_center[j] = HalfBits(std::clamp(m, -65504.0, 65504.0));  // saturated, like the norms
    }
    // Codes are compared given the center the format stored (itself compared just below).
    std::vector<double> cv(d);
    const bool format_centered =
        std::any_of(out.got.center.begin(), out.got.center.end(), [](uint16_t h) { return h != 0; });
    for (int j = 0; j < d; ++j) cv[j] = HalfValue(format_centered ? out.got.center[j] : want_center[j]);
    centered = EncodeAround(g, bc.cb, rot, l1, cv);
    want_centered = centered.varying < plain.varying;
    // The two errors are computed from float rotations there and double ones here: within
    // 2^-12 of each other, either choice is right.
    tie = std::fabs(centered.varying - plain.varying) <= 0x1p-12 * (centered.varying + plain.varying);
  }
  out.centered = !out.got.center.empty() &&
                 std::any_of(out.got.center.begin(), out.got.center.end(), [](uint16_t h) { return h != 0; });
  if (!tie) {
    EXPECT_EQ(out.centered, want_centered) << "centering choice: varying error plain " << plain.varying
                                           << ", centered " << centered.varying;
  }
  out.want = out.centered ? centered : plain;
  if (out.centered) {
    for (int j = 0; j < d; ++j) {
      // fp16 of the mean, rounded once here and twice (double -> float -> half) there.
      const int diff = std::abs(int(out.got.center[j]) - int(want_center[j]));
      EXPECT_TRUE(diff == 0 || (diff == 1 && std::fabs(HalfValue(want_center[j]) - sum[j] / kTok) >
                                                 0.49 * std::fabs(HalfValue(want_center[j]) -
                                                                  HalfValue(out.got.center[j]))))
          << "center " << j << ": " << out.got.center[j] << " vs " << want_center[j];
    }
    out.want.c.center = out.got.center;
  } else if (bc.centering) {
    out.want.c.center.assign(d, 0);
    for (int j = 0; j < d; ++j) EXPECT_EQ(out.got.center[j], 0) << "plain block with a center " << j;
  }
  for (int t = 0; t < kTok; ++t) {
    // The norm: float sqrt of a float-rotated sum there, so one fp16 step at a rounding tie.
    const int dn = std::abs(int(out.got.norms[t]) - int(out.want.c.norms[t]));
    EXPECT_LE(dn, 1) << "norm of token " << t << ": " << HalfValue(out.got.norms[t]) << " vs "
                     << HalfValue(out.want.c.norms[t]);
    if (dn == 1) out.want.c.norms[t] = out.got.norms[t];
    for (int j = 0; j < d; ++j) {
      const size_t at = size_t(t) * d + j;
      const int got = out.got.codes[at], want = out.want.c.codes[at];
      if (got == want) continue;
      if (out.want.ambiguous[at] && got == out.want.alternative[at]) {
        ++out.ambiguous_codes;
        out.want.c.codes[at] = got;
        continue;
      }
      ADD_FAILURE() << "code of token " << t << " coordinate " << j << ": " << got << ", want "
                    << want << " (ν " << out.want.nu[t] << ")";
      return out;
    }
  }
  // No stray bits: the block is exactly what the reference layout writes from its contents.
  EXPECT_EQ(Write(g, bc.role, out.got, block->size()), *block) << "bytes outside the layout";
  // Near-threshold coordinates are rare (the bound is ~1e-6 wide).
  EXPECT_LE(out.ambiguous_codes, kTok * d / 1000 + 1);
  return out;
}

// x̂_t = Rᵀ (level · ν16 + c), in double.
std::vector<double> ReferenceDecode(const BlockCase& bc, const Contents& c) {
  const int d = bc.g.dim;
  std::vector<double> out(size_t(kTok) * d);
  for (int t = 0; t < kTok; ++t) {
    std::vector<double> y(d);
    const double nu = HalfValue(c.norms[t]);
    for (int j = 0; j < d; ++j)
      y[j] = double(bc.cb.of(bc.g, j).levels[c.codes[size_t(t) * d + j]]) * nu +
             (c.center.empty() ? 0.0 : HalfValue(c.center[j]));
    const std::vector<double> x = ref::InverseRotate(bc.rotation, y);
    std::copy(x.begin(), x.end(), out.begin() + size_t(t) * d);
  }
  return out;
}

// Codebook levels as the kernels' int8 values: level / cb_scale rounded, cb_scale = the
// largest |level| of both codebooks / 127.
struct Int8Book {
  float scale = 0;
  std::vector<int> hi, lo;
  int of(const Geometry& g, int j, int code) const { return j < g.n_hi ? hi[code] : lo[code]; }
};
Int8Book Int8BookOf(const Codebooks& cb) {
  Int8Book b;
  float amax = 0;
  for (float v : cb.hi->levels) amax = std::max(amax, std::fabs(v));
  for (float v : cb.lo->levels) amax = std::max(amax, std::fabs(v));
  b.scale = amax / 127.0f;
  for (float v : cb.hi->levels) b.hi.push_back(int(std::lrint(v / b.scale)));
  for (float v : cb.lo->levels) b.lo.push_back(int(std::lrint(v / b.scale)));
  return b;
}

std::vector<float> Gaussian(std::mt19937& rng, size_t n, float sigma) {
  std::normal_distribution<float> nd(0.0f, sigma);
  std::vector<float> v(n);
  for (float& x : v) x = nd(rng);
  return v;
}

// ---------------------------------------------------------------- the tests

struct TypeDim {
  const char* type;
  int dim;
};

class TurboReference : public ::testing::TestWithParam<TypeDim> {};

// Encode and Decode of K and V blocks: every code, norm and center against the reference,
// the decoded rows against the reference decode of the same bytes, and the distortion of the
// round trip against the codebooks' (mean ‖u - û‖² = Σ_j D_j within 5 standard errors).
TEST_P(TurboReference, EncodeDecodeMatchDefinition) {
  const auto [type, dim] = GetParam();
  std::mt19937 rng(dim * 31 + int(std::strlen(type)));
  for (TensorRole role : {TensorRole::kKey, TensorRole::kValue}) {
    const BlockCase bc = MakeCase(type, dim, role);
    SCOPED_TRACE(role == TensorRole::kKey ? "K" : "V");
    // Geometry and byte count from the definition.
    const size_t want_bytes = bc.g.codes_bytes() + 2 * kTok + (bc.centering ? 2 * size_t(dim) : 0);
    ASSERT_EQ(bc.format->block_bytes(), want_bytes);
    double dist_sum = 0, dist_sq = 0;
    int n = 0, centered_blocks = 0;
    const double expected_d = bc.g.n_hi * bc.cb.hi->distortion + (dim - bc.g.n_hi) * bc.cb.lo->distortion;
    for (int blk = 0; blk < 6; ++blk) {
      SCOPED_TRACE(::testing::Message() << "block " << blk);
      std::vector<float> rows = Gaussian(rng, size_t(kTok) * dim, 1.0f);
      if (blk >= 3) {  // a shared component 8x the keys' own spread (Qwen2.5-like)
        const std::vector<float> shared = Gaussian(rng, size_t(dim), 8.0f);
        for (size_t i = 0; i < rows.size(); ++i) rows[i] += shared[i % dim];
      }
      std::vector<uint8_t> block;
      const Checked c = EncodeAndCheck(bc, rows, &block);
      if (::testing::Test::HasFailure()) return;
      centered_blocks += c.centered;
      // Decode: equal to the reference decode of the same bytes, to float rounding of the
      // inverse rotation (terms |level ν16 + c| / √B through 2 log2(d) + 4 stages).
      std::vector<float> dec(size_t(kTok) * dim);
      bc.format->Decode(block.data(), 0, kTok, dec.data());
      const std::vector<double> want = ReferenceDecode(bc, c.want.c);
      for (int t = 0; t < kTok; ++t) {
        double l1 = 0;
        for (int j = 0; j < dim; ++j)
          l1 += std::fabs(double(bc.cb.of(bc.g, j).levels[c.want.c.codes[size_t(t) * dim + j]]) *
                          HalfValue(c.want.c.norms[t])) +
                (c.want.c.center.empty() ? 0.0 : std::fabs(HalfValue(c.want.c.center[j])));
        const double tol = (2 * std::log2(double(dim)) + 6) * kU * l1 / std::sqrt(double(dim));
        for (int j = 0; j < dim; ++j)
          ASSERT_NEAR(dec[size_t(t) * dim + j], want[size_t(t) * dim + j], tol) << "token " << t << " j " << j;
        // A part decode of tokens [t, t + 1) gives the same row.
        if (t % 21 == 5) {
          std::vector<float> one(dim);
          bc.format->Decode(block.data(), t, 1, one.data());
          for (int j = 0; j < dim; ++j) ASSERT_EQ(one[j], dec[size_t(t) * dim + j]);
        }
      }
      // Distortion of the unit directions that were encoded, u = (y - c)/ν, where they are
      // uniform on the sphere: Gaussian rows, or Gaussian rows about their shared mean. (A
      // shared component left in, V blocks 3..5, points every u the same way.)
      for (int t = 0; t < kTok && (blk < 3 || c.centered); ++t) {
        const std::vector<double> y = ref::Rotate(bc.rotation, rows.data() + size_t(t) * dim);
        double e = 0;
        for (int j = 0; j < dim; ++j) {
          const double cj = c.want.c.center.empty() ? 0.0 : HalfValue(c.want.c.center[j]);
          const double u = (y[j] - cj) / c.want.nu[t];
          const double diff = u - bc.cb.of(bc.g, j).levels[c.want.c.codes[size_t(t) * dim + j]];
          e += diff * diff;
        }
        dist_sum += e;
        dist_sq += e * e;
        ++n;
      }
    }
    const double mean = dist_sum / n, sd = std::sqrt(std::max(0.0, dist_sq / n - mean * mean));
    std::printf("[ turbo ref ] %s d=%d %s: mean |u - û|² %.6f, codebooks %.6f (±%.6f), %d/6 blocks centered\n",
                type, dim, role == TensorRole::kKey ? "K" : "V", mean, expected_d, 5 * sd / std::sqrt(n),
                centered_blocks);
    EXPECT_NEAR(mean, expected_d, 5 * sd / std::sqrt(double(n)));
    if (bc.centering) {
      EXPECT_GE(centered_blocks, 3) << "blocks with a shared component must center";
    }
  }
}

// Scores and weighted sums through the BlockFormat interface (PrepareQueries, Scores,
// Accumulate, FinishAccumulator) against the kernels' documented integer arithmetic on the
// reference's codes, and against exact attention within the distortion prediction.
TEST_P(TurboReference, AttentionMatchesDefinitionAndDistortion) {
  const auto [type, dim] = GetParam();
  const int nq = 6, stride = 72;
  std::mt19937 rng(dim * 17 + int(std::strlen(type)));
  double z2_sum = 0, z2_sq = 0;
  int z_n = 0;
  for (int blk = 0; blk < 4; ++blk) {
    SCOPED_TRACE(::testing::Message() << "block " << blk);
    const BlockCase kc = MakeCase(type, dim, TensorRole::kKey);
    const BlockCase vc = MakeCase(type, dim, TensorRole::kValue);
    const Int8Book book = Int8BookOf(kc.cb);
    std::vector<float> keys = Gaussian(rng, size_t(kTok) * dim, 1.0f);
    if (blk % 2) {
      const std::vector<float> shared = Gaussian(rng, size_t(dim), 8.0f);
      for (size_t i = 0; i < keys.size(); ++i) keys[i] += shared[i % dim];
    }
    const std::vector<float> values = Gaussian(rng, size_t(kTok) * dim, 1.0f);
    std::vector<uint8_t> kb, vb;
    const Checked kchk = EncodeAndCheck(kc, keys, &kb);
    const Checked vchk = EncodeAndCheck(vc, values, &vb);
    if (::testing::Test::HasFailure()) return;

    const std::vector<float> q = Gaussian(rng, size_t(nq) * dim, 1.0f / std::sqrt(float(dim)));
    PreparedQueries pq;
    kc.format->PrepareQueries(q.data(), nq, &pq);
    KernelScratch scratch;
    std::vector<float> scores(size_t(nq) * stride, -7.0f);
    kc.format->Scores(pq, kb.data(), kTok, scores.data(), stride, scratch);
    for (int i = 0; i < nq; ++i) {
      // The prepared query: rotated (float vs double), int8 with one scale per row.
      const std::vector<double> qr = ref::Rotate(kc.rotation, q.data() + size_t(i) * dim);
      double ql1 = 0, amax = 0;
      for (int j = 0; j < dim; ++j) {
        ql1 += std::fabs(q[size_t(i) * dim + j]);
        amax = std::max(amax, double(std::fabs(pq.f32[size_t(i) * dim + j])));
      }
      const double rot_tol = (2 * std::log2(double(dim)) + 4) * kU * ql1 / std::sqrt(double(dim));
      const double s = amax / 127;
      int32_t sum8 = 0;
      for (int j = 0; j < dim; ++j) {
        const float r = pq.f32[size_t(i) * dim + j];
        ASSERT_NEAR(r, qr[j], rot_tol) << "rotated query row " << i << " j " << j;
        const int q8 = pq.i8[size_t(i) * dim + j];
        ASSERT_LE(std::abs(q8), 127);
        ASSERT_LE(std::fabs(q8 * s - r), s * (0.5 + 1e-6)) << "int8 query row " << i << " j " << j;
        sum8 += q8;
      }
      ASSERT_EQ(pq.i8_sum[i], sum8);
      ASSERT_NEAR(pq.i8_scale[i], s * book.scale, s * book.scale * 4 * kU);

      for (int t = 0; t < kTok; ++t) {
        // The kernels' arithmetic on the reference's codes and norms, plus q·c for a center.
        int64_t dot8 = 0;
        double center_dot = 0, center_abs = 0;
        for (int j = 0; j < dim; ++j) {
          dot8 += int64_t(pq.i8[size_t(i) * dim + j]) *
                  book.of(kc.g, j, kchk.want.c.codes[size_t(t) * dim + j]);
          if (!kchk.want.c.center.empty()) {
            const double term = double(pq.f32[size_t(i) * dim + j]) * HalfValue(kchk.want.c.center[j]);
            center_dot += term;
            center_abs += std::fabs(term);
          }
        }
        const double main = double(pq.i8_scale[i]) * HalfValue(kchk.want.c.norms[t]) * double(dot8);
        const double want = main + center_dot;
        ASSERT_NEAR(scores[size_t(i) * stride + t], want,
                    4 * kU * (std::fabs(main) + std::fabs(want)) + (dim + 8) * kU * center_abs)
            << "score row " << i << " token " << t;

        // Against exact q·k: the squared error over its predicted variance, from the
        // reference's own encoding (its norms: a format that stops centering has ν ~ 8x
        // larger errors than predicted here).
        double exact = 0, var = 0;
        const double nu = kchk.want.nu[t];
        for (int j = 0; j < dim; ++j) {
          exact += double(q[size_t(i) * dim + j]) * keys[size_t(t) * dim + j];
          const int code = kchk.want.c.codes[size_t(t) * dim + j];
          const double level = kc.cb.of(kc.g, j).levels[code];
          const double level8 = book.of(kc.g, j, code) * double(book.scale);
          // Codebook distortion; the int8 query's rounding (uniform, s²/12); the int8 level's
          // rounding (deterministic, taken as a random sign).
          var += qr[j] * qr[j] * kc.cb.of(kc.g, j).distortion * nu * nu +
                 s * s / 12 * level8 * level8 * nu * nu + qr[j] * qr[j] * (level8 - level) * (level8 - level) * nu * nu;
        }
        const double err = scores[size_t(i) * stride + t] - exact;
        const double z2 = err * err / var;
        z2_sum += z2;
        z2_sq += z2 * z2;
        ++z_n;
      }
    }

    // Weighted sums of values: p of a softmax-like row (some zeros), quantized to uint8 with
    // the token norms per row (scale = row max / 255), against the reference codes.
    std::vector<float> p(size_t(nq) * stride, 0.0f);
    std::uniform_real_distribution<float> un(0.0f, 1.0f);
    for (int i = 0; i < nq; ++i)
      for (int t = 0; t < kTok; ++t) p[size_t(i) * stride + t] = (t % 9 == 4) ? 0.0f : un(rng) / kTok;
    std::vector<float> acc(size_t(nq) * dim, 0.0f);
    vc.format->Accumulate(p.data(), nq, stride, vb.data(), kTok, acc.data(), scratch);
    ASSERT_TRUE(vc.format->rotated());
    vc.format->FinishAccumulator(acc.data(), nq);
    for (int i = 0; i < nq; ++i) {
      float w[kTok], wmax = 0;
      for (int t = 0; t < kTok; ++t) {
        w[t] = p[size_t(i) * stride + t] * float(HalfValue(vchk.want.c.norms[t]));
        wmax = std::max(wmax, w[t]);
      }
      std::vector<double> y(dim, 0.0);
      double l1 = 0;
      for (int j = 0; j < dim; ++j) {
        int64_t sum = 0;
        for (int t = 0; t < kTok; ++t)
          sum += int64_t(std::nearbyint(w[t] * (255.0f / wmax))) *
                 book.of(vc.g, j, vchk.want.c.codes[size_t(t) * dim + j]);
        y[j] = double(wmax) * (double(book.scale) / 255) * double(sum);
        l1 += std::fabs(y[j]);
      }
      const std::vector<double> want = ref::InverseRotate(vc.rotation, y);
      const double tol = (2 * std::log2(double(dim)) + 10) * kU * l1 / std::sqrt(double(dim));
      for (int j = 0; j < dim; ++j)
        ASSERT_NEAR(acc[size_t(i) * dim + j], want[j], tol) << "weighted sum row " << i << " j " << j;
    }
  }
  const double mean = z2_sum / z_n, sd = std::sqrt(std::max(0.0, z2_sq / z_n - mean * mean));
  std::printf("[ turbo ref ] %s d=%d scores: mean squared error / predicted %.4f (±%.4f at 5 se, n=%d)\n",
              type, dim, mean, 5 * sd / std::sqrt(double(z_n)), z_n);
  EXPECT_NEAR(mean, 1.0, 5 * sd / std::sqrt(double(z_n)));
}

INSTANTIATE_TEST_SUITE_P(
    TypesAndDims, TurboReference,
    ::testing::Values(TypeDim{"tq2", 64}, TypeDim{"tq2.5", 80}, TypeDim{"tq3", 128},
                      TypeDim{"tq3.5", 96}, TypeDim{"tq4", 128}, TypeDim{"tq4", 256},
                      TypeDim{"tq8", 64}, TypeDim{"tq2", 256}, TypeDim{"tq3", 64}),
    [](const auto& info) {
      std::string s = std::string(info.param.type) + "_d" + std::to_string(info.param.dim);
      for (auto& ch : s)
        if (ch == '.') ch = 'p';
      return s;
    });

// Non-finite inputs: a block holding an Inf or NaN is encoded around 0 (no center: the mean
// would be non-finite), its non-finite tokens are stored as zero vectors (norm 0, codes 0) and
// decode to exactly 0, and every other token is encoded as usual.
TEST(TurboReferenceEdges, NonFiniteTokensAreZeroAndTheRestIsExact) {
  for (TensorRole role : {TensorRole::kKey, TensorRole::kValue}) {
    const BlockCase bc = MakeCase("tq3", 64, role);
    std::mt19937 rng(3);
    std::vector<float> rows = Gaussian(rng, size_t(kTok) * 64, 1.0f);
    for (size_t i = 0; i < rows.size(); ++i) rows[i] += 5.0f * float(i % 64 == 3);  // would center
    rows[5 * 64 + 7] = std::numeric_limits<float>::quiet_NaN();
    rows[9 * 64 + 0] = std::numeric_limits<float>::infinity();
    rows[63 * 64 + 63] = -std::numeric_limits<float>::infinity();
    std::vector<uint8_t> block;
    const Checked c = EncodeAndCheck(bc, rows, &block);
    ASSERT_FALSE(::testing::Test::HasFailure());
    EXPECT_FALSE(c.centered);
    for (int t : {5, 9, 63}) {
      EXPECT_EQ(c.got.norms[t], 0) << t;
      for (int j = 0; j < 64; ++j) ASSERT_EQ(c.got.codes[size_t(t) * 64 + j], 0) << t;
    }
    std::vector<float> dec(size_t(kTok) * 64);
    bc.format->Decode(block.data(), 0, kTok, dec.data());
    for (int t = 0; t < kTok; ++t) {
      double sq = 0;
      for (int j = 0; j < 64; ++j) sq += double(dec[size_t(t) * 64 + j]) * dec[size_t(t) * 64 + j];
      if (t == 5 || t == 9 || t == 63) EXPECT_EQ(sq, 0.0) << t;
      else EXPECT_GT(sq, 0.0) << t;
    }
  }
}

// Vectors far beyond fp16's range of norms (and a shared component beyond it, rotated into one
// coordinate): norms and the center saturate at 65504 like the codec's, so the block decodes
// to finite vectors (values pointing the right way) instead of infinities, and the encoding
// is still the reference's.
TEST(TurboReferenceEdges, NormsAndCenterSaturateAtTheFp16Maximum) {
  for (TensorRole role : {TensorRole::kKey, TensorRole::kValue}) {
    SCOPED_TRACE(role == TensorRole::kKey ? "K" : "V");
    const BlockCase bc = MakeCase("tq4", 128, role);
    std::mt19937 rng(4);
    std::vector<float> rows = Gaussian(rng, size_t(kTok) * 128, 3000.0f);  // norms ~34000
    for (int t = 0; t < 8; ++t)
      for (int j = 0; j < 128; ++j) rows[size_t(t) * 128 + j] *= 4.0f;  // ~136000
    // A component 1.5e5 along R^T e_0 in tokens 32..63: rotated, one coordinate of 1.5e5, and
    // a block mean of 7.5e4 there (above 65504).
    std::vector<float> e0(128, 0.0f), dir(128);
    e0[0] = 1.0f;
    bc.rotation.ApplyInverse(e0.data(), dir.data());
    for (int t = 32; t < kTok; ++t)
      for (int j = 0; j < 128; ++j) rows[size_t(t) * 128 + j] = rows[size_t(t) * 128 + j] / 30 + 1.5e5f * dir[j];
    std::vector<uint8_t> block;
    const Checked c = EncodeAndCheck(bc, rows, &block);
    ASSERT_FALSE(::testing::Test::HasFailure());
    std::vector<float> dec(size_t(kTok) * 128);
    bc.format->Decode(block.data(), 0, kTok, dec.data());
    for (int t = 0; t < kTok; ++t) {
      double dot = 0, a = 0, b = 0;
      for (int j = 0; j < 128; ++j) {
        const double x = rows[size_t(t) * 128 + j], y = dec[size_t(t) * 128 + j];
        ASSERT_TRUE(std::isfinite(y)) << "token " << t << " j " << j;
        dot += x * y;
        a += x * x;
        b += y * y;
      }
      // Values (never centered) keep their direction: 4-bit codes give a cosine of ~0.995, a
      // saturated norm only shortens. (Not tokens 32..63, built to be one rotated coordinate,
      // which no scalar codebook for a spread-out coordinate holds; nor keys, centered around
      // a saturated center by a rule that weighs what varies between tokens, not each token.)
      if (role == TensorRole::kValue && t < 32) {
        EXPECT_GT(dot / std::sqrt(a * b), 0.98) << "token " << t;
      }
      if (t < 8) {
        EXPECT_EQ(c.got.norms[t], 0x7bff) << "a norm above 65504 saturates";
      }
    }
  }
}

}  // namespace
}  // namespace tqlm::kv
