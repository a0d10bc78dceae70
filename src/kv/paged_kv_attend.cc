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

// Segments of one split: kSplitSegments consecutive block slots (sink blocks, then main
// blocks), fixed by position alone, so a query row's partial softmax states and their merge
// order do not depend on the thread count, the number of queries in the step or which blocks
// a sliding window has freed (issue 22).
constexpr int kSplitSegments = 8;

struct Segment {
  int pos0 = 0, n_tok = 0;
  bool sink = false;
  bool comp = false;     // compressed for every query of the step
  int comp_from = 0;     // else: queries at positions >= comp_from read the pending copy
  int block = 0;         // index into the head's sinks or main list
  int slot = 0;          // position-fixed ordinal: sink blocks, then main blocks
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
  constexpr int64_t kNever = std::numeric_limits<int32_t>::max();

  // The block structure is the same for every KV head.
  std::vector<Segment> segs;
  const int n_sink = std::min(end, L.sinks);
  const int sink_slots = (L.sinks + kBlockTokens - 1) / kBlockTokens;
  for (int b = 0; b * kBlockTokens < n_sink; ++b) {
    segs.push_back({b * kBlockTokens, std::min(kBlockTokens, n_sink - b * kBlockTokens), true,
                    false, int(kNever), b, b});
  }
  const int first_needed = W > 0 ? T - W + 1 : 0;
  for (int b = 0; b < int(L.k.main[0].size()); ++b) {
    const int pos0 = L.sinks + b * kBlockTokens;
    if (pos0 >= end) break;
    if (L.k.main[0][b] == kNoBlock || pos0 + kBlockTokens <= first_needed) continue;
    Segment sg{pos0, std::min(kBlockTokens, end - pos0), false, b < L.n_comp, 0, b,
               sink_slots + b};
    // A pending block: the step's queries from its compression point on read the copy.
    const bool pending = !sg.comp && b - L.n_comp < L.n_pending;
    sg.comp_from = pending ? pos0 + kBlockTokens + config_.recent_tokens : int(kNever);
    segs.push_back(sg);
  }
  // Splits: runs of segments in the same group of kSplitSegments slots.
  std::vector<int> split_first;
  for (size_t i = 0; i < segs.size(); ++i) {
    if (i == 0 || segs[i].slot / kSplitSegments != segs[i - 1].slot / kSplitSegments)
      split_first.push_back(int(i));
  }
  const int splits = std::max<int>(1, int(split_first.size()));
  split_first.push_back(int(segs.size()));

  const int rows = n * n_rep;
  const int row_chunk = rows <= 64 ? rows : std::max(n_rep, 64 / n_rep * n_rep);
  const int n_row_chunks = (rows + row_chunk - 1) / row_chunk;
  const int threads = pool.num_threads();
  const int n_tasks = G * n_row_chunks * splits;

  const int state_floats = row_chunk * (2 + d);  // per basis
  task_states_.resize(size_t(n_tasks) * 2 * state_floats);
  if (int(scratch_.size()) < threads) scratch_.resize(threads);
  for (auto& s : scratch_) {
    if (!s) s = std::make_unique<AttendScratch>();
  }

  auto block_of = [&](const Tensor& t, const Segment& seg, int head, bool comp) {
    if (seg.sink) return t.raw_pool[head]->data(t.sinks[head][seg.block]);
    if (seg.comp) return t.comp_pool[head]->data(t.main[head][seg.block]);
    // (A tensor stored uncompressed, e.g. f16 K beside TurboQuant V, has no pending copies.)
    if (comp && t.comp != t.raw)
      return t.comp_pool[head]->data(t.pending[head][seg.block - L.n_comp]);
    return t.raw_pool[head]->data(t.main[head][seg.block]);
  };
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
    // Query rows of this KV head: row r is position T + (r0 + r) / n_rep, head
    // head * n_rep + (r0 + r) % n_rep; rows are in position order.
    s.q_rows.resize(size_t(nr) * d);
    for (int r = 0; r < nr; ++r) {
      const int i = (r0 + r) / n_rep, hh = (r0 + r) % n_rep;
      const float* src = q + (size_t(i) * H + size_t(head) * n_rep + hh) * d;
      for (int j = 0; j < d; ++j) s.q_rows[size_t(r) * d + j] = src[j] * scale;
    }
    s.prepared_fmt = nullptr;
    RowStates plain = states_of(task, 0, nr), rot = states_of(task, 1, nr);
    plain.Reset();
    rot.Reset();
    s.scores.resize(size_t(nr) * kBlockTokens);
    // First row (clamped to [0, nr]) whose query position is at least `pos`.
    auto first_row_at = [&](int64_t pos) {
      return int(std::clamp<int64_t>((pos - T) * n_rep - r0, 0, nr));
    };
    // Queries prepared for rows [ra, rb) and format f, reused while they stay the same.
    auto prepared = [&](const BlockFormat* f, int ra, int rb) -> const PreparedQueries& {
      if (s.prepared_fmt != f || s.prepared_ra != ra || s.prepared_rb != rb) {
        f->PrepareQueries(s.q_rows.data() + size_t(ra) * d, rb - ra, &s.q_prepared);
        s.prepared_fmt = f;
        s.prepared_ra = ra;
        s.prepared_rb = rb;
      }
      return s.q_prepared;
    };

