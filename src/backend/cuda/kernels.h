// Host-side entry points of the CUDA backend's kernels (the .cu files), so that the backend's
// C++ code never includes CUDA device headers. Every pointer is device memory unless named
// *_host; every launch goes on `stream` (a cudaStream_t) and is checked.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/cpu/matmul.h"

namespace tqlm::cuda_backend {

// True when LaunchMatMul / LaunchEmbed handle the format.
bool FormatSupported(kernels::TensorType type);

// y[t][r] = sum_c W[r][c] x[t][c] for t < n, r < w.rows. Weights decoded to fp16 in shared
// memory, activations rounded to fp16, products on tensor cores (mma.m16n8k16) accumulated in
// fp32 over k in one fixed order: a token's result does not depend on n or on the other
// tokens of the call (n <= 8 and n > 8 run different tilings of the same arithmetic).
void LaunchMatMul(const kernels::WeightView& w, const float* x, int n, float* y, void* stream);

// x[t] = scale * row tokens[t] of `table` (tokens: device ints, already range-checked).
void LaunchEmbed(const kernels::WeightView& table, const int32_t* tokens, int n, float scale,
                 float* x, void* stream);

void LaunchRmsNorm(const float* x, const float* weight, float offset, float eps, int rows, int d,
                   float* out, void* stream);
void LaunchRope(float* x, int n, int n_heads, int head_dim, int rot_dim, const int32_t* pos,
                const float* inv_freq, bool neox, void* stream);
void LaunchSiluMul(float* a, const float* b, size_t n, void* stream);
void LaunchGeluMul(float* a, const float* b, size_t n, void* stream);
void LaunchAdd(float* a, const float* b, size_t n, void* stream);
void LaunchAddRows(float* a, const float* bias, int n, int d, void* stream);
void LaunchSoftcap(float* a, float cap, size_t n, void* stream);

// --- f16 KV cache -------------------------------------------------------------------------
// One sequence's K and V of one layer: [capacity][n_kv_heads][head_dim] halves, token i at row i.
struct F16KvLayer {
  uint16_t* k = nullptr;
  uint16_t* v = nullptr;
};

// Which sequence and position each token of a step has. seq_tables[s] is sequence s's device
// table of per-layer buffers ([n_layers] F16KvLayer).
struct F16StepView {
  const F16KvLayer* const* seq_tables = nullptr;
  const int32_t* tok_seq = nullptr;  // [n] sequence of token t
  const int32_t* tok_pos = nullptr;  // [n] position of token t (also its row in the cache)
  int n = 0;
  int layer = 0;
};

// Stores the step's k, v ([n][kv_dim] floats) as halves at row tok_pos[t] of the layer's
// buffers of sequence tok_seq[t].
void LaunchF16Append(const F16StepView& step, int kv_dim, const float* k, const float* v,
                     void* stream);

// Keys per split of the attention: a fixed size, so the reduction order of a query's softmax
// depends only on its own position, never on the batch or the chunking.
inline constexpr int kAttnSplit = 256;
// Query heads per KV head the attention kernel takes (grouped-query attention).
inline constexpr int kMaxGroup = 16;
// Head sizes the attention kernel is built for.
bool AttentionHeadDimSupported(int head_dim);

struct F16AttendArgs {
  F16StepView step;          // query t attends keys [lo, tok_pos[t]] of its sequence
  bool one_sequence = true;  // every token of the step belongs to sequence 0 (a prefill chunk)
  int max_pos = 0;           // the largest tok_pos + 1 (bounds the grid)
  int n_heads = 0, n_kv_heads = 0, head_dim = 0;
  int window = 0;            // > 0: keys in (tok_pos - window, tok_pos] only
  float scale = 1;
  const float* q = nullptr;  // [n][n_heads][dim]
  float* out = nullptr;      // [n][n_heads][dim]
  float* partial = nullptr;  // workspace of F16AttendWorkspaceFloats floats
};
size_t F16AttendWorkspaceFloats(int n, int n_heads, int head_dim, int max_pos);
// Throws tqlm::Error for geometries the kernel does not take (AttentionHeadDimSupported, more
// than kMaxGroup query heads per KV head).
void LaunchF16Attend(const F16AttendArgs& args, void* stream);

}  // namespace tqlm::cuda_backend
