// Perplexity over a token stream with llama.cpp's protocol: consecutive windows of `ctx`
// tokens, each evaluated from an empty cache, scoring only the second half of every window
// (so each scored token sees at least ctx/2 tokens of context).
#pragma once

#include <functional>
#include <span>
#include <vector>

#include "model/model.h"
#include "runtime/session.h"

namespace tqlm::eval {

struct TokenScore {
  int position = 0;     // index in the token stream of the predicted token
  int token = 0;        // the actual next token
  int argmax = 0;       // the model's top-1 prediction
  float logprob = 0;    // log p(token)
};

struct PerplexityResult {
  double perplexity = 0;
  double mean_nll = 0;
  int windows = 0;
  std::vector<TokenScore> scores;
};

PerplexityResult Perplexity(model::Model& model, std::span<const int> tokens, int ctx,
                            int max_windows, const runtime::SessionOptions& session_options,
                            const std::function<void(int done, int total)>& progress = {});

}  // namespace tqlm::eval
