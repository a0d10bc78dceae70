// `tqlm eval ppl`: perplexity over a text (default: the installed Austen corpus) with
// llama.cpp's window protocol. With one KV configuration (--ctk/--ctv) it prints perplexity
// and can dump per-token scores; with --kv LIST it sweeps KV configurations, scoring each
// window against the f16-KV run of the same window (mean KL divergence, top-1 agreement),
// appends one row per (configuration, window) to a resumable JSONL file and prints the Pareto
// table of bits per value vs ΔPPL vs KLD.
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <cstdio>
#include <iostream>

#include "cli/eval_cmds.h"
#include "cli/kv_auto.h"
#include "cli/progress.h"
#include "eval/kv_configs.h"
#include "eval/perplexity.h"
#include "eval/ppl_table.h"
#include "eval/sha256.h"
#include "kernels/cpu/matmul.h"
#include "tqlm/error.h"

namespace tqlm::cli {
namespace {

std::string DefaultCorpus() { return CacheDir() + "/corpus/prideprejudice.txt"; }

int SingleRun(const PplFlags& f, const std::string& path, LoadedModel& lm,
              const std::vector<int>& tokens) {
  ProgressBar bar(fmt::format("perplexity ctx {}", f.model.session.n_ctx));
  const eval::PerplexityResult r = eval::Perplexity(
      *lm.model, tokens, f.model.session.n_ctx, f.chunks, f.model.session,
      [&](int done, int total) { bar.Update(done, total); });
  bar.Finish();
  int agree_with_text = 0;
  for (const auto& s : r.scores) agree_with_text += s.argmax == s.token;
  nlohmann::json summary = {
      {"file", path},
      {"ctx", f.model.session.n_ctx},
      {"windows", r.windows},
      {"scored_tokens", r.scores.size()},
      {"perplexity", r.perplexity},
      {"mean_nll", r.mean_nll},
      {"top1_accuracy", double(agree_with_text) / double(r.scores.size())},
      {"cache_type_k", f.model.session.kv.k_type},
      {"cache_type_v", f.model.session.kv.v_type},
  };
  if (!f.dump.empty()) {
    nlohmann::json d = summary;
    std::vector<int> ids(tokens.begin(), tokens.begin() + size_t(r.windows) * f.model.session.n_ctx);
    d["tokens"] = ids;
    nlohmann::json scores = nlohmann::json::array();
    for (const auto& s : r.scores) scores.push_back({s.position, s.token, s.argmax, s.logprob});
    d["scores"] = scores;  // [position, actual token, argmax, logprob]
    WriteTextFile(f.dump, d.dump());
  }
  if (f.json) {
    std::cout << summary.dump(2) << std::endl;
  } else {
    std::printf("perplexity %.4f over %zu tokens (%d windows of %d, ctx second halves), "
                "top-1 accuracy %.2f%%\n",
                r.perplexity, r.scores.size(), r.windows, f.model.session.n_ctx,
                100.0 * agree_with_text / double(r.scores.size()));
  }
  return 0;
}

struct Sweep {
  const PplFlags& f;
  model::Model& model;
  const std::vector<int>& tokens;
  int ctx;
  eval::WindowReference ref;  // the f16 run of the current window
  // With --ref-numerics: the reference's numerics, and the candidates' (f16/f16 among them).
  bool separate_ref = false;
  kernels::MatMulNumerics ref_numerics{}, run_numerics{};

  runtime::SessionOptions Options(const runtime::KvPolicy& policy) const {
    runtime::SessionOptions o = f.model.session;
    o.n_ctx = ctx;
    o.kv = policy;
    return o;
  }

