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

  Sampler sampler(params.sampler);
  tokenizer::StreamDecoder decoder(tok);
  std::vector<int> banned;
  for (int id : tok.end_of_generation_ids()) banned.push_back(id);

  std::string text;      // everything decoded so far
  size_t emitted = 0;    // bytes of `text` handed to on_text
  const int room = session.n_ctx() - int(session.history().size());
  const int limit = params.max_tokens < 0 ? room : std::min(params.max_tokens, room);
  result.finish_reason = "length";
  bool stop_string_hit = false;

  auto t1 = Clock::now();
  while (result.generated_tokens < limit) {
    const bool allow_end = result.generated_tokens >= params.min_tokens;
    const int id = sampler.Sample(logits, session.history(),
                                  allow_end ? std::span<const int>() : std::span<const int>(banned));
    ++result.generated_tokens;
    if (tok.IsEndOfGeneration(id)) {
      result.finish_reason = "stop";
      break;
    }
    text += decoder.Push(id);
    bool stopped = false;
    for (const std::string& s : params.stop) {
      const size_t at = s.empty() ? std::string::npos : text.find(s, emitted > s.size() ? emitted - s.size() : 0);
      if (at != std::string::npos) {
        text.resize(at);
        stopped = true;
      }
    }
    const size_t safe = stopped ? text.size() : StopSafePrefix(text, params.stop);
    if (safe > emitted && callbacks.on_text) callbacks.on_text(text.substr(emitted, safe - emitted));
    emitted = std::max(emitted, safe);
    if (stopped) {
      result.finish_reason = "stop";
      stop_string_hit = true;
      break;
    }
    if (result.generated_tokens >= limit) break;
    const int next[1] = {id};
    logits = session.Feed(next);
    ++result.decode_forwards;
  }
  if (!stop_string_hit) {
    text += decoder.Flush();
    if (text.size() > emitted && callbacks.on_text) callbacks.on_text(text.substr(emitted));
  }
  result.decode_seconds = std::chrono::duration<double>(Clock::now() - t1).count();
  result.text = std::move(text);
  return result;
}

}  // namespace tqlm::runtime
