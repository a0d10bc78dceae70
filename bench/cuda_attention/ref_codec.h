// Host reference for the GPU kernels: codec tables (the real codec's, read from codec_tables.bin
// that export_codec_tables.cc writes on a machine where the codec builds; else a stand-in with
// the same math: randomized Walsh–Hadamard rotation, Gaussian Lloyd–Max codebook) and the K/V
// values a decoder of those tables sees, in float64. export_codec_tables.cc checks on the CPU
// that this decode equals TurboQuantCodec::Decode(Encode(x)).
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/cuda/tq_attention.h"

namespace tqlm::cuda::ref {

// Tables for one (dim, K bits, V bits); bits = 16 gives an fp16 side. The codec's when
// $TQLM_CODEC_TABLES or the built-in path names a readable codec_tables.bin.
CodecTables MakeTables(int dim, int k_bits, int v_bits, bool identity_rotation = false);
const char* TablesSource();

// What the cache holds for vector x, decoded to the original domain in float64.
//   compressed side: |x|_fp16 * R^T levels[idx] (idx from the codec's thresholds)
//   fp16 side, sinks and recent tokens: R^T fp16(R x)
// idx (dim entries) and norm get the codes, for comparing with what the GPU wrote.
void DecodeCompressed(const CodecTables& t, bool is_k, const float* x, double* out,
                      std::vector<int>* idx, float* norm);
void DecodeF16(const CodecTables& t, bool is_k, const float* x, double* out);

float RoundF16(float x);

}  // namespace tqlm::cuda::ref
