#include "backend/cuda/cuda_tq_kv_cache.h"

#include <cuda_runtime.h>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "backend/cuda/kernels.h"
#include "backend/cuda/pinned_staging.h"
#include "backend/cuda/tq_format.h"
#include "kernels/cuda/cuda_check.h"
#include "kv/block_format.h"
#include "tqlm/codec.h"
#include "tqlm/error.h"

namespace tqlm::backend {
namespace {

using cuda_backend::kTqBlockTokens;

cudaStream_t S(void* stream) { return static_cast<cudaStream_t>(stream); }

void* DeviceAlloc(size_t bytes, const char* what) {
  void* p = nullptr;
  if (cudaMalloc(&p, std::max<size_t>(bytes, 1)) != cudaSuccess) {
    cudaGetLastError();
    size_t free_bytes = 0, total = 0;
    cudaMemGetInfo(&free_bytes, &total);
    throw Error(fmt::format("out of GPU memory: the KV cache's {} needs {} bytes, {} are free",
                            what, bytes, free_bytes));
  }
  return p;
}

template <typename T>
T* UploadVector(const std::vector<T>& v) {
  T* p = static_cast<T*>(DeviceAlloc(v.size() * sizeof(T), "codec tables"));
  TQLM_CUDA_CHECK(cudaMemcpy(p, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice));
  return p;
}

int FloorDiv(int a, int b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

bool TurboOnGpu(const kv::KvType& t) {
  return t.kind == kv::KvType::Kind::kTurbo && !t.prod && (t.bits <= 4 || t.bits == 8) &&
         t.bits >= 1;
}

}  // namespace

// The device tables of one TurboQuant format: codebooks and the codec's rotation as dense
// matrices (R e_i for every basis vector, so any rotation the codec uses works unchanged).
struct TqDeviceFormat {
  cuda_backend::TqFormat f;
  std::vector<void*> owned;

