// TurboQuant block formats. MSE types (at most 4 bits per coordinate, and tq8) use the SIMD
// layout of kernels/cpu/attention_tq.h (K and V laid out differently); TurboQuant-prod keeps the
// codec's per-vector layout, token-major, and uses the codec's own dot products. tq8 moved to
// the SIMD layout when it became the default key type for small heads: through the codec's dot
// products its scores were 3x slower than f16's (SmolLM2 geometry, 8K tokens).
//
// Fractional widths (2.5, 3.5) give hi_bits to the first n_hi rotated coordinates, with n_hi the
// multiple of 16 nearest dim/2 (the kernels' unit granularity; after the random rotation every
// coordinate has the same distribution, so which ones get the extra bit does not matter).
//
// Key blocks of these types are centered: the block stores the mean of its 64 keys (rotated,
// fp16) after the codes and norms, and each key is encoded as its difference from that mean.
// Keys often share a large component (Qwen2.5's key biases: in layer 0 of
// Qwen2.5-Coder-1.5B the mean key holds 98% of the norm), and the codec's error is relative to
// the norm, so quantizing uncentered keys would bury what differs between tokens. The mean is
// per block, not per sequence, because RoPE turns a constant pre-rotary bias into a component
// that rotates with position. Attention is unchanged in exact arithmetic:
// q·k = q·c + q·(k - c), so Scores adds one dot product (q·c) per query row and block;
// the cost is 16 bits per coordinate per block (0.25 bits per key coordinate).
//
// Edge values (tests/kv_turbo_reference_test.cc): a token with an Inf or NaN (or whose float
// rotation overflows) is stored as a zero vector, and a block holding one is not centered;
// norms and center coordinates beyond fp16's 65504 saturate there.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <cstdlib>

#include "kernels/cpu/attention_raw.h"
#include "kernels/cpu/attention_tq.h"
#include "kernels/tensor_format.h"
#include "kv/block_format_internal.h"
#include "tqlm/error.h"

namespace tqlm::kv {
namespace {

using kernels::TqBlockLayout;
constexpr float kF16Max = 65504.0f;

codec::CodecConfig CodecConfigFor(const KvType& type, int dim) {
  codec::CodecConfig c;
  c.dim = dim;
  c.bits = type.bits;
  c.variant = type.prod ? codec::Variant::kProd : codec::Variant::kMse;
  return c;
}

// Byte offset of the unit holding code (t, j) and the code's position in it.
struct UnitPos {
  size_t offset;
  int p;
  int bits;
};

int GetCode(const uint8_t* u, int bits, int p) {
  switch (bits) {
    case 8: return u[p];
    case 4: return (u[p % 32] >> (4 * (p / 32))) & 15;
    case 2: return (u[p % 16] >> (2 * (p / 16))) & 3;
    case 3: return ((u[p % 16] >> (2 * (p / 16))) & 3) | (((u[16 + p / 8] >> (p % 8)) & 1) << 2);
    default: return (u[p / 8] >> (p % 8)) & 1;
  }
}

void SetCode(uint8_t* u, int bits, int p, int c) {
  switch (bits) {
    case 8: u[p] = uint8_t(c); break;
    case 4: u[p % 32] |= uint8_t(c << (4 * (p / 32))); break;
    case 3:
      u[16 + p / 8] |= uint8_t(((c >> 2) & 1) << (p % 8));
      [[fallthrough]];
    case 2: u[p % 16] |= uint8_t((c & 3) << (2 * (p / 16))); break;
    default: u[p / 8] |= uint8_t((c & 1) << (p % 8)); break;
  }
}

class TurboBlockFormat final : public BlockFormat {
 public:
  TurboBlockFormat(const KvType& type, int dim, TensorRole role)
      : role_(role), codec_(CodecConfigFor(type, dim)) {
    dim_ = dim;
    const int whole = int(std::floor(type.bits));
    const int hi = type.bits == whole ? whole : whole + 1;
    const int n_hi = type.bits == whole ? dim : std::clamp((dim / 2 + 8) / 16 * 16, 16, dim);
    layout_ = TqBlockLayout::Make(dim, n_hi, hi, whole);
    centered_ = role == TensorRole::kKey && KeyCenteringEnabled();
    // The fp16 center is read as uint16_t: 2-byte aligned (blocks themselves are 64-aligned).
    center_offset_ = centered_ ? (layout_.block_bytes + 1) & ~size_t(1) : layout_.block_bytes;
    block_bytes_ = centered_ ? center_offset_ + 2 * size_t(dim) : layout_.block_bytes;
    rotated_ = role == TensorRole::kValue;
    const auto& cb_hi = codec::LloydMaxCodebook::Get(dim, hi, codec::CodecConfig{}.codebook);
    const auto& cb_lo = codec::LloydMaxCodebook::Get(dim, whole, codec::CodecConfig{}.codebook);
    cb_hi_ = &cb_hi;
    cb_lo_ = &cb_lo;
    float amax = 0;
    for (float v : cb_hi.levels) amax = std::max(amax, std::fabs(v));
    for (float v : cb_lo.levels) amax = std::max(amax, std::fabs(v));
    tables_.cb_scale = amax / 127.0f;
    for (size_t c = 0; c < cb_hi.levels.size(); ++c)
      tables_.hi[c] = int8_t(std::lrint(cb_hi.levels[c] / tables_.cb_scale));
    for (size_t c = 0; c < cb_lo.levels.size(); ++c)
      tables_.lo[c] = int8_t(std::lrint(cb_lo.levels[c] / tables_.cb_scale));
    // Unit offsets of K dim groups within a 16-token row, and of V dim chunks.
    size_t off = 0;
    for (int g = 0; g < dim / 4; ++g) {
      group_offset_.push_back(off);
      off += TqBlockLayout::UnitBytes(layout_.bits_of_dim(4 * g));
    }
    k_row_bytes_ = off;
    off = 0;
    for (int c = 0; c < dim / 16; ++c) {
      chunk_offset_.push_back(off);
      off += 16 * TqBlockLayout::UnitBytes(layout_.bits_of_dim(16 * c));
    }
  }

