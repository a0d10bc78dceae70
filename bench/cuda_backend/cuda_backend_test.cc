// The CUDA backend, op by op, against scalar CPU references (the llm.c way: every GPU kernel
// has a plain CPU loop beside it that defines what it must compute):
//   * matmul, every weight format, decode (n <= 8) and prefill (n > 8) shapes, against a
//     double-precision product of the CPU's dequantized weights; and token-by-token results
//     bit-identical whatever the number of tokens in the call (the determinism rule);
//   * embedding rows against the CPU's DequantizeRow;
//   * RMSNorm, RoPE (NeoX and adjacent pairs, partial rotary dims), SiLU/GELU gates, add,
//     bias rows, softcap against kernels/cpu/ops;
//   * f16 KV cache attention (prefill chunks, decode steps, sliding window, GQA groups of 3, 4
//     and 6) against a double-precision softmax attention over the same fp16-rounded keys and
//     values, and the batched step across sequences bit-identical to one sequence at a time;
//   * the compressed KV cache (TurboQuant types, sinks, buffer, centering, windows) against
//     the CPU cache: blocks through the CPU decoder, attention, chunking invariance.
// Exit 0 when everything passes, 1 on a failure, 77 (skip) when no GPU is visible.
#include <fmt/format.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_tq_kv_cache.h"
#include "kernels/cpu/dequant.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/thread_pool.h"
#include "kernels/tensor_format.h"
#include "kv/paged_kv_cache.h"
#include "tqlm/error.h"

