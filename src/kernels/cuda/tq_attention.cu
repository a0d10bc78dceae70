// Decode attention on the paged cache, host side: kernel choice per bit widths and head dim,
// the split plan, and the launches (query rotation, attention, merge). The kernels and their
// layout notes are in tq_attention_kernels.cuh.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/ptx_ops.cuh"
#include "kernels/cuda/tq_attention.h"
#include "kernels/cuda/tq_attention_kernels.cuh"

namespace tqlm::cuda {
namespace {

void CheckSmemBase() {
  static thread_local bool checked = false;
  if (checked) return;
  uint32_t* d = nullptr;
  TQLM_CUDA_CHECK(cudaMalloc(&d, sizeof(uint32_t)));
  SmemBaseKernel<<<1, 1, 16>>>(d);
  uint32_t base = 0;
  const cudaError_t launch = cudaGetLastError();
  const cudaError_t copy = cudaMemcpy(&base, d, sizeof(base), cudaMemcpyDeviceToHost);
  cudaFree(d);
  TQLM_CUDA_CHECK(launch);
  TQLM_CUDA_CHECK(copy);
  if (base != kSmemBase) {
    throw Error("cuda: dynamic shared memory starts at " + std::to_string(base) +
                ", the attention kernel's table reads assume " + std::to_string(kSmemBase));
  }
  checked = true;
}

using AttnKernel = void (*)(AttnArgs);
struct KernelInfo {
  AttnKernel fn = nullptr;
  size_t smem = 0;
};

template <int D, int BK, int BV, int S = 0>
KernelInfo Info(int group) {
  return {AttendSplitKernel<D, BK, BV, S>, AttnSmemBytesStaged<D, BK, BV, S>(group)};
}

template <int D>
KernelInfo SelectForDim(int bk, int bv, int group, int stages) {
  const int key = bk * 100 + bv;
  if (key == 1616 && stages > 0) {
    if constexpr (D <= 128) {
      if (stages == 2) return Info<D, 16, 16, 2>(group);
      if (stages == 3) return Info<D, 16, 16, 3>(group);
    }
    throw Error("cuda: staged fp16 pages need head dim <= 128 and 2 or 3 stages");
  }
  switch (key) {
    case 1616: return Info<D, 16, 16>(group);
    case 101: return Info<D, 1, 1>(group);
    case 202: return Info<D, 2, 2>(group);
    case 303: return Info<D, 3, 3>(group);
    case 404: return Info<D, 4, 4>(group);
    case 403: return Info<D, 4, 3>(group);
    case 402: return Info<D, 4, 2>(group);
    case 302: return Info<D, 3, 2>(group);
    default: break;
  }
  throw Error("cuda: unsupported K/V bit widths " + std::to_string(bk) + "/" + std::to_string(bv) +
              " (supported: f16/f16, b/b for b = 1..4, 4/3, 4/2, 3/2)");
}

KernelInfo SelectKernel(int dim, int bk, int bv, int group, int stages = 0) {
  CheckSmemBase();
  KernelInfo k;
  switch (dim) {
    case 64: k = SelectForDim<64>(bk, bv, group, stages); break;
    case 128: k = SelectForDim<128>(bk, bv, group, stages); break;
    case 256: k = SelectForDim<256>(bk, bv, group, stages); break;
    default: throw Error("cuda: head dim must be 64, 128 or 256");
  }
  int dev = 0, optin = 0;
  TQLM_CUDA_CHECK(cudaGetDevice(&dev));
  TQLM_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
  if (k.smem > size_t(optin)) {
    throw Error("cuda: attention kernel needs " + std::to_string(k.smem) +
                " bytes of shared memory per block, the device allows " + std::to_string(optin) +
                (stages > 0 ? " (use fewer fp16 stages)" : ""));
  }
  TQLM_CUDA_CHECK(cudaFuncSetAttribute(k.fn, cudaFuncAttributeMaxDynamicSharedMemorySize, int(k.smem)));
  return k;
}

size_t AlignUp(size_t x) { return (x + 255) / 256 * 256; }

struct WorkspaceParts {
  size_t q_rot = 0, part_o = 0, part_ml = 0, counters = 0, total = 0;
};
WorkspaceParts Parts(const CacheView& c, const AttendPlan& p) {
  const int group = c.n_heads / c.n_kv_heads;
  const size_t rows = size_t(c.batch) * c.n_kv_heads * p.n_splits * group;
  // Counters first: their place does not depend on the plan, so a zeroed workspace stays valid
  // when the plan (split count) changes.
  WorkspaceParts w;
  w.counters = 0;
  w.q_rot = AlignUp(size_t(c.batch) * c.n_kv_heads * sizeof(int));
  w.part_o = w.q_rot + AlignUp(size_t(c.batch) * c.n_heads * c.dim * sizeof(__half));
  w.part_ml = w.part_o + AlignUp(rows * c.dim * sizeof(float));
  w.total = w.part_ml + AlignUp(rows * sizeof(float2));
  return w;
}

// Launches kernel<<<grid, block, smem, stream>>>(args...), as a programmatic dependent launch when
// pdl (the kernel waits in GridWait before touching its data).
template <class... Params, class... Args>
void LaunchKernel(void (*kernel)(Params...), int grid, int block, size_t smem, cudaStream_t stream,
                  bool pdl, Args... args) {
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = dim3(unsigned(grid)), cfg.blockDim = dim3(unsigned(block));
  cfg.dynamicSmemBytes = smem, cfg.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = pdl ? attr : nullptr, cfg.numAttrs = pdl ? 1 : 0;
  TQLM_CUDA_CHECK(cudaLaunchKernelEx(&cfg, kernel, args...));
}

void CheckGeometry(const CacheView& c, const DeviceTables& t) {
  if (c.n_kv_heads <= 0 || c.n_heads % c.n_kv_heads != 0 || c.n_heads / c.n_kv_heads > kMaxGroup) {
    throw Error("cuda: n_heads must be a multiple of n_kv_heads with at most 8 query heads per KV head");
  }
  if (c.dim != t.dim || c.k_bits != t.k_bits || c.v_bits != t.v_bits) {
    throw Error("cuda: cache geometry does not match the codec tables");
  }
}

}  // namespace

AttendPlan PlanAttend(const CacheView& c, int max_seq_len, int sm_count, int force_splits) {
  int dev = 0, major = 0;
  TQLM_CUDA_CHECK(cudaGetDevice(&dev));
  TQLM_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
  const bool f16 = !IsCompressed(c.k_bits) && !IsCompressed(c.v_bits);
  // fp16 pages through two shared-memory stages per warp (bulk copies, sm_90): faster at every
  // measured shape (H100, PERF_NOTES CUDA v16: 32K x 1 54.6 vs 58.7 us, 32K x 8 375.4 vs 391.8,
  // 32K x 32 1438 vs 1513). Chosen first: the split count below is planned with the occupancy
  // of the kernel that will run (one staged block per SM, two unstaged ones).
  const int stages = f16 && c.dim <= 128 && major >= 9 ? 2 : 0;
  const KernelInfo k = SelectKernel(c.dim, c.k_bits, c.v_bits, c.n_heads / c.n_kv_heads, stages);
  int per_sm = 0;
  TQLM_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, k.fn, kThreads, k.smem));
  const int resident = std::max(1, per_sm) * sm_count;
  const int max_comp = std::max(0, max_seq_len - c.sink_tokens - c.recent_tokens);
  const int chunks = std::max(1, (max_comp + kChunkTokens - 1) / kChunkTokens);
  const long long heads = (long long)c.batch * c.n_kv_heads;
  // Items of equal size go round-robin to the persistent blocks: try every split count and keep
  // the shortest makespan, counting each item's fixed cost (query load, block merge, first load
  // latency) as about 8 chunk steps of a warp and each split as a little merge work. Trying
  // split counts (not wave counts) finds the ones whose items fill the resident blocks exactly
  // once (32K x 8 x 8 KV heads: 4 splits, 256 of 264 blocks, instead of 2 waves of 8).
  AttendPlan best;
  double best_cost = 1e300;
  const int max_splits = (chunks + kWarps - 1) / kWarps;
  int forced = force_splits > 0 ? std::min(force_splits, max_splits) : 0;
  if (!forced && stages > 0) {
    // Staged fp16 (one block per SM): a sweep of split counts on an H100 (PERF_NOTES, CUDA v17)
    // found the fastest plan at every measured shape with the fewest splits that still give about
    // half the SMs an item: 32K x 1 8 splits 53.0 us (16: 54.6, 32: 74.3), 128K x 1 8 splits
    // 187.2 (16: 187.4, 32: 211.8), 32K x 8 1 split 354.1 (8: 373.4), 32K x 32 1 split 1406
    // (8: 1484). From about half the SMs on, DRAM is the limit; more items only add per-item
    // fixed costs and merge work (one split needs no merge through global memory at all).
    forced = int(std::clamp<long long>((resident / 2) / heads, 1, max_splits));
  } else if (!forced && f16) {
    // Unstaged fp16: no makespan model. A sweep of split counts on an H100 (PERF_NOTES, CUDA v14)
    // found the fastest plans at about 256 chunks (4096 tokens) per split, with at least 64 items
    // and at most 4 waves of blocks: fewer pages streamed at once read faster (32K x 1: 8 splits
    // 59.2 us, 32 splits 63.0 us), and several waves beat one (32K x 32: 4 splits 1555 us, 1
    // split 1634 us). Compressed chunks are 4-5x smaller and pay the per-item fixed cost sooner,
    // so they keep the model below (more waves measured slower for them).
    const long long by_size = (chunks + 255) / 256, by_items = (64 + heads - 1) / heads;
    const long long by_waves = std::max<long long>(1, 4 * resident / heads);
    forced = int(std::clamp<long long>(std::min(std::max(by_size, by_items), by_waves), 1, max_splits));
  }
  for (int want = 1; want <= max_splits; ++want) {
    int cps = (chunks + want - 1) / want;
    cps = (cps + kWarps - 1) / kWarps * kWarps;
    const int splits = (chunks + cps - 1) / cps;
    if (forced ? want != forced : splits != want) continue;
    const long long items = heads * splits;
    const long long rounds = (items + resident - 1) / resident;
    const double cost = double(rounds) * (double(cps) / kWarps + 8.0) + 0.05 * splits;
    if (cost < best_cost) {
      best_cost = cost;
      best.chunks_per_split = cps;
      best.n_splits = splits;
      best.grid = int(std::min<long long>(resident, items));
    }
  }
  best.l2_prefetch = 1;
  if (!IsCompressed(c.k_bits) && !IsCompressed(c.v_bits)) {
    // fp16 pages: the L2 prefetch helps only while few items stream at once (32K x 1, 64 items:
    // 58.8 vs 62.4 us without); with DRAM saturated it costs 10% (32K x 8: 435.5 vs 392.0 us;
    // PERF_NOTES, CUDA v15).
    best.l2_prefetch = heads * best.n_splits <= resident / 2 ? 1 : 0;
  }
  best.pdl = major >= 9 ? 1 : 0;  // griddepcontrol needs sm_90
  best.f16_stages = stages;
  return best;
}

