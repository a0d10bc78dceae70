#include "backend/backend.h"

#include <fmt/format.h>

#include "backend/cpu_backend.h"
#include "backend/device_memory.h"
#include "tqlm/error.h"

#if defined(TQLM_HAVE_CUDA)
#include "backend/cuda/cuda_backend.h"
#endif

namespace tqlm::backend {

bool HaveCuda() {
#if defined(TQLM_HAVE_CUDA)
  return true;
#else
  return false;
#endif
}

const char* DeviceName(Device device) { return device == Device::kCuda ? "cuda" : "cpu"; }

Device ResolveDevice(const std::string& name) {
  if (name == "cpu") return Device::kCpu;
  if (name == "cuda") return Device::kCuda;
  if (name == "auto" || name.empty()) {
#if defined(TQLM_HAVE_CUDA)
    if (CudaDeviceCount() > 0) return Device::kCuda;
#endif
    return Device::kCpu;
  }
  throw Error(fmt::format("unknown device '{}' (cpu, cuda or auto)", name));
}

size_t DeviceFreeBytes(Device device) {
  if (device == Device::kCpu) return 0;
#if defined(TQLM_HAVE_CUDA)
  return CudaFreeBytes();
#else
  throw Error("--device cuda: this tqlm was built without CUDA");
#endif
}

std::unique_ptr<Backend> Backend::Create(Device device) {
  if (device == Device::kCpu) return CreateCpuBackend();
#if defined(TQLM_HAVE_CUDA)
  return CreateCudaBackend();
#else
  throw Error("--device cuda: this tqlm was built without CUDA (configure with -DTQLM_CUDA=ON "
              "where nvcc is installed)");
#endif
}

kernels::ThreadPool& Backend::pool() const {
  if (!pool_) throw Error("backend op outside a forward step (no thread pool bound)");
  return *pool_;
}

void Backend::AppendAttend(kv::KvCache& cache, int layer, const float* k, const float* v,
                           const float* q, int n, float* out) {
  cache.Append(layer, k, v, n);
  cache.Attend(layer, q, n, out, pool());
}

void Backend::AppendAttendBatch(std::span<kv::KvCache* const> caches, int layer, const float* k,
                                const float* v, int kv_dim, const float* q, int q_dim,
                                float* out) {
  for (size_t t = 0; t < caches.size(); ++t)
    AppendAttend(*caches[t], layer, k + t * kv_dim, v + t * kv_dim, q + t * q_dim, 1,
                 out + t * q_dim);
}

}  // namespace tqlm::backend
