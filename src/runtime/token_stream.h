// The part of generation that run, chat and serve share: sampling the next token, banning end
// tokens before min_tokens, stop strings, the token limit, and which text is final. Callers own
// the forward passes (runtime::Generate runs one sequence; the Scheduler batches many) and feed
// each step's logits here, so every front end ends and streams a generation the same way.
#pragma once

#include <optional>
#include <span>
#include <utility>
#include <string>
#include <vector>

#include "runtime/sampler.h"
#include "runtime/spec_params.h"
#include "runtime/stop_strings.h"
#include "tokenizer/stream_decoder.h"
#include "tokenizer/tokenizer.h"

namespace tqlm::runtime {

// A sampled token's log-probability under the model (log-softmax of the raw logits), and the
// most likely alternatives, for OpenAI's logprobs.
struct TokenLogprob {
  int token = -1;
  float logprob = 0;
  std::vector<std::pair<int, float>> top;  // (token, logprob), most likely first
};

struct GenerateParams {
  // < 0: until the context is full; 0: no token at all (the prompt only).
  int max_tokens = 256;
  int min_tokens = 0;     // end-of-generation tokens are banned before this many
  std::vector<std::string> stop;  // stop strings (not included in the output)
  SamplerParams sampler;
  int top_logprobs = -1;  // >= 0: each step reports its token's logprob and this many top ones
  SpecParams spec;        // speculative decoding (never changes the output, see spec_params.h)
};

class TokenStream {
 public:
  // `room`: tokens the context can still take after the prompt.
  TokenStream(const tokenizer::Tokenizer& tok, const GenerateParams& params, int room);

  struct Step {
    int token = -1;     // to feed next (when !done)
    bool done = false;  // the generation has ended: finish_reason says why
    std::string text;   // newly final text (possibly empty)
    std::optional<TokenLogprob> logprob;  // with params.top_logprobs >= 0 (end tokens excluded)
  };
  // True when the generation may take a first token (false for max_tokens 0 or a full
  // context): then finish_reason is "length" already.
  bool Started() const { return limit_ > 0; }
  // Samples from the logits after `history` and advances; `text` is what became final.
  // With `draft` (speculative sampling of a draft model's proposal): the draft drew `proposed`
  // from *draft; the token is still distributed as without it (spec_sampling.h).
  Step Next(std::span<const float> logits, std::span<const int> history,
            const SparseDistribution* draft = nullptr, int proposed = -1);
  // Ends the generation early (the caller stopped it): the held-back text becomes final.
  std::string Cancel();

  int generated() const { return generated_; }
  // Tokens the generation may still take (0 once done): proposals beyond it are wasted.
  int remaining() const { return finish_reason_.empty() ? limit_ - generated_ : 0; }
  const std::string& text() const { return text_; }
  const std::string& finish_reason() const { return finish_reason_; }

 private:
  std::string Release(bool final_piece);

  const tokenizer::Tokenizer& tok_;
  GenerateParams params_;
  Sampler sampler_;
  tokenizer::StreamDecoder decoder_;
  int limit_ = 0;
  int generated_ = 0;
  std::string text_;     // everything decoded so far (cut at a stop string)
  size_t emitted_ = 0;   // bytes of text_ handed out as final
  bool stop_hit_ = false;
  std::string finish_reason_;  // "stop", "length" or "cancelled" once done
};

}  // namespace tqlm::runtime
