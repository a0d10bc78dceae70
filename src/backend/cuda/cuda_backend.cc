#include "backend/cuda/cuda_backend.h"

#include <cuda_runtime.h>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "backend/cuda/cuda_kv_cache.h"
#include "backend/cuda/cuda_tq_kv_cache.h"
#include "backend/cuda/kernels.h"
#include "backend/cuda/op_profile.h"
#include "backend/cuda/pinned_staging.h"
#include "kernels/cuda/cuda_check.h"
#include "tqlm/error.h"

namespace tqlm::backend {
namespace {

constexpr size_t kWeightAlign = 256;

std::string GiB(size_t bytes) { return fmt::format("{:.2f} GiB", double(bytes) / (1 << 30)); }

class CudaBackend final : public Backend {
 public:
  CudaBackend() {
    TQLM_CUDA_CHECK(cudaSetDevice(0));
    TQLM_CUDA_CHECK(cudaGetDeviceProperties(&props_, 0));
    TQLM_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    staging_ = std::make_shared<PinnedStaging>();
    tokens_.Bind(*this);
    pos_.Bind(*this);
    out_.Bind(*this);
    batch_.Bind(*this);
    batch_partial_.Bind(*this);
    tq_batch_.Bind(*this);
  }
  ~CudaBackend() override {
    tokens_ = Array<int32_t>();
    pos_ = Array<int32_t>();
    out_ = Array<float>();
    batch_ = Array<int32_t>();
    batch_partial_ = Array<float>();
    tq_batch_ = Array<int32_t>();
    staging_.reset();
    for (void* p : extra_) cudaFree(p);
    cudaFree(arena_);
    cudaStreamDestroy(stream_);
  }

  Device device() const override { return Device::kCuda; }
  std::string Describe() const override {
    size_t free_bytes = 0, total = 0;
    cudaMemGetInfo(&free_bytes, &total);
    return fmt::format("cuda: {} (sm_{}{}, {} SMs, {} total, {} free)", props_.name,
                       props_.major, props_.minor, props_.multiProcessorCount, GiB(total),
                       GiB(free_bytes));
  }

  void* Allocate(size_t bytes) override {
    void* p = nullptr;
    if (cudaMalloc(&p, std::max<size_t>(bytes, 1)) != cudaSuccess) {
      cudaGetLastError();
      size_t free_bytes = 0, total = 0;
      cudaMemGetInfo(&free_bytes, &total);
      throw Error(fmt::format("out of GPU memory: {} bytes requested, {} free", bytes,
                              free_bytes));
    }
    return p;
  }
  void Free(void* p) override { cudaFree(p); }
  void CopyToBackend(void* dst, const void* src, size_t bytes) override {
    staging_->Upload(dst, src, bytes, stream_);
  }
  void CopyToHost(void* dst, const void* src, size_t bytes) override {
    if (!bytes) return;
    TQLM_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream_));
    TQLM_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }
  void Synchronize() override { TQLM_CUDA_CHECK(cudaStreamSynchronize(stream_)); }

