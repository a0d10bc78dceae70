// Highway kernels of attention over full-precision K/V rows (see attention_raw.h).
//
// Scores: lanes run across head dimensions and each token's dot products end in a horizontal
// sum; two tokens at a time give 2 x nq independent FMA chains. Accumulation: lanes across
// dimensions, a 32-dimension strip of every query row stays in registers while the block's
// tokens stream through, so acc is read and written once per block.
#include "kernels/cpu/attention_raw.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/cpu/attention_raw.cc"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

HWY_BEFORE_NAMESPACE();
namespace tqlm::kernels {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

using DF = hn::ScalableTag<float>;
using VF = hn::Vec<DF>;

HWY_INLINE VF LoadRow(DF df, const float* p) { return hn::LoadU(df, p); }
HWY_INLINE VF LoadRow(DF df, const uint16_t* p) {
#if HWY_TARGET == HWY_SSE4 || HWY_TARGET == HWY_SSSE3 || HWY_TARGET == HWY_SCALAR || \
    HWY_TARGET == HWY_EMU128
  // No F16C: Highway's software conversion reads the infinities and NaNs of a half (exponent
  // 31) as finite numbers 2^16 (1 + m/1024), so an f16 cache entry that overflowed would give
  // a finite score here and a non-finite one on AVX2/AVX-512. Converted here instead: the
  // float with bits (h & 0x7fff) << 13 is the half's magnitude times 2^-112 (subnormals too),
  // and exponent 31 becomes the float's 255.
  const hn::RebindToUnsigned<DF> du;
  const hn::Rebind<uint16_t, DF> du16;
  const auto h = hn::PromoteTo(du, hn::LoadU(du16, p));
  const auto mag = hn::ShiftLeft<13>(hn::And(h, hn::Set(du, 0x7fffu)));
  const auto exp_all_ones = hn::Set(du, 0x7c00u << 13);
  const VF finite = hn::Mul(hn::BitCast(df, mag), hn::Set(df, 0x1p112f));
  const VF special = hn::BitCast(df, hn::Or(mag, hn::Set(du, 0x7f800000u)));
  const auto is_special = hn::RebindMask(df, hn::Eq(hn::And(mag, exp_all_ones), exp_all_ones));
  const auto sign = hn::BitCast(df, hn::ShiftLeft<16>(hn::And(h, hn::Set(du, 0x8000u))));
  return hn::Or(hn::IfThenElse(is_special, special, finite), sign);
#else
  const hn::Rebind<hwy::float16_t, DF> dh;
  return hn::PromoteTo(df, hn::LoadU(dh, reinterpret_cast<const hwy::float16_t*>(p)));
#endif
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

// Transposed K: 4 groups of N tokens x NQ queries in registers, one coordinate at a time.
template <int NQ, typename T>
HWY_INLINE void ScoresTileT(const float* q, const T* k, int d, float* scores, int stride,
                            PrefetchTrickle& pf) {
  const DF df;
  const int N = int(hn::Lanes(df));
  for (int t0 = 0; t0 < 64; t0 += 4 * N) {
    VF a[NQ][4];
    for (int i = 0; i < NQ; ++i)
      for (int g = 0; g < 4; ++g) a[i][g] = hn::Zero(df);
    for (int j = 0; j < d; ++j) {
      pf.Step();
      const T* kj = k + size_t(j) * 64 + t0;
      VF x[4];
      for (int g = 0; g < 4; ++g) x[g] = LoadRow(df, kj + g * N);
      for (int i = 0; i < NQ; ++i) {
        const VF qv = hn::Set(df, q[size_t(i) * d + j]);
        for (int g = 0; g < 4; ++g) a[i][g] = hn::MulAdd(qv, x[g], a[i][g]);
      }
    }
    for (int i = 0; i < NQ; ++i)
      for (int g = 0; g < 4; ++g) hn::StoreU(a[i][g], df, scores + size_t(i) * stride + t0 + g * N);
  }
}

// Rows per tile. Each tile converts and loads a block's rows once for all its rows, so GQA
// groups of 5-8 query heads (Qwen2.5: 6) run as one tile where there are registers for it:
// with 32 vector registers, 6 rows x 4 token groups of scores, 8 rows x 2 strips of sums
// (with 16, tiles of 4). TQLM_RAW_TILE_ROWS=N caps both, for A/B measurements.
#if HWY_TARGET <= HWY_AVX3
constexpr int kScoreTileRows = 6, kAccumTileRows = 8;
#else
constexpr int kScoreTileRows = 4, kAccumTileRows = 4;
#endif

HWY_INLINE int TileRowsCap() {
  static const int cap = [] {
    const char* e = std::getenv("TQLM_RAW_TILE_ROWS");
    return e ? std::clamp(std::atoi(e), 1, 8) : 8;
  }();
  return cap;
}

template <typename T>
void ScoresT(const float* q, int nq, const T* k, int d, float* scores, int stride,
             PrefetchRange next) {
  const DF df;
  // The first tile's coordinate loop carries the prefetch of the next block.
  PrefetchTrickle pf(next, d * (64 / (4 * int(hn::Lanes(df)))));
  const int rows = std::min(kScoreTileRows, TileRowsCap());
  for (int i = 0; i < nq; i += rows) {
    const float* qi = q + size_t(i) * d;
    float* si = scores + size_t(i) * stride;
    switch (std::min(rows, nq - i)) {
      case 6:
        if constexpr (kScoreTileRows >= 6) ScoresTileT<6>(qi, k, d, si, stride, pf);
        break;
      case 5:
        if constexpr (kScoreTileRows >= 5) ScoresTileT<5>(qi, k, d, si, stride, pf);
        break;
      case 4: ScoresTileT<4>(qi, k, d, si, stride, pf); break;
      case 3: ScoresTileT<3>(qi, k, d, si, stride, pf); break;
      case 2: ScoresTileT<2>(qi, k, d, si, stride, pf); break;
      default: ScoresTileT<1>(qi, k, d, si, stride, pf); break;
    }
  }
}

void ScoresF32T(const float* q, int nq, const float* k, int d, float* scores, int stride,
                PrefetchRange next) {
  ScoresT(q, nq, k, d, scores, stride, next);
}
void ScoresF16T(const float* q, int nq, const uint16_t* k, int d, float* scores, int stride,
                PrefetchRange next) {
  ScoresT(q, nq, k, d, scores, stride, next);
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
                           float* acc, PrefetchTrickle& pf) {
  const DF df;
  const int N = int(hn::Lanes(df));
  VF a[NQ][CH];
  for (int i = 0; i < NQ; ++i)
    for (int c = 0; c < CH; ++c) a[i][c] = hn::LoadU(df, acc + size_t(i) * d + j + c * N);
  for (int t = 0; t < n_tok; ++t) {
    pf.Step();
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
HWY_INLINE void AccumTile(const float* p, int stride, const T* v, int n_tok, int d, float* acc,
                          PrefetchTrickle& pf) {
  const DF df;
  const int N = int(hn::Lanes(df));
  int j = 0;
  for (; j + 2 * N <= d; j += 2 * N) AccumStrip<NQ, 2>(p, stride, v, n_tok, d, j, acc, pf);
  for (; j < d; j += N) AccumStrip<NQ, 1>(p, stride, v, n_tok, d, j, acc, pf);
}

template <typename T>
void Accum(const float* p, int nq, int stride, const T* v, int n_tok, int d, float* acc,
           PrefetchRange next) {
  const DF df;
  // The first tile's token loops (one per strip of 2N dims) carry the next block's prefetch.
  PrefetchTrickle pf(next, n_tok * std::max(1, d / (2 * int(hn::Lanes(df)))));
  const int rows = std::min(kAccumTileRows, TileRowsCap());
  for (int i = 0; i < nq; i += rows) {
    const float* pi = p + size_t(i) * stride;
    float* ai = acc + size_t(i) * d;
    switch (std::min(rows, nq - i)) {
      case 8:
        if constexpr (kAccumTileRows >= 8) AccumTile<8>(pi, stride, v, n_tok, d, ai, pf);
        break;
      case 7:
        if constexpr (kAccumTileRows >= 7) AccumTile<7>(pi, stride, v, n_tok, d, ai, pf);
        break;
      case 6:
        if constexpr (kAccumTileRows >= 6) AccumTile<6>(pi, stride, v, n_tok, d, ai, pf);
        break;
      case 5:
        if constexpr (kAccumTileRows >= 5) AccumTile<5>(pi, stride, v, n_tok, d, ai, pf);
        break;
      case 4: AccumTile<4>(pi, stride, v, n_tok, d, ai, pf); break;
      case 3: AccumTile<3>(pi, stride, v, n_tok, d, ai, pf); break;
      case 2: AccumTile<2>(pi, stride, v, n_tok, d, ai, pf); break;
      default: AccumTile<1>(pi, stride, v, n_tok, d, ai, pf); break;
    }
  }
}

void AccumF32(const float* p, int nq, int stride, const float* v, int n_tok, int d, float* acc,
              PrefetchRange next) {
  Accum(p, nq, stride, v, n_tok, d, acc, next);
}
void AccumF16(const float* p, int nq, int stride, const uint16_t* v, int n_tok, int d,
              float* acc, PrefetchRange next) {
  Accum(p, nq, stride, v, n_tok, d, acc, next);
}

// 2^x for x <= 0, and 0 for x < -126 (masked scores are -inf): results that would be
// denormal are flushed, because the weighted sums that take them run ~100x slower on denormal
// operands. x = n + f with n = floor(x), f in [0, 1); 2^f from a degree-5 polynomial fitted for
// least relative error on [0, 1) (max 7.5e-8, 1.6e-7 evaluated in float), times 2^n. On
// AVX-512, VREDUCEPS gives f and a zero-masked VSCALEFPS applies 2^floor(x): 8 vector ops where
// the Taylor version with round, integer exponent bits and an underflow mask took 16, which
// made the softmax of a 64-token block cost a quarter of a compressed block's compute.
HWY_INLINE VF Exp2(DF df, VF x) {
#if HWY_TARGET <= HWY_AVX3
  // Not below -126, NaN included (unordered): a NaN score stays NaN, as on other targets.
  const __mmask16 keep = _mm512_cmp_ps_mask(x.raw, _mm512_set1_ps(-126.0f), _CMP_NLT_UQ);
  const VF f{_mm512_reduce_ps(x.raw, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC)};
#else
  const VF n = hn::Floor(hn::Max(x, hn::Set(df, -127.0f)));
  const VF f = hn::Sub(x, n);
#endif
  VF p = hn::Set(df, 1.8775765306e-3f);
  p = hn::MulAdd(p, f, hn::Set(df, 8.9893408220e-3f));
  p = hn::MulAdd(p, f, hn::Set(df, 5.5826317030e-2f));
  p = hn::MulAdd(p, f, hn::Set(df, 2.4015361760e-1f));
  p = hn::MulAdd(p, f, hn::Set(df, 6.9315307309e-1f));
  p = hn::MulAdd(p, f, hn::Set(df, 9.9999992507e-1f));
#if HWY_TARGET <= HWY_AVX3
  return VF{_mm512_maskz_scalef_ps(keep, p.raw, x.raw)};
#else
  const hn::RebindToSigned<DF> di;
  const auto e = hn::ShiftLeft<23>(hn::Add(hn::ConvertTo(di, n), hn::Set(di, 127)));
  return hn::IfThenZeroElse(hn::Lt(x, hn::Set(df, -126.0f)), hn::Mul(p, hn::BitCast(df, e)));
#endif
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
      // Usually no score beats the running max: skip the horizontal reduction then.
      if (t == n_tok && m[i] != kNegInf && hn::AllFalse(df, hn::Gt(vmax, hn::Set(df, m[i])))) {
        bmax = m[i];
      } else {
        bmax = hn::GetLane(hn::MaxOfLanes(df, vmax));
      }
    }
    for (; t < n_tok; ++t) bmax = std::max(bmax, s[t]);
    if (bmax == kNegInf) {
      // Every entry masked, or masked and NaN (max ignores NaN): a NaN must not pass for a
      // masked entry, so then it goes on with a NaN max, which makes the row's l NaN.
      bool nan = false;
      for (int u = 0; u < n_tok; ++u) nan |= std::isnan(s[u]);
      if (!nan) {
        std::fill(s, s + n_tok, 0.0f);
        continue;
      }
      bmax = std::numeric_limits<float>::quiet_NaN();
    }
    // A NaN max (from the vector max, or above) is kept: NaN - x is NaN everywhere below.
    const float m_new = std::isnan(bmax) ? bmax : std::max(m[i], bmax);
    const float corr = m[i] == kNegInf ? 0.0f : m[i] == m_new ? 1.0f : std::exp2(m[i] - m_new);
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
      // Masked entries (-inf) give 0.
      const VF e = Exp2(df, hn::Sub(hn::LoadU(df, s + t), vm));
      hn::StoreU(e, df, s + t);
      vsum = hn::Add(vsum, e);
    }
    float sum = hn::GetLane(hn::SumOfLanes(df, vsum));
    for (; t < n_tok; ++t) {
      s[t] = std::exp2(s[t] - m_new);
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

HWY_EXPORT(ScoresF32T);
HWY_EXPORT(ScoresF16T);
HWY_EXPORT(ScoresF32);
HWY_EXPORT(ScoresF16);
HWY_EXPORT(AccumF32);
HWY_EXPORT(AccumF16);
HWY_EXPORT(SoftmaxUpdate);

void AttnScoresF32T(const float* q, int nq, const float* k, int d, float* scores, int stride,
                    PrefetchRange next) {
  HWY_DYNAMIC_DISPATCH(ScoresF32T)(q, nq, k, d, scores, stride, next);
}
void AttnScoresF16T(const float* q, int nq, const uint16_t* k, int d, float* scores, int stride,
                    PrefetchRange next) {
  HWY_DYNAMIC_DISPATCH(ScoresF16T)(q, nq, k, d, scores, stride, next);
}
void AttnScoresF32(const float* q, int nq, const float* k, int n_tok, int d, float* scores,
                   int stride) {
  HWY_DYNAMIC_DISPATCH(ScoresF32)(q, nq, k, n_tok, d, scores, stride);
}
void AttnScoresF16(const float* q, int nq, const uint16_t* k, int n_tok, int d, float* scores,
                   int stride) {
  HWY_DYNAMIC_DISPATCH(ScoresF16)(q, nq, k, n_tok, d, scores, stride);
}
void AttnAccumF32(const float* p, int nq, int stride, const float* v, int n_tok, int d,
                  float* acc, PrefetchRange next) {
  HWY_DYNAMIC_DISPATCH(AccumF32)(p, nq, stride, v, n_tok, d, acc, next);
}
void AttnAccumF16(const float* p, int nq, int stride, const uint16_t* v, int n_tok, int d,
                  float* acc, PrefetchRange next) {
  HWY_DYNAMIC_DISPATCH(AccumF16)(p, nq, stride, v, n_tok, d, acc, next);
}
void AttnSoftmaxUpdate(float* scores, int nq, int stride, int n_tok, float* m, float* l,
                       float* acc, int d) {
  HWY_DYNAMIC_DISPATCH(SoftmaxUpdate)(scores, nq, stride, n_tok, m, l, acc, d);
}

}  // namespace tqlm::kernels
#endif  // HWY_ONCE
