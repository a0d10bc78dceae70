#include "backend/cuda/cuda_kv_cache.h"

#include <cuda_runtime.h>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "backend/cuda/pinned_staging.h"
#include "kernels/cuda/cuda_check.h"
#include "tqlm/error.h"

namespace tqlm::backend {
namespace {

cudaStream_t S(void* stream) { return static_cast<cudaStream_t>(stream); }

template <typename T>
T* DeviceAlloc(size_t count, const char* what) {
  void* p = nullptr;
  const size_t bytes = std::max<size_t>(count * sizeof(T), 1);
  if (cudaMalloc(&p, bytes) != cudaSuccess) {
    cudaGetLastError();  // clear the error: the process goes on
    size_t free_bytes = 0, total = 0;
    cudaMemGetInfo(&free_bytes, &total);
    throw Error(fmt::format("out of GPU memory: the KV cache's {} needs {} bytes, {} are free",
                            what, bytes, free_bytes));
  }
  return static_cast<T*>(p);
}

}  // namespace

CudaKvCache::CudaKvCache(const kv::KvCacheConfig& config, void* stream,
                         std::shared_ptr<PinnedStaging> staging)
    : config_(config), stream_(stream), staging_(std::move(staging)) {
  const size_t n_layers = config.layers.size();
  if (n_layers == 0 || config.k_types.size() != n_layers || config.v_types.size() != n_layers)
    throw Error("KV cache: layer count and K/V type lists differ");
  if (config.max_tokens <= 0) throw Error("KV cache: max_tokens must be > 0");
  for (size_t l = 0; l < n_layers; ++l) {
    for (const kv::KvType* t : {&config.k_types[l], &config.v_types[l]}) {
      if (t->kind != kv::KvType::Kind::kF16)
        throw Error(fmt::format("KV type {} is not available on the GPU (GPU types: f16, "
                                "tq2..tq4, tq2.5, tq3.5, tq8, auto)", t->Name()));
    }
    const kv::LayerGeometry& g = config.layers[l];
    if (g.n_heads <= 0 || g.n_kv_heads <= 0 || g.n_heads % g.n_kv_heads != 0 ||
        g.n_heads / g.n_kv_heads > cuda_backend::kMaxGroup ||
        !cuda_backend::AttentionHeadDimSupported(g.head_dim))
      throw Error(fmt::format("KV cache layer {}: {} heads / {} KV heads of size {} not supported "
                              "on the GPU", l, g.n_heads, g.n_kv_heads, g.head_dim));
  }
  layers_.resize(n_layers);
  written_.assign(n_layers, 0);
  table_dev_ = DeviceAlloc<cuda_backend::F16KvLayer>(n_layers, "layer table");
  seq_table_dev_ = DeviceAlloc<const cuda_backend::F16KvLayer*>(1, "sequence table");
  TQLM_CUDA_CHECK(cudaMemcpy(seq_table_dev_, &table_dev_, sizeof(table_dev_),
                             cudaMemcpyHostToDevice));
  EnsureCapacity(std::min(config.max_tokens, 256));
}

CudaKvCache::~CudaKvCache() {
  for (auto& L : layers_) {
    cudaFree(L.k);
    cudaFree(L.v);
  }
  cudaFree(table_dev_);
  cudaFree(seq_table_dev_);
  cudaFree(step_seq_dev_);
  cudaFree(step_pos_dev_);
  cudaFree(partial_);
}

size_t CudaKvCache::KvDim(int layer) const {
  const kv::LayerGeometry& g = config_.layers[layer];
  return size_t(g.n_kv_heads) * g.head_dim;
}

void CudaKvCache::EnsureCapacity(int tokens) {
  if (tokens > config_.max_tokens)
    throw Error(fmt::format("KV cache: {} tokens exceed the context size {}", tokens,
                            config_.max_tokens));
  if (tokens <= capacity_) return;
  int cap = std::max(capacity_, 256);
  while (cap < tokens) cap *= 2;
  cap = std::min(cap, config_.max_tokens);
  // New buffers for every layer first: if one allocation fails, nothing has changed.
  std::vector<cuda_backend::F16KvLayer> grown(layers_.size());
  try {
    for (size_t l = 0; l < layers_.size(); ++l) {
      grown[l].k = DeviceAlloc<uint16_t>(size_t(cap) * KvDim(int(l)), "K buffer");
      grown[l].v = DeviceAlloc<uint16_t>(size_t(cap) * KvDim(int(l)), "V buffer");
    }
  } catch (...) {
    for (auto& L : grown) {
      cudaFree(L.k);
      cudaFree(L.v);
    }
    throw;
  }
  for (size_t l = 0; l < layers_.size(); ++l) {
    const size_t used = size_t(written_[l]) * KvDim(int(l)) * 2;
    if (used) {
      TQLM_CUDA_CHECK(cudaMemcpyAsync(grown[l].k, layers_[l].k, used, cudaMemcpyDeviceToDevice,
                                      S(stream_)));
      TQLM_CUDA_CHECK(cudaMemcpyAsync(grown[l].v, layers_[l].v, used, cudaMemcpyDeviceToDevice,
                                      S(stream_)));
    }
  }
  TQLM_CUDA_CHECK(cudaStreamSynchronize(S(stream_)));
  for (size_t l = 0; l < layers_.size(); ++l) {
    cudaFree(layers_[l].k);
    cudaFree(layers_[l].v);
  }
  layers_ = std::move(grown);
  capacity_ = cap;
  TQLM_CUDA_CHECK(cudaMemcpy(table_dev_, layers_.data(),
                             layers_.size() * sizeof(cuda_backend::F16KvLayer),
                             cudaMemcpyHostToDevice));
}

void CudaKvCache::CheckLayer(int layer) const {
  if (layer < 0 || layer >= int(layers_.size()))
    throw Error(fmt::format("KV cache: layer {} out of range", layer));
}

void CudaKvCache::BeginStep(int n) {
  EnsureCapacity(n_tokens_ + n);
  if (n > step_capacity_) {
    cudaFree(step_seq_dev_);
    cudaFree(step_pos_dev_);
    step_seq_dev_ = step_pos_dev_ = nullptr;
    step_capacity_ = 0;
    step_seq_dev_ = DeviceAlloc<int32_t>(n, "step positions");
    step_pos_dev_ = DeviceAlloc<int32_t>(n, "step positions");
    step_capacity_ = n;
  }
  std::vector<int32_t> seq(n, 0), pos(n);
  for (int i = 0; i < n; ++i) pos[i] = n_tokens_ + i;
  staging_->Upload(step_seq_dev_, seq.data(), n * sizeof(int32_t), S(stream_));
  staging_->Upload(step_pos_dev_, pos.data(), n * sizeof(int32_t), S(stream_));
  step_n_ = n;
}

void CudaKvCache::Append(int layer, const float* k, const float* v, int n) {
  CheckLayer(layer);
  if (n <= 0) return;
  if (written_[layer] != n_tokens_)
    throw Error(fmt::format("KV cache: layer {} appended twice in one step", layer));
  if (layer == 0 || n != step_n_) BeginStep(n);
  cuda_backend::F16StepView step{seq_table_dev_, step_seq_dev_, step_pos_dev_, n, layer};
  cuda_backend::LaunchF16Append(step, int(KvDim(layer)), k, v, stream_);
  written_[layer] = n_tokens_ + n;
}

void CudaKvCache::MarkWritten(int layer, int n) {
  CheckLayer(layer);
  written_[layer] = n_tokens_ + n;
}

void CudaKvCache::Attend(int layer, const float* q, int n, float* out, kernels::ThreadPool&) {
  CheckLayer(layer);
  if (n <= 0) return;
  if (written_[layer] != n_tokens_ + n || n != step_n_)
    throw Error(fmt::format("KV cache: Attend over {} queries of layer {} after appending {}", n,
                            layer, written_[layer] - n_tokens_));
  const kv::LayerGeometry& g = config_.layers[layer];
  cuda_backend::F16AttendArgs a;
  a.step = {seq_table_dev_, step_seq_dev_, step_pos_dev_, n, layer};
  a.max_pos = n_tokens_ + n;
  a.n_heads = g.n_heads;
  a.n_kv_heads = g.n_kv_heads;
  a.head_dim = g.head_dim;
  a.window = g.sliding_window;
  a.scale = config_.attn_scale > 0 ? config_.attn_scale : 1.0f / std::sqrt(float(g.head_dim));
  a.q = q;
  a.out = out;
  const size_t need =
      cuda_backend::F16AttendWorkspaceFloats(n, g.n_heads, g.head_dim, a.max_pos);
  if (need > partial_floats_) {
    cudaFree(partial_);
    partial_ = nullptr;
    partial_floats_ = 0;
    partial_ = DeviceAlloc<float>(need, "attention workspace");
    partial_floats_ = need;
  }
  a.partial = partial_;
  cuda_backend::LaunchF16Attend(a, stream_);
}

void CudaKvCache::Commit(int n) {
  for (size_t l = 0; l < written_.size(); ++l)
    if (written_[l] != n_tokens_ + n)
      throw Error(fmt::format("KV cache: Commit({}) but layer {} holds {} new tokens", n, l,
                              written_[l] - n_tokens_));
  n_tokens_ += n;
  step_n_ = 0;
}

void CudaKvCache::Truncate(int n) {
  if (n < 0 || n > n_tokens_) throw Error(fmt::format("KV cache: cannot truncate to {}", n));
  n_tokens_ = n;
  std::fill(written_.begin(), written_.end(), n);
  step_n_ = 0;
}

kv::KvMemoryStats CudaKvCache::MemoryStats() const {
  kv::KvMemoryStats s;
  for (size_t l = 0; l < layers_.size(); ++l) {
    const size_t per_token = KvDim(int(l)) * 2 * 2;
    s.bytes_allocated += size_t(capacity_) * per_token;
    s.bytes_used += size_t(n_tokens_) * per_token;
  }
  s.bytes_f16 = s.bytes_used;
  return s;
}

std::unique_ptr<kv::KvCache> CudaKvCache::Clone() const {
  auto c = std::make_unique<CudaKvCache>(config_, stream_, staging_);
  c->EnsureCapacity(n_tokens_);
  for (size_t l = 0; l < layers_.size(); ++l) {
    const size_t bytes = size_t(n_tokens_) * KvDim(int(l)) * 2;
    if (!bytes) continue;
    TQLM_CUDA_CHECK(cudaMemcpyAsync(c->layers_[l].k, layers_[l].k, bytes,
                                    cudaMemcpyDeviceToDevice, S(stream_)));
    TQLM_CUDA_CHECK(cudaMemcpyAsync(c->layers_[l].v, layers_[l].v, bytes,
                                    cudaMemcpyDeviceToDevice, S(stream_)));
  }
  TQLM_CUDA_CHECK(cudaStreamSynchronize(S(stream_)));
  c->n_tokens_ = n_tokens_;
  std::fill(c->written_.begin(), c->written_.end(), n_tokens_);
  return c;
}

}  // namespace tqlm::backend
