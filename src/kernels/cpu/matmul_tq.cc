// MatMul for TurboQuant weights: the activations are rotated once per call into the basis the
// codes live in (y = (W R^T)(R x)), then each task runs its weight rows against the tokens
// through the fused Highway decode-and-dot kernel (tq_weights_hwy.cc). A token's sum is formed the same way whatever tokens share the call (the dot
// products' contract) and the rotation is per token, so the result does not depend on the
// batch or the prefill chunking, and prefill and decode are one path.
#include <algorithm>
#include <vector>

#include "kernels/cpu/matmul_internal.h"
#include "kernels/cpu/tq_weights.h"

namespace tqlm::kernels::internal {
namespace {

constexpr int kTokenTile = 16;  // tokens per pass over a chunk of rows (kept in cache)

}  // namespace

void MatMulTq(TensorType type, const uint8_t* w, size_t row_bytes, int64_t rows, int64_t cols,
              const float* x, int n_tokens, float* y, ThreadPool& pool) {
  thread_local std::vector<float> xr_storage;
  xr_storage.resize(size_t(n_tokens) * size_t(cols));
  TqwRotate(x, n_tokens, cols, xr_storage.data());
  const float* xr = xr_storage.data();
  // Rows per task as the other float paths: enough tasks to balance the threads.
  const int64_t tasks = int64_t(pool.num_threads()) * (n_tokens == 1 ? 8 : 4);
  const int64_t chunk = std::clamp<int64_t>((rows + tasks - 1) / tasks, 1, 256);
  const size_t n_chunks = size_t((rows + chunk - 1) / chunk);
  pool.ParallelTasks(n_chunks, [&](size_t c, int) {
    const int64_t r0 = int64_t(c) * chunk, r1 = std::min(rows, r0 + chunk);
    for (int t = 0; t < n_tokens; t += kTokenTile) {
      const int nt = std::min(kTokenTile, n_tokens - t);
      for (int64_t r = r0; r < r1; ++r) {
        TqwDotRows(type, w + size_t(r) * row_bytes, cols, xr + size_t(t) * size_t(cols),
                   size_t(cols), nt, y + size_t(t) * size_t(rows) + size_t(r), size_t(rows));
      }
    }
  });
}

}  // namespace tqlm::kernels::internal
