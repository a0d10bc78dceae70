// Full-precision (f32, f16) and llama.cpp affine (q8_0, q4_0) block layouts.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "kernels/cpu/attention_raw.h"
#include "kernels/cpu/dequant.h"
#include "kernels/tensor_format.h"
#include "kv/block_format_internal.h"

namespace tqlm::kv {
namespace {

// Full precision, element type T (float or f16 bits). K blocks are stored transposed
// ([dim][64]: lanes across tokens for the scores), V blocks row-major ([64][dim]).
template <typename T>
class PlainFormat final : public BlockFormat {
 public:
  PlainFormat(int dim, TensorRole role) : transposed_(role == TensorRole::kKey) {
    dim_ = dim;
    block_bytes_ = size_t(kBlockTokens) * dim * sizeof(T);
    partial_writes_ = true;
  }
  void Encode(const float* rows, size_t stride, int first, int n, uint8_t* block) const override {
    T* out = reinterpret_cast<T*>(block);
    for (int i = 0; i < n; ++i)
      for (int j = 0; j < dim_; ++j) out[Index(first + i, j)] = To(rows[i * stride + j]);
  }
  void Decode(const uint8_t* block, int first, int n, float* rows) const override {
    const T* in = reinterpret_cast<const T*>(block);
    for (int i = 0; i < n; ++i)
      for (int j = 0; j < dim_; ++j) rows[size_t(i) * dim_ + j] = From(in[Index(first + i, j)]);
  }
  void Scores(const PreparedQueries& q, const uint8_t* block, int n_tok, float* scores,
              int stride, KernelScratch& s) const override {
    const T* k = reinterpret_cast<const T*>(block);
    if constexpr (std::is_same_v<T, float>) {
      if (transposed_)
        return kernels::AttnScoresF32T(q.f32.data(), q.nq, k, dim_, scores, stride, s.next);
      kernels::AttnScoresF32(q.f32.data(), q.nq, k, n_tok, dim_, scores, stride);
    } else {
      if (transposed_)
        return kernels::AttnScoresF16T(q.f32.data(), q.nq, k, dim_, scores, stride, s.next);
      kernels::AttnScoresF16(q.f32.data(), q.nq, k, n_tok, dim_, scores, stride);
    }
  }
  void Accumulate(const float* p, int nq, int stride, const uint8_t* block, int n_tok,
                  float* acc, KernelScratch& s) const override {
    const T* v = reinterpret_cast<const T*>(block);
    if (transposed_) {  // not the V layout; only reached if a K block is used as V
      s.rows.resize(size_t(kBlockTokens) * dim_);
      Decode(block, 0, n_tok, s.rows.data());
      return kernels::AttnAccumF32(p, nq, stride, s.rows.data(), n_tok, dim_, acc);
    }
    if constexpr (std::is_same_v<T, float>) {
      kernels::AttnAccumF32(p, nq, stride, v, n_tok, dim_, acc, s.next);
    } else {
      kernels::AttnAccumF16(p, nq, stride, v, n_tok, dim_, acc, s.next);
    }
  }