  void ReserveWeights(size_t total_bytes) override {
    size_t free_bytes = 0, total = 0;
    TQLM_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total));
    // Alignment padding of every tensor, and small host-made vectors (RoPE frequencies).
    const size_t want = total_bytes + (size_t(1) << 20) * 4;
    if (want > free_bytes)
      throw Error(fmt::format("the model does not fit on the GPU: its weights need {} bytes "
                              "({}), {} has {} bytes ({}) free", want, GiB(want), props_.name,
                              free_bytes, GiB(free_bytes)));
    arena_ = static_cast<uint8_t*>(Allocate(want));
    arena_size_ = want;
  }
  kernels::WeightView UploadMatrix(const kernels::WeightView& host) override {
    if (!cuda_backend::FormatSupported(host.type))
      throw Error(fmt::format("weight format {} is not supported on the GPU",
                              kernels::TypeName(host.type)));
    kernels::WeightView dev = host;
    const size_t bytes = size_t(host.rows) * host.row_bytes;
    void* p = Place(bytes);
    TQLM_CUDA_CHECK(cudaMemcpy(p, host.data, bytes, cudaMemcpyHostToDevice));
    dev.data = p;
    return dev;
  }
  const float* UploadVector(const float* host, size_t n) override {
    void* p = Place(n * sizeof(float));
    TQLM_CUDA_CHECK(cudaMemcpy(p, host, n * sizeof(float), cudaMemcpyHostToDevice));
    return static_cast<const float*>(p);
  }

  void Embed(const kernels::WeightView& table, const int* tokens, int n, float scale,
             float* x) override {
    for (int t = 0; t < n; ++t)
      if (tokens[t] < 0 || tokens[t] >= table.rows)
        throw Error(fmt::format("token id {} out of range [0, {})", tokens[t], table.rows));
    tokens_.Reserve(size_t(n));
    CopyToBackend(tokens_.data(), tokens, size_t(n) * sizeof(int32_t));
    prof_.Begin(stream_);
    cuda_backend::LaunchEmbed(table, tokens_.data(), n, scale, x, stream_);
    prof_.End("embed", stream_);
  }
  void MatMul(const kernels::WeightView& w, const float* x, int n, float* y) override {
    prof_.Begin(stream_);
    cuda_backend::LaunchMatMul(w, x, n, y, stream_);
    prof_.End(n <= 8 ? "matmul (n<=8)" : "matmul (n>8)", stream_);
  }
  void RmsNorm(const float* x, const float* weight, float offset, float eps, int rows, int d,
               float* out) override {
    prof_.Begin(stream_);
    cuda_backend::LaunchRmsNorm(x, weight, offset, eps, rows, d, out, stream_);
    prof_.End("rmsnorm", stream_);
  }
  void SetPositions(const int* pos, int n) override {
    pos_.Reserve(size_t(n));
    CopyToBackend(pos_.data(), pos, size_t(n) * sizeof(int32_t));
    n_pos_ = n;
  }
  void Rope(float* x, int n, int n_heads, int head_dim, int rot_dim, const float* inv_freq,
            bool neox) override {
    if (n > n_pos_) throw Error("Rope: positions not set for this step");
    prof_.Begin(stream_);
    cuda_backend::LaunchRope(x, n, n_heads, head_dim, rot_dim, pos_.data(), inv_freq, neox,
                             stream_);
    prof_.End("rope", stream_);
  }
  void SiluMul(float* a, const float* b, size_t n) override {
    prof_.Begin(stream_);
    cuda_backend::LaunchSiluMul(a, b, n, stream_);
    prof_.End("silu*mul", stream_);
  }
  void GeluMul(float* a, const float* b, size_t n) override {
    prof_.Begin(stream_);
    cuda_backend::LaunchGeluMul(a, b, n, stream_);
    prof_.End("gelu*mul", stream_);
  }
  void Add(float* a, const float* b, size_t n) override {
    prof_.Begin(stream_);
    cuda_backend::LaunchAdd(a, b, n, stream_);
    prof_.End("add", stream_);
  }
  void AddRows(float* a, const float* bias, int n, int d) override {
    prof_.Begin(stream_);
    cuda_backend::LaunchAddRows(a, bias, n, d, stream_);
    prof_.End("bias", stream_);
  }
  void Softcap(float* a, float cap, size_t n) override {
    prof_.Begin(stream_);
    cuda_backend::LaunchSoftcap(a, cap, n, stream_);
    prof_.End("softcap", stream_);
  }

  std::unique_ptr<kv::KvCache> CreateCache(const kv::KvCacheConfig& config) override {
    // TurboQuant types (alone or with f16 tensors): the compressed cache; all-f16: the plain one.
    if (CudaTqKvCache::Supports(config, nullptr))
      return std::make_unique<CudaTqKvCache>(config, stream_, staging_);
    return std::make_unique<CudaKvCache>(config, stream_, staging_);
  }
  void AppendAttendBatch(std::span<kv::KvCache* const> caches, int layer, const float* k,
                         const float* v, int kv_dim, const float* q, int q_dim,
                         float* out) override;
  void AppendAttendBatchTq(std::span<kv::KvCache* const> caches, int layer, const float* k,
                           const float* v, int kv_dim, const float* q, int q_dim, float* out);

  double MeasureCopyRate() override {
    const size_t bytes = size_t(1) << 30;
    void* src = Allocate(bytes);
    void* dst = nullptr;
    try {
      dst = Allocate(bytes);
    } catch (...) {
      Free(src);
      throw;
    }
    TQLM_CUDA_CHECK(cudaMemsetAsync(src, 1, bytes, stream_));
    cudaEvent_t e0, e1;
    TQLM_CUDA_CHECK(cudaEventCreate(&e0));
    TQLM_CUDA_CHECK(cudaEventCreate(&e1));
    float best_ms = 1e30f;
    for (int r = 0; r < 6; ++r) {
      TQLM_CUDA_CHECK(cudaEventRecord(e0, stream_));
      TQLM_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream_));
      TQLM_CUDA_CHECK(cudaEventRecord(e1, stream_));
      TQLM_CUDA_CHECK(cudaEventSynchronize(e1));
      float ms = 0;
      TQLM_CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
      if (r > 0) best_ms = std::min(best_ms, ms);
    }
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    Free(src);
    Free(dst);
    return 2.0 * double(bytes) / (double(best_ms) * 1e-3);
  }
  float* OutputBuffer(float*, size_t n) override {
    out_.Reserve(n);
    return out_.data();
  }
  void OutputToHost(const float* buffer, float* host, size_t n) override {
    prof_.Begin(stream_);
    TQLM_CUDA_CHECK(cudaMemcpyAsync(host, buffer, n * sizeof(float), cudaMemcpyDeviceToHost,
                                    stream_));
    prof_.End("logits to host", stream_);
    TQLM_CUDA_CHECK(cudaStreamSynchronize(stream_));
    prof_.Break();
  }
  void AppendAttend(kv::KvCache& cache, int layer, const float* k, const float* v,
                    const float* q, int n, float* out) override {
    prof_.Begin(stream_);
    if (auto* tq = dynamic_cast<CudaTqKvCache*>(&cache))
      tq->AppendWithQueries(layer, k, v, q, n);  // queries rotated in the same launch
    else
      cache.Append(layer, k, v, n);
    prof_.End("kv append", stream_);
    prof_.Begin(stream_);
    cache.Attend(layer, q, n, out, pool());
    prof_.End(n == 1 ? "attention (n=1)" : "attention (n>1)", stream_);
  }

 private:
  // Room for `bytes` in the weight arena (or a separate allocation once it is full).
  void* Place(size_t bytes) {
    const size_t at = (arena_used_ + kWeightAlign - 1) / kWeightAlign * kWeightAlign;
    if (arena_ && at + bytes <= arena_size_) {
      arena_used_ = at + bytes;
      return arena_ + at;
    }
    void* p = Allocate(bytes);
    extra_.push_back(p);
    return p;
  }

  cudaDeviceProp props_{};
  OpProfile prof_;
  cudaStream_t stream_ = nullptr;
  std::shared_ptr<PinnedStaging> staging_;  // shared with the KV caches
  uint8_t* arena_ = nullptr;
  size_t arena_size_ = 0, arena_used_ = 0;
  std::vector<void*> extra_;
  Array<int32_t> tokens_, pos_;
  int n_pos_ = 0;
  Array<float> out_;
  // Batched step metadata: sequence tables, then token sequence ids and positions.
  Array<int32_t> batch_;
  std::vector<CudaKvCache*> batch_caches_;
  std::vector<CudaTqKvCache*> tq_batch_caches_;
  Array<float> batch_partial_;
  Array<int32_t> tq_batch_;
};