  TqDeviceFormat(const kv::KvType& type, int dim, kv::TensorRole role)
      : f(cuda_backend::MakeTqFormat(type, dim, role)) {
    const int hi = f.hi_bits, whole = f.lo_bits;
    // The CPU's own format must agree on the size (the layout is shared byte for byte).
    const auto cpu = kv::MakeBlockFormat(type, dim, role);
    if (cpu->block_bytes() != size_t(f.block_bytes))
      throw Error(fmt::format("CUDA KV cache: {} blocks are {} bytes on the CPU, {} here",
                              type.Name(), cpu->block_bytes(), f.block_bytes));
    codec::CodecConfig cc;
    cc.dim = dim;
    cc.bits = type.bits;
    cc.variant = codec::Variant::kMse;
    const codec::TurboQuantCodec codec(cc);
    const auto& cb_hi = codec::LloydMaxCodebook::Get(dim, hi, codec::CodecConfig{}.codebook);
    const auto& cb_lo = codec::LloydMaxCodebook::Get(dim, whole, codec::CodecConfig{}.codebook);
    std::vector<float> r(size_t(dim) * dim), rt(size_t(dim) * dim), e(dim), col(dim);
    for (int i = 0; i < dim; ++i) {
      std::fill(e.begin(), e.end(), 0.0f);
      e[i] = 1;
      codec.Rotate(e.data(), col.data());
      for (int j = 0; j < dim; ++j) {
        r[size_t(j) * dim + i] = col[j];   // R, row-major: y = R x
        rt[size_t(i) * dim + j] = col[j];  // R^T
      }
    }
    auto up = [&](const std::vector<float>& v) {
      float* p = UploadVector(v);
      owned.push_back(p);
      return p;
    };
    f.levels_hi = up(cb_hi.levels);
    f.levels_lo = up(cb_lo.levels);
    f.thr_hi = up(cb_hi.thresholds.empty() ? std::vector<float>{0} : cb_hi.thresholds);
    f.thr_lo = up(cb_lo.thresholds.empty() ? std::vector<float>{0} : cb_lo.thresholds);
    f.rot = up(r);
    f.rot_t = up(rt);
  }
  ~TqDeviceFormat() {
    for (void* p : owned) cudaFree(p);
  }
};

bool CudaTqKvCache::Supports(const kv::KvCacheConfig& config, std::string* why) {
  bool any = false;
  for (size_t l = 0; l < config.k_types.size(); ++l) {
    for (const kv::KvType* t : {&config.k_types[l], &config.v_types[l]}) {
      if (TurboOnGpu(*t)) {
        any = true;
      } else if (t->kind != kv::KvType::Kind::kF16) {
        if (why) *why = fmt::format("KV type {} is not available on the GPU (GPU types: f16, tq2..tq4, "
                                    "tq2.5, tq3.5, tq8, auto)", t->Name());
        return false;
      }
    }
  }
  if (!any && why) *why = "no TurboQuant type";
  return any;
}

CudaTqKvCache::CudaTqKvCache(const kv::KvCacheConfig& config, void* stream,
                             std::shared_ptr<PinnedStaging> staging)
    : config_(config), stream_(stream), staging_(std::move(staging)) {
  const size_t n_layers = config.layers.size();
  if (n_layers == 0 || config.k_types.size() != n_layers || config.v_types.size() != n_layers)
    throw Error("KV cache: layer count and K/V type lists differ");
  if (config.max_tokens <= 0 || config.sink_tokens < 0 || config.recent_tokens < 0)
    throw Error("KV cache: max_tokens must be > 0, sinks and recent tokens >= 0");
  std::string why;
  if (!Supports(config, &why)) throw Error(why);
  layers_.resize(n_layers);
  for (size_t l = 0; l < n_layers; ++l) {
    const kv::LayerGeometry& g = config.layers[l];
    if (g.n_heads <= 0 || g.n_kv_heads <= 0 || g.n_heads % g.n_kv_heads != 0 ||
        g.n_heads / g.n_kv_heads > cuda_backend::kMaxGroup ||
        !cuda_backend::AttentionHeadDimSupported(g.head_dim))
      throw Error(fmt::format("KV cache layer {}: {} heads / {} KV heads of size {} not supported "
                              "on the GPU", l, g.n_heads, g.n_kv_heads, g.head_dim));
    Layer& L = layers_[l];
    auto& p = L.p;
    p.n_heads = g.n_heads;
    p.n_kv_heads = g.n_kv_heads;
    p.dim = g.head_dim;
    p.window = g.sliding_window;
    p.recent = config.recent_tokens;
    L.k.comp = TurboOnGpu(config.k_types[l]);
    L.v.comp = TurboOnGpu(config.v_types[l]);
    p.k_comp = L.k.comp;
    p.v_comp = L.v.comp;
    // As on the CPU: sinks only on compressing global layers.
    p.sinks = (L.k.comp || L.v.comp) && g.sliding_window == 0 ? config.sink_tokens : 0;
    // Formats are shared between layers of the same type and size.
    for (size_t o = 0; o < l; ++o) {
      if (layers_[o].p.dim != p.dim) continue;
      if (L.k.comp && layers_[o].k.comp && config.k_types[o].Name() == config.k_types[l].Name())
        L.k.fmt = layers_[o].k.fmt;
      if (L.v.comp && layers_[o].v.comp && config.v_types[o].Name() == config.v_types[l].Name())
        L.v.fmt = layers_[o].v.fmt;
    }
    if (L.k.comp && !L.k.fmt)
      L.k.fmt = std::make_shared<TqDeviceFormat>(config.k_types[l], p.dim, kv::TensorRole::kKey);
    if (L.v.comp && !L.v.fmt)
      L.v.fmt = std::make_shared<TqDeviceFormat>(config.v_types[l], p.dim, kv::TensorRole::kValue);
    if (L.k.fmt) p.kf = L.k.fmt->f;
    if (L.v.fmt) p.vf = L.v.fmt->f;
  }
  Init();
}

void CudaTqKvCache::Init() {
  const size_t n_layers = layers_.size();
  table_dev_ = static_cast<cuda_backend::TqKvLayer*>(
      DeviceAlloc(n_layers * sizeof(cuda_backend::TqKvLayer), "layer table"));
  seq_table_dev_ = static_cast<const cuda_backend::TqKvLayer**>(
      DeviceAlloc(sizeof(void*), "sequence table"));
  TQLM_CUDA_CHECK(cudaMemcpy(seq_table_dev_, &table_dev_, sizeof(table_dev_),
                             cudaMemcpyHostToDevice));
  for (size_t l = 0; l < n_layers; ++l) {
    Layer& L = layers_[l];
    for (Tensor* t : {&L.k, &L.v}) EnsureRaw(L, *t, 0, std::min(3, MainBlocks(L, config_.max_tokens) - 1));
    UploadLayer(int(l));
  }
}

CudaTqKvCache::~CudaTqKvCache() {
  for (auto& L : layers_)
    for (Tensor* t : {&L.k, &L.v}) {
      cudaFree(t->raw);
      cudaFree(t->blocks);
    }
  cudaFree(table_dev_);
  cudaFree(seq_table_dev_);
  cudaFree(step_seq_dev_);
  cudaFree(step_pos_dev_);
  cudaFree(workspace_);
}

size_t CudaTqKvCache::KvDim(const Layer& L) const { return size_t(L.p.n_kv_heads) * L.p.dim; }

int CudaTqKvCache::MainBlocks(const Layer& L, int tokens) const {
  return tokens > L.p.sinks ? (tokens - L.p.sinks + kTqBlockTokens - 1) / kTqBlockTokens : 0;
}

// The first main block that a query at a position >= committed still sees raw.
int CudaTqKvCache::RawNeededFrom(const Layer& L, int committed) const {
  return std::max(0, FloorDiv(committed - L.p.recent - L.p.sinks, kTqBlockTokens));
}

cuda_backend::TqKvLayer CudaTqKvCache::DeviceLayer(const Layer& L) const {
  cuda_backend::TqKvLayer d;
  d.raw_k = L.k.raw;
  d.raw_v = L.v.raw;
  d.comp_k = L.k.blocks;
  d.comp_v = L.v.blocks;
  d.ring_k = L.k.ring_blocks * kTqBlockTokens;
  d.ring_v = L.v.ring_blocks * kTqBlockTokens;
  return d;
}

void CudaTqKvCache::UploadLayer(int layer) {
  const cuda_backend::TqKvLayer d = DeviceLayer(layers_[layer]);
  staging_->Upload(table_dev_ + layer, &d, sizeof(d), S(stream_));
}

// Room in t's ring for main blocks [first_live, last_block]: grows it (a power of two of blocks)
// and moves the live blocks [L.raw_first or 0, last written block] to their new slots.
void CudaTqKvCache::EnsureRaw(Layer& L, Tensor& t, int first_live, int last_block) {
  const int need = std::max(1, last_block - first_live + 1);
  if (t.raw && need <= t.ring_blocks) return;
  int blocks = std::max(1, t.ring_blocks);
  while (blocks < need) blocks *= 2;
  const size_t row_bytes = KvDim(L) * 2;
  const size_t sink_bytes = size_t(L.p.sinks) * row_bytes;
  const size_t block_bytes = size_t(kTqBlockTokens) * row_bytes;
  const size_t plane = sink_bytes + size_t(blocks) * block_bytes;
  const size_t old_plane = sink_bytes + size_t(t.ring_blocks) * block_bytes;
  auto* grown = static_cast<uint16_t*>(DeviceAlloc(RawPlanes(t) * plane, "raw rows"));
  TQLM_CUDA_CHECK(cudaMemsetAsync(grown, 0, RawPlanes(t) * plane, S(stream_)));
  if (t.raw) {
    for (size_t pl = 0; pl < RawPlanes(t); ++pl) {
      auto* dst = reinterpret_cast<uint8_t*>(grown) + pl * plane;
      auto* src = reinterpret_cast<uint8_t*>(t.raw) + pl * old_plane;
      if (sink_bytes)
        TQLM_CUDA_CHECK(
            cudaMemcpyAsync(dst, src, sink_bytes, cudaMemcpyDeviceToDevice, S(stream_)));
      const int live_first = t.comp ? L.raw_first : 0;
      const int live_last = MainBlocks(L, L.written) - 1;
      for (int b = live_first; b <= live_last; ++b)
        TQLM_CUDA_CHECK(cudaMemcpyAsync(dst + sink_bytes + size_t(b % blocks) * block_bytes,
                                        src + sink_bytes + size_t(b % t.ring_blocks) * block_bytes,
                                        block_bytes, cudaMemcpyDeviceToDevice, S(stream_)));
    }
    TQLM_CUDA_CHECK(cudaStreamSynchronize(S(stream_)));
    cudaFree(t.raw);
  }
  t.raw = grown;
  t.ring_blocks = blocks;
}

void CudaTqKvCache::EnsureBlocks(Layer& L, Tensor& t, int blocks) {
  if (!t.comp || blocks <= t.block_cap) return;
  int cap = std::max(t.block_cap, 16);
  while (cap < blocks) cap *= 2;
  cap = std::min(cap, std::max(blocks, MainBlocks(L, config_.max_tokens)));
  const size_t per_block = size_t(L.p.n_kv_heads) * t.fmt->f.block_stride;
  auto* grown = static_cast<uint8_t*>(DeviceAlloc(size_t(cap) * per_block, "compressed blocks"));
  if (t.blocks) {
    if (L.n_enc)
      TQLM_CUDA_CHECK(cudaMemcpyAsync(grown, t.blocks, size_t(L.n_enc) * per_block,
                                      cudaMemcpyDeviceToDevice, S(stream_)));
    TQLM_CUDA_CHECK(cudaStreamSynchronize(S(stream_)));
    cudaFree(t.blocks);
  }
  t.blocks = grown;
  t.block_cap = cap;
}

void CudaTqKvCache::CheckLayer(int layer) const {
  if (layer < 0 || layer >= int(layers_.size()))
    throw Error(fmt::format("KV cache: layer {} out of range", layer));
}

void CudaTqKvCache::BeginStep(int n) {
  if (n > step_capacity_) {
    cudaFree(step_seq_dev_);
    cudaFree(step_pos_dev_);
    step_seq_dev_ = step_pos_dev_ = nullptr;
    step_capacity_ = 0;
    step_seq_dev_ = static_cast<int32_t*>(DeviceAlloc(n * sizeof(int32_t), "step positions"));
    step_pos_dev_ = static_cast<int32_t*>(DeviceAlloc(n * sizeof(int32_t), "step positions"));
    step_capacity_ = n;
  }
  std::vector<int32_t> seq(n, 0), pos(n);
  for (int i = 0; i < n; ++i) pos[i] = n_tokens_ + i;
  staging_->Upload(step_seq_dev_, seq.data(), n * sizeof(int32_t), S(stream_));
  staging_->Upload(step_pos_dev_, pos.data(), n * sizeof(int32_t), S(stream_));
  step_n_ = n;
}

void CudaTqKvCache::PrepareAppend(int layer, int n) {
  CheckLayer(layer);
  const int T = n_tokens_;
  if (T + n > config_.max_tokens)
    throw Error(fmt::format("KV cache: {} + {} tokens exceed the cache size {}", T, n,
                            config_.max_tokens));
  Layer& L = layers_[layer];
  if (L.written > T) {  // a step that was never committed: its blocks are written again
    L.n_enc = std::min(L.n_enc, T > L.p.sinks ? (T - L.p.sinks) / kTqBlockTokens : 0);
    L.written = T;
  }
  // Blocks every future query sees compressed give up their raw rows (they were encoded when
  // they filled up).
  if (L.k.comp || L.v.comp)
    L.raw_first = std::max(L.raw_first, std::min(RawNeededFrom(L, T), L.n_enc));
  const int last = MainBlocks(L, T + n) - 1;
  bool moved = false;
  for (Tensor* t : {&L.k, &L.v}) {
    uint16_t* raw = t->raw;
    uint8_t* blocks = t->blocks;
    EnsureRaw(L, *t, t->comp ? L.raw_first : 0, last);
    EnsureBlocks(L, *t, last + 1);
    moved = moved || raw != t->raw || blocks != t->blocks;
  }
  if (moved) UploadLayer(layer);
}

void CudaTqKvCache::FinishAppend(int layer, int n) {
  Layer& L = layers_[layer];
  L.written = n_tokens_ + n;
  const int full = L.written > L.p.sinks ? (L.written - L.p.sinks) / kTqBlockTokens : 0;
  if ((L.k.comp || L.v.comp) && full > L.n_enc) {
    cuda_backend::LaunchTqEncodeBlocks(DeviceLayer(L), L.p, L.n_enc, full - L.n_enc, stream_);
    L.n_enc = full;
  }
}

void CudaTqKvCache::Append(int layer, const float* k, const float* v, int n) {
  AppendWithQueries(layer, k, v, nullptr, n);
}

void CudaTqKvCache::AppendWithQueries(int layer, const float* k, const float* v, const float* q,
                                      int n) {
  CheckLayer(layer);
  rotated_layer_ = -1;
  rotated_src_ = nullptr;
  if (n <= 0) return;
  PrepareAppend(layer, n);
  if (layer == 0 || n != step_n_) BeginStep(n);
  const cuda_backend::TqStepView step{seq_table_dev_, step_seq_dev_, step_pos_dev_, n, layer};
  const cuda_backend::TqLayerParams& p = layers_[layer].p;
  float* q_rot = nullptr;
  if (q != nullptr && p.k_comp) {
    // Attend's workspace for this step (same size), rotated queries first.
    q_rot = cuda_backend::TqRotatedQueries(
        Workspace(cuda_backend::TqAttendWorkspaceFloats(n, p, n_tokens_ + n)));
    rotated_layer_ = layer;
    rotated_src_ = q;
  }
  cuda_backend::LaunchTqAppendRaw(step, p, k, v, stream_, q, q_rot);
  FinishAppend(layer, n);
}

float* CudaTqKvCache::Workspace(size_t floats) {
  if (floats > workspace_floats_) {
    cudaFree(workspace_);
    workspace_ = nullptr;
    workspace_floats_ = 0;
    workspace_ = static_cast<float*>(DeviceAlloc(floats * sizeof(float), "attention workspace"));
    workspace_floats_ = floats;
  }
  return workspace_;
}

bool CudaTqKvCache::SameLayout(const CudaTqKvCache& o) const {
  if (o.config_.layers.size() != config_.layers.size()) return false;
  for (size_t l = 0; l < config_.layers.size(); ++l) {
    const kv::LayerGeometry &a = config_.layers[l], &b = o.config_.layers[l];
    if (a.n_heads != b.n_heads || a.n_kv_heads != b.n_kv_heads || a.head_dim != b.head_dim ||
        a.sliding_window != b.sliding_window ||
        config_.k_types[l].Name() != o.config_.k_types[l].Name() ||
        config_.v_types[l].Name() != o.config_.v_types[l].Name())
      return false;
  }
  return config_.sink_tokens == o.config_.sink_tokens &&
         config_.recent_tokens == o.config_.recent_tokens &&
         config_.attn_scale == o.config_.attn_scale;
}

void CudaTqKvCache::Attend(int layer, const float* q, int n, float* out, kernels::ThreadPool&) {
  CheckLayer(layer);
  if (n <= 0) return;
  Layer& L = layers_[layer];
  if (L.written != n_tokens_ + n || n != step_n_)
    throw Error(fmt::format("KV cache: Attend over {} queries of layer {} after appending {}", n,
                            layer, L.written - n_tokens_));
  cuda_backend::TqAttendArgs a;
  a.step = {seq_table_dev_, step_seq_dev_, step_pos_dev_, n, layer};
  a.p = L.p;
  a.max_pos = n_tokens_ + n;
  a.scale = config_.attn_scale > 0 ? config_.attn_scale : 1.0f / std::sqrt(float(L.p.dim));
  a.out = out;
  a.workspace = Workspace(cuda_backend::TqAttendWorkspaceFloats(n, L.p, a.max_pos));
  const bool rotated = L.p.k_comp && rotated_layer_ == layer && rotated_src_ == q;
  rotated_layer_ = -1;
  rotated_src_ = nullptr;
  a.q = rotated ? cuda_backend::TqRotatedQueries(a.workspace) : q;
  a.q_rotated = rotated;
  cuda_backend::LaunchTqAttend(a, stream_);
}

void CudaTqKvCache::Commit(int n) {
  for (size_t l = 0; l < layers_.size(); ++l)
    if (layers_[l].written != n_tokens_ + n)
      throw Error(fmt::format("KV cache: Commit({}) but layer {} holds {} new tokens", n, l,
                              layers_[l].written - n_tokens_));
  n_tokens_ += n;
  step_n_ = 0;
}

void CudaTqKvCache::Truncate(int n) {
  if (n < 0 || n > n_tokens_) throw Error(fmt::format("KV cache: cannot truncate to {}", n));
  for (size_t l = 0; l < layers_.size(); ++l) {
    Layer& L = layers_[l];
    L.written = std::min(L.written, n_tokens_);  // drop an uncommitted step
    if (L.k.comp || L.v.comp) {
      // Blocks a query at n or later sees raw but whose raw rows are gone: their decoded values
      // become raw rows again (as the CPU re-stores a cut compressed block).
      const int need_first = RawNeededFrom(L, n);
      const int last = MainBlocks(L, n) - 1;
      const int decode_end = std::min(L.raw_first, last + 1);
      if (need_first < decode_end) {
        const int keep_written = L.written;
        L.written = std::min(L.written, n);
        for (Tensor* t : {&L.k, &L.v})
          if (t->comp) EnsureRaw(L, *t, need_first, std::max(last, MainBlocks(L, L.written) - 1));
        UploadLayer(int(l));
        cuda_backend::LaunchTqDecodeBlocks(DeviceLayer(L), L.p, need_first,
                                           decode_end - need_first, stream_);
        L.written = keep_written;
      }
      L.raw_first = std::min(L.raw_first, need_first);
      L.n_enc = std::min(L.n_enc, n > L.p.sinks ? (n - L.p.sinks) / kTqBlockTokens : 0);
    }
    L.written = std::min(L.written, n);
  }
  n_tokens_ = n;
  step_n_ = 0;
}

// The CPU cache's rule (paged_kv_cache.cc) with "compressed for good" = raw rows dropped.
int CudaTqKvCache::LosslessTruncationPoint(int n) const {
  n = std::clamp(n, 0, n_tokens_);
  const int R = config_.recent_tokens;
  auto largest_exact = [&](const Layer& L, int m) {
    const int S = L.p.sinks, n_comp = (L.k.comp || L.v.comp) ? L.raw_first : 0;
    const int rel = m - S;
    if (rel <= 0 || n_comp == 0) return m;
    const int full = rel / kTqBlockTokens;
    if (full >= n_comp) {
      if (S + n_comp * kTqBlockTokens + R <= m) return m;
      return R == 0 ? m : std::min(m, S);
    }
    if (R > 0) return S;
    return S + full * kTqBlockTokens;
  };
  for (bool moved = true; moved;) {
    moved = false;
    for (const Layer& L : layers_) {
      const int m = largest_exact(L, n);
      if (m != n) {
        n = m;
        moved = true;
      }
    }
  }
  return n;
}

kv::KvMemoryStats CudaTqKvCache::MemoryStats() const {
  kv::KvMemoryStats s;
  const int T = n_tokens_;
  for (const Layer& L : layers_) {
    const size_t row = KvDim(L) * 2;  // fp16 bytes of one token of one tensor
    for (const Tensor* t : {&L.k, &L.v}) {
      s.bytes_allocated +=
          RawPlanes(*t) * (size_t(L.p.sinks) + size_t(t->ring_blocks) * kTqBlockTokens) * row;
      if (t->comp) s.bytes_allocated += size_t(t->block_cap) * L.p.n_kv_heads * t->fmt->f.block_stride;
      double used = std::min(T, L.p.sinks) * double(row);
      for (int b = 0; b < MainBlocks(L, T); ++b) {
        const int first = L.p.sinks + b * kTqBlockTokens;
        const int cnt = std::clamp(T - first, 0, kTqBlockTokens);
        const bool comp = t->comp && first + kTqBlockTokens + L.p.recent <= T;
        used += comp ? double(cnt) * L.p.n_kv_heads * t->fmt->f.block_bytes / kTqBlockTokens
                     : double(cnt) * row;
      }
      s.bytes_used += size_t(std::llround(used));
    }
    s.bytes_f16 += size_t(T) * row * 2;
  }
  return s;
}

std::unique_ptr<kv::KvCache> CudaTqKvCache::Clone() const {
  auto c = std::make_unique<CudaTqKvCache>(config_, stream_, staging_);
  for (size_t l = 0; l < layers_.size(); ++l) {
    const Layer& O = layers_[l];
    Layer& L = c->layers_[l];
    L.written = O.written;
    L.n_enc = O.n_enc;
    L.raw_first = O.raw_first;
    const Tensor* src[2] = {&O.k, &O.v};
    Tensor* dst[2] = {&L.k, &L.v};
    for (int x = 0; x < 2; ++x) {
      Tensor& t = *dst[x];
      const Tensor& o = *src[x];
      cudaFree(t.raw);
      t.raw = nullptr;
      t.ring_blocks = o.ring_blocks;
      const size_t raw_bytes = RawPlanes(o) *
          (size_t(L.p.sinks) + size_t(o.ring_blocks) * kTqBlockTokens) * KvDim(L) * 2;
      t.raw = static_cast<uint16_t*>(DeviceAlloc(raw_bytes, "raw rows"));
      TQLM_CUDA_CHECK(cudaMemcpyAsync(t.raw, o.raw, raw_bytes, cudaMemcpyDeviceToDevice, S(stream_)));
      if (o.comp && o.blocks) {
        c->EnsureBlocks(L, t, o.block_cap);
        TQLM_CUDA_CHECK(cudaMemcpyAsync(t.blocks, o.blocks,
                                        size_t(o.block_cap) * L.p.n_kv_heads * o.fmt->f.block_stride,
                                        cudaMemcpyDeviceToDevice, S(stream_)));
      }
    }
    c->UploadLayer(int(l));
  }
  TQLM_CUDA_CHECK(cudaStreamSynchronize(S(stream_)));
  c->n_tokens_ = n_tokens_;
  return c;
}

std::vector<uint8_t> CudaTqKvCache::DownloadBlock(int layer, bool key, int head, int b) const {
  CheckLayer(layer);
  const Layer& L = layers_[layer];
  const Tensor& t = key ? L.k : L.v;
  if (!t.comp || b < 0 || b >= L.n_enc || head < 0 || head >= L.p.n_kv_heads) return {};
  std::vector<uint8_t> bytes(t.fmt->f.block_bytes);
  TQLM_CUDA_CHECK(cudaStreamSynchronize(S(stream_)));
  TQLM_CUDA_CHECK(cudaMemcpy(bytes.data(),
                             t.blocks + (size_t(b) * L.p.n_kv_heads + head) * t.fmt->f.block_stride,
                             bytes.size(), cudaMemcpyDeviceToHost));
  return bytes;
}

}  // namespace tqlm::backend
