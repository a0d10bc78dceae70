// `tqlm bench e2e`: the whole model on one device, end to end, printed side by side:
//   * --check FILE: the device against the CPU engine on the same GGUF and token ids (the first
//     --check-tokens tokens of FILE, teacher-forced in chunks of -b): perplexity of each, their
//     relative difference, mean KL divergence CPU -> device, top-1 agreement; and whether the
//     device's logits are bit-identical when the same tokens are fed one at a time (the
//     determinism rule: chunking must not change results);
//   * decode speed at each --ctx (a cache filled with that many random tokens first, whose
//     time gives the prefill speed at that length) for each --kv configuration: tokens/s, and
//     the memory roofline fraction (weight bytes + KV bytes read per token) / time per token /
//     the copy rate of the same device measured in the same run;
//   * --prefill lengths: prompt tokens/s.
// Speed does not depend on weight or token values: random-weight GGUFs of a model's geometry
// (scripts/gpu_gguf_random.py) and random token ids give the real model's figures.
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>
#include <thread>

#include "cli/bench_e2e.h"
#include "cli/common_flags.h"
#include "tqlm/error.h"

namespace tqlm::cli {
namespace {

using Clock = std::chrono::steady_clock;
double Since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// The weight bytes one decode token reads: every tensor but the embedding table, of which one
// row is read (the whole table when the output projection is tied to it).
double WeightBytesPerToken(const model::Model& m) {
  const model::GgufFile& f = m.file();
  double bytes = 0;
  for (const auto& t : f.tensors()) bytes += double(t.nbytes);
  const model::GgufTensor* embd = f.FindTensor("token_embd.weight");
  if (embd && f.FindTensor("output.weight"))
    bytes -= double(embd->nbytes) - double(embd->row_bytes());
  return bytes;
}

// KV bytes one decode token reads at context ctx: every visible cached token of every layer
// (a sliding-window layer sees only its window), at the cache's bytes per token.
double KvBytesPerToken(const model::ModelInfo& info, const kv::KvMemoryStats& s, int ctx) {
  if (ctx <= 0 || s.bytes_used == 0) return 0;
  double visible = 0, all = 0;
  for (const auto& g : info.layers) {
    const double per = double(g.n_kv_heads) * g.head_dim;
    all += per * ctx;
    visible += per * (g.sliding_window > 0 ? std::min(ctx, g.sliding_window) : ctx);
  }
  return double(s.bytes_used) * visible / all;
}

std::vector<int> RandomTokens(int n, int n_vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> u(0, n_vocab - 1);
  std::vector<int> t(n);
  for (auto& x : t) x = u(rng);
  return t;
}

runtime::SessionOptions Options(const E2eFlags& f, const std::string& kv, int n_ctx) {
  runtime::SessionOptions o = f.model.session;
  o.n_ctx = n_ctx;
  const size_t slash = kv.find('/');
  if (kv == "auto") {
    o.kv = runtime::DefaultKvPolicy();
  } else {
    o.kv.k_type = kv.substr(0, slash);
    o.kv.v_type = slash == std::string::npos ? kv : kv.substr(slash + 1);
  }
  return o;
}

// Teacher-forced log-softmax quantities of one run over `tokens`.
struct ForcedRun {
  std::vector<float> logits;  // [n][n_vocab]
};

ForcedRun RunForced(model::Model& m, const E2eFlags& f, const std::vector<int>& tokens,
                    int chunk, const std::string& kv) {
  runtime::SessionOptions o = Options(f, kv, int(tokens.size()) + 1);
  o.batch = chunk;
  runtime::Session s(m, o);
  ForcedRun r;
  const auto logits = s.Feed(tokens, /*all_logits=*/true);
  r.logits.assign(logits.begin(), logits.end());
  return r;
}

// Mean over n positions of KL(softmax(p) || softmax(q)), rows of nv logits.
double MeanKld(const std::vector<float>& p, const std::vector<float>& q, size_t nv, int n) {
  double sum = 0;
  for (int i = 0; i < n; ++i) {
    const float* lp = &p[size_t(i) * nv];
    const float* lq = &q[size_t(i) * nv];
    double mp = -1e300, mq = -1e300;
    for (size_t v = 0; v < nv; ++v) mp = std::max(mp, double(lp[v])), mq = std::max(mq, double(lq[v]));
    double zp = 0, zq = 0;
    for (size_t v = 0; v < nv; ++v) zp += std::exp(lp[v] - mp), zq += std::exp(lq[v] - mq);
    const double lzp = std::log(zp) + mp, lzq = std::log(zq) + mq;
    for (size_t v = 0; v < nv; ++v)
      sum += std::exp(lp[v] - lzp) * ((lp[v] - lzp) - (lq[v] - lzq));
  }
  return sum / n;
}

nlohmann::json Check(const E2eFlags& f, model::Model& dev, model::Model& cpu,
                     const tokenizer::Tokenizer& tok) {
  std::ifstream in(f.check_file);
  if (!in) throw Error("bench e2e: cannot read --check file " + f.check_file);
  std::stringstream ss;
  ss << in.rdbuf();
  std::vector<int> tokens = tok.Encode(ss.str());
  if (int(tokens.size()) < f.check_tokens + 1)
    throw Error(fmt::format("bench e2e: {} has only {} tokens", f.check_file, tokens.size()));
  tokens.resize(f.check_tokens + 1);
  const size_t nv = size_t(dev.info().n_vocab);
  const int chunk = f.model.session.batch;
  const ForcedRun a = RunForced(cpu, f, tokens, chunk, f.check_kv);
  const ForcedRun b = RunForced(dev, f, tokens, chunk, f.check_kv);
  double nll_a = 0, nll_b = 0, kld = 0, max_abs = 0;
  int agree = 0;
  const int n = f.check_tokens;
  for (int i = 0; i < n; ++i) {
    const float* la = &a.logits[size_t(i) * nv];
    const float* lb = &b.logits[size_t(i) * nv];
    double ma = -1e300, mb = -1e300;
    size_t arg_a = 0, arg_b = 0;
    for (size_t v = 0; v < nv; ++v) {
      if (la[v] > ma) ma = la[v], arg_a = v;
      if (lb[v] > mb) mb = lb[v], arg_b = v;
      max_abs = std::max(max_abs, double(std::abs(la[v] - lb[v])));
    }
    double za = 0, zb = 0;
    for (size_t v = 0; v < nv; ++v) {
      za += std::exp(la[v] - ma);
      zb += std::exp(lb[v] - mb);
    }
    const double lza = std::log(za) + ma, lzb = std::log(zb) + mb;
    const int next = tokens[i + 1];
    nll_a += lza - la[next];
    nll_b += lzb - lb[next];
    double k = 0;
    for (size_t v = 0; v < nv; ++v) {
      const double pa = std::exp(la[v] - lza);
      k += pa * ((la[v] - lza) - (lb[v] - lzb));
    }
    kld += k;
    agree += arg_a == arg_b;
  }
  nlohmann::json j;
  j["tokens"] = n;
  j["chunk"] = chunk;
  j["kv"] = f.check_kv;
  j["ppl_cpu"] = std::exp(nll_a / n);
  j["ppl_device"] = std::exp(nll_b / n);
  j["ppl_rel_diff"] = std::exp(nll_b / n) / std::exp(nll_a / n) - 1;
  j["mean_kld_cpu_to_device"] = kld / n;
  j["top1_agreement"] = double(agree) / n;
  j["max_abs_logit_diff"] = max_abs;
  // A compressed cache: each engine's KL divergence from its own f16 run (the bar: the
  // device's within 1.2x of the CPU's).
  if (f.check_kv != "f16/f16") {
    const ForcedRun a16 = RunForced(cpu, f, tokens, chunk, "f16/f16");
    const ForcedRun b16 = RunForced(dev, f, tokens, chunk, "f16/f16");
    j["kld_cpu_f16_to_cpu_kv"] = MeanKld(a16.logits, a.logits, nv, n);
    j["kld_device_f16_to_device_kv"] = MeanKld(b16.logits, b.logits, nv, n);
  }
  // Determinism: the first --check-invariance tokens fed one at a time must give the same bits
  // as the chunked run.
  const int m = std::min(f.check_invariance, n);
  if (m > 0) {
    std::vector<int> head(tokens.begin(), tokens.begin() + m);
    const ForcedRun one = RunForced(dev, f, head, 1, f.check_kv);
    const bool same = std::equal(one.logits.begin(), one.logits.end(), b.logits.begin());
    j["invariance_tokens"] = m;
    j["chunked_equals_one_at_a_time"] = same;
  }
  return j;
}

// Decode and prefill at one context length and KV configuration.
nlohmann::json Speed(const E2eFlags& f, model::Model& m, int ctx, const std::string& kv,
                     double copy_rate) {
  const int decode = f.decode_tokens;
  runtime::Session s(m, Options(f, kv, ctx + decode + 8));
  const int nv = m.info().n_vocab;
  const std::vector<int> prompt = RandomTokens(ctx, nv, 1);
  const auto t0 = Clock::now();
  s.Feed(prompt);
  m.backend().Synchronize();
  const double prefill_s = Since(t0);
  const std::vector<int> next = RandomTokens(decode + 4, nv, 2);
  std::vector<double> steps;
  for (int i = 0; i < decode + 4; ++i) {
    const auto t1 = Clock::now();
    s.Feed(std::span<const int>(&next[i], 1));  // logits come back to the host: a real step
    if (i >= 4) steps.push_back(Since(t1));
  }
  std::sort(steps.begin(), steps.end());
  const double step = steps[steps.size() / 2];
  const kv::KvMemoryStats ms = s.cache().MemoryStats();
  const double wbytes = WeightBytesPerToken(m);
  const double kvbytes = KvBytesPerToken(m.info(), ms, ctx + decode / 2);
  nlohmann::json j;
  j["ctx"] = ctx;
  j["kv"] = kv;
  j["prefill_tokens"] = ctx;
  j["prefill_seconds"] = prefill_s;
  j["prefill_tokens_per_s"] = ctx / prefill_s;
  j["decode_ms_per_token_median"] = step * 1e3;
  j["decode_tokens_per_s"] = 1.0 / step;
  j["weight_bytes_per_token"] = wbytes;
  j["kv_bytes_per_token"] = kvbytes;
  j["roofline_fraction"] = (wbytes + kvbytes) / step / copy_rate;
  j["kv_cache_bytes"] = ms.bytes_used;
  return j;
}

}  // namespace

int RunBenchE2e(const E2eFlags& f) {
  LoadedModel lm = LoadModel(f.model);
  model::Model& m = *lm.model;
  const int threads = f.model.session.n_threads;
  kernels::ThreadPool pool(threads > 0 ? threads : int(std::thread::hardware_concurrency()));
  double copy_rate = 0;
  {
    backend::StepScope scope(m.backend(), pool);
    copy_rate = m.backend().MeasureCopyRate();
  }
  nlohmann::json out;
  out["device"] = m.backend().Describe();
  out["model"] = m.info().name;
  out["arch"] = m.info().arch;
  out["weight_bytes_per_token"] = WeightBytesPerToken(m);
  out["copy_bytes_per_s"] = copy_rate;
  if (!f.json)
    fmt::print("{} | {} ({}) | weights read per token {:.1f} MiB | copy {:.0f} GB/s (read+write)\n",
               out["device"].get<std::string>(), m.info().name, m.info().arch,
               WeightBytesPerToken(m) / (1 << 20), copy_rate / 1e9);
  if (!f.check_file.empty()) {
    if (m.backend().device() == backend::Device::kCpu)
      throw Error("bench e2e --check compares a device with the CPU: give --device cuda");
    const std::string path = f.model.model.empty() ? DefaultModelPath() : f.model.model;
    auto cpu = model::Model::Load(path, {}, backend::Device::kCpu);
    const nlohmann::json c = Check(f, m, *cpu, *lm.tokenizer);
    out["check"] = c;
    if (!f.json)
      fmt::print("check ({} tokens, chunks of {}, KV {}): ppl cpu {:.4f} device {:.4f} "
                 "({:+.3f}%) | mean KLD cpu->device {:.2e} | top-1 agreement {:.2f}% | max "
                 "|dlogit| {:.3f} | chunked == one at a time ({} tokens): {}\n",
                 int(c["tokens"]), int(c["chunk"]), f.check_kv, double(c["ppl_cpu"]),
                 double(c["ppl_device"]), 100 * double(c["ppl_rel_diff"]),
                 double(c["mean_kld_cpu_to_device"]), 100 * double(c["top1_agreement"]),
                 double(c["max_abs_logit_diff"]), int(c.value("invariance_tokens", 0)),
                 c.value("chunked_equals_one_at_a_time", false) ? "yes" : "NO");
    if (!f.json && c.contains("kld_cpu_f16_to_cpu_kv"))
      fmt::print("KL divergence from the same engine's f16 run: cpu {:.4e} | device {:.4e} "
                 "(device / cpu {:.3f})\n", double(c["kld_cpu_f16_to_cpu_kv"]),
                 double(c["kld_device_f16_to_device_kv"]),
                 double(c["kld_device_f16_to_device_kv"]) / double(c["kld_cpu_f16_to_cpu_kv"]));
  }
  nlohmann::json runs = nlohmann::json::array();
  if (!f.json && std::any_of(f.ctx.begin(), f.ctx.end(), [](int c) { return c > 0; }))
    fmt::print("{:>7} {:>10} {:>12} {:>12} {:>10} {:>12} {:>9}\n", "ctx", "kv", "prefill t/s",
               "decode t/s", "ms/token", "MiB/token", "roofline");
  for (int ctx : f.ctx) {
    if (ctx <= 0) continue;  // --ctx 0: no decode runs
    for (const std::string& kv : f.kv) {
      nlohmann::json j;
      try {
        j = Speed(f, m, ctx, kv, copy_rate);
      } catch (const Error& e) {
        j = {{"ctx", ctx}, {"kv", kv}, {"error", e.what()}};
        if (!f.json) fmt::print("{:>7} {:>10} error: {}\n", ctx, kv, e.what());
        runs.push_back(j);
        continue;
      }
      runs.push_back(j);
      if (!f.json)
        fmt::print("{:>7} {:>10} {:>12.0f} {:>12.1f} {:>10.3f} {:>12.1f} {:>8.1f}%\n", ctx, kv,
                   double(j["prefill_tokens_per_s"]), double(j["decode_tokens_per_s"]),
                   double(j["decode_ms_per_token_median"]),
                   (double(j["weight_bytes_per_token"]) + double(j["kv_bytes_per_token"])) /
                       (1 << 20),
                   100 * double(j["roofline_fraction"]));
      std::fflush(stdout);
    }
  }
  out["decode"] = runs;
  nlohmann::json prefill = nlohmann::json::array();
  for (int len : f.prefill) {
    runtime::Session s(m, Options(f, f.kv.empty() ? "f16/f16" : f.kv[0], len + 8));
    const std::vector<int> prompt = RandomTokens(len, m.info().n_vocab, 3);
    s.Feed(std::span<const int>(prompt.data(), std::min(len, 16)));  // warm-up
    s.Rewind(0);
    const auto t0 = Clock::now();
    s.Feed(prompt);
    m.backend().Synchronize();
    const double sec = Since(t0);
    prefill.push_back({{"tokens", len}, {"seconds", sec}, {"tokens_per_s", len / sec},
                       {"chunk", f.model.session.batch}});
    if (!f.json)
      fmt::print("prefill {} tokens (chunks of {}): {:.3f} s, {:.0f} tokens/s\n", len,
                 f.model.session.batch, sec, len / sec);
  }
  out["prefill"] = prefill;
  if (f.json) std::cout << out.dump(2) << "\n";
  return 0;
}

void AddBenchE2e(CLI::App& bench, E2eFlags& f) {
  CLI::App* e2e = bench.add_subcommand(
      "e2e", "the whole model on one device: decode/prefill speed and roofline fraction, and "
             "--check against the CPU engine");
  AddModelFlags(*e2e, f.model);
  e2e->add_option("--ctx", f.ctx, "contexts to decode at (cache filled with random tokens)")
      ->capture_default_str();
  e2e->add_option("--kv", f.kv, "KV configurations K/V (or auto)")->capture_default_str();
  e2e->add_option("--decode", f.decode_tokens, "timed decode steps per configuration")
      ->capture_default_str();
  e2e->add_option("--prefill", f.prefill, "prompt lengths to time prefill on")
      ->capture_default_str();
  e2e->add_option("--check", f.check_file, "text file: compare the device with the CPU engine");
  e2e->add_option("--check-kv", f.check_kv, "KV configuration K/V (or auto) of both --check runs")
      ->capture_default_str();
  e2e->add_option("--check-tokens", f.check_tokens, "tokens of the text to score")
      ->capture_default_str();
  e2e->add_option("--check-invariance", f.check_invariance,
                  "tokens also fed one at a time on the device (bit-identity check)")
      ->capture_default_str();
  e2e->add_flag("--json", f.json, "print JSON");
  f.subcommand = e2e;
}

}  // namespace tqlm::cli
