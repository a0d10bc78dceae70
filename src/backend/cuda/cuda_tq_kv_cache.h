// The compressed KV cache in GPU memory: every TurboQuant type of the CPU cache (tq2..tq4, the
// fractional tq2.5/tq3.5, tq8; K and V types independent, per-layer types), with the CPU's sinks,
// recent full-precision buffer, key centering and sliding windows, and the CPU's rule for which
// tokens a query sees compressed (kv/paged_kv_cache.h). Layout and kernels: tq_kv_kernels.h.
//
// Per layer and tensor: fp16 raw rows for the sinks and a ring of the blocks that some present or
// future query still sees raw (those with end_b + recent > committed length, plus the step's),
// and compressed blocks encoded on the GPU as soon as their 64 tokens are written. An f16 tensor
// keeps raw rows for every position. Sliding-window layers keep their old compressed blocks
// (the attention skips them); their raw ring is bounded like every other.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <memory>
#include <vector>

#include "backend/cuda/tq_kv_kernels.h"
#include "kv/kv_cache.h"

namespace tqlm::backend {

class PinnedStaging;
struct TqDeviceFormat;

class CudaTqKvCache final : public kv::KvCache {
 public:
  // Whether the CUDA backend takes this configuration with this cache (some tensor TurboQuant,
  // every tensor f16 or a TurboQuant type of the block layout); *why says what is missing.
  static bool Supports(const kv::KvCacheConfig& config, std::string* why);

  CudaTqKvCache(const kv::KvCacheConfig& config, void* stream,
                std::shared_ptr<PinnedStaging> staging);
  ~CudaTqKvCache() override;
  CudaTqKvCache(const CudaTqKvCache&) = delete;
  CudaTqKvCache& operator=(const CudaTqKvCache&) = delete;

  int n_tokens() const override { return n_tokens_; }
  void Append(int layer, const float* k, const float* v, int n) override;
  // Append, with the step's queries q rotated into the attention workspace by the same launch:
  // the next Attend of this layer over the same q skips its own rotation launch.
  void AppendWithQueries(int layer, const float* k, const float* v, const float* q, int n);
  void Attend(int layer, const float* q, int n, float* out, kernels::ThreadPool& pool) override;
  void Commit(int n) override;
  void Truncate(int n) override;
  kv::KvMemoryStats MemoryStats() const override;
  int LosslessTruncationPoint(int n) const override;
  std::unique_ptr<kv::KvCache> Clone() const override;

  // A batched decode step over several caches (CudaBackend::AppendAttendBatch): the host side
  // of appending n tokens to `layer` (buffers grown, table uploaded) before the batch's append
  // launch, and after it (the step's length recorded, blocks it completed encoded).
  void PrepareAppend(int layer, int n);
  void FinishAppend(int layer, int n);
  // Same layer geometry, types, sinks, buffer and scale: one launch can serve both.
  bool SameLayout(const CudaTqKvCache& other) const;
  const cuda_backend::TqKvLayer* device_table() const { return table_dev_; }
  const cuda_backend::TqLayerParams& params(int layer) const { return layers_[layer].p; }
  float attn_scale(int layer) const {
    return config_.attn_scale > 0 ? config_.attn_scale : 1.0f / std::sqrt(float(layers_[layer].p.dim));
  }

  // Tests: the bytes of main block b of KV head `head` (K when key, else V), exactly the CPU
  // block format's; empty when that block is not encoded (yet) or the tensor is f16.
  std::vector<uint8_t> DownloadBlock(int layer, bool key, int head, int b) const;

 private:
  struct Tensor {
    bool comp = false;
    std::shared_ptr<TqDeviceFormat> fmt;
    uint16_t* raw = nullptr;
    int ring_blocks = 0;  // main-region blocks in the ring
    uint8_t* blocks = nullptr;
    int block_cap = 0;    // compressed blocks allocated
  };
  // Planes of raw rows (tq_layout.h SourcePlane): a TurboQuant tensor also keeps its unrotated
  // fp16 rows for the block encoder.
  static size_t RawPlanes(const Tensor& t) { return t.comp ? 2 : 1; }
  struct Layer {
    cuda_backend::TqLayerParams p;
    Tensor k, v;
    int written = 0;    // tokens stored (committed + the current step's)
    int n_enc = 0;      // main blocks [0, n_enc) encoded
    int raw_first = 0;  // main blocks [raw_first, ...) still have raw rows (compressing layers)
  };

  void Init();
  void CheckLayer(int layer) const;
  int MainBlocks(const Layer& L, int tokens) const;  // main blocks holding any of `tokens`
  int RawNeededFrom(const Layer& L, int committed) const;
  void EnsureRaw(Layer& L, Tensor& t, int first_live, int last_block);
  void EnsureBlocks(Layer& L, Tensor& t, int blocks);
  void UploadLayer(int layer);
  cuda_backend::TqKvLayer DeviceLayer(const Layer& L) const;
  void BeginStep(int n);
  float* Workspace(size_t floats);  // the attention workspace, grown to `floats`
  size_t KvDim(const Layer& L) const;

  kv::KvCacheConfig config_;
  void* stream_;
  std::shared_ptr<PinnedStaging> staging_;
  int n_tokens_ = 0;
  std::vector<Layer> layers_;
  cuda_backend::TqKvLayer* table_dev_ = nullptr;
  const cuda_backend::TqKvLayer** seq_table_dev_ = nullptr;
  int32_t* step_seq_dev_ = nullptr;
  int32_t* step_pos_dev_ = nullptr;
  int step_capacity_ = 0;
  int step_n_ = 0;
  float* workspace_ = nullptr;
  size_t workspace_floats_ = 0;
  int rotated_layer_ = -1;             // AppendWithQueries rotated rotated_src_ for this layer
  const float* rotated_src_ = nullptr;
};

}  // namespace tqlm::backend
