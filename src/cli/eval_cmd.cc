// `tqlm eval`: the evaluation commands (ppl, niah, tools), their flags; the work is in
// eval_ppl.cc, eval_niah.cc and eval_tools.cc (which also declares its own flags).
#include "cli/command.h"
#include "cli/eval_cmds.h"

namespace tqlm::cli {
namespace {

CommandRegistration reg("eval",
                        "evaluations: ppl (perplexity, KL vs f16), niah (needle in a haystack), "
                        "tools (tool-calling buffer cliff)",
                        [](CLI::App& app) {
  app.require_subcommand(1);
  auto f = std::make_shared<PplFlags>();
  f->model.session.n_ctx = 512;  // -c is the window size, as in llama.cpp's perplexity
  // Chunks of one 64-token cache block: a compressed cache then holds exactly what it holds
  // when the same tokens are decoded one by one (blocks are encoded once committed and full),
  // at a fraction of the time. -b 1 also runs the single-token kernels.
  f->model.session.batch = 64;
  CLI::App* ppl = app.add_subcommand("ppl", "perplexity over a text file; --kv: sweep KV configurations");
  AddModelFlags(*ppl, f->model);
  ppl->add_option("-f,--file", f->file, "text file (default: the installed Austen corpus)");
  ppl->add_option("--chunks", f->chunks, "max windows (0: all)")->capture_default_str();
  ppl->add_option("--dump", f->dump, "write token ids and per-token scores as JSON");
  ppl->add_flag("--json", f->json, "print the summary as JSON");
  ppl->add_option("--kv", f->kv_list,
                  "sweep these KV configurations, comma-separated K/V[+s=SINK][+b=BUFFER]"
                  "[+r=RATIO][+floor=N][+p=PROFILE] (profile rules separated by ';'), e.g. "
                  "f16/f16,q8_0/q8_0,q4_0/q4_0,tq4/tq3,tq3/tq3,tq3/tq2,tq3/tq3+s=4+b=128");
  ppl->add_option("-o,--results", f->results, "results JSONL (sweep; resumed)")->capture_default_str();
  ppl->add_option("--table-md", f->table_md, "also write the Pareto table (Markdown) here");
  ppl->add_option("--summary", f->summary, "also write the Pareto table as JSONL here");
  ppl->add_option("--ref-numerics", f->ref_numerics,
                  "sweep: compute the f16 reference with these matmul numerics (native or "
                  "float) and every configuration, f16/f16 included, with --numerics: shows how "
                  "far the native int8 engine itself is from the float one")
      ->check(CLI::IsMember({"native", "float"}));
  ppl->add_option("--ref-model", f->ref_model,
                  "score -m against this model's logits, both with f16 KV: mean KL, PPL of "
                  "each (e.g. a converted model against its source)");
  ppl->add_option("--compare", f->compare,
                  "models to score against -m's logits as --ref-model does, the reference "
                  "computed once (comma-separated)")->delimiter(',');
  ppl->add_option("--dump-tokens", f->dump_tokens,
                  "write the windows' token ids and the sweep's config keys as JSON, then exit "
                  "(for bench/eval_llamacpp.py)");

  auto n = std::make_shared<NiahFlags>();
  CLI::App* niah = app.add_subcommand("niah", "needle-in-a-haystack retrieval per KV configuration");
  AddModelFlags(*niah, n->model);
  niah->add_option("-f,--file", n->file, "filler text (default: the installed Emma)");
  niah->add_option("--kv", n->kv_list, "KV configurations (as for eval ppl --kv)")->capture_default_str();
  niah->add_option("--lengths", n->lengths, "prompt lengths in tokens ('max': the model's context)")
      ->delimiter(',')->capture_default_str();
  niah->add_option("--depths", n->depths, "needle depths in [0, 1]")->delimiter(',')->capture_default_str();
  niah->add_option("--trials", n->trials, "trials per cell (trial t: seed+t, needle phrasing t mod 3)")
      ->capture_default_str();
  niah->add_option("--seed", n->seed, "first seed")->capture_default_str();
  niah->add_option("--max-answer", n->max_answer, "answer tokens generated (greedy)")->capture_default_str();
  niah->add_option("-o,--results", n->results, "results JSONL (resumed)")->capture_default_str();
  niah->add_option("--table-md", n->table_md, "also write the grids (Markdown) here");
  niah->add_option("--summary", n->summary, "also write the grids as JSONL here");
  auto t = std::make_shared<ToolsFlags>();
  CLI::App* tools = AddToolsCommand(app, *t);
  return [f, ppl, n, niah, t, tools]() -> int {
    if (ppl->parsed()) return RunPerplexity(*f);
    if (niah->parsed()) return RunNiah(*n);
    if (tools->parsed()) return RunEvalTools(*t);
    return 1;
  };
});

}  // namespace
}  // namespace tqlm::cli
