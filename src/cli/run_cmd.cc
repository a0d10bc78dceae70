// `tqlm run`: one prompt in, generated text streamed to stdout, statistics to stderr (or one
// JSON object at the end with --json).
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <sys/resource.h>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>

#include "chat/render.h"
#include "cli/command.h"
#include "cli/common_flags.h"
#include "cli/kv_auto.h"
#include "cli/progress.h"
#include "runtime/kv_policy.h"
#include "runtime/generate.h"
#include "tqlm/error.h"

namespace tqlm::cli {
namespace {

struct RunFlags {
  ModelFlags model;
  runtime::GenerateParams gen;
  SpecFlags spec;
  std::string prompt;
  std::string prompt_file;
  std::string system;  // with --chat
  bool chat = false;
  bool json = false;
};

int Run(RunFlags& f) {
  std::string prompt = f.prompt;
  if (!f.prompt_file.empty()) {
    std::ifstream in(f.prompt_file, std::ios::binary);
    if (!in) throw Error("cannot read prompt file " + f.prompt_file);
    std::stringstream ss;
    ss << in.rdbuf();
    prompt = ss.str();
  }
  if (prompt.empty()) throw Error("no prompt: give -p TEXT or -f FILE");
  if (!f.system.empty() && !f.chat) throw Error("--system-prompt needs --chat (or use tqlm chat)");

  LoadedModel lm = LoadModel(f.model);
  const tokenizer::Tokenizer& tok = *lm.tokenizer;
  std::vector<int> ids;
  if (f.chat) {
    WarnIfNoChatTemplate(lm);
    std::vector<chat::ChatMessage> messages;
    if (!f.system.empty()) messages.push_back({"system", f.system});
    messages.push_back({"user", prompt});
    ids = chat::RenderChat(tok, *lm.chat, messages).tokens;
  } else {
    ids = tok.Encode(prompt, /*add_special=*/true, /*parse_special=*/false);
  }

  const runtime::SessionOptions so = SessionWithKvAuto(f.model, lm.model->info());
  std::unique_ptr<DraftModel> draft = ResolveSpec(f.spec, f.model, lm);
  f.gen.spec = f.spec.params;
  runtime::Session session(*lm.model, so);
  // (A prompt longer than the context is the session's error, which says how many tokens over.)
  if (f.gen.max_tokens != 0 && int(ids.size()) == session.n_ctx())
    throw Error(fmt::format("the {}-token prompt leaves no room to generate in a context of {} "
                            "tokens (-c)", ids.size(), session.n_ctx()));
  ProgressBar bar(fmt::format("prefill {} tokens", ids.size()));
  runtime::GenerateCallbacks cb;
  cb.on_prefill = [&](int done, int total) {
    if (total >= 256) bar.Update(done, total);
  };
  bool prefill_done = false;
  cb.on_text = [&](const std::string& piece) {
    if (!prefill_done) bar.Finish(), prefill_done = true;
    if (f.json) return;
    std::fwrite(piece.data(), 1, piece.size(), stdout);
    std::fflush(stdout);
  };
  runtime::GenerateResult r = runtime::Generate(session, tok, ids, f.gen, cb,
                                                    draft ? draft->session.get() : nullptr);
  if (!prefill_done) bar.Finish();
  if (!f.json) std::printf("\n");

  const kv::KvMemoryStats mem = session.cache().MemoryStats();
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  const size_t peak_rss = size_t(usage.ru_maxrss) * 1024;  // Linux reports KiB
  const double prefill_tps = r.prefill_seconds > 0 ? r.prompt_tokens / r.prefill_seconds : 0;
  const double decode_tps = r.decode_seconds > 0 ? r.decode_tokens / r.decode_seconds : 0;
  const runtime::KvPolicy kv_used =
      runtime::ConcreteKvPolicy(so.kv, lm.model->info().layers);
  if (f.json) {
    nlohmann::json j = {
        {"model", lm.model->info().name},
        {"prompt_tokens", r.prompt_tokens},
        {"generated_tokens", r.generated_tokens},
        {"load_seconds", lm.load_seconds},
        {"prefill_seconds", r.prefill_seconds},
        {"prefill_tokens_per_s", prefill_tps},
        {"decode_seconds", r.decode_seconds},
        {"decode_tokens_per_s", decode_tps},
        {"kv_cache_bytes", mem.bytes_used},
        {"kv_cache_bytes_allocated", mem.bytes_allocated},
        {"kv_cache_bytes_f16", mem.bytes_f16},
        {"peak_rss_bytes", peak_rss},
        {"cache_type_k", kv_used.k_type},
        {"cache_type_v", kv_used.v_type},
        {"decode_forwards", r.decode_forwards},
        {"spec", runtime::SpecModeName(f.gen.spec.mode)},
        {"spec_steps", r.spec.steps},
        {"spec_proposed", r.spec.proposed},
        {"spec_accepted", r.spec.accepted},
        {"spec_acceptance_rate", r.spec.AcceptanceRate()},
        {"finish_reason", r.finish_reason},
        {"text", r.text},
    };
    std::cout << j.dump(2) << std::endl;
  } else {
    std::fprintf(stderr,
                 "load: %.2f s | prompt: %d tokens, %.1f tokens/s | generated: %d tokens, "
                 "%.1f tokens/s | KV cache %s/%s: %.2f MiB (f16 would be %.2f MiB) | peak RSS %.1f MiB | %s\n",
                 lm.load_seconds, r.prompt_tokens, prefill_tps, r.generated_tokens, decode_tps,
                 kv_used.k_type.c_str(), kv_used.v_type.c_str(), mem.bytes_used / 1048576.0,
                 mem.bytes_f16 / 1048576.0, peak_rss / 1048576.0,
                 r.finish_reason.c_str());
    if (f.gen.spec.mode != runtime::SpecMode::kNone)
      std::fprintf(stderr, "speculation %s: %lld proposed, %lld accepted (%.0f%%) in %lld steps; "
                   "%d forward passes for %d tokens\n",
                   runtime::SpecModeName(f.gen.spec.mode), (long long)r.spec.proposed,
                   (long long)r.spec.accepted, 100 * r.spec.AcceptanceRate(),
                   (long long)r.spec.steps, r.decode_forwards, r.decode_tokens);
  }
  return 0;
}

CommandRegistration reg("run", "generate text from a prompt", [](CLI::App& app) {
  auto f = std::make_shared<RunFlags>();
  f->gen.max_tokens = 128;
  f->model.session.kv = runtime::DefaultKvPolicy();  // measured default, see kv_policy.h
  AddModelFlags(app, f->model);
  AddSamplerFlags(app, f->gen.sampler);
  AddSpecFlags(app, f->spec);
  app.add_option("-p,--prompt", f->prompt, "prompt text")->envname("TQLM_PROMPT");
  app.add_option("-f,--file", f->prompt_file, "read the prompt from a file");
  app.add_option("-n,--n-predict", f->gen.max_tokens, "tokens to generate (-1: until context full)")
      ->envname("TQLM_N_PREDICT")->capture_default_str()->check(CLI::Range(-1, 1 << 24));
  app.add_option("--system-prompt", f->system, "with --chat: a system message before the prompt");
  app.add_option("--min-tokens", f->gen.min_tokens, "generate at least N tokens")
      ->capture_default_str()->check(CLI::Range(0, 1 << 24));
  app.add_option("--stop", f->gen.stop, "stop string (repeatable)");
  app.add_flag("--chat", f->chat, "wrap the prompt in the model's chat template as a user turn");
  app.add_flag("--json", f->json, "print one JSON object with text and statistics at the end");
  return [f] { return Run(*f); };
});

}  // namespace
}  // namespace tqlm::cli
