// `tqlm bench attn`: single-token decode attention over a KV cache of N random tokens, for one
// K/V type pair against f16 timed in alternating rounds of the same run, cycling over enough
// layers' caches that together they exceed the last-level cache (as a real model's layers do),
// plus a memory-copy rate measured in the same run as the bandwidth yardstick. --sweep prints
// a table over contexts and type pairs.
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <iostream>
#include <memory>
#include <random>
#include <sstream>
#include <vector>

#include "cli/bench_e2e.h"
#include "cli/bench_spec.h"
#include "cli/command.h"
#include "kernels/cpu/read_probe.h"
#include "kernels/cpu/thread_pool.h"
#include "kv/kv_cache.h"
#include "tqlm/error.h"

namespace tqlm::cli {
namespace {

using Clock = std::chrono::steady_clock;

struct AttnFlags {
  std::vector<int> ctx = {4096};
  int heads = 32, kv_heads = 8, dim = 128;
  std::vector<std::string> ctk = {"tq4"}, ctv = {"tq3"};
  int threads = 2;
  double min_seconds = 0.3;  // timing per configuration (at least 5 rounds)
  bool json = false;
  bool sweep = false;
};

size_t LastLevelCacheBytes() {
  const long l3 = sysconf(_SC_LEVEL3_CACHE_SIZE);
  if (l3 > 0) return size_t(l3);
  return size_t(32) << 20;
}

// Fastest of five timed calls after one warm-up call, in seconds.
template <typename Fn>
double BestOfFiveSeconds(const Fn& fn) {
  fn();
  double best = 1e30;
  for (int r = 0; r < 5; ++r) {
    const auto t0 = Clock::now();
    fn();
    best = std::min(best, std::chrono::duration<double>(Clock::now() - t0).count());
  }
  return best;
}

// Bytes read + written per second by a parallel memcpy of a buffer far larger than the LLC.
double CopyGbps(kernels::ThreadPool& pool) {
  const size_t bytes = std::max<size_t>(size_t(256) << 20, 4 * LastLevelCacheBytes());
  std::vector<uint8_t> src(bytes, 1), dst(bytes, 0);
  auto once = [&] {
    pool.ParallelFor(bytes, size_t(1) << 20, [&](size_t b, size_t e, int) {
      std::memcpy(dst.data() + b, src.data() + b, e - b);
    });
  };
  const double best = BestOfFiveSeconds(once);
  return 2.0 * double(bytes) / best / 1e9;
}

// Bytes read per second by a parallel sum over a buffer far larger than the LLC.
double ReadGbps(kernels::ThreadPool& pool) {
  const size_t n = std::max<size_t>(size_t(256) << 20, 4 * LastLevelCacheBytes()) / 4;
  std::vector<float> src(n, 1.0f);
  std::vector<double> sums(pool.num_threads());
  auto once = [&] {
    pool.ParallelFor(n, size_t(1) << 18, [&](size_t b, size_t e, int t) {
      sums[t] += kernels::SumForReadRate(src.data() + b, e - b);
    });
  };
  const double best = BestOfFiveSeconds(once);
  return 4.0 * double(n) / best / 1e9;
}

struct AttnResult {
  double us_per_step = 0;
  double bytes_per_token = 0;
  int layers = 0;
};

// One K/V configuration ready to time: a single-layer cache of n random tokens and enough
// clones of it that together they exceed twice the LLC, as a real model's layers do.
struct AttnCaches {
  std::vector<std::unique_ptr<kv::KvCache>> layers;
  double bytes_per_token = 0;
};

// Rows appended and queried by every decode step (the same for every configuration).
struct AttnData {
  std::vector<float> k, v, q, out;
};

// One decode step (append one token, attend, then rewind) on one layer; returns the seconds
// spent in Attend. The first step also compresses the filled blocks.
double Step(kv::KvCache& cache, AttnData& d, int ctx, kernels::ThreadPool& pool) {
  cache.Append(0, d.k.data(), d.v.data(), 1);
  const auto t0 = Clock::now();
  cache.Attend(0, d.q.data(), 1, d.out.data(), pool);
  const double s = std::chrono::duration<double>(Clock::now() - t0).count();
  cache.Commit(1);
  cache.Truncate(ctx);
  return s;
}

AttnCaches MakeCaches(const AttnFlags& f, int ctx, const std::string& kt, const std::string& vt,
                      AttnData& d, kernels::ThreadPool& pool) {
  kv::KvCacheConfig c;
  c.layers = {kv::LayerGeometry{f.heads, f.kv_heads, f.dim, 0}};
  c.k_types = {kv::KvType::Parse(kt)};
  c.v_types = {kv::KvType::Parse(vt)};
  c.attn_scale = 1.0f / std::sqrt(float(f.dim));
  c.max_tokens = ctx + 1;
  c.sink_tokens = 0;
  c.recent_tokens = 0;  // every full block compressed: the cache as it is at long context
  auto proto = kv::KvCache::Create(c);
  std::mt19937 rng(42);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  const size_t row = size_t(f.kv_heads) * f.dim;
  const int chunk = 1024;
  std::vector<float> k(chunk * row), v(chunk * row);
  for (auto& x : k) x = nd(rng);
  for (auto& x : v) x = nd(rng);
  for (int done = 0; done < ctx;) {
    const int n = std::min(chunk, ctx - done);
    // Vary the data cheaply between chunks.
    for (size_t i = 0; i < row; ++i) k[i] = nd(rng), v[i] = nd(rng);
    std::rotate(k.begin(), k.begin() + row * (done / chunk % 7 + 1), k.end());
    proto->Append(0, k.data(), v.data(), n);
    proto->Commit(n);
    done += n;
  }
  d.k.assign(k.begin(), k.begin() + row);
  d.v.assign(v.begin(), v.begin() + row);
  d.q.resize(size_t(f.heads) * f.dim);
  for (auto& x : d.q) x = nd(rng);
  d.out.resize(d.q.size());
  Step(*proto, d, ctx, pool);
  AttnCaches r;
  r.bytes_per_token = double(proto->MemoryStats().bytes_used) / ctx;
  const double layer_bytes = std::max(1.0, r.bytes_per_token * ctx);
  const int n_layers =
      std::max(2, int(std::ceil(2.0 * double(LastLevelCacheBytes()) / layer_bytes)));
  r.layers.push_back(std::move(proto));
  for (int l = 1; l < n_layers; ++l) r.layers.push_back(r.layers[0]->Clone());
  for (auto& l : r.layers) Step(*l, d, ctx, pool);  // warm-up: page in, grow scratch buffers
  return r;
}

// Times the configurations in alternating rounds (one round = one decode step on every layer
// of one configuration), so that a noisy machine slows all of them alike rather than whichever
// happened to run during a busy second; each gets the median over its rounds, per layer step.
std::vector<double> TimeInterleaved(std::vector<AttnCaches*> configs, AttnData& d, int ctx,
                                    double min_seconds, kernels::ThreadPool& pool) {
  std::vector<std::vector<double>> rounds(configs.size());
  std::vector<double> total(configs.size(), 0.0);
  auto enough = [&] {
    for (size_t c = 0; c < configs.size(); ++c)
      if (total[c] < min_seconds || rounds[c].size() < 5) return false;
    return true;
  };
  while (!enough()) {
    for (size_t c = 0; c < configs.size(); ++c) {
      double s = 0;
      for (auto& l : configs[c]->layers) s += Step(*l, d, ctx, pool);
      total[c] += s;
      rounds[c].push_back(s / double(configs[c]->layers.size()));
    }
  }
  std::vector<double> us(configs.size());
  for (size_t c = 0; c < configs.size(); ++c) {
    std::vector<double>& r = rounds[c];
    std::nth_element(r.begin(), r.begin() + r.size() / 2, r.end());
    us[c] = r[r.size() / 2] * 1e6;
  }
  return us;
}

nlohmann::json ResultJson(const AttnFlags& f, int ctx, const std::string& kt,
                          const std::string& vt, const AttnResult& r, const AttnResult& r16,
                          double copy_gbps, double read_gbps) {
  nlohmann::json j;
  j["ctx"] = ctx;
  j["heads"] = f.heads;
  j["kv_heads"] = f.kv_heads;
  j["dim"] = f.dim;
  j["threads"] = f.threads;
  j["ctk"] = kt;
  j["ctv"] = vt;
  j["layers_cycled"] = r.layers;
  j["us_per_step"] = r.us_per_step;
  j["us_per_step_f16"] = r16.us_per_step;
  j["speedup_vs_f16"] = r16.us_per_step / r.us_per_step;
  j["bytes_per_token"] = r.bytes_per_token;
  j["bytes_per_token_f16"] = r16.bytes_per_token;
  j["gbps"] = r.bytes_per_token * ctx / r.us_per_step / 1e3;
  j["gbps_f16"] = r16.bytes_per_token * ctx / r16.us_per_step / 1e3;
  j["copy_gbps"] = copy_gbps;
  j["read_gbps"] = read_gbps;
  j["f16_fraction_of_copy"] = double(j["gbps_f16"]) / copy_gbps;
  return j;
}

int RunAttn(const AttnFlags& f) {
  if (f.heads <= 0 || f.kv_heads <= 0 || f.heads % f.kv_heads != 0)
    throw Error("bench attn: --heads must be a positive multiple of --kv-heads");
  if (f.ctk.size() != f.ctv.size())
    throw Error("bench attn: give as many --ctk as --ctv types (they pair up)");
  for (int c : f.ctx)
    if (c < 64) throw Error("bench attn: --ctx must be at least 64");
  kernels::ThreadPool pool(f.threads);
  const double copy_gbps = CopyGbps(pool);
  const double read_gbps = ReadGbps(pool);
  nlohmann::json all = nlohmann::json::array();
  if (!f.json) {
    fmt::print("copy {:.1f} GB/s (read+write), read {:.1f} GB/s, {} threads; H={} G={} D={}; "
               "LLC {} MiB\n",
               copy_gbps, read_gbps, f.threads, f.heads, f.kv_heads, f.dim, LastLevelCacheBytes() >> 20);
    fmt::print("{:>6} {:>11} {:>10} {:>10} {:>8} {:>8} {:>8} {:>7} {:>7} {:>6}\n", "ctx",
               "ctk/ctv", "us/step", "f16 us", "speedup", "B/tok", "f16B/tok", "GB/s",
               "f16GB/s", "f16/cp");
  }
  for (int ctx : f.ctx) {
    AttnData data;
    AttnCaches c16 = MakeCaches(f, ctx, "f16", "f16", data, pool);
    for (size_t p = 0; p < f.ctk.size(); ++p) {
      const bool is_f16 = f.ctk[p] == "f16" && f.ctv[p] == "f16";
      AttnCaches cq;
      if (!is_f16) cq = MakeCaches(f, ctx, f.ctk[p], f.ctv[p], data, pool);
      // f16 is timed again beside every pair: each ratio comes from rounds interleaved in time.
      const std::vector<double> us =
          is_f16 ? TimeInterleaved({&c16}, data, ctx, f.min_seconds, pool)
                 : TimeInterleaved({&c16, &cq}, data, ctx, f.min_seconds, pool);
      AttnResult r16{us[0], c16.bytes_per_token, int(c16.layers.size())};
      AttnResult r = is_f16 ? r16 : AttnResult{us[1], cq.bytes_per_token, int(cq.layers.size())};
      const nlohmann::json j = ResultJson(f, ctx, f.ctk[p], f.ctv[p], r, r16, copy_gbps, read_gbps);
      all.push_back(j);
      if (!f.json) {
        fmt::print("{:>6} {:>11} {:>10.1f} {:>10.1f} {:>7.2f}x {:>8.1f} {:>8.1f} {:>7.1f} {:>7.1f} "
                   "{:>5.0f}%\n",
                   ctx, f.ctk[p] + "/" + f.ctv[p], r.us_per_step, r16.us_per_step,
                   double(j["speedup_vs_f16"]), r.bytes_per_token, r16.bytes_per_token,
                   double(j["gbps"]), double(j["gbps_f16"]),
                   100 * double(j["f16_fraction_of_copy"]));
        std::fflush(stdout);
      }
    }
  }
  if (f.json) std::cout << (all.size() == 1 ? all[0] : all).dump(2) << "\n";
  return 0;
}

const CommandRegistration kRegistration{
    "bench", "benchmarks (attn: decode attention over a compressed KV cache; e2e: the whole "
             "model on a device; spec: speculative decoding)",
    [](CLI::App& app) -> std::function<int()> {
      app.require_subcommand(1);
      auto f = std::make_shared<AttnFlags>();
      CLI::App* attn = app.add_subcommand(
          "attn", "time one decode step's attention over N cached tokens vs f16");
      attn->add_option("--ctx", f->ctx, "cached tokens (several allowed)")->capture_default_str();
      attn->add_option("--heads", f->heads, "query heads")->capture_default_str();
      attn->add_option("--kv-heads", f->kv_heads, "KV heads")->capture_default_str();
      attn->add_option("--dim", f->dim, "head dimension")->capture_default_str();
      attn->add_option("--ctk", f->ctk, "K cache type(s)")->capture_default_str();
      attn->add_option("--ctv", f->ctv, "V cache type(s), paired with --ctk")
          ->capture_default_str();
      attn->add_option("-t,--threads", f->threads, "threads")->capture_default_str();
      attn->add_option("--min-seconds", f->min_seconds, "timing per configuration")
          ->capture_default_str();
      attn->add_flag("--json", f->json, "print JSON (one object, or an array for several)");
      attn->add_flag("--sweep", f->sweep,
                     "contexts 1K..64K x K/V pairs tq4/tq3 tq3/tq3 tq4/tq4 tq2.5/tq2 q8_0/q8_0 "
                     "q4_0/q4_0 (unless --ctx/--ctk/--ctv are given)");
      auto e2e = std::make_shared<E2eFlags>();
      AddBenchE2e(app, *e2e);
      auto spec = std::make_shared<SpecBenchFlags>();
      spec->model.session.n_threads = 2;
      AddBenchSpec(app, *spec);
      return [f, attn, e2e, spec] {
        if (e2e->subcommand->parsed()) return RunBenchE2e(*e2e);
        if (spec->subcommand->parsed()) return RunBenchSpec(*spec);
        if (!attn->parsed()) throw Error("bench: choose a benchmark (attn, e2e, spec)");
        AttnFlags g = *f;
        if (g.sweep) {
          if (attn->count("--ctx") == 0) g.ctx = {1024, 2048, 4096, 8192, 16384, 32768, 65536};
          if (attn->count("--ctk") == 0 && attn->count("--ctv") == 0) {
            g.ctk = {"tq4", "tq3", "tq4", "tq2.5", "q8_0", "q4_0"};
            g.ctv = {"tq3", "tq3", "tq4", "tq2", "q8_0", "q4_0"};
          }
        }
        return RunAttn(g);
      };
    }};

}  // namespace
}  // namespace tqlm::cli