// Several sequences' decode tokens in one append and one attention launch. Each sequence's
// metadata (its layer table, its position) is uploaded once per step, at layer 0.
void CudaBackend::AppendAttendBatch(std::span<kv::KvCache* const> caches, int layer,
                                    const float* k, const float* v, int kv_dim, const float* q,
                                    int q_dim, float* out) {
  const int n = int(caches.size());
  std::vector<CudaKvCache*> cc(n);
  for (int t = 0; t < n; ++t) {
    cc[t] = dynamic_cast<CudaKvCache*>(caches[t]);
    if (!cc[t]) {
      // Compressed caches: their own batched path.
      if (dynamic_cast<CudaTqKvCache*>(caches[t])) {
        AppendAttendBatchTq(caches, layer, k, v, kv_dim, q, q_dim, out);
        return;
      }
      throw Error("CUDA backend: a batch mixes GPU and CPU KV caches");
    }
  }
  const kv::KvCacheConfig& cfg = cc[0]->config();
  const kv::LayerGeometry& g = cfg.layers[layer];
  // Layout of batch_ (as bytes): n table pointers, then n sequence ids, then n positions.
  const size_t ptr_bytes = size_t(n) * sizeof(void*);
  const size_t words = ptr_bytes / 4 + 2 * size_t(n);
  auto* tables = reinterpret_cast<const cuda_backend::F16KvLayer**>(batch_.data());
  if (layer == 0 || batch_caches_ != cc) {
    std::vector<int32_t> host(words);
    auto* host_tables = reinterpret_cast<const cuda_backend::F16KvLayer**>(host.data());
    for (int t = 0; t < n; ++t) {
      cc[t]->EnsureCapacity(cc[t]->n_tokens() + 1);
      host_tables[t] = cc[t]->device_table();
      host[ptr_bytes / 4 + t] = t;
      host[ptr_bytes / 4 + n + t] = cc[t]->n_tokens();
    }
    batch_.Reserve(words);
    tables = reinterpret_cast<const cuda_backend::F16KvLayer**>(batch_.data());
    CopyToBackend(batch_.data(), host.data(), words * 4);
    batch_caches_ = cc;
  }
  int max_pos = 0;
  for (CudaKvCache* c : cc) max_pos = std::max(max_pos, c->n_tokens() + 1);
  const cuda_backend::F16StepView step{tables, batch_.data() + ptr_bytes / 4,
                                       batch_.data() + ptr_bytes / 4 + n, n, layer};
  cuda_backend::LaunchF16Append(step, kv_dim, k, v, stream_);
  for (CudaKvCache* c : cc) c->MarkWritten(layer, 1);
  cuda_backend::F16AttendArgs a;
  a.step = step;
  a.one_sequence = false;
  a.max_pos = max_pos;
  a.n_heads = g.n_heads;
  a.n_kv_heads = g.n_kv_heads;
  a.head_dim = g.head_dim;
  a.window = g.sliding_window;
  a.scale = cfg.attn_scale > 0 ? cfg.attn_scale : 1.0f / std::sqrt(float(g.head_dim));
  a.q = q;
  a.out = out;
  batch_partial_.Reserve(
      cuda_backend::F16AttendWorkspaceFloats(n, g.n_heads, g.head_dim, max_pos));
  a.partial = batch_partial_.data();
  (void)q_dim;
  cuda_backend::LaunchF16Attend(a, stream_);
}


