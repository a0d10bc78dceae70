// Correctness of the CUDA append + decode attention against the host reference: K/V as the codec
// decodes them, attention in float64. Every head dim (64, 128, 256) and every supported bit width,
// sequences of different lengths, sinks and a recent ring, GQA groups 1, 4, 8. Needs a GPU: exits
// 0 with a message when none is present (it is not part of ctest).
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "device_buffer.h"
#include "kernels/cuda/tq_attention.h"
#include "ref_codec.h"

namespace tqlm::cuda {
namespace {

struct Case {
  int dim, k_bits, v_bits, n_heads, n_kv, sinks, recent;
  std::vector<int> lens;
  float q_scale = 1;
  bool identity = false;  // identity rotations (how fp16 caches run: no rotation launch)
  int fused_merge = 1;    // 0: the separate merge launch
  int f16_stages = -1;    // fp16 pages staged in shared memory (bulk copies), 0: registers,
                          // -1: the planner's choice
  int splits = 0;         // > 0: forced split count (merges of many splits, not multiples of 8)
};

struct Result {
  double rel_err = 0, idx_mismatch = 0, norm_mismatch = 0;
  bool all_written = true;
};

uint32_t ExtractCode(const std::vector<uint32_t>& words_all, size_t side_word0, int dim, int bits,
                     const FieldPos& fp) {
  const int words = LaneWords(dim, bits);
  const int off = fp.field * 2 * bits + fp.elem * bits;
  const int wi = off / 32, sh = off % 32;
  uint64_t lo = words_all[side_word0 + WordIndex(words, fp.lane, wi)];
  uint64_t hi = (sh + bits > 32) ? words_all[side_word0 + WordIndex(words, fp.lane, wi + 1)] : 0;
  return uint32_t(((hi << 32 | lo) >> sh) & ((1u << bits) - 1));
}

Result RunCase(const Case& c, uint64_t seed) {
  const CodecTables t = ref::MakeTables(c.dim, c.k_bits, c.v_bits, c.identity);
  DeviceTables dt(t);
  const int B = int(c.lens.size()), d = c.dim, nkv = c.n_kv, nh = c.n_heads, group = nh / nkv;
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0, 1);
  std::uniform_real_distribution<float> uni(0.5f, 2.0f);

