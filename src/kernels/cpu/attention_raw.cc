// Highway kernels of attention over full-precision K/V rows (see attention_raw.h).
//
// Scores: lanes run across head dimensions and each token's dot products end in a horizontal
// sum; two tokens at a time give 2 x nq independent FMA chains. Accumulation: lanes across
// dimensions, a 32-dimension strip of every query row stays in registers while the block's
// tokens stream through, so acc is read and written once per block.
#include "kernels/cpu/attention_raw.h"

#include <algorithm>
#include <cmath>
#include <limits>

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/cpu/attention_raw.cc"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>
#include <hwy/contrib/math/math-inl.h>

HWY_BEFORE_NAMESPACE();
namespace tqlm::kernels {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

using DF = hn::ScalableTag<float>;
using VF = hn::Vec<DF>;

HWY_INLINE VF LoadRow(DF df, const float* p) { return hn::LoadU(df, p); }
HWY_INLINE VF LoadRow(DF df, const uint16_t* p) {
  const hn::Rebind<hwy::float16_t, DF> dh;
  return hn::PromoteTo(df, hn::LoadU(dh, reinterpret_cast<const hwy::float16_t*>(p)));
}

template <int NQ, typename T>
HWY_INLINE void ScoresTile(const float* q, const T* k, int n_tok, int d, float* scores,
                           int stride) {
  const DF df;
  const int N = int(hn::Lanes(df));
  int t = 0;
  for (; t + 2 <= n_tok; t += 2) {
    const T* k0 = k + size_t(t) * d;
    const T* k1 = k0 + d;
    VF a0[NQ], a1[NQ];
    for (int i = 0; i < NQ; ++i) a0[i] = a1[i] = hn::Zero(df);
    for (int j = 0; j < d; j += N) {
      const VF x0 = LoadRow(df, k0 + j), x1 = LoadRow(df, k1 + j);
      for (int i = 0; i < NQ; ++i) {
        const VF qv = hn::LoadU(df, q + size_t(i) * d + j);
        a0[i] = hn::MulAdd(qv, x0, a0[i]);
        a1[i] = hn::MulAdd(qv, x1, a1[i]);
      }
    }
    for (int i = 0; i < NQ; ++i) {
      scores[size_t(i) * stride + t] = hn::GetLane(hn::SumOfLanes(df, a0[i]));
      scores[size_t(i) * stride + t + 1] = hn::GetLane(hn::SumOfLanes(df, a1[i]));
    }
  }
  for (; t < n_tok; ++t) {
    const T* k0 = k + size_t(t) * d;
    VF a0[NQ];
    for (int i = 0; i < NQ; ++i) a0[i] = hn::Zero(df);
    for (int j = 0; j < d; j += N) {
      const VF x0 = LoadRow(df, k0 + j);
      for (int i = 0; i < NQ; ++i) a0[i] = hn::MulAdd(hn::LoadU(df, q + size_t(i) * d + j), x0, a0[i]);
    }
    for (int i = 0; i < NQ; ++i) scores[size_t(i) * stride + t] = hn::GetLane(hn::SumOfLanes(df, a0[i]));
  }
}

template <typename T>
void Scores(const float* q, int nq, const T* k, int n_tok, int d, float* scores, int stride) {
  for (int i = 0; i < nq; i += 4) {
    const float* qi = q + size_t(i) * d;
    float* si = scores + size_t(i) * stride;
    switch (std::min(4, nq - i)) {
      case 4: ScoresTile<4>(qi, k, n_tok, d, si, stride); break;
      case 3: ScoresTile<3>(qi, k, n_tok, d, si, stride); break;
      case 2: ScoresTile<2>(qi, k, n_tok, d, si, stride); break;
      default: ScoresTile<1>(qi, k, n_tok, d, si, stride); break;
    }
  }
}

void ScoresF32(const float* q, int nq, const float* k, int n_tok, int d, float* scores,
               int stride) {
  Scores(q, nq, k, n_tok, d, scores, stride);
}
void ScoresF16(const float* q, int nq, const uint16_t* k, int n_tok, int d, float* scores,
               int stride) {
  Scores(q, nq, k, n_tok, d, scores, stride);
}

// CH strips of N dims for NQ query rows, all tokens of the block.
template <int NQ, int CH, typename T>
HWY_INLINE void AccumStrip(const float* p, int stride, const T* v, int n_tok, int d, int j,
                           float* acc) {
  const DF df;
  const int N = int(hn::Lanes(df));
  VF a[NQ][CH];
  for (int i = 0; i < NQ; ++i)
    for (int c = 0; c < CH; ++c) a[i][c] = hn::LoadU(df, acc + size_t(i) * d + j + c * N);
  for (int t = 0; t < n_tok; ++t) {
    const T* vt = v + size_t(t) * d + j;
    VF x[CH];
    for (int c = 0; c < CH; ++c) x[c] = LoadRow(df, vt + c * N);
    for (int i = 0; i < NQ; ++i) {
      const VF w = hn::Set(df, p[size_t(i) * stride + t]);
      for (int c = 0; c < CH; ++c) a[i][c] = hn::MulAdd(w, x[c], a[i][c]);
    }
  }
  for (int i = 0; i < NQ; ++i)
    for (int c = 0; c < CH; ++c) hn::StoreU(a[i][c], df, acc + size_t(i) * d + j + c * N);
}

template <int NQ, typename T>
HWY_INLINE void AccumTile(const float* p, int stride, const T* v, int n_tok, int d, float* acc) {
  const DF df;
  const int N = int(hn::Lanes(df));
  int j = 0;
  for (; j + 2 * N <= d; j += 2 * N) AccumStrip<NQ, 2>(p, stride, v, n_tok, d, j, acc);
  for (; j < d; j += N) AccumStrip<NQ, 1>(p, stride, v, n_tok, d, j, acc);
}

template <typename T>
void Accum(const float* p, int nq, int stride, const T* v, int n_tok, int d, float* acc) {
  for (int i = 0; i < nq; i += 4) {
    const float* pi = p + size_t(i) * stride;
    float* ai = acc + size_t(i) * d;
    switch (std::min(4, nq - i)) {
      case 4: AccumTile<4>(pi, stride, v, n_tok, d, ai); break;
      case 3: AccumTile<3>(pi, stride, v, n_tok, d, ai); break;
      case 2: AccumTile<2>(pi, stride, v, n_tok, d, ai); break;
      default: AccumTile<1>(pi, stride, v, n_tok, d, ai); break;
    }
  }
}

void AccumF32(const float* p, int nq, int stride, const float* v, int n_tok, int d, float* acc) {
  Accum(p, nq, stride, v, n_tok, d, acc);
}
void AccumF16(const float* p, int nq, int stride, const uint16_t* v, int n_tok, int d,
              float* acc) {
  Accum(p, nq, stride, v, n_tok, d, acc);
}

void SoftmaxUpdate(float* scores, int nq, int stride, int n_tok, float* m, float* l, float* acc,
                   int d) {
  const DF df;
  const int N = int(hn::Lanes(df));
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  for (int i = 0; i < nq; ++i) {
    float* s = scores + size_t(i) * stride;
    float bmax = kNegInf;
    int t = 0;
    if (n_tok >= N) {
      VF vmax = hn::Set(df, kNegInf);
      for (; t + N <= n_tok; t += N) vmax = hn::Max(vmax, hn::LoadU(df, s + t));
      bmax = hn::GetLane(hn::MaxOfLanes(df, vmax));
    }
    for (; t < n_tok; ++t) bmax = std::max(bmax, s[t]);
    if (bmax == kNegInf) {
      std::fill(s, s + n_tok, 0.0f);
      continue;
    }
    const float m_new = std::max(m[i], bmax);
    const float corr = m[i] == kNegInf ? 0.0f : std::exp(m[i] - m_new);
    m[i] = m_new;
    float* a = acc + size_t(i) * d;
    if (corr != 1.0f) {
      const VF vc = hn::Set(df, corr);
      for (int j = 0; j < d; j += N) hn::StoreU(hn::Mul(vc, hn::LoadU(df, a + j)), df, a + j);
    }
    const VF vm = hn::Set(df, m_new);
    VF vsum = hn::Zero(df);
    t = 0;
    for (; t + N <= n_tok; t += N) {
      // exp(-inf) = 0 for masked entries.
      const VF x = hn::Sub(hn::LoadU(df, s + t), vm);
      const VF e = hn::IfThenZeroElse(hn::Eq(x, hn::Set(df, kNegInf)), hn::Exp(df, x));
      hn::StoreU(e, df, s + t);
      vsum = hn::Add(vsum, e);
    }
    float sum = hn::GetLane(hn::SumOfLanes(df, vsum));
    for (; t < n_tok; ++t) {
      s[t] = std::exp(s[t] - m_new);
      sum += s[t];
    }
    l[i] = l[i] * corr + sum;
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace tqlm::kernels
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace tqlm::kernels {

HWY_EXPORT(ScoresF32);
HWY_EXPORT(ScoresF16);
HWY_EXPORT(AccumF32);
HWY_EXPORT(AccumF16);
HWY_EXPORT(SoftmaxUpdate);

void AttnScoresF32(const float* q, int nq, const float* k, int n_tok, int d, float* scores,
                   int stride) {
  HWY_DYNAMIC_DISPATCH(ScoresF32)(q, nq, k, n_tok, d, scores, stride);
}
void AttnScoresF16(const float* q, int nq, const uint16_t* k, int n_tok, int d, float* scores,
                   int stride) {
  HWY_DYNAMIC_DISPATCH(ScoresF16)(q, nq, k, n_tok, d, scores, stride);
}
void AttnAccumF32(const float* p, int nq, int stride, const float* v, int n_tok, int d,
                  float* acc) {
  HWY_DYNAMIC_DISPATCH(AccumF32)(p, nq, stride, v, n_tok, d, acc);
}
void AttnAccumF16(const float* p, int nq, int stride, const uint16_t* v, int n_tok, int d,
                  float* acc) {
  HWY_DYNAMIC_DISPATCH(AccumF16)(p, nq, stride, v, n_tok, d, acc);
}
void AttnSoftmaxUpdate(float* scores, int nq, int stride, int n_tok, float* m, float* l,
                       float* acc, int d) {
  HWY_DYNAMIC_DISPATCH(SoftmaxUpdate)(scores, nq, stride, n_tok, m, l, acc, d);
}

}  // namespace tqlm::kernels
#endif  // HWY_ONCE