  const TqBlockLayout& layout() const { return layout_; }
  const kernels::TqTables& tables() const { return tables_; }

  void Encode(const float* rows, size_t stride, int first, int n, uint8_t* block) const override {
    if (first != 0 || n != kBlockTokens)
      throw Error("TurboQuant KV blocks are encoded whole");
    // Everything happens in the rotated basis: rotation is linear, so rotating the differences
    // equals differencing the rotated keys, and the stored center is already rotated for Scores.
    std::vector<float> rot(size_t(n) * dim_), zero(dim_, 0.0f);
    bool finite = true;
    for (int t = 0; t < n; ++t) {
      codec_.Rotate(rows + t * stride, rot.data() + size_t(t) * dim_);
      for (int j = 0; j < dim_; ++j) finite = finite && std::isfinite(rows[t * stride + j]);
    }
    std::fill(block + center_offset_, block + block_bytes_, uint8_t(0));
    const double plain_error = EncodeAround(rot.data(), zero.data(), block);
    if (!centered_ || !finite) return;
    // Keys: encode around the block's mean too and keep whichever loses less of what differs
    // between the block's keys. An error shared by all keys only shifts every score by the same
    // q·e, which softmax ignores; so without a large shared component the plain encoding often
    // wins (its error is partly common to the block), and with one (Qwen2.5) centering is what
    // keeps the keys apart at all.
    std::vector<double> sum(dim_, 0.0);
    for (int t = 0; t < n; ++t)
      for (int j = 0; j < dim_; ++j) sum[j] += rot[size_t(t) * dim_ + j];
    std::vector<float> center(dim_);
    std::vector<uint8_t> alt(block_bytes_);
    for (int j = 0; j < dim_; ++j) {
      // Saturated at fp16's largest finite value, like the norms (an infinite center would
      // decode every key of the block to infinity).
      const float m = std::clamp(float(sum[j] / n), -kF16Max, kF16Max);
      const uint16_t h = kernels::F32ToF16(m);
      std::memcpy(alt.data() + center_offset_ + 2 * j, &h, 2);
      center[j] = kernels::F16ToF32(h);  // subtract exactly what Decode adds back
    }
    if (EncodeAround(rot.data(), center.data(), alt.data()) < plain_error)
      std::memcpy(block, alt.data(), block_bytes_);
  }

  void Decode(const uint8_t* block, int first, int n, float* rows) const override {
    std::vector<float> y(dim_), center(dim_, 0.0f);
    if (centered_) LoadCenter(block, center.data());
    for (int t = first; t < first + n; ++t) {
      uint16_t h;
      std::memcpy(&h, block + layout_.norms_offset + 2 * t, 2);
      const float norm = kernels::F16ToF32(h);
      for (int j = 0; j < dim_; ++j) {
        const UnitPos u = Where(t, j);
        const int code = GetCode(block + u.offset, u.bits, u.p);
        y[j] = (j < layout_.n_hi ? cb_hi_ : cb_lo_)->levels[code] * norm + center[j];
      }
      codec_.InverseRotate(y.data(), rows + size_t(t - first) * dim_);
    }
  }

