// Small host-to-device uploads (token ids, positions, step metadata) through pinned host memory,
// so that they queue on the stream like kernels instead of waiting for it: a copy from pageable
// memory synchronizes with the stream's earlier work first, which stalls the host several times
// per decode step. A ring of pinned memory; when it wraps, the stream is synchronized once so
// that no queued copy still reads the bytes being reused.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstring>

#include "kernels/cuda/cuda_check.h"

namespace tqlm::backend {

class PinnedStaging {
 public:
  explicit PinnedStaging(size_t bytes = size_t(4) << 20) : size_(bytes) {
    TQLM_CUDA_CHECK(cudaMallocHost(&ring_, size_));
  }
  ~PinnedStaging() { cudaFreeHost(ring_); }
  PinnedStaging(const PinnedStaging&) = delete;
  PinnedStaging& operator=(const PinnedStaging&) = delete;

  // Queues a copy of `bytes` from host `src` to device `dst` on `stream`.
  void Upload(void* dst, const void* src, size_t bytes, cudaStream_t stream) {
    if (bytes == 0) return;
    if (bytes > size_) {  // too large for the ring: a plain (synchronizing) copy
      TQLM_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream));
      return;
    }
    const size_t at = (used_ + 255) / 256 * 256;
    if (at + bytes > size_) {
      TQLM_CUDA_CHECK(cudaStreamSynchronize(stream));
      used_ = 0;
    }
    const size_t pos = used_ == 0 ? 0 : at;
    std::memcpy(static_cast<char*>(ring_) + pos, src, bytes);
    TQLM_CUDA_CHECK(cudaMemcpyAsync(dst, static_cast<char*>(ring_) + pos, bytes,
                                    cudaMemcpyHostToDevice, stream));
    used_ = pos + bytes;
  }

 private:
  void* ring_ = nullptr;
  size_t size_;
  size_t used_ = 0;
};

}  // namespace tqlm::backend
