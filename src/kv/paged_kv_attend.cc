// Attention of PagedKvCache: causal GQA over sinks, compressed blocks and raw blocks, with
// online softmax per block. Work is split into tasks (KV head x query-row chunk x sequence
// split, flash-decoding style); each task leaves (max, denominator, accumulator) per query row
// and per basis (plain, or the codec's rotated basis for TurboQuant V blocks); the merge
// rescales them to a common max, inverse-rotates the rotated part once per row, and divides.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>

#include "kernels/cpu/attention_raw.h"
#include "kernels/cpu/thread_pool.h"
#include "kv/paged_kv_cache.h"
#include "tqlm/error.h"

namespace tqlm::kv {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();
// The kernels prefetch a later segment's blocks while they compute (kernels/cpu/prefetch.h).
// The segment two ahead: with the per-head blocks contiguous (kv/block_pool.h) and the lines
// split between the loops, distance 2 measured faster than 1 (docs/PERF_NOTES.md v9).
// TQLM_KV_TRICKLE=N prefetches the segment N ahead instead, 0 turns prefetching off: for A/B
// measurements.
size_t TrickleDistance() {
  static const size_t d = [] {
    const char* e = std::getenv("TQLM_KV_TRICKLE");
    return e ? size_t(std::max(0, std::atoi(e))) : size_t(2);
  }();
  return d;
}

// Share (percent) of a later compressed segment's K + V lines prefetched during the scoring
// loop: 50 spreads them over scoring and accumulating about evenly in time (32K tq4/tq3, 2
// threads: 3.0x -> 3.2x f16; docs/PERF_NOTES.md v9). TQLM_KV_PF_SPLIT=P overrides it, for A/B
// measurements; 100 prefetches all of K while scoring, as before v9.
int PfSplitPercent() {
  static const int v = [] {
    const char* e = std::getenv("TQLM_KV_PF_SPLIT");
    return std::clamp(e ? std::atoi(e) : 50, 0, 100);
  }();
  return v;
}

struct Segment {
  int pos0 = 0, n_tok = 0;
  bool sink = false;
  bool comp = false;
  int block = 0;  // index into the head's sinks or main list
};

// Softmax state of nr rows in one basis: m, l, then acc rows.
struct RowStates {
  int nr = 0, d = 0;
  float* m = nullptr;
  float* l = nullptr;
  float* acc = nullptr;
  void Reset() {
    std::fill(m, m + nr, kNegInf);
    std::fill(l, l + nr, 0.0f);
    std::fill(acc, acc + size_t(nr) * d, 0.0f);
  }
};

// (m, l, acc) of a row merged into (m0, l0, acc0); maxima are in base-2 logit units.
void MergeRow(float m, float l, const float* acc, int d, float* m0, float* l0, float* acc0) {
  if (l == 0 || m == kNegInf) return;
  if (*m0 == kNegInf || *l0 == 0) {
    *m0 = m;
    *l0 = l;
    std::copy(acc, acc + d, acc0);
    return;
  }
  const float mm = std::max(m, *m0);
  const float a = std::exp2(*m0 - mm), b = std::exp2(m - mm);
  for (int j = 0; j < d; ++j) acc0[j] = acc0[j] * a + acc[j] * b;
  *l0 = *l0 * a + l * b;
  *m0 = mm;
}

}  // namespace

