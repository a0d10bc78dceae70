// Full-precision (f32, f16) and llama.cpp affine (q8_0, q4_0) block layouts. All are
// token-major: a block is kBlockTokens rows, each row one token's head vector in that format.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/cpu/attention_raw.h"
#include "kernels/cpu/dequant.h"
#include "kernels/tensor_format.h"
#include "kv/block_format_internal.h"

namespace tqlm::kv {
namespace {

class F32Format final : public BlockFormat {
 public:
  explicit F32Format(int dim) {
    dim_ = dim;
    block_bytes_ = size_t(kBlockTokens) * dim * sizeof(float);
    partial_writes_ = true;
  }
  void Encode(const float* rows, size_t stride, int first, int n, uint8_t* block) const override {
    float* out = reinterpret_cast<float*>(block) + size_t(first) * dim_;
    for (int i = 0; i < n; ++i) std::memcpy(out + size_t(i) * dim_, rows + i * stride, dim_ * 4);
  }
  void Decode(const uint8_t* block, int first, int n, float* rows) const override {
    std::memcpy(rows, block + size_t(first) * dim_ * 4, size_t(n) * dim_ * 4);
  }
  void Scores(const PreparedQueries& q, const uint8_t* block, int n_tok, float* scores,
              int stride, KernelScratch&) const override {
    kernels::AttnScoresF32(q.f32.data(), q.nq, reinterpret_cast<const float*>(block), n_tok,
                           dim_, scores, stride);
  }
  void Accumulate(const float* p, int nq, int stride, const uint8_t* block, int n_tok,
                  float* acc, KernelScratch&) const override {
    kernels::AttnAccumF32(p, nq, stride, reinterpret_cast<const float*>(block), n_tok, dim_, acc);
  }
};

class F16Format final : public BlockFormat {
 public:
  explicit F16Format(int dim) {
    dim_ = dim;
    block_bytes_ = size_t(kBlockTokens) * dim * sizeof(uint16_t);
    partial_writes_ = true;
  }
  void Encode(const float* rows, size_t stride, int first, int n, uint8_t* block) const override {
    uint16_t* out = reinterpret_cast<uint16_t*>(block) + size_t(first) * dim_;
    for (int i = 0; i < n; ++i)
      for (int j = 0; j < dim_; ++j)
        out[size_t(i) * dim_ + j] = kernels::F32ToF16(rows[i * stride + j]);
  }
  void Decode(const uint8_t* block, int first, int n, float* rows) const override {
    const uint16_t* in = reinterpret_cast<const uint16_t*>(block) + size_t(first) * dim_;
    for (size_t i = 0; i < size_t(n) * dim_; ++i) rows[i] = kernels::F16ToF32(in[i]);
  }
  void Scores(const PreparedQueries& q, const uint8_t* block, int n_tok, float* scores,
              int stride, KernelScratch&) const override {
    kernels::AttnScoresF16(q.f32.data(), q.nq, reinterpret_cast<const uint16_t*>(block), n_tok,
                           dim_, scores, stride);
  }
  void Accumulate(const float* p, int nq, int stride, const uint8_t* block, int n_tok,
                  float* acc, KernelScratch&) const override {
    kernels::AttnAccumF16(p, nq, stride, reinterpret_cast<const uint16_t*>(block), n_tok, dim_,
                          acc);
  }
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

std::unique_ptr<BlockFormat> MakeF32Format(int dim) { return std::make_unique<F32Format>(dim); }
std::unique_ptr<BlockFormat> MakeF16Format(int dim) { return std::make_unique<F16Format>(dim); }
std::unique_ptr<BlockFormat> MakeGgmlFormat(int dim, bool q8) {
  return std::make_unique<GgmlFormat>(dim, q8);
}

}  // namespace tqlm::kv
