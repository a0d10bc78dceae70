#include "backend/cpu_backend.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>

#include "kernels/cpu/matmul.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/thread_pool.h"
#include "tqlm/error.h"

namespace tqlm::backend {
namespace {

constexpr size_t kAlign = 64;

class CpuBackend final : public Backend {
 public:
  Device device() const override { return Device::kCpu; }
  std::string Describe() const override { return "cpu"; }

  void* Allocate(size_t bytes) override {
    void* p = std::aligned_alloc(kAlign, (bytes + kAlign - 1) / kAlign * kAlign);
    if (!p && bytes) throw Error(fmt::format("out of host memory allocating {} bytes", bytes));
    return p;
  }
  void Free(void* p) override { std::free(p); }
  void CopyToBackend(void* dst, const void* src, size_t bytes) override {
    if (dst != src) std::memcpy(dst, src, bytes);
  }
  void CopyToHost(void* dst, const void* src, size_t bytes) override {
    if (dst != src) std::memcpy(dst, src, bytes);
  }

  // Weights are used in place, in the file mapping: nothing to reserve or copy.
  void ReserveWeights(size_t) override {}
  kernels::WeightView UploadMatrix(const kernels::WeightView& host) override { return host; }
  const float* UploadVector(const float* host, size_t) override { return host; }

  void Embed(const kernels::WeightView& table, const int* tokens, int n, float scale,
             float* x) override {
    for (int t = 0; t < n; ++t)
      if (tokens[t] < 0 || tokens[t] >= table.rows)
        throw Error(fmt::format("token id {} out of range [0, {})", tokens[t], table.rows));
    for (int t = 0; t < n; ++t)
      kernels::DequantizeRow(table, tokens[t], x + size_t(t) * table.cols);
    if (scale != 1.0f) kernels::Scale(x, scale, size_t(n) * table.cols);
  }
  void MatMul(const kernels::WeightView& w, const float* x, int n, float* y) override {
    kernels::MatMul(w, x, n, y, pool());
  }
  void RmsNorm(const float* x, const float* weight, float offset, float eps, int rows, int d,
               float* out) override {
    kernels::RmsNorm(x, weight, offset, eps, rows, d, out);
  }
  void SetPositions(const int* pos, int n) override { pos_.assign(pos, pos + n); }
  void Rope(float* x, int n, int n_heads, int head_dim, int rot_dim, const float* inv_freq,
            bool neox) override {
    if (size_t(n) > pos_.size()) throw Error("Rope: positions not set for this step");
    kernels::Rope(x, n, n_heads, head_dim, rot_dim, pos_.data(), inv_freq, neox);
  }
  void SiluMul(float* a, const float* b, size_t n) override { kernels::SiluMul(a, b, n); }
  void GeluMul(float* a, const float* b, size_t n) override { kernels::GeluMul(a, b, n); }
  void Add(float* a, const float* b, size_t n) override { kernels::Add(a, b, n); }
  void AddRows(float* a, const float* bias, int n, int d) override {
    kernels::AddRows(a, bias, n, d);
  }
  void Softcap(float* a, float cap, size_t n) override { kernels::Softcap(a, cap, n); }

  std::unique_ptr<kv::KvCache> CreateCache(const kv::KvCacheConfig& config) override {
    return kv::KvCache::Create(config);
  }
  double MeasureCopyRate() override {
    const size_t bytes = size_t(512) << 20;
    std::vector<uint8_t> src(bytes, 1), dst(bytes, 0);
    double best = 1e30;
    for (int r = 0; r < 6; ++r) {
      const auto t0 = std::chrono::steady_clock::now();
      pool().ParallelFor(bytes, size_t(1) << 20, [&](size_t b, size_t e, int) {
        std::memcpy(dst.data() + b, src.data() + b, e - b);
      });
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (r > 0) best = std::min(best, s);
    }
    return 2.0 * double(bytes) / best;
  }
  float* OutputBuffer(float* host, size_t) override { return host; }
  void OutputToHost(const float* buffer, float* host, size_t n) override {
    CopyToHost(host, buffer, n * sizeof(float));
  }

 private:
  std::vector<int> pos_;
};

}  // namespace

std::unique_ptr<Backend> CreateCpuBackend() { return std::make_unique<CpuBackend>(); }

}  // namespace tqlm::backend