  // Pages in shuffled order, so that the block table is exercised.
  std::vector<int> chunks(B);
  int total_pages = 0, max_chunks = 1;
  for (int b = 0; b < B; ++b) {
    chunks[b] = (std::max(0, c.lens[b] - c.sinks) + kChunkTokens - 1) / kChunkTokens;
    total_pages += chunks[b];
    max_chunks = std::max(max_chunks, chunks[b]);
  }
  std::vector<int> perm(std::max(total_pages, 1));
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), rng);
  std::vector<int32_t> table(size_t(B) * max_chunks, 0);
  for (int b = 0, next = 0; b < B; ++b)
    for (int ch = 0; ch < chunks[b]; ++ch) table[size_t(b) * max_chunks + ch] = perm[next++];

  CacheView cv;
  cv.batch = B, cv.n_heads = nh, cv.n_kv_heads = nkv, cv.dim = d;
  cv.k_bits = c.k_bits, cv.v_bits = c.v_bits;
  cv.sink_tokens = c.sinks, cv.recent_tokens = c.recent;
  cv.max_chunks = max_chunks;
  DeviceBuffer pool(size_t(std::max(total_pages, 1)) * nkv * cv.PageBytes());
  DeviceBuffer f16(size_t(B) * std::max(cv.F16Chunks(), 1) * nkv * cv.F16PageBytes());
  TQLM_CUDA_CHECK(cudaMemset(pool.as<void>(), 0, pool.bytes()));
  TQLM_CUDA_CHECK(cudaMemset(f16.as<void>(), 0, f16.bytes()));
  DeviceBuffer table_d = DeviceBuffer::From(table);
  cv.pages = pool.as<uint8_t>(), cv.f16_region = f16.as<uint8_t>();
  cv.block_table = table_d.as<int32_t>();

  // K/V of every token: [b][pos][kv head][d], each vector with its own scale.
  std::vector<std::vector<float>> K(B), V(B);
  for (int b = 0; b < B; ++b) {
    K[b].resize(size_t(c.lens[b]) * nkv * d);
    V[b].resize(K[b].size());
    for (size_t i = 0; i < K[b].size(); i += d) {
      const float sk = uni(rng), sv = uni(rng);
      for (int j = 0; j < d; ++j) K[b][i + j] = sk * normal(rng), V[b][i + j] = sv * normal(rng);
    }
  }
  // Append in two steps: every token but the last of each sequence, then the last ones.
  for (int step = 0; step < 2; ++step) {
    std::vector<int32_t> seq, pos;
    std::vector<float> k, v;
    for (int b = 0; b < B; ++b) {
      const int from = step == 0 ? 0 : c.lens[b] - 1, to = step == 0 ? c.lens[b] - 1 : c.lens[b];
      for (int p = from; p < to; ++p) {
        seq.push_back(b), pos.push_back(p);
        k.insert(k.end(), K[b].begin() + size_t(p) * nkv * d, K[b].begin() + size_t(p + 1) * nkv * d);
        v.insert(v.end(), V[b].begin() + size_t(p) * nkv * d, V[b].begin() + size_t(p + 1) * nkv * d);
      }
    }
    std::vector<int32_t> lens_after(B);
    for (int b = 0; b < B; ++b) lens_after[b] = step == 0 ? c.lens[b] - 1 : c.lens[b];
    DeviceBuffer seq_d = DeviceBuffer::From(seq), pos_d = DeviceBuffer::From(pos);
    DeviceBuffer lens_after_d = DeviceBuffer::From(lens_after);
    DeviceBuffer k_d = DeviceBuffer::From(k), v_d = DeviceBuffer::From(v);
    LaunchAppend(cv, dt, int(seq.size()), seq_d.as<int32_t>(), pos_d.as<int32_t>(),
                 lens_after_d.as<int32_t>(), k_d.as<float>(), v_d.as<float>(), nullptr);
    TQLM_CUDA_CHECK(cudaDeviceSynchronize());
  }

  std::vector<float> q(size_t(B) * nh * d);
  for (float& x : q) x = c.q_scale * normal(rng);
  DeviceBuffer q_d = DeviceBuffer::From(q), lens_d = DeviceBuffer::From(c.lens);
  DeviceBuffer out_d(q.size() * sizeof(float));
  TQLM_CUDA_CHECK(cudaMemset(out_d.as<void>(), 0xff, out_d.bytes()));  // NaN poison
  int dev = 0, sms = 0;
  TQLM_CUDA_CHECK(cudaGetDevice(&dev));
  TQLM_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
  AttendPlan plan = PlanAttend(cv, *std::max_element(c.lens.begin(), c.lens.end()), sms, c.splits);
  plan.fused_merge = c.fused_merge;
  if (c.f16_stages >= 0) plan.f16_stages = c.f16_stages;
  DeviceBuffer ws(AttendWorkspaceBytes(cv, plan));
  TQLM_CUDA_CHECK(cudaMemset(ws.as<void>(), 0, ws.bytes()));
  const float scale = 1.0f / std::sqrt(float(d));
  // Twice on one workspace, the output poisoned in between: the second launch checks that the
  // first left the merge counters at zero.
  for (int rep = 0; rep < 2; ++rep) {
    TQLM_CUDA_CHECK(cudaMemset(out_d.as<void>(), 0xff, out_d.bytes()));
    LaunchAttend(cv, dt, plan, q_d.as<float>(), lens_d.as<int32_t>(), scale, out_d.as<float>(),
                 ws.as<void>(), nullptr);
    TQLM_CUDA_CHECK(cudaDeviceSynchronize());
  }
  const std::vector<float> out = out_d.ToHost<float>();
  const std::vector<uint32_t> words = pool.ToHost<uint32_t>();

  Result r;
  double err2 = 0, ref2 = 0;
  size_t idx_bad = 0, idx_total = 0, norm_bad = 0, norm_total = 0;
  std::vector<double> kh, vh;
  std::vector<int> idx;
  for (int b = 0; b < B; ++b) {
    const int L = c.lens[b];
    kh.assign(size_t(L) * nkv * d, 0);
    vh.assign(kh.size(), 0);
    for (int p = 0; p < L; ++p) {
      const bool full = p < c.sinks || p >= std::max(c.sinks, L - c.recent);
      for (int h = 0; h < nkv; ++h) {
        const size_t o = (size_t(p) * nkv + h) * d;
        for (int side = 0; side < 2; ++side) {
          const bool is_k = side == 0;
          const float* x = (is_k ? K[b] : V[b]).data() + o;
          double* dst = (is_k ? kh : vh).data() + o;
          const int bits = is_k ? c.k_bits : c.v_bits;
          if (full || !IsCompressed(bits)) {
            ref::DecodeF16(t, is_k, x, dst);
          } else {
            float norm = 0;
            ref::DecodeCompressed(t, is_k, x, dst, &idx, &norm);
          }
          // What the append kernel wrote into the page (every non-sink token has one).
          if (p >= c.sinks && IsCompressed(bits)) {
            float norm = 0;
            std::vector<double> tmp(d);
            ref::DecodeCompressed(t, is_k, x, tmp.data(), &idx, &norm);
            const int q_ = p - c.sinks, ch = q_ / kChunkTokens, row = q_ % kChunkTokens;
            const size_t page = size_t(table[size_t(b) * max_chunks + ch]) * nkv + h;
            const size_t page_word0 = page * cv.PageBytes() / 4;
            const size_t side_word0 = page_word0 + (is_k ? 0 : VCodesOffset(d, c.k_bits) / 4);
            for (int j = 0; j < d; ++j) {
              const FieldPos fp = is_k ? KFieldPos(d, row, j) : VFieldPos(row, j);
              idx_bad += int(ExtractCode(words, side_word0, d, bits, fp)) != idx[j];
              ++idx_total;
            }
            const size_t noff = is_k ? KNormOffset(d, c.k_bits, c.v_bits) : VNormOffset(d, c.k_bits, c.v_bits);
            __half_raw raw;
            raw.x = reinterpret_cast<const uint16_t*>(words.data() + page_word0)[noff / 2 + row];
            norm_bad += __half2float(__half(raw)) != norm;
            ++norm_total;
          }
        }
      }
    }
    for (int qh = 0; qh < nh; ++qh) {
      const int h = qh / group;
      const float* qv = q.data() + (size_t(b) * nh + qh) * d;
      std::vector<double> s(L);
      double mx = -INFINITY;
      for (int p = 0; p < L; ++p) {
        double acc = 0;
        for (int j = 0; j < d; ++j) acc += double(qv[j]) * kh[(size_t(p) * nkv + h) * d + j];
        s[p] = acc * double(scale);
        mx = std::max(mx, s[p]);
      }
      double sum = 0;
      for (double& x : s) sum += (x = std::exp(x - mx));
      for (int j = 0; j < d; ++j) {
        double acc = 0;
        for (int p = 0; p < L; ++p) acc += s[p] * vh[(size_t(p) * nkv + h) * d + j];
        const double ref = acc / sum, got = out[(size_t(b) * nh + qh) * d + j];
        if (!std::isfinite(got)) r.all_written = false;
        err2 += (got - ref) * (got - ref);
        ref2 += ref * ref;
      }
    }
  }
  r.rel_err = std::sqrt(err2 / ref2);
  r.idx_mismatch = idx_total ? double(idx_bad) / idx_total : 0;
  r.norm_mismatch = norm_total ? double(norm_bad) / norm_total : 0;
  return r;
}

