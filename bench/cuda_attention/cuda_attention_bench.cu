// Decode-attention benchmark on the GPU: tqlm kernels (tq4/tq3, tq3/tq3, f16) for Llama-3-8B
// geometry (32 query heads, 8 KV heads, d = 128), contexts 4K..128K, batch 1/8/32, against the
// device-to-device copy rate measured in the same run. Prints a table and writes JSON lines.
// PyTorch SDPA runs in sdpa_bench.py; report.py joins both.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "device_buffer.h"
#include "kernels/cuda/tq_attention.h"
#include "ref_codec.h"

namespace tqlm::cuda {
namespace {

constexpr int kHeads = 32, kKvHeads = 8, kDim = 128;

// Fills words with fp16 pairs of magnitude in [0.5, 1): finite, non-zero, any code pattern.
__global__ void FillKernel(uint32_t* w, size_t n, uint32_t seed) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    uint32_t x = uint32_t(i) * 2654435761u ^ seed;
    x ^= x >> 13, x *= 0x5bd1e995u, x ^= x >> 15;
    const uint32_t lo = 0x3800u | (x & 0x83ffu), hi = 0x3800u | ((x >> 16) & 0x83ffu);
    w[i] = lo | (hi << 16);
  }
}

void Fill(const DeviceBuffer& b, uint32_t seed) {
  FillKernel<<<1024, 256>>>(b.as<uint32_t>(), b.bytes() / 4, seed);
  TQLM_CUDA_CHECK(cudaGetLastError());
}