// The compressed caches' batched decode step: one append launch and one attention launch for
// all sequences (each token's sequence and position from the batch tables), the block
// encodings a token completes per sequence. Caches of different layouts go one at a time.
void CudaBackend::AppendAttendBatchTq(std::span<kv::KvCache* const> caches, int layer,
                                      const float* k, const float* v, int kv_dim,
                                      const float* q, int q_dim, float* out) {
  const int n = int(caches.size());
  std::vector<CudaTqKvCache*> tc(n);
  for (int t = 0; t < n; ++t) {
    tc[t] = dynamic_cast<CudaTqKvCache*>(caches[t]);
    if (!tc[t] || !tc[t]->SameLayout(*tc[0])) {
      Backend::AppendAttendBatch(caches, layer, k, v, kv_dim, q, q_dim, out);
      return;
    }
  }
  for (CudaTqKvCache* c : tc) c->PrepareAppend(layer, 1);
  const size_t ptr_bytes = size_t(n) * sizeof(void*);
  const size_t words = ptr_bytes / 4 + 2 * size_t(n);
  if (layer == 0 || tq_batch_caches_ != tc) {
    std::vector<int32_t> host(words);
    auto* host_tables = reinterpret_cast<const cuda_backend::TqKvLayer**>(host.data());
    for (int t = 0; t < n; ++t) {
      host_tables[t] = tc[t]->device_table();
      host[ptr_bytes / 4 + t] = t;
      host[ptr_bytes / 4 + n + t] = tc[t]->n_tokens();
    }
    tq_batch_.Reserve(words);
    CopyToBackend(tq_batch_.data(), host.data(), words * 4);
    tq_batch_caches_ = tc;
  }
  int max_pos = 0;
  for (CudaTqKvCache* c : tc) max_pos = std::max(max_pos, c->n_tokens() + 1);
  const cuda_backend::TqStepView step{
      reinterpret_cast<const cuda_backend::TqKvLayer* const*>(tq_batch_.data()),
      tq_batch_.data() + ptr_bytes / 4, tq_batch_.data() + ptr_bytes / 4 + n, n, layer};
  const cuda_backend::TqLayerParams& p = tc[0]->params(layer);
  batch_partial_.Reserve(cuda_backend::TqAttendWorkspaceFloats(n, p, max_pos));
  // The queries rotated by the append launch, into the attention workspace.
  float* q_rot = p.k_comp ? cuda_backend::TqRotatedQueries(batch_partial_.data()) : nullptr;
  cuda_backend::LaunchTqAppendRaw(step, p, k, v, stream_, q, q_rot);
  for (CudaTqKvCache* c : tc) c->FinishAppend(layer, 1);
  cuda_backend::TqAttendArgs a;
  a.step = step;
  a.p = p;
  a.one_sequence = false;
  a.max_pos = max_pos;
  a.scale = tc[0]->attn_scale(layer);
  a.q = q_rot != nullptr ? q_rot : q;
  a.q_rotated = q_rot != nullptr;
  a.out = out;
  a.workspace = batch_partial_.data();
  (void)q_dim;
  cuda_backend::LaunchTqAttend(a, stream_);
}

}  // namespace

int CudaDeviceCount() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return n;
}

size_t CudaFreeBytes() {
  if (CudaDeviceCount() == 0)
    throw Error("--device cuda: no GPU is visible to this process (no NVIDIA driver or device)");
  size_t free_bytes = 0, total = 0;
  TQLM_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total));
  return free_bytes;
}

std::unique_ptr<Backend> CreateCudaBackend() {
  if (CudaDeviceCount() == 0)
    throw Error("--device cuda: no GPU is visible to this process (no NVIDIA driver or device)");
  return std::make_unique<CudaBackend>();
}

}  // namespace tqlm::backend