size_t AttendWorkspaceBytes(const CacheView& c, const AttendPlan& p) { return Parts(c, p).total; }

void LaunchAttend(const CacheView& c, const DeviceTables& t, const AttendPlan& p, const float* q,
                  const int32_t* seq_lens, float attn_scale, float* out, void* workspace,
                  void* stream_ptr) {
  CheckGeometry(c, t);
  cudaStream_t stream = static_cast<cudaStream_t>(stream_ptr);
  const WorkspaceParts w = Parts(c, p);
  uint8_t* ws = static_cast<uint8_t*>(workspace);
  __half* q_rot = reinterpret_cast<__half*>(ws + w.q_rot);
  float* part_o = reinterpret_cast<float*>(ws + w.part_o);
  float2* part_ml = reinterpret_cast<float2*>(ws + w.part_ml);
  const int group = c.n_heads / c.n_kv_heads;

  const bool pdl = p.pdl != 0;
  // An identity R_k (fp16 caches) needs no rotation launch: the attention kernel scales q.
  if (!t.k_identity) {
    LaunchKernel(RotateQueriesKernel, c.batch * c.n_heads, kMergeThreads,
                 (c.dim + kMergeThreads * 4) * sizeof(float), stream, pdl, q,
                 static_cast<const float*>(t.rot_k_t), attn_scale * kLog2e, c.dim, q_rot);
  }

  static thread_local int cached_key = -1;
  static thread_local KernelInfo cached;
  static thread_local int cached_resident = 0;
  const int stages = IsCompressed(c.k_bits) || IsCompressed(c.v_bits) ? 0 : p.f16_stages;
  const int key = (((c.dim * 32 + c.k_bits) * 32 + c.v_bits) * 16 + group) * 4 + stages;
  if (cached_key != key) {
    int dev = 0, sms = 0, per_sm = 0, major = 0;
    TQLM_CUDA_CHECK(cudaGetDevice(&dev));
    TQLM_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
    if (stages > 0 && major < 9) throw Error("cuda: staged fp16 pages need sm_90 (bulk copies)");
    cached = SelectKernel(c.dim, c.k_bits, c.v_bits, group, stages);
    TQLM_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
    TQLM_CUDA_CHECK(
        cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, cached.fn, kThreads, cached.smem));
    cached_resident = std::max(1, per_sm) * sms;
    cached_key = key;
  }
  // Persistent blocks must all be resident (the fused merge's last block waits on none, but a
  // plan whose f16_stages was overridden was sized for another kernel's occupancy).
  const int grid = std::min(p.grid, cached_resident);
  AttnArgs a{};
  a.batch = c.batch, a.n_heads = c.n_heads, a.n_kv_heads = c.n_kv_heads, a.group = group;
  a.pages = c.pages, a.page_bytes = c.PageBytes();
  a.block_table = c.block_table, a.max_chunks = c.max_chunks;
  a.seq_lens = seq_lens;
  a.sink_tokens = c.sink_tokens, a.recent_tokens = c.recent_tokens;
  a.sink_chunks = c.SinkChunks(), a.f16_chunks = c.F16Chunks();
  a.f16_region = c.f16_region, a.f16_page_bytes = c.F16PageBytes();
  a.q_rot = q_rot;
  a.q_f32 = t.k_identity ? q : nullptr;
  a.q_scale = attn_scale * kLog2e;
  a.k_inv_alpha = 1.0f / t.k_alpha, a.v_inv_alpha = 1.0f / t.v_alpha;
  a.lut_k = t.lut_k, a.lut_v = t.lut_v;
  a.chunks_per_split = p.chunks_per_split, a.n_splits = p.n_splits;
  a.l2_prefetch = p.l2_prefetch;
  a.part_o = part_o, a.part_ml = part_ml;
  const float* rot_v = t.v_identity ? nullptr : t.rot_v;
  if (p.fused_merge) {
    a.counters = reinterpret_cast<int*>(ws + w.counters);
    a.rot_v = rot_v, a.out = out;
  }
  LaunchKernel(cached.fn, grid, kThreads, cached.smem, stream, pdl, a);
  if (p.fused_merge) return;

  LaunchKernel(MergeKernel, c.batch * c.n_heads, kMergeThreads,
               ((kMergeSlices + 1) * c.dim + kMergeThreads * 4) * sizeof(float), stream, pdl,
               static_cast<const float*>(part_o), static_cast<const float2*>(part_ml), p.n_splits,
               group, c.n_heads, c.n_kv_heads, c.dim, rot_v, out);
}

}  // namespace tqlm::cuda
