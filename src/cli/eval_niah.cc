// `tqlm eval niah`: needle-in-a-haystack retrieval per KV configuration over prompt length x
// needle depth (x trials: seeds and needle phrasings), greedy answers checked by exact
// substring; one results row per cell, resumable, then the Markdown grids and their
// difference against f16.
#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <map>
#include <tuple>

#include "cli/eval_cmds.h"
#include "cli/kv_auto.h"
#include "eval/kv_configs.h"
#include "eval/niah.h"
#include "eval/niah_table.h"
#include "eval/sha256.h"
#include "runtime/generate.h"
#include "tqlm/error.h"

namespace tqlm::cli {
namespace {

std::vector<int> ParseLengths(const std::vector<std::string>& items, int model_max) {
  std::vector<int> out;
  for (const std::string& s : items) {
    int v = 0;
    if (s == "max") {
      v = model_max;
    } else {
      auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
      if (ec != std::errc() || p != s.data() + s.size() || v <= 0)
        throw Error(fmt::format("eval niah: length '{}' is not a positive number or 'max'", s));
    }
    if (v > model_max)
      throw Error(fmt::format("eval niah: length {} exceeds the model's context {} (less the "
                              "answer tokens)",
                              v, model_max));
    out.push_back(v);
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

}  // namespace

int RunNiah(const NiahFlags& f) {
  if (f.trials < 1) throw Error("eval niah: --trials must be at least 1");
  if (f.max_answer < 1) throw Error("eval niah: --max-answer must be at least 1");
  for (double d : f.depths)
    if (!(d >= 0 && d <= 1)) throw Error(fmt::format("eval niah: depth {} outside [0, 1]", d));
  const std::string corpus_path = f.file.empty() ? CacheDir() + "/corpus/emma.txt" : f.file;
  const std::string text = ReadTextFile(corpus_path);
  LoadedModel lm = LoadModel(f.model);
  const model::ModelInfo& info = lm.model->info();
  const std::vector<int> lengths = ParseLengths(f.lengths, info.n_ctx_train - f.max_answer);
  const std::vector<eval::NamedKvConfig> configs =
      eval::ParseKvConfigs(f.kv_list, f.model.session.kv, info.layers,
                            CalibratedAuto(ModelPathOf(f.model), lm.model->info()));
  const std::vector<int> corpus = lm.tokenizer->Encode(text, false, false);
  const std::string model_path = ModelPathOf(f.model);
  nlohmann::json base = BaseCellConfig("niah", model_path);
  base["corpus"] = corpus_path.substr(corpus_path.find_last_of('/') + 1);
  base["corpus_sha256"] = eval::Sha256Hex(text);
  base["max_answer_tokens"] = f.max_answer;
  base["batch"] = f.model.session.batch;

  std::vector<eval::SweepCell> cells;
  for (int len : lengths)
    for (double depth : f.depths)
      for (int t = 0; t < f.trials; ++t)
        for (const auto& c : configs) {
          nlohmann::json cfg = base;
          cfg["length"] = len;
          cfg["depth"] = depth;
          cfg["trial"] = t;
          cfg["seed"] = f.seed + uint64_t(t);
          cfg["phrasing"] = t % eval::kNeedlePhrasings;
          cfg["kv_name"] = c.name;
          cfg["kv"] = eval::KvPolicyJson(c.policy);
          cells.push_back({cfg, fmt::format("L{} d{} t{} {}", len, depth, t, c.name), double(len)});
        }
  eval::ResultsFile results = OpenResults(f.results);

  // The prompt of the last (length, depth, trial): configurations are the inner loop.
  std::tuple<int, double, int> prompt_key{-1, 0.0, -1};
  eval::Needle needle;
  eval::NiahPrompt prompt;
  runtime::GenerateParams gen;
  gen.max_tokens = f.max_answer;
  gen.sampler.temperature = 0;  // greedy
  gen.sampler.repeat_penalty = 1;
  SweepProgressBar bar(fmt::format("niah {} configs x {} lengths x {} depths x {} trials",
                                   configs.size(), lengths.size(), f.depths.size(), f.trials));
  auto run = [&](const eval::SweepCell& cell) -> nlohmann::json {
    const nlohmann::json& c = cell.config;
    const std::tuple<int, double, int> key{c["length"], c["depth"], c["trial"]};
    if (key != prompt_key) {
      needle = eval::MakeNeedle(c["seed"], c["phrasing"]);
      prompt = eval::BuildNiahPrompt(*lm.tokenizer, *lm.chat, corpus, c["length"], c["depth"],
                                     needle, c["seed"]);
      prompt_key = key;
    }
    const std::string name = c["kv_name"];
    const auto& cfg = *std::find_if(configs.begin(), configs.end(),
                                    [&](const auto& k) { return k.name == name; });
    runtime::SessionOptions opts = f.model.session;
    opts.kv = cfg.policy;
    opts.n_ctx = int(prompt.tokens.size()) + f.max_answer;
    runtime::Session session(*lm.model, opts);
    runtime::GenerateCallbacks cb;
    cb.on_prefill = [&](int done, int total) { bar.Within(cell, double(done) / total); };
    const runtime::GenerateResult r =
        runtime::Generate(session, *lm.tokenizer, prompt.tokens, gen, cb);
    const kv::KvMemoryStats mem = session.cache().MemoryStats();
    const bool correct = eval::NiahCorrect(r.text, needle);
    return {{"kv_name", name},
            {"length", c["length"]},
            {"depth", c["depth"]},
            {"prompt_tokens", r.prompt_tokens},
            {"needle_depth", prompt.depth},
            {"needle", needle.sentence},
            {"expected", needle.number},
            {"answer", r.text},
            {"correct", correct},
            {"prefill_seconds", r.prefill_seconds},
            {"decode_seconds", r.decode_seconds},
            {"bits_per_value", eval::FormatBitsPerValue(info, cfg.policy)},
            {"kv_bytes_used", mem.bytes_used},
            {"kv_bytes_f16", mem.bytes_f16}};
  };
  if (eval::PendingCells(results, cells) > 0) {  // warm-up before the first timed cell
    runtime::Session s(*lm.model, f.model.session);
    s.Feed(std::span<const int>(corpus).first(std::min<size_t>(corpus.size(), 64)));
  }
  const eval::SweepSummary summary = eval::RunSweep(results, cells, run, bar.Callback());
  const int rc = ReportSweep(summary, results);
  const std::vector<eval::NiahGrid> grids =
      eval::SummarizeNiah(CurrentRows(results), base["model_sha256"]);
  const std::string md = eval::NiahMarkdown(grids);
  std::printf("%s (%s), needle in %s filler, %d trial(s) per cell\n\n%s", info.name.c_str(),
              std::string(base["model"]).c_str(), std::string(base["corpus"]).c_str(), f.trials,
              md.c_str());
  if (!f.table_md.empty()) WriteTextFile(f.table_md, md);
  if (!f.summary.empty()) {
    std::string jsonl;
    for (const auto& g : grids) {
      nlohmann::json j = eval::NiahGridJson(g);
      j["model"] = base["model"];
      jsonl += j.dump() + "\n";
    }
    WriteTextFile(f.summary, jsonl);
  }
  return rc;
}

}  // namespace tqlm::cli
