// TurboQuantCodec: norm + rotation + Lloyd–Max indices (+ QJL residual sketch for kProd).
//
// Encode (x ∈ R^d):  ν = ‖x‖, u = x/ν (u = 0 when ν = 0), y = R·u, idx_j = Q_j(y_j),
//   kProd also:      r = y - ŷ (residual in the rotated domain), γ = ‖r‖, s = sign(S·r)
// Decode:            x̂ = ν · R⁻¹ (ŷ [+ √(π/2)/d · γ · Sᵀ s])
// Dot:               <q, x̂> = ν · (<R q, ŷ> [+ √(π/2)/d · γ · <S R q, s>])
// R is orthogonal, so <q, x̂> = <R q, R x̂>: the query is rotated once (PrepareQuery) and the
// compressed vectors are never decoded. E[Sᵀ sign(S r)] = d √(2/π) r/‖r‖ for S with iid N(0, 1)
// entries, so the QJL term is an unbiased estimate of <R q, r> and <q, x̂> of <q, x>.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <numbers>

#include "codec/bitpack.h"
#include "codec/half.h"
#include "codec/kernels.h"
#include "codec/layout.h"
#include "codec/rng.h"
#include "codec/rotation.h"
#include "tqlm/codec.h"
#include "tqlm/error.h"

namespace tqlm::codec {

struct TurboQuantCodec::Impl {
  CodecConfig config;
  VectorLayout layout;
  const LloydMaxCodebook* hi = nullptr;
  const LloydMaxCodebook* lo = nullptr;
  Rotation rotation;
  std::vector<float> qjl;    // S, dim x dim row-major, kProd only
  std::vector<float> qjl_t;  // Sᵀ: for Decode, and for projecting blocks of residuals
  float qjl_scale = 0;     // √(π/2) / d
  // The codebooks' levels zero-padded to 256 entries, as the dot kernel reads them.
  std::vector<float> padded_hi = std::vector<float>(256, 0.0f);
  std::vector<float> padded_lo = std::vector<float>(256, 0.0f);

  explicit Impl(const CodecConfig& c)
      : config(c), layout(ComputeLayout(c)), rotation(c.dim, c.seed) {
    hi = &LloydMaxCodebook::Get(c.dim, layout.hi_bits, c.codebook);
    lo = &LloydMaxCodebook::Get(c.dim, layout.lo_bits, c.codebook);
    std::copy(hi->levels.begin(), hi->levels.end(), padded_hi.begin());
    std::copy(lo->levels.begin(), lo->levels.end(), padded_lo.begin());
    if (c.variant == Variant::kProd) {
      Rng rng(c.seed ^ 0x514a4c5f536b6574ull);  // "QJL_Sket"
      qjl.resize(size_t(c.dim) * size_t(c.dim));
      for (float& v : qjl) v = float(rng.Normal());
      qjl_t.resize(qjl.size());
      for (int r = 0; r < c.dim; ++r) {
        for (int k = 0; k < c.dim; ++k) qjl_t[size_t(k) * c.dim + r] = qjl[size_t(r) * c.dim + k];
      }
      qjl_scale = float(std::sqrt(std::numbers::pi / 2) / c.dim);
    }
  }

  bool f16() const { return config.norm == NormFormat::kF16; }

  void StoreNorm(float v, uint8_t* p) const {
    if (f16()) {
      const uint16_t h = F32ToF16(std::min(v, kF16Max));  // saturate instead of infinity
      std::memcpy(p, &h, 2);
    } else {
      std::memcpy(p, &v, 4);
    }
  }
  float LoadNorm(const uint8_t* p) const {
    if (f16()) {
      uint16_t h;
      std::memcpy(&h, p, 2);
      return F16ToF32(h);
    }
    float v;
    std::memcpy(&v, p, 4);
    return v;
  }