void PagedKvCache::Attend(int layer, const float* q, int n, float* out,
                          kernels::ThreadPool& pool) {
  if (layer < 0 || layer >= int(layers_.size()))
    throw Error(fmt::format("KV cache: layer {} out of range", layer));
  Layer& L = layers_[layer];
  const int T = n_tokens_;
  if (n <= 0) return;
  if (L.n_written != T + n)
    throw Error(fmt::format("KV cache: Attend over {} queries of layer {} after appending {}", n,
                            layer, L.n_written - T));
  const LayerGeometry& g = L.geom;
  const int d = g.head_dim, G = g.n_kv_heads, H = g.n_heads, n_rep = H / G;
  const int W = g.sliding_window;
  // Scores are kept in base 2 (softmax with exp2): the scale carries log2(e).
  const float scale = (config_.attn_scale > 0 ? config_.attn_scale : 1.0f / std::sqrt(float(d))) *
                      1.4426950408889634f;
  const int end = T + n;  // positions [0, end) are stored

  // The block structure is the same for every KV head.
  std::vector<Segment> segs;
  const int n_sink = std::min(end, L.sinks);
  for (int b = 0; b * kBlockTokens < n_sink; ++b)
    segs.push_back({b * kBlockTokens, std::min(kBlockTokens, n_sink - b * kBlockTokens), true,
                    false, b});
  const int first_needed = W > 0 ? T - W + 1 : 0;
  for (int b = 0; b < int(L.k.main[0].size()); ++b) {
    const int pos0 = L.sinks + b * kBlockTokens;
    if (pos0 >= end) break;
    if (L.k.main[0][b] == kNoBlock || pos0 + kBlockTokens <= first_needed) continue;
    segs.push_back({pos0, std::min(kBlockTokens, end - pos0), false, b < L.n_comp, b});
  }

  const int rows = n * n_rep;
  const int row_chunk = rows <= 64 ? rows : std::max(n_rep, 64 / n_rep * n_rep);
  const int n_row_chunks = (rows + row_chunk - 1) / row_chunk;
  const int threads = pool.num_threads();
  int splits = 1;
  const int work = G * n_row_chunks;
  if (work < 4 * threads) splits = std::clamp((4 * threads + work - 1) / work, 1, int(segs.size()) / 8);
  splits = std::max(1, splits);
  const int n_tasks = work * splits;

  const int state_floats = row_chunk * (2 + d);  // per basis
  task_states_.resize(size_t(n_tasks) * 2 * state_floats);
  if (int(scratch_.size()) < threads) scratch_.resize(threads);
  for (auto& s : scratch_) {
    if (!s) s = std::make_unique<AttendScratch>();
  }

  auto block_of = [&](const Tensor& t, const Segment& seg, int head) -> const uint8_t* {
    if (seg.sink) return t.raw_pool[head]->data(t.sinks[head][seg.block]);
    return (seg.comp ? t.comp_pool : t.raw_pool)[head]->data(t.main[head][seg.block]);
  };
  auto KeyBlock = [&](const Segment& seg, int head) { return block_of(L.k, seg, head); };
  auto ValueBlock = [&](const Segment& seg, int head) { return block_of(L.v, seg, head); };
  auto KeyFormat = [&](const Segment& seg) { return seg.comp ? L.k.comp : L.k.raw; };
  auto ValueFormat = [&](const Segment& seg) { return seg.comp ? L.v.comp : L.v.raw; };
  auto states_of = [&](int task, int basis, int nr) {
    float* base = task_states_.data() + (size_t(task) * 2 + basis) * state_floats;
    return RowStates{nr, d, base, base + row_chunk, base + 2 * row_chunk};
  };

  const size_t trickle = TrickleDistance();
  pool.ParallelTasks(n_tasks, [&](size_t task_index, int thread) {
    AttendScratch& s = *scratch_[thread];
    const int task = int(task_index);
    const int split = task % splits;
    const int rchunk = (task / splits) % n_row_chunks;
    const int head = task / splits / n_row_chunks;
    const int r0 = rchunk * row_chunk, nr = std::min(row_chunk, rows - r0);
    // Query rows of this KV head: row r is position r / n_rep, head head*n_rep + r % n_rep.
    s.q_rows.resize(size_t(nr) * d);
    for (int r = 0; r < nr; ++r) {
      const int i = (r0 + r) / n_rep, hh = (r0 + r) % n_rep;
      const float* src = q + (size_t(i) * H + size_t(head) * n_rep + hh) * d;
      for (int j = 0; j < d; ++j) s.q_rows[size_t(r) * d + j] = src[j] * scale;
    }
    L.k.raw->PrepareQueries(s.q_rows.data(), nr, &s.q_raw);
    if (L.k.comp != L.k.raw) L.k.comp->PrepareQueries(s.q_rows.data(), nr, &s.q_comp);
    RowStates plain = states_of(task, 0, nr), rot = states_of(task, 1, nr);
    plain.Reset();
    rot.Reset();
    s.scores.resize(size_t(nr) * kBlockTokens);

    // Visible positions of the tile's rows: row r sees [lo(i), T + i].
    const int i_first = r0 / n_rep, i_last = (r0 + nr - 1) / n_rep;
    const int min_hi = T + i_first, max_hi = T + i_last;
    const int min_lo = W > 0 ? std::max(0, T + i_first - W + 1) : 0;
    const int max_lo = W > 0 ? std::max(0, T + i_last - W + 1) : 0;

    const size_t seg_begin = segs.size() * split / splits;
    const size_t seg_end = segs.size() * (split + 1) / splits;
    for (size_t si = seg_begin; si < seg_end; ++si) {
      const Segment& seg = segs[si];
      const int last = seg.pos0 + seg.n_tok - 1;
      if (last < min_lo || seg.pos0 > max_hi) continue;
      const BlockFormat* kf = KeyFormat(seg);
      const BlockFormat* vf = ValueFormat(seg);
      const uint8_t* kb = KeyBlock(seg, head);
      const uint8_t* vb = ValueBlock(seg, head);
      const PreparedQueries& pq = (seg.comp && L.k.comp != L.k.raw) ? s.q_comp : s.q_raw;
      // The kernels trickle a later segment's K (while scoring) and V (while accumulating)
      // into L2.
      const Segment* next =
          trickle > 0 && si + trickle < seg_end ? &segs[si + trickle] : nullptr;
      // The later segment's K lines go out while scoring and its V lines while accumulating;
      // for compressed segments the scoring loop, shorter per line, takes only its share of all
      // the lines (PfSplitPercent) and the rest of K goes out just before accumulating.
      s.kernel.next = {};
      kernels::PrefetchRange k_tail, v_next;
      if (next) {
        const size_t kbytes = KeyFormat(*next)->block_bytes();
        const size_t vbytes = ValueFormat(*next)->block_bytes();
        const uint8_t* nk = KeyBlock(*next, head);
        size_t k_first = kbytes;
        if (next->comp) {
          const size_t lines = (kbytes + 63) / 64 + (vbytes + 63) / 64;
          k_first = std::min(kbytes, lines * size_t(PfSplitPercent()) / 100 * 64);
        }
        s.kernel.next = {nk, k_first};
        k_tail = {nk + k_first, kbytes - k_first};
        v_next = {ValueBlock(*next, head), vbytes};
      }
      kf->Scores(pq, kb, seg.n_tok, s.scores.data(), kBlockTokens, s.kernel);
      if (seg.pos0 < max_lo || last > min_hi) {
        for (int r = 0; r < nr; ++r) {
          const int i = (r0 + r) / n_rep;
          const int lo = W > 0 ? T + i - W + 1 : 0, hi = T + i;
          float* sr = s.scores.data() + size_t(r) * kBlockTokens;
          for (int t = 0; t < seg.n_tok; ++t) {
            const int p = seg.pos0 + t;
            if (p < lo || p > hi) sr[t] = kNegInf;
          }
        }
      }
      RowStates& st = vf->rotated() ? rot : plain;
      kernels::AttnSoftmaxUpdate(s.scores.data(), nr, kBlockTokens, seg.n_tok, st.m, st.l,
                                 st.acc, d);
      kernels::PrefetchAll(k_tail);
      s.kernel.next = v_next;
      vf->Accumulate(s.scores.data(), nr, kBlockTokens, vb, seg.n_tok, st.acc, s.kernel);
    }
  });

  // Merge splits, then the rotated basis into the plain one, per row.
  std::vector<float> acc(d), acc_rot(d);
  for (int task = 0; task < n_tasks; task += splits) {
    const int rchunk = (task / splits) % n_row_chunks;
    const int head = task / splits / n_row_chunks;
    const int r0 = rchunk * row_chunk, nr = std::min(row_chunk, rows - r0);
    for (int r = 0; r < nr; ++r) {
      float m = kNegInf, l = 0, m_rot = kNegInf, l_rot = 0;
      std::fill(acc.begin(), acc.end(), 0.0f);
      std::fill(acc_rot.begin(), acc_rot.end(), 0.0f);
      for (int sp = 0; sp < splits; ++sp) {
        RowStates p = states_of(task + sp, 0, nr), q2 = states_of(task + sp, 1, nr);
        MergeRow(p.m[r], p.l[r], p.acc + size_t(r) * d, d, &m, &l, acc.data());
        MergeRow(q2.m[r], q2.l[r], q2.acc + size_t(r) * d, d, &m_rot, &l_rot, acc_rot.data());
      }
      if (l_rot > 0) {
        L.v.comp->FinishAccumulator(acc_rot.data(), 1);
        MergeRow(m_rot, l_rot, acc_rot.data(), d, &m, &l, acc.data());
      }
      const int i = (r0 + r) / n_rep, hh = (r0 + r) % n_rep;
      float* dst = out + (size_t(i) * H + size_t(head) * n_rep + hh) * d;
      const float inv = l > 0 ? 1.0f / l : 0.0f;
      for (int j = 0; j < d; ++j) dst[j] = acc[j] * inv;
    }
  }
}

}  // namespace tqlm::kv
