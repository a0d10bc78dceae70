// The generation loop: feed the prompt (chunked prefill), then sample one token at a time
// until end-of-generation, a stop string or max_tokens, streaming text as it becomes final.
#pragma once

#include <functional>
#include <span>
#include <string>
#include <vector>

#include "runtime/sampler.h"
#include "runtime/session.h"
#include "runtime/stop_strings.h"
#include "tokenizer/stream_decoder.h"
#include "tokenizer/tokenizer.h"

namespace tqlm::runtime {

struct GenerateParams {
  int max_tokens = 256;   // < 0: until the context is full
  int min_tokens = 0;     // end-of-generation tokens are banned before this many
  std::vector<std::string> stop;  // stop strings (not included in the output)
  SamplerParams sampler;
};

struct GenerateResult {
  std::string text;
  int prompt_tokens = 0;
  int generated_tokens = 0;
  double prefill_seconds = 0;
  double decode_seconds = 0;
  int decode_forwards = 0;    // single-token forward passes timed by decode_seconds
  std::string finish_reason;  // "stop" (end token or stop string), "length"
};

struct GenerateCallbacks {
  std::function<void(const std::string&)> on_text;       // final text pieces, in order
  std::function<void(int done, int total)> on_prefill;   // prefill progress
};

GenerateResult Generate(Session& session, const tokenizer::Tokenizer& tok,
                        std::span<const int> prompt, const GenerateParams& params,
                        const GenerateCallbacks& callbacks = {});

}  // namespace tqlm::runtime
