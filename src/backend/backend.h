// The backend boundary: where a model's forward pass meets the hardware it runs on.
//
// A family's forward pass (model/llama.cc, model/gemma3.cc) is written once against this
// interface and never learns whether it runs on the CPU or a GPU. A backend owns
//   * memory: activation buffers and uploaded weights live in the backend's memory (host RAM
//     for the CPU, device memory for CUDA); every float* an op takes points there;
//   * weights in their GGUF storage formats (WeightView with a pointer in backend memory):
//     the CPU backend uses the file mapping itself, CUDA copies the blocks as they are;
//   * ops: the transformer block's arithmetic, one call per step over n tokens;
//   * KV caches: CreateCache makes a cache whose Append/Attend take backend pointers.
//
// The CPU backend runs on the caller's thread pool, bound for the duration of one forward
// step by a StepScope (the runtime owns the pool and passes it to Model::Forward).
#pragma once

#include <cstddef>
#include <memory>
#include <span>
#include <string>

#include "kernels/cpu/matmul.h"
#include "kv/kv_cache.h"

namespace tqlm::kernels {
class ThreadPool;
}

namespace tqlm::backend {

enum class Device { kCpu, kCuda };

// "cpu", "cuda" or "auto" (cuda when this binary has CUDA and a GPU is visible, else cpu).
// Throws tqlm::Error for other names.
Device ResolveDevice(const std::string& name);
const char* DeviceName(Device device);
// Whether this binary was built with the CUDA backend.
bool HaveCuda();

class Backend {
 public:
  // Throws tqlm::Error when the device is not available (no CUDA in this build, no GPU).
  static std::unique_ptr<Backend> Create(Device device);
  virtual ~Backend() = default;

  virtual Device device() const = 0;
  // One line for the start of a run: "cpu" or "cuda: NVIDIA H100 80GB HBM3, 79.1 GiB".
  virtual std::string Describe() const = 0;

  // --- Memory -------------------------------------------------------------------------------
  // Raw storage in backend memory; Allocate throws tqlm::Error (naming the bytes) when it
  // cannot be had. Free(nullptr) is a no-op.
  virtual void* Allocate(size_t bytes) = 0;
  virtual void Free(void* p) = 0;
  virtual void CopyToBackend(void* dst, const void* src_host, size_t bytes) = 0;
  virtual void CopyToHost(void* dst_host, const void* src, size_t bytes) = 0;

  // Weights, called at load time. ReserveWeights(total) first, with the bytes of every tensor
  // that will be uploaded: it fails (tqlm::Error naming the bytes needed and free) before
  // anything is copied when they do not fit. The views returned stay valid as long as the
  // backend; the host data must outlive the backend only where the backend keeps pointers to
  // it (the CPU backend does: it uses the GGUF mapping in place).
  virtual void ReserveWeights(size_t total_bytes) = 0;
  virtual kernels::WeightView UploadMatrix(const kernels::WeightView& host) = 0;
  virtual const float* UploadVector(const float* host, size_t n) = 0;

  // --- Ops (all float* in backend memory; n = tokens in the step) ---------------------------
  // x[t] = row tokens[t] of the embedding table, times scale. Token ids are on the host and
  // are checked against the table (tqlm::Error) before anything is written.
  virtual void Embed(const kernels::WeightView& table, const int* tokens, int n, float scale,
                     float* x) = 0;
  // y[t] = W x[t]  (x and y must not overlap).
  virtual void MatMul(const kernels::WeightView& w, const float* x, int n, float* y) = 0;
  // out = x / rms(x) * (weight + offset) per row of d; out may equal x.
  virtual void RmsNorm(const float* x, const float* weight, float offset, float eps, int rows,
                       int d, float* out) = 0;
  // RoPE on n tokens of n_heads heads; token t at position pos[t] (positions set by
  // SetPositions for this step); inv_freq uploaded with UploadVector.
  virtual void Rope(float* x, int n, int n_heads, int head_dim, int rot_dim,
                    const float* inv_freq, bool neox) = 0;
  // Positions of the step's n tokens (host array), read by Rope.
  virtual void SetPositions(const int* pos, int n) = 0;
  virtual void SiluMul(float* a, const float* b, size_t n) = 0;   // a = silu(a) * b
  virtual void GeluMul(float* a, const float* b, size_t n) = 0;   // a = gelu_tanh(a) * b
  virtual void Add(float* a, const float* b, size_t n) = 0;       // a += b
  virtual void AddRows(float* a, const float* bias, int n, int d) = 0;
  virtual void Softcap(float* a, float cap, size_t n) = 0;        // a = cap * tanh(a / cap)