 private:
  size_t Index(int t, int j) const {
    return transposed_ ? size_t(j) * kBlockTokens + t : size_t(t) * dim_ + j;
  }
  // Finite values past f16's range saturate to +-65504 instead of becoming infinite: the
  // attention kernels rely on stored values being finite (a masked token's weight is an exact
  // 0, and 0 x inf would be NaN).
  static T To(float x) {
    if constexpr (std::is_same_v<T, float>) {
      return x;
    } else {
      constexpr float kF16Max = 65504.0f;
      return kernels::F32ToF16(std::isfinite(x) ? std::clamp(x, -kF16Max, kF16Max) : x);
    }
  }
  static float From(T x) {
    if constexpr (std::is_same_v<T, float>) {
      return x;
    } else {
      return kernels::F16ToF32(x);
    }
  }
  bool transposed_;
};

// q8_0 / q4_0: ggml's blocks of 32 values along the head dimension. Attention dequantizes the
// block's rows to f32 scratch and runs the f32 kernels: these are baselines, not fast paths.
class GgmlFormat final : public BlockFormat {
 public:
  GgmlFormat(int dim, bool q8) : q8_(q8) {
    dim_ = dim;
    row_bytes_ = size_t(dim / 32) * (q8 ? 34 : 18);
    block_bytes_ = size_t(kBlockTokens) * row_bytes_;
  }
  void Encode(const float* rows, size_t stride, int first, int n, uint8_t* block) const override {
    for (int i = 0; i < n; ++i) {
      uint8_t* out = block + size_t(first + i) * row_bytes_;
      for (int b = 0; b < dim_ / 32; ++b) {
        const float* x = rows + i * stride + b * 32;
        if (q8_) {
          EncodeQ8(x, out + b * 34);
        } else {
          EncodeQ4(x, out + b * 18);
        }
      }
    }
  }
  void Decode(const uint8_t* block, int first, int n, float* rows) const override {
    kernels::DequantizeValues(q8_ ? kernels::TensorType::kQ8_0 : kernels::TensorType::kQ4_0,
                              block + size_t(first) * row_bytes_, int64_t(n) * dim_, rows);
  }
  void Scores(const PreparedQueries& q, const uint8_t* block, int n_tok, float* scores,
              int stride, KernelScratch& s) const override {
    s.rows.resize(size_t(kBlockTokens) * dim_);
    Decode(block, 0, n_tok, s.rows.data());
    kernels::AttnScoresF32(q.f32.data(), q.nq, s.rows.data(), n_tok, dim_, scores, stride);
  }
  void Accumulate(const float* p, int nq, int stride, const uint8_t* block, int n_tok,
                  float* acc, KernelScratch& s) const override {
    s.rows.resize(size_t(kBlockTokens) * dim_);
    Decode(block, 0, n_tok, s.rows.data());
    kernels::AttnAccumF32(p, nq, stride, s.rows.data(), n_tok, dim_, acc);
  }

 private:
  static void PutHalf(uint8_t* p, float f) {
    const uint16_t h = kernels::F32ToF16(f);
    std::memcpy(p, &h, 2);
  }
  // As ggml's quantize_row_q8_0_reference: d = max|x| / 127, q = round(x / d).
  static void EncodeQ8(const float* x, uint8_t* out) {
    float amax = 0;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127.0f;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    PutHalf(out, d);
    for (int j = 0; j < 32; ++j) out[2 + j] = uint8_t(int8_t(std::lround(x[j] * id)));
  }
  // As ggml's quantize_row_q4_0_reference: d = (signed value of largest magnitude) / -8,
  // q = min(15, trunc(x / d + 8.5)); low nibbles hold values 0..15, high nibbles 16..31.
  static void EncodeQ4(const float* x, uint8_t* out) {
    float amax = 0, max = 0;
    for (int j = 0; j < 32; ++j) {
      if (std::fabs(x[j]) > amax) {
        amax = std::fabs(x[j]);
        max = x[j];
      }
    }
    const float d = max / -8.0f;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    PutHalf(out, d);
    for (int j = 0; j < 16; ++j) {
      const int q0 = std::min(15, int(x[j] * id + 8.5f));
      const int q1 = std::min(15, int(x[j + 16] * id + 8.5f));
      out[2 + j] = uint8_t(q0 | (q1 << 4));
    }
  }
  bool q8_;
  size_t row_bytes_;
};

}  // namespace

std::unique_ptr<BlockFormat> MakeF32Format(int dim, TensorRole role) {
  return std::make_unique<PlainFormat<float>>(dim, role);
}
std::unique_ptr<BlockFormat> MakeF16Format(int dim, TensorRole role) {
  return std::make_unique<PlainFormat<uint16_t>>(dim, role);
}
std::unique_ptr<BlockFormat> MakeGgmlFormat(int dim, bool q8) {
  return std::make_unique<GgmlFormat>(dim, q8);
}

}  // namespace tqlm::kv