  void PrepareQueries(const float* q, int nq, PreparedQueries* out) const override {
    out->nq = nq;
    out->dim = dim_;
    out->f32.resize(size_t(nq) * dim_);
    out->i8.resize(size_t(nq) * dim_);
    out->i8_scale.resize(nq);
    out->i8_sum.resize(nq);
    for (int i = 0; i < nq; ++i) {
      float* r = out->f32.data() + size_t(i) * dim_;
      codec_.Rotate(q + size_t(i) * dim_, r);
      float amax = 0;
      for (int j = 0; j < dim_; ++j) amax = std::max(amax, std::fabs(r[j]));
      const float s = amax / 127.0f;
      const float inv = amax > 0 ? 127.0f / amax : 0.0f;
      int32_t sum = 0;
      for (int j = 0; j < dim_; ++j) {
        const int v = int(std::lrint(r[j] * inv));
        out->i8[size_t(i) * dim_ + j] = int8_t(v);
        sum += v;
      }
      out->i8_scale[i] = s * tables_.cb_scale;
      out->i8_sum[i] = sum;
    }
  }

  void Scores(const PreparedQueries& q, const uint8_t* block, int n_tok, float* scores,
              int stride, KernelScratch& scratch) const override {
    (void)n_tok;  // compressed blocks are always full
    kernels::TqScores(layout_, tables_, q.i8.data(), q.i8_scale.data(), q.i8_sum.data(), q.nq,
                      block, scores, stride, scratch.next);
    if (!centered_) return;
    // q·c per row (the rotated query against the block's rotated center), added to every score.
    scratch.rows.resize(q.nq);
    const auto* center = reinterpret_cast<const uint16_t*>(block + center_offset_);
    kernels::AttnScoresF16(q.f32.data(), q.nq, center, 1, dim_, scratch.rows.data(), 1);
    for (int i = 0; i < q.nq; ++i) {
      const float dot = scratch.rows[i];
      float* si = scores + size_t(i) * stride;
      for (int t = 0; t < kBlockTokens; ++t) si[t] += dot;
    }
  }

  void Accumulate(const float* p, int nq, int stride, const uint8_t* block, int n_tok,
                  float* acc, KernelScratch& scratch) const override {
    (void)n_tok;
    kernels::TqAccumulate(layout_, tables_, p, nq, stride, block, acc, scratch.next);
  }

  void FinishAccumulator(float* acc, int nq) const override {
    for (int i = 0; i < nq; ++i) codec_.InverseRotate(acc + size_t(i) * dim_, acc + size_t(i) * dim_);
  }

 private:
  UnitPos Where(int t, int j) const {
    if (role_ == TensorRole::kKey) {
      const int s = t / 16, g = j / 4;
      return {size_t(s) * k_row_bytes_ + group_offset_[g], 4 * (t % 16) + j % 4,
              layout_.bits_of_dim(j)};
    }
    const int c = j / 16, bits = layout_.bits_of_dim(j);
    return {chunk_offset_[c] + size_t(t / 4) * TqBlockLayout::UnitBytes(bits),
            4 * (j % 16) + t % 4, bits};
  }

  // Encodes the block's rotated rows as differences from `center` (codes and norms; the center
  // bytes are left as they are: zero, or set by the caller) and returns the part of the squared
  // reconstruction error that varies between tokens: sum_t |e_t - mean(e)|^2.
  double EncodeAround(const float* rot, const float* center, uint8_t* block) const {
    std::fill(block, block + center_offset_, uint8_t(0));
    std::vector<float> y(dim_);
    std::vector<double> err(size_t(kBlockTokens) * dim_), mean(dim_, 0.0);
    for (int t = 0; t < kBlockTokens; ++t) {
      const float* r = rot + size_t(t) * dim_;
      double sq = 0;
      for (int j = 0; j < dim_; ++j) {
        y[j] = r[j] - center[j];
        sq += double(y[j]) * y[j];
      }
      const float norm = float(std::sqrt(sq));
      const bool ok = norm > 0 && std::isfinite(norm);
      // fp16 norms saturate at 65504 (as the codec's do): such a key decodes shorter than it
      // is but finite, pointing the right way.
      const uint16_t h = kernels::F32ToF16(ok ? std::min(norm, kF16Max) : 0.0f);
      std::memcpy(block + layout_.norms_offset + 2 * t, &h, 2);
      const float stored = kernels::F16ToF32(h);
      for (int j = 0; j < dim_; ++j) {
        const codec::LloydMaxCodebook& cb = *(j < layout_.n_hi ? cb_hi_ : cb_lo_);
        const int code = ok ? cb.Quantize(float(y[j] / norm)) : 0;
        if (ok) {
          const UnitPos u = Where(t, j);
          SetCode(block + u.offset, u.bits, u.p, code);
        }
        // codes 0 with a zero norm decode to the center
        const double e = double(cb.levels[code]) * stored - y[j];
        err[size_t(t) * dim_ + j] = e;
        mean[j] += e / kBlockTokens;
      }
    }
    double varying = 0;
    for (int t = 0; t < kBlockTokens; ++t)
      for (int j = 0; j < dim_; ++j) {
        const double e = err[size_t(t) * dim_ + j] - mean[j];
        varying += e * e;
      }
    // Not finite (an overflow in the error itself): never preferred over a finite encoding.
    return std::isfinite(varying) ? varying : std::numeric_limits<double>::infinity();
  }

