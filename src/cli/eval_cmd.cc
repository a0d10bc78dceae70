// `tqlm eval ppl`: perplexity over a text file (default: the installed Austen corpus), with
// per-token top-1 predictions and log-probabilities optionally dumped as JSON so that other
// engines can be compared on exactly the same token ids.
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>

#include "cli/command.h"
#include "cli/common_flags.h"
#include "cli/progress.h"
#include "eval/perplexity.h"
#include "tqlm/error.h"

namespace tqlm::cli {
namespace {

std::string DefaultCorpus() {
  const std::string model = DefaultModelPath();  // <cache>/models/<file>
  const std::string cache = model.substr(0, model.rfind("/models/"));
  return cache + "/corpus/prideprejudice.txt";
}

struct PplFlags {
  ModelFlags model;
  std::string file;
  int chunks = 8;
  std::string dump;
  bool json = false;
};

int RunPerplexity(const PplFlags& f) {
  const std::string path = f.file.empty() ? DefaultCorpus() : f.file;
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot read " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  LoadedModel lm = LoadModel(f.model);
  const std::vector<int> tokens = lm.tokenizer->Encode(ss.str(), false, false);
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
    std::ofstream out(f.dump);
    if (!out) throw Error("cannot write " + f.dump);
    out << d.dump();
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

CommandRegistration reg("eval", "evaluations: ppl (perplexity)", [](CLI::App& app) {
  app.require_subcommand(1);
  auto f = std::make_shared<PplFlags>();
  f->model.session.n_ctx = 512;  // -c is the window size, as in llama.cpp's perplexity
  CLI::App* ppl = app.add_subcommand("ppl", "perplexity over a text file");
  AddModelFlags(*ppl, f->model);
  ppl->add_option("-f,--file", f->file, "text file (default: the installed Austen corpus)");
  ppl->add_option("--chunks", f->chunks, "max windows (0: all)")->capture_default_str();
  ppl->add_option("--dump", f->dump, "write token ids and per-token scores as JSON");
  ppl->add_flag("--json", f->json, "print the summary as JSON");
  return [f, ppl]() -> int {
    if (ppl->parsed()) return RunPerplexity(*f);
    return 1;
  };
});

}  // namespace
}  // namespace tqlm::cli
