// Append/encode of new K/V vectors into the paged cache: rotation (dense R, one output coordinate
// per thread), norm, Lloyd–Max index by the codec's thresholds, bit packing into the fragment
// order of paged_layout.h (atomicOr: tokens of one chunk share words), fp16 norm; sinks and the
// recent ring get the rotated vector in fp16.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/tq_attention.h"

namespace tqlm::cuda {
namespace {

struct AppendArgs {
  int n_kv_heads, dim, k_bits, v_bits;
  uint8_t* pages;
  size_t page_bytes;
  const int32_t* block_table;
  int max_chunks;
  int sink_tokens, recent_tokens, sink_chunks, f16_chunks;
  uint8_t* f16_region;
  size_t f16_page_bytes;
  const int32_t* seq;
  const int32_t* pos;
  const int32_t* seq_lens;  // lengths after this append
  const float* k;
  const float* v;
  const float* rot_k_t;
  const float* rot_v_t;
  const float* thr_k;
  const float* thr_v;
};

// Writes value y of (row r, coordinate j) as fp16 into one side of an fp16 page.
__device__ void StoreF16(uint8_t* side, bool is_k, int dim, int r, int j, float y) {
  const FieldPos fp = is_k ? KFieldPos(dim, r, j) : VFieldPos(r, j);
  const int words = LaneWords(dim, kF16Bits);
  __half* h = reinterpret_cast<__half*>(side);
  h[size_t(WordIndex(words, fp.lane, fp.field)) * 2 + fp.elem] = __float2half_rn(y);
}

__device__ void OrCode(uint8_t* side, bool is_k, int dim, int bits, int r, int j, uint32_t idx) {
  const FieldPos fp = is_k ? KFieldPos(dim, r, j) : VFieldPos(r, j);
  const int words = LaneWords(dim, bits);
  uint32_t* w = reinterpret_cast<uint32_t*>(side);
  const int off = fp.field * 2 * bits + fp.elem * bits;
  const int wi = off / 32, sh = off % 32;
  atomicOr(w + WordIndex(words, fp.lane, wi), idx << sh);
  if (sh + bits > 32) atomicOr(w + WordIndex(words, fp.lane, wi + 1), idx >> (32 - sh));
}

// One block per (token, KV head); blockDim = dim.
__global__ void AppendKernel(AppendArgs a) {
  extern __shared__ float sh[];  // x[dim], partial sums[32]
  float* xs = sh;
  float* red = sh + a.dim;
  const int token = blockIdx.x / a.n_kv_heads, h = blockIdx.x % a.n_kv_heads;
  const int t = threadIdx.x, dim = a.dim;
  const int b = a.seq[token], p = a.pos[token];
  for (int side = 0; side < 2; ++side) {
    const bool is_k = side == 0;
    const float* x = (is_k ? a.k : a.v) + (size_t(token) * a.n_kv_heads + h) * dim;
    const float* rot_t = is_k ? a.rot_k_t : a.rot_v_t;
    const int bits = is_k ? a.k_bits : a.v_bits;
    xs[t] = x[t];
    __syncthreads();
    float y = 0;
    for (int i = 0; i < dim; ++i) y = fmaf(rot_t[size_t(i) * dim + t], xs[i], y);
    float sq = xs[t] * xs[t];
    for (int o = 16; o > 0; o >>= 1) sq += __shfl_xor_sync(0xffffffffu, sq, o);
    if (t % 32 == 0) red[t / 32] = sq;
    __syncthreads();
    float norm2 = 0;
    for (int w = 0; w < dim / 32; ++w) norm2 += red[w];
    const float norm = sqrtf(norm2);

    if (p < a.sink_tokens) {
      uint8_t* page = a.f16_region +
          ((size_t(b) * a.f16_chunks + p / kChunkTokens) * a.n_kv_heads + h) * a.f16_page_bytes;
      StoreF16(is_k ? page : page + VCodesOffset(dim, kF16Bits), is_k, dim, p % kChunkTokens, t, y);
    } else {
      const int q = p - a.sink_tokens;
      // Only the last `recent` tokens of the sequence go to the ring: a long prefill would
      // otherwise write several tokens to one slot in the same launch.
      if (a.recent_tokens > 0 && p >= a.seq_lens[b] - a.recent_tokens) {
        const int slot = q % a.recent_tokens;
        uint8_t* page = a.f16_region +
            ((size_t(b) * a.f16_chunks + a.sink_chunks + slot / kChunkTokens) * a.n_kv_heads + h) *
                a.f16_page_bytes;
        StoreF16(is_k ? page : page + VCodesOffset(dim, kF16Bits), is_k, dim, slot % kChunkTokens,
                 t, y);
      }
      const int c = q / kChunkTokens, r = q % kChunkTokens;
      uint8_t* page = a.pages + (size_t(a.block_table[size_t(b) * a.max_chunks + c]) * a.n_kv_heads + h) *
                                    a.page_bytes;
      uint8_t* codes = is_k ? page : page + VCodesOffset(dim, a.k_bits);
      if (!IsCompressed(bits)) {
        StoreF16(codes, is_k, dim, r, t, y);
      } else {
        const float u = norm > 0 ? y / norm : 0.0f;
        const float* thr = is_k ? a.thr_k : a.thr_v;
        uint32_t idx = 0;
        for (int i = 0; i < (1 << bits) - 1; ++i) idx += thr[i] < u ? 1u : 0u;
        OrCode(codes, is_k, dim, bits, r, t, idx);
        if (t == 0) {
          const size_t off = is_k ? KNormOffset(dim, a.k_bits, a.v_bits) : VNormOffset(dim, a.k_bits, a.v_bits);
          reinterpret_cast<__half*>(page + off)[r] = __float2half_rn(norm);
        }
      }
    }
    __syncthreads();  // xs and red are reused by the V side
  }
}

}  // namespace

void LaunchAppend(const CacheView& c, const DeviceTables& t, int n, const int32_t* seq,
                  const int32_t* pos, const int32_t* seq_lens, const float* k, const float* v,
                  void* stream) {
  if (n <= 0) return;
  if (c.dim != t.dim || c.k_bits != t.k_bits || c.v_bits != t.v_bits) {
    throw Error("cuda: cache geometry does not match the codec tables");
  }
  AppendArgs a{};
  a.n_kv_heads = c.n_kv_heads, a.dim = c.dim, a.k_bits = c.k_bits, a.v_bits = c.v_bits;
  a.pages = c.pages, a.page_bytes = c.PageBytes();
  a.block_table = c.block_table, a.max_chunks = c.max_chunks;
  a.sink_tokens = c.sink_tokens, a.recent_tokens = c.recent_tokens;
  a.sink_chunks = c.SinkChunks(), a.f16_chunks = c.F16Chunks();
  a.f16_region = c.f16_region, a.f16_page_bytes = c.F16PageBytes();
  a.seq = seq, a.pos = pos, a.seq_lens = seq_lens, a.k = k, a.v = v;
  a.rot_k_t = t.rot_k_t, a.rot_v_t = t.rot_v_t, a.thr_k = t.thr_k, a.thr_v = t.thr_v;
  const size_t smem = (c.dim + 32) * sizeof(float);
  AppendKernel<<<n * c.n_kv_heads, c.dim, smem, static_cast<cudaStream_t>(stream)>>>(a);
  TQLM_CUDA_CHECK(cudaGetLastError());
}

}  // namespace tqlm::cuda