std::string BitsName(int b) { return b == kF16Bits ? "f16" : "tq" + std::to_string(b); }

}  // namespace
}  // namespace tqlm::cuda

int main() {
  using namespace tqlm::cuda;
  int n_dev = 0;
  if (cudaGetDeviceCount(&n_dev) != cudaSuccess || n_dev == 0) {
    std::printf("cuda_attention_test: no CUDA device, skipped\n");
    return 0;
  }
  std::printf("tables: %s\n", ref::TablesSource());
  const int pairs[][2] = {{1, 1}, {2, 2}, {3, 3}, {4, 4}, {4, 3}, {4, 2}, {3, 2}, {16, 16}};
  std::vector<Case> cases;
  for (int dim : {64, 128, 256}) {
    for (auto& p : pairs) {
      cases.push_back({dim, p[0], p[1], 8, 2, 0, 0, {1, 37, 300, 1000}});
      cases.push_back({dim, p[0], p[1], 8, 2, 4, 32, {3, 20, 77, 700}, 2.0f});
    }
  }
  cases.push_back({128, 4, 3, 8, 1, 0, 0, {5000, 17}});       // group 8, many splits
  cases.push_back({128, 4, 3, 4, 4, 2, 64, {2000, 64, 65}});  // group 1
  cases.push_back({128, 16, 16, 32, 8, 0, 0, {4096, 1}});     // Llama-3-8B geometry
  for (int dim : {64, 128, 256}) {  // identity rotations: q scaled in the attention kernel
    cases.push_back({dim, 16, 16, 32, 8, 4, 32, {3000, 1, 40}, 1.0f, true});
  }
  cases.push_back({128, 4, 3, 32, 8, 4, 32, {3000, 17}, 1.0f, true});
  cases.push_back({128, 4, 3, 8, 1, 0, 0, {5000, 17}, 1.0f, false, 1, -1, 13});  // 13 splits
  // The separate merge launch (plan.fused_merge = 0), compressed and fp16.
  cases.push_back({128, 4, 3, 8, 1, 0, 0, {5000, 17}, 1.0f, false, 0});
  cases.push_back({128, 16, 16, 32, 8, 4, 32, {3000, 1, 40}, 1.0f, true, 0});
  // fp16 pages staged in shared memory (sm_90 only): both stage counts, many chunks per warp
  // (stage reuse across phases and items), sinks + ring, the separate merge.
  int major = 0, dev = 0;
  cudaGetDevice(&dev);
  cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);
  if (major >= 9) {
    for (int st : {0, 2, 3}) {  // 0: the register path (the planner picks 2 on sm_90)
      for (int dim : {64, 128}) {
        cases.push_back({dim, 16, 16, 32, 8, 4, 32, {3000, 1, 40}, 1.0f, true, 1, st});
      }
      // group 8, separate merge; 3 stages need more shared memory than a block gets at group 8
      cases.push_back({128, 16, 16, 8, st == 3 ? 2 : 1, 0, 0, {9000, 17}, 1.0f, true, 0, st});
    }
    // The fused merge over 37 splits (batches of 8 split loads and a partial batch).
    cases.push_back({128, 16, 16, 32, 8, 0, 0, {9000, 17}, 1.0f, true, 1, -1, 37});
  }
  int failures = 0;
  uint64_t seed = 1234;
  std::printf("%-4s %-5s %-5s %-6s %-6s %-5s %-6s %-4s %-5s %-10s %-10s %-10s %s\n", "dim", "K",
              "V", "heads", "kv", "sinks", "recent", "rot", "merge", "rel_err", "idx_diff",
              "norm_diff", "verdict");
  for (const Case& c : cases) {
    try {
      const Result r = RunCase(c, seed++);
      const bool ok = r.all_written && r.rel_err <= 1e-3 && r.idx_mismatch <= 1e-3 &&
                      r.norm_mismatch <= 1e-3;
      failures += !ok;
      std::printf("%-4d %-5s %-5s %-6d %-6d %-5d %-6d %-4s %-5s %-10.3e %-10.3e %-10.3e %s\n",
                  c.dim, BitsName(c.k_bits).c_str(), BitsName(c.v_bits).c_str(), c.n_heads, c.n_kv,
                  c.sinks, c.recent, c.identity ? "I" : "R", (std::string(c.fused_merge ? "fused" : "sep") +
                   (c.f16_stages >= 0 ? "/s" + std::to_string(c.f16_stages) : ""))
                      .c_str(),
                  r.rel_err, r.idx_mismatch, r.norm_mismatch,
                  ok ? "ok" : (r.all_written ? "FAIL" : "FAIL (unwritten/NaN output)"));
    } catch (const std::exception& e) {
      ++failures;
      std::printf("dim %d K %d V %d: exception: %s\n", c.dim, c.k_bits, c.v_bits, e.what());
    }
  }
  std::printf("%s: %d of %zu cases failed\n", failures ? "FAILED" : "PASSED", failures, cases.size());
  return failures ? 1 : 0;
}