  // Reconstructed rotated unit direction ŷ (+ the QJL term for kProd) from the bytes.
  void DecodeRotated(const uint8_t* in, float* y) const {
    const int d = config.dim, n_hi = layout.n_hi;
    alignas(64) uint8_t idx[kMaxDim];
    const uint8_t* codes = in + layout.codes_offset;
    UnpackIndices(codes, size_t(n_hi), layout.hi_bits, idx);
    UnpackIndices(codes + LoSectionByte(layout), size_t(d - n_hi), layout.lo_bits, idx + n_hi);
    for (int j = 0; j < n_hi; ++j) y[j] = hi->levels[idx[j]];
    for (int j = n_hi; j < d; ++j) y[j] = lo->levels[idx[j]];
    if (config.variant != Variant::kProd) return;
    const float gamma = LoadNorm(in + layout.rnorm_offset) * qjl_scale;
    const uint8_t* signs = in + layout.qjl_offset;
    alignas(64) float s[kMaxDim], back[kMaxDim];
    for (int r = 0; r < d; ++r) s[r] = (signs[r / 8] >> (r % 8)) & 1 ? gamma : -gamma;
    kernels::MatVec(qjl_t.data(), s, size_t(d), size_t(d), back);  // Sᵀ s
    for (int j = 0; j < d; ++j) y[j] += back[j];
  }
};

TurboQuantCodec::TurboQuantCodec(const CodecConfig& config)
    : impl_(std::make_unique<Impl>(config)) {}
TurboQuantCodec::~TurboQuantCodec() = default;
TurboQuantCodec::TurboQuantCodec(TurboQuantCodec&&) noexcept = default;
TurboQuantCodec& TurboQuantCodec::operator=(TurboQuantCodec&&) noexcept = default;

const CodecConfig& TurboQuantCodec::config() const { return impl_->config; }
const VectorLayout& TurboQuantCodec::layout() const { return impl_->layout; }
const LloydMaxCodebook& TurboQuantCodec::codebook_hi() const { return *impl_->hi; }
const LloydMaxCodebook& TurboQuantCodec::codebook_lo() const { return *impl_->lo; }
std::span<const float> TurboQuantCodec::qjl_matrix() const { return impl_->qjl; }
float TurboQuantCodec::qjl_scale() const { return impl_->qjl_scale; }

void TurboQuantCodec::Rotate(const float* in, float* out) const {
  impl_->rotation.Apply(in, out);
}
void TurboQuantCodec::InverseRotate(const float* in, float* out) const {
  impl_->rotation.ApplyInverse(in, out);
}

void TurboQuantCodec::Encode(const float* x, uint8_t* out) const { EncodeBatch(x, 1, out); }

void TurboQuantCodec::EncodeBatch(const float* x, size_t n, uint8_t* out) const {
  const Impl& m = *impl_;
  const VectorLayout& l = m.layout;
  const int d = l.dim;
  const size_t stride = l.bytes_per_vector;
  const bool prod = m.config.variant == Variant::kProd;
  // kProd projects the residuals of up to kBlock vectors at once (S is read once per block).
  constexpr size_t kBlock = 8;
  std::vector<float> residual, proj;  // kBlock residuals and their projections (prod only)
  if (prod) {
    residual.resize(kBlock * size_t(d));
    proj.resize(kBlock * size_t(d));
  }
  for (size_t i0 = 0; i0 < n; i0 += kBlock) {
    const size_t count = std::min(kBlock, n - i0);
    for (size_t v = 0; v < count; ++v) {
      const float* xi = x + (i0 + v) * size_t(d);
      uint8_t* o = out + (i0 + v) * stride;
      alignas(64) float y[kMaxDim];
      // x = 0 (or not finite) gives u = 0 and a zero norm, which decodes to 0.
      const float norm = kernels::Normalize(xi, size_t(d), y);
      m.rotation.Apply(y, y);
      m.StoreNorm(norm, o + l.norm_offset);
      alignas(64) uint8_t idx[kMaxDim];
      kernels::QuantizeIndices(y, size_t(l.n_hi), m.hi->thresholds.data(), l.hi_bits, idx);
      kernels::QuantizeIndices(y + l.n_hi, size_t(d - l.n_hi), m.lo->thresholds.data(),
                               l.lo_bits, idx + l.n_hi);
      uint8_t* codes = o + l.codes_offset;
      PackIndices(idx, size_t(l.n_hi), l.hi_bits, codes);
      PackIndices(idx + l.n_hi, size_t(d - l.n_hi), l.lo_bits, codes + LoSectionByte(l));
      if (!prod) continue;
      // Residual of the MSE stage (rotated domain) and its norm.
      float* r = residual.data() + v * size_t(d);
      double rsq = 0;
      for (int j = 0; j < d; ++j) {
        r[j] = y[j] - (j < l.n_hi ? m.hi->levels[idx[j]] : m.lo->levels[idx[j]]);
        rsq += double(r[j]) * double(r[j]);
      }
      m.StoreNorm(float(std::sqrt(rsq)), o + l.rnorm_offset);
    }
    if (!prod) continue;
    // QJL: the signs of S·r.
    kernels::MatVecBatchT(m.qjl_t.data(), residual.data(), count, size_t(d), size_t(d), proj.data());
    for (size_t v = 0; v < count; ++v) {
      uint8_t* signs = out + (i0 + v) * stride + l.qjl_offset;
      const float* p = proj.data() + v * size_t(d);
      for (int j = 0; j < d; j += 8) {
        unsigned byte = 0;
        for (int k = 0; k < 8; ++k) byte |= unsigned(p[j + k] >= 0) << k;
        signs[j / 8] = uint8_t(byte);
      }
    }
  }
}

void TurboQuantCodec::Decode(const uint8_t* in, float* x) const {
  const Impl& m = *impl_;
  alignas(64) float y[kMaxDim];
  m.DecodeRotated(in, y);
  m.rotation.ApplyInverse(y, x);
  const float norm = m.LoadNorm(in + m.layout.norm_offset);
  for (int j = 0; j < m.layout.dim; ++j) x[j] *= norm;
}

void TurboQuantCodec::PrepareQuery(const float* q, PreparedQuery* out) const {
  const Impl& m = *impl_;
  const size_t d = size_t(m.layout.dim);
  out->rotated.resize(d);
  m.rotation.Apply(q, out->rotated.data());
  if (m.config.variant == Variant::kProd) {
    out->sketch.resize(d);
    kernels::MatVec(m.qjl.data(), out->rotated.data(), d, d, out->sketch.data());
  } else {
    out->sketch.clear();
  }
}

float TurboQuantCodec::Dot(const PreparedQuery& q, const uint8_t* code) const {
  float out;
  DotBatch(q, code, 1, &out);
  return out;
}

void TurboQuantCodec::DotBatch(const PreparedQuery& q, const uint8_t* codes, size_t n,
                               float* out) const {
  const Impl& m = *impl_;
  const VectorLayout& l = m.layout;
  const bool prod = m.config.variant == Variant::kProd;
  if (q.rotated.size() != size_t(l.dim) || (prod && q.sketch.size() != size_t(l.dim))) {
    throw Error("codec: PreparedQuery does not match this codec (call PrepareQuery)");
  }
  kernels::DotPlan p;
  p.query = q.rotated.data();
  p.sketch = prod ? q.sketch.data() : nullptr;
  p.levels_hi = m.padded_hi.data();
  p.levels_lo = m.padded_lo.data();
  p.dim = l.dim;
  p.n_hi = l.n_hi;
  p.hi_bits = l.hi_bits;
  p.lo_bits = l.lo_bits;
  p.norm_f16 = m.f16();
  p.stride = l.bytes_per_vector;
  p.norm_offset = l.norm_offset;
  p.codes_offset = l.codes_offset;
  p.lo_offset = LoSectionByte(l);
  p.rnorm_offset = l.rnorm_offset;
  p.qjl_offset = l.qjl_offset;
  p.qjl_scale = m.qjl_scale;
  kernels::DotBatch(p, codes, n, out);
}

}  // namespace tqlm::codec