float Median(std::vector<float> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

double CopyBandwidth() {
  const size_t bytes = size_t(1) << 30;
  DeviceBuffer a(bytes), b(bytes);
  Fill(a, 1);
  cudaEvent_t e0, e1;
  TQLM_CUDA_CHECK(cudaEventCreate(&e0));
  TQLM_CUDA_CHECK(cudaEventCreate(&e1));
  std::vector<float> ms;
  for (int i = 0; i < 23; ++i) {
    TQLM_CUDA_CHECK(cudaEventRecord(e0));
    TQLM_CUDA_CHECK(cudaMemcpyAsync(b.as<void>(), a.as<void>(), bytes, cudaMemcpyDeviceToDevice));
    TQLM_CUDA_CHECK(cudaEventRecord(e1));
    TQLM_CUDA_CHECK(cudaEventSynchronize(e1));
    float t = 0;
    TQLM_CUDA_CHECK(cudaEventElapsedTime(&t, e0, e1));
    if (i >= 3) ms.push_back(t);
  }
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  return 2.0 * bytes / (Median(ms) * 1e-3);  // bytes read + written per second
}

struct Format {
  const char* name;
  int k_bits, v_bits, sinks, recent;
};

struct Row {
  std::string fmt;
  int ctx, batch;
  double us, bytes, frac;
  int splits, grid;
};

// Plan fields forced from the command line (-1: the planner's choice).
struct Overrides {
  int l2_prefetch = -1, fused_merge = -1, pdl = -1, splits = 0, f16_stages = -1;
};

Row Measure(const Format& f, int ctx, int batch, double copy_bw, int sms, const Overrides& ov) {
  const bool f16 = f.k_bits == kF16Bits && f.v_bits == kF16Bits;
  const CodecTables tables = ref::MakeTables(kDim, f.k_bits, f.v_bits, /*identity_rotation=*/f16);
  DeviceTables dt(tables);
  CacheView cv;
  cv.batch = batch, cv.n_heads = kHeads, cv.n_kv_heads = kKvHeads, cv.dim = kDim;
  cv.k_bits = f.k_bits, cv.v_bits = f.v_bits, cv.sink_tokens = f.sinks, cv.recent_tokens = f.recent;
  const int comp_tokens = std::max(0, ctx - f.sinks - f.recent);
  const int chunks = (ctx - f.sinks + kChunkTokens - 1) / kChunkTokens;  // pages hold every non-sink token
  const int read_chunks = (comp_tokens + kChunkTokens - 1) / kChunkTokens;
  cv.max_chunks = chunks;
  std::vector<int32_t> table(size_t(batch) * chunks);
  for (size_t i = 0; i < table.size(); ++i) table[i] = int32_t(i);
  DeviceBuffer table_d = DeviceBuffer::From(table);
  cv.block_table = table_d.as<int32_t>();
  const size_t pool_bytes = table.size() * kKvHeads * cv.PageBytes();
  const size_t f16_bytes = size_t(batch) * cv.F16Chunks() * kKvHeads * cv.F16PageBytes();
  const double read_bytes = double(batch) * kKvHeads *
      (double(read_chunks) * cv.PageBytes() + double(cv.F16Chunks()) * cv.F16PageBytes());
  // Enough copies that repeated steps do not run out of the L2 cache.
  const int copies = int(std::clamp<double>(std::ceil(512e6 / read_bytes), 1, 32));
  std::vector<DeviceBuffer> pools, f16s;
  for (int i = 0; i < copies; ++i) {
    pools.emplace_back(pool_bytes);
    Fill(pools.back(), 100 + i);
    f16s.emplace_back(std::max<size_t>(f16_bytes, 256));
    Fill(f16s.back(), 200 + i);
  }
  std::vector<float> q(size_t(batch) * kHeads * kDim);
  for (size_t i = 0; i < q.size(); ++i) q[i] = std::sin(0.37f * float(i));
  std::vector<int32_t> lens(batch, ctx);
  DeviceBuffer q_d = DeviceBuffer::From(q), lens_d = DeviceBuffer::From(lens);
  DeviceBuffer out_d(q.size() * sizeof(float));
  AttendPlan plan = PlanAttend(cv, ctx, sms, ov.splits);
  if (ov.l2_prefetch >= 0) plan.l2_prefetch = ov.l2_prefetch;
  if (ov.fused_merge >= 0) plan.fused_merge = ov.fused_merge;
  if (ov.pdl >= 0) plan.pdl = ov.pdl;
  if (ov.f16_stages >= 0) plan.f16_stages = ov.f16_stages;
  DeviceBuffer ws(AttendWorkspaceBytes(cv, plan));
  TQLM_CUDA_CHECK(cudaMemset(ws.as<void>(), 0, ws.bytes()));
  const float scale = 1.0f / std::sqrt(float(kDim));
  auto step = [&](int i) {
    CacheView c = cv;
    c.pages = pools[i % copies].as<uint8_t>();
    c.f16_region = f16s[i % copies].as<uint8_t>();
    LaunchAttend(c, dt, plan, q_d.as<float>(), lens_d.as<int32_t>(), scale, out_d.as<float>(),
                 ws.as<void>(), nullptr);
  };
  for (int i = 0; i < 3; ++i) step(i);
  TQLM_CUDA_CHECK(cudaDeviceSynchronize());
  cudaEvent_t e0, e1;
  TQLM_CUDA_CHECK(cudaEventCreate(&e0));
  TQLM_CUDA_CHECK(cudaEventCreate(&e1));
  // Steps back to back (as a decode loop issues them): 7 runs of 20 steps, median per step.
  std::vector<float> ms;
  for (int run = 0, i = 0; run < 7; ++run) {
    TQLM_CUDA_CHECK(cudaEventRecord(e0));
    for (int k = 0; k < 20; ++k) step(i++);
    TQLM_CUDA_CHECK(cudaEventRecord(e1));
    TQLM_CUDA_CHECK(cudaEventSynchronize(e1));
    float t = 0;
    TQLM_CUDA_CHECK(cudaEventElapsedTime(&t, e0, e1));
    ms.push_back(t / 20);
  }
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  const std::vector<float> out = out_d.ToHost<float>();
  for (float x : out) {
    if (!std::isfinite(x)) throw Error("bench: non-finite attention output");
  }
  const double us = Median(ms) * 1e3;
  return {f.name, ctx, batch, us, read_bytes, read_bytes / (us * 1e-6) / copy_bw, plan.n_splits,
          plan.grid};
}

double AppendMicros(int batch, int sms) {
  (void)sms;
  const CodecTables tables = ref::MakeTables(kDim, 4, 3);
  DeviceTables dt(tables);
  CacheView cv;
  cv.batch = batch, cv.n_heads = kHeads, cv.n_kv_heads = kKvHeads, cv.dim = kDim;
  cv.k_bits = 4, cv.v_bits = 3, cv.recent_tokens = 128, cv.sink_tokens = 4;
  cv.max_chunks = 4;
  std::vector<int32_t> table(size_t(batch) * 4);
  for (size_t i = 0; i < table.size(); ++i) table[i] = int32_t(i);
  DeviceBuffer table_d = DeviceBuffer::From(table);
  DeviceBuffer pool(table.size() * kKvHeads * cv.PageBytes());
  DeviceBuffer f16(size_t(batch) * cv.F16Chunks() * kKvHeads * cv.F16PageBytes());
  TQLM_CUDA_CHECK(cudaMemset(pool.as<void>(), 0, pool.bytes()));
  cv.block_table = table_d.as<int32_t>(), cv.pages = pool.as<uint8_t>(), cv.f16_region = f16.as<uint8_t>();
  std::vector<int32_t> seq(batch), pos(batch, 20), lens_after(batch, 21);
  for (int b = 0; b < batch; ++b) seq[b] = b;
  std::vector<float> kv(size_t(batch) * kKvHeads * kDim);
  for (size_t i = 0; i < kv.size(); ++i) kv[i] = std::cos(0.11f * float(i));
  DeviceBuffer seq_d = DeviceBuffer::From(seq), pos_d = DeviceBuffer::From(pos), kv_d = DeviceBuffer::From(kv);
  DeviceBuffer lens_d = DeviceBuffer::From(lens_after);
  cudaEvent_t e0, e1;
  TQLM_CUDA_CHECK(cudaEventCreate(&e0));
  TQLM_CUDA_CHECK(cudaEventCreate(&e1));
  std::vector<float> ms;
  for (int i = 0; i < 23; ++i) {
    TQLM_CUDA_CHECK(cudaEventRecord(e0));
    LaunchAppend(cv, dt, batch, seq_d.as<int32_t>(), pos_d.as<int32_t>(), lens_d.as<int32_t>(),
                 kv_d.as<float>(), kv_d.as<float>(), nullptr);
    TQLM_CUDA_CHECK(cudaEventRecord(e1));
    TQLM_CUDA_CHECK(cudaEventSynchronize(e1));
    float t = 0;
    TQLM_CUDA_CHECK(cudaEventElapsedTime(&t, e0, e1));
    if (i >= 3) ms.push_back(t);
  }
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  return Median(ms) * 1e3;
}

std::vector<int> ParseList(const char* s) {
  std::vector<int> v;
  for (const char* p = s; *p;) {
    v.push_back(std::atoi(p));
    while (*p && *p != ',') ++p;
    if (*p == ',') ++p;
  }
  return v;
}

}  // namespace
}  // namespace tqlm::cuda

