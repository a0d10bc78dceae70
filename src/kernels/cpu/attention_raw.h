// Building blocks of attention over full-precision K/V rows (f32 or f16), for one KV head and a
// tile of queries: scores of a block of tokens, the online-softmax update, and the weighted sum
// of V rows. Highway, dispatched once per call to the best target of this CPU.
//
// Shapes: q is [nq][d] (already multiplied by the attention scale); K and V blocks are
// [n_tok][d] rows; scores/probabilities are [nq][stride]; acc is [nq][d]. d is a multiple of
// 16 (every KV format checks this; the kernels read whole vectors); n_tok and nq are anything
// from 1 (tails are handled).
//
// Non-finite values behave the same on every SIMD target (tests/simd_targets_test.cc): f16
// infinities and NaNs read as such (also where the CPU has no F16C), products and sums
// propagate them as IEEE arithmetic does, and the softmax treats -inf as masked and turns a
// NaN or +inf score into a NaN denominator for its row (so that row's output is NaN: a broken
// score is never silently dropped).
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/cpu/prefetch.h"

namespace tqlm::kernels {

// scores[i * stride + t] = <q_i, k_t> for K stored transposed: k[j * 64 + t] is coordinate j
// of token t (blocks of 64 tokens; lanes run across tokens, so no horizontal sums). All 64
// token slots are read; scores past n_tok are meaningless. `next` is prefetched on the way.
void AttnScoresF32T(const float* q, int nq, const float* k, int d, float* scores, int stride,
                    PrefetchRange next = {});
void AttnScoresF16T(const float* q, int nq, const uint16_t* k, int d, float* scores, int stride,
                    PrefetchRange next = {});

// scores[i * stride + t] = <q_i, k_t> for row-major K ([n_tok][d]).
void AttnScoresF32(const float* q, int nq, const float* k, int n_tok, int d, float* scores,
                   int stride);
void AttnScoresF16(const float* q, int nq, const uint16_t* k, int n_tok, int d, float* scores,
                   int stride);

// acc[i * d + j] += sum_t p[i * stride + t] * v_t[j]; `next` is prefetched on the way.
void AttnAccumF32(const float* p, int nq, int stride, const float* v, int n_tok, int d,
                  float* acc, PrefetchRange next = {});
void AttnAccumF16(const float* p, int nq, int stride, const uint16_t* v, int n_tok, int d,
                  float* acc, PrefetchRange next = {});

// Online softmax over one block of scores in base 2 (scores are logits times log2(e); masked
// entries are -inf). For each row i: the running max m[i] and denominator l[i] absorb the
// block, acc row i (d floats) is rescaled to the new max, and the scores are replaced by
// 2^(score - new max). A row whose block is all masked leaves m, l, acc unchanged and gets
// zeros. 2^x comes from a degree-7 polynomial (relative error ~1e-7, float rounding).
void AttnSoftmaxUpdate(float* scores, int nq, int stride, int n_tok, float* m, float* l,
                       float* acc, int d);

}  // namespace tqlm::kernels
