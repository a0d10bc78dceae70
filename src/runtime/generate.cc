#include "runtime/generate.h"

#include <chrono>

namespace tqlm::runtime {

GenerateResult Generate(Session& session, const tokenizer::Tokenizer& tok,
                        std::span<const int> prompt, const GenerateParams& params,
                        const GenerateCallbacks& callbacks) {
  using Clock = std::chrono::steady_clock;
  GenerateResult result;
  result.prompt_tokens = int(prompt.size());

  auto t0 = Clock::now();
  std::span<const float> logits = session.Feed(prompt, false, callbacks.on_prefill);
  result.prefill_seconds = std::chrono::duration<double>(Clock::now() - t0).count();

  TokenStream stream(tok, params, session.n_ctx() - int(session.history().size()));
  auto emit = [&](const std::string& piece) {
    if (!piece.empty() && callbacks.on_text) callbacks.on_text(piece);
  };
  auto t1 = Clock::now();
  if (stream.Started()) {
    for (;;) {
      if (callbacks.should_stop && callbacks.should_stop()) {
        emit(stream.Cancel());
        break;
      }
      const TokenStream::Step step = stream.Next(logits, session.history());
      emit(step.text);
      if (step.done) break;
      const int next[1] = {step.token};
      logits = session.Feed(next);
      ++result.decode_forwards;
    }
  }
  result.decode_seconds = std::chrono::duration<double>(Clock::now() - t1).count();
  result.generated_tokens = stream.generated();
  result.finish_reason = stream.finish_reason();
  result.text = stream.text();
  return result;
}

}  // namespace tqlm::runtime