  nlohmann::json Run(const eval::SweepCell& cell, const std::vector<eval::NamedKvConfig>& configs) {
    const int w = cell.config["window"];
    const std::string name = cell.config["kv_name"];
    const auto& cfg = *std::find_if(configs.begin(), configs.end(),
                                    [&](const auto& c) { return c.name == name; });
    nlohmann::json extra = nlohmann::json::object();
    const bool is_ref = name == "f16/f16" && !separate_ref;
    if (ref.window != w && !is_ref) {  // the f16 row exists already: recompute its logits only
      const auto t0 = std::chrono::steady_clock::now();
      if (separate_ref) kernels::SetMatMulNumerics(ref_numerics);
      runtime::Session s(model, Options(configs.front().policy));
      eval::ScoreWindow(s, tokens, ctx, w, nullptr, &ref);
      if (separate_ref) kernels::SetMatMulNumerics(run_numerics);
      extra["reference_seconds"] =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    }
    runtime::Session session(model, Options(cfg.policy));
    eval::WindowScore s = is_ref ? eval::ScoreWindow(session, tokens, ctx, w, nullptr, &ref)
                                 : eval::ScoreWindow(session, tokens, ctx, w, &ref, nullptr);
    if (is_ref) s.top1_ref = s.scored;  // KL of the reference against itself is 0
    extra.update({{"kv_name", name},
                  {"window", w},
                  {"threads", session.pool().num_threads()},
                  {"scored", s.scored},
                  {"nll_sum", s.nll_sum},
                  {"top1_text", s.top1_text},
                  {"kl_sum", s.kl_sum},
                  {"kl_max", s.kl_max},
                  {"dnll_sq_sum", s.dnll_sq_sum},
                  {"top1_ref", s.top1_ref},
                  {"bits_per_value", eval::FormatBitsPerValue(model.info(), cfg.policy)},
                  {"effective_bits", 16.0 * double(s.kv.bytes_used) / double(s.kv.bytes_f16)},
                  {"kv_bytes_used", s.kv.bytes_used},
                  {"kv_bytes_f16", s.kv.bytes_f16}});
    return extra;
  }
};

int SweepRun(const PplFlags& f, const std::string& path, const std::string& text,
             LoadedModel& lm, const std::vector<int>& tokens) {
  const int ctx = f.model.session.n_ctx;
  if (ctx < 4) throw Error("eval ppl: -c must be at least 4");
  int windows = int(tokens.size() / size_t(ctx));
  if (f.chunks > 0) windows = std::min(windows, f.chunks);
  if (windows == 0)
    throw Error(fmt::format("eval ppl: the text has {} tokens, fewer than one window of {}",
                            tokens.size(), ctx));
  std::vector<eval::NamedKvConfig> configs =
      eval::ParseKvConfigs(f.kv_list, f.model.session.kv, lm.model->info().layers,
                            CalibratedAuto(ModelPathOf(f.model), lm.model->info()));
  // The f16 run is every other configuration's reference: it goes first in each window.
  auto f16 = std::find_if(configs.begin(), configs.end(), [](auto& c) { return c.name == "f16/f16"; });
  if (f16 == configs.end()) {
    configs.insert(configs.begin(), eval::ParseKvConfigs("f16/f16", {}, lm.model->info().layers)[0]);
  } else {
    std::rotate(configs.begin(), f16, f16 + 1);
  }
  const std::string model_path = ModelPathOf(f.model);
  nlohmann::json base = BaseCellConfig("ppl", model_path);
  const kernels::MatMulNumerics run_numerics = kernels::GetMatMulNumerics();
  const kernels::MatMulNumerics ref_numerics =
      f.ref_numerics.empty() ? run_numerics : kernels::ParseMatMulNumerics(f.ref_numerics);
  const bool separate_ref = ref_numerics != run_numerics;
  if (separate_ref) {  // rows of this kind are kept apart from rows scored against a same-numerics f16
    kernels::SetMatMulNumerics(ref_numerics);
    const std::string ref_signature = kernels::NumericsSignature();
    kernels::SetMatMulNumerics(run_numerics);
    base["numerics"] = std::string(base["numerics"]) + "; f16 reference: " + ref_signature;
  }
  base["text"] = path.substr(path.find_last_of('/') + 1);
  base["text_sha256"] = eval::Sha256Hex(text);
  base["ctx"] = ctx;
  base["batch"] = f.model.session.batch;
  std::vector<eval::SweepCell> cells;
  for (int w = 0; w < windows; ++w)
    for (const auto& c : configs) {
      nlohmann::json cfg = base;
      cfg["window"] = w;
      cfg["kv_name"] = c.name;
      cfg["kv"] = eval::KvPolicyJson(c.policy);
      cells.push_back({cfg, fmt::format("w{} {}", w, c.name), 1.0});
    }
  eval::ResultsFile results = OpenResults(f.results);
  if (!f.dump_tokens.empty()) {
    std::vector<int> ids(tokens.begin(), tokens.begin() + size_t(windows) * ctx);
    WriteTextFile(f.dump_tokens, nlohmann::json{{"tokens", ids},
                                                {"model_sha256", base["model_sha256"]},
                                                {"model", base["model"]},
                                                {"text", base["text"]},
                                                {"text_sha256", base["text_sha256"]},
                                                {"ctx", ctx},
                                                {"windows", windows}}
                                     .dump());
    std::fprintf(stderr, "[eval] wrote %d windows of %d token ids to %s\n", windows, ctx,
                 f.dump_tokens.c_str());
    return 0;
  }
  Sweep sweep{f, *lm.model, tokens, ctx, {}, separate_ref, ref_numerics, run_numerics};
  if (eval::PendingCells(results, cells) > 0) {
    // warm-up: fault in the weights and spin up the threads before the first timed cell
    runtime::Session s(*lm.model, sweep.Options(configs.front().policy));
    s.Feed(std::span<const int>(tokens).first(std::min<size_t>(tokens.size(), 64)));
  }
  const eval::SweepSummary summary = eval::RunSweep(
      results, cells, [&](const eval::SweepCell& c) { return sweep.Run(c, configs); },
      SweepProgressBar(fmt::format("ppl {} configs x {} windows", configs.size(), windows)).Callback());
  const int rc = ReportSweep(summary, results);
  const std::vector<eval::PplSummary> table =
      eval::SummarizePpl(CurrentRows(results, base["numerics"]), base["model_sha256"],
                         base["text_sha256"], ctx);
  const std::string md = eval::PplMarkdownTable(table);
  std::printf("%s (%s), %s, windows of %d tokens (second halves scored), batch %d, numerics "
              "%s\n\n%s",
              lm.model->info().name.c_str(), std::string(base["model"]).c_str(),
              std::string(base["text"]).c_str(), ctx, f.model.session.batch,
              std::string(base["numerics"]).c_str(), md.c_str());
  if (!f.table_md.empty()) WriteTextFile(f.table_md, md);
  if (!f.summary.empty()) {
    std::string jsonl;
    for (const auto& s : table) {
      nlohmann::json j = eval::PplSummaryJson(s);
      j["model"] = base["model"];
      j["ctx"] = ctx;
      jsonl += j.dump() + "\n";
    }
    WriteTextFile(f.summary, jsonl);
  }
  return rc;
}

// Weights against weights: the reference model's f16-KV log-probabilities of every window are
// computed once and kept, then each candidate is scored against them (KL divergence, top-1
// agreement, perplexity of both). One JSON line per candidate (what docs/RESULTS.md tabulates).
int CompareRun(const PplFlags& f, const std::string& path, LoadedModel& lm,
               const std::vector<int>& tokens) {
  const bool by_ref = !f.ref_model.empty();  // -m is the candidate; else -m is the reference
  const std::string ref_path = by_ref ? f.ref_model : ModelPathOf(f.model);
  const std::vector<std::string> candidates =
      by_ref ? std::vector<std::string>{ModelPathOf(f.model)} : f.compare;
  const int ctx = f.model.session.n_ctx;
  int windows = int(tokens.size() / size_t(std::max(ctx, 1)));
  if (f.chunks > 0) windows = std::min(windows, f.chunks);
  if (ctx < 4 || windows == 0) throw Error("eval ppl: the text holds no window to compare on");
  runtime::SessionOptions o = f.model.session;
  o.kv = eval::ParseKvConfigs("f16/f16", {}, lm.model->info().layers)[0].policy;
  std::vector<eval::WindowReference> refs(static_cast<size_t>(windows));
  double ref_nll = 0, ref_seconds = 0;
  {
    ModelFlags rf = f.model;
    rf.model = ref_path;
    LoadedModel loaded = by_ref ? LoadModel(rf) : LoadedModel{};
    model::Model& ref_model = by_ref ? *loaded.model : *lm.model;
    ProgressBar bar(fmt::format("reference, {} windows", windows));
    const auto t0 = std::chrono::steady_clock::now();
    for (int w = 0; w < windows; ++w) {
      runtime::Session rs(ref_model, o);
      ref_nll += eval::ScoreWindow(rs, tokens, ctx, w, nullptr, &refs[size_t(w)]).nll_sum;
      bar.Update(w + 1, windows);
    }
    bar.Finish();
    ref_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  for (const std::string& cand : candidates) {
    ModelFlags cf = f.model;
    cf.model = cand;
    LoadedModel loaded = by_ref ? LoadedModel{} : LoadModel(cf);
    model::Model& m = by_ref ? *lm.model : *loaded.model;
    ProgressBar bar(fmt::format("{}, {} windows", cand.substr(cand.find_last_of('/') + 1), windows));
    double nll = 0, kl = 0, kl_max = 0;
    long scored = 0, top1 = 0;
    const auto t0 = std::chrono::steady_clock::now();
    for (int w = 0; w < windows; ++w) {
      runtime::Session s(m, o);
      const eval::WindowScore c = eval::ScoreWindow(s, tokens, ctx, w, &refs[size_t(w)], nullptr);
      nll += c.nll_sum;
      kl += c.kl_sum;
      kl_max = std::max(kl_max, c.kl_max);
      scored += c.scored;
      top1 += c.top1_ref;
      bar.Update(w + 1, windows);
    }
    bar.Finish();
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double ppl = std::exp(nll / double(scored)), rppl = std::exp(ref_nll / double(scored));
    const nlohmann::json j = {
        {"model", cand}, {"ref_model", ref_path},
        {"text", path.substr(path.find_last_of('/') + 1)}, {"ctx", ctx}, {"windows", windows},
        {"scored", scored}, {"ppl", ppl}, {"ref_ppl", rppl}, {"delta_ppl", ppl - rppl},
        {"mean_kld", kl / double(scored)}, {"max_kld", kl_max},
        {"top1_agreement", double(top1) / double(scored)},
        {"file_bytes", std::filesystem::file_size(cand)},
        {"ref_file_bytes", std::filesystem::file_size(ref_path)},
        {"seconds", seconds}, {"ref_seconds", ref_seconds}};
    std::cout << j.dump() << std::endl;
  }
  return 0;
}

}  // namespace

int RunPerplexity(const PplFlags& f) {
  const std::string path = f.file.empty() ? DefaultCorpus() : f.file;
  const std::string text = ReadTextFile(path);
  LoadedModel lm = LoadModel(f.model);
  const std::vector<int> tokens = lm.tokenizer->Encode(text, false, false);
  if (!f.ref_model.empty() || !f.compare.empty()) return CompareRun(f, path, lm, tokens);
  if (f.kv_list.empty() && f.dump_tokens.empty()) return SingleRun(f, path, lm, tokens);
  if (!f.dump.empty()) throw Error("eval ppl: --dump needs a single configuration (no --kv)");
  PplFlags g = f;
  if (g.kv_list.empty()) g.kv_list = "f16/f16";
  return SweepRun(g, path, text, lm, tokens);
}

}  // namespace tqlm::cli
