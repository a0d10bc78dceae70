// MatMul entry point: validates the view, quantizes the activations once where an integer
// kernel exists, and splits the output rows over the thread pool. Each task owns a chunk of
// rows and walks the tokens in tiles, so a chunk of weight rows stays in L1/L2 while every
// token tile reuses it.
#include "kernels/cpu/matmul.h"

#include <fmt/format.h>
#include <hwy/targets.h>

#include <algorithm>
#include <atomic>
#include <vector>

#include "kernels/cpu/dequant.h"
#include "kernels/cpu/matmul_internal.h"
#include "kernels/cpu/quant_act.h"
#include "tqlm/error.h"

namespace tqlm::kernels {
namespace {

constexpr int kTokenTile = 16;  // tokens per pass over a chunk of rows (float paths)

// Rows per task: small enough to balance the threads, large enough to amortize the dispatch.
int64_t ChunkRows(int64_t rows, int n_tokens, int threads) {
  const int64_t target_tasks = int64_t(threads) * (n_tokens == 1 ? 8 : 4);
  // Multiples of 4 rows keep the integer kernels on their 4-row tiles.
  int64_t chunk = (rows + target_tasks - 1) / target_tasks;
  chunk = std::clamp<int64_t>((chunk + 3) / 4 * 4, 4, n_tokens == 1 ? 128 : 16);
  return chunk;
}

void CheckView(const WeightView& w, const char* what) {
  if (!MatMulSupports(w.type)) {
    throw Error(fmt::format("{}: tensor type {} is not supported", what, TypeName(w.type)));
  }
  if (w.rows < 0 || w.cols < 0 || RowBytes(w.type, w.cols) != w.row_bytes) {
    throw Error(fmt::format("{}: {} x {} {} matrix with row_bytes {} is inconsistent", what,
                            w.rows, w.cols, TypeName(w.type), w.row_bytes));
  }
}

// Float path: rows decoded (if not F32) one at a time into a buffer, then dotted with a tile
// of tokens through the Highway kernels.
void FloatRows(const WeightView& w, const float* x, int n_tokens, float* y, int64_t r0,
               int64_t r1, std::vector<float>* buf) {
  const auto* base = static_cast<const uint8_t*>(w.data);
  const size_t cols = size_t(w.cols), rows = size_t(w.rows);
  for (int t = 0; t < n_tokens; t += kTokenTile) {
    const int nt = std::min(kTokenTile, n_tokens - t);
    const float* xt = x + size_t(t) * cols;
    float* yt = y + size_t(t) * rows;
    for (int64_t r = r0; r < r1; ++r) {
      const uint8_t* row = base + size_t(r) * w.row_bytes;
      switch (w.type) {
        case TensorType::kF32:
          internal::DotRowF32(reinterpret_cast<const float*>(row), xt, cols, nt, cols, yt + r,
                              rows);
          break;
        case TensorType::kF16:
          internal::DotRowF16(reinterpret_cast<const uint16_t*>(row), xt, cols, nt, cols,
                              yt + r, rows);
          break;
        case TensorType::kBF16:
          internal::DotRowBF16(reinterpret_cast<const uint16_t*>(row), xt, cols, nt, cols,
                               yt + r, rows);
          break;
        default:
          buf->resize(cols);
          DequantizeValues(w.type, row, w.cols, buf->data());
          internal::DotRowF32(buf->data(), xt, cols, nt, cols, yt + r, rows);
          break;
      }
    }
  }
}

}  // namespace

bool MatMulSupports(TensorType type) { return DequantizeSupports(type); }

WeightView MakeWeightView(TensorType type, const void* data, int64_t rows, int64_t cols) {
  if (!MatMulSupports(type)) {
    throw Error(fmt::format("matmul: tensor type {} is not supported", TypeName(type)));
  }
  const size_t row_bytes = RowBytes(type, cols);
  if (row_bytes == SIZE_MAX || rows < 0) {
    throw Error(fmt::format("matmul: {} x {} is not a valid {} matrix", rows, cols,
                            TypeName(type)));
  }
  return WeightView{type, data, rows, cols, row_bytes};
}

void DequantizeRow(const WeightView& w, int64_t row, float* out) {
  CheckView(w, "dequantize");
  if (row < 0 || row >= w.rows) {
    throw Error(fmt::format("dequantize: row {} out of range [0, {})", row, w.rows));
  }
  const auto* p = static_cast<const uint8_t*>(w.data) + size_t(row) * w.row_bytes;
  DequantizeValues(w.type, p, w.cols, out);
}

namespace {
std::atomic<MatMulNumerics> g_numerics{MatMulNumerics::kNative};
bool FloatActivations() { return g_numerics.load(std::memory_order_relaxed) == MatMulNumerics::kFloat; }
}  // namespace

void SetMatMulNumerics(MatMulNumerics numerics) { g_numerics.store(numerics); }
MatMulNumerics GetMatMulNumerics() { return g_numerics.load(); }

const char* MatMulNumericsName(MatMulNumerics numerics) {
  return numerics == MatMulNumerics::kFloat ? "float" : "native";
}

MatMulNumerics ParseMatMulNumerics(const std::string& name) {
  if (name == "native") return MatMulNumerics::kNative;
  if (name == "float") return MatMulNumerics::kFloat;
  throw Error("--numerics: expected native or float, got '" + name + "'");
}

std::string MatMulKernelSummary() {
  if (FloatActivations()) return "portable (float activations, --numerics float)";
  std::string prefill;
  if (internal::HaveAmxKernels()) {
    prefill = "amx-int8 (k-quants)";
  } else if (internal::HaveVnniI8Kernels()) {
    prefill = "vnni-int8 (k-quants)";
  }
  const std::string rest = internal::HaveVnniKernels() ? "vnni" : "portable";
  return prefill.empty() ? rest : "prefill " + prefill + ", else " + rest;
}

std::string NumericsSignature() {
  return fmt::format("matmul {}, float kernels {}",
                     internal::HaveVnniKernels() && !FloatActivations() ? "int8 (avx512-vnni)"
                                                                        : "float (portable)",
                     hwy::TargetName(hwy::SupportedTargets() & ~(hwy::SupportedTargets() - 1)));
}

void MatMul(const WeightView& w, const float* x, int n_tokens, float* y, ThreadPool& pool) {
  CheckView(w, "matmul");
  if (n_tokens <= 0 || w.rows == 0) return;
  if (w.cols == 0) {
    std::fill(y, y + size_t(n_tokens) * size_t(w.rows), 0.0f);
    return;
  }
  if (IsTqWeight(w.type)) {
    internal::MatMulTq(w.type, static_cast<const uint8_t*>(w.data), w.row_bytes, w.rows, w.cols,
                       x, n_tokens, y, pool);
    return;
  }
  if (FloatActivations()) {
    internal::MatMulPortable(w.type, w.data, w.rows, w.cols, w.row_bytes, x, n_tokens, y, pool);
    return;
  }
  const int64_t chunk = ChunkRows(w.rows, n_tokens, pool.num_threads());
  const size_t n_chunks = size_t((w.rows + chunk - 1) / chunk);

  const internal::PrefillEngine engine = internal::PrefillEngineFor(w.type, n_tokens);
  if (engine != internal::PrefillEngine::kNone) {
    thread_local internal::PrefillActs act_storage;
    const internal::PrefillActs* act = &act_storage;
    internal::PrefillPrepare(engine, x, n_tokens, w.cols, &act_storage);
    const auto* base = static_cast<const uint8_t*>(w.data);
    const int64_t panel = internal::kAmxPanelRows;
    pool.ParallelTasks(size_t((w.rows + panel - 1) / panel), [&](size_t c, int) {
      const int64_t r0 = int64_t(c) * panel, r1 = std::min(w.rows, r0 + panel);
      internal::PrefillMatMul(engine, w.type, base, w.row_bytes, w.rows, r0, r1, *act, y);
    });
    return;
  }
  if (internal::VnniSupports(w.type)) {
    // One quantization per call, shared read-only by all tasks.
    // (A lambda does not capture a thread_local: workers must get it through a pointer.)
    thread_local ActQ8 act_storage;
    const ActQ8* act = &act_storage;
    internal::VnniQuantize(x, n_tokens, w.cols, ActScaleFor(w.type), &act_storage);
    const auto* base = static_cast<const uint8_t*>(w.data);
    pool.ParallelTasks(n_chunks, [&](size_t c, int) {
      const int64_t r0 = int64_t(c) * chunk, r1 = std::min(w.rows, r0 + chunk);
      internal::VnniMatMul(w.type, base, w.row_bytes, w.rows, r0, r1, *act, 0, n_tokens, y);
    });
    return;
  }
  internal::MatMulPortable(w.type, w.data, w.rows, w.cols, w.row_bytes, x, n_tokens, y, pool);
}

namespace internal {

void MatMulPortable(TensorType type, const void* data, int64_t rows, int64_t cols,
                    size_t row_bytes, const float* x, int n_tokens, float* y, ThreadPool& pool) {
  const WeightView w{type, data, rows, cols, row_bytes};
  CheckView(w, "matmul");
  if (n_tokens <= 0 || rows == 0) return;
  if (IsTqWeight(type)) {  // one path on every CPU (there is no integer kernel to fall back from)
    MatMulTq(type, static_cast<const uint8_t*>(data), row_bytes, rows, cols, x, n_tokens, y, pool);
    return;
  }
  const int64_t chunk = ChunkRows(rows, n_tokens, pool.num_threads());
  const size_t n_chunks = size_t((rows + chunk - 1) / chunk);
  pool.ParallelTasks(n_chunks, [&](size_t c, int) {
    thread_local std::vector<float> buf;
    const int64_t r0 = int64_t(c) * chunk, r1 = std::min(rows, r0 + chunk);
    FloatRows(w, x, n_tokens, y, r0, r1, &buf);
  });
}

}  // namespace internal

}  // namespace tqlm::kernels
