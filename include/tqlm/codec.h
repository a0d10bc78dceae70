// TurboQuant vector codec (Zandieh et al., arXiv:2504.19874): the public face of src/codec/.
//
// A vector x in R^d is stored as its norm plus bit-packed Lloyd–Max indices of the randomly
// rotated unit direction (TurboQuant-MSE), optionally with a 1-bit QJL sketch of the residual
// (TurboQuant-prod, unbiased inner products). The codec knows nothing of models or caches:
// callers hand it float vectors and byte buffers of `layout().bytes_per_vector` bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

namespace tqlm::codec {

enum class Variant { kMse, kProd };
enum class NormFormat { kF16, kF32 };
// Which distribution the scalar codebook is optimal for: the exact marginal of one coordinate
// of a uniform point on the unit sphere in R^d, or its Gaussian N(0, 1/d) limit.
enum class CodebookKind { kSphere, kGaussian };

struct CodecConfig {
  // Head dimension: every power of two 16..1024, and B·nb with B the largest power of two
  // dividing it and nb <= B (48, 80, 96, 112, 160, 192, 224, 320, 384, ...). See docs/CODEC.md.
  int dim = 128;
  // Bits per coordinate: 1..8, or b + 0.5 (1.5 .. 7.5) where half of the rotated coordinates
  // get b + 1 bits. For kProd, `bits` is the total: (bits - 1) MSE bits + 1 QJL bit.
  double bits = 4;
  Variant variant = Variant::kMse;
  NormFormat norm = NormFormat::kF16;
  CodebookKind codebook = CodebookKind::kSphere;
  uint64_t seed = 0x7451'4d5f'726f'7431ull;  // fixed: rotations must match across runs
};

// Byte layout of one encoded vector. Computed from the config (see src/codec/layout.h);
// never hand-written. Sections in order: norm, packed MSE codes, [residual norm, QJL signs].
struct VectorLayout {
  int dim = 0;
  int hi_bits = 0;     // bits of coordinates [0, n_hi)
  int lo_bits = 0;     // bits of coordinates [n_hi, dim)
  int n_hi = 0;
  int qjl_bits = 0;    // number of QJL sign bits (0 for kMse, dim for kProd)
  size_t norm_offset = 0, norm_bytes = 0;
  size_t codes_offset = 0, codes_bytes = 0;
  size_t rnorm_offset = 0, rnorm_bytes = 0;
  size_t qjl_offset = 0, qjl_bytes = 0;
  size_t bytes_per_vector = 0;
  double bits_per_value() const { return 8.0 * double(bytes_per_vector) / dim; }
};

// Scalar Lloyd–Max quantizer for one coordinate: sorted reconstruction levels and the
// decision thresholds between them (midpoints). Symmetric about 0.
struct LloydMaxCodebook {
  int dim = 0;
  int bits = 0;
  CodebookKind kind = CodebookKind::kSphere;
  std::vector<float> levels;      // 2^bits values, ascending
  std::vector<float> thresholds;  // 2^bits - 1 values, ascending
  double distortion = 0;          // E[(t - Q(t))^2] per coordinate, times dim = unit-vector MSE
  // Solved once per (dim, bits, kind) to 1e-10 and cached for the life of the process.
  static const LloydMaxCodebook& Get(int dim, int bits, CodebookKind kind);
  int Quantize(float t) const;    // index of the nearest level
};

// Query prepared once for many compressed dot products: the rotated query and, for kProd,
// its QJL projection.
struct PreparedQuery {
  std::vector<float> rotated;  // H·D·q (dim floats)
  std::vector<float> sketch;   // S·(H·D·q) (dim floats, kProd only)
};

// All methods are const and thread-safe. Unsupported configs throw tqlm::Error.
class TurboQuantCodec {
 public:
  explicit TurboQuantCodec(const CodecConfig& config);
  ~TurboQuantCodec();
  TurboQuantCodec(TurboQuantCodec&&) noexcept;
  TurboQuantCodec& operator=(TurboQuantCodec&&) noexcept;

  const CodecConfig& config() const;
  const VectorLayout& layout() const;
  const LloydMaxCodebook& codebook_hi() const;
  const LloydMaxCodebook& codebook_lo() const;
  // kProd: the QJL matrix S (dim x dim, row-major, iid N(0,1), seeded) and the estimator's
  // scale √(π/2)/dim; empty / 0 for kMse. For kernels that re-implement Dot elsewhere (GPU).
  std::span<const float> qjl_matrix() const;
  float qjl_scale() const;

  // The fixed random orthogonal transform (randomized, block-wise Walsh–Hadamard) and its
  // inverse. In-place safe (in == out allowed).
  void Rotate(const float* in, float* out) const;
  void InverseRotate(const float* in, float* out) const;

  // One vector <-> `layout().bytes_per_vector` bytes.
  void Encode(const float* x, uint8_t* out) const;
  void Decode(const uint8_t* in, float* x) const;
  // Many vectors, contiguous (n * dim floats, n * bytes_per_vector bytes). SIMD.
  void EncodeBatch(const float* x, size_t n, uint8_t* out) const;

  void PrepareQuery(const float* q, PreparedQuery* out) const;
  // <q, x̂> from the compressed bytes alone, without decoding x.
  float Dot(const PreparedQuery& q, const uint8_t* code) const;
  // Dots against n contiguous codes (SIMD).
  void DotBatch(const PreparedQuery& q, const uint8_t* codes, size_t n, float* out) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tqlm::codec
