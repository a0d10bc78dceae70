// The KV cache in GPU memory (f16 K and V), the kind the CUDA backend's models take.
//
// Every token of every layer is stored at its position: [capacity][n_kv_heads][head_dim]
// halves per layer and tensor, the capacity doubling up to the context size as the sequence
// grows. Sliding-window layers keep their old tokens too (the attention skips them). Compressed
// (TurboQuant, q8_0) types are not available on the GPU yet: the constructor says so.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "backend/cuda/kernels.h"
#include "kv/kv_cache.h"

namespace tqlm::backend {

class PinnedStaging;

class CudaKvCache final : public kv::KvCache {
 public:
  // stream: the backend's cudaStream_t; staging: its pinned upload ring.
  CudaKvCache(const kv::KvCacheConfig& config, void* stream,
              std::shared_ptr<PinnedStaging> staging);
  ~CudaKvCache() override;
  CudaKvCache(const CudaKvCache&) = delete;
  CudaKvCache& operator=(const CudaKvCache&) = delete;

  int n_tokens() const override { return n_tokens_; }
  void Append(int layer, const float* k, const float* v, int n) override;
  void Attend(int layer, const float* q, int n, float* out, kernels::ThreadPool& pool) override;
  void Commit(int n) override;
  void Truncate(int n) override;
  kv::KvMemoryStats MemoryStats() const override;
  std::unique_ptr<kv::KvCache> Clone() const override;

  // For a batched step over several caches (CudaBackend::AppendAttendBatch).
  void EnsureCapacity(int tokens);  // room for positions [0, tokens); throws past max_tokens
  const cuda_backend::F16KvLayer* device_table() const { return table_dev_; }
  const kv::KvCacheConfig& config() const { return config_; }
  void MarkWritten(int layer, int n);  // the batched path appended n tokens to `layer`

 private:
  void BeginStep(int n);
  void CheckLayer(int layer) const;
  size_t KvDim(int layer) const;

  kv::KvCacheConfig config_;
  void* stream_;
  std::shared_ptr<PinnedStaging> staging_;
  int n_tokens_ = 0;
  int capacity_ = 0;
  std::vector<cuda_backend::F16KvLayer> layers_;  // device buffers per layer
  std::vector<int> written_;                      // tokens stored per layer (this step's too)
  cuda_backend::F16KvLayer* table_dev_ = nullptr; // device copy of layers_
  // The current step's metadata on the device: one sequence (index 0), positions.
  const cuda_backend::F16KvLayer** seq_table_dev_ = nullptr;
  int32_t* step_seq_dev_ = nullptr;
  int32_t* step_pos_dev_ = nullptr;
  int step_capacity_ = 0;
  int step_n_ = 0;
  float* partial_ = nullptr;
  size_t partial_floats_ = 0;
};

}  // namespace tqlm::backend
