// `tqlm bench spec`: speculative decoding measured in one run (issue 28). Three tasks on one
// model: code editing (a source file of this repository and "rename X to Y and return the whole
// file"), continuing Austen's prose, and answering a question about a long document; each
// decoded without speculation, with n-gram speculation and (with --model-draft) with a draft
// model, for each KV configuration. Every prompt is prefilled once and its session cloned per
// mode, and the modes alternate within each round, so that a machine shared with other work
// slows them alike: the printed ratios are decode tokens/s against no speculation in the same
// round (the median over rounds). Greedy decoding; every output must be byte-identical to the
// output without speculation (the exit status is 1 otherwise).
#include "cli/bench_spec.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <ctime>
#include <fstream>
#include <iostream>
#include <sstream>

#include "chat/render.h"
#include "cli/model_names.h"
#include "runtime/generate.h"
#include "runtime/kv_policy.h"
#include "tqlm/error.h"

namespace tqlm::cli {
namespace {

std::string ReadFile(const std::string& path, const std::string& what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(fmt::format("bench spec: cannot read {} {}", what, path));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

double CpuSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

struct Task {
  std::string name;
  std::vector<int> prompt;
  int max_tokens = 0;
};

std::vector<Task> MakeTasks(const SpecBenchFlags& f, const LoadedModel& lm) {
  const tokenizer::Tokenizer& tok = *lm.tokenizer;
  const std::string corpus = ModelCacheDir() + "/../corpus/";
  auto chat = [&](const std::string& user) {
    const chat::ChatMessage m{"user", user};
    return chat::RenderChat(tok, *lm.chat, std::span<const chat::ChatMessage>(&m, 1)).tokens;
  };
  std::vector<Task> out;
  for (const std::string& t : f.tasks) {
    if (t == "code") {
      const std::string file = ReadFile(f.code_file, "--code-file");
      if (file.find(f.rename_from) == std::string::npos)
        throw Error(fmt::format("bench spec: {} does not contain '{}' (--rename-from)",
                                f.code_file, f.rename_from));
      out.push_back({t, chat(fmt::format("Here is a C++ source file:\n\n```cpp\n{}```\n\nRename `{}` "
                                         "to `{}` everywhere and return the whole file.",
                                         file, f.rename_from, f.rename_to)),
                     f.code_tokens});
    } else if (t == "prose") {
      // Continuing the text itself (no chat template): about a thousand tokens of Emma.
      const std::string text = ReadFile(corpus + "emma.txt", "the corpus (scripts/fetch_data.sh)");
      out.push_back({t, tok.Encode(text.substr(40000, 4500), true), f.prose_tokens});
    } else if (t == "qa") {
      const std::string text =
          ReadFile(corpus + "prideprejudice.txt", "the corpus (scripts/fetch_data.sh)");
      out.push_back({t, chat("Read this text:\n\n" + text.substr(0, 14000) +
                             "\n\nWhat does Mrs. Bennet tell her husband about Netherfield Park, "
                             "and what does she hope will come of it? Quote the text."),
                     f.qa_tokens});
    } else {
      throw Error("bench spec: unknown task '" + t + "' (code, prose, qa)");
    }
  }
  return out;
}

struct Measure {
  runtime::GenerateResult r;
  double cpu_seconds = 0;
  double tps() const { return r.decode_seconds > 0 ? r.decode_tokens / r.decode_seconds : 0; }
  double cpu_tps() const { return cpu_seconds > 0 ? r.decode_tokens / cpu_seconds : 0; }
};

// Decodes the task's answer from a copy of the prefilled sessions (all but the prompt's last
// token are in them: Generate feeds that one, so its logits start the decode).
Measure Decode(const runtime::Session& base, const runtime::Session* draft_base,
               const tokenizer::Tokenizer& tok, const Task& task, runtime::SpecParams spec) {
  std::unique_ptr<runtime::Session> s = base.Clone();
  std::unique_ptr<runtime::Session> d =
      draft_base && spec.mode == runtime::SpecMode::kDraft ? draft_base->Clone() : nullptr;
  runtime::GenerateParams p;
  p.max_tokens = task.max_tokens;
  p.sampler.temperature = 0;
  p.spec = spec;
  Measure m;
  const double c0 = CpuSeconds();
  m.r = runtime::Generate(*s, tok, std::span<const int>(task.prompt).last(1), p, {}, d.get());
  m.cpu_seconds = CpuSeconds() - c0;
  return m;
}

runtime::KvPolicy PolicyFor(const std::string& kv) {
  if (kv == "auto") return runtime::DefaultKvPolicy();
  runtime::KvPolicy p;  // plain types, no sinks or buffer
  const size_t slash = kv.find('/');
  p.k_type = kv.substr(0, slash);
  p.v_type = slash == std::string::npos ? kv : kv.substr(slash + 1);
  return p;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

}  // namespace

int RunBenchSpec(const SpecBenchFlags& f) {
  if (f.rounds < 1) throw Error("bench spec: --rounds must be at least 1");
  LoadedModel lm = LoadModel(f.model);
  SpecFlags sf = f.spec;
  sf.mode = sf.draft_model.empty() ? "ngram" : "draft";
  std::unique_ptr<DraftModel> draft = ResolveSpec(sf, f.model, lm);
  std::vector<std::pair<std::string, runtime::SpecParams>> modes = {{"none", {}}};
  runtime::SpecParams ngram = sf.params;
  ngram.mode = runtime::SpecMode::kNgram;
  modes.push_back({"ngram", ngram});
  if (draft) modes.push_back({"draft", sf.params});
  const std::vector<Task> tasks = MakeTasks(f, lm);
  const tokenizer::Tokenizer& tok = *lm.tokenizer;

  nlohmann::json rows = nlohmann::json::array();
  bool all_identical = true;
  if (!f.json)
    fmt::print("{} on {} threads; decode tokens/s, and the ratio to no speculation (median of {} "
               "round(s), wall clock and process CPU time)\n",
               lm.model->info().name, f.model.session.n_threads, f.rounds);
  for (const std::string& kv : f.kv) {
    for (const Task& task : tasks) {
      runtime::SessionOptions opt = f.model.session;
      opt.kv = PolicyFor(kv);
      opt.n_ctx = int(task.prompt.size()) + task.max_tokens + 8;
      runtime::Session base(*lm.model, opt);
      base.Feed(std::span<const int>(task.prompt).first(task.prompt.size() - 1));
      std::unique_ptr<runtime::Session> draft_base;
      if (draft) {
        runtime::SessionOptions dopt = opt;
        dopt.kv = runtime::DefaultKvPolicy();
        draft_base = std::make_unique<runtime::Session>(*draft->lm.model, dopt);
        draft_base->Feed(std::span<const int>(task.prompt).first(task.prompt.size() - 1));
      }
      std::vector<std::vector<Measure>> runs(modes.size());
      for (int round = 0; round < f.rounds; ++round)
        for (size_t m = 0; m < modes.size(); ++m)
          runs[m].push_back(Decode(base, draft_base.get(), tok, task, modes[m].second));
      for (size_t m = 0; m < modes.size(); ++m) {
        std::vector<double> ratio, cpu_ratio, tps;
        bool identical = true;
        runtime::SpecStats stats;
        for (int round = 0; round < f.rounds; ++round) {
          const Measure& x = runs[m][size_t(round)];
          const Measure& none = runs[0][size_t(round)];
          ratio.push_back(x.tps() / none.tps());
          cpu_ratio.push_back(x.cpu_tps() / none.cpu_tps());
          tps.push_back(x.tps());
          identical = identical && x.r.text == none.r.text;
          stats += x.r.spec;
        }
        all_identical = all_identical && identical;
        const Measure& last = runs[m].back();
        nlohmann::json row = {
            {"kv", kv}, {"task", task.name}, {"mode", modes[m].first},
            {"prompt_tokens", task.prompt.size()}, {"decode_tokens", last.r.decode_tokens},
            {"decode_tokens_per_s", Median(tps)}, {"ratio", Median(ratio)},
            {"ratio_cpu_time", Median(cpu_ratio)}, {"proposed", stats.proposed},
            {"accepted", stats.accepted}, {"acceptance_rate", stats.AcceptanceRate()},
            {"forward_passes", last.r.decode_forwards}, {"identical", identical}};
        rows.push_back(row);
        if (!f.json)
          fmt::print("{:>10} {:>5} {:>5}: {:4d} tokens in {:4d} passes, {:6.2f} tok/s, x{:.2f} "
                     "(CPU time x{:.2f}), accepted {}/{} ({:.0f}%), {}\n",
                     kv, task.name, modes[m].first, last.r.decode_tokens, last.r.decode_forwards,
                     Median(tps), Median(ratio), Median(cpu_ratio), stats.accepted,
                     stats.proposed, 100 * stats.AcceptanceRate(),
                     identical ? "identical" : "OUTPUT DIFFERS");
        std::fflush(stdout);
      }
    }
  }
  if (f.json) std::cout << nlohmann::json{{"model", lm.model->info().name}, {"rows", rows}}.dump(2)
                        << "\n";
  return all_identical ? 0 : 1;
}

void AddBenchSpec(CLI::App& bench, SpecBenchFlags& f) {
  CLI::App* b = bench.add_subcommand(
      "spec", "speculative decoding: code editing, prose and long-document QA, decoded with no "
              "speculation, n-gram and (-md) a draft model; speed ratios and output identity");
  AddModelFlags(*b, f.model);
  AddSpecFlags(*b, f.spec);
  b->add_option("--kv", f.kv, "KV configurations: auto (the default policy), T or K/V")
      ->capture_default_str();
  b->add_option("--tasks", f.tasks, "code, prose, qa")->capture_default_str();
  b->add_option("--code-file", f.code_file, "the source file of the code task")
      ->capture_default_str();
  b->add_option("--rename-from", f.rename_from, "identifier the code task renames")
      ->capture_default_str();
  b->add_option("--rename-to", f.rename_to, "its new name")->capture_default_str();
  b->add_option("--code-tokens", f.code_tokens, "tokens decoded per task")->capture_default_str();
  b->add_option("--prose-tokens", f.prose_tokens, "")->capture_default_str();
  b->add_option("--qa-tokens", f.qa_tokens, "")->capture_default_str();
  b->add_option("--rounds", f.rounds, "rounds of all modes (median ratios)")->capture_default_str();
  b->add_flag("--json", f.json, "print JSON");
  f.subcommand = b;
}

}  // namespace tqlm::cli