    const int seg_begin = split < int(split_first.size()) - 1 ? split_first[split] : 0;
    const int seg_end = split < int(split_first.size()) - 1 ? split_first[split + 1] : 0;
    for (int si = seg_begin; si < seg_end; ++si) {
      const Segment& seg = segs[si];
      const int last = seg.pos0 + seg.n_tok - 1;
      // Rows that see a token of the segment: position >= pos0, and (sliding window) whose
      // window starts at or before `last`.
      const int ra = first_row_at(seg.pos0);
      const int rb = W > 0 ? first_row_at(int64_t(last) + W) : nr;
      if (ra >= rb) continue;
      const int rk = seg.comp ? ra : std::clamp(first_row_at(seg.comp_from), ra, rb);
      const Segment* next =
          trickle > 0 && si + int(trickle) < seg_end ? &segs[si + trickle] : nullptr;
      for (int part = 0; part < 2; ++part) {
        const int pa = part == 0 ? ra : rk, pb = part == 0 ? rk : rb;
        if (pa >= pb) continue;
        const bool comp = part == 1;
        const BlockFormat* kf = comp ? L.k.comp : L.k.raw;
        const BlockFormat* vf = comp ? L.v.comp : L.v.raw;
        const int np = pb - pa;
        float* sc = s.scores.data() + size_t(pa) * kBlockTokens;
        // The kernels trickle the next segment's K (while scoring) and V (while accumulating)
        // into L2: for compressed segments the scoring loop, shorter per line, takes only its
        // share of all the lines (PfSplitPercent) and the rest of K goes out before accumulating.
        s.kernel.next = {};
        kernels::PrefetchRange k_tail, v_next;
        if (next && part == (rk < rb ? 1 : 0)) {
          const bool nc = next->comp;
          const BlockFormat* nkf = nc ? L.k.comp : L.k.raw;
          const BlockFormat* nvf = nc ? L.v.comp : L.v.raw;
          const size_t kbytes = nkf->block_bytes(), vbytes = nvf->block_bytes();
          const uint8_t* nk = block_of(L.k, *next, head, nc);
          size_t k_first = kbytes;
          if (nc) {
            const size_t lines = (kbytes + 63) / 64 + (vbytes + 63) / 64;
            k_first = std::min(kbytes, lines * size_t(PfSplitPercent()) / 100 * 64);
          }
          s.kernel.next = {nk, k_first};
          k_tail = {nk + k_first, kbytes - k_first};
          v_next = {block_of(L.v, *next, head, nc), vbytes};
        }
        kf->Scores(prepared(kf, pa, pb), block_of(L.k, seg, head, comp), seg.n_tok, sc,
                   kBlockTokens, s.kernel);
        // The softmax always runs over the block's 64 slots, unstored and invisible ones at
        // -inf, so its sums take the same shape whatever the step stored after a query.
        for (int r = pa; r < pb; ++r) {
          const int i = (r0 + r) / n_rep;
          const int lo = W > 0 ? T + i - W + 1 : 0, hi = T + i;
          float* sr = s.scores.data() + size_t(r) * kBlockTokens;
          for (int t = 0; t < kBlockTokens; ++t) {
            const int p = seg.pos0 + t;
            if (t >= seg.n_tok || p < lo || p > hi) sr[t] = kNegInf;
          }
        }
        RowStates& st = vf->rotated() ? rot : plain;
        kernels::AttnSoftmaxUpdate(sc, np, kBlockTokens, kBlockTokens, st.m + pa, st.l + pa,
                                   st.acc + size_t(pa) * d, d);
        kernels::PrefetchAll(k_tail);
        s.kernel.next = v_next;
        // Tokens a row does not see have weight exactly 0: adding them changes no sum.
        vf->Accumulate(sc, np, kBlockTokens, block_of(L.v, seg, head, comp), seg.n_tok,
                       st.acc + size_t(pa) * d, s.kernel);
      }
    }
  });

  // Merge splits in order, then the rotated basis into the plain one, per row.
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
