// `tqlm chat`: interactive multi-turn chat. Each turn renders the whole conversation with the
// model's chat format, keeps the KV cache for the longest token prefix it shares with what is
// already cached, and feeds only the rest.
#include <fmt/format.h>

#include <cstdio>
#include <iostream>

#include "cli/command.h"
#include "cli/common_flags.h"
#include "runtime/generate.h"

namespace tqlm::cli {
namespace {

struct ChatFlags {
  ModelFlags model;
  runtime::GenerateParams gen;
  std::string system;
};

int Chat(const ChatFlags& f) {
  LoadedModel lm = LoadModel(f.model);
  const tokenizer::Tokenizer& tok = *lm.tokenizer;
  runtime::Session session(*lm.model, f.model.session);
  std::vector<tokenizer::ChatMessage> messages;
  if (!f.system.empty()) messages.push_back({"system", f.system});
  std::fprintf(stderr, "chat with %s — /reset clears the conversation, /exit or Ctrl-D ends\n",
               lm.model->info().name.c_str());
  std::string line;
  for (;;) {
    std::fprintf(stderr, "> ");
    if (!std::getline(std::cin, line) || line == "/exit") break;
    if (line.empty()) continue;
    if (line == "/reset") {
      messages.resize(f.system.empty() ? 0 : 1);
      session.Rewind(0);
      continue;
    }
    messages.push_back({"user", line});
    const std::vector<int> ids =
        tok.EncodeChat(lm.chat->Format(messages, true));
    // Reuse the cached prefix; feed only what differs.
    const auto& hist = session.history();
    size_t common = 0;
    while (common < hist.size() && common < ids.size() && hist[common] == ids[common]) ++common;
    if (common == ids.size()) --common;  // always feed at least one token to get logits
    session.Rewind(int(common));
    const std::vector<int> fresh(ids.begin() + common, ids.end());
    runtime::GenerateCallbacks cb;
    cb.on_text = [](const std::string& piece) {
      std::fwrite(piece.data(), 1, piece.size(), stdout);
      std::fflush(stdout);
    };
    runtime::GenerateResult r;
    try {
      r = runtime::Generate(session, tok, fresh, f.gen, cb);
    } catch (const Error& e) {
      std::fprintf(stderr, "\nerror: %s\n", e.what());
      messages.pop_back();
      continue;
    }
    std::printf("\n");
    std::fprintf(stderr, "[%d prompt tokens (%zu reused), %d generated, %.1f tokens/s]\n",
                 int(ids.size()), common, r.generated_tokens,
                 r.decode_seconds > 0 ? r.decode_forwards / r.decode_seconds : 0.0);
    messages.push_back({"assistant", r.text});
  }
  return 0;
}

CommandRegistration reg("chat", "interactive multi-turn chat", [](CLI::App& app) {
  auto f = std::make_shared<ChatFlags>();
  f->gen.max_tokens = 512;
  f->gen.sampler.temperature = 0.7f;
  AddModelFlags(app, f->model);
  AddSamplerFlags(app, f->gen.sampler);
  app.add_option("-n,--n-predict", f->gen.max_tokens, "max tokens per reply")
      ->envname("TQLM_N_PREDICT")->capture_default_str();
  app.add_option("--system", f->system, "system message");
  return [f] { return Chat(*f); };
});

}  // namespace
}  // namespace tqlm::cli
