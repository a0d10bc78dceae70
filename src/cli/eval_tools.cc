// `tqlm eval tools`: the tool-calling buffer-cliff sweep. Per prompt length, filler seed, KV
// configuration and recent-buffer ratio (buffer = ratio x prompt tokens, at least
// --kv-buffer-floor), one greedy answer to a request that needs one tool call, after F tokens
// of unrelated filler; graded by eval/tools_grade.h. One results row per cell (resumable),
// then the verdict grids, the cliff per configuration and length, and the leaderboard of
// configurations by KV memory.
#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <tuple>

#include "cli/eval_cmds.h"
#include "cli/kv_auto.h"
#include "eval/kv_configs.h"
#include "eval/sha256.h"
#include "eval/tools_grade.h"
#include "eval/tools_prompt.h"
#include "eval/tools_table.h"
#include "runtime/generate.h"
#include "chat/tool_calls.h"
#include "tqlm/error.h"

namespace tqlm::cli {
namespace {

bool IsReference(const runtime::KvPolicy& p) {
  return p.k_type == "f16" && p.v_type == "f16" && p.profile.empty();
}

std::string CsvField(std::string s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string q = "\"";
  for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}

std::string CellsCsv(const std::vector<nlohmann::json>& rows, const std::string& model_sha256) {
  std::string out =
      "model,kv,length,seed,ratio,prompt_tokens,head_tokens,sink_tokens,buffer_tokens,verdict,"
      "detail,kv_fraction_of_f16\n";
  for (const nlohmann::json& r : rows) {
    const nlohmann::json& c = r["config"];
    if (c.value("task", "") != "tools" || c.value("model_sha256", "") != model_sha256) continue;
    const double f16 = r.value("kv_bytes_f16", 0.0);
    out += fmt::format(
        "{},{},{},{},{:g},{},{},{},{},{},{},{:.4f}\n", CsvField(c.value("model", "")),
        CsvField(c.value("kv_name", "")), c.value("length", 0), c.value("seed", uint64_t(0)),
        c.value("ratio", 0.0), r.value("prompt_tokens", 0), r.value("head_tokens", 0),
        r.value("sink_tokens", 0),
        r.value("buffer_tokens", 0), r.value("verdict", ""), CsvField(r.value("detail", "")),
        f16 > 0 ? r.value("kv_bytes_used", 0.0) / f16 : 1.0);
  }
  return out;
}

}  // namespace

CLI::App* AddToolsCommand(CLI::App& eval, ToolsFlags& f) {
  // The experiment's defaults: 4 attention sinks, and a buffer that is exactly the ratio of the
  // prompt (no floor), so that ratio 0 means no full-precision buffer at all.
  f.model.session.kv.sink_tokens = 4;
  f.model.session.kv.recent_floor = 0;
  CLI::App* t = eval.add_subcommand(
      "tools", "tool-calling buffer cliff: verdicts over buffer ratio x KV configuration");
  AddModelFlags(*t, f.model);
  t->add_option("-f,--file", f.file, "filler text (default: the installed Emma)");
  t->add_option("--kv", f.kv_list,
                "KV configurations (as for eval ppl --kv; f16/f16 is the reference)")
      ->capture_default_str();
  t->add_option("--ratios", f.ratios, "recent-buffer ratios of the prompt")
      ->delimiter(',')
      ->capture_default_str();
  t->add_option("--lengths", f.lengths, "prompt lengths in tokens")
      ->delimiter(',')
      ->capture_default_str();
  t->add_option("--seed", f.seed, "filler offset seed (the first one with --seeds)")
      ->capture_default_str();
  t->add_option("--seeds", f.seeds,
                "filler texts per cell, seeds --seed, --seed+1, ...; a cell passes only if "
                "every one does")
      ->capture_default_str();
  t->add_option("--max-new", f.max_new, "answer tokens at most (greedy, stops at end of turn)")
      ->capture_default_str();
  t->add_option("-o,--results", f.results, "results JSONL (resumed)")->capture_default_str();
  t->add_option("--table-md", f.table_md,
                "also write the grids, cliffs and leaderboard (Markdown) here");
  t->add_option("--summary", f.summary,
                "also write verdicts and cliff per configuration and length (JSONL)");
  t->add_option("--csv", f.csv, "also write the leaderboard (CSV) here");
  t->add_option("--cells-csv", f.cells_csv, "also write one CSV line per cell here");
  return t;
}

int RunEvalTools(const ToolsFlags& f) {
  if (f.max_new < 1) throw Error("eval tools: --max-new must be at least 1");
  if (f.seeds < 1 || f.seeds > 1000) throw Error("eval tools: --seeds must be in 1..1000");
  if (f.ratios.empty() || f.lengths.empty())
    throw Error("eval tools: --ratios and --lengths must not be empty");
  for (double r : f.ratios)
    if (!(r >= 0 && r <= 4)) throw Error(fmt::format("eval tools: ratio {} outside [0, 4]", r));
  const std::string corpus_path = f.file.empty() ? CacheDir() + "/corpus/emma.txt" : f.file;
  const std::string text = ReadTextFile(corpus_path);
  LoadedModel lm = LoadModel(f.model);
  const model::ModelInfo& info = lm.model->info();
  std::vector<int> lengths = f.lengths;
  std::sort(lengths.begin(), lengths.end());
  lengths.erase(std::unique(lengths.begin(), lengths.end()), lengths.end());
  for (int len : lengths)
    if (len <= 0 || len + f.max_new > info.n_ctx_train)
      throw Error(
          fmt::format("eval tools: length {} is not in 1..{} (the model's context less "
                      "--max-new)",
                      len, info.n_ctx_train - f.max_new));
  std::vector<double> ratios = f.ratios;
  std::sort(ratios.begin(), ratios.end());
  ratios.erase(std::unique(ratios.begin(), ratios.end()), ratios.end());
  const std::vector<eval::NamedKvConfig> configs =
      eval::ParseKvConfigs(f.kv_list, f.model.session.kv, info.layers,
                            CalibratedAuto(ModelPathOf(f.model), lm.model->info()));
  const chat::ToolCallFormat format =
      chat::DetectToolCallFormat(lm.tokenizer->vocab().chat_template, info.arch);
  const std::vector<int> corpus = lm.tokenizer->Encode(text, false, false);
  const std::string model_path = ModelPathOf(f.model);
  nlohmann::json base = BaseCellConfig("tools", model_path);
  base["corpus"] = corpus_path.substr(corpus_path.find_last_of('/') + 1);
  base["corpus_sha256"] = eval::Sha256Hex(text);
  base["max_new_tokens"] = f.max_new;
  base["batch"] = f.model.session.batch;
  base["tools"] = eval::ExperimentTools();
  base["request"] = eval::ExperimentRequest();
  base["tool_call_format"] = chat::ToolCallFormatName(format);

  // Cells: length and seed outermost (one prompt each), f16 once per prompt (it has no buffer).
  std::vector<eval::SweepCell> cells;
  for (int len : lengths)
    for (uint64_t seed = f.seed; seed < f.seed + uint64_t(f.seeds); ++seed)
      for (const auto& c : configs) {
        const bool ref = IsReference(c.policy);
        for (double r : ref ? std::vector<double>{0.0} : ratios) {
          runtime::KvPolicy p = c.policy;
          p.recent_ratio = r;
          nlohmann::json cfg = base;
          cfg["seed"] = seed;
          cfg["length"] = len;
          cfg["kv_name"] = c.name;
          cfg["reference"] = ref;
          cfg["ratio"] = r;
          cfg["kv"] = eval::KvPolicyJson(p);
          cells.push_back({cfg,
                           f.seeds > 1 ? fmt::format("L{} seed {} {} r={:g}", len, seed, c.name, r)
                                       : fmt::format("L{} {} r={:g}", len, c.name, r),
                           double(len + f.max_new / 4)});
        }
      }
  eval::ResultsFile results = OpenResults(f.results);

  int prompt_length = -1;
  uint64_t prompt_seed = 0;
  eval::ToolsPrompt prompt;
  runtime::GenerateParams gen;
  gen.max_tokens = f.max_new;
  gen.sampler.temperature = 0;  // greedy
  gen.sampler.repeat_penalty = 1;
  gen.stop = {lm.chat->EndOfTurn()};
  // Cells whose caches are identical (same types and sinks, and buffers that resolve to the
  // same size or both hold every token) give the same answer: run once, reuse the result.
  std::map<std::tuple<int, uint64_t, std::string, int, int>, nlohmann::json> done;
  auto run = [&](const eval::SweepCell& cell) -> nlohmann::json {
    const nlohmann::json& c = cell.config;
    if (c["length"] != prompt_length || c["seed"] != prompt_seed) {
      prompt_length = c["length"];
      prompt_seed = c["seed"];
      prompt = eval::BuildToolsPrompt(*lm.tokenizer, *lm.chat, corpus, prompt_length, prompt_seed);
    }
    const std::string name = c["kv_name"];
    const auto& named = *std::find_if(configs.begin(), configs.end(),
                                      [&](const auto& k) { return k.name == name; });
    runtime::SessionOptions opts = f.model.session;
    opts.kv = named.policy;
    opts.kv.recent_ratio = c["ratio"];
    const int total = int(prompt.tokens.size()) + f.max_new;
    const runtime::ResolvedKv resolved =
        runtime::ResolveKvPolicy(opts.kv, info.layers, int(prompt.tokens.size()),
                                 prompt.tools_head_tokens);
    const auto key = std::make_tuple(prompt_length, prompt_seed, name, resolved.sink_tokens,
                                     std::min(resolved.recent_tokens, total));
    if (auto it = done.find(key); it != done.end()) {
      nlohmann::json row = it->second;
      row["ratio"] = c["ratio"];
      row["same_cache_as_ratio"] = it->second["ratio"];
      return row;
    }
    opts.n_ctx = total;
    runtime::Session session(*lm.model, opts);
    session.SetToolsHead(prompt.tools_head_tokens);
    const runtime::GenerateResult r = runtime::Generate(session, *lm.tokenizer, prompt.tokens, gen);
    const kv::KvMemoryStats mem = session.cache().MemoryStats();
    const eval::ToolGrade g = eval::GradeToolOutput(r.text, format, eval::ExperimentTools(),
                                                    eval::ExperimentExpectedCall());
    nlohmann::json row = {{"kv_name", name},
                          {"length", prompt_length},
                          {"seed", prompt_seed},
                          {"ratio", c["ratio"]},
                          {"prompt_tokens", r.prompt_tokens},
                          {"head_tokens", prompt.head_tokens},
                          {"filler_tokens", prompt.filler_tokens},
                          {"sink_tokens", resolved.sink_tokens},
                          {"buffer_tokens", resolved.recent_tokens},
                          {"verdict", eval::ToolVerdictName(g.verdict)},
                          {"detail", g.detail},
                          {"calls", g.calls},
                          {"answer", r.text},
                          {"generated_tokens", r.generated_tokens},
                          {"finish_reason", r.finish_reason},
                          {"prefill_seconds", r.prefill_seconds},
                          {"decode_seconds", r.decode_seconds},
                          {"bits_per_value", eval::FormatBitsPerValue(info, opts.kv)},
                          {"kv_bytes_used", mem.bytes_used},
                          {"kv_bytes_f16", mem.bytes_f16}};
    done[key] = row;
    return row;
  };
  if (eval::PendingCells(results, cells) > 0) {  // warm-up before the first timed cell
    runtime::Session s(*lm.model, f.model.session);
    s.Feed(std::span<const int>(corpus).first(std::min<size_t>(corpus.size(), 64)));
  }
  const eval::SweepSummary sweep =
      eval::RunSweep(results, cells, run,
                     SweepProgressBar(fmt::format("tools {} configs x {} ratios x {} lengths x {} seeds",
                                                  configs.size(), ratios.size(), lengths.size(),
                                                  f.seeds))
                         .Callback());
  const int rc = ReportSweep(sweep, results);

  const std::string model_sha = base["model_sha256"];
  const std::string model_file = base["model"];
  const eval::ToolsSummary summary = eval::SummarizeTools(CurrentRows(results), model_sha);
  const std::string md = eval::ToolsMarkdown(summary);
  std::printf(
      "%s (%s), tool calls read in the %s convention, sinks %d, buffer floor %d, filler from "
      "%s\n\n%s",
      info.name.c_str(), model_file.c_str(),
      std::string(chat::ToolCallFormatName(format)).c_str(), f.model.session.kv.sink_tokens,
      f.model.session.kv.recent_floor, std::string(base["corpus"]).c_str(), md.c_str());
  const std::vector<eval::ToolsLeader> leaders = eval::ToolsLeaderboard(summary);
  for (const eval::ToolsLeader& l : leaders) {
    if (l.reference) continue;
    std::printf(
        // The name carries the configuration's own sinks (+s=N; none without it), which may
        // differ from the --kv-sink default printed above.
        "\nsmallest cache passing at every tested length: %s with buffer ratio %g: "
        "KV cache %.1f%% of f16 at %d tokens (%.1f%% at most over the lengths)\n",
        l.kv_name.c_str(), l.ratio, 100 * l.kv_fraction_longest, summary.lengths.back(),
        100 * l.kv_fraction);
    break;
  }
  if (!f.table_md.empty()) WriteTextFile(f.table_md, md);
  if (!f.summary.empty()) WriteTextFile(f.summary, eval::ToolsSummaryJsonl(summary, model_file));
  if (!f.csv.empty()) WriteTextFile(f.csv, eval::ToolsLeaderboardCsv(leaders, model_file));
  if (!f.cells_csv.empty()) WriteTextFile(f.cells_csv, CellsCsv(CurrentRows(results), model_sha));
  return rc;
}

}  // namespace tqlm::cli