namespace {

using namespace tqlm;
using kernels::TensorType;

int g_failures = 0;
int g_checks = 0;

void Check(bool ok, const std::string& what) {
  ++g_checks;
  if (!ok) {
    ++g_failures;
    fmt::print("FAIL {}\n", what);
  }
}

std::mt19937 g_rng(1234);

std::vector<float> RandomFloats(size_t n, float lo = -1, float hi = 1) {
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = u(g_rng);
  return v;
}

// Random weight bytes with finite, moderate fp16 scales (as tests/cuda_chunk_test.cc).
std::vector<uint8_t> RandomWeights(TensorType type, int64_t rows, int64_t cols) {
  const size_t row_bytes = kernels::RowBytes(type, cols);
  std::vector<uint8_t> w(row_bytes * rows);
  for (auto& b : w) b = uint8_t(g_rng());
  std::uniform_real_distribution<float> scale(-0.05f, 0.05f);
  auto put_half = [&](size_t at) {
    const uint16_t h = kernels::F32ToF16(scale(g_rng));
    w[at] = uint8_t(h);
    w[at + 1] = uint8_t(h >> 8);
  };
  const kernels::TypeTraits& t = kernels::Traits(type);
  const size_t blocks = w.size() / t.block_bytes;
  for (size_t b = 0; b < blocks; ++b) {
    const size_t at = b * t.block_bytes;
    switch (type) {
      case TensorType::kF32: {
        const float f = scale(g_rng);
        std::memcpy(&w[at], &f, 4);
        break;
      }
      case TensorType::kF16: put_half(at); break;
      case TensorType::kBF16: {
        const uint16_t h = kernels::F32ToBF16(scale(g_rng));
        std::memcpy(&w[at], &h, 2);
        break;
      }
      case TensorType::kQ4_0: case TensorType::kQ5_0: case TensorType::kQ8_0: put_half(at); break;
      case TensorType::kQ4_1: case TensorType::kQ5_1: put_half(at); put_half(at + 2); break;
      case TensorType::kQ2_K: put_half(at + 80); put_half(at + 82); break;
      case TensorType::kQ3_K: put_half(at + 108); break;
      case TensorType::kQ4_K: case TensorType::kQ5_K: put_half(at); put_half(at + 2); break;
      case TensorType::kQ6_K: put_half(at + 208); break;
      default: break;
    }
  }
  return w;
}

double RelErr(const std::vector<float>& got, const std::vector<double>& want, bool* finite) {
  double num = 0, den = 0;
  *finite = true;
  for (size_t i = 0; i < got.size(); ++i) {
    if (!std::isfinite(got[i])) *finite = false;
    num += (got[i] - want[i]) * (got[i] - want[i]);
    den += want[i] * want[i];
  }
  return std::sqrt(num / std::max(den, 1e-30));
}

struct Gpu {
  backend::Backend& b;
  template <typename T>
  T* Upload(const std::vector<T>& v) {
    auto* p = static_cast<T*>(b.Allocate(v.size() * sizeof(T)));
    b.CopyToBackend(p, v.data(), v.size() * sizeof(T));
    return p;
  }
  template <typename T>
  std::vector<T> Download(const T* p, size_t n) {
    std::vector<T> v(n);
    b.CopyToHost(v.data(), p, n * sizeof(T));
    return v;
  }
  float* Poisoned(size_t n) {
    std::vector<float> nan(n, std::nanf(""));
    return Upload(nan);
  }
};

void TestMatMul(Gpu& gpu, kernels::ThreadPool& pool) {
  const TensorType types[] = {TensorType::kF32,  TensorType::kF16,  TensorType::kBF16,
                              TensorType::kQ4_0, TensorType::kQ4_1, TensorType::kQ5_0,
                              TensorType::kQ5_1, TensorType::kQ8_0, TensorType::kQ2_K,
                              TensorType::kQ3_K, TensorType::kQ4_K, TensorType::kQ5_K,
                              TensorType::kQ6_K};
  struct Shape {
    int rows, cols;
  };
  const Shape shapes[] = {{100, 256}, {576, 576}, {264, 1536}};
  const int ns[] = {1, 3, 8, 9, 70};
  double worst = 0;
  for (TensorType type : types) {
    fmt::print("matmul {} ...\n", kernels::TypeName(type));
    for (Shape sh : shapes) {
      if (sh.cols % kernels::Traits(type).block_size != 0) continue;
      const auto wbytes = RandomWeights(type, sh.rows, sh.cols);
      const kernels::WeightView host =
          kernels::MakeWeightView(type, wbytes.data(), sh.rows, sh.cols);
      const kernels::WeightView dev = gpu.b.UploadMatrix(host);
      std::vector<float> wf(size_t(sh.rows) * sh.cols);
      kernels::DequantizeValues(type, wbytes.data(), int64_t(wf.size()), wf.data());
      const int n_max = 70;
      const auto x = RandomFloats(size_t(n_max) * sh.cols);
      float* xd = gpu.Upload(x);
      std::vector<float> alone;  // each token computed by itself (n = 1)
      for (int t = 0; t < n_max; ++t) {
        float* y1 = gpu.Poisoned(sh.rows);
        gpu.b.MatMul(dev, xd + size_t(t) * sh.cols, 1, y1);
        const auto got = gpu.Download(y1, sh.rows);
        alone.insert(alone.end(), got.begin(), got.end());
        gpu.b.Free(y1);
      }
      for (int n : ns) {
        float* yd = gpu.Poisoned(size_t(n) * sh.rows);
        gpu.b.MatMul(dev, xd, n, yd);
        const auto got = gpu.Download(yd, size_t(n) * sh.rows);
        gpu.b.Free(yd);
        std::vector<double> want(got.size());
        for (int t = 0; t < n; ++t)
          for (int r = 0; r < sh.rows; ++r) {
            double acc = 0;
            for (int c = 0; c < sh.cols; ++c)
              acc += double(wf[size_t(r) * sh.cols + c]) * x[size_t(t) * sh.cols + c];
            want[size_t(t) * sh.rows + r] = acc;
          }
        bool finite = true;
        const double err = RelErr(got, want, &finite);
        worst = std::max(worst, err);
        const std::string what = fmt::format("matmul {} {}x{} n={}", kernels::TypeName(type),
                                             sh.rows, sh.cols, n);
        Check(finite && err < 2e-3, fmt::format("{}: rel err {:.2e}", what, err));
        bool same = std::memcmp(got.data(), alone.data(), got.size() * sizeof(float)) == 0;
        Check(same, what + ": differs from the same tokens computed one at a time");
      }
      // The CPU engine's own product (its activations are quantized to 8 bits).
      if (type != TensorType::kQ2_K && type != TensorType::kQ3_K) {
        fmt::print("  cpu engine {} {}x{}\n", kernels::TypeName(type), sh.rows, sh.cols);
        std::vector<float> cpu(size_t(sh.rows) * 3);
        kernels::MatMul(host, x.data(), 3, cpu.data(), pool);
        std::vector<float> gpu3(alone.begin(), alone.begin() + cpu.size());
        std::vector<double> cpud(cpu.begin(), cpu.end());
        bool finite = true;
        const double err = RelErr(gpu3, cpud, &finite);
        Check(finite && err < 1e-2, fmt::format("matmul {} {}x{}: GPU vs CPU engine rel err "
                                                "{:.2e}", kernels::TypeName(type), sh.rows,
                                                sh.cols, err));
      }
      gpu.b.Free(xd);
    }
  }
  fmt::print("matmul: 13 formats x 3 shapes x n in {{1,3,8,9,70}}, worst rel err {:.2e} vs "
             "double reference\n", worst);
}

void TestEmbed(Gpu& gpu, kernels::ThreadPool& pool) {
  const TensorType types[] = {TensorType::kF32,  TensorType::kF16,  TensorType::kBF16,
                              TensorType::kQ4_0, TensorType::kQ4_1, TensorType::kQ5_0,
                              TensorType::kQ5_1, TensorType::kQ8_0, TensorType::kQ2_K,
                              TensorType::kQ3_K, TensorType::kQ4_K, TensorType::kQ5_K,
                              TensorType::kQ6_K};
  backend::StepScope scope(gpu.b, pool);
  for (TensorType type : types) {
    const int rows = 50, cols = 512;
    const auto wbytes = RandomWeights(type, rows, cols);
    const kernels::WeightView host = kernels::MakeWeightView(type, wbytes.data(), rows, cols);
    const kernels::WeightView dev = gpu.b.UploadMatrix(host);
    const std::vector<int> tokens = {3, 0, 49, 17};
    float* xd = gpu.Poisoned(tokens.size() * cols);
    gpu.b.Embed(dev, tokens.data(), int(tokens.size()), 2.5f, xd);
    const auto got = gpu.Download(xd, tokens.size() * cols);
    gpu.b.Free(xd);
    double worst = 0;
    for (size_t t = 0; t < tokens.size(); ++t) {
      std::vector<float> row(cols);
      kernels::DequantizeRow(host, tokens[t], row.data());
      for (int c = 0; c < cols; ++c) {
        const double want = double(row[c]) * 2.5;
        worst = std::max(worst, std::abs(got[t * cols + c] - want) / (std::abs(want) + 1e-6));
      }
    }
    Check(worst < 1e-6, fmt::format("embed {}: worst rel err {:.2e}", kernels::TypeName(type),
                                    worst));
  }
  // A bad token id is an error before anything runs.
  const auto wbytes = RandomWeights(TensorType::kF16, 10, 64);
  const kernels::WeightView dev =
      gpu.b.UploadMatrix(kernels::MakeWeightView(TensorType::kF16, wbytes.data(), 10, 64));
  float* xd = gpu.Poisoned(64);
  bool threw = false;
  try {
    const int bad = 10;
    gpu.b.Embed(dev, &bad, 1, 1.0f, xd);
  } catch (const Error&) {
    threw = true;
  }
  gpu.b.Free(xd);
  Check(threw, "embed: token id out of range must throw tqlm::Error");
  fmt::print("embed: 13 formats against DequantizeRow\n");
}

void TestElementwise(Gpu& gpu, kernels::ThreadPool& pool) {
  backend::StepScope scope(gpu.b, pool);
  auto compare = [&](const std::string& what, const std::vector<float>& got,
                     const std::vector<float>& want, double tol) {
    double worst = 0;
    bool finite = true;
    for (size_t i = 0; i < got.size(); ++i) {
      if (!std::isfinite(got[i])) finite = false;
      worst = std::max(worst, double(std::abs(got[i] - want[i])) / (std::abs(want[i]) + 1e-3));
    }
    Check(finite && worst <= tol, fmt::format("{}: worst rel err {:.2e}", what, worst));
  };
  // RMSNorm, offsets 0 and 1, in place and not.
  for (float offset : {0.0f, 1.0f}) {
    const int rows = 7, d = 1536;
    auto x = RandomFloats(size_t(rows) * d, -3, 3);
    auto w = RandomFloats(d);
    std::vector<float> want(x.size());
    kernels::RmsNorm(x.data(), w.data(), offset, 1e-6f, rows, d, want.data());
    float* xd = gpu.Upload(x);
    const float* wd = gpu.b.UploadVector(w.data(), w.size());
    gpu.b.RmsNorm(xd, wd, offset, 1e-6f, rows, d, xd);
    compare(fmt::format("rmsnorm offset {}", offset), gpu.Download(xd, x.size()), want, 1e-6);
    gpu.b.Free(xd);
  }
  // RoPE: NeoX and adjacent pairs, full and partial rotary dims, positions up to 40000.
  for (bool neox : {true, false}) {
    for (int rot : {128, 64}) {
      const int n = 5, heads = 3, dim = 128;
      std::vector<int> pos = {0, 1, 777, 32767, 40000};
      std::vector<float> inv(rot / 2);
      for (int i = 0; i < rot / 2; ++i) inv[i] = float(std::pow(1e6, -2.0 * i / rot));
      auto x = RandomFloats(size_t(n) * heads * dim);
      auto want = x;
      kernels::Rope(want.data(), n, heads, dim, rot, pos.data(), inv.data(), neox);
      float* xd = gpu.Upload(x);
      const float* invd = gpu.b.UploadVector(inv.data(), inv.size());
      gpu.b.SetPositions(pos.data(), n);
      gpu.b.Rope(xd, n, heads, dim, rot, invd, neox);
      compare(fmt::format("rope neox={} rot={}", neox, rot), gpu.Download(xd, x.size()), want,
              1e-5);
      gpu.b.Free(xd);
    }
  }
  const size_t n = 10007;
  auto a = RandomFloats(n, -8, 8), b = RandomFloats(n, -2, 2);
  auto run = [&](const std::string& what, auto gpu_op, auto cpu_op, double tol) {
    auto want = a;
    cpu_op(want);
    float* ad = gpu.Upload(a);
    float* bd = gpu.Upload(b);
    gpu_op(ad, bd);
    compare(what, gpu.Download(ad, n), want, tol);
    gpu.b.Free(ad);
    gpu.b.Free(bd);
  };
  run("silu*mul", [&](float* x, float* y) { gpu.b.SiluMul(x, y, n); },
      [&](std::vector<float>& v) { kernels::SiluMul(v.data(), b.data(), n); }, 1e-5);
  run("gelu*mul", [&](float* x, float* y) { gpu.b.GeluMul(x, y, n); },
      [&](std::vector<float>& v) { kernels::GeluMul(v.data(), b.data(), n); }, 1e-4);
  run("add", [&](float* x, float* y) { gpu.b.Add(x, y, n); },
      [&](std::vector<float>& v) { kernels::Add(v.data(), b.data(), n); }, 0);
  run("add rows", [&](float* x, float* y) { gpu.b.AddRows(x, y, 1, int(n)); },
      [&](std::vector<float>& v) { kernels::AddRows(v.data(), b.data(), 1, int(n)); }, 0);
  run("softcap", [&](float* x, float*) { gpu.b.Softcap(x, 30.0f, n); },
      [&](std::vector<float>& v) {
        for (auto& e : v) e = 30.0f * std::tanh(e / 30.0f);
      }, 1e-6);
  fmt::print("elementwise: rmsnorm, rope, silu/gelu gates, add, bias rows, softcap\n");
}

float Half(float f) { return kernels::F16ToF32(kernels::F32ToF16(f)); }

// Double-precision causal attention of queries at positions [start, start + n) over keys and
// values (rounded to fp16 as the cache stores them) of positions [0, start + n).
std::vector<double> ReferenceAttention(const kv::LayerGeometry& g, float scale,
                                       const std::vector<float>& k, const std::vector<float>& v,
                                       const std::vector<float>& q, int start, int n) {
  const int D = g.head_dim, H = g.n_heads, KV = g.n_kv_heads, G = H / KV;
  std::vector<double> out(size_t(n) * H * D, 0);
  for (int i = 0; i < n; ++i) {
    const int p = start + i;
    const int lo = g.sliding_window > 0 ? std::max(0, p - g.sliding_window + 1) : 0;
    for (int h = 0; h < H; ++h) {
      const int kvh = h / G;
      std::vector<double> s(p + 1, -1e300);
      double m = -1e300;
      for (int j = lo; j <= p; ++j) {
        double acc = 0;
        for (int d = 0; d < D; ++d)
          acc += double(q[(size_t(i) * H + h) * D + d]) * Half(k[(size_t(j) * KV + kvh) * D + d]);
        s[j] = acc * scale;
        m = std::max(m, s[j]);
      }
      double l = 0;
      for (int j = lo; j <= p; ++j) l += std::exp(s[j] - m);
      for (int j = lo; j <= p; ++j) {
        const double w = std::exp(s[j] - m) / l;
        for (int d = 0; d < D; ++d)
          out[(size_t(i) * H + h) * D + d] += w * Half(v[(size_t(j) * KV + kvh) * D + d]);
      }
    }
  }
  return out;
}

// A batched decode step over three sequences of different lengths equals each sequence's own
// step bit for bit, and chunked prefill equals one-token-at-a-time prefill (any cache type).
void TestBatched(Gpu& gpu, const char* kt, const char* vt, int sinks) {
  fmt::print("attention {}/{}: batched step vs solo ...\n", kt, vt);
  const kv::LayerGeometry g{12, 2, 128, 0};
  kv::KvCacheConfig cfg;
  cfg.layers = {g};
  cfg.k_types = {kv::KvType::Parse(kt)};
  cfg.v_types = {kv::KvType::Parse(vt)};
  cfg.sink_tokens = sinks;
  cfg.attn_scale = 0.088f;
  cfg.max_tokens = 4096;
  const int kvd = g.n_kv_heads * g.head_dim, qd = g.n_heads * g.head_dim;
  const int lens[3] = {17, 600, 300};
  std::vector<std::unique_ptr<kv::KvCache>> solo, batched;
  std::vector<std::vector<float>> solo_out(3);
  const int total = 700;
  auto k = RandomFloats(size_t(total) * kvd), v = RandomFloats(size_t(total) * kvd);
  auto q = RandomFloats(size_t(total) * qd);
  float* kd = gpu.Upload(k);
  float* vd = gpu.Upload(v);
  float* qdv = gpu.Upload(q);
  float* od = gpu.Poisoned(size_t(total) * qd);
  // Sequence s: prefill of lens[s] tokens (in chunks of 64 for solo, one at a time for
  // batched), then a decode token (the one at position lens[s]).
  for (int s = 0; s < 3; ++s) {
    solo.push_back(gpu.b.CreateCache(cfg));
    batched.push_back(gpu.b.CreateCache(cfg));
    for (int at = 0; at < lens[s]; at += 64) {
      const int n = std::min(64, lens[s] - at);
      gpu.b.AppendAttend(*solo[s], 0, kd + size_t(at) * kvd, vd + size_t(at) * kvd,
                         qdv + size_t(at) * qd, n, od);
      solo[s]->Commit(n);
    }
    for (int at = 0; at < lens[s]; ++at) {
      gpu.b.AppendAttend(*batched[s], 0, kd + size_t(at) * kvd, vd + size_t(at) * kvd,
                         qdv + size_t(at) * qd, 1, od);
      batched[s]->Commit(1);
    }
    const int p = lens[s];
    gpu.b.AppendAttend(*solo[s], 0, kd + size_t(p) * kvd, vd + size_t(p) * kvd,
                       qdv + size_t(p) * qd, 1, od);
    solo[s]->Commit(1);
    solo_out[s] = gpu.Download(od, qd);
  }
  // Batched step: token t of the batch is sequence t's token at position lens[t].
  std::vector<float> bk, bv, bq;
  for (int s = 0; s < 3; ++s) {
    const int p = lens[s];
    bk.insert(bk.end(), k.begin() + size_t(p) * kvd, k.begin() + size_t(p + 1) * kvd);
    bv.insert(bv.end(), v.begin() + size_t(p) * kvd, v.begin() + size_t(p + 1) * kvd);
    bq.insert(bq.end(), q.begin() + size_t(p) * qd, q.begin() + size_t(p + 1) * qd);
  }
  float* bkd = gpu.Upload(bk);
  float* bvd = gpu.Upload(bv);
  float* bqd = gpu.Upload(bq);
  float* bod = gpu.Poisoned(bq.size());
  std::vector<kv::KvCache*> caches = {batched[0].get(), batched[1].get(), batched[2].get()};
  gpu.b.AppendAttendBatch(caches, 0, bkd, bvd, kvd, bqd, qd, bod);
  for (auto* c : caches) c->Commit(1);
  const auto got = gpu.Download(bod, bq.size());
  for (int s = 0; s < 3; ++s)
    Check(std::memcmp(got.data() + size_t(s) * qd, solo_out[s].data(), qd * sizeof(float)) == 0,
          fmt::format("attention {}/{}: sequence {} of a batched step (prefilled one token at a time) "
                      "differs from its own step (prefilled in chunks of 64)", kt, vt, s));
  for (float* p : {kd, vd, qdv, od, bkd, bvd, bqd, bod}) gpu.b.Free(p);
}

void TestAttention(Gpu& gpu, kernels::ThreadPool& pool) {
  backend::StepScope scope(gpu.b, pool);
  struct Case {
    kv::LayerGeometry g;
    std::vector<int> steps;  // tokens appended per step
  };
  const Case cases[] = {
      {{9, 3, 64, 0}, {300, 1, 1, 5, 1}},       // SmolLM2-135M heads
      {{12, 2, 128, 0}, {700, 1, 1}},           // Qwen2.5-1.5B heads
      {{4, 1, 256, 0}, {64, 200, 1}},           // Gemma 3 270M global layer
      {{4, 1, 256, 128}, {300, 1, 40, 1}},      // Gemma 3 270M local layer (window 128)
  };
  for (const Case& c : cases) {
    const kv::LayerGeometry& g = c.g;
    fmt::print("attention H={} KV={} D={} window={} ...\n", g.n_heads, g.n_kv_heads, g.head_dim,
               g.sliding_window);
    kv::KvCacheConfig cfg;
    cfg.layers = {g};
    cfg.k_types = {kv::KvType::Parse("f16")};
    cfg.v_types = cfg.k_types;
    cfg.attn_scale = 1.0f / std::sqrt(float(g.head_dim));
    cfg.max_tokens = 4096;
    auto cache = gpu.b.CreateCache(cfg);
    const int kvd = g.n_kv_heads * g.head_dim, qd = g.n_heads * g.head_dim;
    std::vector<float> all_k, all_v;
    int pos = 0;
    double worst = 0;
    bool finite = true;
    for (int n : c.steps) {
      auto k = RandomFloats(size_t(n) * kvd, -2, 2), v = RandomFloats(size_t(n) * kvd, -2, 2);
      auto q = RandomFloats(size_t(n) * qd, -2, 2);
      all_k.insert(all_k.end(), k.begin(), k.end());
      all_v.insert(all_v.end(), v.begin(), v.end());
      float* kd = gpu.Upload(k);
      float* vd = gpu.Upload(v);
      float* qdv = gpu.Upload(q);
      float* od = gpu.Poisoned(q.size());
      gpu.b.AppendAttend(*cache, 0, kd, vd, qdv, n, od);
      cache->Commit(n);
      const auto got = gpu.Download(od, q.size());
      const auto want = ReferenceAttention(g, cfg.attn_scale, all_k, all_v, q, pos, n);
      bool f = true;
      worst = std::max(worst, RelErr(got, want, &f));
      finite = finite && f;
      for (float* p : {kd, vd, qdv, od}) gpu.b.Free(p);
      pos += n;
    }
    Check(finite && worst < 3e-3,
          fmt::format("attention H={} KV={} D={} window={}: rel err {:.2e}", g.n_heads,
                      g.n_kv_heads, g.head_dim, g.sliding_window, worst));
  }
  TestBatched(gpu, "f16", "f16", 0);
  fmt::print("attention: f16 cache, prefill + decode, window, GQA 3/4/6, batched = solo\n");
}


// --- The compressed (TurboQuant) KV cache ------------------------------------------------------
// Against the CPU cache (kv/paged_kv_cache.h), the reference: the GPU's blocks decoded by the
// CPU's decoder equal the CPU's own blocks up to the few coordinates whose fp16 input rounding
// differs (the GPU rounds after rotating), and attention over the same tokens agrees within the
// CPU kernels' own quantization (int8 queries, 8-bit probabilities).
struct TqCase {
  const char* name;
  kv::LayerGeometry g;
  const char *kt, *vt;
  int sinks, recent;
  std::vector<int> steps;
};

kv::KvCacheConfig TqConfig(const TqCase& c) {
  kv::KvCacheConfig cfg;
  cfg.layers = {c.g};
  cfg.k_types = {kv::KvType::Parse(c.kt)};
  cfg.v_types = {kv::KvType::Parse(c.vt)};
  cfg.attn_scale = 1.0f / std::sqrt(float(c.g.head_dim));
  cfg.max_tokens = 4096;
  cfg.sink_tokens = c.sinks;
  cfg.recent_tokens = c.recent;
  return cfg;
}

// Keys with a large shared component (as Qwen2.5's key biases), so that centering matters.
std::vector<float> BiasedKeys(size_t n, int kvd) {
  auto k = RandomFloats(n * kvd, -1, 1);
  const auto bias = RandomFloats(kvd, -6, 6);
  for (size_t i = 0; i < k.size(); ++i) k[i] += bias[i % kvd];
  return k;
}

void TestCompressedCache(Gpu& gpu, kernels::ThreadPool& pool) {
  backend::StepScope scope(gpu.b, pool);
  const TqCase cases[] = {
      {"default K3/V2 (Qwen heads)", {12, 2, 128, 0}, "tq3", "tq2", 4, 0, {300, 1, 1, 70, 1}},
      {"default K8/V3 (SmolLM2 heads)", {9, 3, 64, 0}, "tq8", "tq3", 4, 0, {200, 1, 100, 1}},
      {"tq4/tq4, buffer 64", {12, 2, 128, 0}, "tq4", "tq4", 4, 64, {250, 1, 1, 90, 1}},
      {"tq2.5/tq3.5", {12, 2, 128, 0}, "tq2.5", "tq3.5", 0, 0, {190, 1, 1}},
      {"f16 K / tq3 V", {12, 2, 128, 0}, "f16", "tq3", 4, 0, {260, 1, 1}},
      {"window 128 (Gemma local)", {4, 1, 256, 128}, "tq3", "tq2", 4, 0, {300, 1, 40, 1}},
      {"global head 256 (Gemma)", {4, 1, 256, 0}, "tq4", "tq3", 4, 0, {200, 1}},
  };
  for (const TqCase& c : cases) {
    const kv::LayerGeometry& g = c.g;
    fmt::print("compressed cache: {} ...\n", c.name);
    const kv::KvCacheConfig cfg = TqConfig(c);
    auto gcache = gpu.b.CreateCache(cfg);
    auto ccache = kv::KvCache::Create(cfg);
    const int kvd = g.n_kv_heads * g.head_dim, qd = g.n_heads * g.head_dim;
    double worst = 0;
    bool finite = true;
    for (int n : c.steps) {
      auto k = BiasedKeys(size_t(n), kvd), v = RandomFloats(size_t(n) * kvd, -2, 2);
      auto q = RandomFloats(size_t(n) * qd, -2, 2);
      float* kd = gpu.Upload(k);
      float* vd = gpu.Upload(v);
      float* qdv = gpu.Upload(q);
      float* od = gpu.Poisoned(q.size());
      gpu.b.AppendAttend(*gcache, 0, kd, vd, qdv, n, od);
      gcache->Commit(n);
      std::vector<float> want(q.size());
      ccache->Append(0, k.data(), v.data(), n);
      ccache->Attend(0, q.data(), n, want.data(), pool);
      ccache->Commit(n);
      const auto got = gpu.Download(od, q.size());
      std::vector<double> wd(want.begin(), want.end());
      bool f = true;
      worst = std::max(worst, RelErr(got, wd, &f));
      finite = finite && f;
      for (float* p : {kd, vd, qdv, od}) gpu.b.Free(p);
    }
    Check(finite && worst < 4e-2, fmt::format("compressed cache {}: attention rel err vs CPU {:.2e}",
                                              c.name, worst));
    fmt::print("  attention vs CPU cache: rel err {:.2e}\n", worst);
    // Blocks: the GPU's bytes through the CPU decoder against the CPU's blocks.
    auto* tq = dynamic_cast<backend::CudaTqKvCache*>(gcache.get());
    const auto& cl = dynamic_cast<const kv::PagedKvCache&>(*ccache).layer(0);
    Check(tq != nullptr, "compressed cache: the CUDA backend made a CudaTqKvCache");
    if (!tq) continue;
    double num = 0, den = 0;
    size_t coords = 0, differ = 0;
    int blocks = 0;
    for (int key = 0; key < 2; ++key) {
      const kv::PagedKvCache::Tensor& t = key ? cl.k : cl.v;
      if (t.comp == t.raw) continue;
      for (int h = 0; h < g.n_kv_heads; ++h) {
        for (int b = 0; b < cl.n_comp; ++b) {
          const uint32_t id = t.main[h][b];
          if (id == kv::kNoBlock) continue;
          const auto mine = tq->DownloadBlock(0, key, h, b);
          if (mine.empty()) continue;
          ++blocks;
          std::vector<float> a(size_t(kv::kBlockTokens) * g.head_dim), e(a.size());
          t.comp->Decode(mine.data(), 0, kv::kBlockTokens, a.data());
          t.comp->Decode(t.comp_pool[h]->data(id), 0, kv::kBlockTokens, e.data());
          for (size_t i = 0; i < a.size(); ++i) {
            num += double(a[i] - e[i]) * (a[i] - e[i]);
            den += double(e[i]) * e[i];
            differ += std::fabs(a[i] - e[i]) > 1e-3f * (std::fabs(e[i]) + 1e-3f);
            ++coords;
          }
        }
      }
    }
    const double rel = std::sqrt(num / std::max(den, 1e-30));
    const double frac = coords ? double(differ) / coords : 0;
    fmt::print("  {} blocks decoded by the CPU: rel diff {:.2e}, {:.3f}% coordinates differ\n",
               blocks, rel, 100 * frac);
    // The GPU encodes what the CPU encodes (the rotation of the fp16 input rows, the same norms,
    // center and thresholds) except for the rotation's float arithmetic: a dense fp32 product
    // here, a fast Walsh-Hadamard transform there, a few float ulps of |y| apart (~2^-22 |y|).
    // A code flips only when a rotated coordinate lies that close to a threshold, and one flip
    // changes every decoded coordinate of its token (the inverse rotation spreads it), so `frac`
    // is about the fraction of tokens with a flip. Rounding y to fp16 after the rotation (the
    // GPU's old order) moved each coordinate by up to 2^-11 |y_j| ~ 2^-11 |y| / sqrt(dim) and
    // flipped 14-40% of tokens (docs/gpu/tq-run1); the float window is 2^11 / sqrt(dim) = 128x
    // (dim 256) to 256x (dim 64) narrower, so at most ~0.4% of tokens (-ln(1 - 0.40) / 128):
    // bound 1%. H100 (docs/gpu/tq-run2): 0% in six cases, 0.195% (one token in 512) in
    // tq2.5/tq3.5. rel: a flipped token is off by about one level step, under 1/sqrt(dim) of its
    // norm, so rel < sqrt(frac) / sqrt(dim), far below 2e-2.
    Check(blocks > 0 && rel < 2e-2 && frac < 0.01,
          fmt::format("compressed cache {}: GPU blocks vs CPU blocks rel {:.2e}, {:.3f}% differ",
                      c.name, rel, 100 * frac));
  }
  // Determinism: chunked prefill (64) and one token at a time give the same bits for the
  // decode token after, with pending blocks (a buffer of 40 tokens) and without.
  for (int recent : {0, 40}) {
    const TqCase c{"det", {12, 2, 128, 0}, "tq3", "tq2", 4, recent, {}};
    const kv::KvCacheConfig cfg = TqConfig(c);
    const int kvd = c.g.n_kv_heads * c.g.head_dim, qd = c.g.n_heads * c.g.head_dim;
    const int total = 400;
    auto k = BiasedKeys(size_t(total + 1), kvd), v = RandomFloats(size_t(total + 1) * kvd);
    auto q = RandomFloats(size_t(total + 1) * qd);
    float* kd = gpu.Upload(k);
    float* vd = gpu.Upload(v);
    float* qdv = gpu.Upload(q);
    float* od = gpu.Poisoned(size_t(total + 1) * qd);
    std::vector<float> outs[2];
    for (int chunk : {64, 1}) {
      auto cache = gpu.b.CreateCache(cfg);
      for (int at = 0; at < total; at += chunk) {
        const int n = std::min(chunk, total - at);
        gpu.b.AppendAttend(*cache, 0, kd + size_t(at) * kvd, vd + size_t(at) * kvd,
                           qdv + size_t(at) * qd, n, od);
        cache->Commit(n);
      }
      gpu.b.AppendAttend(*cache, 0, kd + size_t(total) * kvd, vd + size_t(total) * kvd,
                         qdv + size_t(total) * qd, 1, od);
      cache->Commit(1);
      outs[chunk == 1] = gpu.Download(od, qd);
    }
    Check(outs[0] == outs[1],
          fmt::format("compressed cache (buffer {}): chunked prefill and one token at a time "
                      "differ at the next decode step", recent));
    for (float* p : {kd, vd, qdv, od}) gpu.b.Free(p);
  }
  TestBatched(gpu, "tq3", "tq2", 4);
  TestBatched(gpu, "tq8", "tq3", 4);
  fmt::print("compressed cache: blocks vs CPU, attention vs CPU, chunked = one at a time, "
             "batched = solo\n");
}

}  // namespace

int main() {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // every line out before a crash, if any
  try {
    if (tqlm::backend::CudaDeviceCount() == 0) {
      fmt::print("cuda_backend_test: no GPU visible, skipping\n");
      return 77;
    }
    auto backend = tqlm::backend::Backend::Create(tqlm::backend::Device::kCuda);
    fmt::print("{}\n", backend->Describe());
    tqlm::kernels::ThreadPool pool(4);
    Gpu gpu{*backend};
    TestMatMul(gpu, pool);
    TestEmbed(gpu, pool);
    TestElementwise(gpu, pool);
    TestAttention(gpu, pool);
    TestCompressedCache(gpu, pool);
  } catch (const std::exception& e) {
    fmt::print("FAIL exception: {}\n", e.what());
    return 1;
  }
  fmt::print("cuda_backend_test: {} checks, {} failed\n", g_checks, g_failures);
  return g_failures == 0 ? 0 : 1;
}
