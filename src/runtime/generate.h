// The generation loop of one sequence (run, chat): feed the prompt (chunked prefill), then
// decode one token at a time; what to sample and when to stop is TokenStream's, shared with the
// server's scheduler.
#pragma once

#include <functional>
#include <span>
#include <string>
#include <vector>

#include "runtime/sampler.h"
#include "runtime/session.h"
#include "runtime/token_stream.h"
#include "tokenizer/tokenizer.h"

namespace tqlm::runtime {

struct GenerateResult {
  std::string text;
  int prompt_tokens = 0;
  int generated_tokens = 0;
  double prefill_seconds = 0;
  double decode_seconds = 0;
  int decode_forwards = 0;    // single-token forward passes timed by decode_seconds
  std::string finish_reason;  // "stop" (end token or stop string), "length", "cancelled"
};

struct GenerateCallbacks {
  std::function<void(const std::string&)> on_text;       // final text pieces, in order
  std::function<void(int done, int total)> on_prefill;   // prefill progress
  // Polled before each decode step: true ends the generation ("cancelled"); the text so far
  // stays in the result and the session keeps every token fed.
  std::function<bool()> should_stop;
};

GenerateResult Generate(Session& session, const tokenizer::Tokenizer& tok,
                        std::span<const int> prompt, const GenerateParams& params,
                        const GenerateCallbacks& callbacks = {});

}  // namespace tqlm::runtime
