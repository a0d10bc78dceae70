// The generation loop of one sequence (run, chat): feed the prompt (chunked prefill), then
// decode; what to sample and when to stop is TokenStream's, shared with the server's scheduler.
// With params.spec, each step may verify several proposed tokens in one forward pass
// (speculative decoding, spec_params.h): the stream samples every position exactly as it would
// one token at a time, from logits that are bit-identical whatever the step size (the model's
// batch invariance), so the output does not change; rejected tokens are rolled back from the
// cache (Session::Rewind) before the next step.
#pragma once

#include <functional>
#include <span>
#include <string>
#include <vector>

#include "runtime/sampler.h"
#include "runtime/session.h"
#include "runtime/spec_params.h"
#include "runtime/token_stream.h"
#include "tokenizer/tokenizer.h"

namespace tqlm::runtime {

struct GenerateResult {
  std::string text;
  int prompt_tokens = 0;
  int generated_tokens = 0;
  double prefill_seconds = 0;
  double decode_seconds = 0;
  int decode_forwards = 0;    // forward passes timed by decode_seconds
  // Tokens the decode phase added to the sequence (one per forward without speculation):
  // decode tokens/s is decode_tokens / decode_seconds in every mode.
  int decode_tokens = 0;
  SpecStats spec;             // speculation counters (zero without it)
  std::string finish_reason;  // "stop" (end token or stop string), "length", "cancelled"
};

struct GenerateCallbacks {
  std::function<void(const std::string&)> on_text;       // final text pieces, in order
  std::function<void(int done, int total)> on_prefill;   // prefill progress
  // Polled before each decode step: true ends the generation ("cancelled"); the text so far
  // stays in the result and the session keeps every token fed.
  std::function<bool()> should_stop;
};

// `draft`: the draft model's session for params.spec.mode == kDraft (same vocabulary; its
// history is brought in line with `session`'s as needed), else unused.
GenerateResult Generate(Session& session, const tokenizer::Tokenizer& tok,
                        std::span<const int> prompt, const GenerateParams& params,
                        const GenerateCallbacks& callbacks = {}, Session* draft = nullptr);

}  // namespace tqlm::runtime