  // --- KV cache -------------------------------------------------------------------------------
  virtual std::unique_ptr<kv::KvCache> CreateCache(const kv::KvCacheConfig& config) = 0;
  // One sequence's step: Append k, v of n tokens to `cache`, then Attend its n queries.
  virtual void AppendAttend(kv::KvCache& cache, int layer, const float* k, const float* v,
                            const float* q, int n, float* out);
  // A batched decode step: token t belongs to caches[t] (all distinct). k/v rows are kv_dim
  // floats, q/out rows q_dim. The default runs AppendAttend per sequence, in order; a backend
  // with a batched attention kernel runs all sequences at once.
  virtual void AppendAttendBatch(std::span<kv::KvCache* const> caches, int layer, const float* k,
                                 const float* v, int kv_dim, const float* q, int q_dim,
                                 float* out);

  // Output rows (logits) for the caller's host array `host` of n floats: a backend buffer to
  // write them to (the host array itself where backend memory is host memory), then
  // OutputToHost copies them over (nothing to copy then).
  virtual float* OutputBuffer(float* host, size_t n) = 0;
  virtual void OutputToHost(const float* buffer, float* host, size_t n) = 0;

  // Bytes read + written per second by a large copy within backend memory (the memory
  // roofline's yardstick for benchmarks); runs inside a StepScope.
  virtual double MeasureCopyRate() = 0;

  // Waits for queued work (a no-op on the CPU); CopyToHost synchronizes by itself.
  virtual void Synchronize() {}

 protected:
  kernels::ThreadPool& pool() const;

 private:
  friend class StepScope;
  kernels::ThreadPool* pool_ = nullptr;
};

// Binds the runtime's thread pool to the backend for one forward step.
class StepScope {
 public:
  StepScope(Backend& backend, kernels::ThreadPool& pool) : backend_(backend) {
    backend_.pool_ = &pool;
  }
  ~StepScope() { backend_.pool_ = nullptr; }
  StepScope(const StepScope&) = delete;
  StepScope& operator=(const StepScope&) = delete;

 private:
  Backend& backend_;
};

// A float (or int) array in a backend's memory that grows on demand and never shrinks.
template <typename T>
class Array {
 public:
  Array() = default;
  explicit Array(Backend& backend) : backend_(&backend) {}
  ~Array() { Release(); }
  Array(Array&& o) noexcept : backend_(o.backend_), data_(o.data_), size_(o.size_) {
    o.data_ = nullptr;
    o.size_ = 0;
  }
  Array& operator=(Array&& o) noexcept {
    if (this != &o) {
      Release();
      backend_ = o.backend_;
      data_ = o.data_;
      size_ = o.size_;
      o.data_ = nullptr;
      o.size_ = 0;
    }
    return *this;
  }
  Array(const Array&) = delete;
  Array& operator=(const Array&) = delete;

  void Bind(Backend& backend) {
    Release();
    backend_ = &backend;
  }
  // Room for n elements; old contents are not kept.
  void Reserve(size_t n) {
    if (n <= size_) return;
    Release();
    data_ = static_cast<T*>(backend_->Allocate(n * sizeof(T)));
    size_ = n;
  }
  T* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  void Release() {
    if (data_ && backend_) backend_->Free(data_);
    data_ = nullptr;
    size_ = 0;
  }
  Backend* backend_ = nullptr;
  T* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace tqlm::backend