  // The block's rotated key center (fp16 in the block) as floats.
  void LoadCenter(const uint8_t* block, float* center) const {
    for (int j = 0; j < dim_; ++j) {
      uint16_t h;
      std::memcpy(&h, block + center_offset_ + 2 * j, 2);
      center[j] = kernels::F16ToF32(h);
    }
  }

  TensorRole role_;
  bool centered_ = false;
  size_t center_offset_ = 0;
  codec::TurboQuantCodec codec_;
  TqBlockLayout layout_;
  kernels::TqTables tables_;
  const codec::LloydMaxCodebook* cb_hi_ = nullptr;
  const codec::LloydMaxCodebook* cb_lo_ = nullptr;
  std::vector<size_t> group_offset_, chunk_offset_;
  size_t k_row_bytes_ = 0;
};

// tqBp: the codec's per-vector bytes, one row per token.
class TurboCodecFormat final : public BlockFormat {
 public:
  TurboCodecFormat(const KvType& type, int dim) : codec_(CodecConfigFor(type, dim)) {
    dim_ = dim;
    row_bytes_ = codec_.layout().bytes_per_vector;
    block_bytes_ = size_t(kBlockTokens) * row_bytes_;
  }
  void Encode(const float* rows, size_t stride, int first, int n, uint8_t* block) const override {
    for (int t = 0; t < n; ++t) codec_.Encode(rows + t * stride, block + size_t(first + t) * row_bytes_);
  }
  void Decode(const uint8_t* block, int first, int n, float* rows) const override {
    for (int t = 0; t < n; ++t)
      codec_.Decode(block + size_t(first + t) * row_bytes_, rows + size_t(t) * dim_);
  }
  void PrepareQueries(const float* q, int nq, PreparedQueries* out) const override {
    out->nq = nq;
    out->dim = dim_;
    out->codec.resize(nq);
    for (int i = 0; i < nq; ++i) codec_.PrepareQuery(q + size_t(i) * dim_, &out->codec[i]);
  }
  void Scores(const PreparedQueries& q, const uint8_t* block, int n_tok, float* scores,
              int stride, KernelScratch&) const override {
    for (int i = 0; i < q.nq; ++i)
      codec_.DotBatch(q.codec[i], block, size_t(n_tok), scores + size_t(i) * stride);
  }
  void Accumulate(const float* p, int nq, int stride, const uint8_t* block, int n_tok,
                  float* acc, KernelScratch& s) const override {
    s.rows.resize(size_t(kBlockTokens) * dim_);
    Decode(block, 0, n_tok, s.rows.data());
    kernels::AttnAccumF32(p, nq, stride, s.rows.data(), n_tok, dim_, acc);
  }

 private:
  codec::TurboQuantCodec codec_;
  size_t row_bytes_ = 0;
};

}  // namespace

bool KeyCenteringEnabled() {
  static const bool enabled = [] {
    const char* e = std::getenv("TQLM_KV_NO_CENTER");
    return !(e && *e && std::string(e) != "0");
  }();
  return enabled;
}

std::unique_ptr<BlockFormat> MakeTurboFormat(const KvType& type, int dim, TensorRole role) {
  if (!type.prod && (type.bits <= 4 || type.bits == 8))
    return std::make_unique<TurboBlockFormat>(type, dim, role);
  return std::make_unique<TurboCodecFormat>(type, dim);
}

}  // namespace tqlm::kv