int main(int argc, char** argv) {
  using namespace tqlm::cuda;
  std::vector<int> contexts = {4096, 8192, 16384, 32768, 65536, 131072};
  std::vector<int> batches = {1, 8, 32};
  const char* json_path = "cuda_attention.json";
  Overrides ov;
  std::string only;  // --formats: comma-separated names to run (default: all)
  bool append = true;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--contexts")) contexts = ParseList(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--batches")) batches = ParseList(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--json")) json_path = argv[i + 1];
    else if (!std::strcmp(argv[i], "--l2-prefetch")) ov.l2_prefetch = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--fused-merge")) ov.fused_merge = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--pdl")) ov.pdl = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--f16-stages")) ov.f16_stages = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--splits")) ov.splits = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--formats")) only = std::string(",") + argv[i + 1] + ",";
    else if (!std::strcmp(argv[i], "--append")) append = std::atoi(argv[i + 1]) != 0;
  }
  int n_dev = 0;
  if (cudaGetDeviceCount(&n_dev) != cudaSuccess || n_dev == 0) {
    std::printf("cuda_attention_bench: no CUDA device\n");
    return 0;
  }
  cudaDeviceProp prop{};
  TQLM_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  const double copy_bw = CopyBandwidth();
  std::printf("device: %s, %d SMs, L2 %d MB; d2d copy %.0f GB/s (read + write)\n", prop.name,
              prop.multiProcessorCount, prop.l2CacheSize >> 20, copy_bw / 1e9);
  std::FILE* json = std::fopen(json_path, "w");
  std::fprintf(json, "{\"kind\":\"device\",\"name\":\"%s\",\"sms\":%d,\"copy_bw\":%.6e}\n", prop.name,
               prop.multiProcessorCount, copy_bw);
  const Format formats[] = {{"tq4/tq3", 4, 3, 0, 0},
                            {"tq3/tq3", 3, 3, 0, 0},
                            {"f16", kF16Bits, kF16Bits, 0, 0},
                            {"tq4/tq3+s4r128", 4, 3, 4, 128}};
  std::printf("%-16s %7s %5s %10s %10s %8s %7s %5s\n", "format", "ctx", "batch", "us", "MB read",
              "of copy", "splits", "grid");
  for (int ctx : contexts) {
    for (int batch : batches) {
      for (const Format& f : formats) {
        if (f.recent > 0 && !(ctx == 32768 && batch == 8)) continue;
        if (!only.empty() && only.find(std::string(",") + f.name + ",") == std::string::npos) continue;
        try {
          const Row r = Measure(f, ctx, batch, copy_bw, prop.multiProcessorCount, ov);
          std::printf("%-16s %7d %5d %10.1f %10.1f %7.1f%% %7d %5d\n", r.fmt.c_str(), r.ctx, r.batch,
                      r.us, r.bytes / 1e6, 100 * r.frac, r.splits, r.grid);
          std::fprintf(json,
                       "{\"kind\":\"tqlm\",\"format\":\"%s\",\"ctx\":%d,\"batch\":%d,\"us\":%.3f,"
                       "\"bytes\":%.0f,\"frac_copy\":%.4f}\n",
                       r.fmt.c_str(), r.ctx, r.batch, r.us, r.bytes, r.frac);
        } catch (const std::exception& e) {
          std::printf("%-16s %7d %5d failed: %s\n", f.name, ctx, batch, e.what());
        }
        std::fflush(stdout);
      }
    }
  }
  for (int batch : {1, 8, 32}) {
    if (!append) break;
    const double us = AppendMicros(batch, prop.multiProcessorCount);
    std::printf("append (tq4/tq3, 1 token x %d sequences x 8 KV heads): %.1f us\n", batch, us);
    std::fprintf(json, "{\"kind\":\"append\",\"batch\":%d,\"us\":%.3f}\n", batch, us);
  }
  std::fclose(json);
  return 0;
}
